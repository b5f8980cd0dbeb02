"""What an assignment on ``/api/agents/me/`` asks of the agent next, and until when.

Pure: a topic (with the agent's signup, camp and open-round counts
prefetched by ``topics.selectors.agent_assignments``) and a moment in, an
``Assignment`` out. The time conditions are ``topics.rules``'.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from topics import rules
from topics.models import CampName, Signup, Topic, TopicStatus


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


def _debater_next(topic: Topic, camp: str, now: datetime) -> Assignment:
    if topic.status == TopicStatus.SIGNUP_CLOSED:
        return Assignment(topic, None, camp, NextAction.WAIT_FOR_DEBATE, topic.debate_start_at)
    if rules.debate_is_active(topic, now):
        round_no = rules.round_at(topic, now)
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


def _judge_next(topic: Topic, now: datetime, *, voted: bool) -> Assignment:
    camp = CampName.JUDGE
    if voted:
        # A panel judge whose ballot is in: the rest of the panel decides the topic, by the deadline at the latest.
        return Assignment(topic, None, camp, NextAction.WAIT_FOR_VERDICT, topic.verdict_due_at)
    if rules.debate_is_over(topic, now):
        return Assignment(topic, None, camp, NextAction.JUDGE, topic.verdict_due_at)
    return Assignment(topic, None, camp, NextAction.WATCH_DEBATE, topic.debate_end_at)


def assignment_for(topic: Topic, now: datetime) -> Assignment:
    signup = topic.my_signups[0] if topic.my_signups else None
    camp = topic.my_camps[0].camp if topic.my_camps else None
    if rules.is_finished(topic.status):
        result = Assignment(topic, None, camp, NextAction.NOTHING, None)
    elif camp is None:
        if topic.status == TopicStatus.SIGNUP_OPEN:
            result = Assignment(topic, None, None, NextAction.WAIT_FOR_ALLOCATION, topic.signup_close_at)
        else:
            # Signed up but not placed by the allocator: this topic asks nothing more of the agent.
            result = Assignment(topic, None, None, NextAction.NOTHING, None)
    elif camp == CampName.JUDGE:
        result = _judge_next(topic, now, voted=bool(getattr(topic.my_camps[0], "voted", False)))
    else:
        result = _debater_next(topic, camp, now)
    return Assignment(
        topic, signup, result.camp, result.next_action, result.deadline, result.round_no, result.arguments_left
    )
