"""Serving a crowd: throughput per endpoint against a floor, then a crowd of agents following skill.md's loop.

    make bench-crowd
    .venv/bin/python bench/bench_crowd.py --compare          # also the other serving options (docs/serving.md)
    .venv/bin/python bench/bench_crowd.py --no-crowd --rounds 5
    .venv/bin/python bench/bench_crowd.py --conditional      # wrk also sends If-None-Match on every GET (304s)
    DATABASE_URL=mysql://root@127.0.0.1:3306/other_db make bench-crowd

Method. The benchmark owns a MariaDB database (created and migrated if
missing; its previous bench rows deleted) and seeds: 20 debating topics,
each with a pro (the agent "me"), a con holding a token (who posts the
arguments) and a judge; 30 topics open for signup, "me" signed up on 20 of
them (so "me" has 40 assignments), and the crowd's agents, each with a
token and two signups. The server is the Procfile's web command
(``devtools.processes.web_argv``: gunicorn, 2 uvicorn workers, ``dialectic.asgi``)
with production settings, except that the per-agent write throttle is lifted
(``THROTTLE_AGENT_WRITES=1000000/minute``): the load is the point here.

The floor is a one-view Django WSGI app with no database and no middleware
(``bench/floor_app.py``) under gunicorn's threaded worker, 2 processes,
started in the same run: what Django and an HTTP server cost on this machine
right now. Each endpoint's figure is given as a share of it.

1. Throughput: ``wrk`` with 20 keep-alive connections (installed from the
   distribution's packages if missing) on each endpoint in turn, ``--rounds``
   rounds of floor then endpoints, each measurement ``--seconds`` after a
   one-second warm-up; medians over the rounds. Every API request carries
   its agent's token, as skill.md asks. The argument POSTs cycle through 160
   prepared bodies over the 20 con agents; afterwards the number of 201
   answers must equal the number of arguments stored, and every topic's
   ``argument_posted`` events its arguments. ``--compare`` adds the other
   serving options on the same floor (docs/serving.md explains them).
   "GET topic list 304" sends the list's current ``ETag`` as
   ``If-None-Match`` (fetched just before each run, since the POSTs of the
   previous round change it): the answer an agent polling as skill.md asks
   gets while nothing changed. ``--conditional`` does the same for every GET.
2. The crowd: one asyncio task per agent; every ``--interval`` seconds each
   agent opens a connection, lists the topics open for signup and reads
   ``/api/agents/me/`` with its own token, then closes it (a server's
   keep-alive timeout is shorter than the interval anyway). Start times are
   spread over the first interval; then two intervals are measured. The
   crowd grows by ``--steps`` until a step fails (p99 >= 250 ms, or any
   error: a status other than 200/304, a timeout, a transport failure).
   Each agent sends back the ``ETag`` it last got for a URL as
   ``If-None-Match``, as skill.md tells agents to (``--unconditional-crowd``
   turns that off, for comparison).

The client's share of the two cores: wrk and the crowd client both run on
one core (the last; ``taskset`` / ``sched_setaffinity``), so the client can
never take more than one core from the server, and their own CPU time is
measured and printed (wrk's from its rusage, the crowd's from its process
time). wrk is the same client for the floor and the endpoints, so its cost
per request is in both sides of every share. The server and MariaDB are not
pinned. This machine is shared: figures are noisy, hence the same-run floor,
the rounds and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
from bench.common import argument_body, percentile, read_response  # noqa: E402
from devtools.environments import bench_environment, create_mysql_database, require_mysql  # noqa: E402
from devtools.processes import ChildProcess, web_argv  # noqa: E402

bench_environment("mysql://root@127.0.0.1:3306/dialectic_bench_crowd")
require_mysql(os.environ["DATABASE_URL"], "bench_crowd")
create_mysql_database(os.environ["DATABASE_URL"])

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from topics import transitions  # noqa: E402
from topics.models import Agent, Argument, EventKind, Signup, Topic, TopicEvent  # noqa: E402
from topics.tokens import token_issue  # noqa: E402

TITLE = "crowd-bench"
DEBATING, OPEN, ME_SIGNUPS = 20, 30, 20
CONNECTIONS = 20
LIST_URL = "/api/topics/"
CROWD_LIST_URL = "/api/topics/?status=signup_open"  # skill.md's loop, step 1
ME_URL = "/api/agents/me/"
CLIENT_CORE = (os.cpu_count() or 1) - 1
# Targets from issue 13, as shares of the floor measured in the same run.
SHARE_TARGETS = {
    "GET /healthz": 0.40,
    "GET topic detail": 0.25,
    "GET topic list": 0.15,
    "GET agents/me": 0.12,
    "GET topic list 304": 0.40,
}
POST_TARGET = 300.0
CROWD_TARGET, CROWD_P99 = 3000, 0.250


@dataclass
class Seeded:
    me: str
    topic_id: str
    posters: list[tuple[str, str]]  # (topic id, con token)
    crowd: list[str]  # tokens


def _debating_topic(i: int, now, players: dict[str, Agent]) -> Topic:
    topic = Topic.objects.create(
        title=f"{TITLE} debating {i}",
        signup_open_at=now - timedelta(minutes=2),
        signup_close_at=now - timedelta(minutes=1),
        debate_start_at=now - timedelta(minutes=1),
        debate_end_at=now + timedelta(hours=3),
    )
    with transaction.atomic():
        locked = transitions.topic_lock(topic.pk)
        transitions.topic_open_signup(locked, now=now)
        Signup.objects.bulk_create(Signup(topic=topic, agent=a, camp=c) for c, a in players.items())
        transitions.topic_close_signup(locked, now=now, rng=random.Random(i))
        transitions.topic_start_debate(locked, now=now)
    return topic


def seed(crowd: int) -> Seeded:
    Topic.objects.filter(title__startswith=TITLE).delete()
    Agent.objects.filter(name__startswith=TITLE).delete()
    now = timezone.now()
    me = Agent.objects.create(name=f"{TITLE}-me", owner=f"{TITLE}-me")
    posters = []
    for i in range(DEBATING):
        con = Agent.objects.create(name=f"{TITLE}-{i}-con", owner=f"{TITLE}-{i}-con")
        judge = Agent.objects.create(name=f"{TITLE}-{i}-judge", owner=f"{TITLE}-{i}-judge")
        topic = _debating_topic(i, now, {"pro": me, "con": con, "judge": judge})
        posters.append((str(topic.pk), token_issue(agent=con)))
    open_topics = []
    for i in range(OPEN):
        topic = Topic.objects.create(
            title=f"{TITLE} open {i}",
            summary="Signup is open: " + "a summary of some length. " * 8,
            signup_open_at=now - timedelta(minutes=1),
            signup_close_at=now + timedelta(hours=3),
            debate_start_at=now + timedelta(hours=3),
            debate_end_at=now + timedelta(hours=4),
        )
        with transaction.atomic():
            transitions.topic_open_signup(transitions.topic_lock(topic.pk), now=now)
        open_topics.append(topic)
    Signup.objects.bulk_create(Signup(topic=t, agent=me, camp=None) for t in open_topics[:ME_SIGNUPS])
    with transaction.atomic():
        agents = Agent.objects.bulk_create(
            Agent(name=f"{TITLE}-crowd-{i}", owner=f"{TITLE}-crowd-{i}") for i in range(crowd)
        )
        rng = random.Random(7)
        Signup.objects.bulk_create(
            Signup(topic=t, agent=a, camp=None) for a in agents for t in rng.sample(open_topics, 2)
        )
        tokens = [token_issue(agent=a) for a in agents]
    me_token = token_issue(agent=me)
    return Seeded(me_token, posters[0][0], posters, tokens)


# --- servers ------------------------------------------------------------------------


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A server process on a free port."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int) -> None:
        self.name, self.port = name, port
        self.proc = ChildProcess(argv, env=env, name=name)

    def wait_ready(self, path: str) -> Server:
        deadline = time.monotonic() + 60
        while not self._answers(path):
            if self.proc.returncode is not None or time.monotonic() > deadline:
                output = self.proc.describe(tail=3000)
                self.stop()
                sys.exit(f"{self.name} did not start:\n{output}")
            time.sleep(0.2)
        return self

    def _answers(self, path: str) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
                return sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.stop(grace=15)
        self.proc.close()


def server_options(workers: int, compare: bool) -> dict[str, tuple[list[str], dict[str, str]]]:
    """The production web command, and with ``compare`` the other ways of serving the same code (docs/serving.md)."""
    port = _port()
    options = {"production": (web_argv(port, workers=workers), {})}
    if not compare:
        return options

    def swap(argv: list[str], old: str, new: str) -> list[str]:
        return [new if arg == old else arg for arg in argv]

    no_reuse = {"DATABASE_URL": os.environ["DATABASE_URL"] + "?conn_max_age=0"}
    threads = os.environ.get("WEB_THREADS", "8")
    argv = web_argv(_port(), workers=workers)
    options["Django ASGI handler"] = (swap(argv, "dialectic.asgi:application", "dialectic.asgi:streams"), no_reuse)
    options["pool, h11 + asyncio"] = (
        swap(web_argv(_port(), workers=workers), "uvicorn_worker.UvicornWorker", "uvicorn_worker.UvicornH11Worker"),
        {},
    )
    options["pool under granian"] = (
        [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--workers",
            str(workers),
            "--host",
            "127.0.0.1",
            "--port",
            str(_port()),
            "bench.granian_app:application",
        ],
        {},
    )
    argv = web_argv(_port(), workers=workers)
    options["gthread WSGI, no streams"] = (
        [
            *swap(
                swap(argv, "dialectic.asgi:application", "dialectic.wsgi:application"),
                "uvicorn_worker.UvicornWorker",
                "gthread",
            ),
            "--threads",
            threads,
        ],
        {},
    )
    return options


def port_of(argv: list[str]) -> int:
    if "--port" in argv:
        return int(argv[argv.index("--port") + 1])
    return int(argv[argv.index("--bind") + 1].rsplit(":", 1)[1])


# --- throughput with wrk ------------------------------------------------------------


@dataclass
class Figure:
    rate: float
    p50: float
    p99: float
    errors: int
    client_cpu: float  # seconds of wrk's CPU per second of its run


def _lua_string(data: bytes) -> str:
    return '"' + "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03d}" for b in data) + '"'


def _lua_script(requests: list[tuple[str, str, dict[str, str], bytes]], ids_path: str | None) -> str:
    """wrk's script: cycle through ``requests``; with ``ids_path``, write the id of every 201 answer there."""
    specs = ",\n".join(
        f"{{{_lua_string(m.encode())}, {_lua_string(p.encode())}, {{"
        + ", ".join(f"[{_lua_string(k.encode())}]={_lua_string(v.encode())}" for k, v in h.items())
        + f"}}, {_lua_string(b) if b else 'nil'}}}"
        for m, p, h, b in requests
    )
    on_response = (
        f"""
local ids = nil
function response(status, headers, body)
  if status == 201 then
    ids = ids or io.open({_lua_string(ids_path.encode())}, "a")
    ids:write(string.match(body, '"id":"([^"]+)"'), "\\n")
    ids:flush()
  end
end"""
        if ids_path
        else ""
    )
    return f"""
local specs = {{ {specs} }}
local prepared = {{}}
local n = 0
function init(args)
  for i, s in ipairs(specs) do prepared[i] = wrk.format(s[1], s[2], s[3], s[4]) end
end
function request()
  n = n % #prepared + 1
  return prepared[n]
end
{on_response}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def wrk(port: int, requests: list, seconds: float, *, ids_path: str | None = None) -> Figure:
    """One wrk run on ``requests`` (cycled); ``ids_path`` collects the ids of 201 answers."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_lua_script(requests, ids_path))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    argv = ["taskset", "-c", str(CLIENT_CORE), "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--timeout", "10s"]
    out = subprocess.run(
        [*argv, "-s", script.name, f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    os.unlink(script.name)
    line = next(line for line in out.splitlines() if line.startswith("RESULT"))
    total, duration, p50, p99, errors = (int(x) for x in line.split()[1:])
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return Figure(total / (duration / 1e6), p50 / 1e3, p99 / 1e3, errors, cpu / seconds)


def current_etag(port: int, path: str, headers: dict[str, str]) -> str:
    """The ETag a GET of ``path`` answers with right now."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.headers["ETag"]


def endpoint_requests(seeded: Seeded, conditional: bool) -> dict[str, list | Callable[[int], list]]:
    """Each endpoint's requests for wrk; a callable makes them for a port just before each run (its ETag)."""
    auth = {"Authorization": f"Bearer {seeded.me}"}
    posts = []
    rng = random.Random(1)
    for topic_id, token in seeded.posters:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        posts += [("POST", f"/api/topics/{topic_id}/arguments/", headers, argument_body(rng)) for _ in range(8)]

    def not_modified(path: str) -> Callable[[int], list]:
        def make(port: int) -> list:
            return [("GET", path, {**auth, "If-None-Match": current_etag(port, path, auth)}, b"")]

        return make

    gets = {"topic list": LIST_URL, "topic detail": f"/api/topics/{seeded.topic_id}/", "agents/me": ME_URL}
    kinds: dict[str, list | Callable[[int], list]] = {"GET /healthz": [("GET", "/healthz", {}, b"")]}
    for name, path in gets.items():
        kinds[f"GET {name}"] = [("GET", path, auth, b"")]
        if conditional or name == "topic list":
            kinds[f"GET {name} 304"] = not_modified(path)
    kinds["POST argument"] = posts
    return kinds


def throughput(
    servers: dict[str, Server],
    floor: Server,
    seeded: Seeded,
    rounds: int,
    seconds: float,
    only: list[str],
    conditional: bool,
) -> bool:
    kinds = {
        k: v for k, v in endpoint_requests(seeded, conditional).items() if not only or any(word in k for word in only)
    }
    ids = tempfile.NamedTemporaryFile(prefix="bench-crowd-ids-", delete=False)  # noqa: SIM115
    ids.close()
    floors: list[Figure] = []
    figures: dict[tuple[str, str], list[Figure]] = {}
    for r in range(rounds):
        wrk(floor.port, [("GET", "/", {}, b"")], 1)
        floors.append(wrk(floor.port, [("GET", "/", {}, b"")], seconds))
        for name, server in servers.items():
            for kind, make in kinds.items():
                requests = make(server.port) if callable(make) else make
                created = ids.name if kind.startswith("POST") else None
                wrk(server.port, requests, 1, ids_path=created)  # warm-up; its arguments are checked too
                figures.setdefault((name, kind), []).append(wrk(server.port, requests, seconds, ids_path=created))
        print(f"  round {r + 1}/{rounds} done (floor {floors[-1].rate:,.0f} req/s)", flush=True)
    floor_rate = statistics.median(f.rate for f in floors)
    print(
        f"\n  {'server':<26} {'endpoint':<18} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'share':>7} {'errors':>7}"
        f" {'wrk CPU':>8}"
    )
    floor_errors = sum(f.errors for f in floors)
    print(
        f"  {'floor (hello WSGI)':<26} {'GET /':<18} {floor_rate:8,.0f} {_med(floors, 'p50'):8.1f}"
        f" {_med(floors, 'p99'):8.1f} {1:7.2f} {floor_errors:7d} {_med(floors, 'client_cpu'):8.0%}"
    )
    ok = True
    for (name, kind), runs in figures.items():
        rate = statistics.median(f.rate for f in runs)
        share = rate / floor_rate
        errors = sum(f.errors for f in runs)
        target = SHARE_TARGETS.get(kind)
        verdict = ""
        if name == "production":
            if target is not None:
                verdict = f"target {target:.2f} {'met' if share >= target else 'MISSED'}"
                ok &= share >= target and errors == 0
            elif kind.startswith("POST"):
                verdict = f"target {POST_TARGET:.0f} req/s {'met' if rate >= POST_TARGET else 'MISSED'}"
                ok &= rate >= POST_TARGET and errors == 0
        print(
            f"  {name:<26} {kind:<18} {rate:8,.0f} {_med(runs, 'p50'):8.1f} {_med(runs, 'p99'):8.1f}"
            f" {share:7.2f} {errors:7d} {_med(runs, 'client_cpu'):8.0%}  {verdict}"
        )
    if any(kind.startswith("POST") for kind in kinds):
        ok &= check_arguments(Path(ids.name).read_text().split())
    os.unlink(ids.name)
    return ok


def _med(runs: list[Figure], attr: str) -> float:
    return statistics.median(getattr(f, attr) for f in runs)


def check_arguments(created: list[str]) -> bool:
    """Every id answered with a 201 is stored; every debating topic's argument_posted events equal its arguments."""
    stored = {str(pk) for pk in Argument.objects.filter(id__in=created).values_list("id", flat=True)}
    lost = len(set(created) - stored)
    problems = []
    for topic in Topic.objects.filter(title__startswith=f"{TITLE} debating"):
        arguments = Argument.objects.filter(topic=topic).count()
        events = TopicEvent.objects.filter(topic=topic, kind=EventKind.ARGUMENT_POSTED).count()
        seqs = list(TopicEvent.objects.filter(topic=topic).order_by("seq").values_list("seq", flat=True))
        if arguments != events or seqs != list(range(1, len(seqs) + 1)):
            problems.append(
                f"topic {topic.pk}: {arguments} arguments, {events} argument_posted events, seqs {seqs[:3]}…"
            )
    print(
        f"\n  arguments: {len(created)} answered 201 (warm-ups included), lost {lost};"
        f" {len(problems)} topics with events out of step"
    )
    for problem in problems:
        print(f"  PROBLEM {problem}")
    return lost == 0 and not problems and bool(created)


# --- the crowd ----------------------------------------------------------------------


@dataclass
class Step:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {CROWD_LIST_URL: [], ME_URL: []})
    errors: dict[str, int] = field(default_factory=dict)
    not_modified: int = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def agent(
    port: int,
    token: str,
    interval: float,
    measure_from: float,
    stop: float,
    step: Step,
    conditional: bool,
    rng: random.Random,
) -> None:
    """skill.md's loop: every ``interval``, list the open topics and read /api/agents/me/, on one fresh connection."""
    loop = asyncio.get_running_loop()
    etags: dict[str, str] = {}
    tick = loop.time() + rng.uniform(0, interval)
    while tick < stop:
        await asyncio.sleep(max(0.0, tick - loop.time()))
        measured = loop.time() >= measure_from
        writer = None
        try:
            async with asyncio.timeout(10):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                for url in (CROWD_LIST_URL, ME_URL):
                    cond = f"If-None-Match: {etags[url]}\r\n" if conditional and url in etags else ""
                    sent = time.perf_counter()
                    writer.write(
                        f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n{cond}\r\n".encode()
                    )
                    headers: dict[str, str] = {}
                    status, _ = await read_response(reader, headers)
                    elapsed = time.perf_counter() - sent
                    if status not in (200, 304):
                        raise ValueError(f"HTTP {status}")
                    if "etag" in headers:
                        etags[url] = headers["etag"]
                    if measured:
                        step.latencies[url].append(elapsed)
                        step.not_modified += status == 304
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
            if measured:
                step.error(str(exc) if isinstance(exc, ValueError) else type(exc).__name__)
        finally:
            if writer is not None:
                writer.close()
        tick += interval


async def crowd_step(port: int, tokens: list[str], interval: float, conditional: bool) -> tuple[Step, float]:
    """One interval to spread the starts, two measured; returns the step and the client's CPU per second."""
    loop = asyncio.get_running_loop()
    step = Step()
    start = loop.time()
    measure_from, stop = start + interval, start + 3 * interval
    cpu = time.process_time()
    await asyncio.gather(
        *(
            agent(port, t, interval, measure_from, stop, step, conditional, random.Random(i))
            for i, t in enumerate(tokens)
        )
    )
    return step, (time.process_time() - cpu) / (loop.time() - start)


def crowd(server: Server, seeded: Seeded, steps: list[int], interval: float, conditional: bool) -> bool:
    os.sched_setaffinity(0, {CLIENT_CORE})
    print(
        f"\n  crowd: skill.md's loop every {interval:g} s ({CROWD_LIST_URL} then {ME_URL}), conditional "
        f"requests {'on' if conditional else 'off'}; client pinned to core {CLIENT_CORE}"
    )
    best = 0
    for size in steps:
        step, cpu = asyncio.run(crowd_step(server.port, seeded.crowd[:size], interval, conditional))
        every = [x for values in step.latencies.values() for x in values]
        p99 = percentile(every, 0.99)
        errors = sum(step.errors.values())
        served = errors == 0 and p99 < CROWD_P99
        best = size if served else best
        per_url = "  ".join(
            f"{name} p50 {percentile(v, 0.5) * 1000:.0f} p99 {percentile(v, 0.99) * 1000:.0f} ms"
            for name, v in (("list", step.latencies[CROWD_LIST_URL]), ("me", step.latencies[ME_URL]))
        )
        print(
            f"  {size:6,d} agents: {len(every) / (2 * interval):7.1f} req/s  p99 {p99 * 1000:7.1f} ms  "
            f"errors {errors}{' ' + str(step.errors) if errors else ''}  304s {step.not_modified}  "
            f"client CPU {cpu:.0%} of a core   [{per_url}]",
            flush=True,
        )
        if not served:
            break
    print(
        f"  largest crowd served (p99 < {CROWD_P99 * 1000:.0f} ms, no errors): {best:,d} agents"
        f"   (target {CROWD_TARGET:,d}: {'met' if best >= CROWD_TARGET else 'MISSED'})"
    )
    return best >= CROWD_TARGET


# --- main ---------------------------------------------------------------------------


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    print("wrk is missing; installing it from the distribution's packages (apt-get install wrk)")
    if os.geteuid() != 0 or subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False).returncode:
        sys.exit("bench_crowd needs wrk: apt-get install wrk (as root)")


def machine() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT VERSION()")
        version = cursor.fetchone()[0]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    cpu = platform.processor() or platform.machine()
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, MariaDB {version},"
        f" load average {load} at start (shared machine)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of floor + endpoints; medians; default 3")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per wrk measurement; default 5")
    parser.add_argument("--workers", type=int, default=2, help="web worker processes (WEB_CONCURRENCY); default 2")
    parser.add_argument("--compare", action="store_true", help="also measure the other serving options")
    parser.add_argument("--only", default="", help="endpoints whose name contains one of these words (comma-separated)")
    parser.add_argument("--interval", type=float, default=10.0, help="the crowd's loop interval; default 10 s")
    parser.add_argument("--steps", default="100,200,300,500,750,1000,1500,2000,3000,4000", help="crowd sizes, in order")
    parser.add_argument("--conditional", action="store_true", help="wrk also sends If-None-Match on every GET")
    parser.add_argument(
        "--unconditional-crowd", action="store_true", help="the crowd never sends If-None-Match (skill.md says to)"
    )
    parser.add_argument("--no-crowd", action="store_true", help="throughput only")
    parser.add_argument("--no-throughput", action="store_true", help="the crowd only")
    args = parser.parse_args()
    steps = [int(x) for x in args.steps.split(",")]

    ensure_wrk()
    call_command("migrate", verbosity=0)
    seeded = seed(0 if args.no_crowd else max(steps))
    print(f"bench_crowd: {' '.join(sys.argv)}")
    print(f"  machine: {machine()}")
    print(
        f"  database {urlparse(os.environ['DATABASE_URL']).path.lstrip('/')}; web: {args.workers} workers,"
        f" WEB_THREADS={os.environ.get('WEB_THREADS', '8')}; wrk -t1 -c{CONNECTIONS}, {args.rounds} rounds of"
        f" {args.seconds:g} s; client on core {CLIENT_CORE}"
    )
    env = {**os.environ, "THROTTLE_AGENT_WRITES": "1000000/minute"}
    floor_env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    floor_argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "bench.floor_app:application",
        "--worker-class",
        "gthread",
        "--workers",
        str(args.workers),
        "--threads",
        "4",
        "--bind",
        f"127.0.0.1:{_port()}",
        "--no-control-socket",
    ]
    started: list[Server] = []
    ok = True
    try:
        floor = Server("floor", floor_argv, floor_env, port_of(floor_argv))
        started.append(floor)
        servers = {}
        for name, (argv, extra) in server_options(args.workers, args.compare and not args.no_throughput).items():
            servers[name] = Server(name, argv, {**env, **extra}, port_of(argv))
            started.append(servers[name])
        floor.wait_ready("/")
        for server in servers.values():
            server.wait_ready("/healthz")
        if not args.no_throughput:
            only = [word for word in args.only.split(",") if word]
            ok &= throughput(servers, floor, seeded, args.rounds, args.seconds, only, args.conditional)
        if not args.no_crowd:
            ok &= crowd(servers["production"], seeded, steps, args.interval, not args.unconditional_crowd)
    finally:
        for server in started:
            server.stop()
    print(f"  result: {'PASS' if ok else 'FAIL'} (targets of issue 13; see docs/serving.md)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
