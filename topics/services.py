"""What agents do to a topic: sign up, withdraw, argue, judge.

Each service is one transaction that locks the topic row first
(``orchestrator.transitions.lock_topic``), so the ticker and concurrent
requests see these changes in a single order, then checks the gates in
the contract's order (role, then state) and writes. Input has been
validated by the caller (the API serializers); status changes go through
``orchestrator.transitions``.
"""

from __future__ import annotations

import functools
from datetime import datetime
from uuid import UUID

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from orchestrator import transitions
from topics.errors import (
    AlreadySignedUp,
    DebateNotActive,
    NotADebater,
    NotSignedUp,
    NotTheJudge,
    RoundLimitReached,
    SignupClosed,
    TopicNotFound,
    VerdictExists,
    VerdictNotOpen,
)
from topics.models import Agent, Argument, Camp, CampName, EventKind, Round, Signup, Topic, TopicStatus, Verdict
from topics.representations import argument_data, timestamp
from topics.sql import insert_rows


def _lock(topic_id: UUID | str) -> Topic:
    topic = transitions.lock_topic(topic_id)
    if topic is None:
        raise TopicNotFound()
    return topic


def _signup_is_open(topic: Topic, now: datetime) -> bool:
    # The close time counts even before the ticker has moved the status on.
    return topic.status == TopicStatus.SIGNUP_OPEN and now < topic.signup_close_at


@transaction.atomic
def signup_create(*, topic_id: UUID | str, agent: Agent, camp: str | None, now: datetime | None = None) -> Signup:
    """Volunteer ``agent`` for ``camp`` (None: any camp) on an open topic."""
    now = now or timezone.now()
    topic = _lock(topic_id)
    # Being signed up already is the more useful answer than "closed" to an agent that retried.
    if Signup.objects.filter(topic=topic, agent=agent).exists():
        raise AlreadySignedUp()
    if not _signup_is_open(topic, now):
        raise SignupClosed(_signup_closed_detail(topic, now))
    try:
        # The savepoint keeps the transaction usable if the unique constraint (the backstop) fires.
        with transaction.atomic():
            return Signup.objects.create(topic=topic, agent=agent, camp=camp)
    except IntegrityError:
        raise AlreadySignedUp() from None


@transaction.atomic
def signup_withdraw(*, topic_id: UUID | str, agent: Agent, now: datetime | None = None) -> None:
    now = now or timezone.now()
    topic = _lock(topic_id)
    signup = Signup.objects.filter(topic=topic, agent=agent).first()
    if signup is None:
        raise NotSignedUp()
    if not _signup_is_open(topic, now):
        raise SignupClosed(_signup_closed_detail(topic, now))
    signup.delete()


def _signup_closed_detail(topic: Topic, now: datetime) -> str:
    if topic.status == TopicStatus.CREATED:
        return f"Signup opens at {timestamp(topic.signup_open_at)}."
    return f"Signup closed at {timestamp(topic.signup_close_at)} (topic status: {topic.status})."


def _camp_of(topic: Topic, agent: Agent) -> str | None:
    # order_by(): Camp's default ordering would join the topic table for nothing.
    return Camp.objects.filter(topic=topic, agent=agent).order_by().values_list("camp", flat=True).first()


def _open_round(topic: Topic, *, agent: Agent, counted: bool) -> Round | None:
    """The open round, annotated with ``caller_camp`` (``agent``'s camp) and, when ``counted``,
    ``pro_posted`` / ``con_posted`` (each camp's arguments in it).

    One query instead of three, and hand-written: this is the hot path of the
    API, and the ORM's compilation of it cost more CPU than running it
    (docs/api.md, "Benchmark"). Counting is only done when the topic has a
    per-round limit, since it grows with the round.
    """
    params = [
        Agent._meta.pk.get_db_prep_value(agent.pk, connection),
        Topic._meta.pk.get_db_prep_value(topic.pk, connection),
    ]
    sql = _open_round_sql(connection.vendor, counted)
    return next(iter(Round.objects.raw(sql, params, using=connection.alias)), None)  # in the write transaction


@functools.cache
def _open_round_sql(vendor: str, counted: bool) -> str:  # vendor: the quoting differs per backend
    rounds, camps, arguments = (connection.ops.quote_name(m._meta.db_table) for m in (Round, Camp, Argument))
    counts = "".join(
        f", (SELECT COUNT(*) FROM {arguments} a WHERE a.round_id = r.id AND a.camp = '{camp}') AS {camp}_posted"
        for camp in (CampName.PRO, CampName.CON)
        if counted
    )
    return (
        f"SELECT r.*, (SELECT c.camp FROM {camps} c WHERE c.topic_id = r.topic_id AND c.agent_id = %s LIMIT 1)"
        f" AS caller_camp{counts} FROM {rounds} r WHERE r.topic_id = %s AND r.closed_at IS NULL"
        " ORDER BY r.round_no DESC LIMIT 1"
    )


@transaction.atomic
def argument_create(*, topic_id: UUID | str, agent: Agent, content: str, now: datetime | None = None) -> Argument:
    """Post ``content`` (already validated) for the agent's camp in the topic's open round."""
    now = now or timezone.now()
    topic = _lock(topic_id)
    limit = topic.max_arguments_per_round
    # While debating there is always an open round, and reading it also gives the caller's camp.
    rnd = _open_round(topic, agent=agent, counted=limit is not None) if topic.status == TopicStatus.DEBATING else None
    camp = rnd.caller_camp if rnd is not None else _camp_of(topic, agent)
    if camp not in (CampName.PRO, CampName.CON):
        raise NotADebater()
    if topic.status != TopicStatus.DEBATING:
        raise DebateNotActive(f"Arguments are accepted while the topic is debating; it is {topic.status}.")
    if now >= topic.debate_end_at:
        raise DebateNotActive(f"The debate ended at {timestamp(topic.debate_end_at)}.")
    if rnd is None or (rnd.closes_at <= now and rnd.round_no < topic.round_count - 1):
        # The ticker is late with a round boundary: apply it so the argument lands in the right round.
        transitions.catch_up_rounds(topic, now=now)
        rnd = _open_round(topic, agent=agent, counted=limit is not None)
    if rnd is None:
        raise DebateNotActive("No round is open.")
    # The count is exact: arguments for this topic are only inserted under its row lock, which we hold.
    if limit is not None and getattr(rnd, f"{camp}_posted") >= limit:
        raise RoundLimitReached(
            f"The {camp} camp has posted {limit} argument{'s' if limit != 1 else ''} in round {rnd.round_no}, "
            f"the limit; the round closes at {timestamp(rnd.closes_at)}."
        )
    argument = Argument(topic=topic, round=rnd, agent=agent, camp=camp, content=content)
    insert_rows([argument])
    transitions.record_events(topic, [(EventKind.ARGUMENT_POSTED, argument_data(argument))])
    return argument


@transaction.atomic
def verdict_create(
    *, topic_id: UUID | str, judge: Agent, verdict: dict, rationale: str, now: datetime | None = None
) -> Verdict:
    """Accept the judge's verdict (already valid against the topic's schema) and complete the topic."""
    now = now or timezone.now()
    topic = _lock(topic_id)
    if not Camp.objects.filter(topic=topic, agent=judge, camp=CampName.JUDGE).exists():
        raise NotTheJudge()
    if Verdict.objects.filter(topic=topic).exists():
        raise VerdictExists()
    if topic.status == TopicStatus.DEBATING and now >= topic.debate_end_at:
        # The ticker has not ended the debate yet; do it here, in this transaction.
        transitions.end_debate(topic, now=now)
    if topic.status != TopicStatus.JUDGING:
        if topic.status == TopicStatus.DEBATING:
            raise VerdictNotOpen(f"The debate ends at {timestamp(topic.debate_end_at)}; judge after that.")
        raise VerdictNotOpen(f"This topic is {topic.status}; it takes no verdict.")
    if topic.verdict_due_at is not None and now >= topic.verdict_due_at:
        # The ticker cancels the topic at this deadline; a late verdict must not race it.
        raise VerdictNotOpen(f"The verdict was due by {timestamp(topic.verdict_due_at)}.")
    try:
        with transaction.atomic():
            accepted = Verdict.objects.create(topic=topic, judge=judge, verdict=verdict, rationale=rationale)
    except IntegrityError:
        raise VerdictExists() from None
    transitions.complete(topic, verdict=accepted, now=now)
    return accepted
