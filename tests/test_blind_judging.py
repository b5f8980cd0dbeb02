"""Blind judging, scanned end to end: a blind panel's debaters appear in no response anyone but they get, until
the topic completes; then everywhere.

A real server process answers real HTTP requests: the API (list, detail,
transcript, verdict, the leaderboard, profiles, a judge's ``agents/me``), the
topic stream (anonymous and a judge's), the spectator pages and the argument
fragments their live updates fetch; the Fabric announcements go to a real
receiver. Every body is searched for the debaters' ids (both spellings) and
names, which nothing else contains.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta

import httpx
import pytest
from django.db import transaction
from django.utils import timezone

from devtools.fabric_receiver import FabricServer, fabric_env
from devtools.processes import stream_server
from devtools.sse_client import SseReader
from fabric_bridge.delivery import deliver_due
from tests.api_support import Player, player
from topics import transitions
from topics.models import Signup, Topic, TopicStatus

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]

# Names that occur nowhere but in these agents' rows.
PRO_NAME, CON_NAME = "Quillon-Vex-4471", "Marrowgate-Ito-9023"


@pytest.fixture
def fabric():
    server = FabricServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(fabric, request):
    """One web server announcing to ``fabric`` (its completions queue announcements), and this process too."""
    env = fabric_env(fabric)
    # The child's environment first: overridden settings have no SETTINGS_MODULE for child_env to pass on.
    with stream_server(env) as stack:
        settings = request.getfixturevalue("settings")
        for name in ("FABRIC_GUILD_BASE_URL", "FABRIC_ANNOUNCE_CHANNEL_ID", "FABRIC_SYSTEM_API_KEY"):
            setattr(settings, name, env[name])
        settings.FABRIC_BOT_BEARER_TOKEN = env["FABRIC_BOT_BEARER_TOKEN"]
        settings.FABRIC_READ_TIMEOUT = timedelta(seconds=2)
        yield stack


def needles(*players: Player) -> list[str]:
    return [s for p in players for s in (str(p.agent.pk), p.agent.pk.hex, p.agent.name)]


def leaks(text: str, debaters: list[str]) -> list[str]:
    return [needle for needle in debaters if needle.lower() in text.lower()]


def get(server, path: str, token: str | None = None, status: int = 200) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{server.base_url}{path}", headers=headers, timeout=10)
    assert response.status_code == status, (path, response.status_code, response.text[:500])
    return response.text


def post(server, path: str, token: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def stream_text(reader: SseReader) -> str:
    return "\n".join(f"{e.id} {e.kind} {json.dumps(e.data)}" for e in reader.events)


def test_a_blind_panel_hides_its_debaters_everywhere_until_completion(server, make_topic, fabric):
    pro, con = player(PRO_NAME), player(CON_NAME)
    judges = [player(f"blind-judge-{n}") for n in range(3)]
    debaters = needles(pro, con)
    # Signup opened twenty minutes ago; the debate runs from ten minutes ago for an hour.
    topic: Topic = make_topic(
        title="Blind: should panels judge?",
        start=timezone.now() - timedelta(minutes=20),
        debate_for=timedelta(hours=1),
        judge_count=3,
        blind_judging=True,
    )
    now = timezone.now()
    with transaction.atomic():
        transitions.topic_open_signup(transitions.topic_lock(topic.pk), now=now)
    Signup.objects.bulk_create(
        [Signup(topic=topic, agent=pro.agent, camp="pro"), Signup(topic=topic, agent=con.agent, camp="con")]
        + [Signup(topic=topic, agent=j.agent, camp="judge") for j in judges]
    )
    with transaction.atomic():
        locked = transitions.topic_lock(topic.pk)
        transitions.topic_close_signup(locked, now=now, rng=random.Random(3))
        transitions.topic_start_debate(locked, now=now)
    judge = judges[0]
    base = f"/api/topics/{topic.pk}"

    # The debaters argue through the API; their own answers are theirs to see, and are masked anyway.
    argument_ids = []
    for who, text in ((pro, "Panels average out one judge's quirks."), (con, "Three weak judges are still weak.")):
        answer = post(server, f"{base}/arguments/", who.token, {"content": text})
        assert answer.status_code == 201, answer.text
        assert answer.json()["agent"]["id"] is None
        argument_ids.append(answer.json()["id"])

    anonymous_stream = SseReader(server.events_url(topic.pk))
    judge_stream = SseReader(server.events_url(topic.pk), headers={"Authorization": f"Bearer {judge.token}"})

    Topic.objects.filter(pk=topic.pk).update(debate_end_at=timezone.now())
    with transaction.atomic():
        transitions.topic_end_debate(transitions.topic_lock(topic.pk), now=timezone.now())
    # Two of three ballots: the panel is not done, the identities stay hidden.
    ballots = []
    for seat_judge, winner in ((judges[0], "pro"), (judges[1], "con")):
        answer = post(server, f"{base}/verdict/", seat_judge.token, {"verdict": {"winner": winner}, "rationale": "r"})
        assert answer.status_code == 201, answer.text
        ballots.append(answer.text)
    assert Topic.objects.get(pk=topic.pk).status == TopicStatus.JUDGING
    deliver_due()

    seen: dict[str, str] = {f"ballot answer {n}": text for n, text in enumerate(ballots)}
    for token, who in ((None, "anonymous"), (judge.token, "judge")):
        for path in (
            "/api/topics/",
            "/api/topics/?status=judging",
            f"{base}/",
            f"{base}/arguments/",
            f"{base}/arguments/?round=0",
            "/api/agents/",
            *(f"/api/agents/{j.agent.pk}/" for j in judges),
        ):
            seen[f"{who} {path}"] = get(server, path, token)
        seen[f"{who} {base}/verdict/"] = get(server, f"{base}/verdict/", token, status=404)
    seen["judge /api/agents/me/"] = get(server, "/api/agents/me/", judge.token)
    for path in (
        "/",
        f"/topics/{topic.pk}/",
        *(f"/topics/{topic.pk}/arguments/{a}/" for a in argument_ids),
        "/leaderboard/",
        *(f"/agents/{j.agent.pk}/" for j in judges),
    ):
        seen[f"page {path}"] = get(server, path)
    # ballot_posted twice after the four events of the judging edge: wait until both streams have them.
    last = Topic.objects.get(pk=topic.pk).event_seq
    for reader in (anonymous_stream, judge_stream):
        reader.wait_for_seq(last)
        seen[f"stream {reader.headers or 'anonymous'}"] = stream_text(reader)
    announcements = [r.json for r in fabric.requests()]
    assert [a["metadata"]["kind"] for a in announcements] == ["signup_opened"]
    seen["fabric"] = json.dumps(announcements)

    found = {where: hits for where, text in seen.items() if (hits := leaks(text, debaters))}
    assert found == {}, f"debater identities shown before completion: {found}"
    # The scan looked at real content: the masked debaters, their arguments, the ballots' events.
    detail = json.loads(seen[f"anonymous {base}/"])
    assert detail["camps"]["pro"] == {"id": None, "name": "pro"}
    assert detail["camps"]["con"] == {"id": None, "name": "con"}
    assert {j["id"] for j in detail["camps"]["judges"]} == {str(j.agent.pk) for j in judges}
    transcript = json.loads(seen[f"judge {base}/arguments/"])
    assert [a["agent"] for a in transcript] == [{"id": None, "name": "pro"}, {"id": None, "name": "con"}]
    assert [e.kind for e in judge_stream.events].count("argument_posted") == 2
    assert [e.kind for e in judge_stream.events].count("ballot_posted") == 2
    assert "Three weak judges are still weak." in seen[f"page /topics/{topic.pk}/"]
    # A debater's own profile does not give the topic away either.
    for debater in (pro, con):
        assert str(topic.pk) not in get(server, f"/api/agents/{debater.agent.pk}/")
        assert str(topic.pk) not in get(server, f"/agents/{debater.agent.pk}/")

    # The last ballot completes the topic: the reveal.
    answer = post(server, f"{base}/verdict/", judges[2].token, {"verdict": {"winner": "pro"}, "rationale": "r"})
    assert answer.status_code == 201, answer.text
    anonymous_stream.wait_done()
    revealed = [e.data for e in anonymous_stream.events if e.kind == "identities_revealed"]
    assert revealed == [
        {"pro": {"id": str(pro.agent.pk), "name": PRO_NAME}, "con": {"id": str(con.agent.pk), "name": CON_NAME}}
    ]
    judge_stream.wait_done()
    detail = json.loads(get(server, f"{base}/"))
    assert detail["camps"]["pro"] == {"id": str(pro.agent.pk), "name": PRO_NAME}
    assert detail["camps"]["con"] == {"id": str(con.agent.pk), "name": CON_NAME}
    transcript = json.loads(get(server, f"{base}/arguments/", judge.token))
    assert [a["agent"]["name"] for a in transcript] == [PRO_NAME, CON_NAME]
    page = get(server, f"/topics/{topic.pk}/")
    assert PRO_NAME in page and CON_NAME in page and "2-1" in page
    assert PRO_NAME in get(server, f"/topics/{topic.pk}/arguments/{argument_ids[0]}/")
    assert str(topic.pk) in get(server, f"/api/agents/{pro.agent.pk}/")
    assert str(topic.pk) in get(server, f"/agents/{con.agent.pk}/")
    deliver_due()
    completed = [r.json for r in fabric.requests() if r.json["metadata"]["kind"] == "topic_completed"]
    assert len(completed) == 1 and PRO_NAME in completed[0]["content"] and CON_NAME in completed[0]["content"]
