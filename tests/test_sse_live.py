"""The live stream end to end: real gunicorn + uvicorn-worker processes, a real ticker, real HTTP clients.

Two server processes share the test database. Time is moved on by pulling
the topic's timeline (and the open round's close) back to "now"; the
running ticker then makes the transition, and the stream is the signal
that it happened.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from django.db import transaction
from django.utils import timezone

from devtools.environments import child_env
from devtools.processes import FAST_STREAMS, ChildProcess, Stack, wait_for
from devtools.sse_client import SseReader
from tests import galera
from topics import transitions
from topics.models import Agent, Round, Topic, TopicEvent
from topics.tokens import token_issue

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def servers(django_db_setup, django_db_blocker):
    """Two web servers as the Procfile runs them (no ticker: the ``ticker`` fixture adds one).

    On a Galera cluster they read from nodes 2 and 3 while the test writes through node 1.
    """
    with django_db_blocker.unblock():
        envs = [galera.spread_env(i, FAST_STREAMS) for i in (1, 2)]
    one, two = (Stack(env=env, ticker=False, graceful_timeout=1) for env in envs)
    try:
        one.launch()
        two.launch()  # both boot at once
        yield one.wait_healthy(), two.wait_healthy()
    finally:
        two.stop()
        one.stop()


@pytest.fixture
def ticker(servers):
    with ChildProcess.manage("run_ticker", "--interval", "100ms", env=child_env()) as process:
        yield process


def db_events(topic: Topic) -> list[tuple[int, str, dict]]:
    return list(TopicEvent.objects.filter(topic=topic).order_by("seq").values_list("seq", "kind", "data"))


def as_tuples(reader: SseReader) -> list[tuple[int, str, dict]]:
    return [(event.id, event.kind, event.data) for event in reader.events]


def saw(kind: str, **data: object):
    def condition(reader: SseReader) -> bool:
        return any(e.kind == kind and all(e.data.get(k) == v for k, v in data.items()) for e in reader.events)

    return condition


def listeners(server: Stack) -> int:
    return httpx.get(f"{server.base_url}/api/_stream/stats/", timeout=5).json()["listeners"]


def api_post(server: Stack, path: str, token: str, body: dict) -> dict:
    response = httpx.post(
        f"{server.base_url}/api/topics/{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_a_whole_debate_reaches_every_listener_on_every_server_in_order(servers, ticker, make_topic, make_agent):
    """Driven through the API (on both servers) and a running ticker; watched from both servers."""
    one, two = servers
    tokens = {camp: token_issue(agent=make_agent(name=f"sse-{camp}", owner=camp)) for camp in ("pro", "con", "judge")}
    topic = make_topic(signup_for=timedelta(hours=1), debate_for=timedelta(hours=1), round_count=2)

    def argue(server: Stack, camp: str, content: str) -> None:
        api_post(server, f"{topic.pk}/arguments/", tokens[camp], {"content": content})

    first = SseReader(one.events_url(topic.pk))
    other_server = SseReader(two.events_url(topic.pk))
    leaver = SseReader(one.events_url(topic.pk), stop_when=lambda events: events[-1].kind == "argument_posted")
    wait_for(lambda: listeners(one) == 2 and listeners(two) == 1, timeout=10, message="listeners did not connect")
    assert first.status == 200
    assert first.response_headers["content-type"] == "text/event-stream"
    assert first.response_headers["cache-control"] == "no-cache"
    assert first.response_headers["x-accel-buffering"] == "no"

    # The ticker opens signup (the topic was created before the listeners connected).
    first.wait_for(saw("status_changed", to="signup_open"))
    for camp, token in tokens.items():
        api_post(one, f"{topic.pk}/signups/", token, {"camp": camp})

    now = timezone.now()
    Topic.objects.filter(pk=topic.pk).update(signup_close_at=now, debate_start_at=now)
    first.wait_for(saw("status_changed", to="debating"))

    argue(two, "pro", "Round zero, pro.\nSecond line: «ünïcødé».")
    leaver.wait_done()
    assert leaver.disconnected and leaver.events[-1].kind == "argument_posted"
    wait_for(lambda: listeners(one) == 1, timeout=5, message="the leaver's registration outlived its connection")
    argue(one, "con", "Round zero, con.")

    Round.objects.filter(topic=topic, round_no=0).update(closes_at=timezone.now())
    first.wait_for(saw("round_opened", round_no=1))
    # Back mid-debate: the missed events from the database, then live ones.
    rejoined = SseReader(one.events_url(topic.pk), headers={"Last-Event-ID": str(leaver.events[-1].id)})
    wait_for(lambda: listeners(one) == 2, timeout=10)
    argue(two, "con", "Round one, con.")
    argue(one, "pro", "Round one, pro.")

    Topic.objects.filter(pk=topic.pk).update(debate_end_at=timezone.now())
    first.wait_for(saw("status_changed", to="judging"))
    api_post(two, f"{topic.pk}/verdict/", tokens["judge"], {"verdict": {"winner": "con"}, "rationale": "Sharper."})

    for reader in (first, other_server, rejoined):
        reader.wait_done()
        assert reader.ended, "the stream ends after the terminal event"
    expected = db_events(topic)
    assert [kind for _, kind, _ in expected] == [
        "status_changed",  # created → signup_open
        "camps_allocated",
        "status_changed",  # → signup_closed
        "round_opened",
        "status_changed",  # → debating
        "argument_posted",
        "argument_posted",
        "round_closed",
        "round_opened",
        "argument_posted",
        "argument_posted",
        "round_closed",
        "status_changed",  # → judging
        "verdict_posted",
        "status_changed",  # → completed
    ]
    assert [seq for seq, _, _ in expected] == list(range(1, 16))
    assert as_tuples(first) == expected
    assert as_tuples(other_server) == expected
    assert as_tuples(leaver) + as_tuples(rejoined) == expected
    assert first.retry == 3000
    assert expected[5][2]["content"] == "Round zero, pro.\nSecond line: «ünïcødé»."

    # After the end: ?after= gives the rest and the end; nothing left at all is a 204 (EventSource stops).
    late = SseReader(f"{one.events_url(topic.pk)}?after=12")
    late.wait_done()
    assert late.ended and as_tuples(late) == expected[12:]
    done = httpx.get(two.events_url(topic.pk), headers={"Last-Event-ID": "15"}, timeout=5)
    assert done.status_code == 204 and done.content == b""
    wait_for(lambda: listeners(one) == 0 and listeners(two) == 0, timeout=5)


def test_a_cancelled_topic_ends_its_stream_after_topic_cancelled(servers, make_topic):
    one, _ = servers
    topic = make_topic()
    with transaction.atomic():
        transitions.topic_open_signup(transitions.topic_lock(topic.pk), now=timezone.now())
    reader = SseReader(one.events_url(topic.pk))
    reader.wait_for_seq(1)
    with transaction.atomic():
        transitions.topic_cancel(transitions.topic_lock(topic.pk), reason="staff: duplicate topic", now=timezone.now())
    reader.wait_done()
    assert reader.ended
    assert [(e.id, e.kind) for e in reader.events] == [
        (1, "status_changed"),
        (2, "status_changed"),
        (3, "topic_cancelled"),
    ]
    assert reader.events[-1].data == {"reason": "staff: duplicate topic"}


def test_a_private_topic_is_404_anonymously_and_streams_with_a_token(servers, make_topic, make_agent):
    one, two = servers
    topic = make_topic(visibility="private")
    with transaction.atomic():
        transitions.topic_open_signup(transitions.topic_lock(topic.pk), now=timezone.now())

    anonymous = httpx.get(one.events_url(topic.pk), timeout=5)
    assert anonymous.status_code == 404
    assert anonymous.json() == {"detail": "No such topic.", "code": "not_found"}
    bad = httpx.get(one.events_url(topic.pk), headers={"Authorization": "Bearer dlc_abc_nope"}, timeout=5)
    assert bad.status_code == 401 and bad.json()["code"] == "authentication_failed"

    agent: Agent = make_agent()
    token = token_issue(agent=agent)
    with SseReader(two.events_url(topic.pk), headers={"Authorization": f"Bearer {token}"}) as reader:
        reader.wait_for_seq(1)
        assert reader.status == 200
        assert reader.events[0].data["to"] == "signup_open"


def test_heartbeats_flow_while_idle_and_a_disconnect_unsubscribes_at_once(servers, make_topic):
    one, _ = servers
    topic = make_topic()
    reader = SseReader(one.events_url(topic.pk))
    # SSE_HEARTBEAT_INTERVAL is 1s on the test servers.
    reader.wait_for(lambda r: r.comments.count("keepalive") >= 2, timeout=10)
    assert reader.events == []
    assert listeners(one) == 1
    reader.close()
    assert reader.disconnected
    wait_for(lambda: listeners(one) == 0, timeout=3, message="the listener was not dropped on disconnect")
