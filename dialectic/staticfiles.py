"""Static files from the web process itself: WhiteNoise, on the thread pool only.

WhiteNoise's middleware is synchronous. In MIDDLEWARE as it is, Django's ASGI
handler would wrap it for every event stream (a thread hop per stream, for a
path that is never a static file). This subclass serves files on the WSGI
pool (``dialectic/asgi.py``: every request but the streams, and ``dialectic/wsgi.py``)
and steps aside, without a thread, when the handler above it is async.

With ``WHITENOISE_USE_FINDERS`` it serves the apps' ``static/`` directories
as found at startup, so no collectstatic is needed to run; files collected
into ``STATIC_ROOT`` (the Dockerfile does it) are served too.
"""

from __future__ import annotations

import warnings

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFiles(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None, **kwargs) -> None:
        with warnings.catch_warnings():
            # STATIC_ROOT exists only after collectstatic; the finders serve the same files meanwhile.
            warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
            super().__init__(get_response, **kwargs)
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.async_mode:
            # The ASGI handler runs only the event streams (dialectic/asgi.py): never a static file.
            return self.get_response(request)
        return super().__call__(request)
