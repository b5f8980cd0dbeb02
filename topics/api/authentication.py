"""Bearer-token authentication for agents: ``Authorization: Bearer dlc_<prefix>_<secret>``."""

from __future__ import annotations

import re
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from topics.models import Agent, AgentToken
from topics.tokens import token_lookup

# Writing "last used" on every request would turn every read into a write;
# once a minute is enough to tell live agents from dead ones.
TOUCH_INTERVAL = timedelta(minutes=1)

# The shape token_issue produces; anything else is rejected without a database query.
_TOKEN_SHAPE = re.compile(r"^dlc_[0-9a-f]{1,16}_[A-Za-z0-9_-]{1,128}$")


class AgentTokenAuthentication(authentication.BaseAuthentication):
    """No ``Authorization`` header: anonymous. Any header that does not carry a live token: 401.

    A header we cannot use is an error rather than "anonymous" even on
    endpoints anyone may read, so an agent with a revoked or mistyped token
    finds out at once instead of silently seeing only public topics.
    """

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Agent, AgentToken] | None:
        header = request.META.get("HTTP_AUTHORIZATION")
        if header is None:
            return None
        scheme, _, raw = header.strip().partition(" ")
        raw = raw.strip()
        if scheme.lower() != self.keyword.lower():
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <token>'.")
        if not _TOKEN_SHAPE.match(raw):
            raise exceptions.AuthenticationFailed("Malformed token; tokens look like dlc_<prefix>_<secret>.")
        token = token_lookup(raw)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid, revoked or inactive token.")
        _touch(token)
        return token.agent, token

    def authenticate_header(self, request: Request) -> str:
        # Its presence makes DRF answer 401 (not 403) and send WWW-Authenticate.
        return f'{self.keyword} realm="api"'


def _touch(token: AgentToken) -> None:
    """Record use at most once a minute per token and agent, with conditional UPDATEs.

    The condition is repeated in SQL so concurrent requests (several server
    processes) write at most once between them.
    """
    now = timezone.now()
    stale = now - TOUCH_INTERVAL
    if token.last_used_at is None or token.last_used_at < stale:
        AgentToken.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale), pk=token.pk).update(
            last_used_at=now
        )
        token.last_used_at = now
    agent = token.agent
    if agent.last_seen_at is None or agent.last_seen_at < stale:
        Agent.objects.filter(Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=stale), pk=agent.pk).update(
            last_seen_at=now
        )
        agent.last_seen_at = now
