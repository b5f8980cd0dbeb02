"""Push benchmark: agents told of a burst of transitions, 1,000 by webhook and 1,000 on the agent stream.

    make bench-push
    DATABASE_URL=mysql://root@127.0.0.1:3306/other_db make bench-push ARGS="--agents 500 --floor-topics 20"

Method. The benchmark owns a MariaDB database (created if missing; its
previous bench rows deleted). It seeds ``2 x --agents`` agents, each its own
owner: half register a webhook (``topics.agent_webhooks.webhook_set``, the
API's service) at a real local receiver (``devtools.fabric_receiver``, a
threaded HTTP server in this process, answering 200), the other half get a
token and follow ``GET /api/agents/me/events/`` on ONE server process as the
Procfile runs it (gunicorn, one ``uvicorn_worker.UvicornWorker``), as raw
asyncio HTTP/1.1 connections in this process. Every agent signs up (rows
written directly, so no ``signup_accepted``) to exactly one topic in
``signup_open``, three to a topic, mixing both kinds of agent; the debates
start in an hour, so allocation is the only transition due.

One ticker process (``run_ticker``, 1 s interval, production delivery
settings: 16 concurrent webhook sends, a 5 s delivery budget per pass)
runs throughout. A burst is one UPDATE that makes the signup close of a
set of topics due: the ticker allocates them, and each allocation appends a
``placed`` AgentEvent for its three agents in the transition's transaction.
First a floor burst (``--floor-topics``, the same path with little load),
then the burst of every other topic.

A sample is one event: from the AgentEvent's ``created_at`` (set in the
transition's transaction, a few milliseconds before its commit; same machine,
same clock) to its arrival at the receiver (webhook: the request reached
the receiver; stream: the frame was read). Every webhook request's
signature is verified with the ``standardwebhooks`` library. Lost is an
event in the database that never arrived; duplicated is one that arrived
twice (webhooks: the same ``webhook-id`` twice; stream: the same seq twice).
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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
from bench.common import allow_open_files, percentile, stream_frames  # noqa: E402
from devtools.environments import bench_environment, create_mysql_database, require_mysql  # noqa: E402
from devtools.fabric_receiver import FabricServer  # noqa: E402
from devtools.processes import Stack  # noqa: E402

bench_environment("mysql://root@127.0.0.1:3306/dialectic_bench_push")
# The receiver is on loopback over plain http: allowed for development and tests only, as here.
os.environ.update(WEBHOOK_ALLOW_HTTP="1", WEBHOOK_ALLOW_PRIVATE_NETWORKS="1")

require_mysql(os.environ["DATABASE_URL"], "bench_push")
create_mysql_database(os.environ["DATABASE_URL"])

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402
from standardwebhooks.webhooks import Webhook  # noqa: E402

from topics import agent_webhooks, transitions  # noqa: E402
from topics.models import Agent, AgentEvent, AgentEventKind, CampName, Signup, Topic  # noqa: E402
from topics.tokens import token_issue  # noqa: E402

TITLE = "push-bench"
# Wall-clock time of time.monotonic() == 0 in this process: the receiver stamps arrivals with monotonic time.
WALL_OFFSET = time.time() - time.monotonic()


@dataclass
class Seeded:
    topics: list[uuid.UUID]
    secrets: dict[uuid.UUID, str]  # webhook agents: agent id → signing secret
    tokens: dict[uuid.UUID, str]  # stream agents: agent id → bearer token


def seed(agent_count: int) -> tuple[Seeded, set[uuid.UUID]]:
    """Topics in signup_open with three signups each; the stream agents' tokens; the webhook agents' ids."""
    Topic.objects.filter(title__startswith=TITLE).delete()
    Agent.objects.filter(name__startswith=TITLE).delete()
    now = timezone.now()
    agents = Agent.objects.bulk_create(Agent(name=f"{TITLE}-{i}", owner=f"{TITLE}-{i}") for i in range(2 * agent_count))
    rng = random.Random(14)
    rng.shuffle(agents)  # each topic gets a mix of webhook and stream agents
    by_webhook, by_stream = {a.pk for a in agents[::2]}, [a for a in agents[1::2]]
    topics = []
    for i in range(0, len(agents) - 2, 3):
        topic = Topic.objects.create(
            title=f"{TITLE} {i // 3}",
            signup_open_at=now - timedelta(minutes=1),
            signup_close_at=now + timedelta(hours=1),
            debate_start_at=now + timedelta(hours=1, minutes=1),
            debate_end_at=now + timedelta(hours=2),
        )
        with transaction.atomic():
            transitions.topic_open_signup(transitions.topic_lock(topic.pk), now=now)
        Signup.objects.bulk_create(
            Signup(topic=topic, agent=agent, camp=camp)
            for agent, camp in zip(agents[i : i + 3], (CampName.PRO, CampName.CON, CampName.JUDGE), strict=True)
        )
        topics.append(topic.pk)
    return Seeded(topics, secrets={}, tokens={a.pk: token_issue(agent=a) for a in by_stream}), by_webhook


def register_webhooks(seeded: Seeded, agent_ids: set, receiver: FabricServer) -> None:
    for agent in Agent.objects.filter(pk__in=agent_ids):
        _, secret = agent_webhooks.webhook_set(agent=agent, url=f"{receiver.base_url}/hook/{agent.pk}")
        seeded.secrets[agent.pk] = secret


@dataclass
class Listener:
    agent_id: uuid.UUID
    token: str
    received: list[tuple[int, float]] = field(default_factory=list)  # (seq, wall-clock arrival)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    failure: str | None = None


async def listen(port: int, listener: Listener) -> None:
    """One agent stream: stamp every event's arrival (wall clock, as the events' created_at)."""
    auth = f"Authorization: Bearer {listener.token}\r\n"
    async for frames, arrived in stream_frames(port, "/api/agents/me/events/", listener, headers=auth):
        for frame in frames:
            if frame.startswith(b"id: "):
                listener.received.append((int(frame[4 : frame.index(b"\n")]), arrived))


def burst(topic_ids: list[uuid.UUID]) -> float:
    """Make the signup close of ``topic_ids`` due now; returns the wall-clock time of the UPDATE."""
    at = time.time()
    Topic.objects.filter(pk__in=topic_ids).update(signup_close_at=timezone.now() - timedelta(seconds=1))
    return at


def placed_events(topic_ids: list[uuid.UUID]) -> dict[tuple[uuid.UUID, int], float]:
    """(agent, seq) → created_at (wall clock) of the ``placed`` events the burst of ``topic_ids`` wrote."""
    ids = {str(t) for t in topic_ids}
    rows = AgentEvent.objects.filter(kind=AgentEventKind.PLACED, agent__name__startswith=TITLE)
    return {
        (agent_id, seq): created.astimezone(UTC).timestamp()
        for agent_id, seq, created, data in rows.values_list("agent_id", "seq", "created_at", "data")
        if data["topic_id"] in ids
    }


async def wait_arrivals(expected: dict, arrived: Callable[[], set], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if expected and set(expected) <= arrived():
            break
        await asyncio.sleep(0.2)
    return time.monotonic() - start


def measure(name: str, expected: dict, seeded: Seeded, receiver: FabricServer, listeners: list[Listener]) -> dict:
    hooks: dict[tuple[uuid.UUID, int], list[float]] = {}
    ids_seen: list[str] = []
    bad_signatures = 0
    for request in receiver.requests():
        agent_id = uuid.UUID(request.path.rsplit("/", 1)[1])
        try:
            Webhook(seeded.secrets[agent_id]).verify(request.body.decode(), request.headers)
        except Exception:
            bad_signatures += 1
        ids_seen.append(request.headers["webhook-id"])
        hooks.setdefault((agent_id, json.loads(request.body)["seq"]), []).append(WALL_OFFSET + request.at)
    streams: dict[tuple[uuid.UUID, int], list[float]] = {}
    for listener in listeners:
        for seq, at in listener.received:
            streams.setdefault((listener.agent_id, seq), []).append(at)
    result = {"phase": name, "bad_signatures": bad_signatures}
    for kind, arrivals, audience in (("webhook", hooks, seeded.secrets), ("stream", streams, seeded.tokens)):
        mine = {key: created for key, created in expected.items() if key[0] in audience}
        latencies = [arrivals[key][0] - created for key, created in mine.items() if key in arrivals]
        result[kind] = {
            "events": len(mine),
            "lost": sum(1 for key in mine if key not in arrivals),
            "duplicated": sum(len(arrivals[key]) - 1 for key in mine if key in arrivals),
            "p50": statistics.median(latencies) if latencies else float("nan"),
            "p95": percentile(latencies, 0.95),
            "max": max(latencies, default=float("nan")),
        }
    result["webhook"]["duplicate_ids"] = len(ids_seen) - len(set(ids_seen))
    for kind in ("webhook", "stream"):
        r = result[kind]
        print(
            f"{name} {kind}: {r['events']} events, {r['lost']} lost, {r['duplicated']} duplicated; "
            f"p50 {r['p50'] * 1000:.0f} ms p95 {r['p95'] * 1000:.0f} ms max {r['max'] * 1000:.0f} ms",
            flush=True,
        )
    return result


async def run(args, server: Stack, seeded: Seeded, receiver: FabricServer) -> list[dict]:
    listeners = [Listener(agent_id, token) for agent_id, token in seeded.tokens.items()]
    tasks = []
    for start in range(0, len(listeners), 100):
        chunk = listeners[start : start + 100]
        tasks.extend(asyncio.create_task(listen(server.port, lst)) for lst in chunk)
        await asyncio.gather(*(lst.connected.wait() for lst in chunk))
    failed = [lst.failure for lst in listeners if lst.failure]
    if failed:
        raise RuntimeError(f"{len(failed)} streams refused, e.g. {failed[0]}")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        while (await client.get("/api/_stream/stats/")).json()["agents"]["listeners"] < len(listeners):
            await asyncio.sleep(0.2)
    print(f"{len(listeners)} agent streams open, {len(seeded.secrets)} webhooks registered", flush=True)
    await asyncio.sleep(args.settle)

    results = []
    floor, rest = seeded.topics[: args.floor_topics], seeded.topics[args.floor_topics :]
    for name, topics in (("floor", floor), ("burst", rest)):
        started = await asyncio.to_thread(burst, topics)
        expected: dict = {}
        # The events exist once the ticker has allocated every topic of the burst.
        while len(expected) < 3 * len(topics) and time.time() - started < args.timeout:
            await asyncio.sleep(0.5)
            expected = await asyncio.to_thread(placed_events, topics)

        def arrived() -> set:
            got = {(uuid.UUID(r.path.rsplit("/", 1)[1]), json.loads(r.body)["seq"]) for r in receiver.requests()}
            return got | {(lst.agent_id, seq) for lst in listeners for seq, _ in lst.received}

        await wait_arrivals(expected, arrived, timeout=args.timeout)
        await asyncio.sleep(1.0)  # room for a duplicate to show up
        result = measure(name, expected, seeded, receiver, listeners)
        result["topics"] = len(topics)
        result["allocated_in"] = max(expected.values(), default=started) - started
        results.append(result)
        receiver.received.clear()
        for lst in listeners:
            lst.received.clear()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000, help="agents of each kind (default 1000)")
    parser.add_argument("--floor-topics", type=int, default=10, help="topics in the floor burst (default 10)")
    parser.add_argument("--settle", type=float, default=3.0, help="pause after connecting, before the first burst")
    parser.add_argument("--timeout", type=float, default=180.0, help="longest wait for a burst's events")
    args = parser.parse_args()

    allow_open_files(args.agents)

    call_command("migrate", verbosity=0)
    seeded, webhook_agents = seed(args.agents)
    receiver = FabricServer().start()
    register_webhooks(seeded, webhook_agents, receiver)
    receiver.received.clear()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-push-"))
    # One web process (the agent stream) and one ticker, as the Procfile runs them; the ticker logs its passes.
    server = Stack(env={**os.environ, "SSE_STATS_ENABLED": "1", "LOG_LEVEL": "INFO"}, log_dir=log_dir, tick="1s")
    try:
        server.start(timeout=60)
        floor, burst_result = asyncio.run(run(args, server, seeded, receiver))
    finally:
        server.stop()
        receiver.stop()

    print()
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}")
    print(f"database: {os.environ['DATABASE_URL'].rsplit('@', 1)[-1]}   web: gunicorn, 1 UvicornWorker   ticker: 1")
    print(f"logs: {log_dir}")
    print(f"{'':34}{'floor':>14}{'burst':>14}")
    print(f"{'topics allocated':34}{floor['topics']:>14}{burst_result['topics']:>14}")
    print(f"{'last allocation after (s)':34}{floor['allocated_in']:>14.1f}{burst_result['allocated_in']:>14.1f}")
    for kind in ("webhook", "stream"):
        for label, key, ms in (
            ("events", "events", False),
            ("lost", "lost", False),
            ("duplicated", "duplicated", False),
            ("p50 commit→received (ms)", "p50", True),
            ("p95 commit→received (ms)", "p95", True),
            ("max commit→received (ms)", "max", True),
        ):
            cells = [f"{r[kind][key] * 1000:.0f}" if ms else f"{r[kind][key]}" for r in (floor, burst_result)]
            print(f"{kind + ' ' + label:34}{cells[0]:>14}{cells[1]:>14}")
    print(f"{'bad signatures':34}{floor['bad_signatures']:>14}{burst_result['bad_signatures']:>14}")
    print()
    ok = True
    for kind in ("webhook", "stream"):
        r = burst_result[kind]
        met = r["p95"] < 1 and not r["lost"] and not r["duplicated"]
        ok = ok and met
        print(
            f"{kind}: p95 {r['p95']:.3f}s over {r['events']} events (target < 1s), "
            f"{r['lost']} lost, {r['duplicated']} duplicated: {'met' if met else 'MISSED'}"
        )
    ok = ok and not burst_result["bad_signatures"] and not burst_result["webhook"]["duplicate_ids"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
