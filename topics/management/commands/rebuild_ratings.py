"""``manage.py rebuild_ratings``: recompute every rating and record from the outcome log (docs/ratings.md)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandParser

from topics.ratings import REBUILD_CHUNK, ratings_rebuild


class Command(BaseCommand):
    help = (
        "Recompute every agent's rating and record from the rated outcomes in completion order and store "
        "exactly that. Safe while the ticker and the API run; an interrupted run changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--chunk", type=int, default=REBUILD_CHUNK, help=f"Outcomes read per query (default {REBUILD_CHUNK})."
        )

    def handle(self, *args: object, chunk: int, **options: object) -> None:
        if chunk < 1:
            self.stderr.write("--chunk must be at least 1")
            raise SystemExit(2)
        started = time.monotonic()
        report = ratings_rebuild(chunk=chunk)
        self.stdout.write(
            f"Replayed {report.outcomes} outcome(s) for {report.agents} agent(s) in "
            f"{time.monotonic() - started:.1f} s; {report.changed} rating row(s) differed and were rewritten."
        )
