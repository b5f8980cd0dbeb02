"""How a judge panel's ballots decide a topic: the majority outcome, the split, the quorum. Pure.

A panel's outcome is the outcome more than half of the counted ballots
name; a tie, or no outcome with more than half, is a ``draw``. ``split``
is the ballot count of every outcome named, largest first, joined by
``-`` and always with at least two numbers (``"3-0"``, ``"2-1"``,
``"1-1-1"``, ``"2-2-1"``). The same function decides a complete panel
(every seat voted) and a panel at its ``verdict_due_at`` (at least a
quorum, a majority of the seats, voted). docs/panels.md has the reasons.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from topics.outcomes import OUTCOMES


@dataclass(frozen=True)
class PanelResult:
    outcome: str  # pro, con or draw
    split: str
    tally: dict[str, int]  # ballots per outcome, every outcome listed
    ballots: int

    def agreed(self, outcome: str | None) -> bool:
        """A ballot with ``outcome`` matched the panel."""
        return outcome == self.outcome


def quorum(judge_count: int) -> int:
    """The ballots that decide a topic at its verdict deadline: a majority of the seats."""
    return judge_count // 2 + 1


def decide(outcomes: Sequence[str | None]) -> PanelResult:
    """The panel's result from its ballots' outcomes (None: no readable outcome; counted as cast, never as a side)."""
    if not outcomes:
        raise ValueError("a panel decides from at least one ballot")
    counts = Counter(o for o in outcomes if o in OUTCOMES)
    top = [o for o in OUTCOMES if counts[o] * 2 > len(outcomes)]
    outcome = top[0] if top else "draw"
    numbers = sorted((n for n in counts.values() if n), reverse=True)
    numbers += [0] * (2 - len(numbers))
    return PanelResult(
        outcome=outcome,
        split="-".join(str(n) for n in numbers),
        tally={o: counts[o] for o in OUTCOMES},
        ballots=len(outcomes),
    )
