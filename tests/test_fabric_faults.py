"""Fabric misbehaving in every way in turn, driven by the real Ticker: one delivery, no stalled timeline."""

from __future__ import annotations

import socket
import time
from datetime import timedelta

import pytest
import requests

from devtools.fabric_receiver import FabricServer, Reply
from fabric_bridge.models import Announcement, AnnouncementKind, AnnouncementStatus
from orchestrator.ticker import Ticker
from topics.models import Topic, TopicStatus

pytestmark = pytest.mark.django_db

# Time a pass may take beyond the Fabric timeout it spent: queries and process scheduling on a busy CI box.
# Below one read timeout, so "at most one timeout per pass" is what the bound checks.
SLACK = 0.75
READ_TIMEOUT = 1.0


class Clock:
    def __init__(self, start):
        self.now = start

    def __call__(self):
        return self.now


def test_500_503_hang_refused_then_201_delivers_once_without_stalling_other_topics(fabric, settings, make_topic, now):
    # Backoff is tested on its own; here each failure makes the row due again on the next pass.
    settings.FABRIC_RETRY_BASE = timedelta(0)
    settings.FABRIC_READ_TIMEOUT = timedelta(seconds=READ_TIMEOUT)
    clock = Clock(now)
    announced = make_topic(title="Announced through the storm")
    # Other topics, one due at each pass: signup closed, their debate starts a minute apart.
    others = [
        make_topic(
            title=f"Other {k}",
            status=TopicStatus.SIGNUP_CLOSED,
            start=now - timedelta(hours=1),
            signup_for=timedelta(minutes=10),
            gap=timedelta(minutes=50 + k),
        )
        for k in range(1, 6)
    ]
    fabric.script(Reply(500, {"error": "boom"}), Reply(503, {"error": "maintenance"}), Reply.hanging())
    ticker = Ticker(interval=timedelta(seconds=1), clock=clock)
    durations, errors, received = [], [], []

    for k in range(1, 6):
        clock.now = now + timedelta(minutes=k)
        if k == 4:
            fabric.stop()  # nothing listens on the port: connection refused
        if k == 5:
            fabric.start()  # same port; unscripted answers are 201
        started = time.monotonic()
        ticker.run_pass()
        durations.append(time.monotonic() - started)
        row = Announcement.objects.get(topic=announced)
        errors.append(row.last_error)
        received.append(len(fabric.requests()))
        # The pass made the transition that was due in it, whatever Fabric did.
        assert [Topic.objects.get(pk=t.pk).status for t in others] == [TopicStatus.DEBATING] * k + [
            TopicStatus.SIGNUP_CLOSED
        ] * (5 - k)

    row = Announcement.objects.get(topic=announced, kind=AnnouncementKind.SIGNUP_OPENED)
    assert row.status == AnnouncementStatus.SENT
    assert row.attempts == 5
    assert errors[0].startswith("HTTP 500 Internal Server Error")
    assert errors[1].startswith("HTTP 503 Service Unavailable")
    assert errors[2] == f"read timeout after {READ_TIMEOUT:g}s"
    assert errors[3].startswith("connection error: ConnectionRefusedError")
    assert errors[4] == errors[3], "success keeps the last error for the record"
    # Four requests reached the server (the refused one never did); only the last was answered 2xx.
    keys = fabric.keys()
    assert keys == [str(row.pk)] * 4
    assert {r.json["metadata"]["kind"] for r in fabric.requests()} == {"signup_opened"}

    # One send per failing pass (the refused one never arrived), then the success.
    assert received == [1, 2, 3, 3, 4]
    # The hang cost one read timeout, and no pass took longer than one timeout.
    assert durations[2] >= READ_TIMEOUT
    assert max(durations) < READ_TIMEOUT + SLACK, durations

    # A later pass sends nothing more.
    clock.now = now + timedelta(minutes=6)
    ticker.run_pass()
    assert len(fabric.requests()) == 4


def test_a_hanging_fabric_costs_one_timeout_per_pass_however_many_are_queued(fabric, settings, make_topic, now):
    settings.FABRIC_READ_TIMEOUT = timedelta(seconds=READ_TIMEOUT)
    for i in range(10):
        make_topic(title=f"Queued {i}")
    fabric.default = Reply.hanging()
    ticker = Ticker(interval=timedelta(seconds=1), clock=Clock(now))

    started = time.monotonic()
    ticker.run_pass()  # opens all ten signups, then tries to announce them
    elapsed = time.monotonic() - started

    assert Announcement.objects.count() == 10
    assert READ_TIMEOUT <= elapsed < READ_TIMEOUT + SLACK
    assert len(fabric.requests()) == 1
    # One attempt counted; the other nine were handed back untouched.
    assert sorted(Announcement.objects.values_list("attempts", flat=True)) == [0] * 9 + [1]


def test_the_receiver_records_no_request_whose_sender_died_mid_body():
    """A sender killed between its headers and the end of its body delivered nothing (the webhook crash test
    relies on it: every recorded request must verify)."""
    server = FabricServer().start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as cut_short:
            cut_short.sendall(b'POST /hooks/a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"seq": ')
        answer = requests.post(f"{server.base_url}/hooks/b", json={"seq": 1}, timeout=5)
        assert answer.ok
        assert [(r.path, r.body) for r in server.requests()] == [("/hooks/b", b'{"seq": 1}')]
    finally:
        server.stop()
