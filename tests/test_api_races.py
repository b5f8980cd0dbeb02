"""Races between real concurrent requests on MariaDB: the topic row lock lets exactly one win."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.utils import timezone

from devtools.seeding import ensure_winner_schema
from tests.api_support import Player, player, stage_topic
from topics.models import Argument, Signup, TopicStatus, Verdict

pytestmark = [pytest.mark.mariadb, pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]

ROUNDS = 5  # separate topics, so a lucky interleaving cannot hide a bug


@pytest.fixture(autouse=True)
def winner():
    ensure_winner_schema()


def fire_together(requests) -> list:
    """Run each ``request()`` in its own thread (own connection), released at the same instant by a barrier."""
    barrier = threading.Barrier(len(requests))
    results: list = [None] * len(requests)

    def run(i: int, request) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = request()
        except BaseException as exc:  # reported by the assertion below, with the thread's error
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, r)) for i, r in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a request hung"
    return results


def outcome(results) -> list[tuple[int, str | None]]:
    answers = []
    for r in results:
        assert not isinstance(r, BaseException), repr(r)
        answers.append((r.status_code, r.json().get("code") if r.status_code >= 400 else None))
    return sorted(answers)


def test_two_verdicts_at_once_one_wins_one_is_verdict_exists():
    for i in range(ROUNDS):
        staged = stage_topic("judging", now=timezone.now(), seed=i)
        path = f"/api/topics/{staged.topic.pk}/verdict/"
        bodies = [
            {"verdict": {"winner": "pro"}, "rationale": "first"},
            {"verdict": {"winner": "con"}, "rationale": "second"},
        ]
        judge: Player = staged.judge
        results = fire_together([lambda b=b: judge.client().post(path, b, format="json") for b in bodies])
        assert outcome(results) == [(201, None), (409, "verdict_exists")]
        assert Verdict.objects.filter(topic=staged.topic).count() == 1
        assert staged.refresh().status == TopicStatus.COMPLETED
        kinds = list(staged.topic.events.values_list("kind", flat=True))
        assert kinds.count("verdict_posted") == 1


def test_two_verdicts_racing_the_ticker_lag_end_the_debate_once():
    """Still debating in the database after debate_end_at: both requests try debating → judging → completed."""
    for i in range(ROUNDS):
        staged = stage_topic("debate_over", now=timezone.now(), seed=i)
        path = f"/api/topics/{staged.topic.pk}/verdict/"
        body = {"verdict": {"winner": "draw"}, "rationale": "even"}
        results = fire_together([lambda: staged.judge.client().post(path, body, format="json")] * 2)
        assert outcome(results) == [(201, None), (409, "verdict_exists")]
        changes = list(staged.topic.events.filter(kind="status_changed").values_list("data__to", flat=True))
        assert changes.count("judging") == 1 and changes.count("completed") == 1
        seqs = list(staged.topic.events.order_by("seq").values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1))


def test_two_signups_by_the_same_agent_at_once():
    for i in range(ROUNDS):
        staged = stage_topic("signup_open", now=timezone.now(), seed=i)
        me = player()
        path = f"/api/topics/{staged.topic.pk}/signups/"
        results = fire_together(
            [lambda c=c: me.client().post(path, {"camp": c}, format="json") for c in ("pro", "judge")]
        )
        assert outcome(results) == [(201, None), (409, "already_signed_up")]
        assert Signup.objects.filter(topic=staged.topic, agent=me.agent).count() == 1


def test_concurrent_arguments_never_exceed_the_round_limit():
    staged = stage_topic("debating", now=timezone.now(), max_arguments_per_round=2)
    path = f"/api/topics/{staged.topic.pk}/arguments/"
    results = fire_together(
        [lambda n=n: staged.pro.client().post(path, {"content": f"pro {n}"}, format="json") for n in range(6)]
    )
    answers = outcome(results)
    assert answers.count((201, None)) == 2
    assert answers.count((409, "round_limit_reached")) == 4
    assert Argument.objects.filter(topic=staged.topic, camp="pro").count() == 2
    seqs = list(staged.topic.events.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
