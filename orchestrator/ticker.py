"""The ticker: moves every topic along its timeline.

Shaped like healthchecks' ``sendalerts``: each step is a method that drains
one kind of due work and returns how much it did; a pass repeats the steps
until none finds work, delivers due announcements, and the loop sleeps in
short slices so a stop request is honoured promptly.

Any number of tickers may run at once. Each topic's transition is its own
short durable transaction that claims one due topic among the ids just read
(``lock_any``: the row locked with ``SKIP LOCKED``, the due conditions
evaluated on the current row), so tickers never queue behind each other and
never spend a transaction on a topic another ticker already moved. Then it
calls ``topics.transitions``, whose conditional UPDATE is the second
guard (and the only one on SQLite, where the IMMEDIATE transaction
serialises writers instead). No sleep and no network call happens inside a
transaction: announcements are delivered after the pass, webhooks by a
thread beside it as soon as their transition commits.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Q, QuerySet
from django.utils import timezone

from dialectic import db
from fabric_bridge import config as fabric_config
from fabric_bridge.delivery import deliver_due, deliver_webhooks_while
from topics import rules, transitions
from topics.models import Round, Topic, VerdictSchema

logger = logging.getLogger("orchestrator.ticker")

# Due ids read per query: bounded, so a backlog of 100,000 topics never lands
# in memory at once, and large enough that the read is a small share of the work.
BATCH_SIZE = 200

# Ids offered per claim (an IN list). Small, because building and sending the
# list costs a little on every transaction; enough that a few tickers working
# the same batch usually find a free row in the first window.
CLAIM_WINDOW = 8

# Longest uninterrupted sleep: the worst-case delay before a stop request is seen while idle.
SLEEP_SLICE = 0.2

# A transition; returning False (advance_round) means there was nothing to do after all.
Apply = Callable[[Topic, datetime], object]
# The topics among a window of ids that are still due at ``now``, to claim one from.
Claimable = Callable[[datetime, list], QuerySet[Topic]]

# Threads transitioning one batch side by side (databases with SKIP LOCKED).
# Two overlap one thread's database waits with the other's Python work; more
# only queue for the GIL and the two cores.
WORKERS = 2


class Ticker:
    def __init__(
        self,
        *,
        interval: timedelta = timedelta(seconds=15),
        batch_size: int = BATCH_SIZE,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = timezone.now,
        workers: int = WORKERS,
    ) -> None:
        self.interval = interval
        self.workers = workers
        self.batch_size = batch_size
        self.rng = rng or random.SystemRandom()
        self.clock = clock
        self.stopping = False
        # Topic ids to leave alone for the rest of the pass: their transition
        # failed (logged; retried next pass) or lost a race.
        self._skip: set[Any] = set()
        # The order a Galera ticker works a batch in; not ``rng``, whose draws are the allocator's.
        self._order = random.Random()
        # The thread sending webhooks as transitions commit them (``run``); None: the pass sends them.
        self._webhook_sender: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------

    def request_stop(self, signum: int | None = None, frame: object = None) -> None:
        """Signal handler: finish the current transaction, then stop."""
        if not self.stopping:
            logger.info("stop requested; finishing the current transaction")
        self.stopping = True

    def run(self, *, once: bool = False) -> None:
        """Pass immediately, then every ``interval`` until stopped (or just once)."""
        fabric_config.log_status()
        logger.info("ticker started (interval %ss%s)", self.interval.total_seconds(), ", one pass" if once else "")
        if not once:
            # Webhooks go out as soon as their transition commits, not after the pass that made them
            # (a burst of allocations took seconds); announcements keep the contract's end of pass.
            self._webhook_sender = threading.Thread(
                target=deliver_webhooks_while,
                args=(lambda: not self.stopping,),
                kwargs={"idle": self.interval.total_seconds()},
                name="webhook-sender",
                daemon=True,
            )
            self._webhook_sender.start()
        while not self.stopping:
            try:
                self.run_pass()
            except Exception:
                if once:
                    raise
                # The database went away, most likely: keep running, reconnect on the next pass.
                logger.exception("ticker pass failed; retrying in %ss", self.interval.total_seconds())
            finally:
                close_old_connections()
            if once:
                break
            self._sleep(self.interval.total_seconds())
        if self._webhook_sender is not None:
            # It stops within STOP_POLL_SECONDS; sends in flight keep their claim (the lease) and go again later.
            self._webhook_sender.join(timeout=1.0)
            self._webhook_sender = None
        logger.info("ticker stopped")

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(SLEEP_SLICE, remaining))

    def run_pass(self) -> int:
        """Drain everything due, then deliver announcements. Returns the number of transitions made."""
        started = time.monotonic()
        lost_before = db.retries.count
        self._skip = set()
        counts: dict[str, int] = {}
        while not self.stopping:
            found = 0
            for step in self.steps:
                if self.stopping:
                    break
                done = step()
                counts[step.__name__] = counts.get(step.__name__, 0) + done
                found += done
            if not found:
                break
        total = sum(counts.values())
        delivered = 0
        if not self.stopping:
            delivered = deliver_due(
                now=self.clock(), should_stop=lambda: self.stopping, include_webhooks=self._webhook_sender is None
            )
        # Races lost and retried (db.run_in_transaction), by this pass's transitions and deliveries.
        lost = db.retries.count - lost_before
        if total or delivered or self._skip or lost:
            detail = ", ".join(f"{name} {n}" for name, n in counts.items() if n)
            logger.info(
                "pass: %d transitions (%s), %d skipped, %d lost races retried, %d announcements attempted in %.2fs",
                total,
                detail or "none",
                len(self._skip),
                lost,
                delivered,
                time.monotonic() - started,
            )
        return total

    # --- steps: each drains one kind of due work, returns how many it did -------

    @property
    def steps(self) -> list[Callable[[], int]]:
        # Timeline order, so a topic the ticker fell behind on moves through
        # every state in one pass (rounds before the debate's end).
        return [
            self.open_signups,
            self.close_signups,
            self.start_debates,
            self.advance_rounds,
            self.end_debates,
            self.expire_verdicts,
        ]

    def open_signups(self) -> int:
        # The announcement quotes the topic's verdict schema: read each schema
        # once per drain instead of once per topic (schemas are few, and frozen
        # once an announced topic uses them).
        schemas: dict[int, VerdictSchema] = {}

        def apply(topic: Topic, now: datetime) -> None:
            if topic.verdict_schema_id not in schemas:
                schemas[topic.verdict_schema_id] = VerdictSchema.objects.get(pk=topic.verdict_schema_id)
            topic.verdict_schema = schemas[topic.verdict_schema_id]
            transitions.topic_open_signup(topic, now=now)

        return self._drain_edge("open_signup", rules.OPEN_SIGNUP, apply)

    def close_signups(self) -> int:
        return self._drain_edge(
            "close_signup",
            rules.CLOSE_SIGNUP,
            lambda topic, now: transitions.topic_close_signup(topic, now=now, rng=self.rng),
        )

    def start_debates(self) -> int:
        return self._drain_edge(
            "start_debate", rules.START_DEBATE, lambda topic, now: transitions.topic_start_debate(topic, now=now)
        )

    def advance_rounds(self) -> int:
        due_rounds = Round.objects.filter(rules.rounds_due_q())
        # One boundary per transaction. A topic several boundaries behind gets
        # its next round only after this drain read the due rounds, so drain
        # again until none is left: all boundaries before any debate's end.
        done = 0
        while found := self._drain(
            "advance_round",
            due_rounds,
            "closes_at",
            lambda topic, now: transitions.topic_advance_round(topic, now=now),
            topic_field="topic_id",
            claim=lambda now: Topic.objects.filter(rules.topics_with_round_due_q(now)),
        ):
            done += found
        return done

    def end_debates(self) -> int:
        return self._drain_edge(
            "end_debate", rules.END_DEBATE, lambda topic, now: transitions.topic_end_debate(topic, now=now)
        )

    def expire_verdicts(self) -> int:
        return self._drain_edge(
            "expire_verdict", rules.EXPIRE_VERDICT, lambda topic, now: transitions.topic_expire_verdict(topic, now=now)
        )

    # --- the machinery shared by the steps -------------------------------------

    def _drain_edge(self, name: str, edge: rules.TimedEdge, apply: Apply) -> int:
        """Take ``edge`` for every topic it is due for."""
        return self._drain(name, Topic.objects.filter(edge.due_q()), edge.at, apply)

    def _drain(
        self,
        name: str,
        due: QuerySet,
        due_field: str,
        apply: Apply,
        *,
        topic_field: str = "pk",
        claim: Callable[[datetime], QuerySet[Topic]] | None = None,
    ) -> int:
        """Transition every row of ``due`` whose ``due_field`` has passed, oldest first, a batch at a time.

        ``due`` lists topics (or, with ``topic_field``, rows pointing at them).
        Each transaction claims one of the batch's topics that is still due,
        by default by ``due``'s own conditions, otherwise by ``claim(now)``,
        evaluated on the locked row. Batches are read by keyset pagination on
        (due, pk): every query is an index range scan and the drain always
        moves forward.
        """
        done = 0
        after: tuple[datetime, Any] | None = None
        while not self.stopping:
            rows = due.filter(**{f"{due_field}__lte": self.clock()})
            if after is not None:
                rows = rows.filter(Q(**{f"{due_field}__gt": after[0]}) | Q(**{due_field: after[0], "pk__gt": after[1]}))
            batch = list(rows.order_by(due_field, "pk").values_list(due_field, "pk", topic_field)[: self.batch_size])
            pending = list(dict.fromkeys(topic_id for _, _, topic_id in batch if topic_id not in self._skip))
            if settings.DATABASE_GALERA:
                # SKIP LOCKED sees only this node's locks: tickers on other nodes walking the
                # batch in the same order would claim the same topics at the same instant and
                # all but one lose at certification. In an order of its own, each mostly works
                # on topics the others are not touching (the batch is all due; order inside it
                # does not matter).
                self._order.shuffle(pending)

            def claimable(now: datetime, window: list) -> QuerySet[Topic]:
                if claim is not None:
                    return claim(now).filter(pk__in=window)
                return due.filter(pk__in=window, **{f"{due_field}__lte": now})

            done += self._work_off(name, pending, claimable, apply)
            if len(batch) < self.batch_size:
                break
            after = batch[-1][:2]
        return done

    def _work_off(self, name: str, pending: list, claimable: Claimable, apply: Apply) -> int:
        """Transition what is still due among ``pending``; returns how many transitions were made.

        On a database with SKIP LOCKED, ``workers`` threads do it side by
        side, each with its own connection (closed when the batch is done):
        one thread would spend half its time waiting for the database
        (round trips, the commit's flush). They claim topics exactly like
        separate tickers do. Inside a caller's transaction (tests) the
        threads' connections could not see its rows, so this thread works
        alone.
        """
        workers = min(self.workers, -(-len(pending) // CLAIM_WINDOW))
        if workers <= 1 or connection.in_atomic_block or not connection.features.has_select_for_update_skip_locked:
            return self._claim_loop(name, pending, claimable, apply)
        lock = threading.Lock()

        def work() -> int:
            try:
                return self._claim_loop(name, pending, claimable, apply, lock)
            finally:
                connection.close()

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ticker") as pool:
            futures = [pool.submit(work) for _ in range(workers)]
        # .result() re-raises a worker's failure (the database went away): the pass ends, as with one thread.
        return sum(future.result() for future in futures)

    def _claim_loop(
        self,
        name: str,
        pending: list,
        claimable: Claimable,
        apply: Apply,
        lock: threading.Lock | None = None,
    ) -> int:
        done = 0
        guard = lock or contextlib.nullcontext()
        while not self.stopping:
            with guard:
                window = pending[:CLAIM_WINDOW]
            if not window:
                break
            now = self.clock()
            made = self._transition(name, claimable(now, window), pending, apply, now, guard)
            if made is None:
                # Every id in the window is held by another ticker (or worker) or already moved on.
                with guard:
                    pending[:] = [topic_id for topic_id in pending if topic_id not in window]
            else:
                done += made
        return done

    def _transition(
        self,
        name: str,
        claimable: QuerySet[Topic],
        pending: list,
        apply: Apply,
        now: datetime,
        guard: contextlib.AbstractContextManager,
    ):
        """Claim one topic and transition it in one short transaction.

        True when a transition was made, False when the claimed topic needed
        none (or failed), None when nothing was left to claim. The claimed id
        leaves ``pending`` either way.
        """
        topic: Topic | None = None

        def attempt() -> bool | None:
            # Rerun from the claim when the database says this ticker lost a race (another ticker,
            # on another Galera node, moved the topic first): the rerun finds it no longer due.
            nonlocal topic
            topic = transitions.topic_lock_any(claimable)
            if topic is None:
                return None
            with guard:
                if topic.pk in pending:
                    pending.remove(topic.pk)
            return apply(topic, now) is not False

        try:
            return db.run_in_transaction(attempt, durable=True, label=f"ticker {name}")
        except transitions.StaleTopic:
            # Another writer changed the row between our read and our write; nothing to do.
            logger.info("topic %s: %s skipped, changed concurrently", topic.pk, name)
            self._skip.add(topic.pk)
            return False
        except Exception:
            if topic is None:
                raise  # the claim itself failed: a database problem, not this topic's
            logger.exception("topic %s: %s failed; skipped until the next pass", topic.pk, name)
            self._skip.add(topic.pk)
            if not connection.is_usable():
                # Every other topic would fail the same way; end the pass and reconnect.
                raise
            return False
