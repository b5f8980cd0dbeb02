"""The HTTP edge to Fabric: one POST per announcement, its answer classified.

Nothing here touches the database; ``fabric_bridge.delivery`` decides what
an outcome means for the announcement row.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests
from django.conf import settings

# Fabric's answers worth keeping in last_error are short JSON errors; a proxy's HTML page is not.
ERROR_BODY_LIMIT = 500

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

    def send(self, session: requests.Session, *, idempotency_key: str, payload: dict) -> SendResult:
        """POST one announcement. Never raises for network trouble: it becomes a RETRY result."""
        try:
            response = session.post(
                self.url,
                json=payload,
                headers={
                    "x-fabric-system-key": self.system_key,
                    "Authorization": f"Bearer {self.bearer_token}",
                    "Idempotency-Key": idempotency_key,
                },
                timeout=(self.connect_timeout, self.read_timeout),
                # A redirect means a wrong base URL; following it would turn the POST into a GET.
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            phase = "connect" if isinstance(exc, requests.ConnectTimeout) else "read"
            limit = self.connect_timeout if phase == "connect" else self.read_timeout
            return SendResult(Outcome.RETRY, f"{phase} timeout after {limit:g}s")
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            return SendResult(Outcome.RETRY, f"connection error: {_root_cause(exc)}")
        except requests.RequestException as exc:
            # Malformed URL and the like: configuration, not Fabric's health.
            return SendResult(Outcome.REJECTED, f"request failed: {exc}")
        return classify(response)


def classify(response: requests.Response) -> SendResult:
    status = response.status_code
    if 200 <= status < 300:
        return SendResult(Outcome.DELIVERED, status=status)
    body = " ".join(response.text.split())
    if len(body) > ERROR_BODY_LIMIT:
        body = body[:ERROR_BODY_LIMIT] + "…"
    error = f"HTTP {status} {response.reason or ''}".rstrip() + (f": {body}" if body else "")
    if status >= 500 or status in RETRYABLE_STATUSES:
        return SendResult(
            Outcome.RETRY, error, status=status, retry_after=parse_retry_after(response.headers.get("Retry-After"))
        )
    if 300 <= status < 400:
        error += f" (redirect to {response.headers.get('Location', '?')}; check FABRIC_GUILD_BASE_URL)"
    return SendResult(Outcome.REJECTED, error, status=status)


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
