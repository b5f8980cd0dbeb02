"""Per-process fan-out of TopicEvents to live SSE listeners.

The database is the bus. ``orchestrator.transitions`` appends every
TopicEvent with a per-topic, gap-free ``seq`` assigned under the topic's row
lock, so within one topic commit order is seq order. That makes the seq a
safe cursor: once seq N is visible, every seq below it is too. Across topics
commits interleave freely, which is why each topic keeps its own cursor and
there is no global one (an auto-increment id would skip rows that commit
late).

One ``Broker`` per server process runs one poller task while anyone
listens. Every ``SSE_POLL_INTERVAL`` it reads the new events of *all*
topics with listeners in one query (per ``TOPICS_PER_QUERY`` topics) and
puts them, already encoded, on every listener's queue. Database load
depends on the number of watched topics and the poll interval, never on
the number of listeners.

A listener subscribes first and reads its backlog from the database
second; anything the poller hands over meanwhile is deduplicated by seq.
Whenever the live feed does not continue exactly where the listener is
(its queue overflowed, or it joined a topic the poller was mid-way
through), the listener reads the missing events from the database itself.
docs/sse.md has the full argument.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import or_
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections, connection
from django.db.models import Q

from topics.models import EventKind, TopicEvent, TopicStatus

logger = logging.getLogger("topics.stream")

T = TypeVar("T")

# SQLite refuses expressions nested more than 1000 deep and each OR adds a
# level, so a poll reads the watched topics in slices of this many.
TOPICS_PER_QUERY = 200
# Events a listener may have waiting before it is told to catch up from the
# database instead: a client that stops reading must not pin memory.
LISTENER_QUEUE_SIZE = 1000
# Sent first on every stream: how long EventSource waits before reconnecting.
RETRY_FRAME = b"retry: 3000\n\n"
KEEPALIVE_FRAME = b": keepalive\n\n"


@dataclass(frozen=True, slots=True)
class StreamEvent:
    topic_id: uuid.UUID
    seq: int
    terminal: bool
    frame: bytes


def is_terminal(kind: str, data: Any) -> bool:
    """The last event a topic ever gets: completion, or the ``topic_cancelled`` that closes a cancellation."""
    if kind == EventKind.TOPIC_CANCELLED:
        return True
    return kind == EventKind.STATUS_CHANGED and isinstance(data, dict) and data.get("to") == TopicStatus.COMPLETED


def encode_frame(seq: int, kind: str, data: Any) -> bytes:
    payload = json.dumps(data, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False)
    try:
        encoded = payload.encode()
    except UnicodeEncodeError:
        # A lone surrogate survived into the JSON; escaped ASCII is still the same JSON value.
        encoded = json.dumps(data, cls=DjangoJSONEncoder, separators=(",", ":")).encode()
    # json.dumps escapes CR and LF inside strings, so the payload is one line as SSE needs.
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, kind.encode(), encoded)


def _to_events(rows: Iterable[tuple[uuid.UUID, int, str, Any]]) -> list[StreamEvent]:
    return [
        StreamEvent(tid, seq, is_terminal(kind, data), encode_frame(seq, kind, data)) for tid, seq, kind, data in rows
    ]


@dataclass
class DbCounter:
    """What the stream machinery asks of the database: statements per read, and new connections."""

    poll: int = 0
    backlog: int = 0
    connects: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, kind: str) -> None:
        with self._lock:
            setattr(self, kind, getattr(self, kind) + 1)

    def counted(self, fn: Callable[..., T], kind: str) -> Callable[..., T]:
        """``fn`` with its statements counted as ``kind`` (a new connection's setup statements included)."""

        def count_statement(execute, sql, params, many, context):
            self.add(kind)
            return execute(sql, params, many, context)

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> T:
            connected = connection.connection is not None
            try:
                with connection.execute_wrapper(count_statement):
                    return fn(*args, **kwargs)
            finally:
                if not connected and connection.connection is not None:
                    self.add("connects")

        return call


def tidy_connections(fn: Callable[..., T]) -> Callable[..., T]:
    """Wrap ``fn`` for a shared worker thread: stale connections dropped before, closed (per CONN_MAX_AGE) after.

    The threads outlive any request, so nothing else would ever close their connections.
    """

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> T:
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return call


def keep_connection(fn: Callable[..., T]) -> Callable[..., T]:
    """Wrap ``fn`` for the poller's own thread: one connection kept between polls, renewed after an error.

    With the default CONN_MAX_AGE=0, closing after every poll would mean a
    new connection (and its setup statements) twice a second, per process.
    """

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except Exception:
            connection.close()
            raise

    return call


def _close_connection() -> None:
    connection.close()


def read_new_events(cursors: dict[uuid.UUID, int], *, limit: int) -> tuple[list[StreamEvent], bool]:
    """Events after each topic's cursor, ordered by topic then seq; and whether any slice hit ``limit``."""
    events: list[StreamEvent] = []
    full = False
    items = sorted(cursors.items())
    for start in range(0, len(items), TOPICS_PER_QUERY):
        chunk = items[start : start + TOPICS_PER_QUERY]
        # Served by the (topic, seq) unique index: one range per topic, already in order.
        where = functools.reduce(or_, (Q(topic_id=tid, seq__gt=seq) for tid, seq in chunk))
        rows = list(
            TopicEvent.objects.filter(where)
            .order_by("topic_id", "seq")
            .values_list("topic_id", "seq", "kind", "data")[:limit]
        )
        full = full or len(rows) == limit
        events.extend(_to_events(rows))
    return events, full


def read_backlog(topic_id: uuid.UUID, *, after: int, limit: int) -> list[StreamEvent]:
    rows = (
        TopicEvent.objects.filter(topic_id=topic_id, seq__gt=after)
        .order_by("seq")
        .values_list("topic_id", "seq", "kind", "data")[:limit]
    )
    return _to_events(rows)


class _Resync:
    """Queue marker: the live feed broke off for this listener; read the database from the last seq sent."""

    def __repr__(self) -> str:
        return "RESYNC"


RESYNC = _Resync()
QueueItem = StreamEvent | _Resync


class Listener:
    __slots__ = ("queue", "topic_id")

    def __init__(self, topic_id: uuid.UUID) -> None:
        self.topic_id = topic_id
        self.queue: asyncio.Queue[QueueItem] = asyncio.Queue(maxsize=LISTENER_QUEUE_SIZE)


@dataclass
class _Feed:
    cursor: int
    listeners: set[Listener] = field(default_factory=set)


class Broker:
    """One per process: the poller task and the listeners it feeds. Used from the event loop's thread only."""

    def __init__(
        self,
        *,
        poll_interval: float,
        batch_size: int,
        read_new: Callable[..., tuple[list[StreamEvent], bool]] = read_new_events,
        read_from: Callable[..., list[StreamEvent]] = read_backlog,
    ) -> None:
        """``read_new`` and ``read_from`` are the two database reads (tests replace them with an in-memory log)."""
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.db = DbCounter()
        self.polls = 0
        self.events_dispatched = 0
        self._feeds: dict[uuid.UUID, _Feed] = {}
        self._task: asyncio.Task | None = None
        # The poller's own thread keeps its connection while anyone listens, and its polls
        # never queue behind backlog reads in the shared pool.
        poller_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sse-poller")
        self._poll = sync_to_async(
            keep_connection(self.db.counted(read_new, "poll")), thread_sensitive=False, executor=poller_thread
        )
        self._release_connection = sync_to_async(_close_connection, thread_sensitive=False, executor=poller_thread)
        self._backlog = sync_to_async(tidy_connections(self.db.counted(read_from, "backlog")), thread_sensitive=False)

    # --- listeners ----------------------------------------------------------

    def subscribe(self, topic_id: uuid.UUID, *, known_seq: int) -> Listener:
        """Start receiving ``topic_id``'s live events.

        ``known_seq`` is a seq read from the database (the topic's
        ``event_seq``), used as the cursor when nobody watches the topic yet.
        """
        listener = Listener(topic_id)
        feed = self._feeds.get(topic_id)
        if feed is None:
            feed = self._feeds[topic_id] = _Feed(cursor=known_seq)
        feed.listeners.add(listener)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sse-poller")
        return listener

    def unsubscribe(self, listener: Listener) -> None:
        feed = self._feeds.get(listener.topic_id)
        if feed is None:
            return
        feed.listeners.discard(listener)
        if not feed.listeners:
            del self._feeds[listener.topic_id]

    async def events(
        self, topic_id: uuid.UUID, *, after: int, known_seq: int, live: bool = True
    ) -> AsyncIterator[StreamEvent | None]:
        """Every event of ``topic_id`` after ``after``, in seq order, none twice, ending with the terminal event.

        Yields ``None`` after ``SSE_HEARTBEAT_INTERVAL`` without events so the
        caller can send a keepalive. Closing the iterator (the client went
        away) unsubscribes at once. With ``live=False`` (the topic had
        already finished) only the database is read.
        """
        if not live:
            async for event in self._read_from(topic_id, after=after):
                yield event
            return
        heartbeat = settings.SSE_HEARTBEAT_INTERVAL.total_seconds()
        listener = self.subscribe(topic_id, known_seq=known_seq)
        try:
            last = after
            behind = True  # the backlog is read after subscribing, so nothing falls between the two
            while True:
                if behind:
                    async for event in self._read_from(topic_id, after=last):
                        yield event
                        last = event.seq
                        if event.terminal:
                            return
                    behind = False
                try:
                    async with asyncio.timeout(heartbeat):
                        item = await listener.queue.get()
                except TimeoutError:
                    yield None
                    continue
                if isinstance(item, _Resync) or item.seq > last + 1:
                    behind = True
                elif item.seq == last + 1:
                    yield item
                    last = item.seq
                    if item.terminal:
                        return
                # item.seq <= last: already sent from the backlog
        finally:
            self.unsubscribe(listener)

    async def _read_from(self, topic_id: uuid.UUID, *, after: int) -> AsyncIterator[StreamEvent]:
        """Everything after ``after`` that is committed now, straight from the database, in batches."""
        while True:
            batch = await self._backlog(topic_id, after=after, limit=self.batch_size)
            for event in batch:
                yield event
            if len(batch) < self.batch_size:
                return
            after = batch[-1].seq

    # --- the poller ---------------------------------------------------------

    async def _run(self) -> None:
        # Runs while anyone listens; subscribe() starts a new one after it ends.
        while True:
            while self._feeds:
                cursors = {topic_id: feed.cursor for topic_id, feed in self._feeds.items()}
                try:
                    events, full = await self._poll(cursors, limit=self.batch_size)
                except Exception:
                    logger.exception("SSE poll failed; retrying in %.1fs", self.poll_interval)
                    events, full = [], False
                self.polls += 1
                self.dispatch(events)
                if not full:
                    await asyncio.sleep(self.poll_interval)
            # An idle connection would only be timed out by the server and fail the next poll.
            await self._release_connection()
            if not self._feeds:  # nobody joined while the connection closed
                return

    def dispatch(self, events: Iterable[StreamEvent]) -> None:
        """Hand events to the listeners of their topic, advancing each topic's cursor by exactly one seq at a time.

        An event that does not follow the cursor is left for the next poll to
        read again (the topic was re-subscribed with a different cursor while
        the query ran); the poller never creates a gap.
        """
        for event in events:
            feed = self._feeds.get(event.topic_id)
            if feed is None or event.seq != feed.cursor + 1:
                continue
            feed.cursor = event.seq
            self.events_dispatched += 1
            for listener in feed.listeners:
                _offer(listener, event)

    def stats(self) -> dict[str, int]:
        return {
            "listeners": sum(len(feed.listeners) for feed in self._feeds.values()),
            "topics": len(self._feeds),
            "polls": self.polls,
            "poll_queries": self.db.poll,
            "backlog_queries": self.db.backlog,
            "db_connects": self.db.connects,
            "events_dispatched": self.events_dispatched,
        }


def _offer(listener: Listener, event: StreamEvent) -> None:
    try:
        listener.queue.put_nowait(event)
    except asyncio.QueueFull:
        # Drop what is queued and let the listener re-read from its last seq;
        # the marker always fits in the emptied queue.
        while not listener.queue.empty():
            listener.queue.get_nowait()
        listener.queue.put_nowait(RESYNC)


_broker: Broker | None = None


def broker() -> Broker:
    """This process's broker, created on first use from the settings."""
    global _broker
    if _broker is None:
        _broker = Broker(
            poll_interval=settings.SSE_POLL_INTERVAL.total_seconds(),
            batch_size=settings.SSE_BATCH_SIZE,
        )
    return _broker
