"""Multi-primary on a three-node Galera cluster: the contract's answers whichever node a request reaches.

Run by CI's Galera step (``-m galera``, scripts/galera-cluster); deselected
elsewhere. Every node takes writes; conflicting transactions are settled at
commit by certification, and the loser's error (1213) is retried whole by
``dialectic.db``, so the second attempt reads the winner's commit and
answers 409 where the contract says so, never 503.
"""

from __future__ import annotations

import re
import signal
import threading
import time

import httpx
import MySQLdb
import pytest
from django.db import connection
from django.utils import timezone

from devtools.consistency import inconsistent_topics, status_counts
from devtools.fabric_receiver import FabricServer, fabric_env
from devtools.processes import ChildProcess, Stack, wait_for
from devtools.seeding import ensure_winner_schema, seed_agents, seed_overdue_topics
from tests import galera
from tests.api_support import player, stage_topic
from topics.models import Signup, Topic, TopicEvent, TopicStatus, Verdict

pytestmark = [pytest.mark.galera, pytest.mark.django_db(transaction=True)]

S = TopicStatus
RACES = 6  # separate topics per race, so one lucky interleaving cannot hide a bug
KILL_TOPICS = 300  # enough that the kill lands mid-pass


@pytest.fixture(autouse=True)
def winner():
    ensure_winner_schema()


@pytest.fixture
def two_servers():
    """One web server on node 2 and one on node 3 (the test itself writes through node 1)."""
    servers = [Stack(env=galera.node_env(i), ticker=False, graceful_timeout=1).launch() for i in (1, 2)]
    try:
        for server in servers:
            server.wait_healthy()
        yield servers
    finally:
        for server in servers:
            server.stop()


def fire_together(calls) -> list[tuple[int, str | None]]:
    """Each call in its own thread, released at one instant; the (status, code) answers, sorted."""
    barrier = threading.Barrier(len(calls))
    answers: list = [None] * len(calls)

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            answers[i] = calls[i]()
        except BaseException as exc:  # reported by the assertion below
            answers[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(isinstance(a, BaseException) for a in answers), answers
    return sorted((r.status_code, r.json().get("code") if r.status_code >= 400 else None) for r in answers)


def post(server: Stack, path: str, token: str, body: dict):
    return lambda: httpx.post(f"{server.base_url}{path}", json=body, headers={"Authorization": f"Bearer {token}"})


def test_one_agent_signing_up_through_two_nodes_at_once_gets_201_and_409(two_servers):
    a, b = two_servers
    for i in range(RACES):
        staged = stage_topic("signup_open", now=timezone.now(), seed=i)
        me = player()
        path = f"/api/topics/{staged.topic.pk}/signups/"
        answers = fire_together([post(a, path, me.token, {"camp": "pro"}), post(b, path, me.token, {"camp": "con"})])
        assert answers == [(201, None), (409, "already_signed_up")]
        assert Signup.objects.filter(topic=staged.topic, agent=me.agent).count() == 1


def test_four_verdicts_through_two_nodes_one_201_three_verdict_exists(two_servers):
    a, b = two_servers
    for i in range(RACES):
        staged = stage_topic("judging", now=timezone.now(), seed=i)
        path = f"/api/topics/{staged.topic.pk}/verdict/"
        calls = [
            post(server, path, staged.judge.token, {"verdict": {"winner": w}, "rationale": f"through {w}"})
            for server, w in ((a, "pro"), (b, "con"), (a, "draw"), (b, "pro"))
        ]
        assert fire_together(calls) == [(201, None)] + [(409, "verdict_exists")] * 3
        assert Verdict.objects.filter(topic=staged.topic).count() == 1
        assert staged.refresh().status == S.COMPLETED
        kinds = list(staged.topic.events.values_list("kind", flat=True))
        assert kinds.count("verdict_posted") == 1
    logs = a.logs(tail=None) + b.logs(tail=None)
    assert " ERROR " not in logs and "Traceback" not in logs, logs


def node_counts(index: int) -> tuple[int, int]:
    """(topics not finished, topic events) as node ``index`` itself has them."""
    settings = connection.settings_dict
    port = int(galera.node_database_url(index).rsplit(":", 1)[1].split("/", 1)[0])
    conn = MySQLdb.connect(
        host="127.0.0.1", port=port, user=settings["USER"], password=settings["PASSWORD"], database=settings["NAME"]
    )
    try:
        cursor = conn.cursor()
        cursor.execute("SET SESSION wsrep_sync_wait=1")
        cursor.execute(f"SELECT COUNT(*) FROM {Topic._meta.db_table} WHERE status NOT IN ('cancelled', 'completed')")
        (unfinished,) = cursor.fetchone()
        cursor.execute(f"SELECT COUNT(*) FROM {TopicEvent._meta.db_table}")
        (events,) = cursor.fetchone()
        return unfinished, events
    finally:
        conn.close()


@pytest.mark.timeout(420)
def test_a_node_killed_mid_pass_the_survivors_finish_and_it_rejoins():
    topics = seed_overdue_topics(KILL_TOPICS, now=timezone.now(), agents=seed_agents(30), round_count=2)
    server = FabricServer().start()
    env = fabric_env(server, FABRIC_DELIVERY_BUDGET="2s")
    tickers = [ChildProcess.manage("run_ticker", "--once", env=galera.node_env(i, env)) for i in range(3)]
    try:
        # Mid-pass: some topics have been allocated, most have not.
        wait_for(
            lambda: Topic.objects.filter(status=S.SIGNUP_CLOSED).count() >= 30,
            timeout=200,
            interval=0.05,
            message="the tickers never got to allocating",
        )
        galera.cluster("kill-node", "3")
        killed_at = status_counts(topics)
        survivors = tickers[:2]
        for ticker in survivors:
            assert ticker.wait(timeout=300) == 0, ticker.describe()
        # The third ticker lost its node: its pass fails (it is the operator's supervisor that restarts it).
        assert tickers[2].wait(timeout=60) != 0
        outputs = [ticker.stderr for ticker in survivors]
    finally:
        for ticker in tickers:
            if ticker.returncode is None:
                ticker.send_signal(signal.SIGKILL)
            ticker.close()
        server.stop()

    assert killed_at.get(S.SIGNUP_OPEN, 0) + killed_at.get(S.CREATED, 0) > 0, f"killed too late: {killed_at}"
    problems = [line for out in outputs for line in out.splitlines() if " ERROR " in line or "Traceback" in line]
    assert problems == []
    # The survivors finished everything: every topic whole, all at the end of its timeline.
    assert status_counts(topics) == {S.CANCELLED: KILL_TOPICS}
    assert inconsistent_topics(topics, fabric=True) == {}
    lost = sum(int(n) for out in outputs for n in re.findall(r", (\d+) lost races retried", out))
    print(f"\nnode 3 killed at {killed_at}; survivors retried {lost} lost races")

    # The killed node comes back and catches up with what it missed.
    started = time.monotonic()
    galera.cluster("start-node", "3", timeout=180)
    print(f"node 3 rejoined in {time.monotonic() - started:.1f}s")
    assert "cluster size 3" in galera.cluster("status")
    assert node_counts(2) == node_counts(0) == (0, TopicEvent.objects.count())
