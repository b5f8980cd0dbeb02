"""topics.sql.insert_rows writes the rows the ORM would write, on both backends."""

from __future__ import annotations

import uuid

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.api_support import stage_topic
from topics.models import Argument, Round, TopicEvent
from topics.sql import insert_rows

pytestmark = pytest.mark.django_db

# Text that trips naive SQL building: quotes, placeholders, a backslash, NUL-free but multi-byte.
AWKWARD = 'it\'s "quoted" %s %% ? \\ 🙂 λόγος 論拠\u2028end'


def test_an_argument_row_equals_the_one_create_writes():
    staged = stage_topic("debating", now=timezone.now())
    rnd = Round.objects.get(topic=staged.topic)
    agent = staged.players["pro"].agent
    by_orm = Argument.objects.create(topic=staged.topic, round=rnd, agent=agent, camp="pro", content=AWKWARD)
    ours = Argument(topic=staged.topic, round=rnd, agent=agent, camp="pro", content=AWKWARD)
    with CaptureQueriesContext(connection) as ctx:
        insert_rows([ours])
    assert len(ctx.captured_queries) == 1
    assert isinstance(ours.pk, uuid.UUID) and ours.created_at is not None and not ours._state.adding

    columns = ["topic_id", "round_id", "agent_id", "camp", "content"]
    assert (
        Argument.objects.filter(pk=ours.pk).values(*columns).get()
        == Argument.objects.filter(pk=by_orm.pk).values(*columns).get()
    )
    stored = Argument.objects.get(pk=ours.pk)
    assert stored.created_at == ours.created_at and stored.created_at.tzinfo is not None
    # Stored in the ORM's own format, so the ORM's filters (and SQLite's text ordering) find it.
    assert Argument.objects.filter(
        pk=ours.pk, created_at=ours.created_at, topic=staged.topic, round=rnd, agent=agent
    ).exists()
    assert list(Argument.objects.filter(topic=staged.topic).order_by("created_at").values_list("pk", flat=True)) == [
        by_orm.pk,
        ours.pk,
    ]


def test_several_events_in_one_statement_with_json_and_database_assigned_keys():
    staged = stage_topic("debating", now=timezone.now())
    payloads = [
        {"text": AWKWARD, "nested": {"list": [1, 2.5, None, True, "🙂"]}},
        {},
        {"round_no": 3, "closes_at": "2026-11-27T10:00:00.000000Z"},
    ]
    events = [TopicEvent(topic=staged.topic, seq=1000 + i, kind="round_opened", data=d) for i, d in enumerate(payloads)]
    with CaptureQueriesContext(connection) as ctx:
        insert_rows(events)
    assert len(ctx.captured_queries) == 1
    stored = list(TopicEvent.objects.filter(topic=staged.topic, seq__gte=1000).order_by("seq"))
    assert [e.data for e in stored] == payloads
    assert [e.seq for e in stored] == [1000, 1001, 1002]
    assert len({e.pk for e in stored}) == 3 and all(e.pk for e in stored)
    assert [e.created_at for e in stored] == [e.created_at for e in events]


def test_a_failed_insert_leaves_the_transaction_marked_for_rollback_as_create_does():
    staged = stage_topic("debating", now=timezone.now())
    taken = TopicEvent.objects.filter(topic=staged.topic).order_by("-seq").values_list("seq", flat=True).first()
    with transaction.atomic():
        with pytest.raises(IntegrityError):
            insert_rows([TopicEvent(topic=staged.topic, seq=taken, kind="round_opened", data={})])
        assert connection.needs_rollback
        transaction.set_rollback(False)  # let the test's own transaction go on


def test_an_auto_increment_key_set_by_hand_is_refused():
    staged = stage_topic("debating", now=timezone.now())
    with pytest.raises(AssertionError, match="assigns auto-increment keys"):
        insert_rows([TopicEvent(pk=10**9, topic=staged.topic, seq=10**6, kind="round_opened", data={})])


def test_nothing_to_insert_sends_nothing():
    with CaptureQueriesContext(connection) as ctx:
        insert_rows([])
    assert ctx.captured_queries == []
