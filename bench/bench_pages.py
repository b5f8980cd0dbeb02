"""The spectator pages under load: anonymous GET /topics/{id}/ of a 50-argument debate against the floor.

    make bench-pages
    .venv/bin/python bench/bench_pages.py --rounds 5 --seconds 10
    DATABASE_URL=mysql://root@127.0.0.1:3306/other_db make bench-pages

Method: bench_crowd's (docs/serving.md). The benchmark owns a MariaDB database
(created and migrated if missing, its previous bench rows deleted) and seeds one
public debating topic with 50 arguments of 200 to 2,000 bytes of mixed-script
Markdown-free text (``bench.common.argument_body``). The server is the
Procfile's web command (gunicorn, 2 uvicorn workers, ``dialectic.asgi``) with
production settings; the floor is bench_crowd's hello-world Django WSGI app
(``bench/floor_app.py``) under gunicorn's threaded worker, 2 processes, started
in the same run. ``wrk`` (20 keep-alive connections, one thread, pinned to the
last core) measures the floor, then the page, ``--rounds`` times, each after a
one-second warm-up; the figure is the median page rate as a share of the median
floor rate. Target (issue 15): 0.10.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
from bench.common import argument_body  # noqa: E402
from devtools.environments import bench_environment, create_mysql_database, require_mysql  # noqa: E402
from devtools.processes import ChildProcess, free_port, wait_for, web_argv  # noqa: E402

bench_environment("mysql://root@127.0.0.1:3306/dialectic_bench_pages")
require_mysql(os.environ["DATABASE_URL"], "bench_pages")
create_mysql_database(os.environ["DATABASE_URL"])

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from topics import services, transitions  # noqa: E402
from topics.models import Agent, Signup, Topic  # noqa: E402

TITLE = "pages-bench"
ARGUMENTS = 50
TARGET = 0.10
CLIENT_CORE = (os.cpu_count() or 1) - 1


def seed() -> str:
    Topic.objects.filter(title__startswith=TITLE).delete()
    Agent.objects.filter(name__startswith=TITLE).delete()
    now = timezone.now()
    players = {c: Agent.objects.create(name=f"{TITLE}-{c}", owner=f"{TITLE}-{c}") for c in ("pro", "con", "judge")}
    topic = Topic.objects.create(
        title=f"{TITLE}: a debate of {ARGUMENTS} arguments",
        summary="What a spectator's browser asks for.",
        signup_open_at=now - timedelta(minutes=2),
        signup_close_at=now - timedelta(minutes=1),
        debate_start_at=now - timedelta(minutes=1),
        debate_end_at=now + timedelta(hours=3),
    )
    with transaction.atomic():
        locked = transitions.topic_lock(topic.pk)
        transitions.topic_open_signup(locked, now=now)
        Signup.objects.bulk_create(Signup(topic=topic, agent=a, camp=c) for c, a in players.items())
        transitions.topic_close_signup(locked, now=now, rng=random.Random(1))
        transitions.topic_start_debate(locked, now=now)
    rng = random.Random(15)
    for i in range(ARGUMENTS):
        content = json.loads(argument_body(rng))["content"]
        services.argument_create(topic_id=topic.pk, agent=players["pro" if i % 2 == 0 else "con"], content=content)
    return str(topic.pk)


def wrk(port: int, path: str, seconds: float) -> float:
    argv = ["taskset", "-c", str(CLIENT_CORE), "wrk", "-t1", "-c20", f"-d{seconds:g}s", "--timeout", "10s"]
    out = subprocess.run([*argv, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        sys.exit(f"errors while measuring {path}:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def server(name: str, argv: list[str], env: dict[str, str], url: str) -> ChildProcess:
    child = ChildProcess(argv, env=env, name=name)

    def up() -> bool:
        if child.returncode is not None:
            sys.exit(f"{name} did not start:\n{child.describe(tail=3000)}")
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_for(up, timeout=60, interval=0.2, message=f"{name} did not answer {url}")
    return child


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of floor + page; medians; default 3")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per wrk measurement; default 5")
    parser.add_argument("--workers", type=int, default=2, help="web worker processes; default 2")
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    topic_id = seed()
    path = f"/topics/{topic_id}/"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"bench_pages: {' '.join(sys.argv)}")
    print(f"  {os.cpu_count()} cores, load average {load} at start (shared machine); {args.rounds} rounds of")
    print(f"  {args.seconds:g} s, wrk -t1 -c20 on core {CLIENT_CORE}; web: {args.workers} workers; GET {path}")
    floor_port, web_port = free_port(), free_port()
    floor_env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    floor_argv = [
        sys.executable, "-m", "gunicorn", "bench.floor_app:application", "--worker-class", "gthread",
        "--workers", str(args.workers), "--threads", "4", "--bind", f"127.0.0.1:{floor_port}", "--no-control-socket",
    ]  # fmt: skip
    children = []
    try:
        children.append(server("floor", floor_argv, floor_env, f"http://127.0.0.1:{floor_port}/"))
        web = web_argv(web_port, workers=args.workers)
        children.append(server("web", web, dict(os.environ), f"http://127.0.0.1:{web_port}{path}"))
        floors, pages = [], []
        for r in range(args.rounds):
            wrk(floor_port, "/", 1)
            floors.append(wrk(floor_port, "/", args.seconds))
            wrk(web_port, path, 1)
            pages.append(wrk(web_port, path, args.seconds))
            print(f"  round {r + 1}: floor {floors[-1]:,.0f} req/s, page {pages[-1]:,.0f} req/s", flush=True)
            time.sleep(0.5)
    finally:
        for child in children:
            child.close()
    floor, page = statistics.median(floors), statistics.median(pages)
    share = page / floor
    ok = share >= TARGET
    print(f"  floor (hello WSGI)        {floor:8,.0f} req/s")
    print(f"  GET /topics/{{id}}/ (50 args) {page:6,.0f} req/s  share {share:.3f}  target {TARGET:.2f}", end=" ")
    print("met" if ok else "MISSED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
