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

Access is re-checked by the poller too, in the same way: once per poll it
reads, for all listeners at once, which watched topics anonymous callers
may still see and which of the listeners' tokens are still live
(``selectors.stream_access``), and ends the listeners that lost access
before it hands out the events it just read. A stream also ends after
``SSE_MAX_LIFETIME``, and a process admits at most ``SSE_MAX_STREAMS``.
docs/sse.md has the full argument.

A broker serves one event log, keyed by UUID: ``broker()`` the topics'
(the parameters say ``topic_id``, the first and most common key), and
``agent_broker()`` the agents' (``/api/agents/me/events/``, docs/webhooks.md).
The agent stream's listeners always carry the token that opened them, so the
same re-check ends them when that token dies. Both kinds of stream take their
place from ``broker()``'s admission: the cap is the process's, whichever log a
stream follows.
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
from topics.selectors import stream_access

logger = logging.getLogger("topics.broker")

# Events a listener may have waiting before it is told to catch up from the
# database instead: a client that stops reading must not pin memory.
LISTENER_QUEUE_SIZE = 1000


class _Resync:
    """Queue marker: the live feed broke off for this listener; read the database from the last seq sent."""

    def __repr__(self) -> str:
        return "RESYNC"


class _End:
    """Queue marker: the listener lost access (the topic went private, its token died); end the stream."""

    def __repr__(self) -> str:
        return "END"


RESYNC = _Resync()
END = _End()
QueueItem = StreamEvent | _Resync | _End


class Listener:
    __slots__ = ("ended", "queue", "token_id", "topic_id")

    def __init__(self, topic_id: uuid.UUID, token_id: int | None = None) -> None:
        self.topic_id = topic_id
        # The token that opened the stream; None for an anonymous caller, who sees public topics only.
        self.token_id = token_id
        self.ended = False
        self.queue: asyncio.Queue[QueueItem] = asyncio.Queue(maxsize=LISTENER_QUEUE_SIZE)

    def end(self) -> None:
        self.ended = True
        # Whatever is queued was for a reader that may no longer see it; the marker always fits.
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(END)


class Slot:
    """One of the process's ``max_streams`` places, held from admission until the stream ends; release is idempotent."""

    __slots__ = ("_broker", "_held")

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._broker.open_streams -= 1


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
        max_streams: int = 5000,
        max_lifetime: float = 3600.0,
        read_new: Callable[..., tuple[list[StreamEvent], bool]] = read_new_events,
        read_from: Callable[..., list[StreamEvent]] = read_backlog,
        read_access: Callable[..., tuple[set[uuid.UUID], set[int]]] = stream_access,
    ) -> None:
        """``read_new``, ``read_from`` and ``read_access`` are the database reads (tests replace them)."""
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.max_streams = max_streams
        self.max_lifetime = max_lifetime
        self.db = DbCounter()
        self.polls = 0
        self.events_dispatched = 0
        self.open_streams = 0
        self.ended_for_access = 0
        self._feeds: dict[uuid.UUID, _Feed] = {}
        self._task: asyncio.Task | None = None
        # The poller's own thread keeps its connection while anyone listens, and its polls
        # never queue behind backlog reads in the shared pool.
        poller_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sse-poller")
        self._poll = sync_to_async(
            keep_connection(self.db.counted(read_new, "poll")), thread_sensitive=False, executor=poller_thread
        )
        self._access = sync_to_async(
            keep_connection(self.db.counted(read_access, "access")), thread_sensitive=False, executor=poller_thread
        )
        self._release_connection = sync_to_async(close_connection, thread_sensitive=False, executor=poller_thread)
        self._backlog = sync_to_async(tidy_connections(self.db.counted(read_from, "backlog")), thread_sensitive=False)

    # --- admission ----------------------------------------------------------

    def admit(self) -> Slot | None:
        """A place for one more stream, or None when the process holds ``max_streams`` already."""
        if self.open_streams >= self.max_streams:
            return None
        self.open_streams += 1
        return Slot(self)

    # --- listeners ----------------------------------------------------------

    def subscribe(self, topic_id: uuid.UUID, *, known_seq: int, token_id: int | None = None) -> Listener:
        """Start receiving ``topic_id``'s live events.

        ``known_seq`` is a seq read from the database (the topic's
        ``event_seq``), used as the cursor when nobody watches the topic yet.
        ``token_id`` is the token that opened the stream (None: anonymous),
        whose liveness the poller re-checks.
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
        already finished) only the database is read. It also ends, early,
        when the poller finds the listener lost access, and after
        ``max_lifetime`` seconds (the client resumes with Last-Event-ID).
        """
        if not live:
            async for event in self._read_from(topic_id, after=after):
                yield event
            return
        heartbeat = settings.SSE_HEARTBEAT_INTERVAL.total_seconds()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_lifetime
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
                left = deadline - loop.time()
                if left <= 0 or listener.ended:
                    return
                try:
                    async with asyncio.timeout(min(heartbeat, left)):
                        item = await listener.queue.get()
                except TimeoutError:
                    if loop.time() < deadline:
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
                # Before the events are handed out: an event written after a topic went private
                # was read after the change, so the re-check that follows its read sees it.
                if await self._recheck_access():
                    self.dispatch(events)
                # else the cursors stay put: the next poll reads the same events and checks again
                if not full:
                    await asyncio.sleep(self.poll_interval)
            # An idle connection would only be timed out by the server and fail the next poll.
            await self._release_connection()
            if not self._feeds:  # nobody joined while the connection closed
                return

    async def _recheck_access(self) -> bool:
        """End the listeners that lost access; False when access could not be read (nothing may be handed out)."""
        anonymous_topics: set[uuid.UUID] = set()
        token_ids: set[int] = set()
        for topic_id, feed in self._feeds.items():
            for listener in feed.listeners:
                if listener.token_id is None:
                    anonymous_topics.add(topic_id)
                else:
                    token_ids.add(listener.token_id)
        try:
            visible, live = await self._access(anonymous_topics=anonymous_topics, token_ids=token_ids)
        except Exception:
            logger.exception("SSE access re-check failed; holding this poll's events until it succeeds")
            return False
        # Only what was asked about is judged: a listener that joined while the read ran was checked when it opened.
        self.end_without_access(hidden=anonymous_topics - visible, dead=token_ids - live)
        return True

    def end_without_access(self, *, hidden: set[uuid.UUID], dead: set[int]) -> None:
        """End the anonymous listeners of the ``hidden`` topics, and the listeners whose token is ``dead``."""
        for topic_id, feed in list(self._feeds.items()):
            for listener in list(feed.listeners):
                lost = topic_id in hidden if listener.token_id is None else listener.token_id in dead
                if lost:
                    listener.end()
                    self.ended_for_access += 1
                    self.unsubscribe(listener)

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
            "open_streams": self.open_streams,
            "ended_for_access": self.ended_for_access,
            "access_queries": self.db.access,
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
_agent_broker: Broker | None = None


def broker() -> Broker:
    """This process's broker, created on first use from the settings."""
    global _broker
    if _broker is None:
        _broker = Broker(
            poll_interval=settings.SSE_POLL_INTERVAL.total_seconds(),
            batch_size=settings.SSE_BATCH_SIZE,
            max_streams=settings.SSE_MAX_STREAMS,
            max_lifetime=settings.SSE_MAX_LIFETIME.total_seconds(),
        )
    return _broker


def agent_broker() -> Broker:
    """This process's broker of agents' events, created on first use from the settings.

    Streams are admitted by ``broker()`` (one cap per process), so this one's own cap is never reached.
    """
    global _agent_broker
    if _agent_broker is None:
        _agent_broker = Broker(
            poll_interval=settings.SSE_POLL_INTERVAL.total_seconds(),
            batch_size=settings.SSE_BATCH_SIZE,
            max_lifetime=settings.SSE_MAX_LIFETIME.total_seconds(),
            read_new=read_new_agent_events,
            read_from=read_agent_backlog,
        )
    return _agent_broker
