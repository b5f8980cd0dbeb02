"""The ticker loop: draining in batches, error isolation, skipping locked rows, stopping, the command."""

from __future__ import annotations

import random
import signal
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import OperationalError, connection, connections, transaction

from devtools.environments import child_env
from devtools.processes import ChildProcess, wait_for
from orchestrator.ticker import Ticker
from topics import transitions
from topics.models import Topic, TopicStatus

S = TopicStatus
REAL_OPEN_SIGNUP = transitions.topic_open_signup


@pytest.fixture
def ticker():
    return Ticker(rng=random.Random(1), interval=timedelta(milliseconds=50))


@pytest.fixture
def due_topics(make_topic, now):
    """Ten topics due to open, one second apart, created latest-due first."""
    return [make_topic(start=now - timedelta(seconds=i), title=f"due {i}") for i in range(1, 11)]


def record_calls(monkeypatch, name: str, before=None) -> list:
    """Wrap a transition function; returns the list of topic ids it was called with, in order."""
    real = getattr(transitions, name)
    calls: list = []

    def wrapper(topic, **kwargs):
        calls.append(topic.pk)
        if before:
            before(topic, len(calls))
        return real(topic, **kwargs)

    monkeypatch.setattr(transitions, name, wrapper)
    return calls


def test_a_step_drains_every_due_topic_batch_after_batch_oldest_first(due_topics, monkeypatch, make_topic, now):
    not_due = make_topic(opens_in=timedelta(minutes=5))
    calls = record_calls(monkeypatch, "topic_open_signup")
    ticker = Ticker(batch_size=3)

    assert ticker.open_signups() == 10
    by_due = [t.pk for t in sorted(due_topics, key=lambda t: t.signup_open_at)]
    # Batches are read in due order; within a batch, tickers claim whichever row is free.
    assert [set(calls[i : i + 3]) for i in range(0, 10, 3)] == [set(by_due[i : i + 3]) for i in range(0, 10, 3)]
    assert Topic.objects.get(pk=not_due.pk).status == S.CREATED


def test_one_failing_topic_is_logged_with_its_id_and_the_rest_go_on(ticker, due_topics, monkeypatch, caplog):
    bad = due_topics[4]

    def explode(topic, n):
        if topic.pk == bad.pk:
            raise RuntimeError("disk on fire")

    calls = record_calls(monkeypatch, "topic_open_signup", before=explode)
    monkeypatch.setattr("orchestrator.ticker.deliver_due", lambda **kwargs: 0)

    assert ticker.run_pass() == 9
    assert calls.count(bad.pk) == 1, "a failed topic is skipped for the rest of the pass"
    assert Topic.objects.get(pk=bad.pk).status == S.CREATED, "its transaction rolled back"
    assert Topic.objects.filter(status=S.SIGNUP_OPEN).count() == 9
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage() == f"topic {bad.pk}: open_signup failed; skipped until the next pass"
    assert "disk on fire" in caplog.text

    monkeypatch.setattr(transitions, "topic_open_signup", REAL_OPEN_SIGNUP)
    assert ticker.run_pass() == 1, "the next pass tries it again"


def test_a_stop_request_ends_the_pass_after_the_current_transaction(ticker, due_topics, monkeypatch):
    def stop_on_third(topic, n):
        if n == 3:
            ticker.request_stop()

    record_calls(monkeypatch, "topic_open_signup", before=stop_on_third)
    delivered = []
    monkeypatch.setattr("orchestrator.ticker.deliver_due", lambda **kwargs: delivered.append(1) or 0)

    assert ticker.run_pass() == 3
    assert Topic.objects.filter(status=S.SIGNUP_OPEN).count() == 3, "the third transaction was finished, not dropped"
    assert delivered == [], "no delivery once stopping"


@pytest.mark.django_db(transaction=True)
def test_delivery_runs_after_the_transitions_with_no_transaction_open(make_topic, now, monkeypatch):
    topics = [make_topic(start=now - timedelta(minutes=1)) for _ in range(3)]
    ticker = Ticker()
    seen = []

    def deliver(*, now, should_stop, include_webhooks):
        # A pass run on its own (not the loop, whose thread sends them) sends the webhooks too.
        assert include_webhooks
        seen.append((connection.in_atomic_block, Topic.objects.filter(status=S.SIGNUP_OPEN).count(), should_stop()))
        ticker.request_stop()
        seen.append(should_stop())
        return 2

    monkeypatch.setattr("orchestrator.ticker.deliver_due", deliver)
    assert ticker.run_pass() == len(topics)
    assert seen == [(False, 3, False), True], "delivery sees the committed transitions and the stop flag"


def test_the_loop_survives_a_failed_pass_but_once_mode_reports_it(ticker, monkeypatch, caplog):
    outcomes = iter([OperationalError("server has gone away"), None])

    def run_pass():
        outcome = next(outcomes)
        if outcome:
            raise outcome
        ticker.request_stop()
        return 0

    monkeypatch.setattr(ticker, "run_pass", run_pass)
    ticker.run()
    assert "ticker pass failed; retrying in 0.05s" in caplog.messages
    assert caplog.messages[-1] == "ticker stopped"

    once = Ticker()
    monkeypatch.setattr(once, "run_pass", lambda: (_ for _ in ()).throw(OperationalError("gone")))
    with pytest.raises(OperationalError):
        once.run(once=True)


@pytest.mark.mariadb
@pytest.mark.django_db(transaction=True)
def test_topics_locked_by_another_ticker_are_passed_over_not_waited_for(ticker, due_topics, monkeypatch):
    """SKIP LOCKED: another ticker's rows are theirs; this one takes what is free, at once.

    Nine of ten are held: more than one claim window, so a window with no free row is passed over too.
    """
    monkeypatch.setattr("orchestrator.ticker.deliver_due", lambda **kwargs: 0)
    by_due = sorted(due_topics, key=lambda t: t.signup_open_at)
    held, free = by_due[:9], by_due[9]
    locked, release = threading.Event(), threading.Event()

    def other_ticker():
        try:
            with transaction.atomic():
                list(Topic.objects.select_for_update().filter(pk__in=[t.pk for t in held]))
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_ticker)
    thread.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        assert ticker.run_pass() == 1
        assert time.monotonic() - started < 5, "waited for the locks instead of passing over them"
        assert Topic.objects.get(pk=free.pk).status == S.SIGNUP_OPEN
        assert Topic.objects.filter(status=S.CREATED).count() == 9
    finally:
        release.set()
        thread.join()
    assert ticker.run_pass() == 9, "the next pass picks them up"


# --- the command ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the loop closes the connection between passes, as in production
def test_run_ticker_once_through_call_command(make_topic, now, caplog):
    topic = make_topic(start=now - timedelta(seconds=1))
    before = signal.getsignal(signal.SIGTERM)
    with caplog.at_level("INFO"):
        call_command("run_ticker", "--once")
    assert Topic.objects.get(pk=topic.pk).status == S.SIGNUP_OPEN
    assert f"topic {topic.pk} created → signup_open: signup opens" in caplog.messages
    assert any(m.startswith("fabric announcements disabled") for m in caplog.messages)
    assert signal.getsignal(signal.SIGTERM) is before, "signal handlers restored"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_running_ticker_logs_each_transition_and_exits_0_promptly_on_a_signal(sig, make_topic, now):
    topic = make_topic(start=now - timedelta(seconds=1))
    with ChildProcess.manage("run_ticker", "--interval", "1h", env=child_env()) as ticker:
        line = f"topic {topic.pk} created → signup_open: signup opens"
        wait_for(lambda: line in ticker.stderr, timeout=30, message=f"no transition line\n{ticker.describe()}")
        wait_for(lambda: "pass: 1 transitions" in ticker.stderr, timeout=10, message=ticker.describe())
        started = time.monotonic()
        ticker.send_signal(sig)
        assert ticker.wait(timeout=5) == 0, ticker.describe()
        assert time.monotonic() - started < 2, f"took {time.monotonic() - started:.1f}s to stop"
        assert ticker.stderr.rstrip().endswith("ticker stopped"), ticker.describe()
        assert "Traceback" not in ticker.stderr


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--interval", "soon"], {}, "--interval"),
        (["--interval", "0"], {}, "--interval"),
        ([], {"ORCHESTRATOR_TICK_INTERVAL": "fast"}, "ORCHESTRATOR_TICK_INTERVAL"),
        ([], {"ORCHESTRATOR_TICK_INTERVAL": "-5s"}, "ORCHESTRATOR_TICK_INTERVAL"),
        ([], {"ORCHESTRATOR_TICK_INTERVAL": "0"}, "ORCHESTRATOR_TICK_INTERVAL"),
    ],
)
def test_a_bad_interval_exits_2_naming_the_setting(args, env, named):
    with ChildProcess.manage("run_ticker", "--once", *args, env=child_env(env)) as ticker:
        assert ticker.wait(timeout=30) == 2, ticker.describe()
        assert named in ticker.stderr
        assert "Traceback" not in ticker.stderr
        assert len(ticker.stderr.strip().splitlines()[-1]) < 200, "one readable line"


@pytest.mark.parametrize("value", ["500ms", "15s", "2m", "1m30s", "15", "0.5"])
def test_interval_accepts_go_durations_and_plain_seconds(value, monkeypatch):
    seen = {}
    monkeypatch.setattr(Ticker, "run", lambda self, once: seen.update(interval=self.interval, once=once))
    call_command("run_ticker", "--once", "--interval", value)
    expected = {"500ms": 0.5, "15s": 15, "2m": 120, "1m30s": 90, "15": 15, "0.5": 0.5}[value]
    assert seen == {"interval": timedelta(seconds=expected), "once": True}
