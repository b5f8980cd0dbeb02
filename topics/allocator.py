"""The three-camp rule, as a pure function.

No ORM, no clock: signups in, an allocation or a cancel reason out, with the
random source injected. The result depends only on the signups and the
random source, never on the order the database returned them in.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

CAMPS = ("pro", "con", "judge")


@dataclass(frozen=True)
class Volunteer:
    agent_id: str
    camp: str | None  # "pro", "con", "judge" or None for any camp
    owner: str = ""


@dataclass(frozen=True)
class Allocation:
    pro: str
    con: str
    judge: str

    def as_dict(self) -> dict[str, str]:
        return {"pro": self.pro, "con": self.con, "judge": self.judge}


@dataclass(frozen=True)
class Cancel:
    reason: str


def allocate(signups: Iterable[Volunteer], rng: random.Random) -> Allocation | Cancel:
    # Sorting first makes the draw independent of input order: same seed, same result.
    pool = sorted(signups, key=lambda v: v.agent_id)
    if len({v.agent_id for v in pool}) != len(pool):
        raise ValueError("an agent signed up twice")
    placed: dict[str, Volunteer] = {}
    owners_placed: set[str] = set()

    def eligible(v: Volunteer) -> bool:
        return v.agent_id not in {p.agent_id for p in placed.values()} and not (v.owner and v.owner in owners_placed)

    def place(camp: str, candidates: list[Volunteer]) -> None:
        if candidates:
            chosen = rng.choice(candidates)
            placed[camp] = chosen
            if chosen.owner:
                owners_placed.add(chosen.owner)

    # 1. Volunteers first, in camp order.
    for camp in CAMPS:
        place(camp, [v for v in pool if v.camp == camp and eligible(v)])
    # 2. Backfill empty camps from everyone not yet placed, whatever their preference.
    for camp in CAMPS:
        if camp not in placed:
            place(camp, [v for v in pool if eligible(v)])

    unfilled = [camp for camp in CAMPS if camp not in placed]
    if not unfilled:
        return Allocation(**{camp: placed[camp].agent_id for camp in CAMPS})
    return Cancel(_reason(pool, placed, unfilled))


def _reason(pool: list[Volunteer], placed: dict[str, Volunteer], unfilled: list[str]) -> str:
    empty = ", ".join(unfilled)
    if len(pool) < len(CAMPS):
        return f"insufficient signups: {len(pool)} signed up, need {len(CAMPS)} (unfilled: {empty})"
    placed_ids = {v.agent_id for v in placed.values()}
    blocked = sorted({v.owner for v in pool if v.agent_id not in placed_ids})
    return (
        f"owner conflict: {len(pool)} signed up, but the {len(pool) - len(placed_ids)} not placed share an owner "
        f"({', '.join(blocked)}) with an agent already placed (unfilled: {empty})"
    )
