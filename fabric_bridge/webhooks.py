"""Agents' webhooks: the secret at rest, the outbox rows, and the sender the delivery engine drives.

``enqueue`` is called by ``topics.transitions`` in the transaction that
appends the agent's events, so a delivery exists exactly when its event
does. Each delivery's body is fixed when it is queued; it is signed at each
attempt (Standard Webhooks, with the ``standardwebhooks`` library) with the
webhook's current secret, and sent to the address ``ssrf.vet_url`` checked
just before. Deliveries to one webhook go out one at a time in ``seq``
order (``_first_pending_of_its_webhook``); a dead one no longer holds the
later ones back. docs/webhooks.md has the rules and the numbers.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import requests
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from standardwebhooks.webhooks import Webhook as Signer

from fabric_bridge import ssrf
from fabric_bridge.client import Outcome, SendResult, post
from fabric_bridge.engine import Claim, Outbox
from fabric_bridge.models import DeliveryStatus, Webhook, WebhookDelivery

logger = logging.getLogger("fabric_bridge.webhooks")

SECRET_PREFIX = "whsec_"
# Deliveries claimed per transaction, and sent side by side: each goes to its own agent's receiver.
BATCH_SIZE = 100
# A receiver that answers 410 Gone says the webhook no longer exists: we stop sending, for good.
GONE = 410
SUCCESS_WRITE_INTERVAL = timedelta(seconds=1)

# Set once a transaction that queued deliveries has committed in this process: it wakes the
# ticker's webhook sender (``delivery.deliver_webhooks_while``), so they go now, not after the pass.
queued = threading.Event()


# --- the secret ----------------------------------------------------------------------------


def secret_new() -> str:
    """A Standard Webhooks secret: ``whsec_`` and the base64 of 32 random bytes (the library decodes exactly that)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


@cache
def _box(secret_key: str) -> Fernet:
    # A key for this one purpose, derived from DJANGO_SECRET_KEY: a leaked database alone does not sign.
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"dialectic webhook secrets").derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def secret_seal(secret: str) -> str:
    return _box(settings.SECRET_KEY).encrypt(secret.encode()).decode()


def secret_unseal(sealed: str) -> str:
    """The secret back; raises InvalidToken when DJANGO_SECRET_KEY changed since it was sealed."""
    return _box(settings.SECRET_KEY).decrypt(sealed.encode()).decode()


# --- queuing -------------------------------------------------------------------------------


def body(*, kind: str, seq: int, created_at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """What the receiver gets: Standard Webhooks' ``type``, ``timestamp`` and ``data``, plus the event's ``seq``."""
    return {
        "type": kind,
        "timestamp": created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "seq": seq,
        "data": data,
    }


def enqueue(events: list[tuple[int, int, str, datetime, dict[str, Any]]]) -> int:
    """Queue a delivery for each ``(webhook_id, seq, kind, created_at, data)``: one agent's event, to its webhook."""
    assert connection.in_atomic_block, "webhook deliveries are queued in the events' transaction"
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            webhook_id=webhook_id,
            seq=seq,
            kind=kind,
            payload=body(kind=kind, seq=seq, created_at=created_at, data=data),
            next_attempt_at=created_at,
        )
        for webhook_id, seq, kind, created_at, data in events
    )
    if events:
        # After the commit, never before: a woken sender must find the rows.
        transaction.on_commit(queued.set)
    return len(events)


# --- delivery ------------------------------------------------------------------------------


def _first_pending_of_its_webhook(due: QuerySet) -> QuerySet:
    """Only a webhook's first pending delivery may go: the receiver sees one agent's events in seq order.

    Dead ones do not count, so a dead delivery does not block the agent's later events.
    Uses webhook_delivery_head_idx (webhook, status, seq).
    """
    earlier = WebhookDelivery.objects.filter(
        webhook=OuterRef("webhook"), status=DeliveryStatus.PENDING, seq__lt=OuterRef("seq")
    )
    return due.filter(~Exists(earlier))


def _after_outcomes(outcomes: list[tuple[Claim, SendResult]], now: datetime) -> None:
    """Keep the webhooks' health (``last_success_at``, ``failing_since``) and drop those answering 410 Gone.

    A batch holds at most one delivery per webhook (``_first_pending_of_its_webhook``).
    """
    delivered, failing = set(), set()
    for claim, result in outcomes:
        if result.outcome is Outcome.DELIVERED:
            delivered.add(claim.row["webhook_id"])
        elif result.status == GONE:
            # Its pending deliveries go with it (on_delete=CASCADE): the receiver said there is nobody to tell.
            if Webhook.objects.filter(pk=claim.row["webhook_id"]).delete()[0]:
                agent_id = claim.row["webhook__agent_id"]
                logger.warning("webhook of agent %s removed: its receiver answered 410 Gone", agent_id)
        else:
            failing.add(claim.row["webhook_id"])
    if delivered:
        # A busy webhook's successes write at most once a second.
        Webhook.objects.filter(pk__in=delivered).filter(
            Q(failing_since__isnull=False)
            | Q(last_success_at__isnull=True)
            | Q(last_success_at__lt=now - SUCCESS_WRITE_INTERVAL)
        ).update(last_success_at=now, failing_since=None)
    if failing:
        Webhook.objects.filter(pk__in=failing, failing_since__isnull=True).update(failing_since=now)


def deliveries() -> Outbox:
    """The webhook outbox as the settings configure it now."""
    return Outbox(
        label="webhook delivery",
        model=WebhookDelivery,
        columns=("webhook_id", "webhook__agent_id", "webhook__url", "webhook__secret_encrypted", "seq", "payload"),
        max_attempts=settings.WEBHOOK_MAX_ATTEMPTS,
        retry_base=settings.WEBHOOK_RETRY_BASE.total_seconds(),
        retry_max=settings.WEBHOOK_RETRY_MAX.total_seconds(),
        budget=settings.WEBHOOK_DELIVERY_BUDGET.total_seconds(),
        batch_size=BATCH_SIZE,
        concurrency=settings.WEBHOOK_CONCURRENCY,
        # Each row has its own receiver: one agent's broken server must not stop the others' deliveries.
        stop_pass_on_retry=False,
        describe=lambda claim: f"{claim.id} (#{claim.row['seq']} to agent {claim.row['webhook__agent_id']})",
        narrow=_first_pending_of_its_webhook,
        after_outcomes=_after_outcomes,
    )


@dataclass(frozen=True)
class WebhookSender:
    connect_timeout: float
    read_timeout: float
    allow_http: bool
    allow_private: bool

    @classmethod
    def from_settings(cls) -> WebhookSender:
        return cls(
            connect_timeout=settings.WEBHOOK_CONNECT_TIMEOUT.total_seconds(),
            read_timeout=settings.WEBHOOK_READ_TIMEOUT.total_seconds(),
            allow_http=settings.WEBHOOK_ALLOW_HTTP,
            allow_private=settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS,
        )

    @property
    def request_timeout(self) -> float:
        return self.connect_timeout + self.read_timeout

    def send(self, session: requests.Session, claim: Claim) -> SendResult:
        row = claim.row
        try:
            # Again at every attempt: the name may point somewhere else by now.
            vetted = ssrf.vet_url(row["webhook__url"], allow_http=self.allow_http, allow_private=self.allow_private)
        except ssrf.UnsafeUrl as exc:
            return SendResult(Outcome.REJECTED, f"refused to send: {exc}")
        try:
            secret = secret_unseal(row["webhook__secret_encrypted"])
        except InvalidToken:
            return SendResult(Outcome.REJECTED, "the secret cannot be decrypted (was DJANGO_SECRET_KEY changed?)")
        data = json.dumps(row["payload"], separators=(",", ":"), ensure_ascii=False)
        msg_id = f"msg_{claim.id.hex}"
        sent_at = datetime.now(UTC)  # the library signs a wrong time for an aware non-UTC datetime
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": Signer(secret).sign(msg_id, sent_at, data),
            "Content-Type": "application/json",
            "Host": vetted.host_header,
            "User-Agent": "Dialectic-Webhooks/1",
        }
        if not isinstance(session.get_adapter(f"{vetted.scheme}://"), ssrf.PinnedAdapter):
            session.mount("https://", ssrf.PinnedAdapter())
            session.mount("http://", ssrf.PinnedAdapter())
        # The first vetted address: connecting to one we checked is the point; others are not tried.
        return post(
            session,
            vetted.pinned_url(vetted.addresses[0]),
            data=data.encode(),
            headers=headers,
            timeout=(self.connect_timeout, self.read_timeout),
            redirect_hint="webhooks do not follow redirects",
        )
