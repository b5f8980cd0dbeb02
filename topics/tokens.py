"""Agent bearer tokens: ``dlc_<prefix>_<secret>``.

Only the prefix (for lookup) and a SHA-256 digest of the secret are stored;
the full token exists once, in the return value of ``token_issue``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from topics import sql
from topics.models import Agent, AgentToken

TOKEN_PREFIX = "dlc"

# Writing "last used" on every request would turn every read into a write;
# once a minute is enough to tell live agents from dead ones.
TOUCH_INTERVAL = timedelta(minutes=1)


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


# The shape token_issue produces (6 random bytes in hex, then token_urlsafe(32)), with room to
# spare; anything else is refused without a database query.
_TOKEN_SHAPE = re.compile(rf"{TOKEN_PREFIX}_([0-9a-f]{{1,16}})_([A-Za-z0-9_-]{{1,128}})", re.ASCII)


def parse_token(raw: str) -> tuple[str, str] | None:
    """Split ``dlc_<prefix>_<secret>`` into (prefix, secret), or None if it is not shaped like our tokens."""
    match = _TOKEN_SHAPE.fullmatch(raw)
    return (match[1], match[2]) if match else None


@dataclass(frozen=True)
class Bearer:
    """A live token as ``token_lookup`` found it: its id, its (active) agent, whether its use is due to be recorded."""

    token_id: int
    agent: Agent
    use_due: bool  # last_used_at is unset or older than TOUCH_INTERVAL: see token_touch


def token_lookup(raw: str, *, now: datetime | None = None) -> Bearer | None:
    """The live token matching ``raw``, or None: unknown, wrong secret, revoked, inactive agent."""
    parsed = parse_token(raw)
    if parsed is None:
        return None
    prefix, secret = parsed
    # The token's columns come off the agent, which becomes request.user.
    agent = sql.agent_with_token(prefix, used_before=(now or timezone.now()) - TOUCH_INTERVAL)
    token = {name: vars(agent).pop(name) for name in sql.TOKEN_COLUMNS} if agent else {}
    # Hash and compare even when the prefix is unknown, so the work done does not depend on it
    # (the query itself may take a little longer when it finds a row; prefixes are random).
    expected = token["token_digest"] if agent else _digest("")
    if not hmac.compare_digest(expected, _digest(secret)) or agent is None:
        return None
    if not token["token_live"] or not agent.is_active:
        return None
    return Bearer(token_id=token["token_id"], agent=agent, use_due=bool(token["token_use_due"]))


def token_touch(bearer: Bearer, *, now: datetime | None = None) -> None:
    """Record the token's and its agent's use at most once per ``TOUCH_INTERVAL``, with conditional UPDATEs.

    The condition is repeated in SQL so concurrent requests (several server
    processes) write at most once between them.
    """
    now = now or timezone.now()
    stale = now - TOUCH_INTERVAL
    if bearer.use_due:
        AgentToken.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale), pk=bearer.token_id).update(
            last_used_at=now
        )
    agent = bearer.agent
    if agent.last_seen_at is None or agent.last_seen_at < stale:
        Agent.objects.filter(Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=stale), pk=agent.pk).update(
            last_seen_at=now
        )
        agent.last_seen_at = now


def tokens_live(token_ids: set[int]) -> set[int]:
    """Which of ``token_ids`` are still live: not revoked, their agent active (the agent stream's re-check)."""
    live = AgentToken.objects.filter(pk__in=token_ids, revoked_at__isnull=True, agent__is_active=True)
    return set(live.values_list("pk", flat=True))
