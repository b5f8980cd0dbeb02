"""Whether Fabric announcements are on: only with all four settings present."""

from __future__ import annotations

import logging

from django.conf import settings

logger = logging.getLogger("fabric_bridge")

REQUIRED = (
    "FABRIC_GUILD_BASE_URL",
    "FABRIC_ANNOUNCE_CHANNEL_ID",
    "FABRIC_SYSTEM_API_KEY",
    "FABRIC_BOT_BEARER_TOKEN",
)


def missing_settings() -> list[str]:
    return [name for name in REQUIRED if not getattr(settings, name, "")]


def fabric_enabled() -> bool:
    return not missing_settings()


def log_status() -> None:
    """One startup line saying whether announcing is on, and if not, what is missing."""
    missing = missing_settings()
    if missing:
        logger.info("fabric announcements disabled: missing %s", ", ".join(missing))
    else:
        logger.info(
            "fabric announcements enabled: channel %s at %s",
            settings.FABRIC_ANNOUNCE_CHANNEL_ID,
            settings.FABRIC_GUILD_BASE_URL,
        )
