"""Judge panels: ballots through the API, completion on the last seat, the split, the deadline's quorum,
ratings once per topic with each judge's agreement, and the constraints behind the seats and ballots."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.db.models import RestrictedError
from django.utils import timezone

from orchestrator.ticker import Ticker
from tests.api_support import Staged, client, player, stage_topic
from topics import panels, ratings
from topics.models import (
    AgentRating,
    Ballot,
    Camp,
    RatedOutcome,
    Topic,
    TopicEvent,
    TopicStatus,
    Verdict,
    VerdictSchema,
)

pytestmark = pytest.mark.django_db

S = TopicStatus


def ballot(staged: Staged, seat: int, winner: str, rationale: str | None = None):
    body = {"verdict": {"winner": winner, "scores": {"pro": 1, "con": 2}}, "rationale": rationale or f"seat {seat}"}
    return staged.judges[seat].client().post(f"/api/topics/{staged.topic.pk}/verdict/", body, format="json")


def kinds(topic: Topic) -> list[str]:
    return list(TopicEvent.objects.filter(topic=topic).order_by("seq").values_list("kind", flat=True))


# --- pure: the majority and the split -------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "outcome", "split"),
    [
        (["pro"], "pro", "1-0"),
        (["pro", "pro", "con"], "pro", "2-1"),
        (["con", "con", "con"], "con", "3-0"),
        (["pro", "con", "draw"], "draw", "1-1-1"),
        (["pro", "pro", "con", "con", "draw"], "draw", "2-2-1"),
        (["pro", "con"], "draw", "1-1"),  # a tie at the deadline
        (["pro", "pro", "con", "draw"], "draw", "2-1-1"),  # two of four is no majority
        (["draw", "draw", "pro"], "draw", "2-1"),
        (["pro", "pro", "pro", "con", "draw", "con", "pro"], "pro", "4-2-1"),
    ],
)
def test_the_majority_outcome_and_the_split(outcomes, outcome, split):
    result = panels.decide(outcomes)
    assert (result.outcome, result.split) == (outcome, split)
    assert sum(result.tally.values()) == len(outcomes)


def test_the_quorum_is_a_majority_of_the_seats():
    assert [panels.quorum(n) for n in (1, 3, 5, 7)] == [1, 2, 3, 4]


# --- the API --------------------------------------------------------------------------------


def test_a_panel_completes_when_its_last_seat_votes(now):
    staged = stage_topic("judging", now=now, judge_count=3)
    path = f"/api/topics/{staged.topic.pk}/verdict/"
    assert len(staged.judges) == 3
    first = ballot(staged, 0, "pro", "Pro's evidence.")
    assert first.status_code == 201, first.content
    assert first.json()["judge"] == {"id": str(staged.judges[0].agent.pk), "name": staged.judges[0].agent.name}
    assert first.json()["rationale"] == "Pro's evidence."
    assert staged.refresh().status == S.JUDGING
    assert client().get(path).json()["code"] == "not_found"  # no verdict until the panel is done
    # ballot_posted says who and how many, never how.
    posted = TopicEvent.objects.get(topic=staged.topic, kind="ballot_posted").data
    assert posted["ballots"] == 1 and posted["of"] == 3 and posted["seat"] == 0
    assert "verdict" not in posted and "rationale" not in posted and "Pro's" not in str(posted)

    assert ballot(staged, 2, "con").status_code == 201
    assert ballot(staged, 1, "pro").status_code == 201
    assert staged.refresh().status == S.COMPLETED
    body = client().get(path).json()
    assert body["verdict"] == {"winner": "pro"}
    assert body["split"] == "2-1" and body["tally"] == {"pro": 2, "con": 1, "draw": 0}
    assert body["judge"]["id"] == str(staged.judges[0].agent.pk)
    assert [b["judge"]["id"] for b in body["ballots"]] == [str(p.agent.pk) for p in staged.judges]
    assert [b["verdict"]["winner"] for b in body["ballots"]] == ["pro", "pro", "con"]
    events = kinds(staged.topic)
    assert events.count("ballot_posted") == 3 and events.count("verdict_posted") == 1
    assert events[-2:] == ["verdict_posted", "status_changed"]
    shown = TopicEvent.objects.get(topic=staged.topic, kind="verdict_posted").data
    assert shown["split"] == "2-1" and len(shown["ballots"]) == 3


def test_a_panel_judge_votes_once_and_only_seated_judges_vote(now):
    staged = stage_topic("judging", now=now, judge_count=3)
    assert ballot(staged, 0, "pro").status_code == 201
    again = ballot(staged, 0, "con")
    assert (again.status_code, again.json()["code"]) == (409, "verdict_exists")
    path = f"/api/topics/{staged.topic.pk}/verdict/"
    body = {"verdict": {"winner": "pro"}, "rationale": "r"}
    for outsider in (staged.pro, player()):
        answer = outsider.client().post(path, body, format="json")
        assert (answer.status_code, answer.json()["code"]) == (403, "not_the_judge")
    assert Ballot.objects.filter(topic=staged.topic).count() == 1


def test_a_split_panel_with_no_majority_is_a_draw(now):
    staged = stage_topic("judging", now=now, judge_count=3)
    for seat, winner in enumerate(("pro", "con", "draw")):
        assert ballot(staged, seat, winner).status_code == 201
    verdict = Verdict.objects.get(topic=staged.topic)
    assert (verdict.verdict, verdict.split) == ({"winner": "draw"}, "1-1-1")
    assert RatedOutcome.objects.get(topic=staged.topic).outcome == "draw"


def test_a_panel_judge_whose_ballot_is_in_is_told_to_wait(now):
    staged = stage_topic("judging", now=now, judge_count=3)
    me = staged.judges[1]
    [assignment] = me.client().get("/api/agents/me/").json()["assignments"]
    assert (assignment["camp"], assignment["next_action"]) == ("judge", "judge")
    assert ballot(staged, 1, "con").status_code == 201
    [assignment] = me.client().get("/api/agents/me/").json()["assignments"]
    assert assignment["next_action"] == "wait_for_verdict"


def test_the_topic_shows_every_judge_seat(now):
    staged = stage_topic("debating", now=now, judge_count=5)
    camps = client().get(f"/api/topics/{staged.topic.pk}/").json()["camps"]
    assert [j["id"] for j in camps["judges"]] == [str(p.agent.pk) for p in staged.judges]
    assert camps["judge"] == camps["judges"][0]
    assert camps["pro"]["id"] == str(staged.pro.agent.pk)


# --- ratings: one game per topic, the judges' agreement ---------------------------------------


def test_a_panel_rates_its_debaters_once_and_records_each_judges_agreement(now):
    staged = stage_topic("judging", now=now, judge_count=5)
    votes = ["con", "con", "pro", "con", "draw"]
    for seat, winner in enumerate(votes):
        assert ballot(staged, seat, winner).status_code == 201
    [rated] = RatedOutcome.objects.filter(topic=staged.topic)
    assert rated.outcome == "con" and [o for _, o in rated.panel] == votes
    pro, con = (AgentRating.objects.get(agent=p.agent) for p in (staged.pro, staged.con))
    assert (pro.games, pro.losses, con.games, con.wins) == (1, 1, 1, 1)
    for judge, vote in zip(staged.judges, votes, strict=True):
        row = AgentRating.objects.get(agent=judge.agent)
        assert (row.judged, row.panel_ballots, row.agreed, row.games) == (1, 1, int(vote == "con"), 0)
        record = judge.client().get(f"/api/agents/{judge.agent.pk}/").json()["record"]
        assert record["agreement"] == (1.0 if vote == "con" else 0.0)
    # The rebuild replays the panel to exactly the stored rows.
    before = {r.agent_id: ratings.Standing.of(r).values() for r in AgentRating.objects.all()}
    report = ratings.ratings_rebuild()
    assert report.changed == 0
    assert {r.agent_id: ratings.Standing.of(r).values() for r in AgentRating.objects.all()} == before


def test_the_rebuild_knows_a_panel_judge_who_also_debates(now):
    # The log holds a debater's id as its column's text (dashed on MariaDB's native uuid, hex elsewhere)
    # and a panel's judges as hex: the rebuild must see one agent, not two.
    panel = stage_topic("judging", now=now, judge_count=3, seed=1)
    for seat, winner in enumerate(("pro", "con", "pro")):
        assert ballot(panel, seat, winner).status_code == 201
    judge = panel.judges[1]
    debate = stage_topic("judging", now=now, seed=2, players={"pro": judge, "con": player(), "judge": player()})
    body = {"verdict": {"winner": "pro"}, "rationale": "r"}
    assert debate.judge.client().post(f"/api/topics/{debate.topic.pk}/verdict/", body, format="json").status_code == 201
    row = AgentRating.objects.get(agent=judge.agent)
    assert (row.games, row.wins, row.judged, row.panel_ballots, row.agreed) == (1, 1, 1, 1, 0)
    before = {r.agent_id: ratings.Standing.of(r).values() for r in AgentRating.objects.all()}
    report = ratings.ratings_rebuild()
    assert (report.agents, report.changed) == (len(before), 0)
    assert {r.agent_id: ratings.Standing.of(r).values() for r in AgentRating.objects.all()} == before


def test_a_single_judge_has_no_agreement(now):
    staged = stage_topic("judging", now=now)
    body = {"verdict": {"winner": "pro"}, "rationale": "r"}
    assert staged.judge.client().post(f"/api/topics/{staged.topic.pk}/verdict/", body, format="json").status_code == 201
    row = AgentRating.objects.get(agent=staged.judge.agent)
    assert (row.judged, row.panel_ballots) == (1, 0)
    assert ratings.record_view(row)["agreement"] is None
    assert RatedOutcome.objects.get(topic=staged.topic).panel == []
    # A single judge's verdict reads as a panel of one: its ballot, the split "1-0".
    shown = client().get(f"/api/topics/{staged.topic.pk}/verdict/").json()
    assert (shown["split"], shown["tally"]) == ("1-0", {"pro": 1, "con": 0, "draw": 0})
    assert [b["judge"]["id"] for b in shown["ballots"]] == [str(staged.judge.agent.pk)]
    assert shown["verdict"] == {"winner": "pro"} and shown["rationale"] == "r"


# --- the deadline, with time travel --------------------------------------------------------------


def _due_panel(judge_count: int, *, ballots: list[str], first_seat: int = 0) -> Staged:
    now = timezone.now()
    staged = stage_topic("judging", now=now, judge_count=judge_count, verdict_due_at=now + timedelta(minutes=5))
    for seat, winner in enumerate(ballots, start=first_seat):
        assert ballot(staged, seat, winner).status_code == 201
    return staged


def test_at_the_deadline_a_majority_of_ballots_completes_the_topic_with_those():
    # The first seat (the verdict's "judge") is among those who did not vote.
    staged = _due_panel(5, ballots=["pro", "con", "pro"], first_seat=1)
    ticker = Ticker(rng=random.Random(1), interval=timedelta(milliseconds=50))
    with time_machine.travel(staged.topic.verdict_due_at + timedelta(seconds=1), tick=False):
        assert ticker.expire_verdicts() == 1
        late = ballot(staged, 0, "con")
    assert (late.status_code, late.json()["code"]) == (409, "verdict_exists")
    topic = staged.refresh()
    assert topic.status == S.COMPLETED
    body = client().get(f"/api/topics/{topic.pk}/verdict/").json()
    assert body["verdict"] == {"winner": "pro"} and body["split"] == "2-1" and len(body["ballots"]) == 3
    assert "3 of 5 judges" in body["rationale"]
    assert kinds(topic).count("verdict_posted") == 1
    assert RatedOutcome.objects.get(topic=topic).outcome == "pro"
    # Only the voters are counted; the silent seats have no record, live or rebuilt.
    assert not AgentRating.objects.filter(agent__in=[staged.judges[0].agent, staged.judges[4].agent]).exists()
    assert AgentRating.objects.get(agent=staged.judges[2].agent).judged == 1
    assert ratings.ratings_rebuild().changed == 0


def test_at_the_deadline_fewer_than_a_majority_cancel_the_topic():
    staged = _due_panel(5, ballots=["pro", "pro"])
    ticker = Ticker(rng=random.Random(1), interval=timedelta(milliseconds=50))
    with time_machine.travel(staged.topic.verdict_due_at + timedelta(seconds=1), tick=False):
        assert ticker.expire_verdicts() == 1
    topic = staged.refresh()
    assert topic.status == S.CANCELLED
    assert topic.cancelled_reason.startswith("no verdict by ")
    assert topic.cancelled_reason.endswith(": 2 of 5 ballots, 3 needed")
    assert not Verdict.objects.filter(topic=topic).exists() and not RatedOutcome.objects.filter(topic=topic).exists()


def test_a_single_judge_deadline_reads_as_before():
    now = timezone.now()
    staged = stage_topic("judging", now=now, verdict_due_at=now + timedelta(minutes=5))
    with time_machine.travel(staged.topic.verdict_due_at + timedelta(seconds=1), tick=False):
        assert Ticker(rng=random.Random(1), interval=timedelta(seconds=1)).expire_verdicts() == 1
    topic = staged.refresh()
    assert topic.status == S.CANCELLED
    assert topic.cancelled_reason == f"no verdict by {topic.verdict_due_at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"


# --- allocation and the constraints -------------------------------------------------------------


def test_too_few_signups_for_a_panel_cancel_naming_the_seats(make_topic, make_agent, now):
    topic = make_topic(judge_count=5)
    ticker = Ticker(rng=random.Random(1), interval=timedelta(seconds=1))
    with time_machine.travel(topic.signup_open_at, tick=False):
        ticker.open_signups()
    from topics.models import Signup

    for camp in ("pro", "con", "judge", "judge", None):
        Signup.objects.create(topic=topic, agent=make_agent(), camp=camp)
    with time_machine.travel(topic.signup_close_at, tick=False):
        assert ticker.close_signups() == 1
    topic.refresh_from_db()
    assert topic.status == S.CANCELLED
    assert topic.cancelled_reason == "insufficient signups: 5 signed up, need 7 (unfilled: judge 4, judge 5)"


def test_the_database_holds_one_ballot_per_seat_and_one_seat_per_agent(now):
    staged = stage_topic("judging", now=now, judge_count=3)
    seat = Camp.objects.get(topic=staged.topic, camp="judge", seat=1)
    Ballot.objects.create(topic=staged.topic, seat=seat, judge=seat.agent, verdict={"winner": "pro"}, rationale="r")
    with pytest.raises(IntegrityError), transaction.atomic():
        Ballot.objects.create(topic=staged.topic, seat=seat, judge=seat.agent, verdict={"winner": "con"}, rationale="r")
    with pytest.raises(IntegrityError), transaction.atomic():  # the same agent in a second seat
        Camp.objects.create(topic=staged.topic, camp="judge", seat=3, agent=staged.pro.agent)
    with pytest.raises(IntegrityError), transaction.atomic():  # two agents in one seat
        Camp.objects.create(topic=staged.topic, camp="judge", seat=2, agent=player().agent)
    with pytest.raises(IntegrityError), transaction.atomic():  # debaters have one seat
        Camp.objects.create(topic=staged.topic, camp="pro", seat=1, agent=player().agent)
    with pytest.raises(IntegrityError), transaction.atomic():
        Topic.objects.filter(pk=staged.topic.pk).update(judge_count=4)


def test_a_voted_seat_stays_while_its_topic_can_still_be_deleted(now):
    staged = stage_topic("judging", now=now, judge_count=3, visibility="private")  # private: no rated outcome
    assert ballot(staged, 1, "pro").status_code == 201
    seat = Camp.objects.get(topic=staged.topic, camp="judge", seat=1)
    with pytest.raises(RestrictedError):
        seat.delete()
    Topic.objects.filter(pk=staged.topic.pk).delete()  # what the benchmarks' cleanup does
    assert not Ballot.objects.exists() and not Camp.objects.filter(pk=seat.pk).exists()


def test_a_panel_needs_a_schema_with_an_outcome(make_topic):
    unrated = VerdictSchema.objects.create(name="free", schema={"type": "object"})
    topic = make_topic(judge_count=3, verdict_schema=unrated)
    with pytest.raises(Exception, match="needs an outcome"):
        topic.full_clean()


def test_create_topic_schedules_a_blind_panel(capsys, winner_schema):
    call_command("create_topic", "--title", "Panel", "--judges", "5", "--blind")
    topic_id = capsys.readouterr().out.strip().splitlines()[-1]
    topic = Topic.objects.get(pk=topic_id)
    assert (topic.judge_count, topic.blind_judging) == (5, True)
    with pytest.raises(CommandError):
        call_command("create_topic", "--title", "Panel", "--judges", "4")
    VerdictSchema.objects.create(name="free", schema={"type": "object"})
    with pytest.raises(CommandError, match="--judges: A panel decides by majority"):
        call_command("create_topic", "--title", "Panel", "--judges", "3", "--schema", "free")
