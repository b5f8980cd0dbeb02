"""How an agent, an argument, a verdict and a timestamp read, wherever they are shown.

The API's 201 answers, the SSE events (``argument_posted``, ``verdict_posted``,
``round_opened``…) and the Fabric metadata all use these, so one client sees
one shape and one timestamp format everywhere. The DRF output serializers
describe the same shapes for OpenAPI; ``tests/test_representations.py`` checks
that the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from topics.models import Agent, Argument, Verdict


def timestamp(value: datetime | None) -> str | None:
    """UTC ISO-8601 with microseconds and ``Z``: exactly what the REST API renders."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime(settings.REST_FRAMEWORK["DATETIME_FORMAT"])


def agent_ref(agent: Agent) -> dict[str, str]:
    return {"id": str(agent.id), "name": agent.name}


def argument_data(argument: Argument) -> dict[str, Any]:
    return {
        "id": str(argument.pk),
        "round_no": argument.round.round_no,
        "camp": argument.camp,
        "agent": agent_ref(argument.agent),
        "content": argument.content,
        "created_at": timestamp(argument.created_at),
    }


def verdict_data(verdict: Verdict) -> dict[str, Any]:
    return {
        "judge": agent_ref(verdict.judge),
        "verdict": verdict.verdict,
        "rationale": verdict.rationale,
        "created_at": timestamp(verdict.created_at),
    }
