"""The per-process poller and its listeners, without a server.

Most scenarios run the real ``Broker`` against an in-memory event log (its
two database reads replaced), which lets a test stop a poll half-way and
commit in between. The reads themselves, and the case that motivates
per-topic cursors (commits out of id order across topics), run on the
real database.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from django.db import connection, transaction

from devtools.seeding import ensure_winner_schema
from topics import broker as broker_module
from topics import event_feed, rules, transitions
from topics.broker import Broker
from topics.event_feed import StreamEvent
from topics.models import EventKind, TopicEvent

A = uuid.UUID("00000000-0000-0000-0000-00000000000a")
B = uuid.UUID("00000000-0000-0000-0000-00000000000b")


def event(topic_id: uuid.UUID, seq: int, *, terminal: bool = False) -> StreamEvent:
    return StreamEvent(topic_id, seq, terminal, b"id: %d\n\n" % seq)


class FakeLog:
    """What the database shows: committed events per topic. Reads come from worker threads, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[uuid.UUID, list[StreamEvent]] = {}
        self.poll_calls = 0
        self.backlog_calls = 0
        # Set to make the next poll wait (after taking its snapshot) until released.
        self.hold_poll: threading.Event | None = None
        self.poll_waiting = threading.Event()
        self.fail_polls = 0
        # Access as the database would report it: topics gone private, tokens revoked.
        self.private: set[uuid.UUID] = set()
        self.dead_tokens: set[int] = set()
        self.fail_access = 0
        self.access_calls = 0

    def commit(self, topic_id: uuid.UUID, count: int = 1, *, terminal: bool = False) -> None:
        with self._lock:
            log = self._events.setdefault(topic_id, [])
            for i in range(count):
                last = terminal and i == count - 1
                log.append(event(topic_id, len(log) + 1, terminal=last))

    def read_new(self, cursors: dict[uuid.UUID, int], *, limit: int) -> tuple[list[StreamEvent], bool]:
        with self._lock:
            self.poll_calls += 1
            if self.fail_polls:
                self.fail_polls -= 1
                raise RuntimeError("database went away")
            rows = [e for tid in sorted(cursors) for e in self._events.get(tid, []) if e.seq > cursors[tid]]
        if self.hold_poll is not None:
            hold, self.hold_poll = self.hold_poll, None
            self.poll_waiting.set()
            hold.wait(5)
        return rows[:limit], len(rows) >= limit

    def read_from(self, topic_id: uuid.UUID, *, after: int, limit: int) -> list[StreamEvent]:
        with self._lock:
            self.backlog_calls += 1
            return [e for e in self._events.get(topic_id, []) if e.seq > after][:limit]

    def read_access(self, *, anonymous_topics: set[uuid.UUID], token_ids: set[int]) -> tuple[set, set]:
        with self._lock:
            self.access_calls += 1
            if self.fail_access:
                self.fail_access -= 1
                raise RuntimeError("database went away")
            return anonymous_topics - self.private, token_ids - self.dead_tokens


def fake_broker(log: FakeLog, *, batch_size: int = 100, **options) -> Broker:
    return Broker(
        poll_interval=0.01,
        batch_size=batch_size,
        read_new=log.read_new,
        read_from=log.read_from,
        read_access=log.read_access,
        **options,
    )


async def take(events: AsyncIterator[StreamEvent | None], count: int, *, timeout: float = 5) -> list[int]:
    """The next ``count`` event seqs (heartbeats skipped)."""
    seqs: list[int] = []
    async with asyncio.timeout(timeout):
        while len(seqs) < count:
            item = await anext(events)
            if item is not None:
                seqs.append(item.seq)
    return seqs


async def until(condition, *, timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.fixture
def long_heartbeat(settings):
    settings.SSE_HEARTBEAT_INTERVAL = timedelta(seconds=60)


def test_backlog_then_live_events_once_each_until_the_terminal_event(long_heartbeat):
    log = FakeLog()
    log.commit(A, 3)

    async def scenario() -> list[int]:
        broker = fake_broker(log)
        # known_seq=0: the poller also hands over 1..3, which the backlog already sent.
        events = broker.events(A, after=0, known_seq=0)
        seqs = await take(events, 3)
        await until(lambda: broker.stats()["events_dispatched"] >= 3)
        log.commit(A, 2)
        seqs += await take(events, 2)
        log.commit(A, 1, terminal=True)
        seqs += await take(events, 1)
        with pytest.raises(StopAsyncIteration):
            await anext(events)
        assert broker.stats()["listeners"] == 0
        return seqs

    assert asyncio.run(scenario()) == [1, 2, 3, 4, 5, 6]


def test_resume_point_skips_what_the_client_has(long_heartbeat):
    log = FakeLog()
    log.commit(A, 5)

    async def scenario() -> list[int]:
        events = fake_broker(log).events(A, after=3, known_seq=5)
        seqs = await take(events, 2)
        log.commit(A, 1)
        seqs += await take(events, 1)
        await events.aclose()
        return seqs

    assert asyncio.run(scenario()) == [4, 5, 6]


def test_joining_while_a_poll_is_in_flight_neither_duplicates_nor_drops(long_heartbeat):
    log = FakeLog()
    log.commit(A, 2)

    async def scenario() -> tuple[list[int], list[int]]:
        broker = fake_broker(log)
        first = broker.events(A, after=0, known_seq=2)
        first_seqs = await take(first, 2)
        # The next poll takes its snapshot (3 is committed) and stalls before handing over.
        log.hold_poll = release = threading.Event()
        log.commit(A, 1)
        await until(log.poll_waiting.is_set)
        # Meanwhile a second listener joins from the start; its backlog already has 3.
        second = broker.events(A, after=0, known_seq=3)
        second_seqs = await take(second, 3)
        release.set()
        first_seqs += await take(first, 1)
        log.commit(A, 1)
        first_seqs += await take(first, 1)
        second_seqs += await take(second, 1)
        await first.aclose()
        await second.aclose()
        return first_seqs, second_seqs

    first_seqs, second_seqs = asyncio.run(scenario())
    assert first_seqs == [1, 2, 3, 4]
    assert second_seqs == [1, 2, 3, 4]


def test_dispatch_advances_a_cursor_only_by_the_next_seq():
    async def scenario() -> None:
        broker = fake_broker(FakeLog())
        listener = broker.subscribe(A, known_seq=5)
        broker.dispatch([event(A, 7), event(A, 8)])
        assert listener.queue.empty(), "7 does not follow 5: left for the next poll to read again"
        broker.dispatch([event(A, 5), event(A, 6), event(A, 7), event(B, 1)])
        assert [listener.queue.get_nowait().seq for _ in range(2)] == [6, 7]
        assert listener.queue.empty()
        broker.unsubscribe(listener)

    asyncio.run(scenario())


def test_a_listener_that_stops_reading_catches_up_from_the_database(monkeypatch, long_heartbeat):
    monkeypatch.setattr(broker_module, "LISTENER_QUEUE_SIZE", 2)
    log = FakeLog()
    log.commit(A, 1)

    async def scenario() -> list[int]:
        broker = fake_broker(log)
        events = broker.events(A, after=0, known_seq=1)
        seqs = await take(events, 1)
        # The listener is parked at its yield while ten events arrive: its queue of two overflows.
        log.commit(A, 10)
        await until(lambda: broker.stats()["events_dispatched"] >= 10)
        backlog_reads = log.backlog_calls
        seqs += await take(events, 10)
        assert log.backlog_calls > backlog_reads, "the overflow was answered from the database"
        await events.aclose()
        return seqs

    assert asyncio.run(scenario()) == list(range(1, 12))


def test_heartbeat_when_nothing_happens(settings):
    settings.SSE_HEARTBEAT_INTERVAL = timedelta(milliseconds=50)
    log = FakeLog()

    async def scenario() -> None:
        events = fake_broker(log).events(A, after=0, known_seq=0)
        async with asyncio.timeout(5):
            assert await anext(events) is None
            assert await anext(events) is None
        await events.aclose()

    asyncio.run(scenario())


def test_leaving_unsubscribes_at_once_and_the_poller_stops(long_heartbeat):
    log = FakeLog()
    log.commit(A, 1)

    async def scenario() -> None:
        broker = fake_broker(log)
        one = broker.events(A, after=0, known_seq=1)
        two = broker.events(B, after=0, known_seq=0)
        await take(one, 1)
        log.commit(B, 1)
        await take(two, 1)
        assert (broker.stats()["listeners"], broker.stats()["topics"]) == (2, 2)
        await one.aclose()
        assert (broker.stats()["listeners"], broker.stats()["topics"]) == (1, 1)
        await two.aclose()
        assert (broker.stats()["listeners"], broker.stats()["topics"]) == (0, 0)
        polls = log.poll_calls
        await asyncio.sleep(0.1)
        assert log.poll_calls <= polls + 1, "the poller ends once nobody listens"
        # ...and starts again with the next listener.
        three = broker.events(A, after=1, known_seq=1)
        log.commit(A, 1)
        assert await take(three, 1) == [2]
        await three.aclose()

    asyncio.run(scenario())


def test_a_failing_poll_is_logged_and_retried(caplog, long_heartbeat):
    log = FakeLog()
    log.fail_polls = 2

    async def scenario() -> list[int]:
        broker = fake_broker(log)
        events = broker.events(A, after=0, known_seq=0)
        first = asyncio.ensure_future(take(events, 1))
        await until(lambda: log.poll_calls >= 3)
        log.commit(A, 1)
        seqs = await first
        await events.aclose()
        return seqs

    assert asyncio.run(scenario()) == [1]
    assert "SSE poll failed" in caplog.text


def test_frames_are_one_line_of_json_and_terminal_events_are_recognised():
    frame = event_feed.encode_frame(7, "argument_posted", {"content": "line one\nline two\r\n\u2028é"})
    assert frame.decode() == ('id: 7\nevent: argument_posted\ndata: {"content":"line one\\nline two\\r\\n\u2028é"}\n\n')
    # A lone surrogate cannot be UTF-8; the escaped form is the same JSON value.
    assert event_feed.encode_frame(1, "argument_posted", {"c": "\ud800"}) == (
        b'id: 1\nevent: argument_posted\ndata: {"c":"\\ud800"}\n\n'
    )
    assert rules.ends_stream("topic_cancelled", {"reason": "x"})
    assert rules.ends_stream("status_changed", {"from": "judging", "to": "completed"})
    assert not rules.ends_stream("status_changed", {"from": "signup_open", "to": "cancelled"})
    assert not rules.ends_stream("verdict_posted", {"to": "completed"})


# --- the real database ----------------------------------------------------------


def _events(topic, count: int, start: int = 1, **data) -> None:
    TopicEvent.objects.bulk_create(
        TopicEvent(topic=topic, seq=seq, kind=EventKind.ARGUMENT_POSTED, data={"n": seq, **data})
        for seq in range(start, start + count)
    )


def test_one_query_reads_every_watched_topic_from_its_own_cursor(make_topic, django_assert_num_queries):
    a, b, c = make_topic(), make_topic(), make_topic()
    _events(a, 3)
    _events(b, 2)
    _events(c, 4)
    with django_assert_num_queries(1):
        events, full = event_feed.read_new_events({a.pk: 1, b.pk: 0, c.pk: 4}, limit=100)
    assert not full
    # Grouped by topic (in the database's UUID order, which need not be Python's), seq order within.
    assert sorted((e.topic_id, e.seq) for e in events) == sorted([(a.pk, 2), (a.pk, 3), (b.pk, 1), (b.pk, 2)])
    topic_order = [e.topic_id for e in events]
    assert topic_order in ([a.pk, a.pk, b.pk, b.pk], [b.pk, b.pk, a.pk, a.pk])
    assert [e.seq for e in events if e.topic_id == a.pk] == [2, 3]
    assert events[0].frame.startswith(b"id: %d\nevent: argument_posted\ndata: {" % events[0].seq)

    events, full = event_feed.read_new_events({a.pk: 0, b.pk: 0, c.pk: 0}, limit=4)
    assert full and len(events) == 4


def test_many_topics_are_read_in_slices(make_topic, monkeypatch, django_assert_num_queries):
    monkeypatch.setattr(event_feed, "TOPICS_PER_QUERY", 2)
    topics = [make_topic() for _ in range(5)]
    for topic in topics:
        _events(topic, 1)
    with django_assert_num_queries(3):
        events, _ = event_feed.read_new_events({t.pk: 0 for t in topics}, limit=100)
    assert sorted(e.topic_id for e in events) == sorted(t.pk for t in topics)


def test_backlog_reads_one_topic_in_seq_order(make_topic):
    topic, other = make_topic(), make_topic()
    _events(topic, 5)
    _events(other, 5)
    assert [e.seq for e in event_feed.read_backlog(topic.pk, after=2, limit=2)] == [3, 4]
    assert {e.topic_id for e in event_feed.read_backlog(topic.pk, after=0, limit=10)} == {topic.pk}


@pytest.mark.django_db(transaction=True)
def test_database_load_does_not_grow_with_listeners(make_topic, long_heartbeat):
    ensure_winner_schema()
    topics = [make_topic(), make_topic()]

    async def scenario(listeners: int) -> dict[str, int]:
        broker = Broker(poll_interval=0.02, batch_size=100)
        streams = [broker.events(topics[i % 2].pk, after=0, known_seq=0) for i in range(listeners)]
        pending = [asyncio.ensure_future(anext(s)) for s in streams]
        await until(lambda: broker.polls >= 30)
        stats = broker.stats()
        # Cancelling the waits is what a disconnect does to a stream: each one unsubscribes.
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        assert broker.stats()["listeners"] == 0
        return stats

    few, many = asyncio.run(scenario(2)), asyncio.run(scenario(50))
    assert (few["listeners"], few["topics"], many["listeners"], many["topics"]) == (2, 2, 50, 2)
    # One statement per poll however many listen (plus, on MySQL, a few setup statements when the
    # poller connects); the backlog costs the same per listener, once, when it joins.
    setup = few["poll_queries"] - few["polls"]
    assert many["poll_queries"] - many["polls"] == setup <= 5, (few, many)
    # The access re-check: one statement per poll for all the (anonymous) listeners.
    for stats in (few, many):
        assert abs(stats["access_queries"] - stats["polls"]) <= 1, stats
    assert 1 <= many["backlog_queries"] / 50 <= few["backlog_queries"] / 2, (few, many)


@pytest.mark.mariadb
@pytest.mark.django_db(transaction=True)
def test_events_committed_out_of_id_order_across_topics_are_not_skipped(make_topic, long_heartbeat):
    """A late commit on topic A gets a lower id than an earlier commit on topic B: a global cursor would skip it."""
    ensure_winner_schema()
    topic_a, topic_b = make_topic(), make_topic()
    inserted, release = threading.Event(), threading.Event()

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                transitions.topic_append_events(
                    transitions.topic_lock(topic_a.pk), [(EventKind.ARGUMENT_POSTED, {"w": "a"})]
                )
                inserted.set()
                release.wait(10)
        finally:
            connection.close()

    async def scenario() -> tuple[list[int], list[int]]:
        broker = Broker(poll_interval=0.02, batch_size=100)
        on_a = broker.events(topic_a.pk, after=0, known_seq=0)
        on_b = broker.events(topic_b.pk, after=0, known_seq=0)
        a_first = asyncio.ensure_future(take(on_a, 1))
        b_first = asyncio.ensure_future(take(on_b, 1))
        writer = threading.Thread(target=slow_writer)
        writer.start()
        await asyncio.to_thread(inserted.wait, 10)

        def fast_writer() -> None:
            try:
                with transaction.atomic():
                    transitions.topic_append_events(
                        transitions.topic_lock(topic_b.pk), [(EventKind.ARGUMENT_POSTED, {"w": "b"})]
                    )
            finally:
                connection.close()

        await asyncio.to_thread(fast_writer)
        b_seqs = await b_first
        polls = broker.polls
        await until(lambda: broker.polls >= polls + 2)  # the poller has moved past B's event
        release.set()
        await asyncio.to_thread(writer.join, 10)
        a_seqs = await a_first
        await on_a.aclose()
        await on_b.aclose()
        return a_seqs, b_seqs

    assert asyncio.run(scenario()) == ([1], [1])
    id_a = TopicEvent.objects.get(topic=topic_a).pk
    id_b = TopicEvent.objects.get(topic=topic_b).pk
    assert id_a < id_b, "the scenario must commit the lower id last"


# --- access, lifetime, admission ----------------------------------------------------


async def drain(events: AsyncIterator[StreamEvent | None], *, timeout: float = 5) -> list[int]:
    """Every event seq until the stream ends by itself."""
    seqs: list[int] = []
    async with asyncio.timeout(timeout):
        async for item in events:
            if item is not None:
                seqs.append(item.seq)
    return seqs


def test_anonymous_listeners_of_a_topic_gone_private_end_before_its_next_event(long_heartbeat):
    log = FakeLog()
    log.commit(A, 1)
    log.commit(B, 1)

    async def scenario() -> tuple[list[int], list[int], list[int]]:
        broker = fake_broker(log)
        anonymous = broker.events(A, after=0, known_seq=0)
        with_token = broker.events(A, after=0, known_seq=0, token_id=7)
        elsewhere = broker.events(B, after=0, known_seq=0)
        assert await take(anonymous, 1) == [1]
        assert await take(with_token, 1) == [1]
        assert await take(elsewhere, 1) == [1]
        # The same poll that reads A's next event sees A private: that event must not reach anonymous.
        log.private.add(A)
        log.commit(A, 1)
        ended = await drain(anonymous)
        token_seqs = await take(with_token, 1)
        log.commit(B, 1)
        other_seqs = await take(elsewhere, 1)
        assert broker.stats()["ended_for_access"] == 1
        await with_token.aclose()
        await elsewhere.aclose()
        return ended, token_seqs, other_seqs

    assert asyncio.run(scenario()) == ([], [2], [2])


def test_the_streams_of_a_dead_token_end_and_others_carry_on(long_heartbeat):
    log = FakeLog()
    log.commit(A, 1)

    async def scenario() -> tuple[list[int], list[int], list[int]]:
        broker = fake_broker(log)
        revoked = [broker.events(A, after=0, known_seq=0, token_id=1) for _ in range(2)]
        kept = broker.events(A, after=0, known_seq=0, token_id=2)
        for stream in (*revoked, kept):
            assert await take(stream, 1) == [1]
        log.dead_tokens.add(1)
        log.commit(A, 1)
        ended = [await drain(stream) for stream in revoked]
        kept_seqs = await take(kept, 1)
        assert broker.stats()["listeners"] == 1
        await kept.aclose()
        return ended[0], ended[1], kept_seqs

    assert asyncio.run(scenario()) == ([], [], [2])


def test_when_access_cannot_be_read_no_event_is_handed_out_until_it_can(long_heartbeat):
    log = FakeLog()

    async def scenario() -> list[int]:
        broker = fake_broker(log)
        stream = broker.events(A, after=0, known_seq=0)
        waiting = asyncio.ensure_future(take(stream, 1))
        await until(lambda: broker.polls >= 1)
        log.fail_access = 3
        log.commit(A, 1)
        await until(lambda: log.fail_access == 0)
        seqs = await waiting  # delivered once the re-check succeeds, exactly once
        await stream.aclose()
        return seqs

    assert asyncio.run(scenario()) == [1]


def test_a_stream_ends_after_its_lifetime_and_a_heartbeat_does_not_extend_it(settings):
    settings.SSE_HEARTBEAT_INTERVAL = timedelta(milliseconds=50)
    log = FakeLog()

    async def scenario() -> tuple[float, int]:
        broker = fake_broker(log, max_lifetime=0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        heartbeats = 0
        async with asyncio.timeout(5):
            async for item in broker.events(A, after=0, known_seq=0):
                heartbeats += item is None
        return loop.time() - started, heartbeats

    lived, heartbeats = asyncio.run(scenario())
    assert 0.3 <= lived < 1.0, lived
    assert heartbeats >= 3


def test_admission_stops_at_max_streams_and_a_released_slot_is_free_again():
    broker = fake_broker(FakeLog(), max_streams=2)
    first, second = broker.admit(), broker.admit()
    assert first is not None and second is not None
    assert broker.admit() is None
    first.release()
    first.release()  # idempotent: a slot is returned once
    assert broker.stats()["open_streams"] == 1
    assert broker.admit() is not None
    assert broker.admit() is None
