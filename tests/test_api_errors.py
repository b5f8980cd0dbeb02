"""The one exception handler: database trouble is a retryable 503, a bug is a JSON 500 under /api/."""

from __future__ import annotations

import pytest
from django.db import OperationalError
from django.test import Client
from django.utils import timezone

from tests.api_support import player, stage_topic

pytestmark = pytest.mark.django_db


def test_a_database_error_is_service_unavailable_with_retry_after(monkeypatch):
    def down(**kwargs):
        raise OperationalError("(1205, 'Lock wait timeout exceeded; try restarting transaction')")

    monkeypatch.setattr("topics.selectors.topic_list_rows", down)
    response = Client().get("/api/topics/")
    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"
    assert response["Retry-After"] == "2"


def test_a_lock_timeout_in_a_write_is_service_unavailable(monkeypatch):
    staged = stage_topic("debating", now=timezone.now())

    def timeout(**kwargs):
        raise OperationalError(1205, "Lock wait timeout exceeded")

    monkeypatch.setattr("topics.services.argument_create", timeout)
    response = staged.pro.client().post(f"/api/topics/{staged.topic.pk}/arguments/", {"content": "x"}, format="json")
    assert response.status_code == 503 and response.json()["code"] == "service_unavailable"


def test_an_unexpected_error_is_a_json_500_under_api(monkeypatch):
    def bug(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("topics.selectors.agent_assignments", bug)
    me = player()
    response = Client(raise_request_exception=False).get("/api/agents/me/", HTTP_AUTHORIZATION=f"Bearer {me.token}")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error.", "code": "server_error"}
