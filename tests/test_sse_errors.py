"""The stream endpoint's answers other than a live stream: errors in the contract's order, 204, finished topics.

Django's AsyncClient goes through the same ASGI request path as the server.
The view reads the database from worker threads, which only see committed
rows, hence ``transaction=True``.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from django.db import OperationalError, transaction
from django.test import AsyncClient, Client
from django.utils import timezone

from topics import stream_views, transitions
from topics.tokens import token_issue

pytestmark = pytest.mark.django_db(transaction=True)


def url(topic_id: object) -> str:
    return f"/api/topics/{topic_id}/events/"


def error(response) -> tuple[int, str]:
    assert response["Content-Type"] == "application/json", response
    body = response.json()
    assert set(body) == {"detail", "code"} and body["detail"]
    return response.status_code, body["code"]


async def body(response) -> bytes:
    return b"".join([chunk async for chunk in response.streaming_content])


@pytest.fixture
def cancelled_topic(make_topic):
    """A finished topic with three events: signup opened, then cancelled (status_changed, topic_cancelled)."""
    topic = make_topic()
    with transaction.atomic():
        transitions.topic_open_signup(transitions.topic_lock(topic.pk), now=timezone.now())
    with transaction.atomic():
        transitions.topic_cancel(transitions.topic_lock(topic.pk), reason="gone", now=timezone.now())
    return topic


def test_errors_come_in_the_contract_order(cancelled_topic, make_topic, make_agent):
    client = AsyncClient()
    missing = uuid.uuid4()
    private = make_topic(visibility="private")

    async def check() -> None:
        assert error(await client.get("/api/topics/not-a-uuid/events/")) == (404, "not_found")
        assert error(await client.get(url(missing))) == (404, "not_found")
        assert error(await client.get(url(private.pk))) == (404, "not_found")
        # 401 before 404: a bad token is reported whatever the topic.
        for header in ("Bearer dlc_0123_nope", "Bearer", "Basic dXNlcjpwYXNz", "Bearer a b"):
            response = await client.get(url(missing), headers={"Authorization": header})
            assert error(response) == (401, "authentication_failed"), header
            assert response["WWW-Authenticate"] == 'Bearer realm="api"'
        # 404 before 400: a bad resume point on a topic the caller cannot see is still a 404.
        assert error(await client.get(url(private.pk), headers={"Last-Event-ID": "x"})) == (404, "not_found")
        response = await client.post(url(cancelled_topic.pk))
        assert error(response) == (405, "method_not_allowed") and response["Allow"] == "GET"

    asyncio.run(check())


@pytest.mark.parametrize("bad", ["x", "-1", "1.5", "+1", "1e3", "1_0", "٣", "9" * 19, "0x1"])
def test_a_resume_point_that_is_not_an_event_id_is_a_400(cancelled_topic, bad):
    async def check() -> None:
        client = AsyncClient()
        if bad.isascii():  # headers travel as Latin-1; the query string takes any text
            by_header = await client.get(url(cancelled_topic.pk), headers={"Last-Event-ID": bad})
            assert error(by_header) == (400, "invalid_event_id")
            assert "Last-Event-ID" in by_header.json()["detail"]
        by_query = await client.get(url(cancelled_topic.pk), {"after": bad})
        assert error(by_query) == (400, "invalid_event_id")
        assert "after" in by_query.json()["detail"]

    asyncio.run(check())


def test_finished_topics_replay_then_end_and_have_nothing_after_the_last_event(cancelled_topic, make_agent):
    async def check() -> None:
        client = AsyncClient()
        everything = await client.get(url(cancelled_topic.pk))
        assert everything.status_code == 200 and everything["Content-Type"] == "text/event-stream"
        text = (await body(everything)).decode()
        assert text.startswith("retry: 3000\n\n")
        assert [line for line in text.splitlines() if line.startswith(("id:", "event:"))] == [
            "id: 1",
            "event: status_changed",
            "id: 2",
            "event: status_changed",
            "id: 3",
            "event: topic_cancelled",
        ]
        assert 'data: {"reason":"gone"}' in text

        # Last-Event-ID (what EventSource sends on reconnect) wins over the URL's ?after=.
        rest = await client.get(url(cancelled_topic.pk), {"after": "0"}, headers={"Last-Event-ID": "2"})
        assert [line for line in (await body(rest)).decode().splitlines() if line.startswith("id:")] == ["id: 3"]
        # An empty Last-Event-ID is "no id yet": from the start.
        empty = await client.get(url(cancelled_topic.pk), headers={"Last-Event-ID": ""})
        assert (await body(empty)).decode().count("id: ") == 3

        finished = await client.get(url(cancelled_topic.pk), {"after": "3"})
        assert finished.status_code == 204
        beyond = await client.get(url(cancelled_topic.pk), {"after": "4"})
        assert error(beyond) == (400, "invalid_event_id")

    asyncio.run(check())


def test_an_unreachable_database_is_a_503_to_retry(monkeypatch, make_topic):
    topic = make_topic()

    def down(**kwargs):
        raise OperationalError('(2002, "Can\'t connect to server")')

    monkeypatch.setattr(stream_views, "topics_visible", down)
    response = asyncio.run(AsyncClient().get(url(topic.pk)))
    assert error(response) == (503, "service_unavailable")
    assert response["Retry-After"] == "2"


def test_without_an_asgi_server_the_stream_says_so(make_topic):
    response = Client().get(url(make_topic().pk))
    assert error(response) == (501, "asgi_required")


def test_a_valid_token_sees_private_finished_topics(make_topic, make_agent):
    topic = make_topic(visibility="private")
    with transaction.atomic():
        transitions.topic_cancel(transitions.topic_lock(topic.pk), reason="never mind", now=timezone.now())
    token = token_issue(agent=make_agent())

    async def check() -> bytes:
        response = await AsyncClient().get(url(topic.pk), headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        return await body(response)

    text = asyncio.run(check()).decode()
    assert "event: topic_cancelled" in text
