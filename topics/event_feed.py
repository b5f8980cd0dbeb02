"""The event logs as the streams send them: the database reads and the SSE frames.

Two logs have the same shape and the same guarantee: a topic's TopicEvents
(``TOPIC_LOG``, the topic stream) and an agent's AgentEvents (``AGENT_LOG``,
``/api/agents/me/events/``), each with a gap-free ``seq`` per key (topic,
agent) that only advances under that key's row lock. What follows is said
of topics and holds for agents alike.

The database is the bus. ``topics.transitions`` appends every TopicEvent
with a per-topic, gap-free ``seq`` assigned under the topic's row lock, so
within one topic commit order is seq order. That makes the seq a safe
cursor: once seq N is visible, every seq below it is too. Across topics
commits interleave freely, which is why each topic keeps its own cursor and
there is no global one (an auto-increment id would skip rows that commit
late). ``topics.broker`` polls with these reads; docs/sse.md has the full
argument.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Model

from topics import rules, sql
from topics.models import AgentEvent, TopicEvent

# SQLite refuses expressions nested more than 1000 deep and each OR adds a
# level, so a poll reads the watched topics in slices of this many.
TOPICS_PER_QUERY = 200
# Sent first on every stream: how long EventSource waits before reconnecting.
RETRY_FRAME = b"retry: 3000\n\n"
KEEPALIVE_FRAME = b": keepalive\n\n"


@dataclass(frozen=True, slots=True)
class StreamEvent:
    topic_id: uuid.UUID  # the log's key: the topic's id, or the agent's in the agent log
    seq: int
    terminal: bool
    frame: bytes


@dataclass(frozen=True)
class EventLog:
    model: type[Model]
    key: str  # the column the seq is counted per
    ends_stream: Callable[[str, Any], bool]


TOPIC_LOG = EventLog(TopicEvent, "topic_id", rules.ends_stream)
# An agent's stream has no last event: it lasts as long as the client and its token do.
AGENT_LOG = EventLog(AgentEvent, "agent_id", lambda kind, data: False)


def encode_frame(seq: int, kind: str, data: Any) -> bytes:
    payload = json.dumps(data, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False)
    try:
        encoded = payload.encode()
    except UnicodeEncodeError:
        # A lone surrogate survived into the JSON; escaped ASCII is still the same JSON value.
        encoded = json.dumps(data, cls=DjangoJSONEncoder, separators=(",", ":")).encode()
    # json.dumps escapes CR and LF inside strings, so the payload is one line as SSE needs.
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, kind.encode(), encoded)


def _to_events(log: EventLog, rows: Iterable[tuple[uuid.UUID, int, str, Any]]) -> list[StreamEvent]:
    return [
        StreamEvent(key, seq, log.ends_stream(kind, data), encode_frame(seq, kind, data))
        for key, seq, kind, data in rows
    ]


def read_new(log: EventLog, cursors: dict[uuid.UUID, int], *, limit: int) -> tuple[list[StreamEvent], bool]:
    """Events after each key's cursor, ordered by key then seq; and whether any slice hit ``limit``."""
    events: list[StreamEvent] = []
    full = False
    items = sorted(cursors.items())
    for start in range(0, len(items), TOPICS_PER_QUERY):
        # Served by the (key, seq) unique index: one range per key, already in order.
        rows = sql.events_after(log.model, log.key, items[start : start + TOPICS_PER_QUERY], limit=limit)
        full = full or len(rows) == limit
        events.extend(_to_events(log, rows))
    return events, full


def read_from(log: EventLog, key: uuid.UUID, *, after: int, limit: int) -> list[StreamEvent]:
    rows = (
        log.model._default_manager.filter(**{log.key: key, "seq__gt": after})
        .order_by("seq")
        .values_list(log.key, "seq", "kind", "data")[:limit]
    )
    return _to_events(log, rows)


read_new_events = functools.partial(read_new, TOPIC_LOG)
read_backlog = functools.partial(read_from, TOPIC_LOG)
read_new_agent_events = functools.partial(read_new, AGENT_LOG)
read_agent_backlog = functools.partial(read_from, AGENT_LOG)
