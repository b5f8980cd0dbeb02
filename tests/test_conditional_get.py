"""Conditional GET on the five hot reads: ETag on every 200, 304 on a match, a new tag on every change."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.api_support import client, player, stage_topic
from tests.test_admin import change_url, submit
from topics import selectors, services, transitions
from topics.api import serializers
from topics.api.pagination import StrictPageNumberPagination
from topics.models import Agent, AgentRating, Topic

pytestmark = pytest.mark.django_db

ENDPOINTS = ("list", "detail", "arguments", "verdict", "me")


def _url(kind: str, topic: Topic) -> str:
    return {
        "list": "/api/topics/",
        "detail": f"/api/topics/{topic.pk}/",
        "arguments": f"/api/topics/{topic.pk}/arguments/",
        "verdict": f"/api/topics/{topic.pk}/verdict/",
        "me": "/api/agents/me/",
    }[kind]


@pytest.fixture
def completed(now):
    return stage_topic("completed", now=now)


@pytest.fixture
def debating(now):
    staged = stage_topic("debating", now=now, round_count=2)
    staged.pro.client().get("/api/agents/me/")  # the first use writes last_seen_at, which agents/me shows
    return staged


def _tag(api, url: str, **headers) -> str:
    response = api.get(url, **headers)
    assert response.status_code == 200, response.content[:300]
    return response["ETag"]


@pytest.mark.parametrize("kind", ENDPOINTS)
def test_a_200_carries_an_etag_and_a_match_is_a_304_without_a_body(completed, kind):
    api = completed.judge.client()
    api.get("/api/agents/me/")
    url = _url(kind, completed.topic)
    first = api.get(url)
    assert first.status_code == 200
    tag = first["ETag"]
    assert tag.startswith('"') and tag.endswith('"')
    again = api.get(url)
    assert again["ETag"] == tag and again.content == first.content  # unchanged state, same tag

    hit = api.get(url, HTTP_IF_NONE_MATCH=tag)
    assert hit.status_code == 304
    assert hit.content == b""
    assert hit["ETag"] == tag

    miss = api.get(url, HTTP_IF_NONE_MATCH='"something-else"')
    assert miss.status_code == 200 and miss.content == first.content and miss["ETag"] == tag


@pytest.mark.parametrize(
    "header, modified",
    [
        ("W/{tag}", False),  # weak comparison (RFC 9110 8.8.3.2): W/"x" names "x"
        ('"a", {tag}, "b"', False),  # any tag of a list
        ('"a","b"', True),
        ("*", False),  # any current representation
        ("{tag}x", True),  # not a tag at all
        ('W/"a"', True),
    ],
)
def test_if_none_match_forms(completed, header, modified):
    url = f"/api/topics/{completed.topic.pk}/"
    tag = _tag(client(), url)
    response = client().get(url, HTTP_IF_NONE_MATCH=header.format(tag=tag))
    assert response.status_code == (200 if modified else 304)
    assert response["ETag"] == tag


def test_star_does_not_hide_a_missing_representation(now):
    judging = stage_topic("judging", now=now)
    private = stage_topic("debating", now=now, visibility="private")
    assert client().get(f"/api/topics/{judging.topic.pk}/verdict/", HTTP_IF_NONE_MATCH="*").status_code == 404
    assert client().get(f"/api/topics/{private.topic.pk}/", HTTP_IF_NONE_MATCH="*").status_code == 404
    # The anonymous caller cannot replay an agent's tag for a topic it cannot see.
    tag = _tag(private.pro.client(), f"/api/topics/{private.topic.pk}/")
    assert client().get(f"/api/topics/{private.topic.pk}/", HTTP_IF_NONE_MATCH=tag).status_code == 404
    assert client().get("/api/topics/?page=9", HTTP_IF_NONE_MATCH="*").status_code == 404
    assert client().get(f"/api/topics/{judging.topic.pk}/arguments/?round=x", HTTP_IF_NONE_MATCH="*").status_code == 400


def test_the_request_is_part_of_the_tag(now, monkeypatch):
    monkeypatch.setattr(StrictPageNumberPagination, "page_size", 1)
    public = stage_topic("debating", now=now)
    stage_topic("signup_open", now=now)
    private = stage_topic("debating", now=now, visibility="private")
    anonymous, agent = client(), private.pro.client()
    tags = {
        "page 1": _tag(anonymous, "/api/topics/"),
        "page 2": _tag(anonymous, "/api/topics/?page=2"),
        "last": _tag(anonymous, "/api/topics/?page=last"),
        "status": _tag(anonymous, "/api/topics/?status=debating"),
        "agent": _tag(agent, "/api/topics/"),  # sees the private topic too
        "round 0": _tag(anonymous, f"/api/topics/{public.topic.pk}/arguments/?round=0"),
        "all rounds": _tag(anonymous, f"/api/topics/{public.topic.pk}/arguments/"),
        "pro's me": _tag(private.pro.client(), "/api/agents/me/"),
        "con's me": _tag(private.con.client(), "/api/agents/me/"),
    }
    assert len(set(tags.values())) == len(tags)
    # A link in the body names the host, so the host is part of the tag too.
    assert _tag(anonymous, "/api/topics/", HTTP_HOST="127.0.0.1") != tags["page 1"]


def _all_tags(staged, viewer) -> dict[str, str]:
    api = viewer.client()
    return {kind: _tag(api, _url(kind, staged.topic)) for kind in ("list", "detail", "arguments", "me")}


def test_a_new_argument_changes_the_tags_it_shows_in(debating):
    before = _all_tags(debating, debating.pro)
    assert _all_tags(debating, debating.pro) == before
    response = debating.pro.client().post(
        f"/api/topics/{debating.topic.pk}/arguments/", {"content": "First."}, format="json"
    )
    assert response.status_code == 201
    after = _all_tags(debating, debating.pro)
    assert all(after[kind] != before[kind] for kind in before), (before, after)


def test_a_new_event_changes_the_tags(now):
    staged = stage_topic("debate_over", now=now)
    before = _all_tags(staged, staged.judge)
    with transaction.atomic():
        transitions.topic_end_debate(transitions.topic_lock(staged.topic.pk), now=now)
    after = _all_tags(staged, staged.judge)
    assert all(after[kind] != before[kind] for kind in before), (before, after)


def test_signing_up_and_withdrawing_change_agents_me(now):
    staged = stage_topic("signup_open", now=now)
    agent = player()
    api = agent.client()
    api.get("/api/agents/me/")
    empty = _tag(api, "/api/agents/me/")
    services.signup_create(topic_id=staged.topic.pk, agent=agent.agent, camp="pro")
    pro = _tag(api, "/api/agents/me/")
    services.signup_withdraw(topic_id=staged.topic.pk, agent=agent.agent)
    # No signup again, but the accepted signup was an agent event: agents/me shows the new event_seq.
    withdrawn = _tag(api, "/api/agents/me/")
    services.signup_create(topic_id=staged.topic.pk, agent=agent.agent, camp="con")
    con = _tag(api, "/api/agents/me/")
    assert len({empty, pro, withdrawn, con}) == 4
    assert _tag(api, "/api/agents/me/") == con


def test_admin_edits_through_the_admin_pages_change_the_tags(debating, staff_client):
    viewer = debating.pro
    before = _all_tags(debating, viewer)
    response = submit(staff_client, change_url(debating.topic), "topic_form", title="Retitled by staff")
    assert response.status_code == 302, response.content[:500]
    retitled = _all_tags(debating, viewer)
    assert all(retitled[kind] != before[kind] for kind in ("list", "detail", "me"))

    # An agent's name shows in every topic it has a camp in.
    con = Agent.objects.get(pk=debating.con.agent.pk)
    response = submit(staff_client, change_url(con), "agent_form", name="renamed-con")
    assert response.status_code == 302, response.content[:500]
    renamed = _all_tags(debating, viewer)
    assert renamed["detail"] != retitled["detail"] and renamed["list"] != retitled["list"]
    assert client().get(f"/api/topics/{debating.topic.pk}/").json()["camps"]["con"]["name"] == "renamed-con"

    # The verdict schema shows in the topic.
    schema = debating.topic.verdict_schema
    url = reverse("admin:topics_verdictschema_change", args=[schema.pk])
    response = submit(staff_client, url, "verdictschema_form", description="Edited by staff.")
    assert response.status_code == 302, response.content[:500]
    assert _all_tags(debating, viewer)["detail"] != renamed["detail"]


def test_a_round_ending_changes_agents_me_and_nothing_else_does(debating, now):
    api = debating.pro.client()
    topic = debating.refresh()
    first_close = topic.round_window(0)[1]
    with time_machine.travel(first_close - timedelta(seconds=30), tick=False):
        early = api.get("/api/agents/me/")
    with time_machine.travel(first_close - timedelta(seconds=1), tick=False):
        late = api.get("/api/agents/me/")
    assert late["ETag"] == early["ETag"] and late.content == early.content
    with time_machine.travel(first_close + timedelta(seconds=1), tick=False):
        next_round = api.get("/api/agents/me/", HTTP_IF_NONE_MATCH=early["ETag"])
    assert next_round.status_code == 200  # the round ticked over on the clock, the ticker not there yet
    assert next_round["ETag"] != early["ETag"]
    [before] = early.json()["assignments"]
    [after] = next_round.json()["assignments"]
    assert (before["round_no"], after["round_no"]) == (0, 1)
    # The judge's next action turns from watching to judging when the debate ends.
    judge = debating.judge.client()
    judge.get("/api/agents/me/")
    with time_machine.travel(topic.debate_end_at - timedelta(seconds=1), tick=False):
        watching = judge.get("/api/agents/me/")
    with time_machine.travel(topic.debate_end_at + timedelta(seconds=1), tick=False):
        judging = judge.get("/api/agents/me/", HTTP_IF_NONE_MATCH=watching["ETag"])
    assert judging.status_code == 200
    assert [a["next_action"] for a in judging.json()["assignments"]] == ["judge"]


# --- the 304 is decided without the representation --------------------------------------


NOT_MODIFIED_QUERIES = {"list": 2, "detail": 1, "arguments": 1, "verdict": 1, "me": 3}


@pytest.mark.parametrize("kind", ENDPOINTS)
def test_a_304_builds_no_representation(completed, kind, monkeypatch):
    api = completed.judge.client()
    api.get("/api/agents/me/")
    url = _url(kind, completed.topic)
    tag = _tag(api, url)

    def refuse(*args, **kwargs):
        raise AssertionError("the 304 path built a representation")

    for name in ("TopicOut", "ArgumentOut", "VerdictOut", "MeOut"):
        monkeypatch.setattr(getattr(serializers, name), "to_representation", refuse)
    for name in ("topic_data", "argument_row_data", "verdict_data", "me_data"):
        monkeypatch.setattr(f"topics.api.views.{name}", refuse)
    monkeypatch.setattr("topics.selectors.agent_assignments", refuse)
    for name in (
        "topic_detail_row",
        "topic_values",
        "topic_related",
        "transcript_rows",
        "verdict_by_topic",
    ):
        monkeypatch.setattr(f"topics.selectors.{name}", refuse)
    with CaptureQueriesContext(connection) as queries:
        response = api.get(url, HTTP_IF_NONE_MATCH=tag)
    assert response.status_code == 304
    # The token lookup, then the tag's own queries.
    assert len(queries) == 1 + NOT_MODIFIED_QUERIES[kind], [q["sql"] for q in queries]


def test_the_tag_is_computed_before_the_body(debating, monkeypatch):
    """A change landing between the tag and the body leaves the body newer than its tag, never older."""
    url = f"/api/topics/{debating.topic.pk}/arguments/"
    real = selectors.transcript_rows

    def post_meanwhile(**kwargs):
        services.argument_create(topic_id=debating.topic.pk, agent=debating.pro.agent, content="Meanwhile.")
        return real(**kwargs)

    monkeypatch.setattr(selectors, "transcript_rows", post_meanwhile)
    raced = client().get(url)
    monkeypatch.undo()
    assert [a["content"] for a in raced.json()] == ["Meanwhile."]
    # The raced tag is the state before the argument, so it does not hold the new body back.
    current = client().get(url, HTTP_IF_NONE_MATCH=raced["ETag"])
    assert current.status_code == 200 and current["ETag"] != raced["ETag"]
    assert client().get(url, HTTP_IF_NONE_MATCH=current["ETag"]).status_code == 304


def test_unrelated_time_passing_keeps_the_tag(completed):
    api = completed.pro.client()
    api.get("/api/agents/me/")
    tag = _tag(api, "/api/agents/me/")
    later = timezone.now() + timedelta(seconds=30)  # last_seen_at is written at most once a minute
    with time_machine.travel(later, tick=False):
        assert api.get("/api/agents/me/", HTTP_IF_NONE_MATCH=tag).status_code == 304


@pytest.mark.parametrize("field", ["mu", "judged", "panel_ballots", "agreed"])
def test_a_rating_row_rewritten_by_a_rebuild_changes_agents_me(completed, field):
    # A rebuild can correct one column of a rating row without any event: the tag must still move.
    api = completed.judge.client()
    api.get("/api/agents/me/")
    before = _tag(api, "/api/agents/me/")
    AgentRating.objects.filter(agent=completed.judge.agent).update(**{field: F(field) + 1})
    assert _tag(api, "/api/agents/me/") != before
