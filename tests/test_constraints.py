"""The model's invariants hold in the database itself, on SQLite and MariaDB alike.

Every write here bypasses forms and ``clean()`` (``create``, ``bulk_create``,
``update``), so only the schema stands between bad data and the table.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from datetime import timedelta

import jsonschema
import pytest
from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import F

from topics import transitions
from topics.models import Argument, Camp, Round, Signup, Topic, TopicEvent, Verdict, VerdictSchema

pytestmark = pytest.mark.django_db

# A PositiveIntegerField is a CHECK on SQLite but UNSIGNED on MariaDB, where
# strict mode reports a negative value as out of range (DataError).
REJECTED = (IntegrityError, DataError)


@contextmanager
def rejected(exc=IntegrityError):
    """Expect the database to refuse the statement; the savepoint keeps the test's transaction usable."""
    with pytest.raises(exc), transaction.atomic():
        yield


def timeline(now, **changes):
    fields = {
        "title": "Constraint probe",
        "signup_open_at": now,
        "signup_close_at": now + timedelta(minutes=10),
        "debate_start_at": now + timedelta(minutes=10),
        "debate_end_at": now + timedelta(minutes=40),
    }
    fields.update(changes)
    return fields


# --- topic timeline and counters ---------------------------------------------------------


def test_a_debate_that_ends_before_it_starts_is_rejected_by_the_database(winner_schema, now):
    with rejected():
        Topic.objects.create(**timeline(now, debate_end_at=now + timedelta(minutes=5)))
    assert not Topic.objects.exists()


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"signup_close_at": "open-1m"}, id="signup closes before it opens"),
        pytest.param({"debate_start_at": "open+5m"}, id="debate starts before signup closes"),
        pytest.param({"debate_end_at": "open+10m"}, id="debate ends when it starts"),
        pytest.param({"verdict_due_at": "open+40m"}, id="verdict due when the debate ends"),
        pytest.param({"verdict_due_at": "open+20m"}, id="verdict due during the debate"),
        pytest.param({"round_count": 0}, id="zero rounds"),
        pytest.param({"max_arguments_per_round": 0}, id="zero arguments per round"),
        pytest.param({"status": "paused"}, id="unknown status"),
    ],
)
def test_every_timeline_and_field_check_is_enforced_on_insert(winner_schema, now, changes):
    offsets = {"open-1m": -1, "open+5m": 5, "open+10m": 10, "open+20m": 20, "open+40m": 40}
    values = {k: now + timedelta(minutes=offsets[v]) if v in offsets else v for k, v in changes.items()}
    with rejected():
        Topic.objects.create(**timeline(now, **values))
    assert not Topic.objects.exists()


def test_the_edges_of_the_timeline_are_allowed(winner_schema, now):
    # signup may close the moment it opens and the debate start the moment signup closes.
    topic = Topic.objects.create(
        **timeline(
            now,
            signup_close_at=now,
            debate_start_at=now,
            debate_end_at=now + timedelta(seconds=1),
            verdict_due_at=now + timedelta(seconds=2),
        )
    )
    assert Topic.objects.filter(pk=topic.pk).exists()


def test_bulk_create_cannot_sneak_a_bad_topic_in(winner_schema, now):
    good = Topic(**timeline(now, title="good"))
    bad = Topic(**timeline(now, title="bad", debate_start_at=now + timedelta(hours=2)))
    with rejected():
        Topic.objects.bulk_create([good, bad])
    assert not Topic.objects.exists()


@pytest.mark.parametrize(
    "update",
    [
        pytest.param({"debate_end_at": F("debate_start_at")}, id="debate end onto its start"),
        pytest.param({"signup_open_at": F("debate_end_at")}, id="signup opens after the debate"),
        pytest.param({"verdict_due_at": F("debate_start_at")}, id="verdict due before the end"),
        pytest.param({"round_count": 0}, id="zero rounds"),
        pytest.param({"status": "bogus"}, id="unknown status"),
    ],
)
def test_a_raw_update_cannot_break_a_stored_topic(make_topic, update):
    topic = make_topic()
    with rejected():
        Topic.objects.filter(pk=topic.pk).update(**update)
    stored = Topic.objects.get(pk=topic.pk)
    assert (stored.debate_end_at, stored.status, stored.round_count) == (topic.debate_end_at, "created", 1)


def test_counters_cannot_go_negative(make_topic):
    topic = make_topic()
    with rejected(REJECTED):
        Topic.objects.filter(pk=topic.pk).update(event_seq=-1)
    with rejected(REJECTED):
        Topic.objects.filter(pk=topic.pk).update(round_count=-1)


# --- uniqueness of camps, signups, events, verdicts, rounds ----------------------------------


@pytest.fixture
def allocated(make_topic, make_agent, now):
    """A topic whose camps are filled (pro, con, judge) plus one spare agent."""
    topic = make_topic()
    agents = [make_agent() for _ in range(4)]
    with transaction.atomic():
        locked = transitions.topic_lock(topic.pk)
        transitions.topic_open_signup(locked, now=now)
    for agent, camp in zip(agents[:3], ["pro", "con", "judge"], strict=True):
        Signup.objects.create(topic=topic, agent=agent, camp=camp)
    with transaction.atomic():
        locked = transitions.topic_lock(topic.pk)
        transitions.topic_close_signup(locked, now=now, rng=random.Random(5))
    topic.refresh_from_db()
    camps = {c.camp: c.agent for c in Camp.objects.filter(topic=topic)}
    return topic, camps, agents[3]


def test_a_second_camp_row_for_the_same_camp_is_rejected(allocated):
    topic, _, spare = allocated
    with rejected():
        Camp.objects.create(topic=topic, camp="pro", agent=spare)
    assert Camp.objects.filter(topic=topic).count() == 3


def test_one_agent_cannot_hold_two_camps_of_a_topic(allocated, make_topic):
    topic, camps, _ = allocated
    Camp.objects.filter(topic=topic, camp="judge").delete()
    with rejected():
        Camp.objects.create(topic=topic, camp="judge", agent=camps["pro"])
    # The same agent in another topic is fine.
    other = make_topic()
    Camp.objects.create(topic=other, camp="judge", agent=camps["pro"])


def test_a_second_signup_by_the_same_agent_is_rejected(make_topic, make_agent):
    topic, agent = make_topic(), make_agent()
    Signup.objects.create(topic=topic, agent=agent, camp="pro")
    with rejected():
        Signup.objects.create(topic=topic, agent=agent, camp="con")
    with rejected():
        Signup.objects.bulk_create([Signup(topic=topic, agent=agent, camp=None)])
    assert Signup.objects.filter(topic=topic).count() == 1


def test_event_seq_is_unique_per_topic_and_positive(make_topic):
    topic, other = make_topic(), make_topic()
    TopicEvent.objects.create(topic=topic, seq=1, kind="status_changed")
    with rejected():
        TopicEvent.objects.create(topic=topic, seq=1, kind="round_opened")
    with rejected():
        TopicEvent.objects.create(topic=topic, seq=0, kind="round_opened")
    # Each topic counts from 1.
    TopicEvent.objects.create(topic=other, seq=1, kind="status_changed")
    assert TopicEvent.objects.count() == 2


def test_a_second_verdict_on_a_topic_is_rejected(allocated):
    topic, camps, spare = allocated
    Verdict.objects.create(topic=topic, judge=camps["judge"], verdict={"winner": "pro"}, rationale="first")
    with rejected():
        Verdict.objects.create(topic=topic, judge=spare, verdict={"winner": "con"}, rationale="second")
    assert Verdict.objects.get(topic=topic).rationale == "first"


def test_rounds_are_unique_per_topic_and_never_empty(make_topic, now):
    topic = make_topic()
    Round.objects.create(topic=topic, round_no=0, opens_at=now, closes_at=now + timedelta(minutes=5))
    with rejected():
        Round.objects.create(topic=topic, round_no=0, opens_at=now, closes_at=now + timedelta(minutes=5))
    with rejected():
        Round.objects.create(topic=topic, round_no=1, opens_at=now, closes_at=now)


def test_an_argument_cannot_be_empty(allocated, now):
    topic, camps, _ = allocated
    rnd = Round.objects.create(topic=topic, round_no=0, opens_at=now, closes_at=now + timedelta(minutes=5))
    with rejected():
        Argument.objects.create(topic=topic, round=rnd, agent=camps["pro"], camp="pro", content="")


# --- text: 4-byte UTF-8 ------------------------------------------------------------------------

FOUR_BYTE = "Pro: 🦜🔥 and \U0001d518\U0001d52b\U0001d526 (fraktur) — 中文 — 👩🏽\u200d💻 end"


def test_four_byte_utf8_round_trips_in_arguments_titles_and_names(allocated, now):
    topic, camps, _ = allocated
    rnd = Round.objects.create(topic=topic, round_no=0, opens_at=now, closes_at=now + timedelta(minutes=5))
    # 32768 bytes of 4-byte characters: the longest argument the API accepts.
    longest = "🦜" * (Argument.MAX_CONTENT_BYTES // 4)
    short = Argument.objects.create(topic=topic, round=rnd, agent=camps["pro"], camp="pro", content=FOUR_BYTE)
    full = Argument.objects.create(topic=topic, round=rnd, agent=camps["con"], camp="con", content=longest)
    Topic.objects.filter(pk=topic.pk).update(title=f"Title {FOUR_BYTE}"[:200])
    camps["pro"].name = "bot-🦜"
    camps["pro"].save()
    assert Argument.objects.get(pk=short.pk).content == FOUR_BYTE
    stored = Argument.objects.get(pk=full.pk).content
    assert stored == longest and len(stored.encode()) == Argument.MAX_CONTENT_BYTES
    assert Topic.objects.get(pk=topic.pk).title == f"Title {FOUR_BYTE}"
    assert Argument.objects.filter(content__contains="🔥").count() == 1
    camps["pro"].refresh_from_db()
    assert camps["pro"].name == "bot-🦜"


@pytest.mark.mariadb
def test_text_columns_and_the_connection_are_utf8mb4_on_mariadb():
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@character_set_connection")
        assert cursor.fetchone()[0] == "utf8mb4"
        cursor.execute(
            "SELECT TABLE_NAME, COLUMN_NAME, CHARACTER_SET_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'topics\\_%%' AND CHARACTER_SET_NAME IS NOT NULL"
        )
        columns = cursor.fetchall()
    assert ("topics_argument", "content", "utf8mb4") in columns
    assert {charset for _, _, charset in columns} == {"utf8mb4"}


@pytest.mark.mariadb
def test_check_constraints_exist_in_the_mariadb_schema():
    # MariaDB parses and enforces CHECK; this guards against a backend that silently drops them.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT CONSTRAINT_NAME FROM information_schema.CHECK_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = 'topics_topic'"
        )
        names = {row[0] for row in cursor.fetchall()}
    assert {
        "topic_signup_opens_before_close",
        "topic_signup_closes_before_debate",
        "topic_debate_starts_before_end",
        "topic_verdict_due_after_debate",
        "topic_round_count_positive",
        "topic_status_valid",
    } <= names


# --- the default verdict schema -----------------------------------------------------------------


def test_the_winner_schema_exists_after_migrate_and_validates_verdicts():
    schema = VerdictSchema.objects.get(name="winner").schema
    jsonschema.validators.validator_for(schema).check_schema(schema)
    validator = jsonschema.validators.validator_for(schema)(schema)
    for good in ({"winner": "pro"}, {"winner": "draw"}, {"winner": "con", "scores": {"pro": 3, "con": 7.5}}):
        assert validator.is_valid(good), good
    for bad in ({"winner": "maybe"}, {}, {"winner": "pro", "scores": {"pro": "high"}}, ["pro"]):
        assert not validator.is_valid(bad), bad
