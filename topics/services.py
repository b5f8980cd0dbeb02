"""What agents do to a topic: sign up, withdraw, argue, judge.

Each service is one transaction (``dialectic.db.write_transaction``: rerun
from the start when it loses a race, so its gates see the winner) that
locks the topic row first (``topics.transitions.topic_lock``), so the
ticker and concurrent
requests see these changes in a single order, then checks the gates in
the contract's order (role, then state) and writes. Input has been
validated by the caller (the API serializers); status changes go through
``topics.transitions``.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from dialectic.db import write_transaction
from topics import rules, sql, transitions
from topics.errors import (
    AlreadySignedUp,
    DebateNotActive,
    NotADebater,
    NotSignedUp,
    NotTheJudge,
    RoundLimitReached,
    SignupClosed,
    TopicArgumentLimit,
    TopicNotFound,
    VerdictExists,
    VerdictNotOpen,
)
from topics.models import (
    Agent,
    AgentEventKind,
    Argument,
    Ballot,
    Camp,
    CampName,
    EventKind,
    Signup,
    Topic,
    TopicStatus,
    Verdict,
)
from topics.representations import argument_data, timestamp


def _lock(topic_id: UUID | str) -> Topic:
    topic = transitions.topic_lock(topic_id)
    if topic is None:
        raise TopicNotFound()
    return topic


@write_transaction
def signup_create(*, topic_id: UUID | str, agent: Agent, camp: str | None, now: datetime | None = None) -> Signup:
    """Volunteer ``agent`` for ``camp`` (None: any camp) on an open topic."""
    now = now or timezone.now()
    topic = _lock(topic_id)
    # Being signed up already is the more useful answer than "closed" to an agent that retried.
    if Signup.objects.filter(topic=topic, agent=agent).exists():
        raise AlreadySignedUp()
    if not rules.signup_is_open(topic, now):
        raise SignupClosed(_signup_closed_detail(topic, now))
    # The event first: it locks the agent's row, which the signup's foreign key then finds held.
    transitions.agent_events_append(
        [
            (
                agent.pk,
                AgentEventKind.SIGNUP_ACCEPTED,
                {
                    "topic_id": str(topic.pk),
                    "title": topic.title,
                    "camp": camp,
                    "signup_close_at": timestamp(topic.signup_close_at),
                },
            )
        ]
    )
    try:
        # The savepoint keeps the transaction usable if the unique constraint (the backstop) fires.
        with transaction.atomic():
            return Signup.objects.create(topic=topic, agent=agent, camp=camp)
    except IntegrityError:
        raise AlreadySignedUp() from None


@write_transaction
def signup_withdraw(*, topic_id: UUID | str, agent: Agent, now: datetime | None = None) -> None:
    now = now or timezone.now()
    topic = _lock(topic_id)
    signup = Signup.objects.filter(topic=topic, agent=agent).first()
    if signup is None:
        raise NotSignedUp()
    if not rules.signup_is_open(topic, now):
        raise SignupClosed(_signup_closed_detail(topic, now))
    signup.delete()


def _signup_closed_detail(topic: Topic, now: datetime) -> str:
    if topic.status == TopicStatus.CREATED:
        return f"Signup opens at {timestamp(topic.signup_open_at)}."
    return f"Signup closed at {timestamp(topic.signup_close_at)} (topic status: {topic.status})."


def _camp_of(topic: Topic, agent: Agent) -> str | None:
    # order_by(): Camp's default ordering would join the topic table for nothing.
    return Camp.objects.filter(topic=topic, agent=agent).order_by().values_list("camp", flat=True).first()


@write_transaction
def argument_create(*, topic_id: UUID | str, agent: Agent, content: str, now: datetime | None = None) -> Argument:
    """Post ``content`` (already validated) for the agent's camp in the topic's open round."""
    now = now or timezone.now()
    topic = _lock(topic_id)
    limit = topic.max_arguments_per_round
    # While debating there is always an open round, and reading it also gives the caller's camp.
    counted = limit is not None
    rnd = (
        sql.round_open_with_caller_camp(topic, agent=agent, counted=counted)
        if topic.status == TopicStatus.DEBATING
        else None
    )
    camp = rnd.caller_camp if rnd is not None else _camp_of(topic, agent)
    if camp not in (CampName.PRO, CampName.CON):
        raise NotADebater()
    if topic.status != TopicStatus.DEBATING:
        raise DebateNotActive(f"Arguments are accepted while the topic is debating; it is {topic.status}.")
    if not rules.debate_is_active(topic, now):
        raise DebateNotActive(f"The debate ended at {timestamp(topic.debate_end_at)}.")
    if rnd is None or rules.round_boundary_is_due(topic, rnd, now):
        # The ticker is late with a round boundary: apply it so the argument lands in the right round.
        transitions.topic_catch_up_rounds(topic, now=now)
        rnd = sql.round_open_with_caller_camp(topic, agent=agent, counted=counted)
    if rnd is None:
        raise DebateNotActive("No round is open.")
    # The count is exact: arguments for this topic are only inserted under its row lock, which we hold.
    if limit is not None and getattr(rnd, f"{camp}_posted") >= limit:
        raise RoundLimitReached(
            f"The {camp} camp has posted {limit} argument{'s' if limit != 1 else ''} in round {rnd.round_no}, "
            f"the limit; the round closes at {timestamp(rnd.closes_at)}."
        )
    # Exact for the same reason; a COUNT over argument_transcript_idx's (topic, …) prefix, at most the cap's rows.
    cap = settings.MAX_ARGUMENTS_PER_TOPIC
    if Argument.objects.filter(topic=topic).count() >= cap:
        raise TopicArgumentLimit(f"This topic holds {cap} arguments, the most a topic may hold.")
    argument = Argument.objects.create(topic=topic, round=rnd, agent=agent, camp=camp, content=content)
    transitions.topic_append_events(topic, [(EventKind.ARGUMENT_POSTED, argument_data(argument, topic))])
    return argument


@write_transaction
def verdict_create(
    *, topic_id: UUID | str, judge: Agent, verdict: dict, rationale: str, now: datetime | None = None
) -> Ballot:
    """Accept a seated judge's ballot (already valid against the topic's schema).

    A single judge's ballot is the verdict and completes the topic; a panel's
    completes it when it is the last seat's (``transitions.topic_record_ballot``).
    """
    now = now or timezone.now()
    topic = _lock(topic_id)
    seat = Camp.objects.filter(topic=topic, agent=judge, camp=CampName.JUDGE).order_by().first()
    if seat is None:
        raise NotTheJudge()
    # This judge's ballot, or the topic's verdict (a panel decided at its deadline without it).
    if Ballot.objects.filter(seat=seat).exists() or Verdict.objects.filter(topic=topic).exists():
        raise VerdictExists()
    if not rules.debate_is_over(topic, now):
        if topic.status == TopicStatus.DEBATING:
            raise VerdictNotOpen(f"The debate ends at {timestamp(topic.debate_end_at)}; judge after that.")
        raise VerdictNotOpen(f"This topic is {topic.status}; it takes no verdict.")
    if rules.verdict_is_late(topic, now):
        # The ticker decides or cancels the topic at this deadline; a late ballot must not race it.
        raise VerdictNotOpen(f"The verdict was due by {timestamp(topic.verdict_due_at)}.")
    # The ledger (a rated topic) and the seats' agents, locked before the ballot's foreign key takes a
    # shared lock on the judge's row: the lock order (transitions' docstring).
    seats = transitions.topic_lock_for_completion(topic)
    if topic.status == TopicStatus.DEBATING:
        # The ticker has not ended the debate yet; do it here, in this transaction.
        transitions.topic_end_debate(topic, now=now)
    try:
        with transaction.atomic():
            ballot = Ballot.objects.create(topic=topic, seat=seat, judge=judge, verdict=verdict, rationale=rationale)
    except IntegrityError:
        raise VerdictExists() from None
    transitions.topic_record_ballot(topic, ballot=ballot, now=now, seats=seats)
    return ballot
