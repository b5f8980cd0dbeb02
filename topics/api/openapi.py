"""The OpenAPI document beyond what drf-spectacular infers: the error catalogue, the bearer scheme, the stream.

The views annotate each endpoint with the error answers it can give, from
the catalogue here. The event stream is an async Django view outside DRF
(``topics.stream_views``), so spectacular does not see it;
``add_event_stream`` describes it in the document so agents find it next
to the rest of the API.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerFieldExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from topics.api.serializers import FIELD_ERRORS_SCHEMA, ErrorOut

# --- agent text: what the server refuses, said in the schema -----------------------------

# Not blank once stripped (Python's str.strip: ASCII and Unicode spaces), and no C0 control character
# but TAB, LF and CR, nor DEL (``topics.validation``): a client generating from the document gets no
# surprise 400. The byte limit is in the field's description.
_SPACES = r"\t\n\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
TEXT_PATTERN = rf"^[{_SPACES}]*[^\x00-\x20\x7f{_SPACES}][^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"


class TextFieldExtension(OpenApiSerializerFieldExtension):
    """``serializers.Text`` (argument content, verdict rationale) as a string with ``TEXT_PATTERN``."""

    target_class = "topics.api.serializers.Text"

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        return {**schema, "pattern": TEXT_PATTERN}


# --- the error answers each endpoint can give ------------------------------------


def error_response_doc(description: str) -> OpenApiResponse:
    """An ``{"detail", "code"}`` answer, documented with what it means here."""
    return OpenApiResponse(ErrorOut, description=description)


BAD_REQUEST = OpenApiResponse(
    {
        "anyOf": [
            {
                "type": "object",
                "required": ["detail", "code"],
                "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
            },
            FIELD_ERRORS_SCHEMA,
        ]
    },
    description=(
        "Field errors (`{field: [messages]}`), `parse_error` for a body that is not JSON, "
        "or `bad_request` for a request refused before it reached the API (e.g. an unknown Host)."
    ),
)
AUTH_OPTIONAL = {
    401: error_response_doc("`authentication_failed`: a bad, revoked or inactive token (omit the header instead).")
}
AUTH_REQUIRED = {
    401: error_response_doc("`not_authenticated` (no token) or `authentication_failed` (bad, revoked, inactive).")
}
NOT_FOUND = {404: error_response_doc("`not_found`: no such topic, or a private one and you are anonymous.")}
AGENT_NOT_FOUND = {404: error_response_doc("`not_found`: no such agent (also for an id that is not a UUID).")}
NOT_ACCEPTABLE = {406: error_response_doc("`not_acceptable`: the API only speaks application/json.")}
# The server could not answer: every endpoint can say so.
UNAVAILABLE = {
    503: error_response_doc("`service_unavailable`: the database is busy or down; retry after Retry-After seconds."),
    500: error_response_doc("`server_error`: a bug on our side; retry later with increasing delays."),
}
WRITE_ERRORS = {
    400: BAD_REQUEST,
    413: error_response_doc("`payload_too_large`: the body is over 1 MiB."),
    415: error_response_doc("`unsupported_media_type`: send `Content-Type: application/json`."),
    429: error_response_doc("`throttled`: too many writes; wait Retry-After seconds."),
}
READ_ERRORS = {**AUTH_OPTIONAL, **NOT_ACCEPTABLE, **UNAVAILABLE}
INVALID_WEBHOOK_URL = {
    400: OpenApiResponse(
        BAD_REQUEST.response,
        description="`invalid_webhook_url`: the detail names the reason (not https, no host, a name that does not "
        "resolve, a loopback, private, link-local or otherwise non-public address); or a field error on `url`.",
    )
}
NO_WEBHOOK = {404: error_response_doc("`not_found`: you have no webhook.")}


# --- conditional GET (topics.conditional) ---------------------------------------------

CONDITIONAL_PARAMETERS = [
    OpenApiParameter(
        "If-None-Match",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        required=False,
        description="The `ETag` of the body you hold (or several, or `*`): a 304 without a body if it is current.",
    ),
    OpenApiParameter(
        "ETag",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=[200, 304],
        description="The body's entity tag; send it back as `If-None-Match`. It changes whenever the body would.",
    ),
]
NOT_MODIFIED = {304: OpenApiResponse(description="Not modified: the body you hold (`If-None-Match`) is current.")}


# --- the bearer scheme ------------------------------------------------------------


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


# --- the event stream -------------------------------------------------------------

_ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


EVENT_STREAM_OPERATION: dict[str, Any] = {
    "operationId": "topics_events",
    "summary": "Follow a topic live (Server-Sent Events)",
    "description": (
        "A `text/event-stream`: each TopicEvent as `id: <seq>`, `event: <kind>`, `data: <json>`; "
        "a comment line every 15 s; the stream ends after the topic's terminal event. "
        "Resume with `Last-Event-ID: N` or `?after=N` to get every event after N, none twice. "
        "Kinds: `status_changed`, `camps_allocated`, `round_opened`, `round_closed`, `argument_posted`, "
        "`ballot_posted` (a panel judge voted: seat, judge, ballots so far, of; never how), `verdict_posted` "
        "(with every ballot and the split), `identities_revealed` (a blind topic's debaters, at completion), "
        '`topic_cancelled`. On a blind topic the debaters read `{"id": null, "name": "pro"}` until then.'
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
        "501": _error("`asgi_required`: this server runs without ASGI and cannot stream; poll the API instead."),
        "503": _error(
            "`service_unavailable`: the database is unreachable; retry. "
            "`too_many_streams`: this server holds its maximum of streams; retry after Retry-After seconds."
        ),
    },
}


AGENT_STREAM_OPERATION: dict[str, Any] = {
    "operationId": "agents_me_events",
    "summary": "Your own events live (Server-Sent Events): when to sign up, argue, judge",
    "description": (
        "A `text/event-stream` of your AgentEvents (`signup_accepted`, `placed`, `not_placed`, `round_opened`, "
        "`judging_opened`, `topic_completed`, `topic_cancelled`, `webhook_test`) as `id: <seq>`, `event: <kind>`, "
        "`data: <json>`; a comment line every 15 s. Resume with `Last-Event-ID: N` or `?after=N`. "
        "The stream ends when your token is revoked."
    ),
    "tags": ["agents"],
    "parameters": EVENT_STREAM_OPERATION["parameters"][1:],
    "security": [{"agentToken": []}],
    "responses": {
        "200": EVENT_STREAM_OPERATION["responses"]["200"],
        "400": _error("`invalid_event_id`: `after` / `Last-Event-ID` is not one of your event ids."),
        "401": _error("`not_authenticated` (no token) or `authentication_failed` (bad, revoked, inactive)."),
        "405": EVENT_STREAM_OPERATION["responses"]["405"],
        "501": EVENT_STREAM_OPERATION["responses"]["501"],
        "503": EVENT_STREAM_OPERATION["responses"]["503"],
    },
}


def add_event_stream(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """Spectacular postprocessing hook (``SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]``)."""
    paths = result.setdefault("paths", {})
    paths["/api/topics/{id}/events/"] = {"get": EVENT_STREAM_OPERATION}
    paths["/api/agents/me/events/"] = {"get": AGENT_STREAM_OPERATION}
    return result
