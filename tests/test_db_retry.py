"""dialectic.db: a write transaction that lost a race is rerun whole, and only then."""

from __future__ import annotations

import threading

import pytest
from django.db import OperationalError, connection, transaction

from dialectic import db
from topics.models import Agent, Topic

LOST = OperationalError(db.ER_LOCK_DEADLOCK, "Deadlock found when trying to get lock; try restarting transaction")


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch, settings):
    monkeypatch.setattr(db, "BACKOFF_BASE", 0.0)
    settings.DATABASE_GALERA = False  # the budget these tests count is one server's


def losing(times: int, name: str):
    """A transaction that writes, then loses the race ``times`` times before it wins."""
    calls: list[int] = []

    def work() -> str:
        calls.append(1)
        Agent.objects.create(name=f"{name}-{len(calls)}")
        if len(calls) <= times:
            raise OperationalError(*LOST.args)
        return "won"

    return work, calls


@pytest.mark.django_db(transaction=True)
def test_a_lost_race_is_rerun_from_the_start_and_the_loser_leaves_nothing(caplog):
    before = db.retries.count
    work, calls = losing(2, "retried")
    with caplog.at_level("INFO", logger="dialectic.db"):
        assert db.run_in_transaction(work, label="test work") == "won"
    assert len(calls) == 3
    # The two lost attempts were rolled back: only the winning attempt's row exists.
    assert list(Agent.objects.values_list("name", flat=True)) == ["retried-3"]
    assert db.retries.count - before == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "dialectic.db"]
    assert lines == [f"test work lost a race (attempt {n} of {db.ATTEMPTS}, MySQL 1213); retrying" for n in (1, 2)]
    assert all(r.levelname == "INFO" and r.exc_info is None for r in caplog.records if r.name == "dialectic.db")


@pytest.mark.django_db(transaction=True)
def test_a_lock_wait_timeout_is_retried_too():
    calls: list[int] = []

    def work() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError(db.ER_LOCK_WAIT_TIMEOUT, "Lock wait timeout exceeded")
        return len(calls)

    assert db.run_in_transaction(work) == 2


@pytest.mark.django_db(transaction=True)
def test_retries_are_bounded_then_the_error_reaches_the_caller():
    work, calls = losing(db.ATTEMPTS, "exhausted")
    with pytest.raises(OperationalError) as raised:
        db.run_in_transaction(work)
    assert raised.value.args[0] == db.ER_LOCK_DEADLOCK
    assert len(calls) == db.ATTEMPTS
    assert not Agent.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("galera", [False, True], ids=["one server", "Galera"])
def test_a_cluster_gets_more_attempts_than_one_server(settings, galera):
    # On a cluster a rerun can lose again to another node's writer; on one server it waits for the lock.
    settings.DATABASE_GALERA = galera
    budget = db.GALERA_ATTEMPTS if galera else db.ATTEMPTS
    assert db.GALERA_ATTEMPTS > db.ATTEMPTS
    work, calls = losing(budget - 1, "last-chance")
    assert db.run_in_transaction(work) == "won"
    assert len(calls) == budget
    work, calls = losing(budget, "over-budget")
    with pytest.raises(OperationalError):
        db.run_in_transaction(work)
    assert len(calls) == budget
    assert list(Agent.objects.values_list("name", flat=True)) == [f"last-chance-{budget}"]


@pytest.mark.django_db(transaction=True)
def test_other_database_errors_are_not_retried():
    calls: list[int] = []

    def work() -> None:
        calls.append(1)
        raise OperationalError(2006, "MySQL server has gone away")

    with pytest.raises(OperationalError):
        db.run_in_transaction(work)
    assert calls == [1]


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_it_runs_once_and_leaves_the_retry_to_the_owner():
    work, calls = losing(1, "nested")
    with pytest.raises(OperationalError), transaction.atomic():
        db.run_in_transaction(work)
    assert calls == [1]
    assert not Agent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_decorator_retries_the_decorated_call_with_its_arguments():
    seen: list[str] = []

    @db.write_transaction
    def create(*, name: str) -> Agent:
        seen.append(name)
        agent = Agent.objects.create(name=f"{name}-{len(seen)}")
        if len(seen) == 1:
            raise OperationalError(*LOST.args)
        return agent

    assert create(name="deco").name == "deco-2"
    assert seen == ["deco", "deco"]
    assert Agent.objects.count() == 1


@pytest.mark.mariadb
@pytest.mark.django_db(transaction=True)
def test_a_real_deadlock_between_two_transactions_ends_with_both_committed():
    """Two transactions lock the same two rows in opposite orders: InnoDB kills one (1213), which is rerun."""
    first, second = Agent.objects.create(name="row-a"), Agent.objects.create(name="row-b")
    both_hold_one = threading.Barrier(2, timeout=10)
    before = db.retries.count
    results: dict[str, object] = {}

    def transfer(label: str, order: tuple[Agent, Agent]) -> None:
        attempts: list[int] = []

        def work() -> int:
            attempts.append(1)
            Agent.objects.select_for_update().get(pk=order[0].pk)
            if len(attempts) == 1:
                both_hold_one.wait()  # the first attempts interleave so that they must deadlock
            Agent.objects.filter(pk=order[1].pk).update(owner=f"{label}-{len(attempts)}")
            return len(attempts)

        try:
            results[label] = db.run_in_transaction(work, label=label)
        except BaseException as exc:
            results[label] = exc
        finally:
            connection.close()

    threads = [
        threading.Thread(target=transfer, args=("ab", (first, second))),
        threading.Thread(target=transfer, args=("ba", (second, first))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(isinstance(value, BaseException) for value in results.values()), results
    # Exactly one of the two lost and ran a second time; both writes are in.
    assert sorted(results.values()) == [1, 2]
    assert db.retries.count - before == 1
    owners = set(Agent.objects.values_list("owner", flat=True))
    assert owners == {f"ab-{results['ab']}", f"ba-{results['ba']}"}


def lose_first_lock(monkeypatch) -> list:
    """The first ``topic_lock_any``/``topic_lock`` of the test loses a race, as on another Galera node."""
    from topics import transitions

    calls: list = []
    for name in ("topic_lock", "topic_lock_any"):
        real = getattr(transitions, name)

        def lock(*args, _real=real, **kwargs):
            calls.append(1)
            if len(calls) == 1:
                raise OperationalError(*LOST.args)
            return _real(*args, **kwargs)

        monkeypatch.setattr(transitions, name, lock)
    return calls


@pytest.mark.django_db(transaction=True)
def test_a_signup_whose_first_attempt_lost_answers_201_not_503(monkeypatch, make_topic):
    from tests.api_support import player

    topic = make_topic(status="signup_open")
    me = player()
    calls = lose_first_lock(monkeypatch)
    answer = me.client().post(f"/api/topics/{topic.pk}/signups/", {"camp": "pro"}, format="json")
    assert answer.status_code == 201, answer.content
    assert len(calls) == 2


@pytest.mark.django_db(transaction=True)
def test_the_ticker_retries_a_lost_transition_within_the_pass_and_counts_it(monkeypatch, make_topic, now, caplog):
    import random
    from datetime import timedelta

    from orchestrator.ticker import Ticker
    from topics.models import TopicStatus

    topics = [make_topic(start=now - timedelta(seconds=i), title=f"due {i}") for i in range(1, 4)]
    lose_first_lock(monkeypatch)
    with caplog.at_level("INFO"):
        Ticker(rng=random.Random(1), workers=1).run_pass()
    # Nothing was skipped: every due topic opened in this very pass.
    assert set(Topic.objects.filter(pk__in=[t.pk for t in topics]).values_list("status", flat=True)) == {
        TopicStatus.SIGNUP_OPEN
    }
    (summary,) = [m for m in caplog.messages if m.startswith("pass: ")]
    assert "3 transitions (open_signups 3), 0 skipped, 1 lost races retried" in summary
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
