"""Announcements and webhook deliveries in the admin: read-only outbox rows plus a "retry now" action."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from fabric_bridge.config import missing_settings
from fabric_bridge.models import Announcement, WebhookDelivery
from fabric_bridge.services import announcement_retry_now, webhook_delivery_retry_now


class OutboxRowAdmin(admin.ModelAdmin):
    """What both outboxes' rows share in the admin: delivery owns every field; staff act through "retry now"."""

    date_hierarchy = "created_at"
    actions = ["retry_now"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Announcement | WebhookDelivery | None = None) -> bool:
        return False

    @admin.display(description="last error")
    def short_error(self, obj: Announcement | WebhookDelivery) -> str:
        return Truncator(obj.last_error).chars(80)

    def _say_retried(self, request: HttpRequest, *, retried: int, selected: int, what: str) -> None:
        text = f"{retried} {what} queued for the next ticker pass."
        if skipped := selected - retried:
            text += f" {skipped} skipped (already sent, or changed meanwhile)."
        self.message_user(request, text, messages.SUCCESS if retried else messages.WARNING)


@admin.register(Announcement)
class AnnouncementAdmin(OutboxRowAdmin):
    list_display = ["created_at", "kind", "topic", "status", "attempts", "next_attempt_at", "short_error", "sent_at"]
    list_filter = ["status", "kind"]
    search_fields = ["=id", "topic__title", "=topic__id", "last_error"]
    list_select_related = ["topic"]
    fields = [
        "id",
        "topic",
        "kind",
        "status",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "created_at",
        "last_error",
        "content",
        "metadata",
    ]
    # Delivery owns every field; staff act through "retry now" only.
    readonly_fields = fields

    @admin.display(description="content (markdown as sent)")
    def content(self, obj: Announcement) -> str:
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', obj.payload.get("content", ""))

    @admin.display(description="metadata")
    def metadata(self, obj: Announcement) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload.get("metadata", {}), indent=2, ensure_ascii=False))

    @admin.action(description="Retry now (pending and dead announcements)", permissions=["change"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Announcement]) -> None:
        now = timezone.now()
        retried = sum(
            announcement_retry_now(announcement_id=pk, now=now) for pk in queryset.values_list("pk", flat=True)
        )
        self._say_retried(request, retried=retried, selected=queryset.count(), what="announcement(s)")
        if missing := missing_settings():
            self.message_user(
                request,
                f"Fabric is disabled (missing {', '.join(missing)}): nothing is sent until it is configured.",
                messages.WARNING,
            )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(OutboxRowAdmin):
    list_display = ["created_at", "kind", "seq", "agent", "status", "attempts", "next_attempt_at", "short_error"]
    list_filter = ["status", "kind"]
    search_fields = ["=id", "=webhook__agent__id", "webhook__agent__name", "webhook__url", "last_error"]
    list_select_related = ["webhook__agent"]
    fields = [
        "id",
        "agent",
        "url",
        "kind",
        "seq",
        "status",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "created_at",
        "last_error",
        "body",
    ]
    # Delivery owns every field; staff act through "retry now" only.
    readonly_fields = fields

    @admin.display(description="agent")
    def agent(self, obj: WebhookDelivery) -> str:
        return str(obj.webhook.agent)

    @admin.display(description="URL")
    def url(self, obj: WebhookDelivery) -> str:
        return obj.webhook.url

    @admin.display(description="body (as posted, signed at each attempt)")
    def body(self, obj: WebhookDelivery) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, ensure_ascii=False))

    @admin.action(description="Retry now (pending and dead deliveries)", permissions=["change"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        now = timezone.now()
        retried = sum(
            webhook_delivery_retry_now(delivery_id=pk, now=now) for pk in queryset.values_list("pk", flat=True)
        )
        what = f"webhook deliver{'y' if retried == 1 else 'ies'}"
        self._say_retried(request, retried=retried, selected=queryset.count(), what=what)
