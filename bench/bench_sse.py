"""SSE fan-out benchmark: 1,000 listeners on one server process, arguments posted through the API.

    make bench-sse
    DATABASE_URL=mysql://root@127.0.0.1:3306/other_db make bench-sse ARGS="--listeners 2000 --rate 10"

Method. The benchmark owns a MariaDB database (created if missing; its
previous bench rows deleted). It seeds ``--topics`` topics in ``debating``
(each with pro, con and judge agents and tokens, via
``topics.transitions``), then starts ONE server process as the
Procfile does (gunicorn, one ``uvicorn_worker.UvicornWorker``) with the
production stream settings (poll 500 ms, heartbeat 15 s) and
``SSE_STATS_ENABLED=1``. Listeners are raw asyncio HTTP/1.1 connections in
this process (a chunked-transfer decoder and an SSE frame splitter, no
client library overhead), spread evenly over the topics.

Two phases, same posting load: first one listener per topic, then
``--listeners`` in total. In each, after the listeners are connected (the
server's stats say so) and a short settle, pro and con agents POST
``/api/topics/{id}/arguments/`` at ``--rate`` per second in total, round
robin over the topics, for ``--seconds``. For every argument and every
listener on its topic the time from the 201 response to the
``argument_posted`` event's arrival is one latency sample (negative when
the event beats the response to the client; also reported from the
request's start). Missing deliveries are counted (must be 0).

Database load is counted inside the server by the stream machinery itself
(``topics.db_threads.DbCounter``: statements sent by the poller and by
listeners' backlog reads, and new connections), read from
``/api/_stream/stats/`` at the start and end of each phase's window. The
API requests that post the arguments are not part of it. Memory is the
worker process's VmRSS (and VmHWM, its peak) and thread count from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
from bench.common import allow_open_files, stream_frames  # noqa: E402
from devtools.environments import bench_environment, create_mysql_database, require_mysql  # noqa: E402
from devtools.processes import ChildProcess, free_port, wait_until_healthy, web_argv  # noqa: E402

bench_environment("mysql://root@127.0.0.1:3306/dialectic_bench_sse")


require_mysql(os.environ["DATABASE_URL"], "bench_sse")
create_mysql_database(os.environ["DATABASE_URL"])

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from topics import transitions  # noqa: E402
from topics.models import Agent, Signup, Topic  # noqa: E402
from topics.tokens import token_issue  # noqa: E402

TITLE = "sse-bench"


@dataclass
class Debate:
    topic_id: uuid.UUID
    tokens: dict[str, str]  # camp → bearer token


def seed(count: int) -> list[Debate]:
    Topic.objects.filter(title__startswith=TITLE).delete()
    Agent.objects.filter(name__startswith=TITLE).delete()
    now = timezone.now()
    debates = []
    for i in range(count):
        topic = Topic.objects.create(
            title=f"{TITLE} {i}",
            signup_open_at=now - timedelta(minutes=2),
            signup_close_at=now - timedelta(minutes=1),
            debate_start_at=now - timedelta(minutes=1),
            debate_end_at=now + timedelta(hours=2),
        )
        agents = {}
        for camp in ("pro", "con", "judge"):
            agents[camp] = Agent.objects.create(name=f"{TITLE}-{i}-{camp}", owner=f"{TITLE}-{i}-{camp}")
        with transaction.atomic():
            locked = transitions.topic_lock(topic.pk)
            transitions.topic_open_signup(locked, now=now)
            Signup.objects.bulk_create(Signup(topic=topic, agent=a, camp=c) for c, a in agents.items())
            transitions.topic_close_signup(locked, now=now, rng=random.Random(i))
            transitions.topic_start_debate(locked, now=now)
        debates.append(Debate(topic.pk, {camp: token_issue(agent=agents[camp]) for camp in ("pro", "con")}))
    return debates


class Server:
    """One gunicorn master with one uvicorn worker, as the Procfile runs it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        log_dir = Path(tempfile.mkdtemp(prefix="bench-sse-server-"))
        env = {
            **os.environ,
            "SSE_STATS_ENABLED": "1",
            # The load is the point here, not the per-agent write limit.
            "THROTTLE_AGENT_WRITES": "1000000/minute",
        }
        self.web = ChildProcess(web_argv(self.port, workers=1), env=env, name="web", log_dir=log_dir)
        self.proc = self.web.proc
        try:
            wait_until_healthy(self.base, watch=[self.web], timeout=60)
        except RuntimeError as exc:
            self.stop()
            sys.exit(f"{exc}\nlogs: {log_dir}")

    def worker_pid(self) -> int:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        if len(children) != 1:
            raise RuntimeError(f"expected one worker, found {children}")
        return int(children[0])

    def memory(self) -> tuple[int, int, int]:
        """The worker's VmRSS and VmHWM in MiB, and its thread count."""
        status = Path(f"/proc/{self.worker_pid()}/status").read_text()
        values = dict(line.split(":", 1) for line in status.splitlines())
        values = {key: value.split()[0] for key, value in values.items() if value.split()}
        return int(values["VmRSS"]) // 1024, int(values["VmHWM"]) // 1024, int(values["Threads"])

    def stop(self) -> None:
        self.web.close()


@dataclass
class Listener:
    topic_id: uuid.UUID
    received: dict[str, float] = field(default_factory=dict)  # argument id → arrival (monotonic)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    failure: str | None = None


async def listen(port: int, listener: Listener) -> None:
    """One SSE connection: time every argument_posted (monotonic clock)."""
    path = f"/api/topics/{listener.topic_id}/events/"
    async for frames, arrived in stream_frames(port, path, listener, clock=time.monotonic):
        for frame in frames:
            if b"\nevent: argument_posted\n" in frame:
                data = frame.split(b"\ndata: ", 1)[1]
                listener.received[json.loads(data)["id"]] = arrived


@dataclass
class Post:
    topic_id: uuid.UUID
    started: float
    answered: float
    argument_id: str


async def post_arguments(
    client: httpx.AsyncClient, debates: list[Debate], *, rate: float, seconds: float
) -> tuple[list[Post], int]:
    """POST arguments at ``rate`` per second for ``seconds``; returns the 201s and the count of failures."""
    posts: list[Post] = []
    failures = 0
    count = int(rate * seconds)
    start = time.monotonic()

    async def one(i: int) -> None:
        nonlocal failures
        debate = debates[i % len(debates)]
        camp = "pro" if (i // len(debates)) % 2 == 0 else "con"
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        started = time.monotonic()
        response = await client.post(
            f"/api/topics/{debate.topic_id}/arguments/",
            json={"content": f"Argument {i} for {camp}: " + "lorem ipsum dolor sit amet " * 16},
            headers={"Authorization": f"Bearer {debate.tokens[camp]}"},
        )
        answered = time.monotonic()
        if response.status_code != 201:
            failures += 1
            print(f"  POST failed: {response.status_code} {response.text[:200]}", file=sys.stderr)
            return
        posts.append(Post(debate.topic_id, started, answered, response.json()["id"]))

    await asyncio.gather(*(one(i) for i in range(count)))
    return posts, failures


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def wait_listeners(client: httpx.AsyncClient, expected: int, timeout: float = 120) -> float:
    start = time.monotonic()
    while (await client.get("/api/_stream/stats/")).json()["listeners"] < expected:
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"fewer than {expected} listeners registered after {timeout}s")
        await asyncio.sleep(0.2)
    return time.monotonic() - start


async def phase(
    name: str, server: Server, client: httpx.AsyncClient, debates: list[Debate], listeners: list[Listener], args
) -> dict:
    await asyncio.sleep(args.settle)
    before = (await client.get("/api/_stream/stats/")).json()
    window_start = time.monotonic()
    posts, failures = await post_arguments(client, debates, rate=args.rate, seconds=args.seconds)
    await asyncio.sleep(2.0)  # let the last events arrive
    window = time.monotonic() - window_start
    after = (await client.get("/api/_stream/stats/")).json()
    rss, hwm, threads = server.memory()

    from_201, from_request, missing = [], [], 0
    by_topic: dict[uuid.UUID, list[Post]] = {}
    for post in posts:
        by_topic.setdefault(post.topic_id, []).append(post)
    for listener in listeners:
        for post in by_topic.get(listener.topic_id, []):
            arrived = listener.received.get(post.argument_id)
            if arrived is None:
                missing += 1
                continue
            from_201.append(arrived - post.answered)
            from_request.append(arrived - post.started)

    def rate(key: str) -> float:
        return (after[key] - before[key]) / window

    result = {
        "phase": name,
        "listeners": after["listeners"],
        "posts": len(posts),
        "post_failures": failures,
        "deliveries": len(from_201),
        "missing": missing,
        "p50_from_201": statistics.median(from_201),
        "p95_from_201": percentile(from_201, 0.95),
        "max_from_201": max(from_201),
        "p50_from_request": statistics.median(from_request),
        "p95_from_request": percentile(from_request, 0.95),
        "api_p50": statistics.median(p.answered - p.started for p in posts),
        "poll_queries_per_s": rate("poll_queries"),
        "backlog_queries_per_s": rate("backlog_queries"),
        "connects_per_s": rate("db_connects"),
        "polls_per_s": rate("polls"),
        "rss_mib": rss,
        "peak_rss_mib": hwm,
        "threads": threads,
        "window_s": window,
    }
    print(
        f"{name}: {result['listeners']} listeners, {len(posts)} posts, {len(from_201)} deliveries, {missing} missing; "
        f"latency from 201 p50 {result['p50_from_201'] * 1000:.0f} ms p95 {result['p95_from_201'] * 1000:.0f} ms; "
        f"stream statements {result['poll_queries_per_s'] + result['backlog_queries_per_s']:.2f}/s; "
        f"RSS {rss} MiB",
        flush=True,
    )
    return result


async def run(args, server: Server, debates: list[Debate]) -> list[dict]:
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=server.base, limits=limits, timeout=30) as client:
        listeners: list[Listener] = []
        tasks: list[asyncio.Task] = []

        async def connect(count: int) -> float:
            start = time.monotonic()
            fresh = [Listener(debates[(len(listeners) + i) % len(debates)].topic_id) for i in range(count)]
            listeners.extend(fresh)
            for batch in range(0, count, 100):
                chunk = fresh[batch : batch + 100]
                tasks.extend(asyncio.create_task(listen(server.port, lst)) for lst in chunk)
                await asyncio.gather(*(lst.connected.wait() for lst in chunk))
            failed = [lst.failure for lst in fresh if lst.failure]
            if failed:
                raise RuntimeError(f"{len(failed)} listeners refused, e.g. {failed[0]}")
            await wait_listeners(client, len(listeners))
            return time.monotonic() - start

        results = []
        took = await connect(len(debates))
        print(f"{len(listeners)} listeners connected in {took:.1f}s", flush=True)
        results.append(await phase("few", server, client, debates, listeners, args))
        took = await connect(args.listeners - len(listeners))
        print(f"{len(listeners)} listeners connected in {took:.1f}s", flush=True)
        results.append(await phase("many", server, client, debates, listeners, args))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listeners", type=int, default=1000, help="listeners in the second phase (default 1000)")
    parser.add_argument("--topics", type=int, default=10, help="debating topics the listeners spread over")
    parser.add_argument("--rate", type=float, default=5.0, help="arguments posted per second, in total")
    parser.add_argument("--seconds", type=float, default=20.0, help="posting time per phase")
    parser.add_argument("--settle", type=float, default=3.0, help="pause after connecting, before measuring")
    args = parser.parse_args()

    allow_open_files(args.listeners)

    call_command("migrate", verbosity=0)
    debates = seed(args.topics)
    server = Server()
    try:
        results = asyncio.run(run(args, server, debates))
    finally:
        server.stop()

    few, many = results
    statements = {r["phase"]: r["poll_queries_per_s"] + r["backlog_queries_per_s"] for r in results}
    print()
    print(f"database: {os.environ['DATABASE_URL'].rsplit('@', 1)[-1]}   server: gunicorn, 1 UvicornWorker")
    print(f"load: {args.rate:g} arguments/s over {args.topics} topics for {args.seconds:g}s per phase")
    print(f"{'':32}{'few':>14}{'many':>14}")
    rows = [
        ("listeners", "listeners", "{:.0f}"),
        ("arguments posted (201)", "posts", "{:.0f}"),
        ("deliveries measured", "deliveries", "{:.0f}"),
        ("deliveries missing", "missing", "{:.0f}"),
        ("latency from 201, p50 (ms)", "p50_from_201", "ms"),
        ("latency from 201, p95 (ms)", "p95_from_201", "ms"),
        ("latency from 201, max (ms)", "max_from_201", "ms"),
        ("latency from request, p95 (ms)", "p95_from_request", "ms"),
        ("POST /arguments/ p50 (ms)", "api_p50", "ms"),
        ("polls/s", "polls_per_s", "{:.2f}"),
        ("poll statements/s", "poll_queries_per_s", "{:.2f}"),
        ("backlog statements/s", "backlog_queries_per_s", "{:.2f}"),
        ("new DB connections/s", "connects_per_s", "{:.2f}"),
        ("worker RSS at end (MiB)", "rss_mib", "{:.0f}"),
        ("worker peak RSS (MiB)", "peak_rss_mib", "{:.0f}"),
        ("worker threads", "threads", "{:.0f}"),
    ]
    for label, key, fmt in rows:
        cells = [f"{r[key] * 1000:.0f}" if fmt == "ms" else fmt.format(r[key]) for r in (few, many)]
        print(f"{label:32}{cells[0]:>14}{cells[1]:>14}")
    ratio = statements["many"] / statements["few"] if statements["few"] else float("inf")
    print()
    print(f"p95 from 201 with {many['listeners']} listeners: {many['p95_from_201']:.3f}s (target < 2s)")
    print(f"stream statements/s, {many['listeners']} vs {few['listeners']} listeners: {ratio:.2f}x (target <= 2x)")
    ok = many["p95_from_201"] < 2 and ratio <= 2 and not many["missing"] and not few["missing"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
