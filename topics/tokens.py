"""Agent bearer tokens: ``dlc_<prefix>_<secret>``.

Only the prefix (for lookup) and a SHA-256 digest of the secret are stored;
the full token exists once, in the return value of ``token_issue``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.db import transaction
from django.utils import timezone

from topics.models import Agent, AgentToken

TOKEN_PREFIX = "dlc"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_issue(*, agent: Agent) -> str:
    """Create a token for ``agent`` and return it in full. It cannot be shown again."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    AgentToken.objects.create(agent=agent, prefix=prefix, digest=_digest(secret))
    return f"{TOKEN_PREFIX}_{prefix}_{secret}"


@transaction.atomic
def tokens_revoke(*, agent: Agent) -> int:
    """Revoke every live token of ``agent``; returns how many."""
    return AgentToken.objects.filter(agent=agent, revoked_at__isnull=True).update(revoked_at=timezone.now())


def parse_token(raw: str) -> tuple[str, str] | None:
    """Split ``dlc_<prefix>_<secret>`` into (prefix, secret), or None if it is not shaped like a token."""
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def token_lookup(raw: str) -> AgentToken | None:
    """The live token matching ``raw`` (with its agent), or None: unknown, wrong secret, revoked, inactive agent."""
    parsed = parse_token(raw)
    if parsed is None:
        return None
    prefix, secret = parsed
    # prefix is unique: no ORDER BY (first() would sort by the default ordering, compiled on every request).
    token = next(iter(AgentToken.objects.select_related("agent").filter(prefix=prefix).order_by()[:1]), None)
    # Compare even when the prefix is unknown so timing does not reveal which prefixes exist.
    expected = token.digest if token else _digest("")
    if not hmac.compare_digest(expected, _digest(secret)) or token is None:
        return None
    if token.revoked_at is not None or not token.agent.is_active:
        return None
    return token
