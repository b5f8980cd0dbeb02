"""The delivery engine every outbound destination shares: Fabric announcements and agents' webhooks.

An ``Outbox`` names a table of ``OutboxRow``s and how to treat it; a
``Sender`` turns one claimed row into one HTTP request. ``deliver`` runs a
pass, and any number of tickers may run passes at once:

1. **Claim** a small batch in one short transaction: rows that are pending
   and due (narrowed by the outbox, e.g. to the first pending delivery of
   each webhook), locked with ``SKIP LOCKED`` on MySQL/MariaDB (SQLite: the
   IMMEDIATE transaction serialises claimers). Claiming increments
   ``attempts`` and pushes ``next_attempt_at`` forward by a lease, then
   commits, so other tickers skip the rows and a ticker that dies mid-send
   leaves them due again once the lease runs out.
2. **Send** the batch with no transaction open, with connect/read timeouts,
   on up to ``concurrency`` daemon threads (a stop request never waits for
   a receiver's timeout; the process does not wait for abandoned sends).
3. **Record** each outcome with an UPDATE conditional on the claim's
   ``attempts`` (a fencing token): a ticker whose lease expired cannot
   overwrite the result of the one that re-claimed the row. The sends that
   finished together are recorded in one transaction, and a thread starts
   its next send only once one of the outcomes before it is recorded: no
   more than ``concurrency`` sends are ever done but unrecorded, which is
   what a killed ticker repeats.

A pass must not hold the ticker's transitions back for long: no send starts
once the outbox's ``budget`` is spent, and an outbox with one receiver
(Fabric) stops at the first answer that says the receiver is unwell,
handing the rest of its batch back untouched. docs/fabric.md and
docs/webhooks.md have the numbers.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import requests
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from dialectic.db import run_in_transaction, write_transaction
from fabric_bridge.client import Outcome, SendResult
from fabric_bridge.models import DeliveryStatus, OutboxRow

logger = logging.getLogger("fabric_bridge.delivery")

LAST_ERROR_LIMIT = 2000
# How often a pass waiting for sends looks at should_stop(): a stop request waits at most this long.
STOP_POLL_SECONDS = 0.2

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Claim:
    id: UUID
    attempts: int  # including the attempt this claim is for
    lease_until: datetime
    previous_next_attempt_at: datetime
    row: dict[str, Any]  # the outbox's own columns (``Outbox.columns``), as claimed


class Sender(Protocol):
    @property
    def request_timeout(self) -> float:
        """The longest one send can take (connect, then read)."""

    def send(self, session: requests.Session, claim: Claim) -> SendResult:
        """Send one claimed row. Never raises for network trouble: it becomes a RETRY result."""


@dataclass(frozen=True)
class Outbox:
    label: str  # what a row is called in the logs
    model: type[OutboxRow]
    columns: tuple[str, ...]  # read into Claim.row
    max_attempts: int
    retry_base: float  # seconds
    retry_max: float  # seconds
    budget: float  # seconds of sending per pass
    batch_size: int
    concurrency: int = 1
    # One receiver behind every row (Fabric): its first sign of trouble ends the pass.
    stop_pass_on_retry: bool = True
    describe: Callable[[Claim], str] = lambda claim: str(claim.id)
    # Which due rows may go now (webhooks: only the first pending one of each webhook).
    narrow: Callable[[QuerySet], QuerySet] = lambda due: due
    # Called with the outcomes just recorded (those whose claim still stood), outside any transaction.
    after_outcomes: Callable[[list[tuple[Claim, SendResult]], datetime], None] | None = None

    @property
    def rows(self) -> QuerySet:
        return self.model._default_manager.all()


def deliver(
    outbox: Outbox, sender: Sender, *, now: datetime | None = None, should_stop: Callable[[], bool] = lambda: False
) -> int:
    """Send what is due in ``outbox``; returns how many sends were started.

    ``now`` (for tests and the ticker's notion of time) is where the clock
    starts; it then advances with real elapsed time.
    """
    clock = _clock(now)
    deadline = time.monotonic() + outbox.budget
    lease = claim_lease(outbox, sender)
    attempted = 0
    while not should_stop() and time.monotonic() < deadline:
        batch = claim_due(outbox, now=clock(), lease=lease, limit=outbox.batch_size)
        if not batch:
            break
        started, halted = _send_batch(outbox, sender, batch, clock, deadline, should_stop)
        attempted += started
        if halted:
            break
    return attempted


def _send_batch(
    outbox: Outbox,
    sender: Sender,
    batch: list[Claim],
    clock: Clock,
    deadline: float,
    should_stop: Callable[[], bool],
) -> tuple[int, bool]:
    """Send ``batch`` on worker threads, record each outcome here; returns (sends started, pass over)."""
    todo: queue.SimpleQueue[Claim] = queue.SimpleQueue()
    for claim in batch:
        todo.put(claim)
    done: queue.SimpleQueue[tuple[Claim, SendResult]] = queue.SimpleQueue()
    halt = threading.Event()
    started = [0]
    lock = threading.Lock()
    concurrency = max(1, min(outbox.concurrency, len(batch)))
    # A send takes a slot, and its slot comes back only once its outcome is recorded: at most
    # ``concurrency`` sends are ever done but not yet written down, so a ticker killed mid-pass
    # sends again (same idempotency key) only those, one for Fabric's single sender.
    slots = threading.Semaphore(concurrency)

    def work() -> None:
        # A session per thread: requests does not promise that one is safe to share.
        with requests.Session() as session:
            while not halt.is_set() and not should_stop() and time.monotonic() < deadline:
                if not slots.acquire(timeout=STOP_POLL_SECONDS):
                    continue
                try:
                    claim = todo.get_nowait()
                except queue.Empty:
                    slots.release()
                    return
                with lock:
                    started[0] += 1
                try:
                    result = sender.send(session, claim)
                except Exception as exc:  # a bug in a sender must not strand the row
                    logger.exception("%s %s: the send failed unexpectedly", outbox.label, claim.id)
                    result = SendResult(Outcome.RETRY, f"the send failed unexpectedly: {exc!r}")
                if result.outcome is Outcome.RETRY and outbox.stop_pass_on_retry:
                    # The receiver is evidently down or overloaded: every further send this pass
                    # would likely cost another timeout, so the rest waits for the next pass.
                    halt.set()
                done.put((claim, result))

    workers = [threading.Thread(target=work, name=f"{outbox.label}-send-{i}", daemon=True) for i in range(concurrency)]
    for worker in workers:
        worker.start()
    stopped = False
    while any(worker.is_alive() for worker in workers) or not done.empty():
        try:
            finished = [done.get(timeout=STOP_POLL_SECONDS)]
        except queue.Empty:
            if should_stop():
                # Stopping mid-send: rows in flight keep their claim and are sent again,
                # with the same idempotency key, once the lease runs out.
                halt.set()
                stopped = True
                break
            continue
        # Every send that has finished meanwhile, recorded in one transaction: one commit per
        # delivery was what limited a burst of webhooks (about 80 a second on 2 cores).
        while True:
            try:
                finished.append(done.get_nowait())
            except queue.Empty:
                break
        record_outcomes(outbox, finished, now=clock())
        for _ in finished:
            slots.release()
    unsent = []
    while not todo.empty():
        unsent.append(todo.get_nowait())
    release(outbox, unsent)
    return started[0], stopped or halt.is_set() or bool(unsent)


def claim_lease(outbox: Outbox, sender: Sender) -> timedelta:
    """How long a claim keeps other tickers away.

    A row claimed now is sent before the pass's budget runs out and its send
    ends within one request timeout; doubling that leaves room for a slow
    database and modest clock skew between ticker machines.
    """
    return timedelta(seconds=2 * (outbox.budget + sender.request_timeout))


def claim_due(outbox: Outbox, *, now: datetime, lease: timedelta, limit: int) -> list[Claim]:
    """Claim up to ``limit`` due rows for this process, oldest due first. Commits before returning."""
    lease_until = now + lease

    def claim() -> list[Claim]:
        claims: list[Claim] = []
        # Uses the outbox's (status, next_attempt_at) index.
        due = outbox.rows.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        due = outbox.narrow(due.order_by("next_attempt_at", "id"))
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        rows = list(due.values("id", "attempts", "next_attempt_at", *outbox.columns)[:limit])
        for row in rows:
            guard = outbox.rows.filter(pk=row["id"], status=DeliveryStatus.PENDING, attempts=row["attempts"])
            if row["attempts"] >= outbox.max_attempts:
                # Only reachable when earlier claims never reported back (a ticker that keeps dying
                # on this row): stop feeding it to tickers.
                guard.update(
                    status=DeliveryStatus.DEAD,
                    last_error=f"gave up: {row['attempts']} attempts claimed without a recorded outcome",
                )
                logger.error("%s %s dead: %d attempts without an outcome", outbox.label, row["id"], row["attempts"])
                continue
            # Second guard behind the row lock, and the only one on SQLite.
            if guard.update(attempts=row["attempts"] + 1, next_attempt_at=lease_until) != 1:
                continue
            claims.append(
                Claim(
                    id=row["id"],
                    attempts=row["attempts"] + 1,
                    lease_until=lease_until,
                    previous_next_attempt_at=row["next_attempt_at"],
                    row={name: row[name] for name in outbox.columns},
                )
            )
        return claims

    # Rerun whole (dialectic.db.run_in_transaction) when another ticker's claim of the same rows wins.
    return run_in_transaction(claim, durable=True, label=f"{outbox.label} claim")


def release(outbox: Outbox, claims: list[Claim]) -> None:
    """Hand unsent claims back as they were, so they keep their place in the queue."""
    for claim in claims:
        run_in_transaction(
            lambda claim=claim: outbox.rows.filter(
                pk=claim.id,
                status=DeliveryStatus.PENDING,
                attempts=claim.attempts,
                next_attempt_at=claim.lease_until,
            ).update(attempts=claim.attempts - 1, next_attempt_at=claim.previous_next_attempt_at),
            label=f"{outbox.label} release",
        )


def record_outcome(outbox: Outbox, claim: Claim, result: SendResult, *, now: datetime) -> str:
    """Write what the send achieved; returns the row's new status."""
    return record_outcomes(outbox, [(claim, result)], now=now)[0]


def _outcome_updates(outbox: Outbox, claim: Claim, result: SendResult, *, now: datetime) -> dict[str, Any]:
    label = f"{outbox.label} {outbox.describe(claim)} attempt {claim.attempts}"
    if result.outcome is Outcome.DELIVERED:
        logger.info("%s: sent (HTTP %s)", label, result.status)
        return {"status": DeliveryStatus.SENT, "sent_at": now}
    if result.outcome is Outcome.REJECTED:
        logger.error("%s: dead, the receiver rejected it: %s", label, result.error)
        return {"status": DeliveryStatus.DEAD, "last_error": _truncate(result.error)}
    if claim.attempts >= outbox.max_attempts:
        error = f"gave up after {claim.attempts} attempts; last: {result.error}"
        logger.error("%s: dead, %s", label, error)
        return {"status": DeliveryStatus.DEAD, "last_error": _truncate(error)}
    delay = backoff(claim.attempts, base=outbox.retry_base, cap=outbox.retry_max, retry_after=result.retry_after)
    logger.warning("%s: %s; retrying in %.0fs", label, result.error, delay.total_seconds())
    return {"next_attempt_at": now + delay, "last_error": _truncate(result.error)}


def record_outcomes(outbox: Outbox, outcomes: list[tuple[Claim, SendResult]], *, now: datetime) -> list[str]:
    """Write what each send achieved, all in one transaction; returns each row's new status.

    Each row's UPDATE is conditional on its claim's ``attempts`` (the fencing
    token), so one whose lease ran out and was claimed again keeps the other
    ticker's result.
    """
    updates = [_outcome_updates(outbox, claim, result, now=now) for claim, result in outcomes]

    def write() -> list[int]:
        return [
            outbox.rows.filter(pk=claim.id, status=DeliveryStatus.PENDING, attempts=claim.attempts).update(**changes)
            for (claim, _), changes in zip(outcomes, updates, strict=True)
        ]

    recorded = run_in_transaction(write, label=f"{outbox.label} outcome")
    stood = []
    for (claim, result), count in zip(outcomes, recorded, strict=True):
        if count == 1:
            stood.append((claim, result))
        else:
            # Our lease ran out and another ticker took the row over (or staff reset it): its result stands.
            logger.warning(
                "%s %s attempt %d: outcome not recorded, the row was claimed again meanwhile",
                outbox.label,
                outbox.describe(claim),
                claim.attempts,
            )
    if stood and outbox.after_outcomes is not None:
        outbox.after_outcomes(stood, now)
    return [changes.get("status", DeliveryStatus.PENDING) for changes in updates]


def backoff(
    attempts: int, *, base: float, cap: float, retry_after: float | None = None, rng: random.Random | None = None
) -> timedelta:
    """Capped exponential backoff with equal jitter: half the step fixed, half random.

    The fixed half guarantees a real pause; the random half spreads out the
    retries of rows that failed together. A Retry-After from the receiver is
    honoured up to the cap.
    """
    step = min(cap, base * 2 ** min(attempts - 1, 32))
    delay = step / 2 + (rng or random).uniform(0, step / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return timedelta(seconds=delay)


@write_transaction
def retry_now(model: type[OutboxRow], *, row_id: Any, now: datetime) -> bool:
    """Make a pending or dead row due at ``now``; False when there is nothing to retry (sent or gone).

    A dead row starts a fresh series of attempts: staff retry it after fixing
    the cause, and its old count would make the first new failure final. A
    pending one keeps its count and only skips its backoff.
    """
    row = model.objects.filter(pk=row_id).values("status", "attempts").first()
    if row is None or row["status"] == DeliveryStatus.SENT:
        return False
    updates: dict = {"status": DeliveryStatus.PENDING, "next_attempt_at": now}
    if row["status"] == DeliveryStatus.DEAD:
        updates["attempts"] = 0
    # Conditional on what we read, so a ticker recording an outcome in between wins and we report no change.
    changed = model.objects.filter(pk=row_id, status=row["status"], attempts=row["attempts"]).update(**updates)
    if changed:
        logger.info("%s %s: retry requested (was %s)", model._meta.verbose_name, row_id, row["status"])
    return changed == 1


def _truncate(text: str) -> str:
    return text if len(text) <= LAST_ERROR_LIMIT else text[: LAST_ERROR_LIMIT - 1] + "…"


def _clock(start: datetime | None) -> Clock:
    if start is None:
        return timezone.now
    origin = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - origin)
