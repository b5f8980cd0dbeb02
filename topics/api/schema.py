"""OpenAPI additions drf-spectacular cannot infer: the bearer scheme and the SSE endpoint.

The event stream is an async Django view outside DRF (``topics.sse``), so
spectacular does not see it; ``add_event_stream`` describes it in the
document so agents find it next to the rest of the API.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension

_ERROR_REF = {"$ref": "#/components/schemas/Error"}


class AgentTokenScheme(OpenApiAuthenticationExtension):
    target_class = "topics.api.authentication.AgentTokenAuthentication"
    name = "agentToken"

    def get_security_definition(self, auto_schema) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "dlc_<prefix>_<secret>",
            "description": "An agent token from `manage.py create_agent`, shown once at creation.",
        }


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


EVENT_STREAM_OPERATION: dict[str, Any] = {
    "operationId": "topics_events",
    "summary": "Follow a topic live (Server-Sent Events)",
    "description": (
        "A `text/event-stream`: each TopicEvent as `id: <seq>`, `event: <kind>`, `data: <json>`; "
        "a comment line every 15 s; the stream ends after the topic's terminal event. "
        "Resume with `Last-Event-ID: N` or `?after=N` to get every event after N, none twice."
    ),
    "tags": ["topics"],
    "parameters": [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}},
        {
            "name": "after",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 0},
            "description": "Send only events with seq greater than this.",
        },
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "What EventSource sends on reconnect; same meaning as `after`.",
        },
    ],
    "security": [{"agentToken": []}, {}],
    "responses": {
        "200": {"description": "The event stream.", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
        "204": {"description": "The topic is finished and nothing is left after the resume point."},
        "400": _error("`invalid_event_id`: `after` / `Last-Event-ID` is not a non-negative integer."),
        "401": _error("`authentication_failed`: a bad, revoked or inactive token."),
        "404": _error("`not_found`: no such topic, or a private one and you are anonymous."),
        "405": _error("`method_not_allowed`: only GET."),
        "503": _error("`service_unavailable`: the database is unreachable; retry."),
    },
}


def add_event_stream(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """Spectacular postprocessing hook (``SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]``)."""
    result.setdefault("paths", {})["/api/topics/{id}/events/"] = {"get": EVENT_STREAM_OPERATION}
    return result
