"""Ratings and records: updated when a public rated topic completes, and rebuilt from the outcome log.

The method is openskill's Bradley-Terry (full pairing) model with its
defaults; docs/ratings.md says why and what the numbers mean.

Invariants:

- Every change to an agent's ``AgentRating`` happens under that agent's
  row lock (``Agent``) and the ``RatingLedger`` row held in share mode. A
  completion takes them in the lock order of ``topics.transitions`` (topic,
  ledger, agents in primary-key order: ``topic_lock_for_completion``, which
  calls ``topic_hold_ledger`` here), before it inserts the verdict.
  Completions of debates with no agent in common run side by side; those
  sharing an agent queue on it.
- The rebuild takes the ledger exclusively, and its swap's upserts then take
  shared locks on agents' rows (their foreign-key checks). It never waits for
  an agent held by a completion that waits for the ledger: completions hold
  the ledger before their agents.
- ``RatedOutcome.seq`` is allocated under those locks, held until commit:
  two outcomes sharing an agent are in ``seq`` order and in commit order
  alike, and outcomes with no agent in common commute. So replaying the log
  in ``seq`` order through ``_apply`` (the one function both paths use)
  gives the stored values exactly: the arithmetic is the same, and doubles
  round-trip through both databases exactly.
- The rebuild takes the ledger exclusively, which waits until no completion
  is between its ``seq`` and its commit: under it, every ``seq`` below the
  highest is committed, so a replay up to that mark misses none.
- Only public topics whose schema has an outcome (``topics.outcomes``)
  write anything. Debaters get a rating and wins/losses/draws; the judge
  gets ``judged``, never a rating.
- A panel is one rated game, decided by its majority outcome (the topic's
  verdict, ``topics.panels``): the debaters are rated once per topic,
  whatever the number of judges. Each judge whose ballot counted gets
  ``judged`` and a ``panel_ballots``, and an ``agreed`` when its ballot
  named the panel's outcome (its agreement). ``RatedOutcome.panel`` keeps
  the counted ballots so the rebuild replays exactly this.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import CharField, Max
from django.db.models.functions import Cast
from openskill.models import BradleyTerryFull

from dialectic.db import run_in_transaction
from topics import sql
from topics.models import (
    AgentRating,
    Ballot,
    CampName,
    Outcome,
    RatedOutcome,
    RatingLedger,
    Topic,
    Verdict,
    Visibility,
)
from topics.outcomes import outcome_pointer, verdict_outcome

MODEL = BradleyTerryFull()
# low and high are mu ∓ this many sigmas (about a 95 % interval).
SPREAD = 2.0
# Outcomes read per query by the rebuild: its memory is this chunk plus one standing per agent.
REBUILD_CHUNK = 5000
# Rows written per statement by the rebuild's swap.
WRITE_BATCH = 500

_RANKS = {Outcome.PRO: [1, 2], Outcome.CON: [2, 1], Outcome.DRAW: [1, 1]}
_RATING_FIELDS = (
    "mu",
    "sigma",
    "low",
    "games",
    "wins",
    "losses",
    "draws",
    "judged",
    "panel_ballots",
    "agreed",
    "updated_at",
)


@dataclass
class Standing:
    """One agent's rating and record while it is computed; the fields of ``AgentRating``."""

    mu: float = MODEL.mu
    sigma: float = MODEL.sigma
    games: int = 0
    wins: int = 0
    losses: int = 0
    draws: int = 0
    judged: int = 0
    panel_ballots: int = 0
    agreed: int = 0
    updated_at: datetime | None = field(default=None)

    @property
    def low(self) -> float:
        return self.mu - SPREAD * self.sigma

    @classmethod
    def of(cls, row: AgentRating | None) -> Standing:
        if row is None:
            return cls()
        return cls(**{name: getattr(row, name) for name in _RATING_FIELDS if name != "low"})

    def values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _RATING_FIELDS}


def interval(mu: float, sigma: float) -> tuple[float, float]:
    return mu - SPREAD * sigma, mu + SPREAD * sigma


def _apply(
    pro: Standing,
    con: Standing,
    judge: Standing,
    outcome: str,
    at: datetime,
    panel: list[tuple[Standing, str]] | None = None,
) -> None:
    """One rated debate: the library rates pro against con, the record counts it. The only update rule.

    ``panel``: each counted ballot's judge and outcome, for a panel; then ``judge`` (the first seat) is not
    counted on its own, only as the panel's ballots say.
    """
    [[new_pro], [new_con]] = MODEL.rate(
        [[MODEL.rating(mu=pro.mu, sigma=pro.sigma)], [MODEL.rating(mu=con.mu, sigma=con.sigma)]],
        ranks=_RANKS[outcome],
    )
    for standing, rated, won in ((pro, new_pro, Outcome.PRO), (con, new_con, Outcome.CON)):
        standing.mu, standing.sigma = rated.mu, rated.sigma
        standing.games += 1
        if outcome == Outcome.DRAW:
            standing.draws += 1
        elif outcome == won:
            standing.wins += 1
        else:
            standing.losses += 1
        standing.updated_at = at
    if not panel:
        judge.judged += 1
        judge.updated_at = at
        return
    for standing, ballot in panel:
        standing.judged += 1
        standing.panel_ballots += 1
        standing.agreed += ballot == outcome
        standing.updated_at = at


# --- the completion ----------------------------------------------------------------------


def _ledger_row() -> None:
    """Recreate the ledger row (migration 0004's) should it be missing: deleted by hand, a flushed test database."""
    RatingLedger.objects.bulk_create([RatingLedger(pk=1)], ignore_conflicts=True)


def _ledger_share() -> None:
    """Hold the ledger in share mode, as every completion does: they never wait for each other; the rebuild waits."""
    if not sql.rating_ledger_share():
        _ledger_row()
        sql.rating_ledger_share()


def _ledger_lock() -> None:
    """Hold the ledger exclusively (the rebuild): in-flight completions finish first, new ones wait."""
    if not RatingLedger.objects.select_for_update().filter(pk=1).exists():
        _ledger_row()
        RatingLedger.objects.select_for_update().get(pk=1)


def _save(standings: dict[Any, Standing], rows: dict[Any, AgentRating]) -> int:
    """Write ``standings`` over ``rows`` (the stored ones, by agent id; missing ones are created).

    Only rows whose values differ are written, in one upsert per batch; returns how many.
    """
    writes = []
    for agent_id, standing in standings.items():
        row, values = rows.get(agent_id), standing.values()
        if row is None or any(getattr(row, name) != value for name, value in values.items()):
            writes.append(AgentRating(agent_id=agent_id, **values))
    if writes:
        # SQLite names the conflicting key (ON CONFLICT (agent_id)); MySQL's ON DUPLICATE KEY may not.
        target = ["agent"] if connection.features.supports_update_conflicts_with_target else None
        AgentRating.objects.bulk_create(
            writes, batch_size=WRITE_BATCH, update_conflicts=True, unique_fields=target, update_fields=_RATING_FIELDS
        )
    return len(writes)


def _rated_outcome(topic: Topic, verdict: dict[str, Any]) -> str | None:
    """The outcome this verdict gives a rated topic; None when nothing is rated (private, or no outcome)."""
    if topic.visibility != Visibility.PUBLIC:
        return None
    return verdict_outcome(topic.verdict_schema.schema, verdict)


def topic_hold_ledger(topic: Topic) -> None:
    """Hold the ledger in share mode now when this topic can be rated: before the caller locks its agents.

    The rebuild's swap holds the ledger exclusively and then takes shared
    locks on agents' rows; a completion holding an agent's row while it
    waited for the ledger would close a circle with it. Asked of the topic,
    not of a verdict: a panel judge's ballot locks before it is known whether
    it is the last one.
    """
    if topic.visibility == Visibility.PUBLIC and outcome_pointer(topic.verdict_schema.schema) is not None:
        _ledger_share()


def topic_record_rating(
    topic: Topic, *, verdict: Verdict, seats: dict[tuple[str, int], Any], now: datetime, ballots: Sequence[Ballot] = ()
) -> RatedOutcome | None:
    """Rate the debaters and count the judge for a completing topic, in the caller's transaction.

    The caller holds the topic's row lock, the ledger in share mode and the
    locks of its agents, ``seats`` ((camp, seat) → agent id, from
    ``transitions.topic_lock_for_completion``; ``transitions.topic_complete``).
    ``ballots``: a panel's counted ballots.
    None, and nothing written, for a private topic or one whose schema has no outcome.
    Four statements: the ledger in share mode, the agents' ratings, one upsert, the log row.
    """
    outcome = _rated_outcome(topic, verdict.verdict)
    if outcome is None:
        return None
    # Held already (topic_hold_ledger, before the agents); asked again, at no wait, so that no outcome
    # can be logged outside it, which the rebuild's high-water mark relies on.
    _ledger_share()
    # Every writer of these rows holds their agents' locks, as the caller does: the reads are current.
    agents = set(seats.values())
    rows = {row.agent_id: row for row in AgentRating.objects.filter(agent__in=agents)}
    standings = {agent_id: Standing.of(rows.get(agent_id)) for agent_id in agents}
    pro, con, judge = (seats[(c, 0)] for c in (CampName.PRO, CampName.CON, CampName.JUDGE))
    # A panel's ballots, the topic's own: their judges hold seats, so their standings are loaded above.
    panel = (
        [(b.judge_id, verdict_outcome(topic.verdict_schema.schema, b.verdict)) for b in ballots]
        if topic.is_panel
        else []
    )
    _apply(standings[pro], standings[con], standings[judge], outcome, now, [(standings[j], o) for j, o in panel])
    # Seated judges who did not vote took no part: nothing of theirs is written.
    _save({pk: s for pk, s in standings.items() if s.updated_at is not None or pk in rows}, rows)
    return RatedOutcome.objects.create(
        topic=topic,
        pro_id=pro,
        con_id=con,
        judge_id=judge,
        outcome=outcome,
        panel=[[j.hex, o] for j, o in panel],  # the text the rebuild's Cast reads the other ids as
        completed_at=now,
    )


def rating_row(agent: Any) -> AgentRating | None:
    """The agent's rating row (selected with it, or one query), or None before its first rated topic."""
    try:
        return agent.rating
    except AgentRating.DoesNotExist:
        return None


# --- the rebuild -------------------------------------------------------------------------


@dataclass(frozen=True)
class RebuildReport:
    outcomes: int  # replayed from the log
    agents: int  # with a rating row afterwards
    changed: int  # rows whose stored values differed from the replay (0 when nothing drifted)


def _agent_key(text: str, spellings: dict[str, str]) -> str:
    """One spelling per agent id, 32 hex digits, whichever a row gave: parsed once per spelling, not per outcome.

    The Cast gives hex on SQLite and on MySQL's char(32), the dashed form on
    MariaDB's native uuid column; a panel's ballots are stored as hex.
    """
    key = spellings.get(text)
    if key is None:
        key = spellings[text] = uuid.UUID(text).hex
    return key


def _replay_chunk(
    standings: dict[Any, Standing], *, after: int, upto: int | None, chunk: int, spellings: dict[str, str]
) -> tuple[int, int]:
    """Apply up to ``chunk`` outcomes with ``after`` < seq <= ``upto`` (one query); returns (last seq, how many)."""
    # The ids as the column's text: converting three UUIDs per outcome was most of the read's cost
    # (4.5 s of 5.4 s for 20,000 outcomes); ``_agent_key`` converts once per agent instead.
    log = RatedOutcome.objects.filter(seq__gt=after)
    if upto is not None:
        log = log.filter(seq__lte=upto)
    rows = (
        log.order_by("seq")
        .annotate(**{f"{camp}_text": Cast(f"{camp}_id", CharField()) for camp in ("pro", "con", "judge")})
        .values_list("seq", "pro_text", "con_text", "judge_text", "outcome", "panel", "completed_at")[:chunk]
    )
    last, count = after, 0
    for seq, pro_text, con_text, judge_text, outcome, panel, completed_at in rows:
        pro, con = _agent_key(pro_text, spellings), _agent_key(con_text, spellings)
        voters = [(_agent_key(j, spellings), o) for j, o in panel or []]
        for agent_id in (pro, con, *(j for j, _ in voters)):
            standings.setdefault(agent_id, Standing())
        # A panel counts its voters only: the first seat may not have voted (decided at the deadline).
        first_judge = standings.setdefault(_agent_key(judge_text, spellings), Standing()) if not voters else Standing()
        _apply(
            standings[pro],
            standings[con],
            first_judge,
            outcome,
            completed_at,
            [(standings[j], o) for j, o in voters],
        )
        last, count = seq, count + 1
    return last, count


def _replay(
    standings: dict[Any, Standing],
    *,
    after: int,
    upto: int | None = None,
    chunk: int,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Apply the log after ``after`` (up to ``upto``), chunk by chunk (keyset on seq: memory is one chunk)."""
    last, total, spellings = after, 0, {}
    while True:
        last, applied = _replay_chunk(standings, after=last, upto=upto, chunk=chunk, spellings=spellings)
        total += applied
        if progress and applied:
            progress(total)
        if applied < chunk:
            return last, total


def _swap(standings: dict[Any, Standing]) -> int:
    """Make the stored rows exactly ``standings``; returns how many rows changed, appeared or went."""
    written, stale, seen = 0, [], set()
    last = None
    while True:
        page = AgentRating.objects.order_by("agent_id")
        if last is not None:
            page = page.filter(agent_id__gt=last)
        rows = {row.agent_id: row for row in page[:WRITE_BATCH]}
        if not rows:
            break
        last = next(reversed(rows))
        seen.update(rows)
        stale.extend(agent_id for agent_id in rows if agent_id not in standings)
        written += _save({a: standings[a] for a in rows if a in standings}, rows)
    written += _save({a: s for a, s in standings.items() if a not in seen}, {})
    for start in range(0, len(stale), WRITE_BATCH):
        AgentRating.objects.filter(agent_id__in=stale[start : start + WRITE_BATCH]).delete()
    return written + len(stale)


def ratings_rebuild(*, chunk: int = REBUILD_CHUNK, progress: Callable[[int], None] | None = None) -> RebuildReport:
    """Recompute every rating and record from the log and store exactly that, safe beside live completions.

    First a moment under the ledger lock reads the log's highest ``seq``: no
    completion then holds the ledger, so every outcome up to it is committed.
    The replay of those runs outside any lock (completions carry on); then one
    short transaction takes the ledger lock again, applies whatever completed
    meanwhile, and swaps the result in. A failure anywhere leaves the stored
    ratings as they were.
    """

    def high_water_mark() -> int:
        _ledger_lock()
        return RatedOutcome.objects.aggregate(mark=Max("seq"))["mark"] or 0

    mark = run_in_transaction(high_water_mark, label="ratings_rebuild")
    standings: dict[str, Standing] = {}
    last, count = _replay(standings, after=0, upto=mark, chunk=chunk, progress=progress)

    def swap() -> tuple[int, int, int]:
        # On a copy: should the database ask for a rerun (a deadlock with a completion), the replay is intact.
        final = {agent_id: replace(standing) for agent_id, standing in standings.items()}
        _ledger_lock()
        _, tail = _replay(final, after=last, chunk=chunk)
        changed = _swap({uuid.UUID(agent_id): standing for agent_id, standing in final.items()})
        return tail, len(final), changed

    tail, agents, changed = run_in_transaction(swap, label="ratings_rebuild")
    return RebuildReport(outcomes=count + tail, agents=agents, changed=changed)


def rating_view(row: AgentRating | None) -> dict[str, Any]:
    """``{"value", "low", "high", "games"}`` as the API shows it (the prior for an agent never rated)."""
    standing = Standing.of(row)
    low, high = interval(standing.mu, standing.sigma)
    return {"value": _round(standing.mu), "low": _round(low), "high": _round(high), "games": standing.games}


def record_view(row: AgentRating | None) -> dict[str, int]:
    standing = Standing.of(row)
    return {
        "debates": standing.games,
        "wins": standing.wins,
        "losses": standing.losses,
        "draws": standing.draws,
        "judged": standing.judged,
        "panel_ballots": standing.panel_ballots,
        "agreement": _round(standing.agreed / standing.panel_ballots) if standing.panel_ballots else None,
    }


def _round(value: float) -> float:
    # Two decimals are all the precision a rating has to a reader; the stored doubles keep the rest.
    return round(value, 2)
