"""Reads for the API and the stream: visible topics, transcripts, verdicts and an agent's assignments.

What an assignment asks of the agent next is decided in ``topics.next_action``.

Every function here runs a fixed number of queries whatever the number of
rows (related rows are prefetched), which the tests pin.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db.models import Count, Exists, F, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.query import prefetch_related_objects

from fabric_bridge.models import Webhook
from topics import rules
from topics.errors import AgentNotFound, TopicNotFound
from topics.models import (
    Agent,
    Argument,
    Ballot,
    Camp,
    CampName,
    Round,
    Signup,
    Topic,
    TopicStatus,
    Verdict,
    VerdictSchema,
    Visibility,
)
from topics.next_action import Assignment, assignment_for
from topics.tokens import tokens_live

# How many finished topics /agents/me/ still lists after the active ones, newest first.
RECENT_FINISHED_ASSIGNMENTS = 20
# How many public topics an agent's public profile lists, newest first.
RECENT_PUBLIC_TOPICS = 20


def topics_visible(*, agent: Agent | None) -> QuerySet[Topic]:
    """Anonymous callers see public topics; any authenticated agent also sees private ones."""
    topics = Topic.objects.all()
    if agent is None:
        topics = topics.filter(visibility=Visibility.PUBLIC)
    return topics


def stream_access(*, anonymous_topics: set[UUID], token_ids: set[int]) -> tuple[set[UUID], set[int]]:
    """The live stream's re-check: which of ``anonymous_topics`` anonymous callers may still see, which tokens live.

    At most two statements, whatever the number of listeners (the poller
    asks once per poll for all of them); none for an empty set.
    """
    visible = (
        set(topics_visible(agent=None).filter(pk__in=anonymous_topics).values_list("pk", flat=True))
        if anonymous_topics
        else set()
    )
    return visible, tokens_live(token_ids)


def topic_list_rows(*, agent: Agent | None, status: str | None = None) -> QuerySet[Topic]:
    """The list's topics in the list's order, without their related rows (``topics.conditional`` reads ids)."""
    topics = topics_visible(agent=agent)
    if status:
        topics = topics.filter(status=status)
    # id breaks ties so pages never repeat or skip a topic created in the same microsecond.
    return topics.order_by("-created_at", "-id")


# --- the spectator pages' reads: model instances, which their templates walk ------------------


def _with_related(topics: QuerySet[Topic]) -> QuerySet[Topic]:
    return topics.select_related("verdict_schema").prefetch_related(
        "rounds", Prefetch("camps", queryset=Camp.objects.select_related("agent"))
    )


def topic_list(*, agent: Agent | None, status: str | None = None) -> QuerySet[Topic]:
    """``topic_list_rows`` with each topic's verdict schema, rounds and camps with agents (three queries more)."""
    return _with_related(topic_list_rows(agent=agent, status=status))


def topic_detail(*, topic_id: UUID | str, agent: Agent | None) -> Topic:
    topic = _with_related(topics_visible(agent=agent)).filter(pk=topic_id).first()
    if topic is None:
        raise TopicNotFound()
    return topic


def transcript(*, topic: Topic, round_no: int | None = None) -> QuerySet[Argument]:
    arguments = Argument.objects.filter(topic=topic).select_related("round", "agent")
    if round_no is not None:
        arguments = arguments.filter(round__round_no=round_no)
    return arguments.order_by("round__round_no", "created_at", "id")


# --- the hot reads as rows (``topics.representations`` turns them into the API's shapes) ---------

TOPIC_VALUES = (
    "id",
    "title",
    "summary",
    "visibility",
    "status",
    "signup_open_at",
    "signup_close_at",
    "debate_start_at",
    "debate_end_at",
    "verdict_due_at",
    "round_count",
    "max_arguments_per_round",
    "judge_count",
    "blind_judging",
    "cancelled_reason",
    "created_at",
)


def topic_values(topics: QuerySet[Topic]) -> QuerySet:
    """Topics as ``TOPIC_VALUES`` dicts with ``verdict_schema_id`` (``topic_related`` reads the schemas)."""
    return topics.values(*TOPIC_VALUES, "verdict_schema_id")


def topic_detail_row(*, topic_id: UUID | str, agent: Agent | None) -> dict[str, Any]:
    row = topic_values(topics_visible(agent=agent).filter(pk=topic_id)).first()
    if row is None:
        raise TopicNotFound()
    return row


@dataclass(frozen=True)
class TopicRelated:
    """What a topic's representation shows beside its own row, for several topics at once."""

    schemas: dict[int, dict[str, Any]]  # by id: name, schema, description
    rounds: dict[UUID, list[dict[str, Any]]]  # by topic, by round number
    camps: dict[UUID, list[dict[str, Any]]]  # by topic, by camp name (as TopicOut lists them)


def topic_related(rows: list[dict[str, Any]]) -> TopicRelated:
    """The verdict schemas, rounds and camps (with agents' names) of these topic rows: three queries.

    Each schema is read (and its JSON decoded) once however many topics use
    it: decoding it per topic was a seventh of a topic list's time.
    """
    related = TopicRelated({}, defaultdict(list), defaultdict(list))
    if not rows:
        return related
    topic_ids = [row["id"] for row in rows]
    for row in VerdictSchema.objects.filter(pk__in={r["verdict_schema_id"] for r in rows}).values(
        "id", "name", "schema", "description"
    ):
        related.schemas[row.pop("id")] = row
    for row in (
        Round.objects.filter(topic_id__in=topic_ids)
        .order_by("topic_id", "round_no")
        .values("topic_id", "round_no", "opens_at", "closes_at", "closed_at")
    ):
        related.rounds[row["topic_id"]].append(row)
    for row in (
        Camp.objects.filter(topic_id__in=topic_ids)
        .order_by("topic_id", "camp", "seat")
        .values("topic_id", "camp", "seat", "agent_id", agent_name=F("agent__name"))
    ):
        related.camps[row["topic_id"]].append(row)
    return related


def transcript_rows(*, topic_id: UUID | str, round_no: int | None = None) -> QuerySet:
    """``transcript`` as rows for ``representations.argument_row_data``: one query, no instances."""
    arguments = Argument.objects.filter(topic_id=topic_id)
    if round_no is not None:
        arguments = arguments.filter(round__round_no=round_no)
    return arguments.order_by("round__round_no", "created_at", "id").values(
        "id", "camp", "agent_id", "content", "created_at", round_no=F("round__round_no"), agent_name=F("agent__name")
    )


def topic_for_caller(*, topic_id: UUID | str, agent: Agent) -> Topic:
    """The visible topic with ``caller_camp`` (the agent's allocated camp or None): the 404 and 403 checks.

    One query. Camps never change once allocated, so a role read here before
    the write transaction stays true; the services re-check it under the lock anyway.
    """
    caller_camp = Camp.objects.filter(topic=OuterRef("pk"), agent=agent).order_by().values("camp")[:1]
    topic = (
        topics_visible(agent=agent)
        .select_related("verdict_schema")
        .annotate(caller_camp=Subquery(caller_camp))
        .filter(pk=topic_id)
        .first()
    )
    if topic is None:
        raise TopicNotFound()
    return topic


def verdict_by_topic(*, topic_id: UUID | str) -> Verdict | None:
    return Verdict.objects.select_related("judge").filter(topic_id=topic_id).first()


def topic_visible_or_404(*, topic_id: UUID | str, agent: Agent | None) -> None:
    if not topics_visible(agent=agent).filter(pk=topic_id).exists():
        raise TopicNotFound()


def ballots_for(*, topic_id: UUID | str) -> list[Ballot]:
    """The topic's ballots in seat order, shown only with its verdict (sealed until the topic is decided)."""
    return list(Ballot.objects.filter(topic_id=topic_id).select_related("judge").order_by("seat__seat"))


def topic_masking_row(*, topic_id: UUID | str) -> dict[str, Any]:
    """What decides whether the topic's debaters are masked (``representations.identities_hidden``)."""
    row = Topic.objects.filter(pk=topic_id).values("blind_judging", "status").first()
    if row is None:  # deleted since the caller's ETag read found it
        raise TopicNotFound()
    return row


# --- /api/agents/me/ ----------------------------------------------------------


def _involved(agent: Agent) -> Q:
    return Q(pk__in=Signup.objects.filter(agent=agent).values("topic_id")) | Q(
        pk__in=Camp.objects.filter(agent=agent).values("topic_id")
    )


def assignment_topics_active(*, agent: Agent) -> QuerySet[Topic]:
    """Every topic not finished that the agent signed up for or was placed in, soonest debate first."""
    return (
        Topic.objects.filter(_involved(agent))
        .exclude(status__in=rules.FINISHED_STATUSES)
        .order_by("debate_start_at", "id")
    )


def assignment_topics_finished(*, agent: Agent) -> QuerySet[Topic]:
    """The agent's most recently finished topics (``RECENT_FINISHED_ASSIGNMENTS``), latest first."""
    return Topic.objects.filter(_involved(agent), status__in=rules.FINISHED_STATUSES).order_by("-debate_end_at", "-id")[
        :RECENT_FINISHED_ASSIGNMENTS
    ]


def agent_assignments(*, agent: Agent, now: datetime) -> list[Assignment]:
    """Every active topic the agent signed up for or was placed in, then its most recently finished ones.

    Five queries however many topics: active, finished, and three prefetches.
    """
    topics = list(assignment_topics_active(agent=agent)) + list(assignment_topics_finished(agent=agent))
    open_rounds = Round.objects.filter(closed_at__isnull=True).annotate(
        pro_posted=Count("arguments", filter=Q(arguments__camp=CampName.PRO)),
        con_posted=Count("arguments", filter=Q(arguments__camp=CampName.CON)),
    )
    prefetch_related_objects(
        topics,
        Prefetch("signups", queryset=Signup.objects.filter(agent=agent), to_attr="my_signups"),
        Prefetch(
            "camps",
            # voted: a judge whose ballot is in waits for the rest of its panel (the same query, no extra one).
            queryset=Camp.objects.filter(agent=agent).annotate(
                voted=Exists(Ballot.objects.filter(seat=OuterRef("pk")))
            ),
            to_attr="my_camps",
        ),
        Prefetch("rounds", queryset=open_rounds, to_attr="open_rounds"),
    )
    return [assignment_for(topic, now) for topic in topics]


# --- ratings: the leaderboard and public profiles -----------------------------------------


def leaderboard() -> QuerySet[Agent]:
    """Rated agents (a public rated debate at least), best first by the conservative bound ``low``.

    One query per page (plus the count): the rating comes in the same row.
    """
    return Agent.objects.filter(rating__games__gt=0).select_related("rating").order_by("-rating__low", "id")


def agent_profile(*, agent_id: UUID | str) -> Agent:
    """The agent with its rating (``ratings.rating_row``) and ``recent``: its last public topics. Two queries."""
    agent = Agent.objects.select_related("rating").filter(pk=agent_id).first()
    if agent is None:
        raise AgentNotFound()
    # A blind topic's debaters are not to be found through their profiles until it completes.
    hidden = Q(topic__blind_judging=True, camp__in=(CampName.PRO, CampName.CON)) & ~Q(
        topic__status=TopicStatus.COMPLETED
    )
    agent.recent = list(
        Camp.objects.filter(agent=agent, topic__visibility=Visibility.PUBLIC)
        .exclude(hidden)
        .select_related("topic__rated_outcome")
        .order_by("-topic__debate_end_at", "-topic_id")[:RECENT_PUBLIC_TOPICS]
    )
    return agent


def agent_webhook(*, agent: Agent) -> Webhook | None:
    return Webhook.objects.filter(agent=agent).first()
