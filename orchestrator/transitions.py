"""The one place that changes a topic's status.

Every function here runs inside the caller's transaction, on a topic row the
caller has locked (``lock_topic``). Each checks that its edge of the state
machine is allowed, writes the change with a conditional UPDATE (a second
guard behind the row lock, and the only guard on SQLite), appends the
TopicEvents with gap-free per-topic ``seq`` and queues the announcement.
The ticker, the API and the admin all call these functions.
"""

from __future__ import annotations

import functools
import logging
import random
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet

from fabric_bridge import outbox
from fabric_bridge.models import AnnouncementKind
from orchestrator.allocator import Allocation, Volunteer, allocate
from topics.models import (
    Camp,
    EventKind,
    Round,
    Signup,
    Topic,
    TopicEvent,
    TopicStatus,
    Verdict,
)
from topics.representations import timestamp, verdict_data
from topics.sql import insert_rows

logger = logging.getLogger("orchestrator.transitions")

S = TopicStatus
ALLOWED: dict[str, set[str]] = {
    S.CREATED: {S.SIGNUP_OPEN, S.CANCELLED},
    S.SIGNUP_OPEN: {S.SIGNUP_CLOSED, S.CANCELLED},
    S.SIGNUP_CLOSED: {S.DEBATING, S.CANCELLED},
    S.DEBATING: {S.JUDGING, S.CANCELLED},
    S.JUDGING: {S.COMPLETED, S.CANCELLED},
    S.COMPLETED: set(),
    S.CANCELLED: set(),
}

Event = tuple[str, dict[str, Any]]


class TransitionError(Exception):
    """The edge is not allowed from the topic's current status."""


class StaleTopic(Exception):
    """The topic row changed under us: the caller did not hold its lock, or another writer won."""


def lock_topic(topic_id) -> Topic | None:
    """Lock and return the topic row, or None when it is missing.

    On SQLite row locks do not exist; the IMMEDIATE transaction holds the
    database's write lock instead, so the re-read here is current.
    """
    assert connection.in_atomic_block, "lock_topic needs a transaction"
    # Every write to a topic starts here, so the SQL is hand-written: the ORM took longer to
    # compile even this query than the database took to run it (docs/api.md, "Benchmark");
    # raw() still converts the columns as the ORM would. No join: MySQL would lock the joined
    # rows too (the shared verdict schema).
    topic_id = Topic._meta.pk.get_db_prep_value(topic_id, connection)
    # using=: raw() reads from the router's read database; a lock belongs with the writes.
    return next(iter(Topic.objects.raw(_lock_sql(connection.vendor), [topic_id], using=connection.alias)), None)


@functools.cache
def _lock_sql(vendor: str) -> str:  # vendor: the text depends on the backend, so it keys the cache
    sql = f"SELECT * FROM {connection.ops.quote_name(Topic._meta.db_table)} WHERE id = %s"
    return sql + " FOR UPDATE" if connection.features.has_select_for_update else sql


def lock_any(candidates: QuerySet[Topic]) -> Topic | None:
    """Lock and return one topic of ``candidates`` that no other transaction holds, or None.

    The ticker's claim: several tickers reading the same due ids each get a
    different one, and never one another ticker already moved on (the filter
    is evaluated on the locked, current row). Unordered on purpose: with an
    ORDER BY, MySQL reads, sorts and so locks every candidate to return one.
    """
    assert connection.in_atomic_block, "lock_any needs a transaction"
    qs = candidates.order_by()
    if connection.features.has_select_for_update:
        qs = qs.select_for_update(skip_locked=connection.features.has_select_for_update_skip_locked)
    return next(iter(qs[:1]), None)


@functools.cache
def _update_sql(vendor: str, fields: tuple[str, ...]) -> str:  # vendor keys the cache, as for _lock_sql
    assignments = ", ".join(f"{connection.ops.quote_name(field)} = %s" for field in fields)
    return (
        f"UPDATE {connection.ops.quote_name(Topic._meta.db_table)} SET {assignments}"
        " WHERE id = %s AND status = %s AND event_seq = %s"
    )


def _write(topic: Topic, events: list[Event], *, status: str | None = None, cancelled_reason: str | None = None):
    """Advance the topic's event counter (and status), append the events. The single writer of ``status``."""
    assert connection.in_atomic_block, "topic changes happen inside a transaction"
    first_seq = topic.event_seq + 1
    updates: dict[str, Any] = {"event_seq": topic.event_seq + len(events)}
    if status is not None:
        updates["status"] = status
    if cancelled_reason is not None:
        updates["cancelled_reason"] = cancelled_reason
    # The conditional UPDATE, hand-written for the same reason as lock_topic's SELECT. The values
    # are ints and strings, which every backend takes as they are.
    params = [*updates.values(), Topic._meta.pk.get_db_prep_value(topic.pk, connection), topic.status, topic.event_seq]
    with transaction.mark_for_rollback_on_error(), connection.cursor() as cursor:
        cursor.execute(_update_sql(connection.vendor, tuple(updates)), params)
        changed = cursor.rowcount  # rows matched: Django asks MySQL for found rows, not changed ones
    if changed != 1:
        raise StaleTopic(f"topic {topic.pk} changed concurrently (expected status {topic.status})")
    created = [TopicEvent(topic=topic, seq=first_seq + i, kind=k, data=data) for i, (k, data) in enumerate(events)]
    insert_rows(created)
    for field, value in updates.items():
        setattr(topic, field, value)
    return created


def record_events(topic: Topic, events: list[Event]) -> list[TopicEvent]:
    """Append events that do not change the status (arguments posted). The events' ids are not read back."""
    return _write(topic, events)


def _change_status(topic: Topic, to: str, *, reason: str = "", events: list[Event] = (), cancelled_reason=None):
    origin = topic.status
    if to not in ALLOWED[origin]:
        raise TransitionError(f"topic {topic.pk}: {origin} → {to} is not allowed")
    change: Event = (EventKind.STATUS_CHANGED, {"from": origin, "to": to, "reason": reason or cancelled_reason or ""})
    if to == S.CANCELLED:
        # topic_cancelled is the terminal event of a cancelled topic's stream.
        all_events = [*events, change, (EventKind.TOPIC_CANCELLED, {"reason": cancelled_reason})]
    else:
        all_events = [*events, change]
    _write(topic, all_events, status=to, cancelled_reason=cancelled_reason)
    logger.info("topic %s %s → %s: %s", topic.pk, origin, to, reason or cancelled_reason or "-")


# --- one function per edge --------------------------------------------------


def open_signup(topic: Topic, *, now: datetime) -> None:
    _change_status(topic, S.SIGNUP_OPEN, reason="signup opens")
    outbox.enqueue(topic, AnnouncementKind.SIGNUP_OPENED, now=now)


def close_signup(topic: Topic, *, now: datetime, rng: random.Random | None = None) -> Allocation | None:
    """Run the allocator: signup_open → signup_closed with camps, or → cancelled with its reason."""
    if topic.status != S.SIGNUP_OPEN:
        raise TransitionError(f"topic {topic.pk}: cannot close signup from {topic.status}")
    rows = Signup.objects.filter(topic=topic).values_list("agent_id", "camp", "agent__owner", "agent__name")
    names = {str(agent_id): name for agent_id, _, _, name in rows}
    volunteers = [Volunteer(agent_id=str(a), camp=c, owner=o or "") for a, c, o, _ in rows]
    result = allocate(volunteers, rng or random.SystemRandom())
    if not isinstance(result, Allocation):
        _cancel(topic, result.reason, now=now)
        return None
    camps = result.as_dict()
    Camp.objects.bulk_create([Camp(topic=topic, camp=camp, agent_id=agent_id) for camp, agent_id in camps.items()])
    allocated = {camp: {"id": agent_id, "name": names[agent_id]} for camp, agent_id in camps.items()}
    _change_status(
        topic,
        S.SIGNUP_CLOSED,
        reason=f"{len(volunteers)} signed up; camps allocated",
        events=[(EventKind.CAMPS_ALLOCATED, allocated)],
    )
    return result


def _open_round(topic: Topic, round_no: int) -> tuple[Round, Event]:
    opens_at, closes_at = topic.round_window(round_no)
    rnd = Round.objects.create(topic=topic, round_no=round_no, opens_at=opens_at, closes_at=closes_at)
    return rnd, (
        EventKind.ROUND_OPENED,
        {"round_no": round_no, "opens_at": timestamp(opens_at), "closes_at": timestamp(closes_at)},
    )


def _current_round(topic: Topic) -> Round | None:
    return Round.objects.filter(topic=topic, closed_at__isnull=True).order_by("-round_no").first()


def _close_round(rnd: Round | None, *, now: datetime) -> list[Event]:
    if rnd is None:
        return []
    Round.objects.filter(pk=rnd.pk).update(closed_at=now)
    return [(EventKind.ROUND_CLOSED, {"round_no": rnd.round_no, "closed_at": timestamp(now)})]


def _boundary_due(topic: Topic, rnd: Round | None, now: datetime) -> bool:
    return rnd is not None and rnd.closes_at <= now and rnd.round_no < topic.round_count - 1


def _turn_over(topic: Topic, rnd: Round, *, now: datetime) -> Round:
    """Close ``rnd``, open the next round, append both events; returns the new round."""
    closed = _close_round(rnd, now=now)
    nxt, opened = _open_round(topic, rnd.round_no + 1)
    _write(topic, [*closed, opened])
    logger.info("topic %s round %d → round %d", topic.pk, rnd.round_no, nxt.round_no)
    return nxt


def start_debate(topic: Topic, *, now: datetime) -> None:
    if topic.status != S.SIGNUP_CLOSED:
        raise TransitionError(f"topic {topic.pk}: cannot start the debate from {topic.status}")
    _, opened = _open_round(topic, 0)
    _change_status(topic, S.DEBATING, reason="debate starts; round 0 opened", events=[opened])


def advance_round(topic: Topic, *, now: datetime) -> bool:
    """Close the open round and open the next when its time is up. False when nothing is due."""
    if topic.status != S.DEBATING:
        return False
    rnd = _current_round(topic)
    if not _boundary_due(topic, rnd, now):
        return False
    _turn_over(topic, rnd, now=now)
    return True


def catch_up_rounds(topic: Topic, *, now: datetime) -> Round | None:
    """Apply every round boundary that is due; returns the open round (None unless debating).

    The API calls this so ticker lag never misfiles an argument.
    """
    rnd = _current_round(topic) if topic.status == S.DEBATING else None
    while _boundary_due(topic, rnd, now):
        rnd = _turn_over(topic, rnd, now=now)
    return rnd


def end_debate(topic: Topic, *, now: datetime) -> None:
    if topic.status != S.DEBATING:
        raise TransitionError(f"topic {topic.pk}: cannot end the debate from {topic.status}")
    # Boundaries nobody applied yet (a lagging ticker, or the verdict endpoint
    # getting here first) come first, so every round exists and closes in order.
    last = catch_up_rounds(topic, now=now)
    _change_status(topic, S.JUDGING, reason="debate ends; awaiting verdict", events=_close_round(last, now=now))


def complete(topic: Topic, *, verdict: Verdict, now: datetime) -> None:
    _change_status(
        topic, S.COMPLETED, reason="verdict accepted", events=[(EventKind.VERDICT_POSTED, verdict_data(verdict))]
    )
    outbox.enqueue(topic, AnnouncementKind.TOPIC_COMPLETED, now=now, verdict=verdict)


def expire_verdict(topic: Topic, *, now: datetime) -> None:
    if topic.status != S.JUDGING:
        raise TransitionError(f"topic {topic.pk}: no verdict deadline applies in {topic.status}")
    _cancel(topic, f"no verdict by {timestamp(topic.verdict_due_at)}", now=now)


def cancel(topic: Topic, *, reason: str, now: datetime) -> None:
    """Staff cancellation from any non-terminal status."""
    reason = reason.strip()
    if not reason:
        raise TransitionError("a cancellation needs a reason")
    _cancel(topic, reason, now=now)


def _cancel(topic: Topic, reason: str, *, now: datetime) -> None:
    was_announced = topic.status != S.CREATED
    events = _close_round(_current_round(topic), now=now) if topic.status == S.DEBATING else []
    _change_status(topic, S.CANCELLED, events=events, cancelled_reason=reason)
    # A topic that was never announced is not un-announced either.
    if was_announced:
        outbox.enqueue(topic, AnnouncementKind.TOPIC_CANCELLED, now=now)
