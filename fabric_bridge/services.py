"""Staff actions on announcements. Delivery itself lives in ``fabric_bridge.delivery``."""

from __future__ import annotations

import logging
from datetime import datetime
from uuid import UUID

from dialectic.db import write_transaction
from fabric_bridge.models import Announcement, AnnouncementStatus

logger = logging.getLogger("fabric_bridge")


@write_transaction
def announcement_retry_now(*, announcement_id: UUID, now: datetime) -> bool:
    """Make a pending or dead announcement due at ``now``; False when there is nothing to retry (sent or gone).

    A dead announcement starts a fresh series of attempts: staff retry it
    after fixing the cause, and its old count would make the first new
    failure final. A pending one keeps its count and only skips its backoff.
    """
    row = Announcement.objects.filter(pk=announcement_id).values("status", "attempts").first()
    if row is None or row["status"] == AnnouncementStatus.SENT:
        return False
    updates: dict = {"status": AnnouncementStatus.PENDING, "next_attempt_at": now}
    if row["status"] == AnnouncementStatus.DEAD:
        updates["attempts"] = 0
    # Conditional on what we read, so a ticker recording an outcome in between wins and we report no change.
    changed = Announcement.objects.filter(pk=announcement_id, status=row["status"], attempts=row["attempts"]).update(
        **updates
    )
    if changed:
        logger.info("announcement %s: retry requested (was %s)", announcement_id, row["status"])
    return changed == 1
