"""The rules of a topic's life, each named once.

Pure predicates over a topic (or its round) and a moment, plus the query
expressions the ticker needs to find the same situations in the database.
Services, selectors, the ticker, the admin, the stream and ``create_topic``
ask these instead of restating a condition. Nothing here reads the
database or the clock: the caller passes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db.models import Exists, F, OuterRef, Q

from topics.models import EventKind, Round, TopicStatus

if TYPE_CHECKING:
    from topics.models import Topic

S = TopicStatus

# --- the topic is over ------------------------------------------------------------

FINISHED_STATUSES = frozenset({S.COMPLETED, S.CANCELLED})


def is_finished(status: str) -> bool:
    """``completed`` and ``cancelled`` are terminal: nothing happens to the topic again."""
    return status in FINISHED_STATUSES


def ends_stream(kind: str, data: Any) -> bool:
    """The last event a topic ever gets: its completion, or the ``topic_cancelled`` that closes a cancellation."""
    if kind == EventKind.TOPIC_CANCELLED:
        return True
    return kind == EventKind.STATUS_CHANGED and isinstance(data, dict) and data.get("to") == S.COMPLETED


# --- what is open at a moment -----------------------------------------------------


def signup_is_open(topic: Topic, now: datetime) -> bool:
    """Agents may sign up or withdraw. The close time counts even before the ticker moves the status on."""
    return topic.status == S.SIGNUP_OPEN and now < topic.signup_close_at


def debate_is_active(topic: Topic, now: datetime) -> bool:
    """Debaters may post. The end time counts even before the ticker moves the status on."""
    return topic.status == S.DEBATING and now < topic.debate_end_at


def debate_is_over(topic: Topic, now: datetime) -> bool:
    """The judge's turn has come: judging, or still debating with ``debate_end_at`` passed (ticker lag)."""
    return topic.status == S.JUDGING or (topic.status == S.DEBATING and now >= topic.debate_end_at)


def verdict_is_late(topic: Topic, now: datetime) -> bool:
    """The verdict deadline, when there is one, has passed: the ticker cancels the topic at it."""
    return topic.verdict_due_at is not None and now >= topic.verdict_due_at


def verdict_window_is_open(topic: Topic, now: datetime) -> bool:
    """A verdict posted now would be accepted (the judge's role and an existing verdict aside)."""
    return debate_is_over(topic, now) and not verdict_is_late(topic, now)


# --- rounds ---------------------------------------------------------------------


def round_at(topic: Topic, now: datetime) -> int:
    """The round whose window contains ``now`` (clamped to the last), as the ticker will see it."""
    for round_no in range(topic.round_count):
        if now < topic.round_window(round_no)[1]:
            return round_no
    return topic.round_count - 1


def round_boundary_is_due(topic: Topic, rnd: Round | None, now: datetime) -> bool:
    """``rnd`` (the topic's open round) has run its time and another round follows it."""
    return rnd is not None and rnd.closes_at <= now and rnd.round_no < topic.round_count - 1


def rounds_due_q(now: datetime | None = None) -> Q:
    """``round_boundary_is_due`` as a filter on rounds of debating topics.

    Without ``now`` the time condition is left to the caller (the ticker pages through it by ``closes_at``).
    """
    condition = Q(closed_at__isnull=True, topic__status=S.DEBATING, round_no__lt=F("topic__round_count") - 1)
    return condition & Q(closes_at__lte=now) if now is not None else condition


def topics_with_round_due_q(now: datetime) -> Q:
    """The same as a filter on topics. EXISTS, not a join: MySQL's FOR UPDATE would lock joined round rows too."""
    due = Round.objects.filter(
        topic=OuterRef("pk"), closed_at__isnull=True, closes_at__lte=now, round_no__lt=OuterRef("round_count") - 1
    )
    return Q(Exists(due), status=S.DEBATING)


# --- timed edges of the state machine ---------------------------------------------


@dataclass(frozen=True)
class TimedEdge:
    """An edge the clock takes: from ``status`` once the topic's ``at`` moment has passed."""

    status: str
    at: str

    def due_q(self, now: datetime | None = None) -> Q:
        """The same as a filter on topics; without ``now`` the time condition is left to the caller."""
        condition = Q(status=self.status)
        return condition & Q(**{f"{self.at}__lte": now}) if now is not None else condition


OPEN_SIGNUP = TimedEdge(S.CREATED, "signup_open_at")
CLOSE_SIGNUP = TimedEdge(S.SIGNUP_OPEN, "signup_close_at")
START_DEBATE = TimedEdge(S.SIGNUP_CLOSED, "debate_start_at")
END_DEBATE = TimedEdge(S.DEBATING, "debate_end_at")
EXPIRE_VERDICT = TimedEdge(S.JUDGING, "verdict_due_at")


# --- scheduling -------------------------------------------------------------------

# DESIGN.md's defaults for a new topic, shared by ``create_topic`` and the admin's add form.
DEFAULT_SIGNUP_FOR = timedelta(minutes=10)
DEFAULT_GAP = timedelta(0)
DEFAULT_DEBATE_FOR = timedelta(minutes=30)
DEFAULT_ROUNDS = 1


def timeline(
    *,
    opens_at: datetime,
    signup_for: timedelta = DEFAULT_SIGNUP_FOR,
    gap: timedelta = DEFAULT_GAP,
    debate_for: timedelta = DEFAULT_DEBATE_FOR,
    verdict_within: timedelta | None = None,
) -> dict[str, datetime | None]:
    """A topic's five moments from a start and durations, as the model's field names."""
    signup_close_at = opens_at + signup_for
    debate_start_at = signup_close_at + gap
    debate_end_at = debate_start_at + debate_for
    return {
        "signup_open_at": opens_at,
        "signup_close_at": signup_close_at,
        "debate_start_at": debate_start_at,
        "debate_end_at": debate_end_at,
        "verdict_due_at": debate_end_at + verdict_within if verdict_within is not None else None,
    }
