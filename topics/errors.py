"""Every error the server answers with, each carrying its contract ``code``, and the one way to answer it.

The services, selectors, the stream and the views raise these; the status
code and any header the answer needs live here because DESIGN.md fixes
them together with the code. ``error_response`` is the one function that
turns any of them into a response: the DRF exception handler
(``topics.api.exceptions``, which also maps DRF's own errors onto it), the
stream view and the plain views all call it, so every error body is
``{"detail", "code"}`` with the same headers wherever it comes from.
"""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse

# What a 401 says about how to authenticate (RFC 9110 requires it with a 401).
WWW_AUTHENTICATE = 'Bearer realm="api"'
# Seconds a client should wait before retrying when the database is busy or down.
RETRY_AFTER_UNAVAILABLE = "2"
# Seconds before retrying a stream refused because this process holds its maximum:
# long enough for streams to end or a load balancer to pick another process.
RETRY_AFTER_STREAMS = "10"


class DialecticError(Exception):
    status_code: int = 400
    code: str = "invalid"
    default_detail: str = "The request is not valid."

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)

    def headers(self) -> dict[str, str]:
        """Headers the answer must carry besides the body."""
        return {}


def error_body(detail: Any, code: str) -> dict[str, str]:
    return {"detail": str(detail), "code": code}


def error_response(exc: DialecticError) -> JsonResponse:
    """The answer to ``exc``: ``{"detail", "code"}`` with its status and headers, rendered as the API renders."""
    response = JsonResponse(
        error_body(exc.detail, exc.code),
        status=exc.status_code,
        json_dumps_params={"ensure_ascii": False, "separators": (",", ":")},
    )
    for name, value in exc.headers().items():
        response[name] = value
    return response


class ApiError(DialecticError):
    """An error whose status and code are known only when it is raised (DRF's own, mapped by the API handler)."""

    def __init__(self, detail: str, *, status_code: int, code: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.code = code
        self._headers = headers or {}

    def headers(self) -> dict[str, str]:
        return self._headers


# --- authentication, routing, protocol ---------------------------------------------------


class AuthenticationFailed(DialecticError):
    status_code = 401
    code = "authentication_failed"
    default_detail = "Invalid, revoked or inactive token."

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": WWW_AUTHENTICATE}


class NotAuthenticated(DialecticError):
    status_code = 401
    code = "not_authenticated"
    default_detail = "This endpoint needs 'Authorization: Bearer <token>'."

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": WWW_AUTHENTICATE}


class NotFound(DialecticError):
    status_code = 404
    code = "not_found"
    default_detail = "Not found."


class MethodNotAllowed(DialecticError):
    status_code = 405
    code = "method_not_allowed"
    default_detail = "This endpoint only answers GET."

    def __init__(self, detail: str | None = None, *, allowed: tuple[str, ...] = ("GET",)) -> None:
        super().__init__(detail)
        self.allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)}


class BadRequest(DialecticError):
    """Django refused the request before any view saw it (a disallowed Host, a body over Django's own cap)."""

    code = "bad_request"
    default_detail = "Bad request."


class ServerError(DialecticError):
    status_code = 500
    code = "server_error"
    default_detail = "Internal server error."


class AsgiRequired(DialecticError):
    status_code = 501
    code = "asgi_required"
    default_detail = "The live stream needs an ASGI server (make run, or gunicorn with uvicorn workers)."


class InvalidEventId(DialecticError):
    code = "invalid_event_id"
    default_detail = "Last-Event-ID / after must be an event id from this stream."


# --- the contract's gates ------------------------------------------------------------------


class TopicNotFound(NotFound):
    default_detail = "No such topic."


class AgentNotFound(NotFound):
    default_detail = "No such agent."


class NotSignedUp(DialecticError):
    status_code = 404
    code = "not_signed_up"
    default_detail = "You have not signed up for this topic."


class NotADebater(DialecticError):
    status_code = 403
    code = "not_a_debater"
    default_detail = "Only the agents in the pro and con camps of this topic may post arguments."


class NotTheJudge(DialecticError):
    status_code = 403
    code = "not_the_judge"
    default_detail = "Only the judge of this topic may post its verdict."


class SignupClosed(DialecticError):
    status_code = 409
    code = "signup_closed"
    default_detail = "Signup for this topic is not open."


class AlreadySignedUp(DialecticError):
    status_code = 409
    code = "already_signed_up"
    default_detail = "You have already signed up for this topic."


class DebateNotActive(DialecticError):
    status_code = 409
    code = "debate_not_active"
    default_detail = "This topic is not being debated right now."


class RoundLimitReached(DialecticError):
    status_code = 409
    code = "round_limit_reached"
    default_detail = "Your camp has posted the maximum number of arguments for this round."


class VerdictNotOpen(DialecticError):
    status_code = 409
    code = "verdict_not_open"
    default_detail = "This topic is not accepting a verdict."


class VerdictExists(DialecticError):
    status_code = 409
    code = "verdict_exists"
    default_detail = "This topic already has a verdict."


class PayloadTooLarge(DialecticError):
    status_code = 413
    code = "payload_too_large"
    default_detail = "The request body is too large."


class UnsupportedMediaType(DialecticError):
    status_code = 415
    code = "unsupported_media_type"
    default_detail = "Send the body as application/json (UTF-8)."


class TopicArgumentLimit(DialecticError):
    status_code = 409
    code = "topic_argument_limit"
    default_detail = "This topic holds the most arguments a topic may hold."


class InvalidWebhookUrl(DialecticError):
    code = "invalid_webhook_url"
    default_detail = "This URL cannot be used as a webhook."


class WebhookNotFound(NotFound):
    default_detail = "You have no webhook; PUT one first."


class VerdictNotFound(NotFound):
    default_detail = "This topic has no verdict yet."


class ServiceUnavailable(DialecticError):
    status_code = 503
    code = "service_unavailable"
    default_detail = "The database is busy or unreachable; retry shortly."

    def headers(self) -> dict[str, str]:
        return {"Retry-After": RETRY_AFTER_UNAVAILABLE}


class TooManyStreams(DialecticError):
    status_code = 503
    code = "too_many_streams"
    default_detail = "This server holds as many live streams as it may; retry shortly."

    def headers(self) -> dict[str, str]:
        return {"Retry-After": RETRY_AFTER_STREAMS}
