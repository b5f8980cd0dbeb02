"""Announcements in the admin, through the real admin URLs: what staff see and the "retry now" action."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from fabric_bridge.delivery import deliver_due
from fabric_bridge.models import Announcement, AnnouncementKind, AnnouncementStatus
from topics.announcements import build_payload

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:fabric_bridge_announcement_changelist"


def staff(*codenames: str) -> User:
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="fabric_bridge", codename__in=codenames)
    )
    return user


@pytest.fixture
def rows(make_topic, now):
    def make(title, kind=AnnouncementKind.SIGNUP_OPENED, **fields):
        topic = make_topic(title=title)
        fields.setdefault("next_attempt_at", now)
        return Announcement.objects.create(topic=topic, kind=kind, payload=build_payload(topic, kind), **fields)

    return {
        "dead": make("Dead one", status=AnnouncementStatus.DEAD, attempts=10, last_error="HTTP 401 Unauthorized: nope"),
        "waiting": make("Waiting one", attempts=3, last_error="HTTP 503", next_attempt_at=now + timedelta(hours=1)),
        "sent": make("Sent one", status=AnnouncementStatus.SENT, attempts=1, sent_at=now),
    }


def test_operator_sees_status_attempts_and_last_error(client, rows):
    client.force_login(staff("view_announcement"))
    page = client.get(reverse(CHANGELIST), {"status__exact": "dead"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "Dead one" in html and "HTTP 401 Unauthorized: nope" in html
    assert "Waiting one" not in html
    # Read-only detail: the markdown as sent, no editable inputs, no delete.
    detail = client.get(reverse("admin:fabric_bridge_announcement_change", args=[rows["dead"].pk]))
    assert detail.status_code == 200
    body = detail.content.decode()
    assert "**New debate topic: Dead one**" in body
    assert 'name="last_error"' not in body and 'name="status"' not in body
    assert "deletelink" not in body
    # Viewing alone does not offer the action.
    assert "retry_now" not in html


def test_retry_now_action_through_the_admin(client, rows, fabric, now):
    client.force_login(staff("view_announcement", "change_announcement"))
    before = timezone.now()

    response = client.post(
        reverse(CHANGELIST),
        {"action": "retry_now", "_selected_action": [str(r.pk) for r in rows.values()]},
        follow=True,
    )

    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert shown == [
        "2 announcement(s) queued for the next ticker pass. 1 skipped (already sent, or changed meanwhile)."
    ]
    dead, waiting, sent = (Announcement.objects.get(pk=r.pk) for r in rows.values())
    # The dead one is pending again with a fresh series of attempts; its error stays until the next attempt.
    assert (dead.status, dead.attempts, dead.last_error) == ("pending", 0, "HTTP 401 Unauthorized: nope")
    assert before <= dead.next_attempt_at <= timezone.now()
    # The waiting one skips its backoff but keeps its count.
    assert (waiting.status, waiting.attempts) == ("pending", 3)
    assert before <= waiting.next_attempt_at <= timezone.now()
    assert (sent.status, sent.attempts, sent.sent_at) == ("sent", 1, now)

    # The next delivery sends exactly the two retried ones.
    assert deliver_due() == 2
    assert sorted(fabric.keys()) == sorted([str(dead.pk), str(waiting.pk)])
    assert Announcement.objects.filter(status=AnnouncementStatus.SENT).count() == 3


def test_retry_now_warns_when_fabric_is_disabled(client, rows, fabric, settings):
    settings.FABRIC_BOT_BEARER_TOKEN = ""
    client.force_login(staff("view_announcement", "change_announcement"))
    response = client.post(
        reverse(CHANGELIST), {"action": "retry_now", "_selected_action": [str(rows["dead"].pk)]}, follow=True
    )
    shown = [str(m) for m in response.context["messages"]]
    assert shown[-1] == "Fabric is disabled (missing FABRIC_BOT_BEARER_TOKEN): nothing is sent until it is configured."
    assert Announcement.objects.get(pk=rows["dead"].pk).status == AnnouncementStatus.PENDING


def test_staff_cannot_add_or_delete_announcements(client, rows):
    client.force_login(staff("view_announcement", "change_announcement", "add_announcement", "delete_announcement"))
    assert client.get(reverse("admin:fabric_bridge_announcement_add")).status_code == 403
    assert client.get(reverse("admin:fabric_bridge_announcement_delete", args=[rows["dead"].pk])).status_code == 403
