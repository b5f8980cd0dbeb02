"""The server's edge: request bodies refused from their headers, before anything reads them.

``BodyGuard`` wraps the whole ASGI application (``dialectic.asgi``), however
the inner application is built. For every HTTP request it decides from the
headers alone, before the application runs:

- a JSON body (``application/json``) whose ``charset`` parameter is not
  ``utf-8`` → 415 ``unsupported_media_type``. JSON is UTF-8 (RFC 8259); some
  codecs Python offers (``utf-7``, the CJK ones) cost seconds of CPU on a
  crafted megabyte, so nothing downstream is allowed to try.
- any request whose ``charset`` is not a text encoding Python can decode
  with (``rot13``, ``base64``, ``zlib``, or no codec at all) → 415: Django
  decodes the query string with that charset while it builds the request,
  before any view, and a non-text codec raised there (a 500 on every
  request, body or not).
- a ``Content-Length`` above the cap → 413 ``payload_too_large``, sent while
  the body is still unread (the server sends no ``100 Continue``).

A body without a length (chunked) is read ahead by the guard, up to the cap,
before the application runs: past the cap the guard answers 413 and the
application never starts; within it, the application reads the buffered
messages as if they came from the socket. So at most the cap plus one
message is ever held, whether the application reads its body eagerly
(Django's ASGI handler, before any view) or only when a view asks for it
(the WSGI pool, where a view that answers 401 first never reads it).

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


def _charset(content_type: str) -> str | None:
    for param in content_type.partition(";")[2].split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').strip()
    return None


def charset_is_decodable(content_type: str) -> bool:
    """False when the ``charset`` parameter names no text encoding (``rot13``, ``zlib``, an unknown name)."""
    charset = _charset(content_type)
    if charset is None:
        return True
    try:
        # A LookupError for unknown names and for codecs that are not text encodings (bytes to bytes,
        # str to str); idna, a text codec, refuses most bytes outright.
        b"a".decode(charset, "replace")
    except (LookupError, UnicodeError):
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
        if not charset_is_decodable(content_type):
            await _answer(send, UnsupportedMediaType(f"charset {_charset(content_type)!r} is not a text encoding."))
            return
        if length is not None and length > cap:
            await _answer(send, PayloadTooLarge(f"The request body exceeds {cap} bytes."))
            return
        if length is None and chunked:
            receive = await _read_ahead(receive, cap)
            if receive is None:
                await _answer(send, PayloadTooLarge(f"The request body exceeds {cap} bytes."))
                return
        await self.app(scope, receive, send)


async def _read_ahead(receive: Receive, cap: int) -> Receive | None:
    """The body's messages read up to ``cap`` bytes and replayed by the returned ``receive``; None past the cap."""
    buffered: list[Message] = []
    received = 0
    while True:
        message = await receive()
        buffered.append(message)
        if message["type"] != "http.request":
            break  # the client went away: the application hears it in turn
        received += len(message.get("body", b""))
        if received > cap:
            return None
        if not message.get("more_body", False):
            break

    async def replay() -> Message:
        return buffered.pop(0) if buffered else await receive()

    return replay


async def _answer(send: Send, exc: DialecticError) -> None:
    """``exc`` rendered by ``topics.errors.error_response`` (the one renderer), sent as raw ASGI messages."""
    response = error_response(exc)
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in response.items()]
    headers.append((b"content-length", str(len(response.content)).encode()))
    # The unread body stays on the socket: the connection cannot be reused.
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})
