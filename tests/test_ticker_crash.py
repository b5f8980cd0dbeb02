"""A ticker interrupted in the middle of a pass leaves no topic half-transitioned.

SIGKILL gives the process no chance to clean up: whatever transaction was in
flight is rolled back by the database, every committed one is whole. SIGTERM
is the polite version: the current transaction finishes and the process
exits 0 promptly. Either way, a ticker started afterwards finishes the work.
"""

from __future__ import annotations

import signal
import time

import pytest
from django.utils import timezone

from tests.fabric_server import FabricServer, fabric_env
from tests.orchestration import inconsistent_topics, seed_agents, seed_overdue_topics, status_counts
from tests.support import ManageProcess, child_env, wait_for
from topics.models import Camp, Topic, TopicStatus

TOPICS = 400
S = TopicStatus


@pytest.fixture
def overdue(transactional_db):
    """TOPICS topics due for open, allocation, start and the debate's end."""
    agents = seed_agents(30)
    return seed_overdue_topics(TOPICS, now=timezone.now(), agents=agents, round_count=1, verdict_deadline=False)


@pytest.fixture
def fabric_server():
    server = FabricServer().start()
    yield server
    server.stop()


def allocating(minimum: int):
    """Mid-pass: every topic opened, at least ``minimum`` allocated, and more still to go."""
    return lambda: Topic.objects.filter(status=S.SIGNUP_CLOSED).count() >= minimum


def finish_with_a_fresh_ticker(topic_ids, env) -> None:
    with ManageProcess("run_ticker", "--once", env=env) as ticker:
        assert ticker.wait(timeout=200) == 0, ticker.describe()
        assert " ERROR " not in ticker.stderr, ticker.describe()
    assert status_counts(topic_ids) == {S.JUDGING: TOPICS}
    assert inconsistent_topics(topic_ids, fabric=True) == {}


@pytest.mark.timeout(300)
def test_sigkill_mid_pass_leaves_every_topic_whole_and_a_restart_finishes(overdue, fabric_server):
    env = child_env(fabric_env(fabric_server))
    with ManageProcess("run_ticker", "--once", env=env) as ticker:
        wait_for(allocating(20), timeout=200, interval=0.01, message=f"never got to allocating\n{ticker.describe()}")
        ticker.kill()
        assert ticker.returncode == -signal.SIGKILL

    counts = status_counts(overdue)
    assert counts.get(S.SIGNUP_OPEN, 0) > 0, f"killed too late to prove anything: {counts}"
    assert counts.get(S.SIGNUP_CLOSED, 0) > 0
    # Camps exist exactly for the allocated topics: no allocation without its status change, or vice versa.
    assert Camp.objects.count() == 3 * (TOPICS - counts[S.SIGNUP_OPEN])
    assert inconsistent_topics(overdue, fabric=True) == {}

    finish_with_a_fresh_ticker(overdue, env)


@pytest.mark.timeout(300)
def test_sigterm_mid_pass_finishes_the_transaction_and_exits_0_within_two_seconds(overdue, fabric_server):
    env = child_env(fabric_env(fabric_server))
    with ManageProcess("run_ticker", "--interval", "1h", env=env) as ticker:
        wait_for(allocating(20), timeout=200, interval=0.01, message=f"never got to allocating\n{ticker.describe()}")
        started = time.monotonic()
        ticker.send_signal(signal.SIGTERM)
        assert ticker.wait(timeout=10) == 0, ticker.describe()
        took = time.monotonic() - started
        assert took < 2, f"took {took:.1f}s to stop"
        assert "stop requested; finishing the current transaction" in ticker.stderr
        assert " ERROR " not in ticker.stderr, ticker.describe()

    counts = status_counts(overdue)
    assert counts.get(S.SIGNUP_OPEN, 0) > 0, f"the pass was not cut short: {counts}"
    assert inconsistent_topics(overdue, fabric=True) == {}

    finish_with_a_fresh_ticker(overdue, env)
