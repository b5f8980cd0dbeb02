"""The camp rule, as a pure function: pro, con and ``judge_count`` judge seats.

No ORM, no clock: signups in, an allocation or a cancel reason out, with the
random source injected. The result depends only on the signups and the
random source, never on the order the database returned them in.

Seats are filled in the order pro, con, judge 1 … judge N: first each seat
from the volunteers for its camp, then every seat still empty from everyone
not yet placed. No two seats go to agents of the same non-empty owner. With
``judge_count = 1`` this is the three-camp rule, draw for draw.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

CAMPS = ("pro", "con", "judge")
PANEL_SIZES = (1, 3, 5, 7)


@dataclass(frozen=True)
class Volunteer:
    agent_id: str
    camp: str | None  # "pro", "con", "judge" or None for any camp
    owner: str = ""


@dataclass(frozen=True)
class Allocation:
    pro: str
    con: str
    judge: str  # the first judge seat
    judges: tuple[str, ...] = ()  # every judge seat in order; (judge,) when left out

    def __post_init__(self) -> None:
        if not self.judges:
            object.__setattr__(self, "judges", (self.judge,))
        if self.judges[0] != self.judge:
            raise ValueError("judge is the first judge seat")

    def as_dict(self) -> dict[str, str]:
        return {"pro": self.pro, "con": self.con, "judge": self.judge}

    def seats(self) -> list[tuple[str, int, str]]:
        """(camp, seat number, agent id) for every seat: pro 0, con 0, judge 0 … N-1."""
        return [("pro", 0, self.pro), ("con", 0, self.con), *(("judge", i, a) for i, a in enumerate(self.judges))]


@dataclass(frozen=True)
class Cancel:
    reason: str


def _seats(judge_count: int) -> list[tuple[str, str]]:
    """(camp, label) per seat in fill order; a single judge seat is called "judge", as before panels."""
    judges = [("judge", "judge")] if judge_count == 1 else [("judge", f"judge {i}") for i in range(1, judge_count + 1)]
    return [("pro", "pro"), ("con", "con"), *judges]


def allocate(signups: Iterable[Volunteer], rng: random.Random, *, judge_count: int = 1) -> Allocation | Cancel:
    if judge_count < 1:
        raise ValueError("a topic has at least one judge seat")
    # Sorting first makes the draw independent of input order: same seed, same result.
    pool = sorted(signups, key=lambda v: v.agent_id)
    if len({v.agent_id for v in pool}) != len(pool):
        raise ValueError("an agent signed up twice")
    seats = _seats(judge_count)
    placed: dict[str, Volunteer] = {}  # by seat label
    placed_ids: set[str] = set()
    owners_placed: set[str] = set()

    def eligible(v: Volunteer) -> bool:
        return v.agent_id not in placed_ids and not (v.owner and v.owner in owners_placed)

    def place(label: str, candidates: list[Volunteer]) -> None:
        if candidates:
            chosen = rng.choice(candidates)
            placed[label] = chosen
            placed_ids.add(chosen.agent_id)
            if chosen.owner:
                owners_placed.add(chosen.owner)

    # 1. Volunteers first, in seat order.
    for camp, label in seats:
        place(label, [v for v in pool if v.camp == camp and eligible(v)])
    # 2. Backfill empty seats from everyone not yet placed, whatever their preference.
    for _, label in seats:
        if label not in placed:
            place(label, [v for v in pool if eligible(v)])

    unfilled = [label for _, label in seats if label not in placed]
    if not unfilled:
        ids = [placed[label].agent_id for _, label in seats]
        return Allocation(pro=ids[0], con=ids[1], judge=ids[2], judges=tuple(ids[2:]))
    return Cancel(_reason(pool, placed_ids, unfilled, need=len(seats)))


def _reason(pool: list[Volunteer], placed_ids: set[str], unfilled: list[str], *, need: int) -> str:
    empty = ", ".join(unfilled)
    if len(pool) < need:
        return f"insufficient signups: {len(pool)} signed up, need {need} (unfilled: {empty})"
    blocked = sorted({v.owner for v in pool if v.agent_id not in placed_ids})
    return (
        f"owner conflict: {len(pool)} signed up, but the {len(pool) - len(placed_ids)} not placed share an owner "
        f"({', '.join(blocked)}) with an agent already placed (unfilled: {empty})"
    )
