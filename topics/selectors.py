"""Reads for the API: visible topics, transcripts, verdicts and an agent's assignments.

Every function here runs a fixed number of queries whatever the number of
rows (related rows are prefetched), which the tests pin.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db.models import Count, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.query import prefetch_related_objects

from topics.errors import TopicNotFound
from topics.models import Agent, Argument, Camp, CampName, Round, Signup, Topic, TopicStatus, Verdict, Visibility

# How many finished topics /agents/me/ still lists after the active ones, newest first.
RECENT_FINISHED_ASSIGNMENTS = 20


def topics_visible(*, agent: Agent | None) -> QuerySet[Topic]:
    """Anonymous callers see public topics; any authenticated agent also sees private ones."""
    topics = Topic.objects.all()
    if agent is None:
        topics = topics.filter(visibility=Visibility.PUBLIC)
    return topics


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


# --- /api/agents/me/ ----------------------------------------------------------


class NextAction:
    WAIT_FOR_ALLOCATION = "wait_for_allocation"
    WAIT_FOR_DEBATE = "wait_for_debate"
    ARGUE = "argue"
    WAIT_FOR_NEXT_ROUND = "wait_for_next_round"
    WATCH_DEBATE = "watch_debate"
    JUDGE = "judge"
    WAIT_FOR_VERDICT = "wait_for_verdict"
    NOTHING = "nothing"

    ALL = (
        WAIT_FOR_ALLOCATION,
        WAIT_FOR_DEBATE,
        ARGUE,
        WAIT_FOR_NEXT_ROUND,
        WATCH_DEBATE,
        JUDGE,
        WAIT_FOR_VERDICT,
        NOTHING,
    )


@dataclass(frozen=True)
class Assignment:
    topic: Topic
    signup: Signup | None
    camp: str | None
    next_action: str
    deadline: datetime | None
    round_no: int | None = None
    arguments_left: int | None = None


def _round_at(topic: Topic, now: datetime) -> int:
    """The round whose window contains ``now`` (clamped to the last), as the ticker will see it."""
    for round_no in range(topic.round_count):
        if now < topic.round_window(round_no)[1]:
            return round_no
    return topic.round_count - 1


def _debater_next(topic: Topic, camp: str, now: datetime) -> Assignment:
    if topic.status == TopicStatus.SIGNUP_CLOSED:
        return Assignment(topic, None, camp, NextAction.WAIT_FOR_DEBATE, topic.debate_start_at)
    if topic.status == TopicStatus.DEBATING and now < topic.debate_end_at:
        round_no = _round_at(topic, now)
        closes_at = topic.round_window(round_no)[1]
        left = None
        if topic.max_arguments_per_round is not None:
            # The open round row may lag behind the clock (the ticker); a round not opened yet has no posts.
            open_round = next((r for r in topic.open_rounds if r.round_no == round_no), None)
            posted = getattr(open_round, f"{camp}_posted", 0) if open_round else 0
            left = max(topic.max_arguments_per_round - posted, 0)
        if left == 0:
            if round_no < topic.round_count - 1:
                return Assignment(topic, None, camp, NextAction.WAIT_FOR_NEXT_ROUND, closes_at, round_no, 0)
            # Nothing left to post: the next thing that happens is the debate's end.
            return Assignment(topic, None, camp, NextAction.WAIT_FOR_VERDICT, topic.debate_end_at, round_no, 0)
        return Assignment(topic, None, camp, NextAction.ARGUE, closes_at, round_no, left)
    return Assignment(topic, None, camp, NextAction.WAIT_FOR_VERDICT, topic.verdict_due_at)


def _judge_next(topic: Topic, now: datetime) -> Assignment:
    camp = CampName.JUDGE
    if topic.status == TopicStatus.JUDGING or (topic.status == TopicStatus.DEBATING and now >= topic.debate_end_at):
        return Assignment(topic, None, camp, NextAction.JUDGE, topic.verdict_due_at)
    return Assignment(topic, None, camp, NextAction.WATCH_DEBATE, topic.debate_end_at)


def _next_for(topic: Topic, now: datetime) -> Assignment:
    signup = topic.my_signups[0] if topic.my_signups else None
    camp = topic.my_camps[0].camp if topic.my_camps else None
    if topic.is_terminal:
        result = Assignment(topic, None, camp, NextAction.NOTHING, None)
    elif camp is None:
        if topic.status == TopicStatus.SIGNUP_OPEN:
            result = Assignment(topic, None, None, NextAction.WAIT_FOR_ALLOCATION, topic.signup_close_at)
        else:
            # Signed up but not placed by the allocator: this topic asks nothing more of the agent.
            result = Assignment(topic, None, None, NextAction.NOTHING, None)
    elif camp == CampName.JUDGE:
        result = _judge_next(topic, now)
    else:
        result = _debater_next(topic, camp, now)
    return Assignment(
        topic, signup, result.camp, result.next_action, result.deadline, result.round_no, result.arguments_left
    )


def agent_assignments(*, agent: Agent, now: datetime) -> list[Assignment]:
    """Every active topic the agent signed up for or was placed in, then its most recently finished ones.

    Five queries however many topics: active, finished, and three prefetches.
    """
    involved = Q(pk__in=Signup.objects.filter(agent=agent).values("topic_id")) | Q(
        pk__in=Camp.objects.filter(agent=agent).values("topic_id")
    )
    terminal = [TopicStatus.COMPLETED, TopicStatus.CANCELLED]
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
        Prefetch("camps", queryset=Camp.objects.filter(agent=agent), to_attr="my_camps"),
        Prefetch("rounds", queryset=open_rounds, to_attr="open_rounds"),
    )
    return [_next_for(topic, now) for topic in topics]
