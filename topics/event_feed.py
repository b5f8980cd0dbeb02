"""A topic's event log as the stream sends it: the database reads and the SSE frames.

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
from collections.abc import Iterable
from dataclasses import dataclass
from operator import or_
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Q

from topics import rules
from topics.models import TopicEvent

# SQLite refuses expressions nested more than 1000 deep and each OR adds a
# level, so a poll reads the watched topics in slices of this many.
TOPICS_PER_QUERY = 200
# Sent first on every stream: how long EventSource waits before reconnecting.
RETRY_FRAME = b"retry: 3000\n\n"
KEEPALIVE_FRAME = b": keepalive\n\n"


@dataclass(frozen=True, slots=True)
class StreamEvent:
    topic_id: uuid.UUID
    seq: int
    terminal: bool
    frame: bytes


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
        StreamEvent(tid, seq, rules.ends_stream(kind, data), encode_frame(seq, kind, data))
        for tid, seq, kind, data in rows
    ]


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
