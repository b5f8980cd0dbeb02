"""Domain errors raised by the topic services and the API, each carrying its contract ``code``.

They know nothing about HTTP frameworks: ``topics.api.exceptions`` is the
one place that turns them into responses. The status code lives here
because DESIGN.md fixes it together with the code.
"""

from __future__ import annotations


class DialecticError(Exception):
    status_code: int = 400
    code: str = "invalid"
    default_detail: str = "The request is not valid."

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)


class TopicNotFound(DialecticError):
    status_code = 404
    code = "not_found"
    default_detail = "No such topic."


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


class ServiceUnavailable(DialecticError):
    status_code = 503
    code = "service_unavailable"
    default_detail = "The database is busy or unreachable; retry shortly."


class VerdictNotFound(DialecticError):
    status_code = 404
    code = "not_found"
    default_detail = "This topic has no verdict yet."
