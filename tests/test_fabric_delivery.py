"""Delivering the outbox to a real HTTP server: the request Fabric sees and what each answer does to the row."""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.db import transaction

from devtools.fabric_receiver import Reply
from fabric_bridge import delivery
from fabric_bridge.delivery import deliver_due, retry_delay
from fabric_bridge.models import Announcement, AnnouncementKind, AnnouncementStatus
from topics import transitions
from topics.announcements import build_payload
from topics.models import Signup, Verdict, VerdictSchema

pytestmark = pytest.mark.django_db


def open_signup(topic, now):
    with transaction.atomic():
        transitions.topic_open_signup(transitions.topic_lock(topic.pk), now=now)
    return Announcement.objects.get(topic=topic, kind=AnnouncementKind.SIGNUP_OPENED)


def complete(topic, agents: dict, *, verdict: dict, rationale: str, now, seed: int = 3) -> None:
    """Walk ``topic`` from signup to completed with ``agents`` (camp → agent); the judge gives ``verdict``."""
    open_signup(topic, now)
    for camp, agent in agents.items():
        Signup.objects.create(topic=topic, agent=agent, camp=camp)
    with transaction.atomic():
        locked = transitions.topic_lock(topic.pk)
        transitions.topic_close_signup(locked, now=now, rng=random.Random(seed))
        transitions.topic_start_debate(locked, now=now)
        transitions.topic_end_debate(locked, now=now)
        seats = transitions.topic_lock_for_completion(locked)  # before the verdict, as verdict_create
        judged = Verdict.objects.create(topic=locked, judge=agents["judge"], verdict=verdict, rationale=rationale)
        transitions.topic_complete(locked, verdict=judged, now=now, seats=seats)


def queue(make_topic, now, count=1, **topic_fields) -> list[Announcement]:
    """Pending signup announcements, due at ``now``, oldest first."""
    rows = []
    for i in range(count):
        topic = make_topic(title=f"Topic {i}", **topic_fields)
        rows.append(
            Announcement.objects.create(
                topic=topic,
                kind=AnnouncementKind.SIGNUP_OPENED,
                payload=build_payload(topic, AnnouncementKind.SIGNUP_OPENED),
                next_attempt_at=now - timedelta(seconds=count - i),
            )
        )
    return rows


def test_fabric_receives_the_contract_request(fabric, make_topic, winner_schema, now):
    topic = make_topic(
        title="Should AI agents be allowed to vote?",
        summary="Representation without a body.",
        verdict_within=timedelta(hours=1),
        round_count=3,
        start=now.replace(year=2031, month=3, day=14, hour=9, minute=0, second=0),
    )
    announcement = open_signup(topic, now)

    assert deliver_due(now=now) == 1

    [request] = fabric.requests()
    assert request.method == "POST"
    assert request.path == "/api/channels/announce-7/messages"
    assert request.headers["x-fabric-system-key"] == "system-key-1"
    assert request.headers["authorization"] == "Bearer bot-token-1"
    assert request.headers["idempotency-key"] == str(announcement.id)
    assert request.headers["content-type"] == "application/json"
    body = request.json
    assert set(body) == {"content", "metadata"}
    assert body["content"] == (
        "**New debate topic: Should AI agents be allowed to vote?**\n"
        "\n"
        "Representation without a body.\n"
        "\n"
        "- Signup: 2031-03-14 09:00 UTC → 2031-03-14 09:10 UTC\n"
        "- Debate: 2031-03-14 09:10 UTC → 2031-03-14 09:40 UTC (3 rounds)\n"
        "- Verdict due: 2031-03-14 10:40 UTC\n"
        f"- Verdict schema: `winner` — {winner_schema.description}\n"
        "\n"
        f"Sign up as pro, con or judge: `POST /api/topics/{topic.id}/signups/`"
    )
    assert body["metadata"] == {
        "kind": "signup_opened",
        "topic_id": str(topic.id),
        "title": "Should AI agents be allowed to vote?",
        "status": "signup_open",
        "visibility": "public",
        "signup_open_at": "2031-03-14T09:00:00.000000Z",
        "signup_close_at": "2031-03-14T09:10:00.000000Z",
        "debate_start_at": "2031-03-14T09:10:00.000000Z",
        "debate_end_at": "2031-03-14T09:40:00.000000Z",
        "verdict_due_at": "2031-03-14T10:40:00.000000Z",
        "verdict_schema": "winner",
        "judge_count": 1,
        "blind_judging": False,
    }
    announcement.refresh_from_db()
    assert announcement.status == AnnouncementStatus.SENT
    assert announcement.attempts == 1
    assert announcement.sent_at is not None
    assert announcement.last_error == ""


def test_completion_and_cancellation_read_well(fabric, make_topic, make_agent, now):
    topic = make_topic(title="Tabs or spaces?")
    debaters = {camp: make_agent(name=f"{camp}-bot") for camp in ("pro", "con", "judge")}
    complete(
        topic,
        debaters,
        verdict={"winner": "con", "scores": {"pro": 4, "con": 8}},
        rationale="Con cited the style guides.\nPro relied on feelings.",
        now=now,
    )
    other = make_topic(title="Is water wet?")
    open_signup(other, now)
    with transaction.atomic():
        transitions.topic_cancel(transitions.topic_lock(other.pk), reason="duplicate of an earlier topic", now=now)

    assert deliver_due(now=now) == 4

    by_kind = {(r.json["metadata"]["topic_id"], r.json["metadata"]["kind"]): r.json for r in fabric.requests()}
    completed = by_kind[(str(topic.id), "topic_completed")]
    assert completed["content"] == (
        "**Debate completed: Tabs or spaces?**\n"
        "\n"
        "Pro: pro-bot · Con: con-bot · Judge: judge-bot\n"
        "Winner: **con** (con-bot)\n"
        "Scores: pro 4, con 8\n"
        "\n"
        "> Con cited the style guides.\n"
        "> Pro relied on feelings."
    )
    assert completed["metadata"]["outcome"] == "con"
    assert completed["metadata"]["verdict"] == {"winner": "con", "scores": {"pro": 4, "con": 8}}
    cancelled = by_kind[(str(other.id), "topic_cancelled")]
    assert cancelled["content"] == "**Debate cancelled: Is water wet?**\n\nReason: duplicate of an earlier topic"
    assert cancelled["metadata"]["reason"] == "duplicate of an earlier topic"
    assert set(Announcement.objects.values_list("status", flat=True)) == {AnnouncementStatus.SENT}


def test_a_completion_names_the_winner_where_the_schema_puts_it(fabric, make_topic, make_agent, now):
    """A rated schema whose outcome is not called "winner": the announcement reads its x-outcome pointer."""
    schema = VerdictSchema.objects.create(
        name="nested-outcome",
        schema={
            "type": "object",
            "required": ["result"],
            "properties": {
                "result": {
                    "type": "object",
                    "required": ["side"],
                    "properties": {"side": {"enum": ["pro", "con", "draw"]}},
                },
                "winner": {"type": "string"},
            },
            "x-outcome": "/result/side",
        },
    )
    topic = make_topic(title="Nested", verdict_schema=schema)
    debaters = {camp: make_agent(name=f"{camp}-bot") for camp in ("pro", "con", "judge")}
    # "winner" here is free text the schema allows; the outcome is at /result/side.
    complete(topic, debaters, verdict={"result": {"side": "pro"}, "winner": "con"}, rationale="r", now=now)

    deliver_due(now=now)
    [completed] = [r.json for r in fabric.requests() if r.json["metadata"]["kind"] == "topic_completed"]
    assert "Winner: **pro** (pro-bot)" in completed["content"].splitlines()
    assert completed["metadata"]["outcome"] == "pro"


def test_announcement_rolls_back_with_its_transition(fabric, make_topic, now):
    topic = make_topic()
    with pytest.raises(RuntimeError), transaction.atomic():
        transitions.topic_open_signup(transitions.topic_lock(topic.pk), now=now)
        raise RuntimeError("the transition's transaction fails after queuing")
    assert not Announcement.objects.exists()
    assert deliver_due(now=now) == 0
    assert fabric.requests() == []


def test_disabled_fabric_queues_and_sends_nothing_and_says_what_is_missing(fabric, settings, make_topic, now, caplog):
    queued_while_enabled = queue(make_topic, now)[0]
    settings.FABRIC_SYSTEM_API_KEY = ""
    settings.FABRIC_BOT_BEARER_TOKEN = ""

    topic = make_topic(title="Announced while disabled")
    with transaction.atomic():
        transitions.topic_open_signup(transitions.topic_lock(topic.pk), now=now)
    assert not Announcement.objects.filter(topic=topic).exists()

    assert deliver_due(now=now + timedelta(days=1)) == 0
    assert fabric.requests() == []
    queued_while_enabled.refresh_from_db()
    assert (queued_while_enabled.status, queued_while_enabled.attempts) == (AnnouncementStatus.PENDING, 0)

    from fabric_bridge.config import log_status

    with caplog.at_level(logging.INFO, logger="fabric_bridge"):
        log_status()
    [record] = [r for r in caplog.records if r.name == "fabric_bridge"]
    assert record.getMessage() == (
        "fabric announcements disabled: missing FABRIC_SYSTEM_API_KEY, FABRIC_BOT_BEARER_TOKEN"
    )


def test_asgi_server_logs_the_fabric_status_once_at_startup():
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABRIC_")}
    env.update(DJANGO_SETTINGS_MODULE="tests.settings", FABRIC_GUILD_BASE_URL="https://fabric.example")
    # What an ASGI server does when it boots: import the application module.
    result = subprocess.run(
        [sys.executable, "-c", "import dialectic.asgi"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "fabric announcements" in line]
    assert len(lines) == 1, result.stderr
    assert lines[0].endswith(
        "fabric announcements disabled: missing FABRIC_ANNOUNCE_CHANNEL_ID, FABRIC_SYSTEM_API_KEY, "
        "FABRIC_BOT_BEARER_TOKEN"
    )


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"error": "content too long", "limit": 2000}),
        (401, {"error": "invalid bot token"}),
        (404, {"error": "unknown channel announce-7"}),
    ],
)
def test_client_errors_are_dead_after_one_attempt_with_the_body(fabric, make_topic, now, status, body):
    [row] = queue(make_topic, now)
    fabric.script(Reply(status, body))

    assert deliver_due(now=now) == 1
    # A dead row is never sent again, however late the clock.
    assert deliver_due(now=now + timedelta(days=30)) == 0

    row.refresh_from_db()
    assert row.status == AnnouncementStatus.DEAD
    assert row.attempts == 1
    assert row.last_error.startswith(f"HTTP {status} ")
    assert f'"error": "{body["error"]}"' in row.last_error
    assert len(fabric.requests()) == 1


def test_a_rejected_row_does_not_stop_the_others(fabric, make_topic, now):
    first, second = queue(make_topic, now, count=2)
    fabric.script(Reply(400, {"error": "bad"}))
    assert deliver_due(now=now) == 2
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (AnnouncementStatus.DEAD, AnnouncementStatus.SENT)


def test_a_long_error_body_is_truncated(fabric, make_topic, now):
    [row] = queue(make_topic, now)
    fabric.script(Reply(422, "x" * 10_000))
    deliver_due(now=now)
    row.refresh_from_db()
    assert row.status == AnnouncementStatus.DEAD
    assert row.last_error.startswith("HTTP 422 Unprocessable Entity: ")
    assert row.last_error.endswith("…")
    assert len(row.last_error) < 600


def test_a_redirect_is_not_followed_and_names_the_setting(fabric, make_topic, now):
    [row] = queue(make_topic, now)
    fabric.script(Reply(301, b"", headers={"Location": "https://elsewhere.example/"}))
    deliver_due(now=now)
    row.refresh_from_db()
    assert row.status == AnnouncementStatus.DEAD
    assert "https://elsewhere.example/" in row.last_error and "FABRIC_GUILD_BASE_URL" in row.last_error
    assert [r.method for r in fabric.requests()] == ["POST"]


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_retryable_answers_back_off_and_keep_the_error(fabric, make_topic, now, status):
    [row] = queue(make_topic, now)
    fabric.script(Reply(status, {"error": "try later"}))

    assert deliver_due(now=now) == 1

    row.refresh_from_db()
    assert row.status == AnnouncementStatus.PENDING
    assert row.attempts == 1
    assert row.last_error.startswith(f"HTTP {status}")
    # First step is 30s with equal jitter: between 15s and 30s from the attempt.
    wait = (row.next_attempt_at - now).total_seconds()
    assert 15 <= wait <= 31
    # Not due before then, due after.
    assert deliver_due(now=now + timedelta(seconds=14)) == 0
    assert deliver_due(now=now + timedelta(seconds=32)) == 1
    row.refresh_from_db()
    assert (row.status, row.attempts) == (AnnouncementStatus.SENT, 2)
    assert row.last_error.startswith(f"HTTP {status}"), "the last error stays visible after success"


def test_retry_after_on_429_is_honoured(fabric, make_topic, now):
    [row] = queue(make_topic, now)
    fabric.script(Reply(429, {"error": "slow down"}, headers={"Retry-After": "600"}))
    deliver_due(now=now)
    row.refresh_from_db()
    assert 600 <= (row.next_attempt_at - now).total_seconds() <= 601


def test_backoff_doubles_up_to_the_cap_with_jitter(settings):
    settings.FABRIC_RETRY_BASE = timedelta(seconds=30)
    settings.FABRIC_RETRY_MAX = timedelta(hours=1)
    low, high = random.Random(), random.Random()
    low.uniform = lambda a, b: a
    high.uniform = lambda a, b: b
    steps = [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    for attempt, step in enumerate(steps, start=1):
        assert retry_delay(attempt, rng=low) == timedelta(seconds=step / 2)
        assert retry_delay(attempt, rng=high) == timedelta(seconds=step)
    # Fabric's Retry-After wins over a shorter backoff, but never beyond the cap.
    assert retry_delay(1, retry_after=300, rng=high) == timedelta(seconds=300)
    assert retry_delay(1, retry_after=86_400, rng=high) == timedelta(hours=1)


def test_too_many_attempts_is_dead(fabric, settings, make_topic, now):
    settings.FABRIC_MAX_ATTEMPTS = 3
    [row] = queue(make_topic, now)
    fabric.script(Reply(503), Reply(503), Reply(503))
    clock = now
    for _ in range(3):
        assert deliver_due(now=clock) == 1
        clock += timedelta(hours=2)
    row.refresh_from_db()
    assert row.status == AnnouncementStatus.DEAD
    assert row.attempts == 3
    assert row.last_error.startswith("gave up after 3 attempts; last: HTTP 503")
    assert deliver_due(now=clock) == 0
    assert len(fabric.requests()) == 3


def test_a_failure_ends_the_pass_and_hands_the_batch_back_in_order(fabric, make_topic, now):
    rows = queue(make_topic, now, count=5)
    fabric.script(Reply(201), Reply(500))

    assert deliver_due(now=now) == 2

    states = {r.pk: r for r in Announcement.objects.all()}
    assert states[rows[0].pk].status == AnnouncementStatus.SENT
    assert (states[rows[1].pk].status, states[rows[1].pk].attempts) == (AnnouncementStatus.PENDING, 1)
    for untouched in rows[2:]:
        # Released as they were: no attempt counted, still due, at their old place in the queue.
        row = states[untouched.pk]
        assert (row.attempts, row.next_attempt_at) == (0, untouched.next_attempt_at)
    # The next pass starts with the oldest of them.
    assert deliver_due(now=now) == 3
    assert fabric.keys()[2:] == [str(r.pk) for r in rows[2:]]


def test_a_pass_stops_starting_sends_when_its_budget_is_spent(fabric, settings, make_topic, now):
    settings.FABRIC_DELIVERY_BUDGET = timedelta(seconds=0.3)
    queue(make_topic, now, count=30)
    fabric.default = Reply(201, delay=0.1)  # slow but healthy: every answer takes 0.1s

    started = time.monotonic()
    attempted = deliver_due(now=now)
    elapsed = time.monotonic() - started

    assert 2 <= attempted <= 4
    # No send starts after the budget; the last one started ends within its own time.
    assert elapsed < 0.3 + 0.1 + 0.3
    assert Announcement.objects.filter(status=AnnouncementStatus.SENT).count() == attempted
    # Nothing stays leased: the rest is due for the next pass.
    assert Announcement.objects.filter(status=AnnouncementStatus.PENDING, attempts=0).count() == 30 - attempted


def test_should_stop_is_checked_between_sends(fabric, make_topic, now):
    queue(make_topic, now, count=5)
    assert deliver_due(now=now, should_stop=lambda: len(fabric.requests()) >= 2) == 2
    assert Announcement.objects.filter(status=AnnouncementStatus.PENDING, attempts=0).count() == 3


def test_an_expired_lease_makes_a_claimed_row_due_again(fabric, make_topic, now):
    """A ticker that died after claiming: the row waits out the lease, then goes with the same key."""
    [row] = queue(make_topic, now)
    lease = timedelta(seconds=10)
    [claim] = delivery.claim_due(now=now, lease=lease, limit=10)
    assert claim.attempts == 1
    assert delivery.claim_due(now=now + lease - timedelta(seconds=1), lease=lease, limit=10) == []

    assert deliver_due(now=now + lease) == 1

    row.refresh_from_db()
    assert (row.status, row.attempts) == (AnnouncementStatus.SENT, 2)
    assert fabric.keys() == [str(row.pk)]


def test_a_late_outcome_does_not_overwrite_the_new_claimant(fabric, make_topic, now):
    [row] = queue(make_topic, now)
    lease = timedelta(seconds=10)
    [stale] = delivery.claim_due(now=now, lease=lease, limit=10)
    [fresh] = delivery.claim_due(now=now + lease, lease=lease, limit=10)
    delivery.record_outcome(fresh, delivery.SendResult(delivery.Outcome.DELIVERED, status=201), now=now + lease)
    delivery.record_outcome(stale, delivery.SendResult(delivery.Outcome.REJECTED, "HTTP 400"), now=now + lease)
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error) == (AnnouncementStatus.SENT, 2, "")


def test_a_stop_request_does_not_wait_for_a_hanging_send(fabric, settings, make_topic, now):
    """SIGTERM during a send: the ticker returns within a poll slice, not after Fabric's read timeout."""
    settings.FABRIC_READ_TIMEOUT = timedelta(seconds=30)
    [row, second] = queue(make_topic, now, count=2)
    fabric.script(Reply.hanging())
    stop_at = time.monotonic() + 0.5

    started = time.monotonic()
    attempted = deliver_due(now=now, should_stop=lambda: time.monotonic() >= stop_at)
    elapsed = time.monotonic() - started

    assert attempted == 1
    assert elapsed < 0.5 + 2 * delivery.STOP_POLL_SECONDS + 0.5  # far below the 30 s read timeout
    row.refresh_from_db()
    second.refresh_from_db()
    # The in-flight row keeps its claim (resent with the same key after the lease); the rest is handed back.
    assert (row.status, row.attempts) == (AnnouncementStatus.PENDING, 1) and row.next_attempt_at > now
    assert (second.status, second.attempts) == (AnnouncementStatus.PENDING, 0)


@pytest.mark.parametrize("winner", [["pro", "con"], {"camp": "pro"}, 3, None])
def test_a_completion_with_an_unusual_winner_value_still_announces(fabric, make_topic, make_agent, now, winner):
    """A custom schema may allow any JSON as "winner": building the message must never block completion."""
    from topics.models import VerdictSchema

    schema = VerdictSchema.objects.create(name=f"free-{random.randrange(10**6)}", schema={"type": "object"})
    topic = make_topic(verdict_schema=schema)
    agents = {camp: make_agent() for camp in ("pro", "con", "judge")}
    complete(topic, agents, verdict={"winner": winner}, rationale="Reasons.", now=now, seed=1)
    row = Announcement.objects.get(topic=topic, kind=AnnouncementKind.TOPIC_COMPLETED)
    assert row.payload["metadata"]["outcome"] is None
    assert "Debate completed" in row.payload["content"]


def test_a_private_topic_is_never_announced(fabric, make_topic, now):
    topic = make_topic(visibility="private")
    with transaction.atomic():
        locked = transitions.topic_lock(topic.pk)
        transitions.topic_open_signup(locked, now=now)
        transitions.topic_cancel(locked, reason="staff changed their mind", now=now)
    assert not Announcement.objects.filter(topic=topic).exists()
    assert deliver_due(now=now) == 0 and fabric.requests() == []
