"""A real Server-Sent Events client: one stream read with httpx in a background thread.

The caller drives the debate meanwhile (API calls, a ticker) and waits on
what the stream has shown: events (``id``, ``event``, JSON ``data``),
comments (heartbeats), the ``retry`` hint, and whether the server ended the
stream or we left it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httpx

from devtools.processes import wait_for


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

    def _parse(self, lines: Iterable[str]) -> bool:
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
