"""What an agent does with its webhook: set (or rotate) it, read it, remove it, test it.

The URL is vetted here (``fabric_bridge.ssrf``) when it is set and again by
the sender before every delivery. The secret is generated here, returned
once to the caller and stored sealed (``fabric_bridge.webhooks.secret_seal``).
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from fabric_bridge import ssrf, webhooks
from fabric_bridge.models import Webhook
from topics import transitions
from topics.errors import InvalidWebhookUrl, WebhookNotFound
from topics.models import Agent, AgentEventKind


def webhook_url_check(url: str) -> None:
    """Raise ``InvalidWebhookUrl`` naming the reason unless ``url`` may receive webhooks."""
    try:
        ssrf.vet_url(url, allow_http=settings.WEBHOOK_ALLOW_HTTP, allow_private=settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS)
    except ssrf.UnsafeUrl as exc:
        raise InvalidWebhookUrl(f"This URL cannot receive webhooks: {exc}.") from None


def webhook_set(*, agent: Agent, url: str, now: datetime | None = None) -> tuple[Webhook, str]:
    """Register ``url`` with a new secret (a second call rotates both); returns the webhook and the secret.

    Pending deliveries stay queued and go to the new URL, signed with the new secret.
    """
    webhook_url_check(url)  # outside the transaction: it resolves a name, which can take a while
    now = now or timezone.now()
    secret = webhooks.secret_new()
    with transaction.atomic():
        hook, _ = Webhook.objects.update_or_create(
            agent=agent,
            defaults={
                "url": url,
                "secret_encrypted": webhooks.secret_seal(secret),
                "created_at": now,
                "last_success_at": None,
                "failing_since": None,
            },
        )
    return hook, secret


def webhook_get(*, agent: Agent) -> Webhook:
    hook = Webhook.objects.filter(agent=agent).first()
    if hook is None:
        raise WebhookNotFound()
    return hook


def webhook_delete(*, agent: Agent) -> None:
    """Remove the webhook and whatever it had still to deliver; nothing to remove is fine too."""
    Webhook.objects.filter(agent=agent).delete()


@transaction.atomic
def webhook_test(*, agent: Agent) -> None:
    """Append a ``webhook_test`` event (it reaches the webhook, and the stream, as any event does)."""
    if not Webhook.objects.filter(agent=agent).exists():
        raise WebhookNotFound()
    transitions.agent_events_append(
        [(agent.pk, AgentEventKind.WEBHOOK_TEST, {"topic_id": None, "title": None, "message": "Webhook test."})]
    )
