"""The outbox: rows written in the change's transaction, delivered later by the ticker.

Two kinds of row share one set of delivery columns (``OutboxRow``) and one
delivery engine (``fabric_bridge.engine``): Fabric announcements and agents'
webhook deliveries.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    DEAD = "dead", "Dead"


# The name the announcement code and its tests have always used.
AnnouncementStatus = DeliveryStatus


class OutboxRow(models.Model):
    """The columns the delivery engine owns: where a row is in its life, and its attempts."""

    status = models.CharField(max_length=8, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True


class AnnouncementKind(models.TextChoices):
    SIGNUP_OPENED = "signup_opened", "Signup opened"
    TOPIC_COMPLETED = "topic_completed", "Topic completed"
    TOPIC_CANCELLED = "topic_cancelled", "Topic cancelled"


class Announcement(OutboxRow):
    # Also the Idempotency-Key Fabric sees, so a resend after a crash can be dropped.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    topic = models.ForeignKey("topics.Topic", on_delete=models.CASCADE, related_name="announcements")
    kind = models.CharField(max_length=32, choices=AnnouncementKind.choices)
    payload = models.JSONField(help_text="The exact JSON body posted to Fabric.")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A topic is announced at most once per kind; a double transition would fail here.
            models.UniqueConstraint(fields=["topic", "kind"], name="announcement_once_per_kind"),
            models.CheckConstraint(condition=Q(status__in=DeliveryStatus.values), name="announcement_status_valid"),
        ]
        indexes = [
            # Delivery: status='pending' AND next_attempt_at <= now ORDER BY next_attempt_at
            models.Index(fields=["status", "next_attempt_at"], name="announcement_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.topic_id}"


class Webhook(models.Model):
    """Where an agent wants its events POSTed, and the secret they are signed with (encrypted: ``secrets_box``)."""

    agent = models.OneToOneField("topics.Agent", on_delete=models.CASCADE, related_name="webhook")
    url = models.CharField(max_length=2000)
    secret_encrypted = models.TextField(help_text="The whsec_ signing secret, Fernet-encrypted (docs/webhooks.md).")
    created_at = models.DateTimeField()
    last_success_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(OutboxRow):
    """One AgentEvent on its way to the agent's webhook. Its id is the ``webhook-id`` header: stable across retries."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    seq = models.PositiveIntegerField(help_text="The AgentEvent's seq: deliveries to one webhook go in this order.")
    kind = models.CharField(max_length=32)
    payload = models.JSONField(help_text="The exact JSON body posted (signed at each attempt).")

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["webhook", "seq"], name="webhook_delivery_once_per_event"),
            models.CheckConstraint(condition=Q(status__in=DeliveryStatus.values), name="webhook_delivery_status_valid"),
        ]
        indexes = [
            # Delivery: status='pending' AND next_attempt_at <= now ORDER BY next_attempt_at
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due_idx"),
            # Ordering: NOT EXISTS (webhook_id=? AND status='pending' AND seq < ?)
            models.Index(fields=["webhook", "status", "seq"], name="webhook_delivery_head_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.seq} to {self.webhook_id}"
