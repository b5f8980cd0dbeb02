"""Checking that every topic's rows tell one consistent story, for thousands of topics at once.

Status, events (gap-free seqs, a status chain from ``created``), camps, rounds
and announcements must agree. Used after real tickers ran (the ticker's
concurrency and crash tests, ``bench/bench_ticker.py``), on rows seeded by
``devtools.seeding``. Needs a configured Django.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from fabric_bridge.models import Announcement, AnnouncementKind
from topics.models import Camp, EventKind, Round, Topic, TopicEvent, TopicStatus

S = TopicStatus


@dataclass
class TopicRows:
    topic: dict
    events: list[dict] = field(default_factory=list)
    camps: dict[str, str] = field(default_factory=dict)
    rounds: list[dict] = field(default_factory=list)
    announcements: list[str] = field(default_factory=list)


def load_rows(topic_ids: list[uuid.UUID]) -> dict[uuid.UUID, TopicRows]:
    """Everything about these topics in a handful of queries (thousands of topics: no per-topic query)."""
    rows: dict[uuid.UUID, TopicRows] = {}
    for chunk in _chunks(topic_ids, 500):
        for t in Topic.objects.filter(pk__in=chunk).values("id", "status", "event_seq", "cancelled_reason"):
            rows[t["id"]] = TopicRows(topic=t)
        for e in TopicEvent.objects.filter(topic_id__in=chunk).order_by("topic_id", "seq").values():
            rows[e["topic_id"]].events.append(e)
        for c in Camp.objects.filter(topic_id__in=chunk).values("topic_id", "camp", "agent_id"):
            rows[c["topic_id"]].camps[c["camp"]] = str(c["agent_id"])
        for r in Round.objects.filter(topic_id__in=chunk).order_by("topic_id", "round_no").values():
            rows[r["topic_id"]].rounds.append(r)
        for a in Announcement.objects.filter(topic_id__in=chunk).values("topic_id", "kind"):
            rows[a["topic_id"]].announcements.append(a["kind"])
    return rows


def problems(rows: TopicRows, *, fabric: bool) -> list[str]:
    """Ways in which a topic's status, events, camps, rounds and announcements disagree. Empty when consistent."""
    found: list[str] = []
    topic, events = rows.topic, rows.events
    seqs = [e["seq"] for e in events]
    if seqs != list(range(1, len(events) + 1)) or topic["event_seq"] != len(events):
        found.append(f"event seqs {seqs} with event_seq {topic['event_seq']}")

    # Replay the status changes: they must chain from created to the stored status.
    path = [S.CREATED]
    for e in events:
        if e["kind"] == EventKind.STATUS_CHANGED:
            if e["data"]["from"] != path[-1]:
                found.append(f"status_changed from {e['data']['from']} after {path[-1]}")
            path.append(e["data"]["to"])
    if path[-1] != topic["status"]:
        found.append(f"events end in {path[-1]} but the status is {topic['status']}")

    allocated = [e["data"] for e in events if e["kind"] == EventKind.CAMPS_ALLOCATED]
    if S.SIGNUP_CLOSED in path:
        if len(allocated) != 1 or len(rows.camps) != 3:
            found.append(f"{len(allocated)} camps_allocated events, {len(rows.camps)} camps")
        elif {camp: agent["id"] for camp, agent in allocated[0].items() if camp != "judges"} != rows.camps:
            found.append("camps_allocated event disagrees with the camps")
        elif len(set(rows.camps.values())) != 3:
            found.append("an agent sits in two camps")
    elif allocated or rows.camps:
        found.append("camps without signup closing")

    opened = [e["data"]["round_no"] for e in events if e["kind"] == EventKind.ROUND_OPENED]
    closed = [e["data"]["round_no"] for e in events if e["kind"] == EventKind.ROUND_CLOSED]
    if opened != [r["round_no"] for r in rows.rounds] or opened != list(range(len(opened))):
        found.append(f"round_opened {opened} vs rounds {[r['round_no'] for r in rows.rounds]}")
    if closed != [r["round_no"] for r in rows.rounds if r["closed_at"] is not None]:
        found.append(f"round_closed {closed} vs closed rounds")
    still_open = [r["round_no"] for r in rows.rounds if r["closed_at"] is None]
    if topic["status"] == S.DEBATING:
        if still_open != [len(rows.rounds) - 1]:
            found.append(f"debating with open rounds {still_open}")
    elif still_open:
        found.append(f"{topic['status']} with open rounds {still_open}")
    if (S.DEBATING in path) != bool(rows.rounds):
        found.append("rounds exist iff the debate started")

    cancelled = [e for e in events if e["kind"] == EventKind.TOPIC_CANCELLED]
    if topic["status"] == S.CANCELLED:
        if len(cancelled) != 1 or events[-1]["kind"] != EventKind.TOPIC_CANCELLED or not topic["cancelled_reason"]:
            found.append("cancelled without exactly one final topic_cancelled event and a reason")
        elif cancelled[0]["data"]["reason"] != topic["cancelled_reason"]:
            found.append("topic_cancelled reason disagrees with cancelled_reason")
    elif cancelled or topic["cancelled_reason"]:
        found.append("topic_cancelled event or reason on a topic that is not cancelled")

    if fabric:
        expected = []
        if S.SIGNUP_OPEN in path:
            expected.append(AnnouncementKind.SIGNUP_OPENED)
        if topic["status"] == S.CANCELLED and path[-2] != S.CREATED:
            expected.append(AnnouncementKind.TOPIC_CANCELLED)
        if topic["status"] == S.COMPLETED:
            expected.append(AnnouncementKind.TOPIC_COMPLETED)
        if sorted(rows.announcements) != sorted(expected):
            found.append(f"announcements {sorted(rows.announcements)}, expected {sorted(expected)}")
    return found


def inconsistent_topics(topic_ids: list[uuid.UUID], *, fabric: bool) -> dict[str, list[str]]:
    """Topic id → its problems, for every topic that has any (empty when all are consistent)."""
    rows = load_rows(topic_ids)
    missing = set(topic_ids) - set(rows)
    result = {str(topic_id): ["topic missing"] for topic_id in missing}
    for topic_id, topic_rows in rows.items():
        if found := problems(topic_rows, fabric=fabric):
            result[str(topic_id)] = found
    return result


def status_counts(topic_ids: list[uuid.UUID]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for chunk in _chunks(topic_ids, 500):
        for status in Topic.objects.filter(pk__in=chunk).values_list("status", flat=True):
            counts[status] += 1
    return dict(counts)


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]
