"""The ticker's claim (``transitions.topic_lock_any``) locks the one topic it returns, and no other.

Several tickers, and a ticker's worker threads, claim from the same window of
due ids at once. A claim that locked the whole window to return one topic
(a sorted locking read does: MySQL locks every row it reads before the sort)
would leave the others finding every candidate held: they drop the window,
and its topics wait for a later drain. tests/test_ticker_crash.py saw that
as topics still ``created`` while allocation had begun.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from devtools.seeding import seed_agents, seed_overdue_topics
from topics import transitions
from topics.models import Topic

pytestmark = [pytest.mark.mariadb, pytest.mark.django_db(transaction=True)]


def unlocked_elsewhere(ids: list) -> set:
    """Which of ``ids`` another connection can lock right now (SKIP LOCKED passes over the held ones)."""
    found: set = set()

    def other() -> None:
        try:
            with transaction.atomic():
                rows = Topic.objects.filter(pk__in=ids).order_by().select_for_update(skip_locked=True)
                found.update(rows.values_list("pk", flat=True))
        finally:
            connection.close()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    return found


def test_a_claim_locks_only_the_topic_it_returns():
    # A table of some size, as in a ticker's life: on a handful of rows the optimizer may pick another plan.
    ids = seed_overdue_topics(300, now=timezone.now(), agents=seed_agents(4))[100:108]
    with transaction.atomic():
        claimed = transitions.topic_lock_any(Topic.objects.filter(pk__in=ids))
        assert claimed is not None
        assert unlocked_elsewhere(ids) == set(ids) - {claimed.pk}


def test_a_second_claim_beside_the_first_gets_another_topic():
    ids = seed_overdue_topics(2, now=timezone.now(), agents=seed_agents(4))
    with transaction.atomic():
        first = transitions.topic_lock_any(Topic.objects.filter(pk__in=ids))
        second: list = []

        def claim() -> None:
            try:
                with transaction.atomic():
                    topic = transitions.topic_lock_any(Topic.objects.filter(pk__in=ids))
                    second.append(topic.pk if topic else None)
            finally:
                connection.close()

        thread = threading.Thread(target=claim)
        thread.start()
        thread.join(timeout=30)
    assert second == [next(pk for pk in ids if pk != first.pk)]
