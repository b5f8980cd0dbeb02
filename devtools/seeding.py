"""Many rows fast, for the tests that start real processes and for the benchmarks.

Rows are written with ``bulk_create`` (thousands of topics in seconds) and
committed by the caller, so child processes see them. Needs a configured
Django.
"""

from __future__ import annotations

import importlib
import random
import uuid
from datetime import datetime, timedelta

from django.apps import apps
from django.utils import timezone

from fabric_bridge.models import Announcement, AnnouncementKind
from topics.announcements import build_payload
from topics.models import Agent, Signup, Topic, VerdictSchema

PREFERENCES = ["pro", "con", "judge", None]


def ensure_winner_schema() -> VerdictSchema:
    """The migrations' default ``winner`` verdict schema (rated: ``x-outcome``), re-created if needed.

    A ``transaction=True`` test ends with a flush that deletes rows written by
    data migrations, so any later test (or seeding) may find it gone.
    """
    importlib.import_module("topics.migrations.0002_winner_schema").create_winner(apps, None)
    importlib.import_module("topics.migrations.0005_winner_outcome").add_outcome(apps, None)
    return VerdictSchema.objects.get(name="winner")


def seed_agents(count: int, *, prefix: str = "seed-agent") -> list[Agent]:
    """``count`` agents with distinct owners (so the owner rule never cancels a seeded topic)."""
    agents = [Agent(name=f"{prefix}-{i}", owner=f"{prefix}-owner-{i}") for i in range(count)]
    Agent.objects.bulk_create(agents, batch_size=500)
    return agents


def seed_overdue_topics(
    count: int,
    *,
    now: datetime,
    agents: list[Agent],
    signups_per_topic: int = 3,
    round_count: int = 2,
    verdict_deadline: bool = True,
    rng: random.Random | None = None,
    title: str = "seeded",
) -> list[uuid.UUID]:
    """``count`` topics still ``created`` whose whole timeline has passed, so every transition is due in turn.

    One ticker pass takes each through created → signup_open → signup_closed
    (or cancelled, with fewer than three signups) → debating → each round
    boundary → judging → cancelled (``no verdict by``, when ``verdict_deadline``).
    """
    rng = rng or random.Random(7)
    schema = ensure_winner_schema()  # explicit: the field default would query per row
    hour = timedelta(hours=1)
    topics = [
        Topic(
            id=uuid.uuid4(),
            title=f"{title} {i}",
            signup_open_at=now - 5 * hour,
            signup_close_at=now - 4 * hour,
            debate_start_at=now - 3 * hour,
            debate_end_at=now - 2 * hour,
            verdict_due_at=now - hour if verdict_deadline else None,
            round_count=round_count,
            verdict_schema=schema,
        )
        for i in range(count)
    ]
    Topic.objects.bulk_create(topics, batch_size=500)
    signups = [
        Signup(topic=topic, agent=agent, camp=rng.choice(PREFERENCES))
        for topic in topics
        for agent in rng.sample(agents, signups_per_topic)
    ]
    Signup.objects.bulk_create(signups, batch_size=1000)
    return [topic.id for topic in topics]


def seed_announcements(count: int, *, title: str = "Backlog") -> list[str]:
    """``count`` pending, due announcements for topics far in the future (tickers only deliver them).

    Returns the announcement ids (the Idempotency-Keys Fabric will see), sorted.
    """
    now = timezone.now()
    schema = ensure_winner_schema()  # a transactional test's flush may have removed the migration's row
    day = timedelta(days=1)
    topics = [
        Topic(
            id=uuid.uuid4(),
            title=f"{title} {i}",
            signup_open_at=now + day,
            signup_close_at=now + 2 * day,
            debate_start_at=now + 3 * day,
            debate_end_at=now + 4 * day,
            verdict_schema=schema,
        )
        for i in range(count)
    ]
    Topic.objects.bulk_create(topics, batch_size=500)
    rows = [
        Announcement(
            topic=topic,
            kind=AnnouncementKind.SIGNUP_OPENED,
            payload=build_payload(topic, AnnouncementKind.SIGNUP_OPENED),
            next_attempt_at=now - timedelta(seconds=1),
        )
        for topic in topics
    ]
    Announcement.objects.bulk_create(rows, batch_size=500)
    return sorted(str(row.id) for row in rows)
