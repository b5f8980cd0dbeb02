"""topics.rules: each predicate at its boundaries, and each query expression against the predicate it mirrors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from topics import rules
from topics.models import EventKind, Round, Topic, TopicStatus

S = TopicStatus
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)


def topic(status: str = S.SIGNUP_OPEN, **fields) -> Topic:
    """An unsaved topic: signup 12:00 to 12:10, debate 12:10 to 12:40 in ``round_count`` rounds."""
    moments = rules.timeline(opens_at=T0, verdict_within=fields.pop("verdict_within", None))
    # verdict_schema_id given: the field's default would look the schema up in the database.
    return Topic(status=status, round_count=fields.pop("round_count", 1), verdict_schema_id=0, **moments, **fields)


def test_finished_means_completed_or_cancelled():
    assert {status for status in S.values if rules.is_finished(status)} == {S.COMPLETED, S.CANCELLED}


def test_a_stream_ends_with_completion_or_the_cancellation_event_only():
    assert rules.ends_stream(EventKind.TOPIC_CANCELLED, {"reason": "x"})
    assert rules.ends_stream(EventKind.STATUS_CHANGED, {"from": "judging", "to": "completed"})
    # A cancellation's status_changed comes before its topic_cancelled, which is the last.
    assert not rules.ends_stream(EventKind.STATUS_CHANGED, {"from": "signup_open", "to": "cancelled"})
    assert not rules.ends_stream(EventKind.VERDICT_POSTED, {"to": "completed"})
    assert not rules.ends_stream(EventKind.STATUS_CHANGED, ["to", "completed"])


def test_signup_is_open_until_the_close_time_even_before_the_ticker_moves():
    t = topic(S.SIGNUP_OPEN)
    assert rules.signup_is_open(t, t.signup_close_at - US)
    assert not rules.signup_is_open(t, t.signup_close_at)
    assert not rules.signup_is_open(topic(S.CREATED), T0)
    assert not rules.signup_is_open(topic(S.SIGNUP_CLOSED), T0)


def test_the_debate_is_active_until_its_end_and_then_over():
    t = topic(S.DEBATING)
    end = t.debate_end_at
    assert rules.debate_is_active(t, end - US) and not rules.debate_is_over(t, end - US)
    assert not rules.debate_is_active(t, end) and rules.debate_is_over(t, end)
    assert rules.debate_is_over(topic(S.JUDGING), T0)
    for status in (S.SIGNUP_CLOSED, S.COMPLETED, S.CANCELLED):
        assert not rules.debate_is_active(topic(status), end - US)
        assert not rules.debate_is_over(topic(status), end)


def test_a_verdict_is_late_from_its_deadline_and_never_without_one():
    t = topic(S.JUDGING, verdict_within=timedelta(minutes=5))
    due = t.verdict_due_at
    assert not rules.verdict_is_late(t, due - US) and rules.verdict_window_is_open(t, due - US)
    assert rules.verdict_is_late(t, due) and not rules.verdict_window_is_open(t, due)
    assert not rules.verdict_is_late(topic(S.JUDGING), T0 + timedelta(days=365))
    assert not rules.verdict_window_is_open(topic(S.DEBATING), topic().debate_end_at - US)


def test_round_at_follows_the_windows_and_clamps_to_the_last():
    t = topic(S.DEBATING, round_count=3)  # 10 minutes each
    assert rules.round_at(t, t.debate_start_at - timedelta(minutes=1)) == 0
    assert rules.round_at(t, t.round_window(1)[0] - US) == 0
    assert rules.round_at(t, t.round_window(1)[0]) == 1
    assert rules.round_at(t, t.debate_end_at + timedelta(hours=1)) == 2


def test_a_round_boundary_is_due_when_the_open_round_ran_its_time_and_another_follows():
    t = topic(S.DEBATING, round_count=2)
    first = Round(round_no=0, closes_at=t.round_window(0)[1])
    last = Round(round_no=1, closes_at=t.debate_end_at)
    assert not rules.round_boundary_is_due(t, first, first.closes_at - US)
    assert rules.round_boundary_is_due(t, first, first.closes_at)
    assert not rules.round_boundary_is_due(t, last, last.closes_at + timedelta(hours=1)), (
        "the last round ends the debate"
    )
    assert not rules.round_boundary_is_due(t, None, t.debate_end_at)


def test_timeline_applies_the_design_defaults():
    moments = rules.timeline(opens_at=T0)
    assert moments == {
        "signup_open_at": T0,
        "signup_close_at": T0 + timedelta(minutes=10),
        "debate_start_at": T0 + timedelta(minutes=10),
        "debate_end_at": T0 + timedelta(minutes=40),
        "verdict_due_at": None,
    }
    custom = rules.timeline(opens_at=T0, signup_for=timedelta(0), gap=timedelta(1), debate_for=timedelta(2))
    assert custom["debate_start_at"] == T0 + timedelta(1) and custom["debate_end_at"] == T0 + timedelta(3)


# --- the query expressions agree with the predicates, on the database -----------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("edge", "status", "moment"),
    [
        (rules.OPEN_SIGNUP, S.CREATED, "signup_open_at"),
        (rules.CLOSE_SIGNUP, S.SIGNUP_OPEN, "signup_close_at"),
        (rules.START_DEBATE, S.SIGNUP_CLOSED, "debate_start_at"),
        (rules.END_DEBATE, S.DEBATING, "debate_end_at"),
        (rules.EXPIRE_VERDICT, S.JUDGING, "verdict_due_at"),
    ],
)
def test_each_timed_edge_finds_exactly_the_topics_in_its_status_whose_moment_passed(
    edge, status, moment, make_topic, now
):
    assert (edge.status, edge.at) == (status, moment)
    due = make_topic(start=now - timedelta(hours=2), verdict_within=timedelta(minutes=5))
    not_yet = make_topic(start=now + timedelta(hours=2), verdict_within=timedelta(minutes=5))
    other_status = make_topic(start=now - timedelta(hours=2), verdict_within=timedelta(minutes=5))
    Topic.objects.filter(pk__in=[due.pk, not_yet.pk]).update(status=status)
    Topic.objects.filter(pk=other_status.pk).update(status=S.COMPLETED if status != S.COMPLETED else S.CREATED)
    found = set(Topic.objects.filter(edge.due_q(now)).values_list("pk", flat=True))
    assert found == {due.pk}
    at_the_moment = getattr(Topic.objects.get(pk=not_yet.pk), moment)
    assert set(Topic.objects.filter(edge.due_q(at_the_moment)).values_list("pk", flat=True)) == {due.pk, not_yet.pk}


@pytest.mark.django_db
def test_the_round_filters_find_the_boundaries_round_boundary_is_due_finds(make_topic, now):
    cases = {}
    for name, round_count, status in [
        ("due", 2, S.DEBATING),
        ("last_round", 1, S.DEBATING),
        ("not_debating", 2, S.JUDGING),
        ("not_yet", 2, S.DEBATING),
    ]:
        start = now - timedelta(hours=1) if name != "not_yet" else now
        t = make_topic(start=start - timedelta(minutes=10), signup_for=timedelta(minutes=10), round_count=round_count)
        Topic.objects.filter(pk=t.pk).update(status=status)
        opens_at, closes_at = t.round_window(0)
        Round.objects.create(topic=t, round_no=0, opens_at=opens_at, closes_at=closes_at)
        cases[name] = Topic.objects.get(pk=t.pk)
    expected = {
        t.pk
        for t in cases.values()
        if t.status == S.DEBATING and rules.round_boundary_is_due(t, Round.objects.get(topic=t), now)
    }
    assert expected == {cases["due"].pk}
    assert set(Round.objects.filter(rules.rounds_due_q(now)).values_list("topic_id", flat=True)) == expected
    assert set(Topic.objects.filter(rules.topics_with_round_due_q(now)).values_list("pk", flat=True)) == expected
    # Without a moment the rounds filter leaves time to the caller: the one not due yet is included.
    pending = set(Round.objects.filter(rules.rounds_due_q()).values_list("topic_id", flat=True))
    assert pending == {cases["due"].pk, cases["not_yet"].pk}
