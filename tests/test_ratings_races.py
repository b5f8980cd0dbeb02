"""Ratings under real concurrency on MariaDB: completions in 4 threads, and a rebuild running beside them."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from devtools.processes import wait_for
from devtools.seeding import ensure_winner_schema
from dialectic import db
from tests.api_support import connection_id, player, stage_topic, waits_for_a_lock
from tests.test_api_races import fire_together
from topics import ratings, services
from topics.models import AgentRating, RatedOutcome, RatingLedger

pytestmark = [pytest.mark.mariadb, pytest.mark.django_db(transaction=True)]

THREADS = 4
TOPICS_PER_THREAD = 4


@pytest.fixture(autouse=True)
def winner():
    ensure_winner_schema()
    # The migration's row, gone after an earlier test's flush; recreated here, as it would be on first use.
    RatingLedger.objects.get_or_create(pk=1)


def stored() -> dict:
    fields = ("mu", "sigma", "low", "games", "wins", "losses", "draws", "judged", "updated_at")
    return {r.agent_id: tuple(getattr(r, f) for f in fields) for r in AgentRating.objects.all()}


def staged_tournament(n: int) -> list:
    """``n`` topics awaiting a verdict among five agents, so concurrent completions share agents."""
    agents = [player() for _ in range(5)]
    now = timezone.now()
    topics = []
    for i in range(n):
        camps = {"pro": agents[i % 5], "con": agents[(i + 1) % 5], "judge": agents[(i + 3) % 5]}
        topics.append(stage_topic("judging", now=now, players=camps, seed=i))
    return topics


def verdicts(staged: list, outcomes=("pro", "con", "draw")):
    """One request per topic, in a list per thread."""

    def post_all(mine: list):
        answers = []
        for i, s in mine:
            body = {"verdict": {"winner": outcomes[i % 3]}, "rationale": "weighed"}
            answers.append(s.judge.client().post(f"/api/topics/{s.topic.pk}/verdict/", body, format="json").status_code)
        return answers

    return [lambda k=k: post_all([(i, s) for i, s in enumerate(staged) if i % THREADS == k]) for k in range(THREADS)]


def test_concurrent_completions_give_the_ratings_a_rebuild_gives():
    staged = staged_tournament(THREADS * TOPICS_PER_THREAD)
    results = fire_together(verdicts(staged))
    for r in results:
        assert not isinstance(r, BaseException), repr(r)
        assert r == [201] * TOPICS_PER_THREAD
    assert RatedOutcome.objects.count() == len(staged)
    live = stored()
    assert sum(games for _, _, _, games, *_ in live.values()) == 2 * len(staged)
    report = ratings.ratings_rebuild(chunk=3)
    assert report.changed == 0
    assert stored() == live


def completions_beside_rebuilds(staged: list, rebuild) -> tuple[list, list]:
    """All ``staged`` verdicts posted together while a thread calls ``rebuild()`` over and over.

    Returns the threads' answers and what each rebuild returned (or raised: the list ends there).
    """
    done = threading.Event()
    rebuilds: list = []

    def rebuild_until_done():
        try:
            while not done.is_set():
                rebuilds.append(rebuild())
        except BaseException as exc:
            rebuilds.append(exc)
        finally:
            connection.close()

    rebuilder = threading.Thread(target=rebuild_until_done)
    rebuilder.start()
    try:
        results = fire_together(verdicts(staged))
    finally:
        done.set()
        rebuilder.join(timeout=60)
    assert not rebuilder.is_alive()
    assert rebuilds and [r for r in rebuilds if isinstance(r, BaseException)] == []
    return results, rebuilds


def test_a_rebuild_beside_concurrent_completions_loses_none_of_them():
    staged = staged_tournament(THREADS * TOPICS_PER_THREAD)
    results, _ = completions_beside_rebuilds(staged, lambda: ratings.ratings_rebuild(chunk=2))
    assert all(r == [201] * TOPICS_PER_THREAD for r in results), results
    live = stored()
    assert sum(games for _, _, _, games, *_ in live.values()) == 2 * len(staged)
    # Every rebuild stored a replay of a prefix of the log; the last one, or any after, is the whole log.
    assert ratings.ratings_rebuild().changed == 0
    assert stored() == live


def in_thread(fn):
    """Start ``fn`` on a thread (own connection); returns the thread and a list that receives its result."""
    out: list = []

    def run():
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def held_completion(staged, *, holding: threading.Event, release: threading.Event):
    """A thread completing ``staged``'s topic and keeping its transaction open until ``release``."""

    def hold():
        with transaction.atomic():
            services.verdict_create(
                topic_id=staged.topic.pk, judge=staged.judge.agent, verdict={"winner": "pro"}, rationale="held"
            )
            holding.set()
            assert release.wait(timeout=30)

    thread, _ = in_thread(hold)
    assert holding.wait(timeout=30), "the held completion never got its locks"
    return thread


def complete(staged):
    body = {"verdict": {"winner": "con"}, "rationale": "weighed"}
    return staged.judge.client().post(f"/api/topics/{staged.topic.pk}/verdict/", body, format="json").status_code


def test_completions_queue_only_on_the_agents_they_share():
    now = timezone.now()
    held = stage_topic("judging", now=now, seed=1)
    apart = stage_topic("judging", now=now, seed=2)  # three other agents
    pro = held.pro
    sharing = stage_topic("judging", now=now, seed=3, players={"pro": player(), "con": pro, "judge": player()})
    holding, release = threading.Event(), threading.Event()
    holder = held_completion(held, holding=holding, release=release)
    try:
        apart_thread, apart_out = in_thread(lambda: complete(apart))
        apart_thread.join(timeout=20)
        assert apart_out == [201], "a completion with no agent in common waited for the held one"
        sharing_thread, sharing_out = in_thread(lambda: complete(sharing))
        sharing_thread.join(timeout=1)
        assert sharing_thread.is_alive() and not sharing_out, "a completion sharing an agent did not wait for it"
    finally:
        release.set()
        holder.join(timeout=30)
    sharing_thread.join(timeout=30)
    assert sharing_out == [201]
    # The held one committed first, so the later one rated the shared agent after it: the log's order.
    held_seq, sharing_seq = (RatedOutcome.objects.get(topic=s.topic).seq for s in (held, sharing))
    assert held_seq < sharing_seq
    assert ratings.ratings_rebuild().changed == 0


def test_a_rebuild_waits_for_a_completion_between_its_seq_and_its_commit():
    now = timezone.now()
    done = stage_topic("judging", now=now, seed=1)
    assert complete(done) == 201
    held = stage_topic("judging", now=now, seed=2)
    holding, release = threading.Event(), threading.Event()
    holder = held_completion(held, holding=holding, release=release)
    try:
        rebuild_thread, rebuild_out = in_thread(ratings.ratings_rebuild)
        rebuild_thread.join(timeout=1)
        assert rebuild_thread.is_alive(), "the rebuild read the log while an outcome in it was uncommitted"
    finally:
        release.set()
        holder.join(timeout=30)
    rebuild_thread.join(timeout=30)
    [report] = rebuild_out
    assert report.outcomes == 2 and report.changed == 0, report


def test_a_rated_verdict_waits_for_the_ledger_before_it_holds_its_agents():
    """The rebuild's swap holds the ledger, then its upserts take shared locks on agents' rows (foreign keys).

    A verdict that locked its agents first and then waited for the ledger would
    close a circle with it: a deadlock, one side rolled back. Ledger first
    (``transitions.topic_lock_for_completion``), the verdict just waits its turn.
    """
    staged = stage_topic("judging", now=timezone.now())
    holding = threading.Event()
    failures: list = []
    verdict_connection = connection_id()  # the test client runs the verdict on this thread's connection

    def swap_like() -> None:
        # What ratings_rebuild's last transaction does: the ledger, then, once the verdict waits, a write to a
        # debater's row.
        try:
            with transaction.atomic():
                ratings._ledger_lock()
                holding.set()
                wait_for(
                    lambda: waits_for_a_lock(verdict_connection),
                    timeout=20,
                    interval=0.25,
                    message="the verdict never waited for the ledger",
                )
                fresh = ratings.Standing.of(None)
                fresh.updated_at = timezone.now()
                ratings._save({staged.players["pro"].agent.pk: fresh}, {})
        except Exception as exc:
            failures.append(exc)
        finally:
            connection.close()

    swap = threading.Thread(target=swap_like)
    swap.start()
    assert holding.wait(timeout=10)
    lost_before = db.retries.count
    body = {"verdict": {"winner": "pro"}, "rationale": "weighed"}
    answer = staged.judge.client().post(f"/api/topics/{staged.topic.pk}/verdict/", body, format="json")
    swap.join(timeout=30)
    assert failures == []
    assert answer.status_code == 201, answer.content
    assert db.retries.count == lost_before, "the verdict lost a deadlock and was rerun"


def test_a_rebuild_rewriting_every_row_beside_completions_never_deadlocks():
    """The rebuild's swap upserts rows (a foreign-key check on each agent) while completions hold agents.

    Drift on every row before each rebuild makes its swap write them all. With
    the ledger taken before the agents (transitions' lock order) nothing waits
    in a circle, so no transaction is rolled back and rerun.
    """
    staged = staged_tournament(THREADS * TOPICS_PER_THREAD)

    def drift_and_rebuild():
        AgentRating.objects.update(judged=F("judged") + 100)
        return ratings.ratings_rebuild(chunk=2)

    lost_before = db.retries.count
    results, rebuilds = completions_beside_rebuilds(staged, drift_and_rebuild)
    assert any(r.changed for r in rebuilds), "no rebuild had anything to rewrite"
    assert all(r == [201] * TOPICS_PER_THREAD for r in results), results
    assert db.retries.count == lost_before, "a transaction lost a deadlock and was rerun"
    assert RatedOutcome.objects.count() == len(staged)
    ratings.ratings_rebuild()
    assert ratings.ratings_rebuild().changed == 0
