"""Outbox delivery: owned by the fabric_bridge work (issue 5); the ticker calls deliver_due() after transitions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime


def deliver_due(*, now: datetime | None = None, should_stop: Callable[[], bool] = lambda: False) -> int:
    """Deliver due announcements; returns how many were attempted. Placeholder until issue 5 lands."""
    return 0
