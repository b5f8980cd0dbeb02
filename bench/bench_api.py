"""Agent API throughput: concurrent agents posting arguments vs. /healthz, on the real ASGI server and MariaDB.

    make bench-api
    .venv/bin/python bench/bench_api.py --agents 40 --seconds 30
    DATABASE_URL=mysql://root@127.0.0.1:3306/other_db make bench-api

Method. The benchmark owns a MariaDB database (created and migrated if
missing; its previous bench rows deleted). It seeds ``agents / 2`` topics in
``debating`` through ``topics.transitions``, each with a pro and a con
agent holding real tokens, then starts the server as the Procfile does:
gunicorn with ``--workers 2`` of ``uvicorn_worker.UvicornWorker``
(``dialectic.asgi``), production settings, except that the per-agent write
throttle is lifted (``THROTTLE_AGENT_WRITES=1000000/minute``): the load is
the point here, not the limit.

The client is this process: one asyncio task per agent, each on its own
keep-alive HTTP/1.1 connection (a minimal hand-written client, so client
overhead stays small on a 2-core machine shared with the server and the
database). The connections are spread evenly over the two workers (checked
in /proc): an idle uvicorn worker accepts every pending connection at once,
so without this one worker would serve everything and the other idle. Each
task sends its next request as soon as the previous answer arrives (closed
loop, no think time). After a ``--warmup`` that is not counted, the same
connections alternate between two kinds of request in ``--slices`` slices
each (default 4: five seconds of one, then five of the other, four times
over), ``--seconds`` in all per kind, so that background load drifting
during the run (this is a shared machine) weighs on both figures alike:

1. ``GET /healthz`` (one ``SELECT 1``): the ceiling of this stack on this machine;
2. ``POST /api/topics/{id}/arguments/`` with 200 to 2,000 bytes of mixed-script text
   (64 bodies per agent prepared beforehand).

A request counts in the slice it was sent in. Each kind also reports the
CPU time the server workers and the local MariaDB server spent per request
(``/proc``; MariaDB's is the whole server's, so another user of it shows up there).
Reported per run: completed requests per second, latency p50/p99 (time from
writing the request to reading the whole response), errors (any status but
200/201, or a transport failure), and the arguments' throughput as a share
of /healthz's. Finally every argument id from a 201 answer is looked up in
the database (lost = answered 201 but not stored; must be 0), and each
topic's ``argument_posted`` events are checked to equal its arguments, with
gap-free seqs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
from bench.common import argument_body, percentile, read_response  # noqa: E402
from devtools.environments import bench_environment, create_mysql_database, require_mysql  # noqa: E402
from devtools.processes import ChildProcess, free_port, socket_inodes, wait_until_healthy, web_argv  # noqa: E402

bench_environment("mysql://root@127.0.0.1:3306/dialectic_bench_api")

TITLE = "api-bench"


require_mysql(os.environ["DATABASE_URL"], "bench_api")
create_mysql_database(os.environ["DATABASE_URL"])

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from topics import transitions  # noqa: E402
from topics.models import Agent, Argument, EventKind, Signup, Topic, TopicEvent  # noqa: E402
from topics.tokens import token_issue  # noqa: E402


@dataclass
class Seat:
    topic_id: str
    camp: str
    token: str


def seed(agents: int) -> list[Seat]:
    Topic.objects.filter(title__startswith=TITLE).delete()
    Agent.objects.filter(name__startswith=TITLE).delete()
    now = timezone.now()
    seats = []
    for i in range((agents + 1) // 2):
        topic = Topic.objects.create(
            title=f"{TITLE} {i}",
            signup_open_at=now - timedelta(minutes=2),
            signup_close_at=now - timedelta(minutes=1),
            debate_start_at=now - timedelta(minutes=1),
            debate_end_at=now + timedelta(hours=2),
        )
        players = {
            camp: Agent.objects.create(name=f"{TITLE}-{i}-{camp}", owner=f"{TITLE}-{i}-{camp}")
            for camp in ("pro", "con", "judge")
        }
        with transaction.atomic():
            locked = transitions.topic_lock(topic.pk)
            transitions.topic_open_signup(locked, now=now)
            Signup.objects.bulk_create(Signup(topic=topic, agent=a, camp=c) for c, a in players.items())
            transitions.topic_close_signup(locked, now=now, rng=random.Random(i))
            transitions.topic_start_debate(locked, now=now)
        seats += [Seat(str(topic.pk), camp, token_issue(agent=players[camp])) for camp in ("pro", "con")]
    return seats[:agents]


class Server:
    """gunicorn with two uvicorn workers, as the Procfile runs it."""

    def __init__(self, workers: int) -> None:
        self.port = free_port()
        log_dir = Path(tempfile.mkdtemp(prefix="bench-api-server-"))
        env = {**os.environ, "THROTTLE_AGENT_WRITES": "1000000/minute"}
        self.web = ChildProcess(web_argv(self.port, workers=workers), env=env, name="web", log_dir=log_dir)
        self.proc = self.web.proc
        try:
            wait_until_healthy(f"http://127.0.0.1:{self.port}", watch=[self.web], timeout=60)
        except RuntimeError as exc:
            self.stop()
            sys.exit(f"{exc}\nlogs: {log_dir}")

    def worker_pids(self) -> list[int]:
        return [int(pid) for pid in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]

    def stop(self) -> None:
        self.web.close()


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds in this kind's slices, per process group

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def agent_loop(
    port: int, connections: list, i: int, request, expect: int, stop: float, run: Run | None, rng: random.Random
) -> None:
    """Agent ``i`` sends requests on its connection until ``stop``; ``run`` None: warm-up, nothing recorded.

    A request counts in the slice it was sent in (so the slice's first
    requests, sent all at once, balance the last ones still in flight at its end).
    """
    reader, writer = connections[i]
    while time.monotonic() < stop:
        payload = request(rng)
        sent = time.perf_counter()
        try:
            writer.write(payload)
            await writer.drain()
            status, body = await read_response(reader)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            if run is not None:
                run.error(type(exc).__name__)
            writer.close()
            reader, writer = connections[i] = await asyncio.open_connection("127.0.0.1", port)
            continue
        elapsed = time.perf_counter() - sent
        if run is None:
            continue
        if status != expect:
            run.error(f"HTTP {status}")
            continue
        run.latencies.append(elapsed)
        if expect == 201:
            run.created.append(json.loads(body)["id"])


def healthz_request(rng: random.Random) -> bytes:
    return b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def argument_request(seat: Seat, rng: random.Random):
    """Requests prepared before the run, so the client spends its CPU on I/O, not on building bodies."""
    head = (
        f"POST /api/topics/{seat.topic_id}/arguments/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {seat.token}\r\nContent-Type: application/json\r\n"
    )
    prepared = []
    for _ in range(64):
        body = argument_body(rng)
        prepared.append(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)

    def build(rng: random.Random) -> bytes:
        return rng.choice(prepared)

    return build


def _server_side_inode(port: int, client_port: int) -> str | None:
    """The inode of the server's end of our connection from ``client_port``, from /proc/net/tcp."""
    wanted_local, wanted_remote = f"{port:04X}", f"{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{wanted_local}") and fields[2].endswith(f":{wanted_remote}"):
            return fields[9]
    return None


async def balanced_connections(server: Server, count: int) -> list[tuple]:
    """``count`` keep-alive connections spread evenly over the workers.

    An idle uvicorn worker accepts every pending connection in one go, so
    connections opened together all land on one worker and the other idles.
    Open them one at a time, see (in /proc) which worker accepted each, and
    re-open those that landed on a worker that already has its share.
    """
    workers = server.worker_pids()
    share = -(-count // len(workers))
    held = {pid: 0 for pid in workers}
    connections: list[tuple] = []
    deadline = time.monotonic() + 60
    while len(connections) < count:
        if time.monotonic() > deadline:
            sys.exit(f"could not spread {count} connections over workers {workers}: {held}")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        client_port = writer.get_extra_info("sockname")[1]
        owner = None
        for _ in range(200):  # the accept happens on the server's own time
            inode = _server_side_inode(server.port, client_port)
            owner = next((pid for pid in workers if inode and inode in socket_inodes(pid)), None)
            if owner is not None:
                break
            await asyncio.sleep(0.005)
        if owner is None or held[owner] >= share:
            writer.close()
            await asyncio.sleep(0.01)
            continue
        held[owner] += 1
        connections.append((reader, writer))
    return connections


async def measure(server: Server, seats: list[Seat], slices: int, warmup: float, seconds: float) -> tuple[Run, Run]:
    """``/healthz`` and argument posting in alternating slices on the same connections: (healthz, arguments).

    Background load on a shared machine drifts over a run; alternating the two
    kinds in short slices lets the drift weigh on both figures alike.
    """
    connections = await balanced_connections(server, len(seats))
    health, posts = Run(), Run()
    kinds = [
        ([healthz_request] * len(seats), 200, health),
        ([argument_request(seat, random.Random(i)) for i, seat in enumerate(seats)], 201, posts),
    ]
    rngs = [random.Random(i) for i in range(len(seats))]
    plan = [(requests, expect, None, warmup / 2) for requests, expect, _ in kinds]  # unmeasured warm-up
    plan += [(requests, expect, run, seconds / slices) for _ in range(slices) for requests, expect, run in kinds]
    groups = {"server workers": server.worker_pids(), "MariaDB": database_pids()}
    for requests, expect, run, duration in plan:
        stop = time.monotonic() + duration
        before = {name: cpu_seconds(pids) for name, pids in groups.items()}
        await asyncio.gather(
            *(
                agent_loop(server.port, connections, i, requests[i], expect, stop, run, rngs[i])
                for i in range(len(seats))
            )
        )
        if run is not None:
            for name, pids in groups.items():
                run.cpu[name] = run.cpu.get(name, 0.0) + cpu_seconds(pids) - before[name]
    for _, writer in connections:
        writer.close()
    return health, posts


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def database_pids() -> list[int]:
    """The local MariaDB/MySQL server's pid, when it runs on this machine (for its CPU time); else none."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() in ("mariadbd", "mysqld"):
                pids.append(int(stat.parent.name))
        except OSError:
            continue
    return pids


def report(name: str, run: Run, seconds: float) -> float:
    rate = len(run.latencies) / seconds
    print(
        f"  {name:<22} {rate:8.1f} req/s   p50 {percentile(run.latencies, 0.50) * 1000:7.1f} ms"
        f"   p99 {percentile(run.latencies, 0.99) * 1000:7.1f} ms   ok {len(run.latencies):6d}"
        f"   errors {sum(run.errors.values())}{' ' + str(run.errors) if run.errors else ''}"
    )
    if run.latencies:
        per_request = ", ".join(
            f"{group} {cpu / len(run.latencies) * 1000:.2f} ms" for group, cpu in run.cpu.items() if cpu
        )
        print(f"  {'':<22} CPU per request: {per_request}")
    return rate


def verify(seats: list[Seat], created: list[str]) -> tuple[int, list[str]]:
    """Lost arguments (201 but not stored) and per-topic event inconsistencies."""
    stored = {str(pk) for pk in Argument.objects.filter(id__in=created).values_list("id", flat=True)}
    lost = len(set(created) - stored)
    problems = []
    for topic_id in sorted({s.topic_id for s in seats}):
        arguments = Argument.objects.filter(topic_id=topic_id).count()
        events = TopicEvent.objects.filter(topic_id=topic_id, kind=EventKind.ARGUMENT_POSTED).count()
        seqs = list(TopicEvent.objects.filter(topic_id=topic_id).order_by("seq").values_list("seq", flat=True))
        if arguments != events:
            problems.append(f"topic {topic_id}: {arguments} arguments, {events} argument_posted events")
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append(f"topic {topic_id}: event seqs have gaps")
    return lost, problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=20, help="concurrent agents (connections); default 20")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run; default 20")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before the runs; default 3")
    parser.add_argument(
        "--slices", type=int, default=4, help="alternating slices each kind's seconds are measured in; default 4"
    )
    parser.add_argument("--workers", type=int, default=2, help="server worker processes; default 2")
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    seats = seed(args.agents)
    print(
        f"bench_api: {args.agents} agents on {len({s.topic_id for s in seats})} debating topics, "
        f"{args.workers} uvicorn workers under gunicorn, {args.seconds:.0f} s of each kind "
        f"in {args.slices} alternating slices after {args.warmup:.0f} s warm-up"
    )
    print(
        f"  machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"database {urlparse(os.environ['DATABASE_URL']).path.lstrip('/')} on MariaDB"
    )
    server = Server(args.workers)
    try:
        health, posts = asyncio.run(measure(server, seats, args.slices, args.warmup, args.seconds))
    finally:
        server.stop()
    health_rate = report("GET /healthz", health, args.seconds)
    post_rate = report("POST arguments", posts, args.seconds)
    ratio = post_rate / health_rate if health_rate else float("nan")
    lost, problems = verify(seats, posts.created)
    stored = Argument.objects.filter(topic__title__startswith=TITLE).count()
    print(f"  arguments / healthz    {ratio:8.1%}   (target >= 40%)")
    print(f"  201 answers {len(posts.created)}, stored {stored} (incl. warm-up), lost {lost}")
    for problem in problems:
        print(f"  PROBLEM {problem}")
    errors = sum(health.errors.values()) + sum(posts.errors.values())
    ok = errors == 0 and lost == 0 and not problems and ratio >= 0.40
    print(f"  result: {'PASS' if ok else 'FAIL'} (zero errors, nothing lost, ratio >= 40%)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
