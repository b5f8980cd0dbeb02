"""What the read endpoints show: topic representation, list paging and filter, transcript, /agents/me/."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from tests.api_support import client, player, stage_topic
from topics.models import Argument, Round, Signup, TopicStatus

pytestmark = pytest.mark.django_db

TOPIC_FIELDS = {
    "id",
    "title",
    "summary",
    "visibility",
    "status",
    "signup_open_at",
    "signup_close_at",
    "debate_start_at",
    "debate_end_at",
    "verdict_due_at",
    "round_count",
    "max_arguments_per_round",
    "current_round",
    "verdict_schema",
    "camps",
    "cancelled_reason",
}


@pytest.fixture
def now():
    return timezone.now()


def test_topic_before_allocation_has_null_camps_and_no_current_round(now):
    staged = stage_topic("signup_open", now=now)
    body = client().get(f"/api/topics/{staged.topic.pk}/").json()
    assert set(body) >= TOPIC_FIELDS
    assert body["status"] == "signup_open" and body["camps"] is None and body["current_round"] is None
    assert body["verdict_schema"]["name"] == "winner"
    assert body["verdict_schema"]["schema"]["required"] == ["winner"]
    assert body["signup_close_at"].endswith("Z")


def test_debating_topic_shows_camps_and_current_round(now):
    staged = stage_topic("debating", now=now, round_count=3)
    body = client().get(f"/api/topics/{staged.topic.pk}/").json()
    shown = {camp: {"id": str(p.agent.pk), "name": p.agent.name} for camp, p in staged.players.items()}
    assert body["camps"] == {**shown, "judges": [shown["judge"]]}
    assert body["current_round"] == 0 and body["round_count"] == 3
    assert [r["round_no"] for r in body["rounds"]] == [0] and body["rounds"][0]["closed_at"] is None


def test_judging_topic_has_no_current_round_and_cancelled_shows_its_reason(now):
    judging = stage_topic("judging", now=now)
    assert client().get(f"/api/topics/{judging.topic.pk}/").json()["current_round"] is None
    cancelled = stage_topic("cancelled", now=now)
    body = client().get(f"/api/topics/{cancelled.topic.pk}/").json()
    assert body["status"] == "cancelled" and body["cancelled_reason"] == "staff cancelled it"


def test_list_is_newest_first_and_paginated(now, settings):
    staged = [stage_topic("created", now=now, title=f"t{i}") for i in range(3)]
    body = client().get("/api/topics/").json()
    assert body["count"] == 3 and body["previous"] is None and body["next"] is None
    assert [t["title"] for t in body["results"]] == ["t2", "t1", "t0"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("rest_framework.pagination.PageNumberPagination.page_size", 2)
        first = client().get("/api/topics/").json()
        assert [t["id"] for t in first["results"]] == [str(staged[2].topic.pk), str(staged[1].topic.pk)]
        assert first["next"].endswith("/api/topics/?page=2")
        second = client().get("/api/topics/?page=2").json()
        assert [t["id"] for t in second["results"]] == [str(staged[0].topic.pk)]


def test_list_filters_by_status(now):
    stage_topic("signup_open", now=now)
    debating = stage_topic("debating", now=now)
    body = client().get("/api/topics/?status=debating").json()
    assert [t["id"] for t in body["results"]] == [str(debating.topic.pk)]
    assert client().get("/api/topics/?status=").json()["count"] == 2


@pytest.mark.parametrize("value", ["nonsense", "DEBATING", "debating,judging", "\x00"])
def test_list_with_an_invalid_status_is_a_field_error(value):
    response = client().get("/api/topics/", {"status": value})
    assert response.status_code == 400
    assert list(response.json()) == ["status"]


@pytest.mark.parametrize("page", ["0", "abc", "99", "-1", "9" * 30])
def test_list_with_a_bad_page_is_not_found(page):
    response = client().get("/api/topics/", {"page": page})
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_transcript_is_ordered_by_round_then_time_and_filters_by_round(now):
    staged = stage_topic("debating", now=now, round_count=2)
    topic = staged.topic
    first = timezone.now()
    for i, who in enumerate(["pro", "con", "pro"]):
        with time_machine.travel(first + timedelta(seconds=i), tick=False):
            assert (
                staged.players[who]
                .client()
                .post(f"/api/topics/{topic.pk}/arguments/", {"content": f"r0 {who} {i}"}, format="json")
                .status_code
                == 201
            )
    # Jump into round 1: the API applies the late round boundary itself.
    round1_start = topic.round_window(1)[0]
    with time_machine.travel(round1_start + timedelta(seconds=5), tick=False):
        assert (
            staged.con.client()
            .post(f"/api/topics/{topic.pk}/arguments/", {"content": "r1 con"}, format="json")
            .json()["round_no"]
            == 1
        )
    transcript = client().get(f"/api/topics/{topic.pk}/arguments/").json()
    assert [(a["round_no"], a["content"]) for a in transcript] == [
        (0, "r0 pro 0"),
        (0, "r0 con 1"),
        (0, "r0 pro 2"),
        (1, "r1 con"),
    ]
    assert set(transcript[0]) == {"id", "round_no", "camp", "agent", "content", "created_at"}
    only_round_1 = client().get(f"/api/topics/{topic.pk}/arguments/?round=1").json()
    assert [a["content"] for a in only_round_1] == ["r1 con"]
    assert client().get(f"/api/topics/{topic.pk}/arguments/?round=7").json() == []
    assert Round.objects.filter(topic=topic, round_no=0).get().closed_at is not None


@pytest.mark.parametrize("value", ["-1", "x", "1.5", "9" * 40])
def test_transcript_with_a_bad_round_is_a_field_error(now, value):
    staged = stage_topic("debating", now=now)
    response = client().get(f"/api/topics/{staged.topic.pk}/arguments/", {"round": value})
    assert response.status_code == 400 and list(response.json()) == ["round"]


def test_argument_event_matches_the_rest_representation(now):
    staged = stage_topic("debating", now=now)
    posted = (
        staged.pro.client()
        .post(f"/api/topics/{staged.topic.pk}/arguments/", {"content": "Evidence."}, format="json")
        .json()
    )
    event = staged.topic.events.order_by("-seq").first()
    assert event.kind == "argument_posted"
    assert event.data == posted
    # The POST answer, the event and the transcript's ArgumentOut are one representation.
    (listed,) = client().get(f"/api/topics/{staged.topic.pk}/arguments/").json()
    assert listed == posted


# --- /api/agents/me/ -----------------------------------------------------------------


def _me(p) -> dict:
    response = p.client().get("/api/agents/me/")
    assert response.status_code == 200, response.content
    return response.json()


def _assignment(body: dict, topic) -> dict:
    (found,) = [a for a in body["assignments"] if a["topic"]["id"] == str(topic.pk)]
    return found


def test_me_shows_the_profile():
    me = player(name="sokrates", owner="athens")
    body = _me(me)
    assert body["id"] == str(me.agent.pk)
    assert body["name"] == "sokrates" and body["owner"] == "athens"
    assert body["assignments"] == []


def test_me_while_signed_up(now):
    staged = stage_topic("signup_open", now=now)
    me = player()
    me.client().post(f"/api/topics/{staged.topic.pk}/signups/", {"camp": "judge"}, format="json")
    a = _assignment(_me(me), staged.topic)
    assert a["signup"]["camp"] == "judge" and a["camp"] is None
    assert a["next_action"] == "wait_for_allocation"
    assert a["deadline"] == staged.topic.signup_close_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_me_next_actions_through_a_debate(now):
    closed = stage_topic("signup_closed", now=now)
    assert _assignment(_me(closed.pro), closed.topic)["next_action"] == "wait_for_debate"
    assert _assignment(_me(closed.judge), closed.topic)["next_action"] == "watch_debate"

    debating = stage_topic("debating", now=now, round_count=2, max_arguments_per_round=1)
    pro = _assignment(_me(debating.pro), debating.topic)
    assert (pro["camp"], pro["next_action"], pro["round_no"], pro["arguments_left"]) == ("pro", "argue", 0, 1)
    round0_close = debating.topic.round_window(0)[1].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert pro["deadline"] == round0_close
    debating.pro.client().post(f"/api/topics/{debating.topic.pk}/arguments/", {"content": "x"}, format="json")
    pro = _assignment(_me(debating.pro), debating.topic)
    assert (pro["next_action"], pro["arguments_left"], pro["deadline"]) == ("wait_for_next_round", 0, round0_close)
    assert _assignment(_me(debating.con), debating.topic)["next_action"] == "argue"
    assert _assignment(_me(debating.judge), debating.topic)["next_action"] == "watch_debate"

    over = stage_topic("debate_over", now=now)
    assert _assignment(_me(over.judge), over.topic)["next_action"] == "judge"
    assert _assignment(_me(over.con), over.topic)["next_action"] == "wait_for_verdict"

    due = now + timedelta(hours=1)
    judging = stage_topic("judging", now=now, verdict_due_at=due)
    j = _assignment(_me(judging.judge), judging.topic)
    assert j["next_action"] == "judge" and j["deadline"] == due.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    done = stage_topic("completed", now=now)
    d = _assignment(_me(done.pro), done.topic)
    assert d["topic"]["status"] == TopicStatus.COMPLETED and d["next_action"] == "nothing" and d["deadline"] is None


def test_me_not_placed_is_nothing(now):
    staged = stage_topic("signup_open", now=now)
    extra = player()
    extra.client().post(f"/api/topics/{staged.topic.pk}/signups/", {"camp": "pro"}, format="json")
    staged_closed = stage_topic("signup_closed", now=now)
    Signup.objects.create(topic=staged_closed.topic, agent=extra.agent, camp="con")
    a = _assignment(_me(extra), staged_closed.topic)
    assert a["camp"] is None and a["next_action"] == "nothing"


def test_me_lists_active_topics_before_finished_ones(now):
    done = stage_topic("completed", now=now)
    open_topic = stage_topic("signup_open", now=now)
    done.pro.client().post(f"/api/topics/{open_topic.topic.pk}/signups/", {}, format="json")
    ids = [a["topic"]["id"] for a in _me(done.pro)["assignments"]]
    assert ids == [str(open_topic.topic.pk), str(done.topic.pk)]


def test_last_argument_of_the_last_round_means_wait_for_verdict(now):
    staged = stage_topic("debating", now=now, max_arguments_per_round=1)
    staged.con.client().post(f"/api/topics/{staged.topic.pk}/arguments/", {"content": "only"}, format="json")
    a = _assignment(_me(staged.con), staged.topic)
    assert a["next_action"] == "wait_for_verdict" and a["arguments_left"] == 0
    # The wait ends when the debate does, not at the (optional) verdict deadline.
    assert a["deadline"] == staged.topic.debate_end_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert Argument.objects.filter(topic=staged.topic).count() == 1
