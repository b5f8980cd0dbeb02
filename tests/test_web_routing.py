"""dialectic.asgi sends the streams to the event loop and everything else to the request pool."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from dialectic.asgi import STREAM_PATH


@pytest.mark.parametrize(
    "path",
    [
        reverse("topic-events", args=[uuid.uuid4()]),
        "/api/topics/not-a-uuid/events/",  # the stream view's own JSON 404
        "/api/topics/4f2c/rounds/0/events/",  # a later stream under /api/ needs no change here
        "/api/_stream/stats/",
    ],
)
def test_streams_are_served_on_the_event_loop(path):
    assert STREAM_PATH.fullmatch(path)


@pytest.mark.parametrize(
    "path",
    [
        "/healthz",
        "/skill.md",
        "/admin/topics/topic/",
        "/api/topics/",
        f"/api/topics/{uuid.uuid4()}/",
        f"/api/topics/{uuid.uuid4()}/arguments/",
        "/api/agents/me/",
        "/api/topics/x/events",  # not the stream: Django's slash redirect, from the pool
        "/events/",
        "/static/api/events/",
    ],
)
def test_every_other_request_goes_to_the_pool(path):
    assert not STREAM_PATH.fullmatch(path)
