"""How an agent, an argument, a verdict and a timestamp read, wherever they are shown.

Blind judging is decided here and nowhere else: ``identities_hidden`` says
whether a topic hides its debaters, and ``debater_ref`` is how a debater
reads outside the admin (the API, the topic stream's events, ``agents``
profiles, pages): ``{"id": null, "name": "pro"}`` until the topic completes.
Judges are never hidden.

The API's 201 answers, the SSE events (``argument_posted``, ``verdict_posted``,
``round_opened``…) and the Fabric metadata all use these, so one client sees
one shape and one timestamp format everywhere. The DRF output serializers
describe the same shapes for OpenAPI; ``tests/test_representations.py`` checks
that the two agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings

from topics.models import CampName, TopicStatus

if TYPE_CHECKING:
    from topics.models import Agent, Argument, Ballot, Topic, Verdict

DEBATER_CAMPS = frozenset({CampName.PRO, CampName.CON})


def timestamp(value: datetime | None) -> str | None:
    """UTC ISO-8601 with microseconds and ``Z``: exactly what the REST API renders."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime(settings.REST_FRAMEWORK["DATETIME_FORMAT"])


def agent_ref(agent: Agent) -> dict[str, str]:
    return {"id": str(agent.id), "name": agent.name}


def identities_hidden(topic: Topic) -> bool:
    """A blind topic hides who argues pro and con until it completes (a cancelled one never reveals them)."""
    return bool(topic.blind_judging) and topic.status != TopicStatus.COMPLETED


def debater_ref(topic: Topic, agent: Agent, camp: str) -> dict[str, str | None]:
    """The agent in ``camp`` of ``topic`` as anyone but the admin sees it: masked while a blind topic runs."""
    if camp in DEBATER_CAMPS and identities_hidden(topic):
        return {"id": None, "name": str(camp)}
    return agent_ref(agent)


def camps_data(topic: Topic, seats: Iterable[tuple[str, int, Agent]]) -> dict[str, Any] | None:
    """``{"pro", "con", "judge", "judges": [...]}`` from (camp, seat, agent) triples, masked as ``debater_ref``.

    ``judge`` is the first judge seat; ``judges`` every judge seat in order. None before allocation.
    """
    seats = list(seats)
    if not seats:
        return None
    camps: dict[str, Any] = {}
    for camp, _, agent in seats:
        if camp in DEBATER_CAMPS:
            camps[camp] = debater_ref(topic, agent, camp)
    judge_seats = sorted((s for s in seats if s[0] == CampName.JUDGE), key=lambda s: s[1])
    judges = [agent for _, _, agent in judge_seats]
    if judges:
        camps["judge"] = agent_ref(judges[0])
        camps["judges"] = [agent_ref(agent) for agent in judges]
    return camps


def argument_data(argument: Argument, topic: Topic | None = None) -> dict[str, Any]:
    """The argument as shown; ``topic`` (the argument's, with its current status) decides the masking."""
    return {
        "id": str(argument.pk),
        "round_no": argument.round.round_no,
        "camp": argument.camp,
        "agent": debater_ref(topic or argument.topic, argument.agent, argument.camp),
        "content": argument.content,
        "created_at": timestamp(argument.created_at),
    }


def ballot_data(ballot: Ballot | Verdict) -> dict[str, Any]:
    """A ballot, or a single judge's verdict: the same four fields."""
    return {
        "judge": agent_ref(ballot.judge),
        "verdict": ballot.verdict,
        "rationale": ballot.rationale,
        "created_at": timestamp(ballot.created_at),
    }


def verdict_data(verdict: Verdict, ballots: list[Ballot] | None = None) -> dict[str, Any]:
    """The topic's verdict; with ``ballots`` (in seat order) also the panel's ``ballots``, ``split`` and ``tally``."""
    data = ballot_data(verdict)
    if ballots is not None:
        data["ballots"] = [ballot_data(b) for b in ballots]
        data["split"] = verdict.split or None
        data["tally"] = verdict.tally
    return data
