"""Outbox delivery: claim due announcements, send them outside any transaction, record each outcome.

The ticker calls ``deliver_due`` after each pass's transitions. Any number of
tickers may run it at once:

1. **Claim** a small batch in one short transaction: rows that are pending
   and due, locked with ``SKIP LOCKED`` on MySQL/MariaDB (SQLite: the
   IMMEDIATE transaction serialises claimers). Claiming increments
   ``attempts`` and pushes ``next_attempt_at`` forward by a lease, then
   commits, so other tickers skip the rows and a ticker that dies mid-send
   leaves them due again once the lease runs out.
2. **Send** each row with no transaction open and connect/read timeouts.
3. **Record** the outcome with an UPDATE conditional on the claim's
   ``attempts`` (a fencing token): a ticker whose lease expired cannot
   overwrite the result of the one that re-claimed the row.

A pass must not hold the ticker's transitions back for long, so it stops
(a) at the first failure that says Fabric is unwell (timeout, refused
connection, 5xx, 408, 429), handing the rest of its batch back untouched,
and (b) once ``FABRIC_DELIVERY_BUDGET`` is spent: no send starts after that.
docs/fabric.md has the numbers.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import requests
from django.conf import settings
from django.db import connection
from django.utils import timezone

from dialectic.db import run_in_transaction
from fabric_bridge.client import FabricClient, Outcome, SendResult
from fabric_bridge.config import fabric_enabled
from fabric_bridge.models import Announcement, AnnouncementStatus

logger = logging.getLogger("fabric_bridge.delivery")

# Rows claimed per transaction. Small, because a pass that stops early hands the unsent ones back.
BATCH_SIZE = 20

LAST_ERROR_LIMIT = 2000

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Claim:
    id: UUID
    kind: str
    topic_id: UUID
    payload: dict
    attempts: int  # including the attempt this claim is for
    lease_until: datetime
    previous_next_attempt_at: datetime


def deliver_due(*, now: datetime | None = None, should_stop: Callable[[], bool] = lambda: False) -> int:
    """Send the announcements that are due; returns how many sends were attempted.

    ``now`` (for tests and the ticker's notion of time) is where the clock
    starts; it then advances with real elapsed time.
    """
    if not fabric_enabled():
        return 0
    clock = _clock(now)
    client = FabricClient.from_settings()
    budget = settings.FABRIC_DELIVERY_BUDGET.total_seconds()
    deadline = time.monotonic() + budget
    lease = claim_lease(client)
    attempted = 0
    with requests.Session() as session:
        while not should_stop() and time.monotonic() < deadline:
            batch = claim_due(now=clock(), lease=lease, limit=BATCH_SIZE)
            if not batch:
                break
            for index, claim in enumerate(batch):
                if should_stop() or time.monotonic() >= deadline:
                    release(batch[index:])
                    return attempted
                result = _send_unless_stopped(client, session, claim, should_stop)
                attempted += 1
                if result is None:
                    # Stopping mid-send: the in-flight row keeps its claim and is sent again,
                    # with the same Idempotency-Key, once the lease runs out.
                    release(batch[index + 1 :])
                    return attempted
                record_outcome(claim, result, now=clock())
                if result.outcome is Outcome.RETRY:
                    # Fabric is evidently down or overloaded: every further send this pass
                    # would likely cost another timeout, so the rest waits for the next pass.
                    release(batch[index + 1 :])
                    return attempted
    return attempted


# How often a send in flight looks at should_stop(): a stop request waits at most this long.
STOP_POLL_SECONDS = 0.2


def _send_unless_stopped(
    client: FabricClient, session: requests.Session, claim: Claim, should_stop: Callable[[], bool]
) -> SendResult | None:
    """Send on a helper thread and wait in short slices, so SIGTERM never waits for Fabric's timeouts.

    Returns None when a stop was requested before the answer came. The thread is a
    daemon: a process that exits does not wait for the abandoned request.
    """
    outcome: list[SendResult] = []
    sender = threading.Thread(
        target=lambda: outcome.append(client.send(session, idempotency_key=str(claim.id), payload=claim.payload)),
        name=f"fabric-send-{claim.id}",
        daemon=True,
    )
    sender.start()
    while sender.is_alive():
        sender.join(STOP_POLL_SECONDS)
        if sender.is_alive() and should_stop():
            return None
    return outcome[0] if outcome else SendResult(Outcome.RETRY, "the send failed unexpectedly")


def claim_lease(client: FabricClient) -> timedelta:
    """How long a claim keeps other tickers away.

    A row claimed now is sent before the pass's budget runs out and its send
    ends within one request timeout; doubling that leaves room for a slow
    database and modest clock skew between ticker machines.
    """
    return timedelta(seconds=2 * (settings.FABRIC_DELIVERY_BUDGET.total_seconds() + client.request_timeout))


def claim_due(*, now: datetime, lease: timedelta, limit: int) -> list[Claim]:
    """Claim up to ``limit`` due rows for this process, oldest due first. Commits before returning."""
    lease_until = now + lease

    def claim() -> list[Claim]:
        claims: list[Claim] = []
        # Uses announcement_due_idx (status, next_attempt_at).
        due = Announcement.objects.filter(status=AnnouncementStatus.PENDING, next_attempt_at__lte=now).order_by(
            "next_attempt_at", "id"
        )
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        rows = list(due.values("id", "kind", "topic_id", "payload", "attempts", "next_attempt_at")[:limit])
        max_attempts = settings.FABRIC_MAX_ATTEMPTS
        for row in rows:
            guard = Announcement.objects.filter(
                pk=row["id"], status=AnnouncementStatus.PENDING, attempts=row["attempts"]
            )
            if row["attempts"] >= max_attempts:
                # Only reachable when earlier claims never reported back (a ticker that keeps dying
                # on this row): stop feeding it to tickers.
                guard.update(
                    status=AnnouncementStatus.DEAD,
                    last_error=f"gave up: {row['attempts']} attempts claimed without a recorded outcome",
                )
                logger.error("announcement %s dead: %d attempts without an outcome", row["id"], row["attempts"])
                continue
            # Second guard behind the row lock, and the only one on SQLite.
            if guard.update(attempts=row["attempts"] + 1, next_attempt_at=lease_until) != 1:
                continue
            claims.append(
                Claim(
                    id=row["id"],
                    kind=row["kind"],
                    topic_id=row["topic_id"],
                    payload=row["payload"],
                    attempts=row["attempts"] + 1,
                    lease_until=lease_until,
                    previous_next_attempt_at=row["next_attempt_at"],
                )
            )
        return claims

    # Rerun whole (db.run_in_transaction) when another ticker's claim of the same rows wins.
    return run_in_transaction(claim, durable=True, label="outbox claim")


def release(claims: list[Claim]) -> None:
    """Hand unsent claims back as they were, so they keep their place in the queue."""
    for claim in claims:
        run_in_transaction(
            lambda claim=claim: Announcement.objects.filter(
                pk=claim.id,
                status=AnnouncementStatus.PENDING,
                attempts=claim.attempts,
                next_attempt_at=claim.lease_until,
            ).update(attempts=claim.attempts - 1, next_attempt_at=claim.previous_next_attempt_at),
            label="outbox release",
        )


def record_outcome(claim: Claim, result: SendResult, *, now: datetime) -> str:
    """Write what the send achieved; returns the row's new status."""
    label = f"announcement {claim.id} ({claim.kind}, topic {claim.topic_id}) attempt {claim.attempts}"
    if result.outcome is Outcome.DELIVERED:
        updates: dict = {"status": AnnouncementStatus.SENT, "sent_at": now}
        logger.info("%s: sent (HTTP %s)", label, result.status)
    elif result.outcome is Outcome.REJECTED:
        updates = {"status": AnnouncementStatus.DEAD, "last_error": _truncate(result.error)}
        logger.error("%s: dead, Fabric rejected it: %s", label, result.error)
    elif claim.attempts >= settings.FABRIC_MAX_ATTEMPTS:
        error = f"gave up after {claim.attempts} attempts; last: {result.error}"
        updates = {"status": AnnouncementStatus.DEAD, "last_error": _truncate(error)}
        logger.error("%s: dead, %s", label, error)
    else:
        delay = retry_delay(claim.attempts, retry_after=result.retry_after)
        updates = {"next_attempt_at": now + delay, "last_error": _truncate(result.error)}
        logger.warning("%s: %s; retrying in %.0fs", label, result.error, delay.total_seconds())
    recorded = run_in_transaction(
        lambda: Announcement.objects.filter(
            pk=claim.id, status=AnnouncementStatus.PENDING, attempts=claim.attempts
        ).update(**updates),
        label="outbox outcome",
    )
    if recorded != 1:
        # Our lease ran out and another ticker took the row over (or staff reset it): its result stands.
        logger.warning("%s: outcome not recorded, the row was claimed again meanwhile", label)
    return updates.get("status", AnnouncementStatus.PENDING)


def retry_delay(attempts: int, *, retry_after: float | None = None, rng: random.Random | None = None) -> timedelta:
    """Capped exponential backoff with equal jitter: half the step fixed, half random.

    The fixed half guarantees a real pause; the random half spreads out the
    retries of announcements that failed together. A Retry-After from Fabric
    is honoured up to the cap.
    """
    base = settings.FABRIC_RETRY_BASE.total_seconds()
    cap = settings.FABRIC_RETRY_MAX.total_seconds()
    step = min(cap, base * 2 ** min(attempts - 1, 32))
    delay = step / 2 + (rng or random).uniform(0, step / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return timedelta(seconds=delay)


def _truncate(text: str) -> str:
    return text if len(text) <= LAST_ERROR_LIMIT else text[: LAST_ERROR_LIMIT - 1] + "…"


def _clock(start: datetime | None) -> Clock:
    if start is None:
        return timezone.now
    origin = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - origin)
