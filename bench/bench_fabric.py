"""Fabric delivery benchmark: how fast real ticker processes drain the outbox, and what a hanging Fabric costs.

    make bench-fabric                                   # SQLite file in /tmp
    DATABASE_URL=mysql://root@127.0.0.1:3306/dialectic_bench make bench-fabric

Method: a local stand-in for Fabric (``devtools/fabric_receiver.py``: a threaded
HTTP server on 127.0.0.1 that records every request) answers 201, with a
chosen latency. The outbox is seeded with N pending announcements, then K
``manage.py run_ticker --once`` processes start together. Reported: wall
time (process start to last exit, Python startup included), the server-side
span (first to last request received) and the delivery rate over that
span, and duplicates (keys received more than once; must be 0). Then one
ticker pass against a Fabric that never answers, with a backlog queued:
the pass time it reports and the requests Fabric saw.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
from devtools.environments import bench_environment  # noqa: E402
from devtools.processes import ChildProcess  # noqa: E402

bench_environment("sqlite:////tmp/dialectic-bench-fabric.sqlite3")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from devtools.fabric_receiver import FabricServer, Reply, fabric_env  # noqa: E402
from devtools.seeding import seed_announcements  # noqa: E402
from fabric_bridge.models import Announcement, AnnouncementStatus  # noqa: E402
from topics.models import Topic  # noqa: E402

PASS_LINE = re.compile(r"announcements attempted in ([\d.]+)s")
TITLE = "fabric-bench"


def reset() -> None:
    Topic.objects.filter(title__startswith=TITLE).delete()  # cascades to their announcements


def seed(count: int) -> None:
    reset()
    seed_announcements(count, title=TITLE)


def tickers(count: int, env: dict[str, str]) -> tuple[float, list[str]]:
    """Start ``count`` one-pass tickers together; wall time until the last exits, and their stderr."""
    started = time.monotonic()
    procs = [ChildProcess.manage("run_ticker", "--once", env=env) for _ in range(count)]
    try:
        codes = [proc.wait(timeout=600) for proc in procs]
        outputs = [proc.stderr for proc in procs]
    finally:
        for proc in procs:
            proc.close()
    for proc, code in zip(procs, codes, strict=True):
        if code != 0:
            raise SystemExit(f"ticker exited {code}:\n{proc.stderr}")
    return time.monotonic() - started, outputs


def throughput(count: int, ticker_count: int, latency: float) -> dict:
    seed(count)
    server = FabricServer().start()
    server.default = Reply(201, delay=latency)
    env = {**os.environ, **fabric_env(server, FABRIC_DELIVERY_BUDGET="10m"), "LOG_LEVEL": "INFO"}
    try:
        wall, _ = tickers(ticker_count, env)
    finally:
        server.stop()
    received = server.requests()
    keys = Counter(r.key for r in received)
    sent = Announcement.objects.filter(topic__title__startswith=TITLE, status=AnnouncementStatus.SENT).count()
    span = received[-1].at - received[0].at if len(received) > 1 else 0.0
    return {
        "wall": wall,
        "span": span,
        "rate": len(received) / span if span else float("nan"),
        "received": len(received),
        "sent": sent,
        "duplicates": sum(n - 1 for n in keys.values()),
    }


def hanging(backlog: int, read_timeout: str) -> dict:
    seed(backlog)
    server = FabricServer().start()
    server.default = Reply.hanging()
    env = {
        **os.environ,
        **fabric_env(server, FABRIC_READ_TIMEOUT=read_timeout, FABRIC_CONNECT_TIMEOUT="1s"),
        "LOG_LEVEL": "INFO",
    }
    try:
        wall, outputs = tickers(1, env)
    finally:
        server.stop()
    match = PASS_LINE.search(outputs[0])
    return {"wall": wall, "pass": float(match.group(1)) if match else float("nan"), "received": len(server.requests())}


def main() -> None:
    call_command("migrate", verbosity=0)
    database = f"{connection.vendor} ({connection.settings_dict['NAME']})"
    print(f"Fabric delivery benchmark — {database}, {os.cpu_count()} CPUs")
    print(__doc__.split("Method:", 1)[1].strip().replace("\n", " "))
    print()
    columns = ("backlog", "latency", "tickers", "wall s", "span s", "sends/s")
    print(" ".join(f"{c:>8}" for c in columns), f"{'sent':>6} {'dupes':>6}")
    for count, latency in ((2000, 0.0), (500, 0.02)):
        for ticker_count in (1, 2, 4):
            r = throughput(count, ticker_count, latency)
            print(
                f"{count:>8} {latency * 1000:>6.0f}ms {ticker_count:>8} {r['wall']:>8.2f} {r['span']:>8.2f}"
                f" {r['rate']:>8.0f} {r['sent']:>6} {r['duplicates']:>6}"
            )
            if r["sent"] != count or r["duplicates"]:
                raise SystemExit("FAILED: not every announcement was sent exactly once")
    print()
    r = hanging(200, "2s")
    print(
        f"Hanging Fabric, 200 queued, read timeout 2s, connect 1s: one pass took {r['pass']:.2f}s"
        f" (process wall {r['wall']:.2f}s); Fabric saw {r['received']} request(s)."
    )
    reset()


if __name__ == "__main__":
    main()
