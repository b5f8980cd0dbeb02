"""A real ASGI server process and a real SSE client, for the live-stream tests.

The server is started the way the Procfile runs it (gunicorn with the
uvicorn worker), on a free port of 127.0.0.1, against the test database
(``tests.support.child_env``). The client reads the stream with httpx in a
background thread so the test can drive the debate meanwhile.
"""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO

import httpx

from scripts.stack import terminate, web_argv
from tests.support import BASE_DIR, child_env, wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AsgiServer:
    """gunicorn + UvicornWorker, one worker, as a context manager that never outlives the test.

    Starting returns at once (start several, then ``wait_ready`` each).
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        defaults = {"SSE_HEARTBEAT_INTERVAL": "1s", "SSE_POLL_INTERVAL": "100ms", "SSE_STATS_ENABLED": "1"}
        self.proc = subprocess.Popen(
            web_argv(self.port, graceful_timeout=1),
            cwd=BASE_DIR,
            env=child_env({**defaults, **(env or {})}),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30) -> AsgiServer:
        wait_for(self._ready, timeout=timeout, interval=0.1, message="the ASGI server did not answer /healthz")
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the ASGI server exited with {self.proc.returncode}:\n{self.log}")
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def events_url(self, topic_id: object) -> str:
        return f"{self.base_url}/api/topics/{topic_id}/events/"

    def stats(self) -> dict[str, int]:
        return httpx.get(f"{self.base_url}/api/_stream/stats/", timeout=5).json()

    @property
    def log(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", errors="replace")

    def close(self) -> None:
        terminate(self.proc, grace=10)
        self._log.close()

    def __enter__(self) -> AsgiServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True)
class SseEvent:
    id: int
    kind: str
    data: dict


@dataclass
class SseReader:
    """One stream read in a background thread.

    ``stop_when`` is checked after every event; when it returns True the
    reader disconnects (a client going away mid-stream).
    """

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    stop_when: Callable[[list[SseEvent]], bool] | None = None
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    events: list[SseEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None
    ended: bool = False  # the server closed the stream
    disconnected: bool = False  # we closed it
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            with httpx.stream("GET", self.url, headers=self.headers, timeout=httpx.Timeout(30, connect=5)) as response:
                self.status = response.status_code
                self.response_headers = dict(response.headers)
                if response.status_code != 200:
                    response.read()
                    self.ended = True
                    return
                if self._parse(response.iter_lines()):
                    self.disconnected = True
                else:
                    self.ended = True
        except BaseException as exc:  # reported by the waits, with the test's context
            self.error = exc

    def _parse(self, lines) -> bool:
        """Collect events until the stream ends (False) or we decide to leave (True)."""
        block: dict[str, str] = {}
        for line in lines:
            if self._closing.is_set():
                return True
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
            elif line:
                name, _, value = line.partition(":")
                block[name] = value.removeprefix(" ")
            elif block:
                if "retry" in block:
                    self.retry = int(block["retry"])
                if "data" in block:
                    self.events.append(SseEvent(int(block["id"]), block["event"], json.loads(block["data"])))
                    if self.stop_when and self.stop_when(self.events):
                        return True
                block = {}
        return False

    @property
    def seqs(self) -> list[int]:
        return [event.id for event in self.events]

    def _check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"SSE reader failed: {self.error!r}") from self.error

    def wait_for(self, condition: Callable[[SseReader], bool], *, timeout: float = 15, message: str = "") -> None:
        def met() -> bool:
            self._check()
            return condition(self)

        wait_for(met, timeout=timeout, message=message or f"stream condition not met; got {self.seqs}")

    def wait_for_seq(self, seq: int, *, timeout: float = 15) -> None:
        self.wait_for(lambda r: bool(r.events) and r.events[-1].id >= seq, timeout=timeout)

    def wait_done(self, *, timeout: float = 15) -> None:
        """Until the stream is over: ended by the server, or left by us."""
        self._thread.join(timeout)
        self._check()
        assert not self._thread.is_alive(), f"stream still open after {timeout}s; got {self.seqs}"

    def close(self) -> None:
        """Leave: noticed at the next line, so within one heartbeat."""
        self._closing.set()
        self._thread.join(10)

    def __enter__(self) -> SseReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
