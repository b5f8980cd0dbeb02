"""Agents with tokens and topics staged at each point of their life, for the API tests.

Topics are driven through ``topics.transitions`` (never by writing
``status``), with timelines placed around ``now`` so the stored status and
the clock agree, as they would after a punctual ticker.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from rest_framework.test import APIClient

from devtools.seeding import ensure_winner_schema
from topics import transitions
from topics.models import Agent, Camp, Signup, Topic, Verdict, VerdictSchema
from topics.tokens import token_issue

MINUTE = timedelta(minutes=1)

STAGES = (
    "created",
    "signup_open",
    "signup_closed",
    "debating",
    "debate_over",  # still debating in the database, but debate_end_at has passed (ticker lag)
    "judging",
    "completed",
    "cancelled",
)


@dataclass
class Player:
    agent: Agent
    token: str

    def client(self) -> APIClient:
        return client(self.token)


@dataclass
class Staged:
    topic: Topic
    players: dict[str, Player] = field(default_factory=dict)  # camp -> player, once allocated
    judges: list[Player] = field(default_factory=list)  # every judge seat in seat order (players["judge"] is the first)

    @property
    def pro(self) -> Player:
        return self.players["pro"]

    @property
    def con(self) -> Player:
        return self.players["con"]

    @property
    def judge(self) -> Player:
        return self.players["judge"]

    def refresh(self) -> Topic:
        self.topic.refresh_from_db()
        return self.topic


_counter = iter(range(1, 10**9))


def player(name: str | None = None, owner: str | None = None, **fields) -> Player:
    n = next(_counter)
    agent = Agent.objects.create(
        name=name or f"api-agent-{n}", owner=f"owner-{n}" if owner is None else owner, **fields
    )
    return Player(agent, token_issue(agent=agent))


def client(token: str | None = None) -> APIClient:
    api = APIClient()
    if token:
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


def _timeline(stage: str, now: datetime) -> dict[str, datetime]:
    """signup_open_at, signup_close_at, debate_start_at, debate_end_at such that ``stage`` is current at ``now``."""
    if stage == "created":
        start = now + 60 * MINUTE
        return dict(
            signup_open_at=start,
            signup_close_at=start + 10 * MINUTE,
            debate_start_at=start + 10 * MINUTE,
            debate_end_at=start + 40 * MINUTE,
        )
    if stage == "signup_open":
        return dict(
            signup_open_at=now - MINUTE,
            signup_close_at=now + 10 * MINUTE,
            debate_start_at=now + 10 * MINUTE,
            debate_end_at=now + 40 * MINUTE,
        )
    if stage == "signup_closed":
        return dict(
            signup_open_at=now - 20 * MINUTE,
            signup_close_at=now - MINUTE,
            debate_start_at=now + 10 * MINUTE,
            debate_end_at=now + 40 * MINUTE,
        )
    if stage == "debating":
        return dict(
            signup_open_at=now - 30 * MINUTE,
            signup_close_at=now - 20 * MINUTE,
            debate_start_at=now - MINUTE,
            debate_end_at=now + 59 * MINUTE,
        )
    # debate_over, judging, completed, cancelled: the debate is over.
    return dict(
        signup_open_at=now - 90 * MINUTE,
        signup_close_at=now - 80 * MINUTE,
        debate_start_at=now - 70 * MINUTE,
        debate_end_at=now - MINUTE,
    )


def stage_topic(stage: str, *, now: datetime, **options) -> Staged:
    """A topic at ``stage`` with three agents in pro, con and judge once allocated (refreshed from the database)."""
    staged = _stage(stage, now=now, **options)
    staged.topic.refresh_from_db()
    return staged


def _stage(
    stage: str,
    *,
    now: datetime,
    visibility: str = "public",
    round_count: int = 1,
    max_arguments_per_round: int | None = None,
    verdict_due_at: datetime | None = None,
    title: str | None = None,
    seed: int = 1,
    players: dict[str, Player] | None = None,
    verdict_schema: VerdictSchema | None = None,
    judge_count: int = 1,
    blind_judging: bool = False,
    extra_judges: list[Player] | None = None,
) -> Staged:
    assert stage in STAGES, stage
    times = _timeline(stage, now)
    topic = Topic.objects.create(
        title=title or f"Topic at {stage}",
        summary="Staged for the API tests.",
        visibility=visibility,
        round_count=round_count,
        max_arguments_per_round=max_arguments_per_round,
        verdict_due_at=verdict_due_at,
        verdict_schema=verdict_schema or ensure_winner_schema(),
        judge_count=judge_count,
        blind_judging=blind_judging,
        **times,
    )
    staged = Staged(topic)
    if stage == "created":
        return staged
    _step(topic, transitions.topic_open_signup, now=times["signup_open_at"])
    if stage == "signup_open":
        return staged
    # Given players (a tournament among the same agents) or three new ones.
    volunteers = players or {camp: player() for camp in ("pro", "con", "judge")}
    # Given judges for the seats after the first (agents shared among panels), or new ones.
    extra_judges = extra_judges if extra_judges is not None else [player() for _ in range(judge_count - 1)]
    Signup.objects.bulk_create(
        [Signup(topic=topic, agent=p.agent, camp=camp) for camp, p in volunteers.items()]
        + [Signup(topic=topic, agent=p.agent, camp="judge") for p in extra_judges]
    )
    with transaction.atomic():
        locked = transitions.topic_lock(topic.pk)
        transitions.topic_close_signup(locked, now=times["signup_close_at"], rng=random.Random(seed))
    # Each volunteered for a different camp, so each got it; judge volunteers share the seats in the draw's order.
    by_agent = {p.agent.pk: p for p in [*volunteers.values(), *extra_judges]}
    seats = Camp.objects.filter(topic=topic, camp="judge").order_by("seat").values_list("agent_id", flat=True)
    staged.judges = [by_agent[agent_id] for agent_id in seats]
    staged.players = {**volunteers, "judge": staged.judges[0]}
    if stage == "signup_closed":
        return staged
    _step(topic, transitions.topic_start_debate, now=times["debate_start_at"])
    if stage in ("debating", "debate_over"):
        return staged
    _step(topic, transitions.topic_end_debate, now=times["debate_end_at"])
    if stage == "judging":
        return staged
    if stage == "completed":
        with transaction.atomic():
            locked = transitions.topic_lock(topic.pk)
            seats = transitions.topic_lock_for_completion(locked)  # before the verdict, as verdict_create
            verdict = Verdict.objects.create(
                topic=locked, judge=staged.judge.agent, verdict={"winner": "draw"}, rationale="Even."
            )
            transitions.topic_complete(locked, verdict=verdict, now=now, seats=seats)
        return staged
    with transaction.atomic():
        transitions.topic_cancel(transitions.topic_lock(topic.pk), reason="staff cancelled it", now=now)
    return staged


def _step(topic: Topic, transition, *, now: datetime) -> None:
    with transaction.atomic():
        transition(transitions.topic_lock(topic.pk), now=now)


def connection_id() -> int:
    """This thread's MariaDB connection id (``waits_for_a_lock`` takes it)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        return cursor.fetchone()[0]


def waits_for_a_lock(connection_id: int) -> bool:
    """MariaDB: whether that connection's transaction is waiting for a row lock right now.

    Only that connection's: other processes on the server may be waiting too.
    INNODB_TRX is a cache InnoDB refreshes only after 0.1 s without readers, so
    poll it slower than that (``wait_for(..., interval=0.25)``).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT trx_state FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = %s", [connection_id]
        )
        return any(state == "LOCK WAIT" for (state,) in cursor.fetchall())
