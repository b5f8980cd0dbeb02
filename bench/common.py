"""What the benchmarks share: their own MariaDB database, the web server command, the load generators' pieces."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from urllib.parse import urlparse

from scripts.stack import terminate, web_argv  # noqa: F401  (re-exported: the stack's process helpers)


def bench_environment(database_url: str) -> None:
    """Production settings on the benchmark's own database (DATABASE_URL overrides), quiet logs."""
    os.environ.setdefault("DATABASE_URL", database_url)
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key")
    os.environ["DJANGO_SETTINGS_MODULE"] = "dialectic.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")


def ensure_mysql_database(url: str, bench: str) -> None:
    """Create the MariaDB database ``url`` names, so a benchmark runs on a fresh machine."""
    import MySQLdb

    parts = urlparse(url)
    if parts.scheme != "mysql":
        sys.exit(f"{bench} measures MariaDB/MySQL; DATABASE_URL is {parts.scheme}://")
    conn = MySQLdb.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
    )
    conn.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{parts.path.lstrip('/')}` CHARACTER SET utf8mb4")
    conn.close()


# --- what the load generators share -------------------------------------------------

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


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")
