"""The streams' poll in-process: CPU per poll of N cursors, the hand-written statement against its ORM twin.

    .venv/bin/python bench/profile_poll.py                    # 1,000 agent cursors, 20 polls each
    .venv/bin/python bench/profile_poll.py --cursors 200 --polls 50

Each broker polls every ``SSE_POLL_INTERVAL`` for every watched key (an
agent on ``/api/agents/me/events/``, a topic on its stream), in slices of
``event_feed.TOPICS_PER_QUERY``. This times exactly that read, as the poller
makes it (``event_feed.read_new``, i.e. ``topics.sql.events_after``), and the
ORM query it replaced, alternately in one process on one MariaDB database.
The cursors are past every event, as in a quiet poll: what is measured is the
cost of asking, which the poller pays every interval however little is new.
docs/sse.md, "The poll", has the figures.
"""

from __future__ import annotations

import argparse
import functools
import operator
import os
import sys
import time
import uuid
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from devtools.environments import bench_environment, create_mysql_database  # noqa: E402

DATABASE_URL = "mysql://root@127.0.0.1:3306/dlc_bench_poll"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cursors", type=int, default=1000)
    parser.add_argument("--polls", type=int, default=20)
    args = parser.parse_args()

    bench_environment(DATABASE_URL)
    create_mysql_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db.models import Q

    from topics import event_feed
    from topics.models import AgentEvent

    call_command("migrate", verbosity=0)
    cursors = {uuid.uuid4(): 5 for _ in range(args.cursors)}

    def orm_twin(cursors: dict, *, limit: int) -> None:
        # The read before topics.sql.events_after: one Q per cursor, OR-ed, compiled by the ORM each poll.
        items = sorted(cursors.items())
        for start in range(0, len(items), event_feed.TOPICS_PER_QUERY):
            chunk = items[start : start + event_feed.TOPICS_PER_QUERY]
            where = functools.reduce(operator.or_, (Q(agent_id=key, seq__gt=seq) for key, seq in chunk))
            list(
                AgentEvent.objects.filter(where)
                .order_by("agent_id", "seq")
                .values_list("agent_id", "seq", "kind", "data")[:limit]
            )

    reads = {"poller (topics.sql)": event_feed.read_new_agent_events, "ORM twin": orm_twin}
    results: dict[str, list[float]] = {name: [] for name in reads}
    for _ in range(3):  # alternated, so drift in the machine's load falls on both
        for name, read in reads.items():
            started = time.process_time()
            for _ in range(args.polls):
                read(cursors, limit=500)
            results[name].append((time.process_time() - started) / args.polls * 1000)

    print(f"command: python bench/profile_poll.py --cursors {args.cursors} --polls {args.polls}")
    print(f"machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"database: {os.environ['DATABASE_URL']}")
    for name, values in results.items():
        print(f"{name:>20}: {min(values):6.1f} ms CPU per poll of {args.cursors:,} cursors (best of 3 runs)")


if __name__ == "__main__":
    main()
