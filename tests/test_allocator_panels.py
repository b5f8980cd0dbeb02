"""The camp rule with judge panels: pro, con and 3, 5 or 7 judge seats. No database."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from topics.allocator import CAMPS, Allocation, Cancel, Volunteer, allocate


def volunteers(*prefs: str | None, owners: tuple[str, ...] = ()) -> list[Volunteer]:
    owners = owners or ("",) * len(prefs)
    return [
        Volunteer(agent_id=f"a{i:03d}", camp=camp, owner=owner) for i, (camp, owner) in enumerate(zip(prefs, owners))
    ]


def test_a_panel_fills_pro_con_and_every_judge_seat_with_volunteers_first():
    pool = volunteers("judge", "pro", "con", "judge", "judge", None)
    for seed in range(30):
        result = allocate(pool, random.Random(seed), judge_count=3)
        assert isinstance(result, Allocation)
        assert (result.pro, result.con) == ("a001", "a002")
        assert sorted(result.judges) == ["a000", "a003", "a004"]
        assert result.judge == result.judges[0]


def test_missing_judge_seats_are_named():
    result = allocate(volunteers("pro", "con", "judge", None), random.Random(1), judge_count=3)
    assert result == Cancel("insufficient signups: 4 signed up, need 5 (unfilled: judge 3)")
    result = allocate(volunteers("pro"), random.Random(1), judge_count=5)
    assert result == Cancel(
        "insufficient signups: 1 signed up, need 7 (unfilled: con, judge 1, judge 2, judge 3, judge 4, judge 5)"
    )


def test_an_owner_conflict_that_empties_a_judge_seat_is_named():
    pool = volunteers("pro", "con", "judge", "judge", "judge", owners=("a", "b", "c", "d", "a"))
    result = allocate(pool, random.Random(2), judge_count=3)
    assert result == Cancel(
        "owner conflict: 5 signed up, but the 1 not placed share an owner (a) with an agent already placed "
        "(unfilled: judge 3)"
    )


def test_a_single_judge_seat_draws_exactly_as_the_three_camp_rule():
    pool = volunteers("pro", None, "judge", None, "judge", "con", None, owners=tuple("abcdefg"))
    for seed in range(50):
        assert allocate(pool, random.Random(seed), judge_count=1) == allocate(pool, random.Random(seed))


# --- properties ---------------------------------------------------------------

pools = st.lists(
    st.tuples(st.sampled_from([*CAMPS, None]), st.sampled_from(["", "", "", "acme", "zeta", "omega", "nova", "vega"])),
    max_size=16,
).map(lambda specs: [Volunteer(agent_id=f"a{i:02d}", camp=c, owner=o) for i, (c, o) in enumerate(specs)])
panel_sizes = st.sampled_from([1, 3, 5, 7])


def usable(pool: list[Volunteer]) -> int:
    """How many agents could sit together: one per named owner, every ownerless agent on its own."""
    return len({v.owner for v in pool if v.owner}) + sum(1 for v in pool if not v.owner)


@settings(max_examples=400, deadline=None)
@given(pool=pools, judge_count=panel_sizes, seed=st.integers(min_value=0, max_value=2**32))
def test_property_panel_invariants(pool: list[Volunteer], judge_count: int, seed: int):
    result = allocate(pool, random.Random(seed), judge_count=judge_count)
    need = 2 + judge_count
    # Cancelled exactly when fewer than 2 + judge_count mutually compatible agents signed up.
    assert isinstance(result, Cancel) == (usable(pool) < need)
    if isinstance(result, Cancel):
        assert f"{len(pool)} signed up" in result.reason
        kind = "owner conflict" if len(pool) >= need else "insufficient signups"
        assert result.reason.startswith(kind)
        assert "(unfilled: " in result.reason
        return
    by_id = {v.agent_id: v for v in pool}
    seated = [result.pro, result.con, *result.judges]
    assert len(result.judges) == judge_count
    assert len(set(seated)) == need, "an agent holds two seats"
    owners = [by_id[a].owner for a in seated if by_id[a].owner]
    assert len(owners) == len(set(owners)), "two seats share an owner"
    assert [seat for seat in result.seats()] == [
        ("pro", 0, result.pro),
        ("con", 0, result.con),
        *(("judge", i, a) for i, a in enumerate(result.judges)),
    ]


@settings(max_examples=200, deadline=None)
@given(
    pool=pools,
    judge_count=panel_sizes,
    seed=st.integers(min_value=0, max_value=2**32),
    shuffle=st.randoms(use_true_random=False),
)
def test_property_panel_is_deterministic_per_seed_whatever_the_order(pool, judge_count, seed, shuffle):
    shuffled = pool[:]
    shuffle.shuffle(shuffled)
    first = allocate(pool, random.Random(seed), judge_count=judge_count)
    assert allocate(shuffled, random.Random(seed), judge_count=judge_count) == first
    assert allocate(pool, random.Random(seed), judge_count=judge_count) == first
