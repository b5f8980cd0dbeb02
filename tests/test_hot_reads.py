"""The hot reads are built from rows (``topics.representations``), byte for byte what the serializers wrote.

The output serializers stay as the OpenAPI document's description; each
test renders the serializer's output for the same data with the API's
renderer and compares bytes with what the endpoint answered.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db.models import Prefetch
from django.utils import timezone

from fabric_bridge.models import Webhook
from tests.api_support import client, stage_topic
from topics import selectors, services
from topics.api.renderers import SafeJSONRenderer
from topics.api.serializers import ArgumentOut, MeOut, TopicOut, VerdictOut
from topics.models import Argument, Camp, Signup, Topic, Verdict

pytestmark = pytest.mark.django_db


def _render(data) -> bytes:
    return SafeJSONRenderer().render(data)


def _prefetched(topics):
    """What the serializers were given: the topic with its schema, rounds and camps with agents."""
    return topics.select_related("verdict_schema").prefetch_related(
        "rounds", Prefetch("camps", queryset=Camp.objects.select_related("agent"))
    )


@pytest.fixture
def variety(now):
    """Topics at every stage, a private one, several rounds, limits, a deadline, awkward text."""
    staged = {stage: stage_topic(stage, now=now) for stage in ("created", "signup_open", "judging", "cancelled")}
    staged["completed"] = stage_topic("completed", now=now, verdict_due_at=now + timedelta(hours=1))
    staged["debating"] = stage_topic(
        "debating",
        now=now,
        round_count=3,
        max_arguments_per_round=2,
        title='Ünïcødé \u2028 line\u2029 "quoted" </script>',
    )
    staged["private"] = stage_topic("debating", now=now, visibility="private")
    debate = staged["debating"]
    for n, (who, text) in enumerate(
        [(debate.pro, "🦜 first"), (debate.con, "second\nline\u2028"), (debate.pro, "x" * 500)]
    ):
        services.argument_create(topic_id=debate.topic.pk, agent=who.agent, content=f"{n}: {text}")
    return staged


@pytest.mark.parametrize("token", [False, True], ids=["anonymous", "agent"])
def test_the_topic_list_is_the_serializers(variety, token):
    viewer = variety["private"].pro if token else None
    response = client(viewer.token if viewer else None).get("/api/topics/?page=1")
    topics = _prefetched(selectors.topic_list_rows(agent=viewer.agent if viewer else None))
    expected = {"count": topics.count(), "next": None, "previous": None, "results": TopicOut(topics, many=True).data}
    assert response.content == _render(expected)


def test_a_status_filter_and_pages_are_the_serializers(variety, monkeypatch):
    from topics.api.pagination import StrictPageNumberPagination

    monkeypatch.setattr(StrictPageNumberPagination, "page_size", 2)
    topics = list(_prefetched(selectors.topic_list_rows(agent=None)))
    body = client().get("/api/topics/?page=2").json()
    assert body["results"] == [dict(TopicOut(t).data) for t in topics[2:4]]
    debating = client().get("/api/topics/?status=debating").json()["results"]
    assert debating == [dict(TopicOut(t).data) for t in topics if t.status == "debating"]


def test_each_topic_is_the_serializers(variety):
    for staged in variety.values():
        topic = _prefetched(Topic.objects.filter(pk=staged.topic.pk)).get()
        response = (
            staged.pro.client().get(f"/api/topics/{topic.pk}/")
            if staged.players
            else client().get(f"/api/topics/{topic.pk}/")
        )
        assert response.content == _render(TopicOut(topic).data), topic.status


def test_the_transcript_is_the_serializers(variety):
    topic = variety["debating"].topic
    arguments = (
        Argument.objects.filter(topic=topic)
        .select_related("round", "agent")
        .order_by("round__round_no", "created_at", "id")
    )
    assert len(arguments) == 3
    for query in ("", "?round=0", "?round=1"):
        expected = [a for a in arguments if query != "?round=1"]
        response = client().get(f"/api/topics/{topic.pk}/arguments/{query}")
        assert response.content == _render(ArgumentOut(expected, many=True, context={"topic": topic}).data), query


def test_the_verdict_is_the_serializers(variety):
    topic = variety["completed"].topic
    verdict = Verdict.objects.select_related("judge").get(topic=topic)
    ballots = selectors.ballots_for(topic_id=topic.pk)
    rendered = _render(VerdictOut(verdict, context={"ballots": ballots}).data)
    assert client().get(f"/api/topics/{topic.pk}/verdict/").content == rendered


def test_a_blind_topic_is_masked_as_the_serializers_mask_it(now):
    staged = stage_topic("debating", now=now, blind_judging=True)
    services.argument_create(topic_id=staged.topic.pk, agent=staged.pro.agent, content="masked")
    topic = Topic.objects.get(pk=staged.topic.pk)
    detail = client().get(f"/api/topics/{topic.pk}/")
    assert detail.json()["camps"]["pro"] == {"id": None, "name": "pro"}
    expected = TopicOut(selectors.topic_detail(topic_id=topic.pk, agent=None)).data
    assert detail.content == _render(expected)
    arguments = selectors.transcript(topic=topic)
    transcript = client().get(f"/api/topics/{topic.pk}/arguments/")
    assert transcript.json()[0]["agent"] == {"id": None, "name": "pro"}
    assert transcript.content == _render(ArgumentOut(arguments, many=True, context={"topic": topic}).data)


def test_agents_me_is_the_serializers(variety, now):
    debate = variety["debating"]
    me = debate.pro
    # The same agent in every other topic too: signed up, placed, finished, cancelled.
    for stage in ("signup_open", "created"):
        Signup.objects.create(topic=variety[stage].topic, agent=me.agent, camp=None)
    for later in (timedelta(0), debate.topic.round_window(0)[1] - now + timedelta(seconds=1)):
        moment = timezone.now() + later
        with time_machine.travel(moment, tick=False):
            response = me.client().get("/api/agents/me/")
            agent = type(me.agent).objects.get(pk=me.agent.pk)
            agent.assignments = selectors.agent_assignments(agent=agent, now=moment)
            agent.webhook_state = selectors.agent_webhook(agent=agent)
            assert response.content == _render(MeOut(agent).data)
    assert [a["next_action"] for a in response.json()["assignments"]][:1] == ["argue"]
    assert response.json()["webhook"] is None


def test_agents_me_with_a_webhook_is_the_serializers(variety, now):
    me = variety["debating"].pro
    Webhook.objects.create(
        agent=me.agent, url="https://agent.example/hook", secret_encrypted="x", created_at=now, failing_since=now
    )
    response = me.client().get("/api/agents/me/")
    agent = type(me.agent).objects.get(pk=me.agent.pk)
    agent.assignments = selectors.agent_assignments(agent=agent, now=timezone.now())
    agent.webhook_state = selectors.agent_webhook(agent=agent)
    assert response.content == _render(MeOut(agent).data)
    assert response.json()["webhook"]["url"] == "https://agent.example/hook"
