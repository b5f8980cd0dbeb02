"""The web process's one application: the event streams async, every other request on a bounded thread pool.

Django's ASGI handler runs each sync view in a thread made for that request
and gone after it, so a database connection cannot outlive its request
(CONN_MAX_AGE has to be 0 under it) and every request pays for a new
connection. Here only the streams go through it: they must stay on the event
loop, thousands per process. Every other request (API, admin, docs, pages,
/healthz, static files) goes to Django's WSGI handler on a2wsgi's
pool of ``WEB_THREADS`` threads. Each pool thread keeps its database
connection between requests (CONN_MAX_AGE, health-checked), and the WSGI
handler sends request_started / request_finished around every request, so
Django's per-request connection hygiene runs as under any WSGI server.

The same pool is the event loop's default executor, so the streams' own
blocking reads (``sync_to_async(thread_sensitive=False)`` in topics/stream_views.py
and topics/broker.py) run on those threads and their connections too. A
process therefore holds at most ``WEB_THREADS`` connections, plus the one
the stream poller keeps on its own thread while anyone listens.
docs/serving.md has the measurements behind this and the bound.
"""

import asyncio
import os
import re
from collections.abc import Awaitable, Callable

from a2wsgi import WSGIMiddleware
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dialectic.settings")
streams = get_asgi_application()
pages = get_wsgi_application()

from django.conf import settings  # noqa: E402

# Static files are served on this pool by WhiteNoise (dialectic/staticfiles.py, in MIDDLEWARE).
pool = WSGIMiddleware(pages, workers=settings.WEB_THREADS)

# The paths served on the event loop: every `…/events/` stream under /api/, and the
# stream machinery's own counters (they live in this loop's broker).
STREAM_PATH = re.compile(r"/api/(?:.+/events/|_stream/.*)")

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

_loop_sharing_pool: asyncio.AbstractEventLoop | None = None


async def application(scope: dict, receive: Receive, send: Send) -> None:
    global _loop_sharing_pool
    loop = asyncio.get_running_loop()
    if loop is not _loop_sharing_pool:
        # Before anything runs on the loop's own default executor (a fresh one per
        # loop, sized by the core count), so no other thread ever opens a connection.
        loop.set_default_executor(pool.executor)
        _loop_sharing_pool = loop
    if scope["type"] == "http" and STREAM_PATH.fullmatch(scope["path"]):
        await streams(scope, receive, send)
    else:
        # HTTP, and the lifespan protocol (a2wsgi acknowledges it; Django's handler refuses it).
        await pool(scope, receive, send)


# Outermost: bodies refused from their headers before any of the application reads them (docs/security.md).
from dialectic.edge import BodyGuard  # noqa: E402

application = BodyGuard(application)

# After setup: one line per server process saying whether Fabric announcements are on, or what is missing.
from fabric_bridge.config import log_status  # noqa: E402

log_status()
