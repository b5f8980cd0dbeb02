"""What reaches the Fabric channel when agents and staff write hostile text, read at a real local HTTP receiver.

Every announcement is posted with the system key, so text inside it must
not mention anyone, make a link or change the message's layout, and no
verdict, however odd, may make an announcement fail (DESIGN.md, "Hostile
input", "Announcements").
"""

from __future__ import annotations

import json
import random
import re

import pytest
from django.db import transaction

from fabric_bridge.delivery import deliver_due
from fabric_bridge.models import Announcement, AnnouncementKind, AnnouncementStatus
from topics import transitions
from topics.announcements import METADATA_MAX_BYTES, build_payload
from topics.models import Signup, Verdict, VerdictSchema

pytestmark = pytest.mark.django_db

MENTIONS = "@everyone @here <@123456> <@!123456> <@&7890> <#4242> <!channel>"
LINKS = "[free prize](https://evil.example/x) <https://evil.example> https://evil.example/y www.evil.example"
LAYOUT = "line one\n# A heading\n```\ncode fence\n```\n> a quote\n- a list\n1. ordered\n===\n**bold** _it_ ||spoiler||"
HOSTILE = f"{MENTIONS} {LINKS}\n{LAYOUT} &#64;everyone"
CAMPS = ("pro", "con", "judge")


def assert_inert(content: str) -> None:
    """Nothing in ``content`` a chat client would act on: mentions, links, or markup that reshapes the message."""
    assert not re.search(r"@(everyone|here|\w)", content), content
    assert not re.search(r"<[@#!/a-z]", content, re.IGNORECASE), content
    assert "://" not in content and not re.search(r"www\.", content, re.IGNORECASE), content
    assert not re.search(r"(?<!\\)\[", content), content  # every [ escaped: no markdown link
    assert "&#64;" not in content.replace("\\&#64;", ""), content
    ours = ("- Signup: ", "- Debate: ", "- Verdict due: ", "- Verdict schema: ")  # the template's own list
    for line in content.split("\n"):
        body = line.removeprefix("> ")
        assert line.startswith(ours) or not re.match(r"\s*(#|>|-|\+|=|\d+[.)]|```|~~~)", body), line
    # The template's own code spans (the schema's slug, the signup endpoint) are the only unescaped backticks.
    without_ours = re.sub(r"(?<!\\)`(POST /api/topics/[0-9a-f-]+/signups/|[\w-]+)`", "", content)
    assert not re.search(r"(?<!\\)(`|\|\||~~)", without_ours), content


def to_judging(topic, agents: dict, now):
    """Open ``topic``, sign ``agents`` up for their camps and walk it to judging; returns it locked.

    Runs inside the caller's transaction, so the caller posts the verdict under the same lock.
    """
    transitions.topic_open_signup(transitions.topic_lock(topic.pk), now=now)
    for camp, agent in agents.items():
        Signup.objects.create(topic=topic, agent=agent, camp=camp)
    locked = transitions.topic_lock(topic.pk)
    transitions.topic_close_signup(locked, now=now, rng=random.Random(1))
    transitions.topic_start_debate(locked, now=now)
    transitions.topic_end_debate(locked, now=now)
    return locked


def test_a_hostile_topic_and_verdict_reach_the_receiver_inert(fabric, make_topic, make_agent, now):
    schema = VerdictSchema.objects.create(name="anything", schema={"type": "object"}, description=HOSTILE)
    topic = make_topic(title=f"**Vote now** {MENTIONS} {LINKS}", summary=HOSTILE, verdict_schema=schema)
    # Names are at most 100 characters (MariaDB enforces it).
    agents = {camp: make_agent(name=f"{camp} @everyone <@1> <#2>\n# [x](https://evil.example)") for camp in CAMPS}
    with transaction.atomic():
        locked = to_judging(topic, agents, now)
        seats = transitions.topic_lock_for_completion(locked)  # before the verdict, as verdict_create
        verdict = Verdict.objects.create(
            topic=locked,
            judge=agents["judge"],
            verdict={"winner": HOSTILE, "scores": {MENTIONS: LINKS, "@here": "<#1>", LINKS: {"x": [MENTIONS]}}},
            rationale=HOSTILE,
        )
        transitions.topic_complete(locked, verdict=verdict, now=now, seats=seats)

    assert deliver_due(now=now) == 2
    received = {r.json["metadata"]["kind"]: r.json for r in fabric.requests()}
    assert set(received) == {"signup_opened", "topic_completed"}
    for body in received.values():
        assert_inert(body["content"])
    completed = received["topic_completed"]["content"]
    # Still readable: the words are there, only defused.
    assert "Vote now" in completed and "free prize" in completed and "evil.example" in completed
    header = completed.split("\n")[2]
    assert header.startswith("Pro: pro ") and " · Con: con " in header and " · Judge: judge " in header
    # Metadata is machine data: verbatim.
    assert received["topic_completed"]["metadata"]["verdict"]["winner"] == HOSTILE


def test_a_cancellation_reason_and_title_are_inert(fabric, make_topic, now):
    topic = make_topic(title=f"{LINKS}\n# Title")
    with transaction.atomic():
        transitions.topic_open_signup(transitions.topic_lock(topic.pk), now=now)
        transitions.topic_cancel(transitions.topic_lock(topic.pk), reason=HOSTILE, now=now)
    assert deliver_due(now=now) == 2
    cancelled = next(r.json for r in fabric.requests() if r.json["metadata"]["kind"] == "topic_cancelled")
    assert_inert(cancelled["content"])
    assert cancelled["content"].count("\n") == 2  # title, blank line, reason: the reason's newlines stay out


ODD_VERDICTS = {
    "winner-a-list": {"winner": ["pro"], "scores": [1, 2, 3]},
    "winner-an-object": {"winner": {"name": "pro"}, "scores": {"pro": {"deep": [1, {"x": None}]}}},
    "scores-of-every-type": {"winner": "con", "scores": {"a": True, "b": None, "c": 1e300, "d": -(10**300), "e": "x"}},
    "ten-thousand-scores": {"winner": "pro", "scores": {f"k{i}": i for i in range(10_000)}},
    "huge-strings": {"winner": "w" * 60_000, "scores": {"s" * 30_000: "v" * 30_000}},
    "lone-surrogates": {"winner": "\ud800", "scores": {"\udfff": "\ud83d"}, "\ud800key": 1},
    "empty": {},
    "blank-winner": {"winner": "   "},
}


def completed_topic(make_topic, make_agent, now, name: str):
    """A topic completed by its judge, and that verdict; the announcements are queued."""
    topic = make_topic(title=f"Odd verdict: {name}")
    agents = {camp: make_agent(name=f"{camp}-{name}") for camp in CAMPS}
    with transaction.atomic():
        locked = to_judging(topic, agents, now)
        seats = transitions.topic_lock_for_completion(locked)  # before the verdict, as verdict_create
        verdict = Verdict.objects.create(
            topic=locked, judge=agents["judge"], verdict={"winner": "pro"}, rationale="A long rationale. " * 500
        )
        transitions.topic_complete(locked, verdict=verdict, now=now, seats=seats)
    return topic, verdict


@pytest.mark.parametrize("case", list(ODD_VERDICTS))
def test_no_verdict_makes_the_completion_announcement_fail(fabric, make_topic, make_agent, now, case):
    topic, verdict = completed_topic(make_topic, make_agent, now, case)
    # The message is built from the verdict as the judge sent it. (The API refuses lone surrogates,
    # and MariaDB's JSON check refuses to store them, so that case is built in memory only.)
    verdict.verdict = ODD_VERDICTS[case]
    Announcement.objects.filter(topic=topic, kind=AnnouncementKind.TOPIC_COMPLETED).update(
        payload=build_payload(topic, AnnouncementKind.TOPIC_COMPLETED, verdict=verdict)
    )

    assert deliver_due(now=now) == 2
    assert set(Announcement.objects.values_list("status", flat=True)) == {AnnouncementStatus.SENT}
    body = next(r for r in fabric.requests() if r.json["metadata"]["kind"] == "topic_completed")
    metadata = body.json["metadata"]
    assert metadata["kind"] == "topic_completed" and metadata["topic_id"] == str(topic.id)
    assert len(json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode()) <= METADATA_MAX_BYTES
    text = body.body.decode("utf-8")  # valid UTF-8 all the way
    assert "\\ud8" not in text and "\\udf" not in text  # and no surrogate escapes in the JSON either
    assert len(body.json["content"]) < 4_000  # still a chat message


def test_metadata_over_the_cap_is_truncated_with_a_marker(fabric, make_topic, make_agent, now):
    topic, verdict = completed_topic(make_topic, make_agent, now, "big")
    verdict.verdict = {"winner": "pro", "notes": "n" * 40_000}
    Announcement.objects.filter(topic=topic, kind=AnnouncementKind.TOPIC_COMPLETED).update(
        payload=build_payload(topic, AnnouncementKind.TOPIC_COMPLETED, verdict=verdict)
    )
    deliver_due(now=now)
    metadata = next(r.json for r in fabric.requests() if r.json["metadata"]["kind"] == "topic_completed")["metadata"]
    assert metadata["truncated"] == ["verdict"]
    assert metadata["verdict"] is None
    assert metadata["outcome"] == "pro" and metadata["judge"] == "judge-big"
