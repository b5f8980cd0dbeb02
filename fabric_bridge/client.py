"""The HTTP edge: one POST per outbox row, its answer classified; and Fabric's client.

Nothing here touches the database; ``fabric_bridge.engine`` decides what an
outcome means for the row. ``post`` and ``classify`` serve every sender
(Fabric here, webhooks in ``fabric_bridge.webhooks``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import requests
from django.conf import settings

if TYPE_CHECKING:
    from fabric_bridge.engine import Claim

# Fabric's answers worth keeping in last_error are short JSON errors; a proxy's HTML page is not.
ERROR_BODY_LIMIT = 500
# Bytes of an error answer read at most (multi-byte text and whitespace shrink it to the limit above).
BODY_READ_LIMIT = 8 * ERROR_BODY_LIMIT

# Worth asking again: the receiver is overloaded, restarting or timed out itself.
RETRYABLE_STATUSES = frozenset({408, 429})


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # Fabric is unwell; try again later
    REJECTED = "rejected"  # Fabric refused this message; sending it again will not help


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    error: str = ""
    status: int | None = None
    # Seconds Fabric asked us to wait (Retry-After), when it said so.
    retry_after: float | None = None


@dataclass(frozen=True)
class FabricClient:
    base_url: str
    channel_id: str
    system_key: str
    bearer_token: str
    connect_timeout: float
    read_timeout: float

    @classmethod
    def from_settings(cls) -> FabricClient:
        return cls(
            base_url=settings.FABRIC_GUILD_BASE_URL,
            channel_id=settings.FABRIC_ANNOUNCE_CHANNEL_ID,
            system_key=settings.FABRIC_SYSTEM_API_KEY,
            bearer_token=settings.FABRIC_BOT_BEARER_TOKEN,
            connect_timeout=settings.FABRIC_CONNECT_TIMEOUT.total_seconds(),
            read_timeout=settings.FABRIC_READ_TIMEOUT.total_seconds(),
        )

    @property
    def url(self) -> str:
        return f"{self.base_url.rstrip('/')}/api/channels/{self.channel_id}/messages"

    @property
    def request_timeout(self) -> float:
        """The longest one send can take (connect, then read)."""
        return self.connect_timeout + self.read_timeout

    def send(self, session: requests.Session, claim: Claim) -> SendResult:
        """POST one announcement, its id as the Idempotency-Key."""
        return post(
            session,
            self.url,
            json=claim.row["payload"],
            headers={
                "x-fabric-system-key": self.system_key,
                "Authorization": f"Bearer {self.bearer_token}",
                "Idempotency-Key": str(claim.id),
            },
            timeout=(self.connect_timeout, self.read_timeout),
            redirect_hint="check FABRIC_GUILD_BASE_URL",
        )


def post(
    session: requests.Session,
    url: str,
    *,
    timeout: tuple[float, float],
    redirect_hint: str,
    headers: dict[str, str],
    json: Any = None,
    data: bytes | None = None,
) -> SendResult:
    """POST and classify the answer. Never raises for network trouble: it becomes a RETRY result."""
    connect_timeout, read_timeout = timeout
    try:
        response = session.post(
            url,
            json=json,
            data=data,
            headers=headers,
            timeout=timeout,
            # A redirect means a wrong URL (or, for a webhook, an attempt to send us elsewhere);
            # following it would also turn the POST into a GET.
            allow_redirects=False,
            # The body is read only on failure, and then only its first bytes (``classify``).
            stream=True,
        )
    except requests.Timeout as exc:
        phase = "connect" if isinstance(exc, requests.ConnectTimeout) else "read"
        limit = connect_timeout if phase == "connect" else read_timeout
        return SendResult(Outcome.RETRY, f"{phase} timeout after {limit:g}s")
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
        return SendResult(Outcome.RETRY, f"connection error: {_root_cause(exc)}")
    except requests.RequestException as exc:
        # Malformed URL and the like: configuration, not the receiver's health.
        return SendResult(Outcome.REJECTED, f"request failed: {exc}")
    with response:
        return classify(response, redirect_hint=redirect_hint)


def classify(response: requests.Response, *, redirect_hint: str) -> SendResult:
    status = response.status_code
    if 200 <= status < 300:
        return SendResult(Outcome.DELIVERED, status=status)
    body = " ".join(_body_start(response).split())
    if len(body) > ERROR_BODY_LIMIT:
        body = body[:ERROR_BODY_LIMIT] + "…"
    error = f"HTTP {status} {response.reason or ''}".rstrip() + (f": {body}" if body else "")
    if status >= 500 or status in RETRYABLE_STATUSES:
        return SendResult(
            Outcome.RETRY, error, status=status, retry_after=parse_retry_after(response.headers.get("Retry-After"))
        )
    if 300 <= status < 400:
        error += f" (redirect to {response.headers.get('Location', '?')}, not followed; {redirect_hint})"
    return SendResult(Outcome.REJECTED, error, status=status)


def _body_start(response: requests.Response) -> str:
    """The first bytes of an error answer: a receiver cannot make us read (or keep) a huge body."""
    try:
        raw = response.raw.read(BODY_READ_LIMIT, decode_content=True)
    except Exception:  # a body cut off or timing out is still the same failed answer
        return ""
    return raw.decode(response.encoding or "utf-8", errors="replace")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date. None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _root_cause(exc: BaseException) -> str:
    """requests wraps urllib3 wraps the socket error; the innermost one reads best ("Connection refused")."""
    while (inner := exc.__cause__ or exc.__context__) is not None:
        exc = inner
    return f"{type(exc).__name__}: {exc}"
