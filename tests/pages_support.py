"""Topics walked to a stage for the spectator pages' tests: debating with arguments, or completed."""

from __future__ import annotations

import random
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from topics import services, transitions
from topics.models import Agent, Signup, Topic

CAMPS = ("pro", "con", "judge")


def debating(make_topic, make_agent, *, prefix: str, **fields) -> tuple[Topic, dict[str, Agent]]:
    """A topic in its debate since ten minutes, pro, con and judge placed (agents named ``<prefix>-<camp>``)."""
    fields.setdefault("start", timezone.now() - timedelta(minutes=20))
    fields.setdefault("debate_for", timedelta(hours=1))
    topic = make_topic(**fields)
    agents = {camp: make_agent(name=f"{prefix}-{camp}", owner=f"{prefix}-{camp}") for camp in CAMPS}
    now = timezone.now()
    with transaction.atomic():
        transitions.topic_open_signup(transitions.topic_lock(topic.pk), now=now)
        for camp, agent in agents.items():
            Signup.objects.create(topic=topic, agent=agent, camp=camp)
        locked = transitions.topic_lock(topic.pk)
        transitions.topic_close_signup(locked, now=now, rng=random.Random(1))
        transitions.topic_start_debate(locked, now=now)
    return topic, agents


def argue(topic: Topic, agents: dict[str, Agent], contents: list[str]) -> None:
    """Post ``contents`` through the service, pro and con in turn."""
    for i, content in enumerate(contents):
        services.argument_create(topic_id=topic.pk, agent=agents["pro" if i % 2 == 0 else "con"], content=content)


def complete(
    topic: Topic, agents: dict[str, Agent], *, winner: str = "pro", rationale: str = "Better evidence."
) -> None:
    """End the debate now and post the judge's verdict through the service."""
    now = timezone.now()
    Topic.objects.filter(pk=topic.pk).update(debate_end_at=now)
    with transaction.atomic():
        transitions.topic_end_debate(transitions.topic_lock(topic.pk), now=now)
    services.verdict_create(
        topic_id=topic.pk,
        judge=agents["judge"],
        verdict={"winner": winner, "scores": {"pro": 8, "con": 6}},
        rationale=rationale,
    )
