"""The three-camp rule: plain objects in, an allocation or a reason out. No database."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topics.allocator import CAMPS, Allocation, Cancel, Volunteer, allocate


def volunteers(*prefs: str | None, owners: tuple[str, ...] = ()) -> list[Volunteer]:
    owners = owners or ("",) * len(prefs)
    return [
        Volunteer(agent_id=f"a{i:03d}", camp=camp, owner=owner) for i, (camp, owner) in enumerate(zip(prefs, owners))
    ]


def placed(result: Allocation | Cancel) -> list[str]:
    assert isinstance(result, Allocation), result
    return [result.pro, result.con, result.judge]


def test_no_signups_cancels_naming_every_camp():
    result = allocate([], random.Random(1))
    assert result == Cancel("insufficient signups: 0 signed up, need 3 (unfilled: pro, con, judge)")


def test_two_signups_cancel_naming_the_count_and_the_empty_camp():
    result = allocate(volunteers("pro", "con"), random.Random(1))
    assert result == Cancel("insufficient signups: 2 signed up, need 3 (unfilled: judge)")


def test_a_single_volunteer_cancels_even_with_a_preference():
    result = allocate(volunteers("judge"), random.Random(1))
    assert isinstance(result, Cancel)
    assert result.reason.startswith("insufficient signups: 1 signed up, need 3")
    assert result.reason.endswith("(unfilled: pro, con)")  # the volunteer took the judge seat


def test_one_volunteer_per_camp_gets_exactly_their_camp():
    pool = volunteers("judge", "pro", "con")
    for seed in range(20):
        result = allocate(pool, random.Random(seed))
        assert result == Allocation(pro="a001", con="a002", judge="a000")


def test_several_volunteers_for_one_camp_never_place_an_agent_twice():
    pool = volunteers("pro", "pro", "pro", "pro")
    for seed in range(50):
        agents = placed(allocate(pool, random.Random(seed)))
        assert len(set(agents)) == 3


def test_volunteers_win_their_camp_and_backfill_fills_the_rest():
    pool = volunteers("judge", None, "pro", None, "judge")
    for seed in range(50):
        result = allocate(pool, random.Random(seed))
        assert result.pro == "a002"
        assert result.judge in {"a000", "a004"}
        # Con has no volunteer: backfilled from everyone left, whatever their preference.
        assert result.con in {"a000", "a001", "a003", "a004"} - {result.judge}
        assert len(set(placed(result))) == 3


def test_backfill_draws_from_every_unplaced_agent():
    pool = volunteers("pro", None, None, None, "pro")
    results = [allocate(pool, random.Random(seed)) for seed in range(200)]
    assert all(r.con != r.pro for r in results)
    # Con has no volunteer: it is drawn from every unplaced agent, the losing pro volunteer included.
    assert {r.con for r in results} == {"a000", "a001", "a002", "a003", "a004"}


def test_insufficient_backfill_cancels_with_the_empty_camp():
    result = allocate(volunteers("pro", None), random.Random(3))
    assert result == Cancel("insufficient signups: 2 signed up, need 3 (unfilled: judge)")


def test_large_pool_always_gives_three_distinct_agents():
    rng = random.Random(42)
    pool = [Volunteer(agent_id=f"a{i:05d}", camp=rng.choice([*CAMPS, None])) for i in range(5000)]
    for seed in range(20):
        agents = placed(allocate(pool, random.Random(seed)))
        assert len(set(agents)) == 3
        assert all(agent_id.startswith("a") for agent_id in agents)


def test_large_pool_volunteers_are_honoured():
    pool = [Volunteer(agent_id=f"a{i:04d}", camp=CAMPS[i % 3]) for i in range(3000)]
    by_id = {v.agent_id: v for v in pool}
    result = allocate(pool, random.Random(5))
    assert by_id[result.pro].camp == "pro"
    assert by_id[result.con].camp == "con"
    assert by_id[result.judge].camp == "judge"


def test_agents_of_one_owner_never_share_a_topic():
    pool = volunteers("pro", "con", "judge", None, owners=("acme", "acme", "zeta", "omega"))
    for seed in range(50):
        result = allocate(pool, random.Random(seed))
        owners = {"a000": "acme", "a001": "acme", "a002": "zeta", "a003": "omega"}
        assert len({owners[agent_id] for agent_id in placed(result)}) == 3


def test_owner_conflict_that_empties_a_camp_is_named_in_the_reason():
    pool = volunteers("pro", "con", "judge", owners=("acme", "acme", "zeta"))
    result = allocate(pool, random.Random(1))
    assert isinstance(result, Cancel)
    assert result.reason == (
        "owner conflict: 3 signed up, but the 1 not placed share an owner (acme) with an agent already placed "
        "(unfilled: con)"
    )


def test_empty_owner_is_nobody_in_particular():
    pool = volunteers("pro", "con", "judge", owners=("", "", ""))
    assert placed(allocate(pool, random.Random(1))) == ["a000", "a001", "a002"]


def test_an_agent_signed_up_twice_is_a_programming_error():
    with pytest.raises(ValueError, match="twice"):
        allocate([Volunteer("a", "pro"), Volunteer("a", "con"), Volunteer("b", None)], random.Random(1))


def test_same_seed_same_allocation_whatever_the_input_order():
    pool = volunteers("pro", "pro", None, "con", None, "judge", None, "judge", owners=tuple("abcdefgh"))
    expected = allocate(pool, random.Random(1234))
    for shuffle_seed in range(30):
        shuffled = pool[:]
        random.Random(shuffle_seed).shuffle(shuffled)
        assert allocate(shuffled, random.Random(1234)) == expected


def test_different_seeds_do_draw_differently():
    pool = volunteers(*([None] * 10))
    assert len({tuple(placed(allocate(pool, random.Random(seed)))) for seed in range(30)}) > 10


# --- properties ---------------------------------------------------------------

pools = st.lists(
    st.tuples(st.sampled_from([*CAMPS, None]), st.sampled_from(["", "", "acme", "zeta", "omega", "nova"])),
    max_size=12,
).map(lambda specs: [Volunteer(agent_id=f"a{i:02d}", camp=c, owner=o) for i, (c, o) in enumerate(specs)])


def owner_groups(pool: list[Volunteer]) -> int:
    """How many agents could sit together: one per named owner, every ownerless agent on its own."""
    return len({v.owner for v in pool if v.owner}) + sum(1 for v in pool if not v.owner)


@settings(max_examples=300, deadline=None)
@given(pool=pools, seed=st.integers(min_value=0, max_value=2**32))
def test_property_invariants(pool: list[Volunteer], seed: int):
    result = allocate(pool, random.Random(seed))
    by_id = {v.agent_id: v for v in pool}

    # Cancel exactly when three mutually compatible agents do not exist.
    assert isinstance(result, Cancel) == (owner_groups(pool) < 3)
    if isinstance(result, Cancel):
        assert f"{len(pool)} signed up" in result.reason
        if len(pool) >= 3:
            assert result.reason.startswith("owner conflict")
        return

    chosen = [by_id[agent_id] for agent_id in placed(result)]
    assert len({v.agent_id for v in chosen}) == 3, "an agent placed twice"
    owners = [v.owner for v in chosen if v.owner]
    assert len(owners) == len(set(owners)), "two camps share an owner"

    # Volunteers are honoured whenever one was compatible with the volunteers placed before it.
    earlier: list[Volunteer] = []
    for camp, agent in zip(CAMPS, chosen, strict=True):
        taken = {v.owner for v in earlier if v.owner}
        compatible = [v for v in pool if v.camp == camp and not (v.owner and v.owner in taken)]
        if compatible:
            assert agent.camp == camp, f"{camp} went to a non-volunteer although {compatible} volunteered"
            earlier.append(agent)


@settings(max_examples=100, deadline=None)
@given(pool=pools, seed=st.integers(min_value=0, max_value=2**32), shuffle=st.randoms(use_true_random=False))
def test_property_input_order_never_matters(pool: list[Volunteer], seed: int, shuffle: random.Random):
    shuffled = pool[:]
    shuffle.shuffle(shuffled)
    assert allocate(shuffled, random.Random(seed)) == allocate(pool, random.Random(seed))
