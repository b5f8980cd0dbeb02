"""The server's edge: request bodies refused from their headers, before anything reads them.

``BodyGuard`` wraps the whole ASGI application (``dialectic.asgi``), however
the inner application is built. For every HTTP request it decides from the
headers alone, before the application runs:

- a JSON body (``application/json``) whose ``charset`` parameter is not
  ``utf-8`` → 415 ``unsupported_media_type``. JSON is UTF-8 (RFC 8259); some
  codecs Python offers (``utf-7``, the CJK ones) cost seconds of CPU on a
  crafted megabyte, so nothing downstream is allowed to try.
- a ``Content-Length`` above the cap → 413 ``payload_too_large``, sent while
  the body is still unread (the server sends no ``100 Continue``).

A body without a length (chunked) is counted as it arrives: once it passes
the cap the guard answers 413 itself, if the application has not started a
response, and tells the application the client went away, so no more of it
is read and the application's own answer, if any, is dropped. Django's
handler and a WSGI bridge both read the body through ``receive``, so at most
the cap plus one message ever reaches memory or a temporary file.

The cap is the API parser's (``topics.api.parsers.MAX_BODY_BYTES``) under
``/api/`` and Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` elsewhere (the admin's
forms, the login page): without it Django's handler would spool any body to
disk before its own limit looked at it. docs/security.md explains why these
refusals come before the contract's 401/404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings

from topics.api.parsers import MAX_BODY_BYTES
from topics.errors import DialecticError, PayloadTooLarge, UnsupportedMediaType, error_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_PREFIX = "/api/"


def json_charset_is_acceptable(content_type: str) -> bool:
    """False only for ``application/json`` with a ``charset`` other than ``utf-8`` (any case, quoted or not)."""
    media_type, _, params = content_type.partition(";")
    if media_type.strip().lower() != "application/json":
        return True
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').strip().lower() != "utf-8":
            return False
    return True


def _content_length(raw: bytes) -> int | None:
    """The declared length, or None when absent; a malformed one is left to the server and the application."""
    text = raw.strip()
    return int(text) if text.isdigit() else None


class BodyGuard:
    """ASGI middleware: 415 for a non-UTF-8 JSON charset, 413 for a body over the cap, before the body is read."""

    def __init__(self, app: ASGIApp, *, api_cap: int = MAX_BODY_BYTES, other_cap: int | None = None) -> None:
        self.app = app
        self.api_cap = api_cap
        # Read lazily from the settings by default so the guard can wrap the app at import time.
        self._other_cap = other_cap

    def cap_for(self, path: str) -> int:
        if path.startswith(API_PREFIX):
            return self.api_cap
        if self._other_cap is not None:
            return self._other_cap
        # None in Django's settings means "no limit"; the edge still refuses what no form here needs.
        return settings.DATA_UPLOAD_MAX_MEMORY_SIZE or self.api_cap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.cap_for(scope.get("path", ""))
        length: int | None = None
        chunked = False
        content_type = ""
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                length = _content_length(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"content-type":
                content_type = value.decode("latin-1")
        has_body = chunked or bool(length)
        if has_body and not json_charset_is_acceptable(content_type):
            await _answer(send, UnsupportedMediaType("JSON bodies are UTF-8: send charset=utf-8 or no charset."))
            return
        if length is not None and length > cap:
            await _answer(send, PayloadTooLarge(f"The request body exceeds {cap} bytes."))
            return
        await _CountedRequest(self.app, cap).run(scope, receive, send)


class _CountedRequest:
    """One request whose body is counted as the application reads it; past the cap, 413 and a disconnect."""

    def __init__(self, app: ASGIApp, cap: int) -> None:
        self.app = app
        self.cap = cap
        self.received = 0
        self.response_started = False
        self.cut = False  # the body passed the cap: the application reads a disconnect from now on
        self.answered = False  # and we sent the 413, so the application's own answer is dropped

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted_receive() -> Message:
            if self.cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.cap:
                    self.cut = True
                    if not self.response_started:
                        self.answered = True
                        await _answer(send, PayloadTooLarge(f"The request body exceeds {self.cap} bytes."))
                    # The application stops reading at a disconnect (Django raises RequestAborted).
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if self.answered:
                return  # our 413 is the answer; whatever the application says after it is dropped
            if message["type"] == "http.response.start":
                self.response_started = True
            await send(message)

        await self.app(scope, counted_receive, guarded_send)


async def _answer(send: Send, exc: DialecticError) -> None:
    """``exc`` rendered by ``topics.errors.error_response`` (the one renderer), sent as raw ASGI messages."""
    response = error_response(exc)
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in response.items()]
    headers.append((b"content-length", str(len(response.content)).encode()))
    # The unread body stays on the socket: the connection cannot be reused.
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})
