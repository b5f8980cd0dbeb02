"""Bodies at the server's edge (``dialectic.edge``), against a real gunicorn + uvicorn process over raw sockets.

A raw socket is the only client that can announce a body and then not send
it, or keep a chunked body coming: the tests see the server answer while
the body is still unsent, which is the point of refusing at the edge.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from datetime import timedelta

import httpx
import pytest
from django.db import transaction
from django.utils import timezone

from devtools.processes import Stack, stream_server
from topics import transitions
from topics.api.parsers import MAX_BODY_BYTES
from topics.models import Signup
from topics.tokens import token_issue

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), stream_server() as one:
        yield one.wait_healthy()


class RawResponse:
    def __init__(self, data: bytes) -> None:
        head, _, self.body = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}

    def json(self) -> dict:
        return json.loads(self.body)


class RawClient:
    """One connection; everything the server sends is collected by a reader thread, as it arrives.

    Reading concurrently matters: a server that answers and closes while body
    bytes are still unread may reset the connection, and a reset discards
    whatever the client had not read yet.
    """

    def __init__(self, server: Stack) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.data = b""
        self.closed = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            while chunk := self.sock.recv(65536):
                self.data += chunk
        except OSError:
            pass
        self.closed.set()

    def send(self, data: bytes) -> bool:
        """False once the server no longer takes bytes (it answered and closed)."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def response(self, timeout: float = 10) -> RawResponse:
        assert self.closed.wait(timeout), f"no complete answer within {timeout}s; got {self.data[:200]!r}"
        return RawResponse(self.data)

    def answered(self) -> bool:
        return b"\r\n\r\n" in self.data

    def close(self) -> None:
        self.sock.close()
        self._reader.join(5)


def head(path: str, headers: dict[str, str], method: str = "POST") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


def test_a_content_length_far_above_the_cap_is_answered_413_before_any_body_is_sent(server):
    client = RawClient(server)
    try:
        ten_gib = 10 * 1024**3
        announced = {"Content-Type": "application/json", "Content-Length": str(ten_gib)}
        assert client.send(head(f"/api/topics/{uuid.uuid4()}/arguments/", announced))
        # Not one body byte is sent: the answer can only come from the headers.
        response = client.response(timeout=10)
    finally:
        client.close()
    assert response.status == 413
    detail = f"The request body exceeds {MAX_BODY_BYTES} bytes."
    assert response.json() == {"detail": detail, "code": "payload_too_large"}
    assert response.headers["content-type"] == "application/json"
    # No "100 Continue" was sent first: the server never asked for the body.
    assert client.data.startswith(b"HTTP/1.1 413")


def test_an_admin_body_above_djangos_own_cap_is_refused_at_the_edge_too(server, settings):
    client = RawClient(server)
    try:
        length = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1
        form = {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(length)}
        assert client.send(head("/admin/login/", form))
        response = client.response()
    finally:
        client.close()
    assert response.status == 413
    assert response.json()["code"] == "payload_too_large"


def test_a_chunked_body_past_the_cap_is_answered_413_and_not_read_further(server):
    client = RawClient(server)
    chunk = b"x" * 65536
    sent = 0
    try:
        announced = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        assert client.send(head(f"/api/topics/{uuid.uuid4()}/arguments/", announced))
        # Keep sending until the server answers; an endless body would otherwise never end.
        while not client.answered() and sent < 64 * MAX_BODY_BYTES:
            if not client.send(b"%x\r\n%s\r\n" % (len(chunk), chunk)):
                break
            sent += len(chunk)
        response = client.response()
    finally:
        client.close()
    assert response.status == 413, response.body
    assert response.json()["code"] == "payload_too_large"
    # It answered soon after the cap, not after the 64 MiB this client was willing to send
    # (what was sent but unread sits in socket buffers, a few MiB at most).
    assert sent < 16 * MAX_BODY_BYTES, sent


def test_a_body_at_the_cap_with_a_length_or_chunked_still_reaches_the_api(server):
    """A full-size body passes the edge and meets the API's own answer (here: no token, 401)."""
    body = b'{"content": "' + b"a" * (MAX_BODY_BYTES - 15) + b'"}'
    assert len(body) == MAX_BODY_BYTES
    path = f"/api/topics/{uuid.uuid4()}/arguments/"
    with_length = httpx.post(
        f"{server.base_url}{path}", content=body, headers={"Content-Type": "application/json"}, timeout=10
    )
    chunked = httpx.post(
        f"{server.base_url}{path}",
        content=iter([body[:1000], body[1000:]]),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    for response in (with_length, chunked):
        assert response.status_code == 401, response.text
        assert response.json()["code"] == "not_authenticated"
    assert chunked.request.headers["transfer-encoding"] == "chunked"


REFUSED_CHARSETS = [
    "utf-7",
    "UTF-16",
    "utf-16le",
    "utf-32",
    "cp1252",
    "latin-1",
    "shift_jis",
    "iso-2022-jp",
    "utf8",  # not the registered name; refused rather than guessed at
    "no-such-codec",
    "",
]
ACCEPTED_CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=UTF-8",
    'application/json;charset="utf-8"',
    "application/json; charset=utf-8; x=",
    "APPLICATION/JSON; Charset=Utf-8",
]


@pytest.mark.parametrize("charset", REFUSED_CHARSETS)
def test_a_json_body_in_another_charset_is_415_at_the_edge(server, charset):
    # No token and an unknown topic: only the edge can have answered 415 before the API's 401.
    response = httpx.post(
        f"{server.base_url}/api/topics/{uuid.uuid4()}/signups/",
        content=b'{"camp": null}',
        headers={"Content-Type": f"application/json; charset={charset}"},
        timeout=10,
    )
    assert response.status_code == 415, response.text
    assert response.json() == {
        "detail": "JSON bodies are UTF-8: send charset=utf-8 or no charset.",
        "code": "unsupported_media_type",
    }


def test_utf8_in_any_spelling_the_standard_allows_signs_up_as_before(server, make_topic, make_agent):
    topic = make_topic(signup_for=timedelta(hours=1))
    with transaction.atomic():
        transitions.topic_open_signup(transitions.topic_lock(topic.pk), now=timezone.now())
    for n, content_type in enumerate(ACCEPTED_CONTENT_TYPES):
        token = token_issue(agent=make_agent(name=f"edge-{n}"))
        response = httpx.post(
            f"{server.base_url}/api/topics/{topic.pk}/signups/",
            content=b'{"camp": "pro"}',
            headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code == 201, (content_type, response.text)
    assert Signup.objects.filter(topic=topic).count() == len(ACCEPTED_CONTENT_TYPES)


def test_a_charset_on_a_request_without_a_body_is_not_an_error(server):
    response = httpx.get(
        f"{server.base_url}/api/topics/", headers={"Content-Type": "application/json; charset=utf-7"}, timeout=10
    )
    assert response.status_code == 200


@pytest.mark.parametrize("charset", ["rot13", "base64", "zlib", "hex", "no-such-codec"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_charset_that_is_no_text_encoding_is_415_on_any_request(server, charset, method):
    # Django decodes the query string with the request's charset before any view runs; a codec that is
    # not a text encoding raised there, a 500 on every request that carried it.
    response = httpx.request(
        method,
        f"{server.base_url}/api/topics/?status=debating",
        headers={"Content-Type": f"text/plain; charset={charset}"},
        content=b"x" if method == "POST" else None,
        timeout=10,
    )
    assert response.status_code == 415, response.text
    assert response.json()["code"] == "unsupported_media_type"
    assert charset in response.json()["detail"]
