"""Reads for the API and the stream: visible topics, transcripts, verdicts and an agent's assignments.

What an assignment asks of the agent next is decided in ``topics.next_action``.

Every function here runs a fixed number of queries whatever the number of
rows (related rows are prefetched), which the tests pin.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.query import prefetch_related_objects

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


def _with_related(topics: QuerySet[Topic]) -> QuerySet[Topic]:
    return topics.select_related("verdict_schema").prefetch_related(
        "rounds", Prefetch("camps", queryset=Camp.objects.select_related("agent"))
    )


def topic_list(*, agent: Agent | None, status: str | None = None) -> QuerySet[Topic]:
    topics = topics_visible(agent=agent)
    if status:
        topics = topics.filter(status=status)
    # id breaks ties so pages never repeat or skip a topic created in the same microsecond.
    return _with_related(topics).order_by("-created_at", "-id")


def topic_detail(*, topic_id: UUID | str, agent: Agent | None) -> Topic:
    topic = _with_related(topics_visible(agent=agent)).filter(pk=topic_id).first()
    if topic is None:
        raise TopicNotFound()
    return topic


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


def transcript(*, topic: Topic, round_no: int | None = None) -> QuerySet[Argument]:
    arguments = Argument.objects.filter(topic=topic).select_related("round", "agent")
    if round_no is not None:
        arguments = arguments.filter(round__round_no=round_no)
    return arguments.order_by("round__round_no", "created_at", "id")


def verdict_for(*, topic: Topic) -> Verdict | None:
    return Verdict.objects.select_related("judge").filter(topic=topic).first()


def ballots_for(*, topic: Topic) -> list[Ballot]:
    """The topic's ballots in seat order, shown only with its verdict (sealed until the topic is decided)."""
    return list(Ballot.objects.filter(topic=topic).select_related("judge").order_by("seat__seat"))


# --- /api/agents/me/ ----------------------------------------------------------


def agent_assignments(*, agent: Agent, now: datetime) -> list[Assignment]:
    """Every active topic the agent signed up for or was placed in, then its most recently finished ones.

    Five queries however many topics: active, finished, and three prefetches.
    """
    involved = Q(pk__in=Signup.objects.filter(agent=agent).values("topic_id")) | Q(
        pk__in=Camp.objects.filter(agent=agent).values("topic_id")
    )
    terminal = rules.FINISHED_STATUSES
    active = list(Topic.objects.filter(involved).exclude(status__in=terminal).order_by("debate_start_at", "id"))
    finished = list(
        Topic.objects.filter(involved, status__in=terminal).order_by("-debate_end_at", "-id")[
            :RECENT_FINISHED_ASSIGNMENTS
        ]
    )
    topics = active + finished
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
