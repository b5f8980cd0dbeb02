"""Staff actions on the outbox. Delivery itself lives in ``fabric_bridge.engine``."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from fabric_bridge import engine
from fabric_bridge.models import Announcement, WebhookDelivery


def announcement_retry_now(*, announcement_id: UUID, now: datetime) -> bool:
    """Make a pending or dead announcement due at ``now`` (``engine.retry_now``)."""
    return engine.retry_now(Announcement, row_id=announcement_id, now=now)


def webhook_delivery_retry_now(*, delivery_id: UUID, now: datetime) -> bool:
    """Make a pending or dead webhook delivery due at ``now`` (``engine.retry_now``)."""
    return engine.retry_now(WebhookDelivery, row_id=delivery_id, now=now)
