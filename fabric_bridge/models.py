"""The announcement outbox: rows written in the transition's transaction, delivered later by the ticker."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q


class AnnouncementKind(models.TextChoices):
    SIGNUP_OPENED = "signup_opened", "Signup opened"
    TOPIC_COMPLETED = "topic_completed", "Topic completed"
    TOPIC_CANCELLED = "topic_cancelled", "Topic cancelled"


class AnnouncementStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    DEAD = "dead", "Dead"


class Announcement(models.Model):
    # Also the Idempotency-Key Fabric sees, so a resend after a crash can be dropped.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    topic = models.ForeignKey("topics.Topic", on_delete=models.CASCADE, related_name="announcements")
    kind = models.CharField(max_length=32, choices=AnnouncementKind.choices)
    payload = models.JSONField(help_text="The exact JSON body posted to Fabric.")
    status = models.CharField(max_length=8, choices=AnnouncementStatus.choices, default=AnnouncementStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A topic is announced at most once per kind; a double transition would fail here.
            models.UniqueConstraint(fields=["topic", "kind"], name="announcement_once_per_kind"),
            models.CheckConstraint(condition=Q(status__in=AnnouncementStatus.values), name="announcement_status_valid"),
        ]
        indexes = [
            # Delivery: status='pending' AND next_attempt_at <= now ORDER BY next_attempt_at
            models.Index(fields=["status", "next_attempt_at"], name="announcement_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.topic_id}"
