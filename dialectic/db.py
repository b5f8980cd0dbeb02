"""Write transactions that survive losing a race: the one place that retries.

On a Galera cluster every node takes writes and conflicts are settled at
commit by certification: the loser gets MySQL error 1213 ("Deadlock found"),
even though no lock wait ever happened on its own node (``SKIP LOCKED`` and
``FOR UPDATE`` only see the local node's locks). A single MariaDB reports
the same 1213 for a real deadlock, and 1205 when a lock wait times out. In
every case the server has rolled the transaction back and nothing of it is
left, so the right answer is to run the whole transaction again: its reads
then see the winner's commit, and its gates answer as the contract says
(``409 already_signed_up``, ``verdict_exists``…), not 503.

``write_transaction`` is that loop, and nothing else in the code catches
these two errors. It retries only a *whole* transaction: called inside an
atomic block it runs once (joining the outer transaction, as
``transaction.atomic`` would), because a savepoint cannot be retried after
the server rolled back everything around it: the outer owner retries.
Anything the function does besides the database (messages, counters,
logging) may therefore happen once per attempt; keep such effects after the
call or make them idempotent.

SQLite never reports these codes (its IMMEDIATE transactions queue on the
write lock), so there, and on a single MariaDB without contention, this is
exactly ``transaction.atomic``.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar, overload

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction

logger = logging.getLogger("dialectic.db")

P = ParamSpec("P")
R = TypeVar("R")

# MySQL/MariaDB error codes that mean "this transaction lost; it was rolled back; run it again".
ER_LOCK_DEADLOCK = 1213  # a deadlock, or a Galera certification conflict / brute-force abort
ER_LOCK_WAIT_TIMEOUT = 1205
RETRYABLE_CODES = frozenset({ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT})

# Attempts in all (the first and the retries). A conflict needs another writer
# on the same rows at the same instant; after a lost race the next attempt
# reads the winner's commit, so a second loss in a row is rare and a ninth
# means something is wrong: the error then reaches the caller.
ATTEMPTS = 8
# On a Galera cluster a rerun can lose again to a *different* writer: every
# node's transactions run side by side and conflict on any row they share, and
# a row many transitions write (an agent's event_seq, for an agent in many
# topics) is a hot spot for all of them. Measured with three tickers on three
# nodes over 180 topics and 40 agents on a loaded machine: each further loss in
# a row a fifth to a half as likely as the one before, so eight attempts ran out
# every few runs (docs/deploy.md, "Writes"). Sixteen make that vanishingly rare,
# at the cost of up to 2 s more of backoff (8 x 0.25 s), and only when it happens.
GALERA_ATTEMPTS = 16

# Full jitter, capped exponential: attempt n waits uniform(0, min(CAP, BASE·2ⁿ)).
# The random spread is what stops two losers from colliding again in lock step.
BACKOFF_BASE = 0.005
BACKOFF_CAP = 0.25


def is_retryable(exc: BaseException) -> bool:
    """True for the errors after which the server has rolled the transaction back and a rerun can succeed."""
    return isinstance(exc, OperationalError) and bool(exc.args) and exc.args[0] in RETRYABLE_CODES


class _Retries:
    """How many attempts lost a race, per process (the benchmarks and the ticker's pass summary read it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def add(self) -> None:
        with self._lock:
            self._count += 1

    @property
    def count(self) -> int:
        return self._count


retries = _Retries()


def run_in_transaction(
    fn: Callable[[], R],
    *,
    durable: bool = False,
    using: str = DEFAULT_DB_ALIAS,
    attempts: int | None = None,
    label: str | None = None,
) -> R:
    """Run ``fn()`` in a transaction; rerun it from the start when the database says it lost a race.

    ``durable=True`` also asserts that no transaction is open (the ticker's,
    the outbox's and the admin's per-row transactions). ``label`` names the
    work in the INFO line a lost race logs. ``attempts`` defaults to
    ``ATTEMPTS``, or ``GALERA_ATTEMPTS`` with ``DATABASE_GALERA`` on.
    """
    if connections[using].in_atomic_block:
        # Part of someone else's transaction: only its owner can retry it.
        with transaction.atomic(using=using, durable=durable):
            return fn()
    if attempts is None:
        attempts = GALERA_ATTEMPTS if settings.DATABASE_GALERA else ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic(using=using, durable=durable):
                return fn()
        except OperationalError as exc:
            if not is_retryable(exc) or attempt == attempts:
                raise
            retries.add()
            logger.info(
                "%s lost a race (attempt %d of %d, MySQL %s); retrying",
                label or getattr(fn, "__qualname__", "transaction"),
                attempt,
                attempts,
                exc.args[0],
            )
        # Never inside a transaction: the failed one is rolled back and closed by now.
        time.sleep(random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)))
    raise AssertionError("unreachable: the last attempt returns or raises")


@overload
def write_transaction(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def write_transaction(*, durable: bool = False) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def write_transaction(fn: Callable[P, R] | None = None, /, *, durable: bool = False):
    """Decorator form of ``run_in_transaction``: ``@write_transaction`` where ``@transaction.atomic`` was."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return run_in_transaction(lambda: func(*args, **kwargs), durable=durable, label=func.__qualname__)

        return wrapper

    return decorate(fn) if fn is not None else decorate
