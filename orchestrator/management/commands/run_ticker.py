"""``python manage.py run_ticker [--once] [--interval DURATION]``: drive every topic's timeline."""

from __future__ import annotations

import argparse
import signal
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand

from dialectic.config import parse_duration
from orchestrator.ticker import Ticker


def interval(raw: str) -> timedelta:
    """argparse type: a positive Go-style or plain-seconds duration (argparse exits 2 with the option's name)."""
    try:
        value = parse_duration(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not value:
        raise argparse.ArgumentTypeError(f"{raw!r} must be greater than zero")
    return value


class Command(BaseCommand):
    help = (
        "Move topics along their timeline: open and close signup (allocating camps), start debates, "
        "advance rounds, end debates, expire verdict deadlines; then deliver due announcements. "
        "Any number of copies may run at once."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--once", action="store_true", help="Make one full pass, then exit.")
        parser.add_argument(
            "--interval",
            type=interval,
            metavar="DURATION",
            help="Pause between passes, e.g. 500ms, 15s, 1m30s or 15 (default: ORCHESTRATOR_TICK_INTERVAL, 15s).",
        )

    def handle(self, *args: object, once: bool, interval: timedelta | None, **options: object) -> None:
        # The setting is parsed (and a bad value reported, exit 2) when settings load: see manage.py.
        ticker = Ticker(interval=interval or settings.ORCHESTRATOR_TICK_INTERVAL)
        # SIGTERM (process managers) and SIGINT (Ctrl-C) both mean: finish the
        # current transaction, skip the rest of the pass, exit 0.
        previous = {sig: signal.signal(sig, ticker.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            ticker.run(once=once)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
