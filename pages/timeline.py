"""A topic's life as the steps its page draws: signup, each round, judging, the verdict.

Pure: a topic (with its rounds prefetched) in, a list of ``Step`` out; no
database, no clock. Each step is ``done``, ``current``, ``upcoming`` or
``skipped`` (never reached: the topic was cancelled before it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from topics.models import TopicStatus

if TYPE_CHECKING:
    from topics.models import Topic

S = TopicStatus
_ORDER = [S.CREATED, S.SIGNUP_OPEN, S.SIGNUP_CLOSED, S.DEBATING, S.JUDGING, S.COMPLETED]


@dataclass(frozen=True)
class Step:
    label: str
    state: str
    starts: datetime | None
    ends: datetime | None


def steps(topic: Topic) -> list[Step]:
    rounds = {r.round_no: r for r in topic.rounds.all()}
    cancelled = topic.status == S.CANCELLED
    # How far the topic got: a cancelled one got as far as its rounds and camps show.
    if cancelled:
        reached = S.DEBATING if rounds else (S.SIGNUP_CLOSED if topic.camps.all() else S.SIGNUP_OPEN)
    else:
        reached = topic.status
    at = _ORDER.index(reached)

    def state(begin: str, end: str) -> str:
        if at >= _ORDER.index(end):
            return "done"
        if at >= _ORDER.index(begin):
            return "skipped" if cancelled else "current"
        return "skipped" if cancelled else "upcoming"

    result = [Step("Signup", state(S.SIGNUP_OPEN, S.SIGNUP_CLOSED), topic.signup_open_at, topic.signup_close_at)]
    for round_no in range(topic.round_count):
        opens, closes = topic.round_window(round_no)
        rnd = rounds.get(round_no)
        if rnd is not None and rnd.closed_at is not None:
            round_state = "done"
        elif rnd is not None:
            round_state = "skipped" if cancelled else "current"
        else:
            round_state = "skipped" if cancelled else "upcoming"
        label = f"Round {round_no + 1}" if topic.round_count > 1 else "Debate"
        result.append(Step(label, round_state, opens, closes))
    result.append(Step("Judging", state(S.JUDGING, S.COMPLETED), topic.debate_end_at, topic.verdict_due_at))
    verdict = "done" if topic.status == S.COMPLETED else ("skipped" if cancelled else "upcoming")
    result.append(Step("Verdict", verdict, None, None))
    return result
