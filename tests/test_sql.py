"""Each hand-written statement of topics.sql against the ORM query it replaces, on both backends.

A statement passes when it returns (or changes) exactly what its ORM twin
does, in one query, for the rows that matter: present and absent, the
boundary of a time comparison, values that trip naive SQL building.
"""

from __future__ import annotations

import functools
import operator
import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.models import Count, OuterRef, Q, Subquery
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.api_support import player, stage_topic
from topics import sql
from topics.models import (
    Agent,
    AgentEvent,
    AgentEventKind,
    AgentToken,
    Argument,
    Camp,
    EventKind,
    RatingLedger,
    Round,
    Topic,
    TopicEvent,
    TopicStatus,
)

pytestmark = pytest.mark.django_db

# Text that trips naive SQL building: quotes, placeholders, a backslash, multi-byte characters.
AWKWARD = 'it\'s "quoted" %s %% ? \\ 🙂 λόγος 論拠\u2028end'


def one_query(fn, *args, **kwargs):
    with CaptureQueriesContext(connection) as ctx:
        result = fn(*args, **kwargs)
    assert len(ctx.captured_queries) == 1, [q["sql"] for q in ctx.captured_queries]
    return result, ctx.captured_queries[0]["sql"]


def fields(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


# --- topic_select_for_update ---------------------------------------------------------------------


def test_the_topic_lock_reads_the_row_the_orm_reads_and_locks_it():
    staged = stage_topic("debating", now=timezone.now(), title=AWKWARD)
    with transaction.atomic():
        ours, text = one_query(sql.topic_select_for_update, staged.topic.pk)
        twin = Topic.objects.select_for_update().get(pk=staged.topic.pk)
        assert fields(ours) == fields(twin)
        assert ours.title == AWKWARD
        assert ("FOR UPDATE" in text) == connection.features.has_select_for_update
        # A string id is prepared by the field exactly as the ORM prepares it.
        assert sql.topic_select_for_update(str(staged.topic.pk)).pk == staged.topic.pk
        assert sql.topic_select_for_update(uuid.uuid4()) is None
        assert Topic.objects.filter(pk=uuid.uuid4()).first() is None


# --- topic_update_if_unchanged -------------------------------------------------------------------


def test_the_conditional_update_matches_the_orm_update_row_for_row():
    now = timezone.now()
    ours, theirs = (stage_topic("signup_open", now=now).topic for _ in range(2))
    updates = {"event_seq": ours.event_seq + 2, "status": TopicStatus.CANCELLED, "cancelled_reason": AWKWARD}
    with transaction.atomic():
        matched, _ = one_query(sql.topic_update_if_unchanged, ours, updates)
        twin = Topic.objects.filter(pk=theirs.pk, status=theirs.status, event_seq=theirs.event_seq).update(**updates)
    assert matched == twin == 1
    ours.refresh_from_db()
    theirs.refresh_from_db()
    changed = ("event_seq", "status", "cancelled_reason")
    assert [getattr(ours, f) for f in changed] == [getattr(theirs, f) for f in changed]
    assert ours.cancelled_reason == AWKWARD


def test_the_conditional_update_matches_nothing_once_the_row_moved_on():
    topic = stage_topic("signup_open", now=timezone.now()).topic
    stale = Topic.objects.get(pk=topic.pk)
    Topic.objects.filter(pk=topic.pk).update(event_seq=topic.event_seq + 1)  # another writer won
    with transaction.atomic():
        assert sql.topic_update_if_unchanged(stale, {"event_seq": stale.event_seq + 1}) == 0
        twin = Topic.objects.filter(pk=stale.pk, status=stale.status, event_seq=stale.event_seq)
        assert twin.update(event_seq=stale.event_seq + 1) == 0


def test_the_conditional_update_counts_a_matched_row_that_it_did_not_change():
    # MySQL reports changed rows unless asked for found ones; the guard needs "matched".
    topic = stage_topic("signup_open", now=timezone.now()).topic
    with transaction.atomic():
        assert sql.topic_update_if_unchanged(topic, {"event_seq": topic.event_seq}) == 1


# --- round_open_with_caller_camp -----------------------------------------------------------------


def orm_open_round(topic: Topic, agent: Agent, *, counted: bool) -> Round | None:
    """What round_open_with_caller_camp replaces, written with the ORM."""
    caller_camp = Camp.objects.filter(topic=OuterRef("topic_id"), agent=agent).order_by().values("camp")[:1]
    rounds = Round.objects.filter(topic=topic, closed_at__isnull=True).annotate(caller_camp=Subquery(caller_camp))
    if counted:
        rounds = rounds.annotate(
            pro_posted=Count("arguments", filter=Q(arguments__camp="pro")),
            con_posted=Count("arguments", filter=Q(arguments__camp="con")),
        )
    return rounds.order_by("-round_no").first()


@pytest.mark.parametrize("counted", [False, True])
def test_the_open_round_with_the_callers_camp_equals_the_orm_twin(counted):
    staged = stage_topic("debating", now=timezone.now(), round_count=2)
    rnd = Round.objects.get(topic=staged.topic)
    for camp, n in (("pro", 2), ("con", 1)):
        for _ in range(n):
            Argument.objects.create(
                topic=staged.topic, round=rnd, agent=staged.players[camp].agent, camp=camp, content=AWKWARD
            )
    outsider = player().agent
    for agent in (staged.pro.agent, staged.con.agent, staged.judge.agent, outsider):
        ours, _ = one_query(sql.round_open_with_caller_camp, staged.topic, agent=agent, counted=counted)
        twin = orm_open_round(staged.topic, agent, counted=counted)
        assert fields(ours) == fields(twin)
        assert ours.caller_camp == twin.caller_camp
        if counted:
            assert (ours.pro_posted, ours.con_posted) == (twin.pro_posted, twin.con_posted) == (2, 1)
    assert sql.round_open_with_caller_camp(staged.topic, agent=outsider, counted=False).caller_camp is None


def test_no_open_round_is_none_for_both():
    staged = stage_topic("judging", now=timezone.now())
    assert sql.round_open_with_caller_camp(staged.topic, agent=staged.pro.agent, counted=True) is None
    assert orm_open_round(staged.topic, staged.pro.agent, counted=True) is None


# --- agent_with_token ----------------------------------------------------------------------------


def test_the_token_lookup_returns_the_agent_and_token_the_orm_returns():
    me = player(owner=AWKWARD)
    token = AgentToken.objects.get(agent=me.agent)
    ours, _ = one_query(sql.agent_with_token, token.prefix, used_before=timezone.now())
    twin = AgentToken.objects.select_related("agent").get(prefix=token.prefix)
    assert {name: getattr(ours, name) for name in fields(twin.agent)} == fields(twin.agent)
    assert ours.owner == AWKWARD
    assert (ours.token_id, ours.token_digest) == (twin.id, twin.digest)
    assert bool(ours.token_live) is (twin.revoked_at is None) is True
    assert sql.agent_with_token("0" * 12, used_before=timezone.now()) is None
    AgentToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    assert bool(sql.agent_with_token(token.prefix, used_before=timezone.now()).token_live) is False


def test_the_token_use_is_due_exactly_when_the_orm_says_last_use_is_older():
    me = player()
    token = AgentToken.objects.get(agent=me.agent)
    assert bool(sql.agent_with_token(token.prefix, used_before=timezone.now()).token_use_due) is True  # never used
    used = timezone.now().replace(microsecond=123456)
    AgentToken.objects.filter(pk=token.pk).update(last_used_at=used)
    for before in (used - timedelta(microseconds=1), used, used + timedelta(microseconds=1)):
        ours = bool(sql.agent_with_token(token.prefix, used_before=before).token_use_due)
        twin = AgentToken.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=before), pk=token.pk)
        assert ours is twin.exists(), before


# --- rating_ledger_share -------------------------------------------------------------------------


def test_the_ledger_share_lock_finds_the_row_the_orm_finds():
    RatingLedger.objects.get_or_create(pk=1)
    with transaction.atomic():
        ours, text = one_query(sql.rating_ledger_share)
        assert ours is RatingLedger.objects.filter(pk=1).exists() is True
    if connection.vendor == "mysql":
        assert text.endswith("LOCK IN SHARE MODE")
    RatingLedger.objects.all().delete()
    assert sql.rating_ledger_share() is False


# --- events_after --------------------------------------------------------------------------------


def orm_events_after(model, key: str, cursors: list, *, limit: int) -> list:
    where = functools.reduce(operator.or_, (Q(**{key: k, "seq__gt": seq}) for k, seq in cursors))
    return list(model.objects.filter(where).order_by(key, "seq").values_list(key, "seq", "kind", "data")[:limit])


@pytest.mark.parametrize("log", ["topic", "agent"])
def test_the_events_after_each_cursor_equal_the_orm_twin(log):
    staged = [stage_topic("debating", now=timezone.now(), title=AWKWARD) for _ in range(3)]
    data = {"text": AWKWARD, "nested": {"n": [1, 2.5, None, True]}}
    if log == "topic":
        model, key, keys = TopicEvent, "topic_id", [s.topic.pk for s in staged]
        for k in keys:
            TopicEvent.objects.bulk_create(
                TopicEvent(topic_id=k, seq=seq, kind=EventKind.ARGUMENT_POSTED, data=data)
                for seq in range(Topic.objects.get(pk=k).event_seq + 1, 30)
            )
    else:
        model, key, keys = AgentEvent, "agent_id", [s.pro.agent.pk for s in staged]
        for k in keys:
            start = Agent.objects.get(pk=k).event_seq + 1
            AgentEvent.objects.bulk_create(
                AgentEvent(agent_id=k, seq=seq, kind=AgentEventKind.PLACED, data=data) for seq in range(start, 30)
            )
    # Cursors before, inside and past each log; a key with no events; one key given as a string.
    cursors = [(keys[0], 0), (str(keys[1]), 17), (keys[2], 29), (uuid.uuid4(), 0)]
    for limit in (1, 20, 500):
        ours, text = one_query(sql.events_after, model, key, cursors, limit=limit)
        twin = orm_events_after(model, key, cursors, limit=limit)
        assert ours == twin, limit
        assert f"LIMIT {limit}" in text
    by_cursor = {(k, seq): (kind, value) for k, seq, kind, value in ours}
    assert (keys[0], 1) in by_cursor and (keys[1], 17) not in by_cursor and (keys[2], 29) not in by_cursor
    assert by_cursor[(keys[1], 18)][1] == data  # the JSON as the ORM converts it, awkward text and all
    assert all(isinstance(k, uuid.UUID) for k, _, _, _ in ours)
    assert sql.events_after(model, key, [(uuid.uuid4(), 0)], limit=10) == []
