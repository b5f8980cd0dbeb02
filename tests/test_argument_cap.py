"""MAX_ARGUMENTS_PER_TOPIC: no topic holds more arguments than the cap, whoever posts them and however fast.

The transcript (``GET /api/topics/{id}/arguments/``), a stream's backlog and
the admin's inline all read every argument of a topic; the cap is what
bounds them.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.api_support import stage_topic
from tests.test_api_races import fire_together, outcome
from topics.models import Argument

pytestmark = pytest.mark.django_db


def post(player, topic, content: str):
    return player.client().post(f"/api/topics/{topic.pk}/arguments/", {"content": content}, format="json")


def test_the_argument_past_the_cap_is_409_topic_argument_limit_and_changes_nothing(settings):
    settings.MAX_ARGUMENTS_PER_TOPIC = 3
    staged = stage_topic("debating", now=timezone.now())
    for player, n in ((staged.pro, 1), (staged.con, 2), (staged.pro, 3)):
        assert post(player, staged.topic, f"argument {n}").status_code == 201
    seq_before = staged.refresh().event_seq

    response = post(staged.con, staged.topic, "one too many")

    assert response.status_code == 409, response.content
    assert response.json() == {
        "detail": "This topic holds 3 arguments, the most a topic may hold.",
        "code": "topic_argument_limit",
    }
    assert Argument.objects.filter(topic=staged.topic).count() == 3
    assert staged.refresh().event_seq == seq_before  # no event either


def test_the_cap_is_per_topic(settings):
    settings.MAX_ARGUMENTS_PER_TOPIC = 1
    full = stage_topic("debating", now=timezone.now())
    other = stage_topic("debating", now=timezone.now())
    assert post(full.pro, full.topic, "the only one").status_code == 201
    assert post(full.con, full.topic, "refused").json()["code"] == "topic_argument_limit"
    assert post(other.pro, other.topic, "still fine").status_code == 201


def test_the_default_cap_is_1000():
    from django.conf import settings

    assert settings.MAX_ARGUMENTS_PER_TOPIC == 1000


def test_the_count_is_one_indexed_statement_under_the_lock(settings):
    """The cap costs one COUNT over argument_transcript_idx's topic prefix, whatever the topic holds."""
    staged = stage_topic("debating", now=timezone.now())
    Argument.objects.bulk_create(
        Argument(topic=staged.topic, round=staged.topic.rounds.get(), agent=staged.pro.agent, camp="pro", content="x")
        for _ in range(999)
    )
    with CaptureQueriesContext(connection) as queries:
        assert post(staged.pro, staged.topic, "the thousandth").status_code == 201
        assert post(staged.con, staged.topic, "the thousand and first").json()["code"] == "topic_argument_limit"
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper() and "argument" in q["sql"]]
    assert len(counts) == 2, counts


@pytest.mark.mariadb
@pytest.mark.django_db(transaction=True)
def test_two_arguments_racing_for_the_last_place_one_wins(settings):
    settings.MAX_ARGUMENTS_PER_TOPIC = 1
    for _ in range(5):
        staged = stage_topic("debating", now=timezone.now())
        results = fire_together(
            [lambda: post(staged.pro, staged.topic, "pro"), lambda: post(staged.con, staged.topic, "con")]
        )
        assert outcome(results) == [(201, None), (409, "topic_argument_limit")]
        assert Argument.objects.filter(topic=staged.topic).count() == 1
