"""A web process holds at most WEB_THREADS + 1 database connections, whatever it is asked (docs/operations.md).

A real server (the Procfile's command, one worker, ``WEB_THREADS=4``) gets
thousands of requests of every kind from more client threads than it has
pool threads: API reads and writes, their 4xx paths, the admin, /skill.md,
/healthz, Django's own 404 page, and event streams opened and closed while
one spectator keeps its stream open. Meanwhile and afterwards the worker's
database connections are counted from the database's side: on MariaDB the
rows of information_schema.PROCESSLIST whose client port is a socket of the
worker, on SQLite the worker's file descriptors on the database file.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from django.db import connection
from django.utils import timezone

from devtools.environments import child_env
from devtools.processes import Stack, socket_inodes
from tests.api_support import player, stage_topic

pytestmark = pytest.mark.django_db(transaction=True)

WEB_THREADS = 4
BOUND = WEB_THREADS + 1  # the pool's threads and the stream poller's
CLIENTS = 8
REQUESTS_PER_CLIENT = 250
STREAMS = 60


def worker_pid(server: Stack) -> int:
    (pid,) = Path(f"/proc/{server.web.pid}/task/{server.web.pid}/children").read_text().split()
    return int(pid)


def _local_ports(inodes: set[str]) -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def connections_of(pid: int) -> set[str]:
    """The database connections process ``pid`` has open now, as the database (or the file system) sees them."""
    if connection.vendor == "sqlite":
        database = os.path.realpath(connection.settings_dict["NAME"])
        found = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == database:
                    found.add(fd.name)
            except OSError:
                continue
        return found
    ports = _local_ports(socket_inodes(pid))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ID, HOST FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
            [connection.settings_dict["NAME"]],
        )
        rows = cursor.fetchall()
    return {str(pid_) for pid_, host in rows if host and int(host.rsplit(":", 1)[1]) in ports}


def open_transactions(ids: set[str]) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX")
        return len({str(row[0]) for row in cursor.fetchall()} & ids)


def test_connections_stay_within_the_bound_under_every_kind_of_request():
    now = timezone.now()
    debate = stage_topic("debating", now=now)
    signup = stage_topic("signup_open", now=now)
    joiner = player()
    env = child_env({"WEB_THREADS": str(WEB_THREADS), "THROTTLE_AGENT_WRITES": "100000/minute"})
    with Stack(env=env, ticker=False) as server:
        pid = worker_pid(server)
        topic = f"/api/topics/{debate.topic.pk}/"
        pro = {"Authorization": f"Bearer {debate.pro.token}"}
        judge = {"Authorization": f"Bearer {debate.judge.token}"}
        argument = {"content": "Connections are a bounded resource."}

        # (method, path, headers, json or raw body, the status it must get)
        kinds: list[tuple[str, str, dict, object, int]] = [
            ("GET", "/healthz", {}, None, 200),
            ("GET", "/api/topics/", pro, None, 200),
            ("GET", "/api/topics/?status=debating", {}, None, 200),
            ("GET", topic, pro, None, 200),
            ("GET", f"{topic}arguments/", {}, None, 200),
            ("GET", "/api/agents/me/", pro, None, 200),
            ("POST", f"{topic}arguments/", pro, argument, 201),
            ("POST", f"{topic}arguments/", judge, argument, 403),
            ("POST", f"{topic}arguments/", {"Authorization": "Bearer dlc_nope_nope"}, argument, 401),
            ("POST", f"{topic}arguments/", {**pro, "Content-Type": "application/json"}, b"{not json", 400),
            ("POST", f"/api/topics/{signup.topic.pk}/signups/", {"Authorization": f"Bearer {joiner.token}"}, {}, 409),
            ("GET", "/api/topics/not-a-uuid/", {}, None, 404),
            ("GET", "/api/agents/me/", {}, None, 401),
            ("GET", "/no/such/page", {}, None, 404),
            ("GET", "/admin/login/", {}, None, 200),
            ("GET", "/skill.md", {}, None, 200),
        ]
        # The first signup succeeds; every later one is the 409 error path.
        assert httpx.post(f"{server.base_url}/api/topics/{signup.topic.pk}/signups/", json={},
                          headers={"Authorization": f"Bearer {joiner.token}"}).status_code == 201  # fmt: skip

        statuses: Counter[tuple[str, int, int]] = Counter()
        lock = threading.Lock()

        def client(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(base_url=server.base_url, timeout=30) as http:
                for _ in range(REQUESTS_PER_CLIENT):
                    method, path, headers, body, expected = rng.choice(kinds)
                    raw = {"content": body} if isinstance(body, bytes) else {"json": body}
                    got = http.request(method, path, headers=headers, **(raw if body is not None else {})).status_code
                    with lock:
                        statuses[(path, expected, got)] += 1

        def streams() -> None:
            rng = random.Random(0)
            for _ in range(STREAMS):
                with httpx.stream(
                    "GET", f"{server.base_url}/api/topics/{debate.topic.pk}/events/", timeout=30
                ) as response:
                    assert response.status_code == 200
                    assert next(response.iter_bytes()).startswith(b"retry: 3000")
                    time.sleep(rng.uniform(0, 0.1))

        seen: set[str] = set()
        peak = 0
        # One spectator stays throughout, so the poller keeps its one connection instead of
        # closing it whenever the other streams happen to be closed at once.
        with httpx.stream("GET", f"{server.base_url}/api/topics/{debate.topic.pk}/events/", timeout=60) as spectator:
            assert spectator.status_code == 200
            with ThreadPoolExecutor(CLIENTS + 1) as pool:
                jobs = [pool.submit(client, seed) for seed in range(CLIENTS)] + [pool.submit(streams)]
                while not all(job.done() for job in jobs):
                    now_open = connections_of(pid)
                    seen |= now_open
                    peak = max(peak, len(now_open))
                    time.sleep(0.05)
                for job in jobs:
                    job.result()
            after_load = connections_of(pid)

        wrong = {key: n for key, n in statuses.items() if key[1] != key[2]}
        assert not wrong, f"(path, expected, got): count {wrong}"
        assert sum(statuses.values()) == CLIENTS * REQUESTS_PER_CLIENT
        # Every pool thread was busy at some point (eight clients for four threads), and no more were used.
        assert WEB_THREADS <= peak <= BOUND, (peak, seen)
        assert len(after_load) <= BOUND
        if connection.vendor == "mysql":
            # Connections persist: one per request would have shown hundreds of ids here.
            assert len(seen) <= 2 * BOUND, seen
            # No request left a transaction open on a connection that the next request reuses.
            assert open_transactions(after_load) == 0
        # The pool's connections still serve after all of that.
        assert [httpx.get(f"{server.base_url}/healthz").status_code for _ in range(20)] == [200] * 20
        assert len(connections_of(pid)) <= BOUND
