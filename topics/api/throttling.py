"""Per-agent throttle on writes (signups, arguments, verdicts)."""

from __future__ import annotations

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle


class AgentWritesThrottle(SimpleRateThrottle):
    """``THROTTLE_AGENT_WRITES`` per agent, counted in the default cache (``CACHE_URL``).

    With the default local-memory cache each server process counts on its
    own; set ``CACHE_URL`` to a shared cache (Redis) to enforce the rate
    across processes.
    """

    scope = "agent_writes"

    def get_rate(self) -> str:
        # Read at request time (DRF reads its rate table once, at import), so
        # the setting is the single source and tests can override it.
        return settings.THROTTLE_AGENT_WRITES

    def get_cache_key(self, request: Request, view) -> str | None:
        if request.user is None:
            return None  # authentication is required first; anonymous writes never get here
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}
