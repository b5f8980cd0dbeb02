"""A stand-in for Fabric: a real threaded HTTP server on 127.0.0.1 that answers from a script.

Used by the Fabric tests (in process, and behind real ticker processes) and
by ``bench/bench_fabric.py``. Tests queue replies (status codes, bodies, headers, or a hang that outlasts
the client's read timeout) and read back every request exactly as it
arrived. ``stop()`` closes the port, so the next send is refused;
``start()`` opens the same port again.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 201
    body: Any = field(default_factory=lambda: {"ok": True})
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # read the request, then answer nothing until the server stops
    delay: float = 0.0  # seconds to think before answering: a slow but healthy Fabric

    @classmethod
    def hanging(cls) -> Reply:
        return cls(hang=True)


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # keys lower-cased
    body: bytes
    at: float  # time.monotonic()

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def key(self) -> str | None:
        return self.headers.get("idempotency-key")


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog is 5: 16 senders connecting at once overflowed it, and the
    # dropped connections came back as resets or a SYN retried a second later, which is the
    # listener's limit, not the sender's. A real receiver's backlog is the kernel's default.
    request_queue_size = 128


class FabricServer:
    def __init__(self) -> None:
        self.port = 0
        self.received: list[Received] = []
        self._script: deque[Reply] = deque()
        self.default = Reply()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._unhang = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def keys(self) -> list[str]:
        return [r.key for r in self.requests()]

    def unhang(self) -> None:
        """Let hanging requests (and any later hang replies) end without an answer."""
        self._unhang.set()

    def start(self) -> FabricServer:
        server = self
        self._unhang.clear()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                expected = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(expected)
                if len(body) < expected:
                    # The client died between the headers and the end of the body (a killed sender):
                    # nothing was delivered, as a real receiver would see it.
                    self.close_connection = True
                    return
                with server._lock:
                    server.received.append(
                        Received(
                            method=self.command,
                            path=self.path,
                            headers={k.lower(): v for k, v in self.headers.items()},
                            body=body,
                            at=time.monotonic(),
                        )
                    )
                    reply = server._script.popleft() if server._script else server.default
                if reply.hang:
                    server._unhang.wait()
                    self.close_connection = True
                    return
                if reply.delay:
                    server._unhang.wait(reply.delay)
                payload = json.dumps(reply.body).encode() if not isinstance(reply.body, bytes) else reply.body
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (read timeout) before we answered

            do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        httpd = _Server(("127.0.0.1", self.port), Handler)
        httpd.daemon_threads = True
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket (later connections are refused) and release hanging requests."""
        self._unhang.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None


def fabric_env(server: FabricServer, **overrides: str) -> dict[str, str]:
    """FABRIC_* variables for a child process (a ticker) that should deliver to ``server``."""
    env = {
        "FABRIC_GUILD_BASE_URL": server.base_url,
        "FABRIC_ANNOUNCE_CHANNEL_ID": "announce-7",
        "FABRIC_SYSTEM_API_KEY": "system-key-1",
        "FABRIC_BOT_BEARER_TOKEN": "bot-token-1",
        "FABRIC_CONNECT_TIMEOUT": "1s",
        "FABRIC_READ_TIMEOUT": "500ms",
    }
    env.update(overrides)
    return env
