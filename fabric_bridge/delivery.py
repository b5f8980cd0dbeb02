"""Outbox delivery by the ticker: Fabric announcements after each pass, agents' webhooks as they commit.

Both go through the one engine (``fabric_bridge.engine``): leases, fencing
by attempt count, capped backoff with jitter, ``dead`` after too many
attempts. This module says how each outbox is configured; docs/fabric.md
and docs/webhooks.md have the numbers.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection

from fabric_bridge import engine, webhooks
from fabric_bridge.client import FabricClient, Outcome, SendResult
from fabric_bridge.config import fabric_enabled
from fabric_bridge.engine import STOP_POLL_SECONDS, Claim
from fabric_bridge.models import Announcement

__all__ = [
    "STOP_POLL_SECONDS",
    "Claim",
    "Outcome",
    "SendResult",
    "claim_due",
    "deliver_due",
    "deliver_webhooks_while",
    "record_outcome",
    "retry_delay",
]

logger = logging.getLogger("fabric_bridge.delivery")

# Rows claimed per transaction. Small, because a pass that stops early hands the unsent ones back.
BATCH_SIZE = 20


def announcements() -> engine.Outbox:
    """The announcement outbox as the settings configure it now (tests change them)."""
    return engine.Outbox(
        label="announcement",
        model=Announcement,
        columns=("kind", "topic_id", "payload"),
        max_attempts=settings.FABRIC_MAX_ATTEMPTS,
        retry_base=settings.FABRIC_RETRY_BASE.total_seconds(),
        retry_max=settings.FABRIC_RETRY_MAX.total_seconds(),
        budget=settings.FABRIC_DELIVERY_BUDGET.total_seconds(),
        batch_size=BATCH_SIZE,
        describe=lambda claim: f"{claim.id} ({claim.row['kind']}, topic {claim.row['topic_id']})",
    )


def deliver_due(
    *, now: datetime | None = None, should_stop: Callable[[], bool] = lambda: False, include_webhooks: bool = True
) -> int:
    """Send the announcements, then the webhook deliveries, that are due; returns how many sends were attempted.

    ``include_webhooks=False`` when ``deliver_webhooks_while`` serves them (the ticker's loop).
    """
    attempted = 0
    if fabric_enabled():
        attempted += engine.deliver(announcements(), FabricClient.from_settings(), now=now, should_stop=should_stop)
    if include_webhooks and not should_stop():
        attempted += engine.deliver(
            webhooks.deliveries(), webhooks.WebhookSender.from_settings(), now=now, should_stop=should_stop
        )
    return attempted


def deliver_webhooks_while(keep_going: Callable[[], bool], *, idle: float) -> None:
    """Send webhook deliveries as soon as this process commits some, until ``keep_going()`` is false.

    The ticker runs this on a thread of its own beside its passes. Woken by
    ``webhooks.queued`` (set after every commit that queued a delivery, so a
    burst of transitions is delivered while the pass is still making it),
    and at least every ``idle`` seconds for deliveries queued by other
    processes (the API's) and retries coming due. The engine's claims make
    it safe beside other tickers; the connection is this thread's own.
    """
    sender = webhooks.WebhookSender.from_settings()
    last = float("-inf")
    try:
        while keep_going():
            woken = webhooks.queued.wait(timeout=STOP_POLL_SECONDS)
            if not woken and time.monotonic() - last < idle:
                continue
            webhooks.queued.clear()
            last = time.monotonic()
            try:
                engine.deliver(webhooks.deliveries(), sender, should_stop=lambda: not keep_going())
            except Exception:
                # The database went away, most likely: try again when next woken, or after ``idle``.
                logger.exception("webhook delivery failed; retrying")
                close_old_connections()
    finally:
        connection.close()


def claim_due(*, now: datetime, lease: timedelta, limit: int) -> list[Claim]:
    return engine.claim_due(announcements(), now=now, lease=lease, limit=limit)


def record_outcome(claim: Claim, result: SendResult, *, now: datetime) -> str:
    return engine.record_outcome(announcements(), claim, result, now=now)


def retry_delay(attempts: int, *, retry_after: float | None = None, rng: random.Random | None = None) -> timedelta:
    """The wait after failed attempt ``attempts`` of an announcement (docs/fabric.md, "Backoff")."""
    return engine.backoff(
        attempts,
        base=settings.FABRIC_RETRY_BASE.total_seconds(),
        cap=settings.FABRIC_RETRY_MAX.total_seconds(),
        retry_after=retry_after,
        rng=rng,
    )
