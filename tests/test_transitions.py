"""Every edge of the state machine, driven through the ticker's step methods with time travel."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone

from fabric_bridge.models import Announcement, AnnouncementKind
from orchestrator.ticker import Ticker
from topics import transitions
from topics.models import Camp, EventKind, Round, Signup, Topic, TopicEvent, TopicStatus, Verdict
from topics.representations import timestamp

S = TopicStatus
SECOND = timedelta(seconds=1)


@pytest.fixture
def clock(now):
    with time_machine.travel(now, tick=False) as traveller:
        yield traveller


@pytest.fixture
def fabric_on(settings):
    """Announcements are queued only when Fabric is configured; the step methods never deliver."""
    settings.FABRIC_GUILD_BASE_URL = "http://127.0.0.1:9"
    settings.FABRIC_ANNOUNCE_CHANNEL_ID = "announce"
    settings.FABRIC_SYSTEM_API_KEY = "system-key"
    settings.FABRIC_BOT_BEARER_TOKEN = "bot-token"


@pytest.fixture
def no_delivery(monkeypatch):
    """run_pass() delivers after its transitions; these tests are about the transitions only."""
    monkeypatch.setattr("orchestrator.ticker.deliver_due", lambda **kwargs: 0)


@pytest.fixture
def ticker():
    return Ticker(rng=random.Random(1))


def events(topic) -> list[tuple[str, dict]]:
    rows = list(TopicEvent.objects.filter(topic=topic).order_by("seq").values_list("seq", "kind", "data"))
    topic.refresh_from_db()
    assert [seq for seq, _, _ in rows] == list(range(1, len(rows) + 1)), "event seqs have a gap"
    assert topic.event_seq == len(rows)
    return [(kind, data) for _, kind, data in rows]


def changes(topic) -> list[tuple[str, str]]:
    return [(data["from"], data["to"]) for kind, data in events(topic) if kind == EventKind.STATUS_CHANGED]


def announced(topic) -> list[str]:
    return sorted(Announcement.objects.filter(topic=topic).values_list("kind", flat=True))


def sign_up(topic, agents, prefs):
    for agent, camp in zip(agents, prefs, strict=True):
        Signup.objects.create(topic=topic, agent=agent, camp=camp)


# --- created → signup_open ----------------------------------------------------


def test_signup_opens_at_its_time_and_queues_the_announcement(
    make_topic, clock, ticker, fabric_on, caplog, now, django_capture_on_commit_callbacks
):
    topic = make_topic(opens_in=timedelta(hours=1))
    assert ticker.open_signups() == 0
    clock.move_to(topic.signup_open_at - SECOND)
    assert ticker.open_signups() == 0

    clock.move_to(topic.signup_open_at)
    # The line is logged once the transaction commits (here: the test's own, never committed).
    with caplog.at_level("INFO", logger="topics.transitions"), django_capture_on_commit_callbacks(execute=True):
        assert ticker.open_signups() == 1
    topic.refresh_from_db()
    assert topic.status == S.SIGNUP_OPEN
    assert events(topic) == [
        (EventKind.STATUS_CHANGED, {"from": "created", "to": "signup_open", "reason": "signup opens"})
    ]
    assert announced(topic) == [AnnouncementKind.SIGNUP_OPENED]
    assert f"topic {topic.pk} created → signup_open: signup opens" in caplog.messages
    assert ticker.open_signups() == 0, "a transition happens once"


def test_without_fabric_nothing_is_queued(make_topic, clock, ticker):
    topic = make_topic()
    assert ticker.open_signups() == 1
    assert announced(topic) == []


# --- signup_open → signup_closed | cancelled ----------------------------------


def test_signup_close_allocates_the_camps_in_the_same_transaction(make_topic, make_agent, clock, ticker, fabric_on):
    topic = make_topic()
    agents = [make_agent() for _ in range(4)]
    sign_up(topic, agents, ["pro", "con", "judge", None])
    ticker.open_signups()
    clock.move_to(topic.signup_close_at - SECOND)
    assert ticker.close_signups() == 0

    clock.move_to(topic.signup_close_at)
    assert ticker.close_signups() == 1
    topic.refresh_from_db()
    assert topic.status == S.SIGNUP_CLOSED
    camps = {c.camp: c.agent for c in Camp.objects.filter(topic=topic)}
    assert {camp: agent.name for camp, agent in camps.items()} == {
        "pro": agents[0].name,
        "con": agents[1].name,
        "judge": agents[2].name,
    }
    assert events(topic)[1:] == [
        (
            EventKind.CAMPS_ALLOCATED,
            {
                **{camp: {"id": str(a.id), "name": a.name} for camp, a in camps.items()},
                "judges": [{"id": str(camps["judge"].id), "name": camps["judge"].name}],
            },
        ),
        (
            EventKind.STATUS_CHANGED,
            {"from": "signup_open", "to": "signup_closed", "reason": "4 signed up; camps allocated"},
        ),
    ]
    assert announced(topic) == [AnnouncementKind.SIGNUP_OPENED], "closing signup is not announced"


def test_too_few_signups_cancel_with_the_allocators_reason(make_topic, make_agent, clock, ticker, fabric_on):
    topic = make_topic()
    sign_up(topic, [make_agent(), make_agent()], ["pro", "con"])
    ticker.open_signups()
    clock.move_to(topic.signup_close_at)
    assert ticker.close_signups() == 1

    topic.refresh_from_db()
    reason = "insufficient signups: 2 signed up, need 3 (unfilled: judge)"
    assert topic.status == S.CANCELLED
    assert topic.cancelled_reason == reason
    assert events(topic)[1:] == [
        (EventKind.STATUS_CHANGED, {"from": "signup_open", "to": "cancelled", "reason": reason}),
        (EventKind.TOPIC_CANCELLED, {"reason": reason}),
    ]
    assert not Camp.objects.filter(topic=topic).exists()
    assert announced(topic) == [AnnouncementKind.SIGNUP_OPENED, AnnouncementKind.TOPIC_CANCELLED]


def test_owner_conflict_cancels_and_says_so(make_topic, make_agent, clock, ticker):
    topic = make_topic()
    sign_up(topic, [make_agent(owner="acme"), make_agent(owner="acme"), make_agent(owner="zeta")], ["pro", "con", None])
    ticker.open_signups()
    clock.move_to(topic.signup_close_at)
    ticker.close_signups()
    topic.refresh_from_db()
    assert topic.status == S.CANCELLED
    assert topic.cancelled_reason.startswith("owner conflict: 3 signed up")
    assert "(acme)" in topic.cancelled_reason


# --- signup_closed → debating → rounds → judging --------------------------------


def walk(topic, ticker, clock, *, to: str, agents=None):
    """Bring a fresh topic (default timeline) to ``to`` by the ticker's own steps at the right times."""
    order = [S.SIGNUP_OPEN, S.SIGNUP_CLOSED, S.DEBATING, S.JUDGING]
    steps = {
        S.SIGNUP_OPEN: (topic.signup_open_at, ticker.open_signups),
        S.SIGNUP_CLOSED: (topic.signup_close_at, ticker.close_signups),
        S.DEBATING: (topic.debate_start_at, ticker.start_debates),
        S.JUDGING: (topic.debate_end_at, ticker.end_debates),
    }
    if agents:
        sign_up(topic, agents, ["pro", "con", "judge"])
    for status in order[: order.index(to) + 1] if to in order else []:
        at, step = steps[status]
        clock.move_to(at)
        assert step() == 1, f"could not reach {status}"
    topic.refresh_from_db()
    assert topic.status == to


def test_debate_starts_at_its_time_with_round_zero_open(make_topic, make_agent, clock, ticker):
    topic = make_topic(gap=timedelta(minutes=5))
    walk(topic, ticker, clock, to=S.SIGNUP_CLOSED, agents=[make_agent() for _ in range(3)])
    clock.move_to(topic.debate_start_at - SECOND)
    assert ticker.start_debates() == 0

    clock.move_to(topic.debate_start_at)
    assert ticker.start_debates() == 1
    topic.refresh_from_db()
    assert topic.status == S.DEBATING
    (rnd,) = Round.objects.filter(topic=topic)
    assert (rnd.round_no, rnd.opens_at, rnd.closes_at, rnd.closed_at) == (
        0,
        topic.debate_start_at,
        topic.debate_end_at,
        None,
    )
    assert [kind for kind, _ in events(topic)][-2:] == [EventKind.ROUND_OPENED, EventKind.STATUS_CHANGED]
    assert ticker.advance_rounds() == 0, "a single round has no boundary"


def test_three_rounds_split_the_debate_evenly_and_turn_over_at_each_boundary(make_topic, make_agent, clock, ticker):
    topic = make_topic(debate_for=timedelta(minutes=30), round_count=3)
    walk(topic, ticker, clock, to=S.DEBATING, agents=[make_agent() for _ in range(3)])
    start, ten = topic.debate_start_at, timedelta(minutes=10)
    seen_before = len(events(topic))

    for boundary in (1, 2):
        clock.move_to(start + boundary * ten - SECOND)
        assert ticker.advance_rounds() == 0
        clock.move_to(start + boundary * ten)
        assert ticker.advance_rounds() == 1
        assert ticker.advance_rounds() == 0, "one boundary, one turnover"

    rounds = list(Round.objects.filter(topic=topic).order_by("round_no"))
    assert [(r.round_no, r.opens_at, r.closes_at) for r in rounds] == [
        (0, start, start + ten),
        (1, start + ten, start + 2 * ten),
        (2, start + 2 * ten, topic.debate_end_at),
    ]
    assert [r.closed_at for r in rounds] == [start + ten, start + 2 * ten, None]

    clock.move_to(topic.debate_end_at)
    assert ticker.advance_rounds() == 0, "the last round is closed by the debate's end, not a boundary"
    assert ticker.end_debates() == 1
    topic.refresh_from_db()
    assert topic.status == S.JUDGING
    assert Round.objects.get(topic=topic, round_no=2).closed_at == topic.debate_end_at

    iso = timestamp
    assert events(topic)[seen_before:] == [
        (EventKind.ROUND_CLOSED, {"round_no": 0, "closed_at": iso(start + ten)}),
        (EventKind.ROUND_OPENED, {"round_no": 1, "opens_at": iso(start + ten), "closes_at": iso(start + 2 * ten)}),
        (EventKind.ROUND_CLOSED, {"round_no": 1, "closed_at": iso(start + 2 * ten)}),
        (
            EventKind.ROUND_OPENED,
            {"round_no": 2, "opens_at": iso(start + 2 * ten), "closes_at": iso(topic.debate_end_at)},
        ),
        (EventKind.ROUND_CLOSED, {"round_no": 2, "closed_at": iso(topic.debate_end_at)}),
        (
            EventKind.STATUS_CHANGED,
            {"from": "debating", "to": "judging", "reason": "debate ends; awaiting verdict"},
        ),
    ]


def test_a_ticker_that_fell_behind_walks_every_state_in_one_pass(make_topic, make_agent, clock, ticker, no_delivery):
    topic = make_topic(round_count=3, verdict_within=timedelta(hours=1))
    sign_up(topic, [make_agent() for _ in range(3)], [None, None, None])
    clock.move_to(topic.verdict_due_at + timedelta(days=2))

    assert ticker.run_pass() == 7  # open, close, start, two boundaries, end, expire
    topic.refresh_from_db()
    assert topic.status == S.CANCELLED
    assert changes(topic) == [
        ("created", "signup_open"),
        ("signup_open", "signup_closed"),
        ("signup_closed", "debating"),
        ("debating", "judging"),
        ("judging", "cancelled"),
    ]
    assert [r.round_no for r in Round.objects.filter(topic=topic, closed_at__isnull=False)] == [0, 1, 2]
    assert ticker.run_pass() == 0


def test_ending_a_debate_first_applies_the_boundaries_nobody_applied(make_topic, make_agent, clock, ticker):
    """The verdict endpoint may end a debate before the ticker turned its rounds over."""
    topic = make_topic(round_count=3)
    walk(topic, ticker, clock, to=S.DEBATING, agents=[make_agent() for _ in range(3)])
    with transaction.atomic():
        transitions.topic_end_debate(transitions.topic_lock(topic.pk), now=topic.debate_end_at)
    rounds = Round.objects.filter(topic=topic).order_by("round_no")
    assert [(r.round_no, r.closed_at) for r in rounds] == [(n, topic.debate_end_at) for n in range(3)]
    kinds = [kind for kind, _ in events(topic)]
    assert kinds[-6:] == [
        EventKind.ROUND_CLOSED,
        EventKind.ROUND_OPENED,
        EventKind.ROUND_CLOSED,
        EventKind.ROUND_OPENED,
        EventKind.ROUND_CLOSED,
        EventKind.STATUS_CHANGED,
    ]


# --- judging → cancelled | completed --------------------------------------------


def test_judging_without_a_deadline_waits_for_the_verdict(make_topic, make_agent, clock, ticker):
    topic = make_topic()
    walk(topic, ticker, clock, to=S.JUDGING, agents=[make_agent() for _ in range(3)])
    clock.move_to(topic.debate_end_at + timedelta(days=30))
    assert ticker.expire_verdicts() == 0
    topic.refresh_from_db()
    assert topic.status == S.JUDGING


def test_no_verdict_by_the_deadline_cancels(make_topic, make_agent, clock, ticker, fabric_on):
    topic = make_topic(verdict_within=timedelta(hours=2))
    walk(topic, ticker, clock, to=S.JUDGING, agents=[make_agent() for _ in range(3)])
    clock.move_to(topic.verdict_due_at - SECOND)
    assert ticker.expire_verdicts() == 0

    clock.move_to(topic.verdict_due_at)
    assert ticker.expire_verdicts() == 1
    topic.refresh_from_db()
    reason = f"no verdict by {timestamp(topic.verdict_due_at)}"
    assert (topic.status, topic.cancelled_reason) == (S.CANCELLED, reason)
    assert events(topic)[-2:] == [
        (EventKind.STATUS_CHANGED, {"from": "judging", "to": "cancelled", "reason": reason}),
        (EventKind.TOPIC_CANCELLED, {"reason": reason}),
    ]
    assert announced(topic) == [AnnouncementKind.SIGNUP_OPENED, AnnouncementKind.TOPIC_CANCELLED]


def test_an_accepted_verdict_completes_and_is_announced(make_topic, make_agent, clock, ticker, fabric_on, now):
    topic = make_topic(verdict_within=timedelta(hours=1))
    walk(topic, ticker, clock, to=S.JUDGING, agents=[make_agent() for _ in range(3)])
    judge = Camp.objects.get(topic=topic, camp="judge").agent
    with transaction.atomic():
        locked = transitions.topic_lock(topic.pk)
        seats = transitions.topic_lock_for_completion(locked)  # before the verdict, as verdict_create
        verdict = Verdict.objects.create(topic=locked, judge=judge, verdict={"winner": "pro"}, rationale="Sharper.")
        transitions.topic_complete(locked, verdict=verdict, now=topic.debate_end_at, seats=seats)
    topic.refresh_from_db()
    assert topic.status == S.COMPLETED
    kind, data = events(topic)[-2]
    assert (kind, data["verdict"], data["judge"]["id"]) == (EventKind.VERDICT_POSTED, {"winner": "pro"}, str(judge.id))
    assert announced(topic) == [AnnouncementKind.SIGNUP_OPENED, AnnouncementKind.TOPIC_COMPLETED]

    clock.move_to(topic.verdict_due_at + SECOND)
    assert ticker.expire_verdicts() == 0, "a completed topic has no deadline left"


# --- staff cancellation ----------------------------------------------------------


@pytest.mark.parametrize("status", [S.CREATED, S.SIGNUP_OPEN, S.SIGNUP_CLOSED, S.DEBATING, S.JUDGING])
def test_staff_cancel_from_every_non_terminal_status(
    status, make_topic, make_agent, clock, ticker, fabric_on, no_delivery
):
    topic = make_topic(opens_in=timedelta(minutes=1), verdict_within=timedelta(hours=1))
    walk(topic, ticker, clock, to=status, agents=[make_agent() for _ in range(3)])
    with transaction.atomic():
        transitions.topic_cancel(
            transitions.topic_lock(topic.pk), reason="  duplicate of another topic ", now=timezone.now()
        )

    topic.refresh_from_db()
    assert (topic.status, topic.cancelled_reason) == (S.CANCELLED, "duplicate of another topic")
    kinds = [kind for kind, _ in events(topic)]
    assert changes(topic)[-1] == (status, S.CANCELLED)
    assert kinds[-1] == EventKind.TOPIC_CANCELLED
    if status == S.DEBATING:
        assert kinds[-3] == EventKind.ROUND_CLOSED
    assert not Round.objects.filter(topic=topic, closed_at__isnull=True).exists()
    # A topic that was never announced is not un-announced either.
    expected = [] if status == S.CREATED else [AnnouncementKind.SIGNUP_OPENED, AnnouncementKind.TOPIC_CANCELLED]
    assert announced(topic) == expected

    clock.move_to(topic.verdict_due_at + timedelta(days=1))
    assert ticker.run_pass() == 0, "cancelled is terminal: the ticker leaves it alone"


def test_cancel_needs_a_reason_and_a_live_topic(make_topic, now):
    topic = make_topic()
    with transaction.atomic(), pytest.raises(transitions.TransitionError, match="reason"):
        transitions.topic_cancel(transitions.topic_lock(topic.pk), reason="   ", now=now)
    with transaction.atomic():
        transitions.topic_cancel(transitions.topic_lock(topic.pk), reason="first", now=now)
    with transaction.atomic(), pytest.raises(transitions.TransitionError, match="cancelled → cancelled"):
        transitions.topic_cancel(transitions.topic_lock(topic.pk), reason="second", now=now)
    topic.refresh_from_db()
    assert topic.cancelled_reason == "first"


# --- edges that do not exist ---------------------------------------------------------


@pytest.mark.parametrize(
    "edge",
    [
        lambda t, now: transitions.topic_close_signup(t, now=now),
        lambda t, now: transitions.topic_start_debate(t, now=now),
        lambda t, now: transitions.topic_end_debate(t, now=now),
        lambda t, now: transitions.topic_expire_verdict(t, now=now),
    ],
    ids=["close_signup", "start_debate", "end_debate", "expire_verdict"],
)
def test_edges_out_of_created_other_than_opening_raise(edge, make_topic, now):
    topic = make_topic()
    with transaction.atomic(), pytest.raises(transitions.TransitionError):
        edge(transitions.topic_lock(topic.pk), now)
    topic.refresh_from_db()
    assert (topic.status, topic.event_seq) == (S.CREATED, 0)


def test_opening_twice_raises_and_round_advance_outside_a_debate_is_a_no_op(make_topic, now):
    topic = make_topic()
    with transaction.atomic():
        locked = transitions.topic_lock(topic.pk)
        transitions.topic_open_signup(locked, now=now)
        with pytest.raises(transitions.TransitionError, match="signup_open → signup_open"):
            transitions.topic_open_signup(locked, now=now)
        assert transitions.topic_advance_round(locked, now=now + timedelta(days=1)) is False


def test_a_stale_topic_object_cannot_write(make_topic, now):
    """The conditional UPDATE: the guard that holds even where row locks do not (SQLite)."""
    topic = make_topic()
    first, second = (Topic.objects.get(pk=topic.pk) for _ in range(2))
    with transaction.atomic():
        transitions.topic_open_signup(first, now=now)
    with pytest.raises(transitions.StaleTopic), transaction.atomic():
        transitions.topic_open_signup(second, now=now)
    assert len(events(topic)) == 1
