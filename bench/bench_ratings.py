"""What do ratings cost? Completions with ratings on vs off, and rebuild_ratings over 100,000 verdicts.

    make bench-ratings                      # MariaDB database dlc_bench_ratings
    .venv/bin/python bench/bench_ratings.py --topics 400 --threads 4 --runs 5 --verdicts 100000

Phase 1: ``--topics`` topics awaiting their verdict among a pool of 40
agents are completed by ``--threads`` threads (own connections) through
``services.verdict_create``, the verdict endpoint's service: topic lock,
verdict, completion, events, and the ratings (topic lock, then the
ledger lock). "On" uses the rated ``winner`` schema; "off" an identical
schema without ``x-outcome``, which is what an unrated topic costs. On and
off runs alternate in pairs (the machine is shared and noisy); the figure
is the median over pairs of on / off, each pair having seen about the same
load. Target: on ≥ 80 % of off.

Phase 2: a log of ``--verdicts`` rated outcomes among 1,000 agents is
rebuilt by ``manage.py rebuild_ratings`` in a child process, first at a
fifth of the size then at full size (peak RSS of each child from wait4:
flat memory means the two are close), then once more at full size with
nothing to rewrite. Target: < 30 s at 100,000.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from devtools.environments import bench_environment, create_mysql_database  # noqa: E402

DATABASE_URL = "mysql://root@127.0.0.1:3306/dlc_bench_ratings"
AGENTS = 40
REBUILD_AGENTS = 1000


def setup() -> None:
    bench_environment(DATABASE_URL)
    create_mysql_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def reset() -> None:
    """No topics, outcomes or ratings left (the agents stay)."""
    from topics.models import (
        AgentRating,
        Argument,
        Ballot,
        Camp,
        RatedOutcome,
        RatingLedger,
        Round,
        Topic,
        TopicEvent,
        Verdict,
    )

    # Leaves first, each one DELETE; the topics' own delete then finds nothing left to cascade to.
    # Ballots before the seats (Camp) they protect.
    for model in (RatedOutcome, AgentRating, TopicEvent, Verdict, Ballot, Argument, Round, Camp, Topic):
        model.objects.all().delete()
    RatingLedger.objects.get_or_create(pk=1)


def agent_pool(n: int, prefix: str) -> list:
    from topics.models import Agent

    existing = list(Agent.objects.filter(name__startswith=prefix).order_by("name"))
    if len(existing) < n:
        Agent.objects.bulk_create(
            [Agent(name=f"{prefix}{i:05d}", owner=f"{prefix}{i}") for i in range(len(existing), n)], batch_size=1000
        )
        existing = list(Agent.objects.filter(name__startswith=prefix).order_by("name"))
    return existing[:n]


def schemas():
    from topics.models import VerdictSchema

    rated = VerdictSchema.objects.get(name="winner")
    plain = {k: v for k, v in rated.schema.items() if k != "x-outcome"}
    unrated, _ = VerdictSchema.objects.update_or_create(name="winner-unrated", defaults={"schema": plain})
    return rated, unrated


def seed_judging(n: int, agents: list, schema, rng: random.Random) -> list:
    """``n`` topics in ``judging`` (debate over, no deadline) with camps among ``agents``."""
    from django.utils import timezone

    from topics.models import Camp, Topic, TopicStatus

    now = timezone.now()
    topics = [
        Topic(
            id=uuid.uuid4(),
            title=f"bench {i}",
            status=TopicStatus.JUDGING,
            signup_open_at=now - timedelta(hours=3),
            signup_close_at=now - timedelta(hours=2),
            debate_start_at=now - timedelta(hours=2),
            debate_end_at=now - timedelta(hours=1),
            verdict_schema=schema,
        )
        for i in range(n)
    ]
    Topic.objects.bulk_create(topics, batch_size=500)
    camps, plan = [], []
    for topic in topics:
        pro, con, judge = rng.sample(agents, 3)
        camps += [Camp(topic=topic, camp=c, agent=a) for c, a in (("pro", pro), ("con", con), ("judge", judge))]
        plan.append((topic.pk, judge, rng.choice(("pro", "con", "draw"))))
    Camp.objects.bulk_create(camps, batch_size=1000)
    return plan


def complete_all(plan: list, threads: int) -> float:
    """Completions per second: ``plan`` split over ``threads`` threads released together."""
    from django.db import connection

    from topics import services

    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def work(part: list) -> None:
        try:
            barrier.wait()
            for topic_id, judge, outcome in part:
                services.verdict_create(topic_id=topic_id, judge=judge, verdict={"winner": outcome}, rationale="bench")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=work, args=(plan[k::threads],)) for k in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return len(plan) / elapsed


def phase_completions(args: argparse.Namespace) -> float:
    """The median share of off that on completes: each run against the other run of its pair."""
    from topics.models import RatedOutcome

    rated, unrated = schemas()
    agents = agent_pool(AGENTS, "bench-rater-")
    rng = random.Random(7)
    figures: dict[str, list[float]] = {"on": [], "off": []}
    print(f"\nphase 1: {args.topics} completions per run, {args.threads} threads, {AGENTS} agents")
    for run in range(args.runs):
        for label in ("on", "off") if run % 2 == 0 else ("off", "on"):
            reset()
            plan = seed_judging(args.topics, agents, rated if label == "on" else unrated, rng)
            rate = complete_all(plan, args.threads)
            logged = RatedOutcome.objects.count()
            assert logged == (args.topics if label == "on" else 0), logged
            figures[label].append(rate)
            print(f"  run {run + 1} ratings {label:3}: {rate:7.1f} completions/s")
    on, off = statistics.median(figures["on"]), statistics.median(figures["off"])
    # Each run's on against the off run next to it, which saw about the same load from the rest of the machine.
    share = statistics.median(a / b for a, b in zip(figures["on"], figures["off"], strict=True))
    print(f"  median: on {on:.1f}/s, off {off:.1f}/s ({100 * on / off:.1f} %)")
    print(f"  median of each run's on/off: {100 * share:.1f} % (target ≥ 80 %)")
    return share


def seed_log(start: int, count: int, agents: list, rng: random.Random) -> None:
    """Rated outcomes ``start+1 .. start+count`` (with the topics they belong to), in bulk."""
    from django.utils import timezone

    from topics.models import RatedOutcome, Topic, TopicStatus, VerdictSchema

    schema = VerdictSchema.objects.get(name="winner")
    base = timezone.now() - timedelta(days=30)
    batch = 5000
    for offset in range(0, count, batch):
        n = min(batch, count - offset)
        topics = [
            Topic(
                id=uuid.uuid4(),
                title="log",
                status=TopicStatus.COMPLETED,
                signup_open_at=base,
                signup_close_at=base,
                debate_start_at=base,
                debate_end_at=base + timedelta(minutes=1),
                verdict_schema=schema,
            )
            for _ in range(n)
        ]
        Topic.objects.bulk_create(topics, batch_size=1000)
        outcomes = []
        for i, topic in enumerate(topics):
            pro, con, judge = rng.sample(agents, 3)
            seq = start + offset + i + 1
            outcomes.append(
                RatedOutcome(
                    topic=topic,
                    seq=seq,
                    pro=pro,
                    con=con,
                    judge=judge,
                    outcome=rng.choice(("pro", "con", "draw")),
                    completed_at=base + timedelta(seconds=seq),
                )
            )
        RatedOutcome.objects.bulk_create(outcomes, batch_size=1000)


def rebuild_child() -> tuple[float, int, str]:
    """Run ``manage.py rebuild_ratings`` in a child: (seconds, peak RSS in MiB, its last line)."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, str(BASE_DIR / "manage.py"), "rebuild_ratings"], stdout=subprocess.PIPE, text=True
    )
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    if child.returncode != 0:
        sys.exit(f"rebuild_ratings failed: {child.returncode}")
    return elapsed, usage.ru_maxrss // 1024, out.strip().splitlines()[-1]


def phase_rebuild(args: argparse.Namespace) -> tuple[float, int]:
    from django.db import connection

    reset()
    agents = agent_pool(REBUILD_AGENTS, "bench-log-")
    rng = random.Random(11)
    fifth = args.verdicts // 5
    print(f"\nphase 2: rebuild_ratings, {REBUILD_AGENTS} agents")
    seed_log(0, fifth, agents, rng)
    connection.close()
    small = rebuild_child()
    print(f"  {fifth:>7} verdicts: {small[0]:5.1f} s, peak RSS {small[1]} MiB  ({small[2]})")
    seed_log(fifth, args.verdicts - fifth, agents, rng)
    connection.close()
    full = rebuild_child()
    print(f"  {args.verdicts:>7} verdicts: {full[0]:5.1f} s, peak RSS {full[1]} MiB  ({full[2]})")
    again = rebuild_child()
    print(f"  {args.verdicts:>7} again:    {again[0]:5.1f} s, peak RSS {again[1]} MiB  ({again[2]})")
    print(f"  target: < 30 s at {args.verdicts}; memory flat ({small[1]} → {full[1]} MiB for 5 times the verdicts)")
    return full[0], full[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--topics", type=int, default=400, help="completions per run (default 400)")
    parser.add_argument("--threads", type=int, default=4, help="completing threads (default 4)")
    parser.add_argument("--runs", type=int, default=5, help="runs each of on and off (default 5; 0: rebuild only)")
    parser.add_argument(
        "--verdicts", type=int, default=100_000, help="rated outcomes to rebuild (default 100,000; 0: none)"
    )
    args = parser.parse_args()
    setup()
    from django.db import connection

    print(f"machine: {platform.node()} · {platform.platform()} · {os.cpu_count()} CPUs")
    version = ".".join(map(str, connection.mysql_version)) if connection.vendor == "mysql" else ""
    print(f"python {platform.python_version()} · database: {connection.vendor} {version}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    # --runs 0 measures the rebuild alone (the completions phase takes most of the time).
    share = phase_completions(args) if args.runs else 1.0
    seconds = phase_rebuild(args)[0] if args.verdicts else 0.0
    reset()
    failed = share < 0.8 or seconds >= 30
    print("\nresult:", "MISSED a target" if failed else "both targets met")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
