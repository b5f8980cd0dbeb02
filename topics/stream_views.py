"""``GET /api/topics/{id}/events/`` and ``GET /api/agents/me/events/``: event logs as Server-Sent Events.

An async view, so one server process holds thousands of open streams on its
event loop; the database work runs in worker threads and the live feed
comes from this process's ``topics.broker`` (``agent_broker()`` for the agent stream).
It is not a DRF view (DRF has no async views), but answers errors the way
the API does: ``{"detail", "code"}`` with the contract's status, checked in
the contract's order (401, 404, then 400), after the process's stream cap
(503 ``too_many_streams``, decided before any database work).
"""

from __future__ import annotations

import logging
import re
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from rest_framework import exceptions

from topics import rules
from topics.api.authentication import AgentTokenAuthentication
from topics.broker import Broker, Slot, agent_broker, broker
from topics.db_threads import tidy_connections
from topics.errors import (
    AsgiRequired,
    AuthenticationFailed,
    DialecticError,
    InvalidEventId,
    MethodNotAllowed,
    NotAuthenticated,
    ServiceUnavailable,
    TooManyStreams,
    TopicNotFound,
    error_response,
)
from topics.event_feed import KEEPALIVE_FRAME, RETRY_FRAME
from topics.selectors import topics_visible

logger = logging.getLogger("topics.stream_views")

# An event id is the seq we sent: plain ASCII digits, short enough to be an int the database accepts.
_EVENT_ID = re.compile(r"[0-9]{1,18}", re.ASCII)


@dataclass(frozen=True)
class _Opened:
    topic_id: uuid.UUID  # the log's key: the agent's id for the agent stream
    event_seq: int
    finished: bool
    token_id: int | None  # the token that opened the stream, re-checked by the poller; None: anonymous


@tidy_connections
def _open_topic(request: HttpRequest, topic_id: uuid.UUID) -> _Opened:
    """Authenticate and check visibility exactly as the API does (same authenticator, same selector)."""
    try:
        authenticated = AgentTokenAuthentication().authenticate(request)
    except exceptions.AuthenticationFailed as exc:
        raise AuthenticationFailed(str(exc.detail)) from None
    agent, bearer = authenticated if authenticated else (None, None)
    row = topics_visible(agent=agent).filter(pk=topic_id).values_list("event_seq", "status").first()
    if row is None:
        raise TopicNotFound()
    event_seq, status = row
    return _Opened(topic_id, event_seq, rules.is_finished(status), bearer.token_id if bearer else None)


def _resume_point(request: HttpRequest, opened: _Opened, *, of: str = "this topic's") -> int:
    """The seq the client has already seen: ``Last-Event-ID`` (sent by EventSource on reconnect) wins over ``?after=``.

    Empty values mean "from the start", as EventSource omits the header when it has no id.
    """
    for source, raw in (("Last-Event-ID", request.headers.get("Last-Event-ID")), ("after", request.GET.get("after"))):
        if raw is None or not raw.strip():
            continue
        raw = raw.strip()
        if not _EVENT_ID.fullmatch(raw):
            raise InvalidEventId(f"{source} must be an event id from this stream: a whole number, 0 or more.")
        after = int(raw)
        if after > opened.event_seq:
            raise InvalidEventId(f"{source}={after} is beyond {of} last event ({opened.event_seq}).")
        return after
    return 0


async def topic_events(request: HttpRequest, topic_id: str) -> HttpResponse | StreamingHttpResponse:
    return await _admitted(request, lambda slot: _open_stream(request, topic_id, slot))


async def agent_events(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    return await _admitted(request, lambda slot: _open_agent_stream(request, slot))


async def _admitted(
    request: HttpRequest, open_stream: Callable[[Slot], Awaitable[HttpResponse | StreamingHttpResponse]]
) -> HttpResponse | StreamingHttpResponse:
    """Both streams: method and server checks, then a place under the process's cap, held while the stream lasts."""
    try:
        if request.method != "GET":
            raise MethodNotAllowed()
        if not isinstance(request, ASGIRequest):
            raise AsgiRequired()
    except DialecticError as exc:
        return error_response(exc)
    # Before any database work: a process at its cap should refuse cheaply, whoever asks.
    slot = broker().admit()
    if slot is None:
        return error_response(TooManyStreams())
    try:
        response = await open_stream(slot)
    except BaseException:
        slot.release()
        raise
    if not response.streaming:
        slot.release()
    return response


async def _open_stream(request: HttpRequest, topic_id: str, slot: Slot) -> HttpResponse | StreamingHttpResponse:
    try:
        try:
            parsed_id = uuid.UUID(topic_id)
        except ValueError:
            raise TopicNotFound() from None
        opened = await sync_to_async(_open_topic, thread_sensitive=False)(request, parsed_id)
        after = _resume_point(request, opened)
    except OperationalError as exc:
        logger.warning("database unavailable for an event stream: %s", exc)
        return error_response(ServiceUnavailable())
    except DialecticError as exc:
        return error_response(exc)
    if opened.finished and after >= opened.event_seq:
        # Nothing left to send, ever. 204 is what tells EventSource to stop reconnecting.
        return HttpResponse(status=204)
    return _streaming(_frames(broker(), opened, after, slot), slot)


def _streaming(frames: AsyncIterator[bytes], slot: Slot) -> StreamingHttpResponse:
    response = StreamingHttpResponse(frames, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    # nginx and similar proxies would otherwise buffer the stream.
    response["X-Accel-Buffering"] = "no"
    # A response cancelled before its generator started never runs the generator's
    # ``finally``; the slot then goes back when the response is collected.
    weakref.finalize(response, slot.release)
    return response


async def _frames(source: Broker, opened: _Opened, after: int, slot: Slot) -> AsyncIterator[bytes]:
    events = source.events(
        opened.topic_id, after=after, known_seq=opened.event_seq, live=not opened.finished, token_id=opened.token_id
    )
    # The ASGI handler closes this generator when the client disconnects; closing
    # ``events`` with it is what unsubscribes the listener.
    try:
        yield RETRY_FRAME
        async for event in events:
            yield KEEPALIVE_FRAME if event is None else event.frame
    finally:
        await events.aclose()
        slot.release()


@tidy_connections
def _open_agent(request: HttpRequest) -> _Opened:
    """The caller's own log: a token is required, and the stream lives as long as it does."""
    try:
        authenticated = AgentTokenAuthentication().authenticate(request)
    except exceptions.AuthenticationFailed as exc:
        raise AuthenticationFailed(str(exc.detail)) from None
    if authenticated is None:
        raise NotAuthenticated()
    agent, bearer = authenticated
    return _Opened(agent.pk, agent.event_seq, finished=False, token_id=bearer.token_id)


async def _open_agent_stream(request: HttpRequest, slot: Slot) -> HttpResponse | StreamingHttpResponse:
    try:
        opened = await sync_to_async(_open_agent, thread_sensitive=False)(request)
        after = _resume_point(request, opened, of="your")
    except OperationalError as exc:
        logger.warning("database unavailable for an agent stream: %s", exc)
        return error_response(ServiceUnavailable())
    except DialecticError as exc:
        return error_response(exc)
    # An agent's log has no last event: the stream lasts until the client leaves, its token dies or its lifetime ends.
    return _streaming(_frames(agent_broker(), opened, after, slot), slot)


async def stream_stats(request: HttpRequest) -> JsonResponse:
    """This process's broker counters; routed only when ``SSE_STATS_ENABLED`` is on (the benchmark reads it)."""
    return JsonResponse({**broker().stats(), "agents": agent_broker().stats()})
