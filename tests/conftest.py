"""Persona fixtures shared by the suite: staff, agents with tokens, topics at each stage."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from devtools.fabric_receiver import FabricServer
from devtools.seeding import ensure_winner_schema
from topics.models import Agent, Topic


@pytest.hookimpl(trylast=True)  # after -m has deselected what it deselects
def pytest_collection_modifyitems(config, items):
    # A cluster test selected without a cluster is a broken CI step, not a skip.
    if any(item.get_closest_marker("galera") for item in items) and not os.environ.get("GALERA_NODES"):
        raise pytest.UsageError("galera tests need GALERA_NODES (see scripts/galera-cluster env)")
    # Tests about row locks need MySQL/MariaDB; on SQLite they say so instead of passing vacuously.
    for item in items:
        if item.get_closest_marker("mariadb") and connection.vendor != "mysql":
            item.add_marker(pytest.mark.skip(reason="needs MySQL/MariaDB: run with DATABASE_URL=mysql://..."))


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


@pytest.fixture
def winner_schema(db):
    return ensure_winner_schema()


@pytest.fixture
def make_agent(db):
    counter = iter(range(1, 10_000))

    def make(name: str | None = None, owner: str = "", **extra) -> Agent:
        return Agent.objects.create(name=name or f"agent-{next(counter)}", owner=owner, **extra)

    return make


@pytest.fixture
def make_topic(db, now, winner_schema):
    """A topic whose timeline is relative to ``now``: by default signup is open now."""

    def make(
        *,
        opens_in=timedelta(0),
        signup_for=timedelta(minutes=10),
        gap=timedelta(0),
        debate_for=timedelta(minutes=30),
        verdict_within=None,
        start=None,
        **fields,
    ) -> Topic:
        base = start or now
        signup_open_at = base + opens_in
        signup_close_at = signup_open_at + signup_for
        debate_start_at = signup_close_at + gap
        debate_end_at = debate_start_at + debate_for
        fields.setdefault("title", "Should agents debate?")
        fields.setdefault("verdict_schema", winner_schema)
        return Topic.objects.create(
            signup_open_at=signup_open_at,
            signup_close_at=signup_close_at,
            debate_start_at=debate_start_at,
            debate_end_at=debate_end_at,
            verdict_due_at=debate_end_at + verdict_within if verdict_within else None,
            **fields,
        )

    return make


@pytest.fixture
def fabric(settings):
    """A real HTTP server standing in for Fabric, with the four FABRIC_* settings pointing at it.

    Timeouts are short so a hang costs half a second; retry backoff keeps its defaults.
    """
    server = FabricServer().start()
    settings.FABRIC_GUILD_BASE_URL = server.base_url
    settings.FABRIC_ANNOUNCE_CHANNEL_ID = "announce-7"
    settings.FABRIC_SYSTEM_API_KEY = "system-key-1"
    settings.FABRIC_BOT_BEARER_TOKEN = "bot-token-1"
    settings.FABRIC_CONNECT_TIMEOUT = timedelta(seconds=1)
    settings.FABRIC_READ_TIMEOUT = timedelta(seconds=0.5)
    settings.FABRIC_DELIVERY_BUDGET = timedelta(seconds=2)
    yield server
    server.stop()


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_superuser("staff", "staff@example.com", "a-long-staff-password")


@pytest.fixture
def staff_client(client, staff):
    # force_login: the password path is django-axes' (tests/test_admin_login.py drives the real login form).
    client.force_login(staff)
    return client
