"""The state machine: the one place that changes a topic's status.

Every write to a topic, from the ticker, the API or the admin, locks the
topic row here first (``topic_lock``, or ``topic_lock_any`` for the ticker's
claim) and appends its TopicEvents here, with the gap-free per-topic ``seq``
that only advances under that lock. Every function runs inside the
caller's transaction. Each edge function checks that its edge is allowed,
writes the change with a conditional UPDATE (a second guard behind the row
lock, and the only one on SQLite), appends the events and queues the
announcement (``topics.announcements``). The AgentEvents that tell agents
when to act are appended here too (``agent_events_append``), in the same
transaction, with the webhook deliveries they imply.

The lock order, the one every writer follows (docs/architecture.md#lock-order):

1. the topic row (``topic_lock``, ``topic_lock_any``);
2. a ballot, verdict or completion of a rated topic only: the ``RatingLedger``
   row in share mode (``topic_lock_for_completion``);
3. the agents' rows (every seat's, a panel's judges included), all in one
   statement in primary-key order (``topic_lock_agents``, ``agents_lock``);
4. then rows that refer to those agents are inserted or changed (ballots, a
   verdict, AgentEvents, webhook deliveries, ratings).

Agents before step 4 because an insert's foreign-key check takes a shared
lock on the agent's row, and two transactions that then both want it
exclusively deadlock. The ledger before the agents because the rating
rebuild's swap holds the ledger exclusively and then takes those shared
locks through its own upserts: a completion holding an agent while it waited
for the ledger closed a circle with it. Every other transition skips step 2
and never waits for the ledger, so it cannot close one.

This lives in ``topics`` rather than in the ticker's app because every
write path needs it: the ticker (``orchestrator``) drives the clock and
calls these functions, as the API's services and the admin do.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import F, QuerySet

from fabric_bridge import webhooks
from fabric_bridge.models import AnnouncementKind
from topics import panels, ratings, rules, sql
from topics.allocator import Allocation, Volunteer, allocate
from topics.announcements import topic_announce
from topics.models import (
    Agent,
    AgentEvent,
    AgentEventKind,
    Ballot,
    Camp,
    CampName,
    EventKind,
    Round,
    Signup,
    Topic,
    TopicEvent,
    TopicStatus,
    Verdict,
)
from topics.outcomes import verdict_of_outcome, verdict_outcome
from topics.representations import agent_ref, camps_data, timestamp, verdict_data

logger = logging.getLogger("topics.transitions")

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
# One AgentEvent to append: (agent id, kind, data).
Notice = tuple[Any, str, dict[str, Any]]
A = AgentEventKind


class TransitionError(Exception):
    """The edge is not allowed from the topic's current status."""


class StaleTopic(Exception):
    """The topic row changed under us: the caller did not hold its lock, or another writer won."""


# --- the lock and the event writer ----------------------------------------------------------


def topic_lock(topic_id: Any) -> Topic | None:
    """Lock and return the topic row, or None when it is missing."""
    assert connection.in_atomic_block, "topic_lock needs a transaction"
    return sql.topic_select_for_update(topic_id)


def topic_lock_any(candidates: QuerySet[Topic]) -> Topic | None:
    """Lock and return one topic of ``candidates`` that no other transaction holds, or None.

    The ticker's claim: several tickers reading the same due ids each get a
    different one, and never one another ticker already moved on (the filter
    is evaluated again once the row is locked, and then reads its current
    state). The lock is taken through the primary key alone: a locking scan
    of a secondary index (``status, <due time>``) keeps its locks on the
    index entries of rows it skipped, and a transition that then waits for
    an agent's row (``agents_lock``) while another waits to change one of
    those entries is a deadlock. And unordered: with an ORDER BY (``first()``
    would add Topic's ``-created_at``) MySQL reads, sorts and so locks every
    candidate to return one, and the other tickers, finding the whole window
    held, drop it until their next drain.
    """
    assert connection.in_atomic_block, "topic_lock_any needs a transaction"
    if not connection.features.has_select_for_update:
        # SQLite: the IMMEDIATE transaction already holds the database's write lock.
        return next(iter(candidates.order_by()[:1]), None)
    skip_locked = connection.features.has_select_for_update_skip_locked
    ids = list(candidates.order_by().values_list("pk", flat=True))  # a plain read: locks nothing
    while ids:
        # Only the primary key in the condition, so that is the index the lock goes through.
        locked = Topic.objects.filter(pk__in=ids).order_by().select_for_update(skip_locked=skip_locked)
        topic = next(iter(locked[:1]), None)
        if topic is None:
            return None  # every candidate is held by another transaction
        if candidates.filter(pk=topic.pk).exists():
            return topic
        ids.remove(topic.pk)  # moved on meanwhile; its lock is held until commit, which costs nobody much
    return None


def _write(topic: Topic, events: list[Event], *, status: str | None = None, cancelled_reason: str | None = None):
    """Advance the topic's event counter (and status), append the events. The single writer of ``status``."""
    assert connection.in_atomic_block, "topic changes happen inside a transaction"
    first_seq = topic.event_seq + 1
    updates: dict[str, Any] = {"event_seq": topic.event_seq + len(events)}
    if status is not None:
        updates["status"] = status
    if cancelled_reason is not None:
        updates["cancelled_reason"] = cancelled_reason
    if sql.topic_update_if_unchanged(topic, updates) != 1:
        raise StaleTopic(f"topic {topic.pk} changed concurrently (expected status {topic.status})")
    TopicEvent.objects.bulk_create(
        [TopicEvent(topic=topic, seq=first_seq + i, kind=k, data=data) for i, (k, data) in enumerate(events)]
    )
    for field, value in updates.items():
        setattr(topic, field, value)


def agents_lock(agent_ids: Iterable[Any]) -> dict[uuid.UUID, int]:
    """Lock the agents' rows in primary-key order; returns each one's ``event_seq``.

    A transaction that will tell several agents locks them all in one call
    first (``topic_lock_agents``): locking one set and then another would take
    them out of order.
    """
    assert connection.in_atomic_block, "agents_lock needs a transaction"
    rows = Agent.objects.filter(pk__in={_agent_key(a) for a in agent_ids}).order_by("pk").select_for_update()
    return dict(rows.values_list("pk", "event_seq"))


def _agents_lock_with_webhooks(agent_ids: Iterable[Any]) -> tuple[dict[uuid.UUID, int], dict[uuid.UUID, int]]:
    """``agents_lock``, and the agents' webhook ids in the same statement (the join locks those rows too)."""
    rows = Agent.objects.filter(pk__in={_agent_key(a) for a in agent_ids}).order_by("pk").select_for_update()
    seqs: dict[uuid.UUID, int] = {}
    hooks: dict[uuid.UUID, int] = {}
    for pk, seq, hook in rows.values_list("pk", "event_seq", "webhook__id"):
        seqs[pk] = seq
        if hook is not None:
            hooks[pk] = hook
    return seqs, hooks


# (camp, seat) → the seated agent's id: what ``topic_lock_agents`` returns, and what the ratings rate.
Seats = dict[tuple[str, int], Any]


def topic_lock_agents(topic: Topic) -> Seats:
    """Lock the agents in the topic's seats (debaters and every judge), before anything inserts a row that
    refers to them.

    A foreign key's check takes a shared lock on the agent's row, and two
    transactions that then both want it exclusively deadlock. Returns each
    seat's agent id.
    """
    seats = _seats(topic)
    agents_lock(seats.values())
    return seats


def topic_lock_for_completion(topic: Topic) -> Seats:
    """What a ballot, a verdict or a completion locks after its topic, before it inserts a ballot or the verdict.

    Steps 2 and 3 of the lock order: the rating ledger in share mode when the
    topic is rated, then its seats' agents. Returns each seat's agent id.
    """
    ratings.topic_hold_ledger(topic)
    return topic_lock_agents(topic)


def _agent_key(agent_id: Any) -> uuid.UUID:
    return agent_id if isinstance(agent_id, uuid.UUID) else uuid.UUID(str(agent_id))


def agent_events_append(notices: list[Notice]) -> list[AgentEvent]:
    """Append AgentEvents with each agent's gap-free ``seq``, and queue their webhook deliveries.

    The seq only advances under the agent's row lock (``agents_lock``, a no-op
    when the caller already holds it), so per agent commit order is seq order,
    which makes it a safe stream cursor as a topic's seq is.
    """
    if not notices:
        return []
    seqs, hooks = _agents_lock_with_webhooks(agent_id for agent_id, _, _ in notices)
    first = dict(seqs)
    rows = []
    for agent_id, kind, data in notices:
        key = _agent_key(agent_id)
        seqs[key] += 1
        rows.append(AgentEvent(agent_id=key, seq=seqs[key], kind=kind, data=data))
    by_count: dict[int, list[Any]] = {}
    for agent_id, seq in seqs.items():
        by_count.setdefault(seq - first[agent_id], []).append(agent_id)
    for count, agent_ids in by_count.items():
        Agent.objects.filter(pk__in=agent_ids).update(event_seq=F("event_seq") + count)
    AgentEvent.objects.bulk_create(rows)
    webhooks.enqueue([(hooks[r.agent_id], r.seq, r.kind, r.created_at, r.data) for r in rows if r.agent_id in hooks])
    return rows


def _about(topic: Topic, **data: Any) -> dict[str, Any]:
    """Every AgentEvent's data names its topic."""
    return {"topic_id": str(topic.pk), "title": topic.title, **data}


def _seats(topic: Topic) -> Seats:
    return {
        (camp, seat): pk for camp, seat, pk in Camp.objects.filter(topic=topic).values_list("camp", "seat", "agent_id")
    }


def _camps(topic: Topic) -> dict[str, Any]:
    """The debaters' camps → agent id (the judges have seats: ``_seats``)."""
    debaters = Camp.objects.filter(topic=topic, camp__in=(CampName.PRO, CampName.CON)).order_by()
    return dict(debaters.values_list("camp", "agent_id"))


def _round_opened_notices(topic: Topic, rnd: Round, camps: dict[str, Any]) -> list[Notice]:
    data = _about(
        topic,
        round=rnd.round_no,
        closes_at=timestamp(rnd.closes_at),
        # Per camp; None means no limit. A new round starts with the full allowance.
        arguments_left=topic.max_arguments_per_round,
    )
    return [(camps[camp], A.ROUND_OPENED, data) for camp in (CampName.PRO, CampName.CON) if camp in camps]


def topic_append_events(topic: Topic, events: list[Event]) -> None:
    """Append events that do not change the status (arguments posted)."""
    _write(topic, events)


def _log_on_commit(message: str, *args: object) -> None:
    # A transaction can still lose at commit (a Galera certification conflict) and be rerun:
    # the line says a transition happened, so it is written once it has.
    transaction.on_commit(lambda: logger.info(message, *args))


def _change_status(topic: Topic, to: str, *, reason: str, events: list[Event] = ()) -> None:
    """Move ``topic`` to ``to`` with ``reason`` (for a cancellation, also its ``cancelled_reason``)."""
    origin = topic.status
    if to not in ALLOWED[origin]:
        raise TransitionError(f"topic {topic.pk}: {origin} → {to} is not allowed")
    change: Event = (EventKind.STATUS_CHANGED, {"from": origin, "to": to, "reason": reason})
    if to == S.CANCELLED:
        # topic_cancelled is the terminal event of a cancelled topic's stream.
        _write(
            topic,
            [*events, change, (EventKind.TOPIC_CANCELLED, {"reason": reason})],
            status=to,
            cancelled_reason=reason,
        )
    else:
        _write(topic, [*events, change], status=to)
    _log_on_commit("topic %s %s → %s: %s", topic.pk, origin, to, reason)


# --- one function per edge of the state machine ---------------------------------------------


def topic_open_signup(topic: Topic, *, now: datetime) -> None:
    _change_status(topic, S.SIGNUP_OPEN, reason="signup opens")
    topic_announce(topic, AnnouncementKind.SIGNUP_OPENED, now=now)


def topic_close_signup(topic: Topic, *, now: datetime, rng: random.Random | None = None) -> Allocation | None:
    """Run the allocator: signup_open → signup_closed with camps, or → cancelled with its reason."""
    if topic.status != S.SIGNUP_OPEN:
        raise TransitionError(f"topic {topic.pk}: cannot close signup from {topic.status}")
    rows = Signup.objects.filter(topic=topic).values_list("agent_id", "camp", "agent__owner", "agent__name")
    names = {str(agent_id): name for agent_id, _, _, name in rows}
    volunteers = [Volunteer(agent_id=str(a), camp=c, owner=o or "") for a, c, o, _ in rows]
    result = allocate(volunteers, rng or random.SystemRandom(), judge_count=topic.judge_count)
    if not isinstance(result, Allocation):
        _cancel(topic, result.reason, now=now)
        return None
    seats = result.seats()
    placed = {agent_id: camp for camp, _seat, agent_id in seats}
    # Before the camps are inserted: their foreign keys must find the agents already locked.
    agent_events_append(
        [
            (agent_id, A.PLACED, _about(topic, camp=placed[agent_id], debate_start_at=timestamp(topic.debate_start_at)))
            if agent_id in placed
            else (agent_id, A.NOT_PLACED, _about(topic))
            for agent_id in names
        ]
    )
    Camp.objects.bulk_create(
        [Camp(topic=topic, camp=camp, seat=seat, agent_id=agent_id) for camp, seat, agent_id in seats]
    )
    # The event is what the stream shows everyone: a blind topic's debaters are masked in it.
    allocated = camps_data(topic, [(camp, seat, _Named(agent_id, names[agent_id])) for camp, seat, agent_id in seats])
    _change_status(
        topic,
        S.SIGNUP_CLOSED,
        reason=f"{len(volunteers)} signed up; camps allocated",
        events=[(EventKind.CAMPS_ALLOCATED, allocated)],
    )
    return result


class _Named:
    """An agent's id and name, enough for ``representations`` to show it without reading the row again."""

    def __init__(self, agent_id: Any, name: str) -> None:
        self.id, self.name = agent_id, name


def _round_create(topic: Topic, round_no: int) -> tuple[Round, Event]:
    opens_at, closes_at = topic.round_window(round_no)
    rnd = Round.objects.create(topic=topic, round_no=round_no, opens_at=opens_at, closes_at=closes_at)
    return rnd, (
        EventKind.ROUND_OPENED,
        {"round_no": round_no, "opens_at": timestamp(opens_at), "closes_at": timestamp(closes_at)},
    )


def _round_current(topic: Topic) -> Round | None:
    return Round.objects.filter(topic=topic, closed_at__isnull=True).order_by("-round_no").first()


def _round_close(rnd: Round | None, *, now: datetime) -> list[Event]:
    if rnd is None:
        return []
    Round.objects.filter(pk=rnd.pk).update(closed_at=now)
    return [(EventKind.ROUND_CLOSED, {"round_no": rnd.round_no, "closed_at": timestamp(now)})]


def _round_turn_over(topic: Topic, rnd: Round, *, now: datetime) -> Round:
    """Close ``rnd``, open the next round, append both events; returns the new round."""
    closed = _round_close(rnd, now=now)
    nxt, opened = _round_create(topic, rnd.round_no + 1)
    _write(topic, [*closed, opened])
    agent_events_append(_round_opened_notices(topic, nxt, _camps(topic)))
    _log_on_commit("topic %s round %d → round %d", topic.pk, rnd.round_no, nxt.round_no)
    return nxt


def topic_start_debate(topic: Topic, *, now: datetime) -> None:
    if topic.status != S.SIGNUP_CLOSED:
        raise TransitionError(f"topic {topic.pk}: cannot start the debate from {topic.status}")
    first, opened = _round_create(topic, 0)
    _change_status(topic, S.DEBATING, reason="debate starts; round 0 opened", events=[opened])
    agent_events_append(_round_opened_notices(topic, first, _camps(topic)))


def topic_advance_round(topic: Topic, *, now: datetime) -> bool:
    """Close the open round and open the next when its time is up. False when nothing is due."""
    if topic.status != S.DEBATING:
        return False
    rnd = _round_current(topic)
    if not rules.round_boundary_is_due(topic, rnd, now):
        return False
    _round_turn_over(topic, rnd, now=now)
    return True


def topic_catch_up_rounds(topic: Topic, *, now: datetime) -> Round | None:
    """Apply every round boundary that is due; returns the open round (None unless debating).

    The API calls this so ticker lag never misfiles an argument.
    """
    rnd = _round_current(topic) if topic.status == S.DEBATING else None
    while rules.round_boundary_is_due(topic, rnd, now):
        rnd = _round_turn_over(topic, rnd, now=now)
    return rnd


def topic_end_debate(topic: Topic, *, now: datetime) -> None:
    if topic.status != S.DEBATING:
        raise TransitionError(f"topic {topic.pk}: cannot end the debate from {topic.status}")
    # Rounds (pro and con) and judging (the judge) tell different agents: lock all three at once.
    topic_lock_agents(topic)
    # Boundaries nobody applied yet (a lagging ticker, or the verdict endpoint
    # getting here first) come first, so every round exists and closes in order.
    last = topic_catch_up_rounds(topic, now=now)
    _change_status(topic, S.JUDGING, reason="debate ends; awaiting verdict", events=_round_close(last, now=now))
    judges = [agent_id for (camp, _seat), agent_id in sorted(_seats(topic).items()) if camp == CampName.JUDGE]
    deadline = _about(topic, deadline=timestamp(topic.verdict_due_at))
    agent_events_append([(judge, A.JUDGING_OPENED, deadline) for judge in judges])


def _ballots(topic: Topic) -> list[Ballot]:
    return list(Ballot.objects.filter(topic=topic).select_related("judge", "seat").order_by("seat__seat"))


def topic_record_ballot(topic: Topic, *, ballot: Ballot, now: datetime, seats: Seats) -> Verdict | None:
    """A judge's ballot is in (``services.verdict_create`` wrote it): ``ballot_posted``, and the verdict once every
    seat has voted. ``seats``: what the caller's ``topic_lock_for_completion`` returned before it wrote the ballot.
    Returns the topic's verdict when this ballot completed the topic."""
    if topic.status != S.JUDGING:
        raise TransitionError(f"topic {topic.pk}: ballots are cast while judging, not {topic.status}")
    ballots = _ballots(topic)  # exact: ballots are only written under the topic's lock, which the caller holds
    if topic.is_panel:
        # Who voted and how many, not how: a panel's ballots stay sealed until the topic completes.
        # (A single judge's ballot is the verdict: its verdict_posted follows at once, as before panels.)
        posted = {"seat": ballot.seat.seat, "judge": agent_ref(ballot.judge), "ballots": len(ballots)}
        posted |= {"of": topic.judge_count, "created_at": timestamp(ballot.created_at)}
        topic_append_events(topic, [(EventKind.BALLOT_POSTED, posted)])
    if len(ballots) < topic.judge_count:
        return None
    return _decide(topic, ballots, now=now, reason="verdict accepted", seats=seats)


def _decide(topic: Topic, ballots: list[Ballot], *, now: datetime, reason: str, seats: Seats | None = None) -> Verdict:
    """Write the topic's verdict from ``ballots`` (``topics.panels``) and complete the topic."""
    # Before the verdict's foreign key touches the first judge's row; the API's caller took them already.
    seats = seats or topic_lock_for_completion(topic)
    schema = topic.verdict_schema.schema
    outcomes = [verdict_outcome(schema, b.verdict) for b in ballots]
    # A panel's schema has an outcome (Topic.clean); a single judge's may not, and then there is no split.
    result = panels.decide(outcomes) if topic.is_panel or None not in outcomes else None
    fields: dict[str, Any] = {"split": result.split, "tally": result.tally} if result else {}
    if not topic.is_panel:
        [ballot] = ballots
        fields |= {"judge": ballot.judge, "verdict": ballot.verdict, "rationale": ballot.rationale}
    else:
        described = "no majority: a draw" if result.tally[result.outcome] * 2 <= len(ballots) else result.outcome
        fields |= {
            "judge_id": seats[(CampName.JUDGE, 0)],
            "verdict": verdict_of_outcome(schema, result.outcome) or {"outcome": result.outcome},
            "rationale": f"{len(ballots)} of {topic.judge_count} judges voted, {result.split}: {described}.",
        }
    verdict = Verdict.objects.create(topic=topic, **fields)
    topic_complete(topic, verdict=verdict, now=now, ballots=ballots, reason=reason, seats=seats)
    return verdict


def topic_complete(
    topic: Topic,
    *,
    verdict: Verdict,
    now: datetime,
    ballots: list[Ballot] | None = None,
    seats: Seats,
    reason: str = "",
) -> None:
    """judging → completed with ``verdict`` (already written); ``ballots`` default to the topic's stored ones.

    ``seats`` is what the caller's ``topic_lock_for_completion`` returned: the
    locks are taken before the verdict or the last ballot is inserted (the
    lock order, above), so this function takes none of its own.
    """
    ballots = _ballots(topic) if ballots is None else ballots
    events: list[Event] = [(EventKind.VERDICT_POSTED, verdict_data(verdict, ballots))]
    if topic.blind_judging:
        # The reveal: the stream showed the debaters masked until now.
        debaters = Camp.objects.filter(topic=topic, camp__in=(CampName.PRO, CampName.CON)).select_related("agent")
        events.append((EventKind.IDENTITIES_REVEALED, {c.camp: agent_ref(c.agent) for c in debaters}))
    _change_status(topic, S.COMPLETED, reason=reason or "verdict accepted", events=events)
    # Under the topic's lock, in this transaction: a completion and its ratings commit together or not at all.
    # The agents' locks (in ``seats``) order rating changes among completions that share an agent.
    ratings.topic_record_rating(topic, verdict=verdict, seats=seats, now=now, ballots=ballots)
    completed = _about(topic, verdict=verdict.verdict)
    agent_events_append([(agent_id, A.TOPIC_COMPLETED, completed) for agent_id in sorted(set(seats.values()))])
    topic_announce(topic, AnnouncementKind.TOPIC_COMPLETED, now=now, verdict=verdict)


def topic_expire_verdict(topic: Topic, *, now: datetime) -> None:
    """At ``verdict_due_at``: a quorum of ballots (a majority of the seats) decides; fewer cancel the topic."""
    if topic.status != S.JUDGING:
        raise TransitionError(f"topic {topic.pk}: no verdict deadline applies in {topic.status}")
    due = timestamp(topic.verdict_due_at)
    ballots = _ballots(topic) if topic.is_panel else []
    if topic.is_panel and len(ballots) >= topic.ballot_quorum:
        _decide(topic, ballots, now=now, reason=f"verdict due by {due}: {len(ballots)} of {topic.judge_count} ballots")
        return
    if topic.is_panel:
        reason = f"no verdict by {due}: {len(ballots)} of {topic.judge_count} ballots, {topic.ballot_quorum} needed"
    else:
        reason = f"no verdict by {due}"
    _cancel(topic, reason, now=now)


def topic_cancel(topic: Topic, *, reason: str, now: datetime) -> None:
    """Staff cancellation from any non-terminal status."""
    reason = reason.strip()
    if not reason:
        raise TransitionError("a cancellation needs a reason")
    _cancel(topic, reason, now=now)


def _cancel(topic: Topic, reason: str, *, now: datetime) -> None:
    was_announced = topic.status != S.CREATED
    events = _round_close(_round_current(topic), now=now) if topic.status == S.DEBATING else []
    # Who was told anything about the topic: its camps once allocated, else everyone signed up.
    signed_up = Signup.objects.filter(topic=topic).values_list("agent_id", flat=True)
    concerned = sorted(set(_seats(topic).values())) or list(signed_up)
    _change_status(topic, S.CANCELLED, reason=reason, events=events)
    cancelled = _about(topic, reason=reason)
    agent_events_append([(agent_id, A.TOPIC_CANCELLED, cancelled) for agent_id in concerned])
    # A topic that was never announced is not un-announced either.
    if was_announced:
        topic_announce(topic, AnnouncementKind.TOPIC_CANCELLED, now=now)
