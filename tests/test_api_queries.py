"""Query counts pinned: reads are constant in the number of rows; posting an argument stays small."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.api_support import client, player, stage_topic
from topics.models import Argument, Camp, Round, Signup, Topic

pytestmark = pytest.mark.django_db

ARGUMENT_POST_BUDGET = 10


@pytest.fixture
def now():
    return timezone.now()


def _count(call) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as ctx:
        response = call()
    assert response.status_code in (200, 201), response.content[:300]
    return len(ctx.captured_queries), response


def _clone_topics(template: Topic, n: int) -> None:
    """``n`` more allocated, debating topics like ``template`` (rounds and camps included), in bulk."""
    fields = {f.attname: getattr(template, f.attname) for f in Topic._meta.concrete_fields if f.attname != "id"}
    clones = [Topic(id=uuid.uuid4(), **fields) for _ in range(n)]
    Topic.objects.bulk_create(clones)
    camps = list(Camp.objects.filter(topic=template))
    rnd = Round.objects.get(topic=template)
    Camp.objects.bulk_create([Camp(topic=t, camp=c.camp, agent_id=c.agent_id) for t in clones for c in camps])
    Round.objects.bulk_create(
        [Round(topic=t, round_no=0, opens_at=rnd.opens_at, closes_at=rnd.closes_at) for t in clones]
    )


@pytest.mark.parametrize("token", [False, True], ids=["anonymous", "agent"])
def test_topic_list_queries_do_not_grow_with_rows(now, settings, token):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "PAGE_SIZE": 500}
    staged = stage_topic("debating", now=now)
    caller = client(player().token if token else None)
    caller.get("/api/topics/")  # first use writes last_used_at; count steady-state requests
    _clone_topics(staged.topic, 9)
    small, response = _count(lambda: caller.get("/api/topics/"))
    assert len(response.json()["results"]) == 10
    _clone_topics(staged.topic, 490)
    large, response = _count(lambda: caller.get("/api/topics/"))
    assert response.json()["count"] == 500
    assert all(t["camps"] and t["current_round"] == 0 for t in response.json()["results"])
    assert small == large
    # (auth) + the ETag's count and page of ids (topics.conditional), then count, page, schemas, rounds,
    # camps with agents
    assert large <= 8


def test_topic_detail_query_count(now):
    staged = stage_topic("debating", now=now)
    queries, _ = _count(lambda: client().get(f"/api/topics/{staged.topic.pk}/"))
    assert queries == 5  # the ETag's topic row, then the topic, its schema, rounds, camps with agents


def test_transcript_queries_do_not_grow_with_rows(now):
    staged = stage_topic("debating", now=now)
    rnd = Round.objects.get(topic=staged.topic)

    def add(n: int) -> None:
        Argument.objects.bulk_create(
            [
                Argument(topic=staged.topic, round=rnd, agent=p.agent, camp=camp, content=f"{camp} {i}")
                for i in range(n // 2)
                for camp, p in (("pro", staged.pro), ("con", staged.con))
            ]
        )

    add(10)
    small, response = _count(lambda: client().get(f"/api/topics/{staged.topic.pk}/arguments/"))
    assert len(response.json()) == 10
    add(490)
    large, response = _count(lambda: client().get(f"/api/topics/{staged.topic.pk}/arguments/"))
    assert len(response.json()) == 500
    # The ETag's topic row (also the 404 gate), what decides the masking, arguments with round numbers and agents.
    assert small == large == 3


@pytest.mark.django_db(transaction=True)
def test_posting_an_argument_stays_within_budget(now):
    """Outside a test transaction, so the count is what production runs (no test savepoints)."""
    staged = stage_topic("debating", now=now, max_arguments_per_round=100)
    api = staged.pro.client()
    path = f"/api/topics/{staged.topic.pk}/arguments/"
    api.post(path, {"content": "warm-up"}, format="json")  # the once-a-minute token touch happens here
    queries, _ = _count(lambda: api.post(path, {"content": "counted"}, format="json"))
    # Today 8: token, BEGIN, lock, open round with the caller's camp, insert, event counter,
    # event insert, COMMIT.
    assert queries <= ARGUMENT_POST_BUDGET, queries


def test_agents_me_queries_do_not_grow_with_assignments(now):
    first = stage_topic("debating", now=now)
    me = first.pro
    me.client().get("/api/agents/me/")
    small, _ = _count(lambda: me.client().get("/api/agents/me/"))
    for stage in ("signup_closed", "debating", "judging", "completed"):
        other = stage_topic(stage, now=now)
        Signup.objects.create(topic=other.topic, agent=me.agent, camp="pro")
    large, response = _count(lambda: me.client().get("/api/agents/me/"))
    assert len(response.json()["assignments"]) == 5
    assert small == large
    # The token, the ETag's three (agent with rating and webhook, active topics with signups, finished
    # topics), then the rating, the webhook, the two topic lists and the three prefetches.
    assert large == 11


def test_verdict_query_count(now):
    staged = stage_topic("completed", now=now)
    queries, _ = _count(lambda: client().get(f"/api/topics/{staged.topic.pk}/verdict/"))
    assert queries == 3  # the ETag's topic row with the verdict's existence, the verdict with its judge, its ballots
