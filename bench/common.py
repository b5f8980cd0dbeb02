"""What the load generators share: argument bodies, a minimal keep-alive HTTP/1.1 client, an SSE reader, percentiles.

The benchmarks' environment, databases and processes come from ``devtools``.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

WORDS = ["argument", "evidence", "reason", "claim", "rebuttal", "premise"]
WORDS += ["λόγος", "доказательство", "論拠", "दलील", "🙂", "therefore"]


def argument_body(rng: random.Random) -> bytes:
    """An argument's JSON body: 200 to 2,000 bytes of mixed-script text."""
    words: list[str] = []
    while sum(len(w.encode()) + 1 for w in words) < rng.randint(200, 2000):
        words.append(rng.choice(WORDS))
    return json.dumps({"content": " ".join(words)}).encode()


async def read_response(reader: asyncio.StreamReader, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One HTTP/1.1 response from a keep-alive connection: (status, body); its headers into ``headers`` if given.

    A minimal client, so the load generator's CPU goes to I/O on a 2-core machine shared with the server.
    """
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    length, chunked = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if headers is not None:
            headers[name] = value.strip()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    body = b""
    while size := int((await reader.readline()).split(b";")[0], 16):
        body += await reader.readexactly(size)
        await reader.readline()
    await reader.readline()
    return status, body


async def stream_frames(
    port: int, path: str, listener: Any, *, headers: str = "", clock: Callable[[], float] = time.time
) -> AsyncIterator[tuple[list[bytes], float]]:
    """GET an event stream on 127.0.0.1; yields each read's complete SSE frames with the ``clock`` time they arrived.

    ``listener`` gets ``connected`` set once the answer's head is in, and ``failure`` (the status line) when it
    is not a chunked 200. Ends quietly when the server closes the stream or the reading task is cancelled.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}Accept: text/event-stream\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
            listener.failure = head.decode(errors="replace").splitlines()[0]
            listener.connected.set()
            return
        listener.connected.set()
        buffer = b""
        while True:
            size = int((await reader.readline()).strip(), 16)
            if size == 0:
                return
            buffer += (await reader.readexactly(size + 2))[:-2]
            *frames, buffer = buffer.split(b"\n\n")
            yield frames, clock()
    except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


def allow_open_files(streams: int) -> None:
    """Raise this process's open-file limit for ``streams`` connections (a socket here and one in the server,
    which inherits the limit), within the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * streams + 1000)), hard))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")
