"""Ratings and records: the completion updates them as the library would, and the rebuild reproduces them."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from openskill.models import BradleyTerryFull

from tests.api_support import Player, player, stage_topic
from topics import ratings
from topics.models import AgentRating, RatedOutcome, VerdictSchema

pytestmark = pytest.mark.django_db

RANKS = {"pro": [1, 2], "con": [2, 1], "draw": [1, 1]}


@pytest.fixture
def now():
    return timezone.now()


def debate(pro: Player, con: Player, judge: Player, outcome: str, *, now, **options) -> None:
    """A topic between these three, judged ``outcome`` through the verdict endpoint."""
    staged = stage_topic("judging", now=now, players={"pro": pro, "con": con, "judge": judge}, **options)
    response = judge.client().post(
        f"/api/topics/{staged.topic.pk}/verdict/",
        {"verdict": {"winner": outcome}, "rationale": "Weighed."},
        format="json",
    )
    assert response.status_code == 201, response.content


def stored() -> dict:
    fields = ("mu", "sigma", "low", "games", "wins", "losses", "draws", "judged")
    return {r.agent_id: tuple(getattr(r, f) for f in fields) for r in AgentRating.objects.all()}


def test_a_small_tournament_equals_the_librarys_own_figures(now):
    a, b, c, d = (player(name) for name in ("ada", "bo", "cy", "di"))
    games = [
        (a, b, c, "pro"),
        (c, d, a, "con"),
        (a, c, b, "draw"),
        (b, d, c, "pro"),
        (d, a, b, "draw"),
        (c, b, d, "con"),
        (a, d, c, "pro"),
    ]
    model = BradleyTerryFull()
    expected = {p.agent.pk: model.rating() for p in (a, b, c, d)}
    for pro, con, judge, outcome in games:
        debate(pro, con, judge, outcome, now=now)
        [[expected[pro.agent.pk]], [expected[con.agent.pk]]] = model.rate(
            [[expected[pro.agent.pk]], [expected[con.agent.pk]]], ranks=RANKS[outcome]
        )
    for p, rating in expected.items():
        row = AgentRating.objects.get(agent_id=p)
        assert (row.mu, row.sigma) == (rating.mu, rating.sigma)  # exactly, not approximately
        assert row.low == rating.mu - 2 * rating.sigma
    row = AgentRating.objects.get(agent=a.agent)
    assert (row.games, row.wins, row.losses, row.draws, row.judged) == (4, 2, 0, 2, 1)
    assert RatedOutcome.objects.count() == 7

    board = a.client().get("/api/agents/").json()
    assert board["count"] == 4
    lows = [entry["rating"]["low"] for entry in board["results"]]
    assert lows == sorted(lows, reverse=True)
    top = board["results"][0]
    best = max(expected.items(), key=lambda item: item[1].mu - 2 * item[1].sigma)
    assert top["id"] == str(best[0])
    assert top["rating"]["value"] == round(best[1].mu, 2)
    assert top["rating"]["high"] == round(best[1].mu + 2 * best[1].sigma, 2)


def test_a_draw_is_symmetric(now):
    first, second = player(), player()
    debate(first, second, player(), "draw", now=now)
    one, two = (AgentRating.objects.get(agent=p.agent) for p in (first, second))
    assert one.mu == two.mu == 25.0 and one.sigma == two.sigma < 25 / 3
    # Between unequal agents a draw moves them toward each other by the same amount.
    strong, weak = player(), player()
    debate(strong, weak, player(), "pro", now=now)
    mu = lambda p: AgentRating.objects.get(agent=p.agent).mu  # noqa: E731
    before = (mu(strong), mu(weak))
    debate(weak, strong, player(), "draw", now=now)
    after = (mu(strong), mu(weak))
    assert after[0] < before[0] and after[1] > before[1]
    assert after[1] - before[1] == pytest.approx(before[0] - after[0], rel=1e-12)


@pytest.mark.parametrize("winner", ["pro", "con"])
def test_a_win_raises_the_winner_and_lowers_the_loser(now, winner):
    pro, con, judge = player(), player(), player()
    debate(pro, con, judge, winner, now=now)
    won, lost = (pro, con) if winner == "pro" else (con, pro)
    w, lo = AgentRating.objects.get(agent=won.agent), AgentRating.objects.get(agent=lost.agent)
    assert w.mu > 25 > lo.mu
    assert (w.wins, w.losses, lo.wins, lo.losses) == (1, 0, 0, 1)
    assert w.sigma < 25 / 3 and lo.sigma < 25 / 3


def test_the_judge_gets_a_record_not_a_rating(now):
    judge = player()
    debate(player(), player(), judge, "pro", now=now)
    row = AgentRating.objects.get(agent=judge.agent)
    assert (row.mu, row.sigma, row.games, row.judged) == (25.0, 25 / 3, 0, 1)
    body = judge.client().get(f"/api/agents/{judge.agent.pk}/").json()
    assert body["record"] == {
        "debates": 0,
        "wins": 0,
        "losses": 0,
        "draws": 0,
        "judged": 1,
        "panel_ballots": 0,
        "agreement": None,
    }
    assert body["rating"]["games"] == 0
    assert str(judge.agent.pk) not in [e["id"] for e in judge.client().get("/api/agents/").json()["results"]]


def test_private_and_unrated_topics_change_nothing(now):
    pro, con, judge = player(), player(), player()
    unrated = VerdictSchema.objects.create(
        name="free-text",
        schema={"type": "object", "required": ["winner"], "properties": {"winner": {"enum": ["pro", "con", "draw"]}}},
    )
    debate(pro, con, judge, "pro", now=now, visibility="private")
    debate(pro, con, judge, "pro", now=now, verdict_schema=unrated)
    assert not AgentRating.objects.exists()
    assert not RatedOutcome.objects.exists()
    body = pro.client().get(f"/api/agents/{pro.agent.pk}/").json()
    assert body["rating"] == {"value": 25.0, "low": 8.33, "high": 41.67, "games": 0}
    # The unrated public topic is in its recent topics (without an outcome); the private one is not.
    assert [(t["camp"], t["outcome"]) for t in body["recent"]] == [("pro", None)]


def test_a_rebuild_reproduces_the_stored_values_exactly(now):
    agents = [player() for _ in range(5)]
    for i in range(12):
        pro, con, judge = agents[i % 5], agents[(i + 2) % 5], agents[(i + 4) % 5]
        debate(pro, con, judge, ("pro", "con", "draw")[i % 3], now=now)
    live = stored()
    report = ratings.ratings_rebuild(chunk=5)  # several chunks
    assert report == ratings.RebuildReport(outcomes=12, agents=5, changed=0)
    assert stored() == live
    updated = {r.agent_id: r.updated_at for r in AgentRating.objects.all()}
    AgentRating.objects.update(mu=0.0, wins=99)
    assert ratings.ratings_rebuild(chunk=1).changed == 5
    assert stored() == live
    assert {r.agent_id: r.updated_at for r in AgentRating.objects.all()} == updated


def test_a_rebuild_drops_rows_the_log_does_not_explain(now):
    debate(player(), player(), player(), "con", now=now)
    live = stored()
    stray = player()
    AgentRating.objects.create(agent=stray.agent, mu=40.0, sigma=1.0, low=38.0, games=3, updated_at=now)
    assert ratings.ratings_rebuild().changed == 1
    assert stored() == live


class Crash(Exception):
    pass


@pytest.mark.parametrize("where", ["replay", "swap"])
def test_a_rebuild_that_crashes_midway_changes_nothing_and_a_rerun_gives_the_same(now, monkeypatch, where):
    agents = [player() for _ in range(4)]
    for i in range(8):
        debate(agents[i % 4], agents[(i + 1) % 4], agents[(i + 2) % 4], ("pro", "draw", "con")[i % 3], now=now)
    live = stored()
    AgentRating.objects.update(mu=1.0)  # drift the rebuild must repair
    drifted = stored()
    real = ratings._apply if where == "replay" else ratings._save
    calls = {"n": 0}

    def fail_part_way(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Crash()
        return real(*args, **kwargs)

    monkeypatch.setattr(ratings, "_apply" if where == "replay" else "_save", fail_part_way)
    with pytest.raises(Crash):
        # One row per write batch, so the swap crashes after writing two of them.
        monkeypatch.setattr(ratings, "WRITE_BATCH", 1)
        ratings.ratings_rebuild(chunk=2)
    assert stored() == drifted  # all or nothing
    monkeypatch.undo()
    ratings.ratings_rebuild()
    assert stored() == live


def test_a_completion_during_the_rebuild_is_in_its_result(now):
    agents = [player() for _ in range(3)]
    for i in range(4):
        debate(agents[i % 3], agents[(i + 1) % 3], agents[(i + 2) % 3], "pro", now=now)
    late = []

    def complete_one_more(applied: int) -> None:
        # Runs between chunks of the lock-free replay: a completion the rebuild has not read yet.
        if not late:
            late.append(applied)
            debate(agents[2], agents[0], agents[1], "con", now=now)

    report = ratings.ratings_rebuild(chunk=2, progress=complete_one_more)
    assert report.outcomes == 5 and late == [2]
    live = stored()
    assert ratings.ratings_rebuild().changed == 0
    assert stored() == live


def test_rebuild_ratings_command(now):
    debate(player(), player(), player(), "draw", now=now)
    out = StringIO()
    call_command("rebuild_ratings", "--chunk", "1", stdout=out)
    assert "Replayed 1 outcome(s) for 3 agent(s)" in out.getvalue()
    assert "0 rating row(s) differed" in out.getvalue()
