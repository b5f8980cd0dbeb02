"""Per-process fan-out of TopicEvents to live SSE listeners.

One ``Broker`` per server process runs one poller task while anyone
listens. Every ``SSE_POLL_INTERVAL`` it reads the new events of *all*
topics with listeners in one query (per ``TOPICS_PER_QUERY`` topics,
``topics.event_feed``) and puts them, already encoded, on every listener's
queue. Database load depends on the number of watched topics and the poll
interval, never on the number of listeners.

A listener subscribes first and reads its backlog from the database
second; anything the poller hands over meanwhile is deduplicated by seq.
Whenever the live feed does not continue exactly where the listener is
(its queue overflowed, or it joined a topic the poller was mid-way
through), the listener reads the missing events from the database itself.
docs/sse.md has the full argument.

A broker serves one event log, keyed by UUID: ``broker()`` the topics'
(the parameters say ``topic_id``, the first and most common key), and
``agent_broker()`` the agents' (``/api/agents/me/events/``), whose
listeners carry the token that opened them: with ``read_live_tokens``, each
poll also asks which of those tokens are still live, and ends the streams of
the ones that are not before handing out what it read.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings

from topics.db_threads import DbCounter, close_connection, keep_connection, tidy_connections
from topics.event_feed import StreamEvent, read_agent_backlog, read_backlog, read_new_agent_events, read_new_events
from topics.tokens import tokens_live

logger = logging.getLogger("topics.broker")

# Events a listener may have waiting before it is told to catch up from the
# database instead: a client that stops reading must not pin memory.
LISTENER_QUEUE_SIZE = 1000


class _Resync:
    """Queue marker: the live feed broke off for this listener; read the database from the last seq sent."""

    def __repr__(self) -> str:
        return "RESYNC"


class _End:
    """Queue marker: the listener lost access (its token was revoked); end the stream."""

    def __repr__(self) -> str:
        return "END"


RESYNC = _Resync()
END = _End()
QueueItem = StreamEvent | _Resync | _End


class Listener:
    __slots__ = ("ended", "queue", "token_id", "topic_id")

    def __init__(self, topic_id: uuid.UUID, token_id: int | None = None) -> None:
        self.topic_id = topic_id
        # The token that opened the stream, re-checked by the poller when it has ``read_live_tokens``.
        self.token_id = token_id
        self.ended = False
        self.queue: asyncio.Queue[QueueItem] = asyncio.Queue(maxsize=LISTENER_QUEUE_SIZE)

    def end(self) -> None:
        self.ended = True
        # Whatever is queued was for a reader that may no longer see it; the marker always fits.
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(END)


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
        read_live_tokens: Callable[[set[int]], set[int]] | None = None,
    ) -> None:
        """``read_new``, ``read_from`` and ``read_live_tokens`` are the database reads (tests replace them)."""
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
        self._live_tokens = (
            None
            if read_live_tokens is None
            else sync_to_async(
                keep_connection(self.db.counted(read_live_tokens, "access")),
                thread_sensitive=False,
                executor=poller_thread,
            )
        )
        self._release_connection = sync_to_async(close_connection, thread_sensitive=False, executor=poller_thread)
        self._backlog = sync_to_async(tidy_connections(self.db.counted(read_from, "backlog")), thread_sensitive=False)

    # --- listeners ----------------------------------------------------------

    def subscribe(self, topic_id: uuid.UUID, *, known_seq: int, token_id: int | None = None) -> Listener:
        """Start receiving ``topic_id``'s live events.

        ``known_seq`` is a seq read from the database (the topic's
        ``event_seq``), used as the cursor when nobody watches the topic yet.
        """
        listener = Listener(topic_id, token_id)
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
        self, topic_id: uuid.UUID, *, after: int, known_seq: int, live: bool = True, token_id: int | None = None
    ) -> AsyncIterator[StreamEvent | None]:
        """Every event of ``topic_id`` after ``after``, in seq order, none twice, ending with the terminal event.

        Yields ``None`` after ``SSE_HEARTBEAT_INTERVAL`` without events so the
        caller can send a keepalive. Closing the iterator (the client went
        away) unsubscribes at once. With ``live=False`` (the topic had
        already finished) only the database is read. It also ends when the
        poller finds ``token_id`` no longer live.
        """
        if not live:
            async for event in self._read_from(topic_id, after=after):
                yield event
            return
        heartbeat = settings.SSE_HEARTBEAT_INTERVAL.total_seconds()
        listener = self.subscribe(topic_id, known_seq=known_seq, token_id=token_id)
        try:
            last = after
            behind = True  # the backlog is read after subscribing, so nothing falls between the two
            while True:
                if behind:
                    async for event in self._read_from(topic_id, after=last):
                        if listener.ended:
                            return
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
                if isinstance(item, _End):
                    return
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
                # Before the events are handed out: nothing read after a revocation reaches its streams.
                if await self._end_revoked():
                    self.dispatch(events)
                # else the cursors stay put: the next poll reads the same events and checks again
                if not full:
                    await asyncio.sleep(self.poll_interval)
            # An idle connection would only be timed out by the server and fail the next poll.
            await self._release_connection()
            if not self._feeds:  # nobody joined while the connection closed
                return

    async def _end_revoked(self) -> bool:
        """End the listeners whose token is no longer live; False when that could not be read."""
        if self._live_tokens is None:
            return True
        asked = {listener.token_id for feed in self._feeds.values() for listener in feed.listeners}
        asked.discard(None)
        if not asked:
            return True
        try:
            live = await self._live_tokens(asked)
        except Exception:
            logger.exception("stream token re-check failed; holding this poll's events until it succeeds")
            return False
        # Only what was asked about is judged: a listener that joined meanwhile was checked when it opened.
        dead = asked - live
        for feed in list(self._feeds.values()):
            for listener in list(feed.listeners):
                if listener.token_id in dead:
                    listener.end()
                    self.unsubscribe(listener)
        return True

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
            "access_queries": self.db.access,
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
_agent_broker: Broker | None = None


def broker() -> Broker:
    """This process's broker, created on first use from the settings."""
    global _broker
    if _broker is None:
        _broker = Broker(
            poll_interval=settings.SSE_POLL_INTERVAL.total_seconds(),
            batch_size=settings.SSE_BATCH_SIZE,
        )
    return _broker


def agent_broker() -> Broker:
    """This process's broker of agents' events, created on first use from the settings."""
    global _agent_broker
    if _agent_broker is None:
        _agent_broker = Broker(
            poll_interval=settings.SSE_POLL_INTERVAL.total_seconds(),
            batch_size=settings.SSE_BATCH_SIZE,
            read_new=read_new_agent_events,
            read_from=read_agent_backlog,
            read_live_tokens=tokens_live,
        )
    return _agent_broker
