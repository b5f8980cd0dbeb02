"""Streams re-check access, live a bounded time, and a process holds a bounded number (real server processes).

The servers poll every 100 ms (``devtools.processes.stream_server``); "within
one poll interval" is asserted with a margin for a loaded machine, and the
event written after the change is the proof that nothing leaked meanwhile.
"""

from __future__ import annotations

import time

import httpx
import pytest
from django.db import transaction
from django.utils import timezone

from devtools.processes import stream_server, wait_for
from devtools.sse_client import SseReader
from topics import transitions
from topics.models import EventKind, Topic
from topics.tokens import token_issue, tokens_revoke

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), stream_server() as one:
        yield one.wait_healthy()


def open_signup(topic: Topic) -> None:
    with transaction.atomic():
        transitions.topic_open_signup(transitions.topic_lock(topic.pk), now=timezone.now())


def append_event(topic: Topic, marker: str) -> None:
    with transaction.atomic():
        transitions.topic_append_events(transitions.topic_lock(topic.pk), [(EventKind.ARGUMENT_POSTED, {"m": marker})])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_anonymous_streams_of_a_topic_made_private_end_and_miss_what_follows(server, make_topic, make_agent):
    topic = make_topic()
    open_signup(topic)
    anonymous = SseReader(server.events_url(topic.pk))
    with_token = SseReader(server.events_url(topic.pk), headers=bearer(token_issue(agent=make_agent())))
    for reader in (anonymous, with_token):
        reader.wait_for_seq(1)

    # What staff do in the admin: the topic's visibility changes, and the debate goes on.
    Topic.objects.filter(pk=topic.pk).update(visibility="private")
    append_event(topic, "after the change")

    anonymous.wait_done(timeout=5)
    assert anonymous.ended
    assert anonymous.seqs == [1]  # the event written after the change never reached it
    with_token.wait_for_seq(2)
    assert with_token.events[-1].data == {"m": "after the change"}
    with_token.close()
    # And reconnecting anonymously is now a 404, as for any private topic.
    assert httpx.get(server.events_url(topic.pk), timeout=5).status_code == 404


def test_a_revoked_token_and_a_deactivated_agent_end_their_streams(server, make_topic, make_agent):
    topic = make_topic(visibility="private")
    open_signup(topic)
    revoked_agent, deactivated, kept = make_agent(), make_agent(), make_agent()
    readers = {
        agent.pk: SseReader(server.events_url(topic.pk), headers=bearer(token_issue(agent=agent)))
        for agent in (revoked_agent, deactivated, kept)
    }
    for reader in readers.values():
        reader.wait_for_seq(1)

    started = time.monotonic()
    tokens_revoke(agent=revoked_agent)
    type(deactivated).objects.filter(pk=deactivated.pk).update(is_active=False)
    append_event(topic, "after the revocation")

    for agent in (revoked_agent, deactivated):
        readers[agent.pk].wait_done(timeout=5)
        assert readers[agent.pk].ended
        assert readers[agent.pk].seqs == [1]
    assert time.monotonic() - started < 5
    readers[kept.pk].wait_for_seq(2)
    readers[kept.pk].close()
    wait_for(lambda: server.stats()["listeners"] == 0, timeout=5, message="listeners left behind")


def test_a_stream_ends_after_sse_max_lifetime_and_resumes_where_it_left(make_topic):
    topic = make_topic()
    open_signup(topic)
    with stream_server({"SSE_MAX_LIFETIME": "1500ms"}) as short_lived:
        short_lived.wait_healthy()
        started = time.monotonic()
        reader = SseReader(short_lived.events_url(topic.pk))
        reader.wait_for_seq(1)
        reader.wait_done(timeout=10)
        lived = time.monotonic() - started
        assert reader.ended and reader.seqs == [1]
        assert 1.5 <= lived < 6, lived
        assert reader.comments.count("keepalive") >= 1  # it was alive, idle, until the end

        append_event(topic, "while away")
        resumed = SseReader(short_lived.events_url(topic.pk), headers={"Last-Event-ID": "1"})
        resumed.wait_for_seq(2)
        assert resumed.seqs == [2]
        resumed.close()


def test_past_sse_max_streams_a_stream_is_503_too_many_streams_with_retry_after(make_topic):
    topic = make_topic()
    open_signup(topic)
    with stream_server({"SSE_MAX_STREAMS": "2"}) as small:
        small.wait_healthy()
        held = [SseReader(small.events_url(topic.pk)) for _ in range(2)]
        for reader in held:
            reader.wait_for_seq(1)

        refused = httpx.get(small.events_url(topic.pk), timeout=5)
        assert refused.status_code == 503
        assert refused.json() == {
            "detail": "This server holds as many live streams as it may; retry shortly.",
            "code": "too_many_streams",
        }
        assert refused.headers["Retry-After"] == "10"
        # The API is not affected by the stream cap.
        assert httpx.get(f"{small.base_url}/api/topics/{topic.pk}/", timeout=5).status_code == 200

        held[0].close()
        wait_for(lambda: small.stats()["open_streams"] == 1, timeout=5, message="the slot was not released")
        with SseReader(small.events_url(topic.pk)) as again:
            again.wait_for_seq(1)
            assert again.status == 200
        held[1].close()
        # Refusals, errors and 204s hold no slot: the count goes back to zero.
        wait_for(lambda: small.stats()["open_streams"] == 0, timeout=5, message="a slot leaked")
