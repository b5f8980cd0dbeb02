"""How fast does the ticker drain due topics? One ticker, then two side by side.

    make bench-ticker                       # MariaDB database dlc_bench, 5,000 topics
    .venv/bin/python bench/bench_ticker.py --topics 5000 --tickers 2 [--workers 1]

For each transition, N topics are due at once (seeded with their whole
timeline in the past, four signups each from a pool of 40 agents, two
rounds, a verdict deadline). Each step of the real ``Ticker`` drains them:
one durable transaction per topic, the row locked with SKIP LOCKED, the
transition functions the API and admin use. Fabric is configured (at an
address nothing listens on), so announcement rows are written as in
production; the steps never deliver. Transition log lines are formatted and
written to /dev/null, as a real ticker would write them to its log.

Phase 1 times each step of one in-process ticker (with its worker
threads, ``--workers``, default the ticker's ``WORKERS``), counts its SQL
statements per topic on every thread's connection (BEGIN/COMMIT not
included) and the ticker process's own CPU time per topic, all threads (the
rest of the wall time is waiting for the database, which shares the machine). Phase 2 re-seeds and runs
each step in two forked processes released together; topics/s is all topics
over the wall time until both finish. After each phase every topic is
checked for consistency (status, events, camps, rounds, announcements).

Galera mode (``--galera``, with ``GALERA_NODES`` from ``scripts/galera-cluster
env``; the bench's database is created on the first node): phase 2 twice,
``--tickers`` tickers all on the first node, then one per node, with the
races each lost and retried (``dialectic.db``) per transition made; then the
cost of ``wsrep_sync_wait=1`` (``DATABASE_GALERA``) on a point read.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
from devtools.environments import bench_environment, create_mysql_database  # noqa: E402

# INFO: the transition lines are written (to /dev/null), as a real ticker writes them.
bench_environment("mysql://root@127.0.0.1:3306/dlc_bench", log_level="INFO")
os.environ.update(
    FABRIC_GUILD_BASE_URL="http://127.0.0.1:9",
    FABRIC_ANNOUNCE_CHANNEL_ID="bench",
    FABRIC_SYSTEM_API_KEY="bench",
    FABRIC_BOT_BEARER_TOKEN="bench",
)

STEPS = [
    ("open_signups", "created → signup_open (+ announcement)"),
    ("close_signups", "signup_open → signup_closed (allocation)"),
    ("start_debates", "signup_closed → debating (round 0)"),
    ("advance_rounds", "round 0 → round 1"),
    ("end_debates", "debating → judging"),
    ("expire_verdicts", "judging → cancelled (+ announcement)"),
]


def setup_django() -> None:
    import django

    django.setup()
    # Keep the per-transition log lines (their cost is part of a real ticker's), but off the terminal.
    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(devnull)


def reseed(topics: int) -> list:
    from django.core.management import call_command
    from django.utils import timezone

    from devtools.seeding import seed_agents, seed_overdue_topics

    call_command("flush", interactive=False, verbosity=0)
    agents = seed_agents(40, prefix="bench-agent")
    return seed_overdue_topics(topics, now=timezone.now(), agents=agents, signups_per_topic=4, round_count=2)


def check(topic_ids: list) -> None:
    from devtools.consistency import inconsistent_topics, status_counts

    problems = inconsistent_topics(topic_ids, fabric=True)
    counts = status_counts(topic_ids)
    if problems or counts != {"cancelled": len(topic_ids)}:
        sample = dict(list(problems.items())[:3])
        raise SystemExit(f"INCONSISTENT after the run: statuses {counts}, {len(problems)} topics, e.g. {sample}")
    print(f"  check: all {len(topic_ids)} topics consistent and finished (cancelled: no verdict by ...)")


def phase_one(topics: int, workers: int) -> dict[str, float]:
    from django.db import connection
    from django.db.backends.signals import connection_created

    from orchestrator.ticker import Ticker

    topic_ids = reseed(topics)
    ticker = Ticker(workers=workers)
    statements = [0]
    counting = threading.Lock()

    def count(execute, sql, params, many, context):
        with counting:
            statements[0] += 1
        return execute(sql, params, many, context)

    def count_on(sender, connection, **kwargs) -> None:
        # The ticker's worker threads open their own connections: count theirs too.
        connection.execute_wrappers.append(count)

    rates = {}
    print(f"\nOne ticker ({workers} worker thread{'s' if workers != 1 else ''}), {topics} due topics per transition")
    print(f"  {'transition':44} {'topics':>6} {'seconds':>8} {'topics/s':>9} {'SQL/topic':>9} {'CPU ms/topic':>12}")
    connection_created.connect(count_on)
    with connection.execute_wrapper(count):
        for name, label in STEPS:
            statements[0] = 0
            started, cpu_started = time.perf_counter(), time.process_time()
            done = getattr(ticker, name)()
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            rates[name] = done / elapsed
            print(
                f"  {label:44} {done:6d} {elapsed:8.2f} {rates[name]:9.0f} {statements[0] / done:9.1f} "
                f"{cpu * 1000 / done:12.2f}"
            )
    connection_created.disconnect(count_on)
    check(topic_ids)
    return rates


def _worker(step: str, workers: int, barrier, results, port: int | None) -> None:
    from django.db import connection, connections

    from dialectic import db
    from orchestrator.ticker import Ticker

    if port is not None:
        # This ticker's node: every connection of this process (its worker threads' too) goes there.
        connections.settings["default"]["PORT"] = port
        connection.settings_dict["PORT"] = port
    ticker = Ticker(workers=workers)
    connection.ensure_connection()  # connect before the start line, not on the clock
    barrier.wait()
    lost_before = db.retries.count
    # Until the step finds nothing, as a pass repeats it: a window whose rows were all locked by
    # the other tickers at the instant of the claim is left to them, and is picked up here if
    # they did not take it after all.
    done = 0
    while found := getattr(ticker, step)():
        done += found
    connections.close_all()
    results.put((done, db.retries.count - lost_before))


def phase_two(topics: int, tickers: int, threads: int, *, ports: list[int] | None = None) -> dict[str, float]:
    from django.db import connections

    topic_ids = reseed(topics)
    connections.close_all()  # forked children must not share the parent's socket
    ctx = multiprocessing.get_context("fork")
    rates = {}
    where = f" on ports {', '.join(map(str, ports))}" if ports else ""
    print(f"\n{tickers} tickers side by side (separate processes{where}), {topics} due topics per transition")
    print(f"  {'transition':44} {'topics':>6} {'seconds':>8} {'topics/s':>9} {'retries/transition':>18}  split")
    for name, label in STEPS:
        barrier, results = ctx.Barrier(tickers + 1), ctx.Queue()
        workers = [
            ctx.Process(target=_worker, args=(name, threads, barrier, results, ports[i] if ports else None))
            for i in range(tickers)
        ]
        for worker in workers:
            worker.start()
        barrier.wait()
        started = time.perf_counter()
        outcomes = [results.get(timeout=600) for _ in workers]
        elapsed = time.perf_counter() - started
        for worker in workers:
            worker.join()
        split = [done for done, _ in outcomes]
        done, lost = sum(split), sum(lost for _, lost in outcomes)
        rates[name] = done / elapsed
        print(
            f"  {label:44} {done:6d} {elapsed:8.2f} {rates[name]:9.0f} {lost / max(done, 1):18.3f}  "
            f"{'+'.join(map(str, split))}"
        )
    check(topic_ids)
    return rates


def galera_nodes() -> list[int]:
    """The ports of GALERA_NODES (scripts/galera-cluster env)."""
    import environ

    urls = [url for url in os.environ.get("GALERA_NODES", "").split(",") if url]
    if len(urls) < 2:
        raise SystemExit('--galera needs GALERA_NODES (eval "export $(scripts/galera-cluster env)")')
    return [int(environ.Env.db_url_config(url)["PORT"]) for url in urls]


def sync_wait_cost(port: int, reads: int = 2000) -> None:
    """What wsrep_sync_wait=1 adds to a point read on another node than the writer's, idle and under writes."""
    import MySQLdb
    from django.db import connection

    config = connection.settings_dict
    conn = MySQLdb.connect(
        host="127.0.0.1", port=port, user=config["USER"], password=config["PASSWORD"], database=config["NAME"]
    )
    cursor = conn.cursor()
    print(f"\nwsrep_sync_wait on a point read (node on port {port}, {reads} reads each, median of 5 runs)")
    for level in (0, 1):
        cursor.execute(f"SET SESSION wsrep_sync_wait={level}")
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(reads // 5):
                cursor.execute("SELECT status FROM topics_topic WHERE id = %s", ("0" * 32,))
                cursor.fetchall()
            runs.append((time.perf_counter() - started) * 1e6 / (reads // 5))
        print(f"  wsrep_sync_wait={level}: {sorted(runs)[2]:7.0f} µs per read")
    conn.close()


def describe_machine() -> None:
    from django.db import connection

    print(f"machine: {os.cpu_count()} CPUs (nproc), load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if connection.vendor == "mysql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT VERSION(), @@innodb_flush_log_at_trx_commit, @@innodb_buffer_pool_size")
            version, flush, pool = cursor.fetchone()
        print(
            f"database: MariaDB/MySQL {version}, innodb_flush_log_at_trx_commit={flush}, buffer pool {pool >> 20} MiB"
        )
    else:
        print(f"database: {connection.vendor} {connection.settings_dict['NAME']}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}  (DATABASE_URL={os.environ['DATABASE_URL']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topics", type=int, default=5000, help="due topics per transition (default 5000)")
    parser.add_argument("--tickers", type=int, default=2, help="tickers side by side in phase 2 (default 2)")
    parser.add_argument(
        "--workers", type=int, default=None, help="worker threads per ticker (default: the ticker's own, WORKERS)"
    )
    parser.add_argument(
        "--galera",
        action="store_true",
        help="on the GALERA_NODES cluster: --tickers tickers on one node, then spread over the nodes",
    )
    args = parser.parse_args()
    if args.galera:
        ports = galera_nodes()
        first = os.environ["GALERA_NODES"].split(",")[0].rsplit("/", 1)[0]
        os.environ["DATABASE_URL"] = f"{first}/dlc_bench"
        os.environ["DATABASE_GALERA"] = "1"

    create_mysql_database(os.environ["DATABASE_URL"])  # the bench's own database, never anyone's data
    setup_django()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    describe_machine()
    from orchestrator.ticker import WORKERS

    workers = WORKERS if args.workers is None else args.workers
    if args.galera:
        one_node = phase_two(args.topics, args.tickers, workers, ports=[ports[0]] * args.tickers)
        spread = phase_two(
            args.topics, args.tickers, workers, ports=[ports[i % len(ports)] for i in range(args.tickers)]
        )
        sync_wait_cost(ports[-1])
        print(
            f"\nsummary: {args.tickers} tickers on one node {min(one_node.values()):.0f} to "
            f"{max(one_node.values()):.0f} topics/s; spread over {len(ports)} nodes "
            f"{min(spread.values()):.0f} to {max(spread.values()):.0f} topics/s"
        )
        return
    one = phase_one(args.topics, workers)
    many = phase_two(args.topics, args.tickers, workers)
    simple = [rate for name, rate in one.items() if name != "close_signups"]
    print(
        f"\nsummary: one ticker allocates {one['close_signups']:.0f} topics/s (target ≥ 200) and makes "
        f"{min(simple):.0f} to {max(simple):.0f} simple transitions/s (target ≥ 500); "
        f"{args.tickers} tickers together: {min(many.values()):.0f} to {max(many.values()):.0f} topics/s"
    )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
