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
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from topics.models import CampName, TopicStatus

if TYPE_CHECKING:
    from topics.models import Agent, Argument, Ballot, Topic, Verdict

DEBATER_CAMPS = frozenset({CampName.PRO, CampName.CON})


# The REST API's DATETIME_FORMAT, which ``timestamp`` writes (tests/test_representations.py holds them equal).
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def timestamp(value: datetime | None) -> str | None:
    """UTC ISO-8601 with microseconds and ``Z``: exactly what the REST API renders (``DATETIME_FORMAT``).

    ``isoformat`` rather than ``strftime`` with the setting: a topic list formats about 300 of
    these, and reading the lazy settings object plus strftime was a tenth of its time.
    """
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"


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


# --- the hot reads, from ``values()`` rows (``topics.selectors``): the output serializers' shapes ------
# Built without model instances or serializer fields, which were most of the time of a topic list
# (docs/serving.md); ``tests/test_hot_reads.py`` holds each byte-identical to its serializer.


def round_data(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "round_no": row["round_no"],
        "opens_at": timestamp(row["opens_at"]),
        "closes_at": timestamp(row["closes_at"]),
        "closed_at": timestamp(row["closed_at"]),
    }


def _shown(row: dict[str, Any]) -> SimpleNamespace:
    """What ``identities_hidden`` reads of a topic, from its row."""
    return SimpleNamespace(blind_judging=row["blind_judging"], status=row["status"])


def topic_data(
    row: dict[str, Any], schema: dict[str, Any], rounds: list[dict[str, Any]], camps: list[dict[str, Any]]
) -> dict[str, Any]:
    """``TopicOut``: a ``selectors.TOPIC_VALUES`` row, its verdict schema, its rounds by number, its seats."""
    seats = [(c["camp"], c["seat"], SimpleNamespace(id=c["agent_id"], name=c["agent_name"])) for c in camps]
    return {
        "id": str(row["id"]),
        "title": row["title"],
        "summary": row["summary"],
        "visibility": row["visibility"],
        "status": row["status"],
        "signup_open_at": timestamp(row["signup_open_at"]),
        "signup_close_at": timestamp(row["signup_close_at"]),
        "debate_start_at": timestamp(row["debate_start_at"]),
        "debate_end_at": timestamp(row["debate_end_at"]),
        "verdict_due_at": timestamp(row["verdict_due_at"]),
        "round_count": row["round_count"],
        "max_arguments_per_round": row["max_arguments_per_round"],
        "current_round": next((r["round_no"] for r in rounds if r["closed_at"] is None), None),
        "rounds": [round_data(r) for r in rounds],
        "verdict_schema": schema,
        "judge_count": row["judge_count"],
        "blind_judging": row["blind_judging"],
        "camps": camps_data(_shown(row), seats),
        "cancelled_reason": row["cancelled_reason"],
        "created_at": timestamp(row["created_at"]),
    }


def argument_row_data(row: dict[str, Any], topic: dict[str, Any]) -> dict[str, Any]:
    """``ArgumentOut`` (and ``argument_data``) from a ``selectors.transcript_rows`` row; ``topic``: its
    ``blind_judging`` and ``status``, which decide the masking."""
    agent = SimpleNamespace(id=row["agent_id"], name=row["agent_name"])
    return {
        "id": str(row["id"]),
        "round_no": row["round_no"],
        "camp": row["camp"],
        "agent": debater_ref(_shown(topic), agent, row["camp"]),
        "content": row["content"],
        "created_at": timestamp(row["created_at"]),
    }


def me_data(
    agent: Agent, *, rating: dict[str, Any], record: dict[str, Any], assignments: list[Any], webhook: Any
) -> dict:
    """``MeOut``: the agent's profile, rating and record (``topics.ratings``' views), assignments and webhook."""
    return {
        "id": str(agent.id),
        "name": agent.name,
        "owner": agent.owner,
        "created_at": timestamp(agent.created_at),
        "last_seen_at": timestamp(agent.last_seen_at),
        "rating": rating,
        "record": record,
        "event_seq": agent.event_seq,
        "assignments": [assignment_data(a) for a in assignments],
        "webhook": None
        if webhook is None
        else {
            "url": webhook.url,
            "created_at": timestamp(webhook.created_at),
            "last_success_at": timestamp(webhook.last_success_at),
            "failing_since": timestamp(webhook.failing_since),
        },
    }


def assignment_data(assignment: Any) -> dict[str, Any]:
    """``AssignmentOut`` from a ``topics.next_action.Assignment`` (a layer above, hence untyped here)."""
    topic, signup = assignment.topic, assignment.signup
    return {
        "topic": {"id": str(topic.id), "title": topic.title, "status": topic.status, "visibility": topic.visibility},
        "signup": {"camp": signup.camp, "created_at": timestamp(signup.created_at)} if signup is not None else None,
        "camp": assignment.camp,
        "next_action": assignment.next_action,
        "deadline": timestamp(assignment.deadline),
        "round_no": assignment.round_no,
        "arguments_left": assignment.arguments_left,
    }
