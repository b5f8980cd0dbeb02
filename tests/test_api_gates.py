"""Every row of DESIGN.md's gates table, asserting the status and the ``code``, plus the check order."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.test import override_settings
from django.utils import timezone

from tests.api_support import client, player, stage_topic
from topics.models import Argument, Ballot, Camp, Signup, TopicStatus, Verdict
from topics.tokens import tokens_revoke

pytestmark = pytest.mark.django_db

WINNER = {"verdict": {"winner": "pro"}, "rationale": "Pro was clearer."}


def url(topic, tail: str = "") -> str:
    return f"/api/topics/{topic.pk}/{tail}"


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["detail"], str) and body["detail"]


@pytest.fixture
def now():
    return timezone.now()


# --- 401 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, tail, body",
    [
        ("post", "signups/", {"camp": "pro"}),
        ("delete", "signups/me/", None),
        ("post", "arguments/", {"content": "x"}),
        ("post", "verdict/", WINNER),
    ],
)
def test_missing_token_on_agent_endpoints_is_not_authenticated(now, method, tail, body):
    staged = stage_topic("signup_open", now=now)
    response = getattr(client(), method)(url(staged.topic, tail), body, format="json")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_missing_token_on_agents_me_is_not_authenticated():
    response = client().get("/api/agents/me/")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def _bad_tokens():
    revoked = player()
    tokens_revoke(agent=revoked.agent)
    inactive = player(is_active=False)
    good = player()
    prefix = good.token.split("_")[1]
    return {
        "revoked": revoked.token,
        "inactive": inactive.token,
        "wrong secret": f"dlc_{prefix}_{'A' * 43}",
        "unknown prefix": "dlc_000000000000_" + "B" * 43,
        "not a token": "hello",
    }


@pytest.mark.parametrize("kind", ["revoked", "inactive", "wrong secret", "unknown prefix", "not a token"])
@pytest.mark.parametrize(
    "method, tail", [("get", ""), ("get", "arguments/"), ("get", "verdict/"), ("post", "signups/")]
)
def test_bad_token_is_authentication_failed_on_any_endpoint(now, kind, method, tail):
    staged = stage_topic("signup_open", now=now)
    token = _bad_tokens()[kind]
    response = getattr(client(token), method)(url(staged.topic, tail), {}, format="json")
    assert_error(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", ["/api/topics/", "/api/agents/me/"])
def test_bad_token_on_list_and_me(path):
    response = client("dlc_abc_nope").get(path)
    assert_error(response, 401, "authentication_failed")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer  ", "Token abc", "dlc_a_b"])
def test_authorization_header_we_cannot_use_is_authentication_failed(header):
    response = client().get("/api/topics/", HTTP_AUTHORIZATION=header)
    assert_error(response, 401, "authentication_failed")


# --- 404 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, tail, body",
    [
        ("get", "", None),
        ("get", "arguments/", None),
        ("get", "verdict/", None),
        ("post", "signups/", {"camp": "pro"}),
        ("delete", "signups/me/", None),
        ("post", "arguments/", {"content": "x"}),
        ("post", "verdict/", WINNER),
    ],
)
def test_missing_topic_is_not_found(method, tail, body):
    me = player()
    response = getattr(me.client(), method)(
        f"/api/topics/3f1c1c1e-0000-4000-8000-000000000000/{tail}", body, format="json"
    )
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("tail", ["", "arguments/", "verdict/"])
def test_private_topic_is_not_found_for_anonymous_and_visible_with_a_token(now, tail):
    staged = stage_topic("completed", now=now, visibility="private")
    assert_error(client().get(url(staged.topic, tail)), 404, "not_found")
    assert player().client().get(url(staged.topic, tail)).status_code == 200


def test_private_topic_is_missing_from_the_anonymous_list(now):
    public = stage_topic("signup_open", now=now)
    private = stage_topic("signup_open", now=now, visibility="private")
    anonymous_ids = {t["id"] for t in client().get("/api/topics/").json()["results"]}
    agent_ids = {t["id"] for t in player().client().get("/api/topics/").json()["results"]}
    assert anonymous_ids == {str(public.topic.pk)}
    assert agent_ids == {str(public.topic.pk), str(private.topic.pk)}


def test_no_verdict_yet_is_not_found(now):
    staged = stage_topic("judging", now=now)
    assert_error(client().get(url(staged.topic, "verdict/")), 404, "not_found")


# --- signups: 409 --------------------------------------------------------------


@pytest.mark.parametrize("stage", ["created", "signup_closed", "debating", "judging", "completed", "cancelled"])
def test_signup_outside_signup_open_is_signup_closed(now, stage):
    staged = stage_topic(stage, now=now)
    response = player().client().post(url(staged.topic, "signups/"), {"camp": "con"}, format="json")
    assert_error(response, 409, "signup_closed")


def test_signup_after_close_time_is_signup_closed_even_before_the_ticker_moves(now):
    staged = stage_topic("signup_open", now=now)
    staged.topic.__class__.objects.filter(pk=staged.topic.pk).update(
        signup_open_at=now - timedelta(minutes=10), signup_close_at=now - timedelta(seconds=1)
    )
    response = player().client().post(url(staged.topic, "signups/"), {"camp": None}, format="json")
    assert_error(response, 409, "signup_closed")
    assert staged.refresh().status == TopicStatus.SIGNUP_OPEN  # the API does not move the status itself


def test_second_signup_is_already_signed_up(now):
    staged = stage_topic("signup_open", now=now)
    me = player()
    first = me.client().post(url(staged.topic, "signups/"), {"camp": "pro"}, format="json")
    assert first.status_code == 201, first.content
    assert first.json()["camp"] == "pro" and first.json()["agent"]["id"] == str(me.agent.pk)
    second = me.client().post(url(staged.topic, "signups/"), {"camp": "con"}, format="json")
    assert_error(second, 409, "already_signed_up")
    assert Signup.objects.filter(topic=staged.topic, agent=me.agent).count() == 1


def test_signup_camp_is_optional_and_null_means_any(now):
    staged = stage_topic("signup_open", now=now)
    a, b = player(), player()
    assert a.client().post(url(staged.topic, "signups/"), {"camp": None}, format="json").status_code == 201
    assert b.client().post(url(staged.topic, "signups/"), {}, format="json").status_code == 201
    assert set(Signup.objects.filter(topic=staged.topic).values_list("camp", flat=True)) == {None}


def test_withdraw_while_open_then_not_signed_up(now):
    staged = stage_topic("signup_open", now=now)
    me = player()
    me.client().post(url(staged.topic, "signups/"), {"camp": "judge"}, format="json")
    assert me.client().delete(url(staged.topic, "signups/me/")).status_code == 204
    assert not Signup.objects.filter(topic=staged.topic).exists()
    assert_error(me.client().delete(url(staged.topic, "signups/me/")), 404, "not_signed_up")


def test_withdraw_after_close_is_signup_closed(now):
    staged = stage_topic("signup_closed", now=now)
    assert_error(staged.pro.client().delete(url(staged.topic, "signups/me/")), 409, "signup_closed")
    assert Signup.objects.filter(topic=staged.topic, agent=staged.pro.agent).exists()


# --- arguments -----------------------------------------------------------------


@pytest.mark.parametrize("who", ["judge", "outsider"])
def test_argument_by_a_non_debater_is_not_a_debater(now, who):
    staged = stage_topic("debating", now=now)
    caller = staged.judge if who == "judge" else player()
    response = caller.client().post(url(staged.topic, "arguments/"), {"content": "Let me add..."}, format="json")
    assert_error(response, 403, "not_a_debater")


@pytest.mark.parametrize("stage", ["signup_closed", "debate_over", "judging", "completed", "cancelled"])
def test_argument_when_not_debating_is_debate_not_active(now, stage):
    staged = stage_topic(stage, now=now)
    response = staged.pro.client().post(url(staged.topic, "arguments/"), {"content": "One more"}, format="json")
    assert_error(response, 409, "debate_not_active")
    assert not Argument.objects.filter(topic=staged.topic).exists()


def test_argument_beyond_the_round_limit_is_round_limit_reached_per_camp(now):
    staged = stage_topic("debating", now=now, max_arguments_per_round=2)
    for i in range(2):
        ok = staged.pro.client().post(url(staged.topic, "arguments/"), {"content": f"pro {i}"}, format="json")
        assert ok.status_code == 201, ok.content
    assert_error(
        staged.pro.client().post(url(staged.topic, "arguments/"), {"content": "pro 3"}, format="json"),
        409,
        "round_limit_reached",
    )
    # The limit is per camp: con still has its two.
    assert (
        staged.con.client().post(url(staged.topic, "arguments/"), {"content": "con 1"}, format="json").status_code
        == 201
    )


def test_the_round_limit_starts_afresh_when_a_late_round_boundary_is_applied(now):
    """The counts are the open round's: once the API applies a boundary the ticker missed, the camp posts again."""
    staged = stage_topic("debating", now=now, round_count=2, max_arguments_per_round=1)

    def post(text: str):
        return staged.pro.client().post(url(staged.topic, "arguments/"), {"content": text}, format="json")

    assert post("round 0").status_code == 201
    assert_error(post("round 0 again"), 409, "round_limit_reached")
    with time_machine.travel(staged.topic.round_window(1)[0] + timedelta(seconds=5), tick=False):
        late = post("round 1")
        assert late.status_code == 201 and late.json()["round_no"] == 1
        assert_error(post("round 1 again"), 409, "round_limit_reached")
    assert list(Argument.objects.filter(topic=staged.topic).values_list("round__round_no", "content")) == [
        (0, "round 0"),
        (1, "round 1"),
    ]


@pytest.mark.parametrize("content", ["", "   \n\t ", None, 42, ["x"], {"a": 1}])
def test_argument_content_empty_or_not_a_string_is_a_field_error(now, content):
    staged = stage_topic("debating", now=now)
    response = staged.pro.client().post(url(staged.topic, "arguments/"), {"content": content}, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["content"]


def test_argument_content_missing_is_a_field_error(now):
    staged = stage_topic("debating", now=now)
    response = staged.pro.client().post(url(staged.topic, "arguments/"), {}, format="json")
    assert response.status_code == 400 and "content" in response.json()


def test_argument_over_32768_bytes_is_a_field_error(now):
    staged = stage_topic("debating", now=now)
    response = staged.pro.client().post(url(staged.topic, "arguments/"), {"content": "a" * 32769}, format="json")
    assert response.status_code == 400
    assert "32768 bytes" in response.json()["content"][0]


def test_argument_is_created_in_the_open_round(now):
    staged = stage_topic("debating", now=now)
    response = staged.con.client().post(url(staged.topic, "arguments/"), {"content": "  Because.  "}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["content"] == "Because."
    assert body["camp"] == "con" and body["round_no"] == 0
    assert body["agent"] == {"id": str(staged.con.agent.pk), "name": staged.con.agent.name}


# --- verdict -------------------------------------------------------------------


@pytest.mark.parametrize("who", ["pro", "con", "outsider"])
def test_verdict_by_anyone_but_the_judge_is_not_the_judge(now, who):
    staged = stage_topic("judging", now=now)
    caller = player() if who == "outsider" else staged.players[who]
    assert_error(caller.client().post(url(staged.topic, "verdict/"), WINNER, format="json"), 403, "not_the_judge")


@pytest.mark.parametrize("stage", ["debating", "cancelled"])
def test_verdict_before_the_end_or_on_a_cancelled_topic_is_verdict_not_open(now, stage):
    staged = stage_topic(stage, now=now)
    response = staged.judge.client().post(url(staged.topic, "verdict/"), WINNER, format="json")
    assert_error(response, 409, "verdict_not_open")
    assert not Verdict.objects.filter(topic=staged.topic).exists()


def test_verdict_after_its_deadline_is_verdict_not_open(now):
    staged = stage_topic("judging", now=now, verdict_due_at=now - timedelta(seconds=30))
    assert_error(
        staged.judge.client().post(url(staged.topic, "verdict/"), WINNER, format="json"), 409, "verdict_not_open"
    )
    assert staged.refresh().status == TopicStatus.JUDGING


def test_second_verdict_is_verdict_exists_not_verdict_not_open(now):
    staged = stage_topic("judging", now=now)
    assert staged.judge.client().post(url(staged.topic, "verdict/"), WINNER, format="json").status_code == 201
    # The topic is completed now, but the existing verdict is the answer that matters.
    again = staged.judge.client().post(url(staged.topic, "verdict/"), WINNER, format="json")
    assert_error(again, 409, "verdict_exists")
    assert Verdict.objects.filter(topic=staged.topic).count() == 1


def test_verdict_completes_the_topic(now):
    staged = stage_topic("judging", now=now)
    body = {"verdict": {"winner": "con", "scores": {"pro": 6, "con": 8.5}}, "rationale": "  Con answered.  "}
    response = staged.judge.client().post(url(staged.topic, "verdict/"), body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["verdict"] == body["verdict"] and response.json()["rationale"] == "Con answered."
    assert staged.refresh().status == TopicStatus.COMPLETED
    shown = client().get(url(staged.topic, "verdict/")).json()
    assert shown["judge"]["id"] == str(staged.judge.agent.pk) and shown["verdict"]["winner"] == "con"


def test_verdict_while_still_debating_after_the_end_does_both_transitions(now):
    staged = stage_topic("debate_over", now=now)
    assert staged.topic.status == TopicStatus.DEBATING
    response = staged.judge.client().post(url(staged.topic, "verdict/"), WINNER, format="json")
    assert response.status_code == 201, response.content
    assert staged.refresh().status == TopicStatus.COMPLETED
    kinds = list(staged.topic.events.order_by("seq").values_list("kind", "data__to"))
    assert ("status_changed", "judging") in kinds and kinds[-1] == ("status_changed", "completed")


@pytest.mark.parametrize("verdict", [["pro"], "pro", 1, None, True])
def test_verdict_not_an_object_is_a_field_error(now, verdict):
    staged = stage_topic("judging", now=now)
    response = staged.judge.client().post(
        url(staged.topic, "verdict/"), {"verdict": verdict, "rationale": "r"}, format="json"
    )
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["verdict"]


@pytest.mark.parametrize(
    "verdict, path",
    [
        ({"winner": "nobody"}, "verdict.winner"),
        ({}, "verdict:"),  # the missing property is reported on the object itself
        ({"winner": "pro", "scores": {"pro": "high"}}, "verdict.scores.pro"),
    ],
)
def test_verdict_invalid_against_the_schema_names_the_failing_path(now, verdict, path):
    staged = stage_topic("judging", now=now)
    response = staged.judge.client().post(
        url(staged.topic, "verdict/"), {"verdict": verdict, "rationale": "r"}, format="json"
    )
    assert response.status_code == 400, response.content
    messages = response.json()["verdict"]
    assert any(m.startswith(path) for m in messages), messages
    assert staged.refresh().status == TopicStatus.JUDGING


@pytest.mark.parametrize("body", [{"verdict": {"winner": "pro"}}, {"verdict": {"winner": "pro"}, "rationale": " \n"}])
def test_rationale_missing_or_blank_is_a_field_error(now, body):
    staged = stage_topic("judging", now=now)
    response = staged.judge.client().post(url(staged.topic, "verdict/"), body, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["rationale"]


# --- body syntax, rate -----------------------------------------------------------


def test_malformed_json_is_parse_error(now):
    staged = stage_topic("signup_open", now=now)
    response = (
        player().client().post(url(staged.topic, "signups/"), data='{"camp": "pro"', content_type="application/json")
    )
    assert_error(response, 400, "parse_error")


def test_wrong_content_type_is_unsupported_media_type(now):
    staged = stage_topic("debating", now=now)
    response = staged.pro.client().post(url(staged.topic, "arguments/"), data="content=hi", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")


@override_settings(THROTTLE_AGENT_WRITES="3/minute")
def test_too_many_writes_is_throttled_with_retry_after(now):
    staged = stage_topic("debating", now=now)
    answers = [
        staged.pro.client().post(url(staged.topic, "arguments/"), {"content": f"n{i}"}, format="json") for i in range(4)
    ]
    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    assert_error(answers[-1], 429, "throttled")
    assert 0 < int(answers[-1]["Retry-After"]) <= 60
    # Per agent: the other debater is not affected, and reads are never throttled.
    assert staged.con.client().post(url(staged.topic, "arguments/"), {"content": "c"}, format="json").status_code == 201
    assert staged.pro.client().get(url(staged.topic, "arguments/")).status_code == 200


# --- the order of the checks -----------------------------------------------------


def test_order_401_before_404():
    response = client().post(
        "/api/topics/3f1c1c1e-0000-4000-8000-000000000000/arguments/", "{", content_type="application/json"
    )
    assert_error(response, 401, "not_authenticated")


def test_order_404_before_403_and_400():
    response = (
        player()
        .client()
        .post("/api/topics/3f1c1c1e-0000-4000-8000-000000000000/verdict/", "{broken", content_type="application/json")
    )
    assert_error(response, 404, "not_found")


def test_order_403_before_400_and_415(now):
    staged = stage_topic("debating", now=now)
    outsider = player()
    assert_error(
        outsider.client().post(url(staged.topic, "arguments/"), "{broken", content_type="application/json"),
        403,
        "not_a_debater",
    )
    assert_error(
        outsider.client().post(url(staged.topic, "verdict/"), "x", content_type="text/plain"), 403, "not_the_judge"
    )


def test_order_400_before_409(now):
    staged = stage_topic("judging", now=now)
    # A debater posting after the debate: the empty body is reported before the state.
    response = staged.pro.client().post(url(staged.topic, "arguments/"), {"content": ""}, format="json")
    assert response.status_code == 400 and "content" in response.json()
    closed = stage_topic("debating", now=now)
    response = player().client().post(url(closed.topic, "signups/"), {"camp": "left"}, format="json")
    assert response.status_code == 400 and "camp" in response.json()


# --- the unique constraints behind the lock ------------------------------------------


def test_a_verdict_slipping_past_the_check_hits_the_constraint_and_is_verdict_exists(now, monkeypatch):
    """If the existence check ever missed a ballot (no lock), the unique constraint still answers 409."""
    staged = stage_topic("judging", now=now)
    seat = Camp.objects.get(topic=staged.topic, camp="judge")
    Ballot.objects.create(
        topic=staged.topic, seat=seat, judge=staged.judge.agent, verdict={"winner": "con"}, rationale="r"
    )
    monkeypatch.setattr(Ballot.objects, "filter", lambda **kwargs: Ballot.objects.none())
    response = staged.judge.client().post(url(staged.topic, "verdict/"), WINNER, format="json")
    assert_error(response, 409, "verdict_exists")
    monkeypatch.undo()
    assert Ballot.objects.get(topic=staged.topic).verdict == {"winner": "con"}
    assert staged.refresh().status == TopicStatus.JUDGING  # the failed request changed nothing


def test_a_signup_slipping_past_the_check_hits_the_constraint_and_is_already_signed_up(now, monkeypatch):
    staged = stage_topic("signup_open", now=now)
    me = player()
    Signup.objects.create(topic=staged.topic, agent=me.agent, camp="pro")
    monkeypatch.setattr(Signup.objects, "filter", lambda **kwargs: Signup.objects.none())
    response = me.client().post(url(staged.topic, "signups/"), {"camp": "con"}, format="json")
    assert_error(response, 409, "already_signed_up")
    monkeypatch.undo()
    assert list(Signup.objects.filter(topic=staged.topic).values_list("camp", flat=True)) == ["pro"]
