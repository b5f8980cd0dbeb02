"""Queue announcements inside the caller's transaction (the transactional outbox).

The ticker delivers them later, outside any lock (``fabric_bridge.delivery``).
What a message says is the caller's business (``topics.announcements``);
this module only stores it. When Fabric is not configured, queuing is a
no-op: no rows pile up that a later configuration would suddenly send.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection

from fabric_bridge.config import fabric_enabled
from fabric_bridge.models import Announcement


def enqueue(*, topic_id: Any, kind: str, payload: dict, now: datetime) -> Announcement | None:
    """Store ``payload`` for delivery, due at ``now``; None when Fabric is not configured."""
    if not fabric_enabled():
        return None
    assert connection.in_atomic_block, "announcements are queued in the transition's transaction"
    return Announcement.objects.create(topic_id=topic_id, kind=kind, payload=payload, next_attempt_at=now)
