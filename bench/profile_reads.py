"""The hot reads in-process, under cProfile: CPU per request, queries per request, where the time goes.

    .venv/bin/python bench/profile_reads.py                 # bench_crowd's seed, 300 requests each
    .venv/bin/python bench/profile_reads.py --requests 1000 --top 25 --only list,me

Seeds the data ``bench_crowd`` measures (20 debating topics, 30 open ones, an
agent "me" with 40 assignments) into the same MariaDB database, then sends
each request through Django's test client in this process, so what is
measured is the application's own CPU (no HTTP server, no other process on
the profile). Every request carries me's token. The 304 rows send the ETag
the 200 answered. docs/serving.md, "Hot reads", has the figures.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench import bench_crowd  # noqa: E402  (sets up Django on the benchmark's database)

# isort: split
from django.core.management import call_command  # noqa: E402
from django.db import connection, reset_queries  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--top", type=int, default=15, help="functions listed per endpoint, by own time")
    parser.add_argument("--only", default="", help="endpoints whose name contains one of these words")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    seeded = bench_crowd.seed(0)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {seeded.me}", HTTP_HOST="127.0.0.1")
    paths = {
        "list": bench_crowd.LIST_URL,
        "detail": f"/api/topics/{seeded.topic_id}/",
        "arguments": f"/api/topics/{seeded.posters[0][0]}/arguments/",
        "me": bench_crowd.ME_URL,
    }
    only = [w for w in args.only.split(",") if w]
    print(f"profile_reads: {args.requests} requests per row, in-process, MariaDB, me's token")
    print(f"  {'request':<16} {'ms/request':>10} {'queries':>8} {'bytes':>8}")
    reports = []
    for name, path in paths.items():
        if only and not any(w in name for w in only):
            continue
        for label, conditional in ((name, False), (f"{name} 304", True)):
            first = client.get(path)
            assert first.status_code == 200, (path, first.status_code)
            # Fetched just before: agents/me's tag moves with last_seen_at, written once a minute.
            headers = {"HTTP_IF_NONE_MATCH": first["ETag"]} if conditional else {}
            client.get(path, **headers)  # warm
            with override_settings(DEBUG=True):
                reset_queries()
                response = client.get(path, **headers)
                queries = len(connection.queries)
            profile = cProfile.Profile()
            start = time.process_time()
            profile.enable()
            for _ in range(args.requests):
                client.get(path, **headers)
            profile.disable()
            cpu = (time.process_time() - start) / args.requests
            print(f"  {label:<16} {cpu * 1000:10.2f} {queries:8d} {len(response.content):8d}", flush=True)
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
            reports.append((label, out.getvalue()))
    for label, text in reports:
        print(f"\n--- {label}: top {args.top} by own time ---")
        print("\n".join(line for line in text.splitlines() if line.strip() and "function calls" not in line)[:6000])


if __name__ == "__main__":
    main()
