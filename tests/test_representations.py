"""One shape everywhere: the SSE events carry exactly what the REST API shows."""

from __future__ import annotations

import random
from datetime import UTC, timedelta, timezone

import pytest
from django.db import transaction

from topics import transitions
from topics.api.serializers import ArgumentOut, RoundOut, VerdictOut
from topics.models import Argument, EventKind, Round, Signup, TopicEvent, Verdict
from topics.representations import argument_data, verdict_data

pytestmark = pytest.mark.django_db


def test_events_and_the_api_agree_on_arguments_rounds_and_verdicts(make_topic, make_agent, now):
    # Whole-second times are where isoformat() and the API's format used to differ.
    topic = make_topic(round_count=2, start=now.replace(second=0))
    agents = [make_agent() for _ in range(3)]
    with transaction.atomic():
        locked = transitions.topic_lock(topic.pk)
        transitions.topic_open_signup(locked, now=now)
        for camp, agent in zip(("pro", "con", "judge"), agents, strict=True):
            Signup.objects.create(topic=locked, agent=agent, camp=camp)
        transitions.topic_close_signup(locked, now=now, rng=random.Random(0))
        transitions.topic_start_debate(locked, now=now)
        rnd = Round.objects.get(topic=locked, round_no=0)
        argument = Argument.objects.create(topic=locked, round=rnd, agent=agents[0], camp="pro", content="🦜 hi")
        transitions.topic_append_events(locked, [(EventKind.ARGUMENT_POSTED, argument_data(argument))])
        transitions.topic_end_debate(locked, now=topic.debate_end_at + timedelta(seconds=1))
        seats = transitions.topic_lock_for_completion(locked)  # before the verdict, as verdict_create
        verdict = Verdict.objects.create(topic=locked, judge=agents[2], verdict={"winner": "pro"}, rationale="Why.")
        transitions.topic_complete(locked, verdict=verdict, now=now, seats=seats)

    events = {e.kind: e.data for e in TopicEvent.objects.filter(topic=topic).order_by("seq")}
    argument.refresh_from_db()
    verdict.refresh_from_db()
    assert events[EventKind.ARGUMENT_POSTED] == dict(ArgumentOut(argument, context={"topic": topic}).data)
    assert events[EventKind.VERDICT_POSTED] == dict(VerdictOut(verdict, context={"ballots": []}).data)
    opened = TopicEvent.objects.filter(topic=topic, kind=EventKind.ROUND_OPENED).order_by("seq").first().data
    shown = RoundOut(Round.objects.get(topic=topic, round_no=0)).data
    assert (opened["opens_at"], opened["closes_at"]) == (shown["opens_at"], shown["closes_at"])
    assert verdict_data(verdict)["created_at"].endswith("Z")


def test_timestamps_are_written_in_the_apis_format(settings, now):
    from topics.representations import DATETIME_FORMAT, timestamp

    assert settings.REST_FRAMEWORK["DATETIME_FORMAT"] == DATETIME_FORMAT
    for value in (now, now.replace(microsecond=0), now.astimezone(timezone(timedelta(hours=-5)))):
        assert timestamp(value) == value.astimezone(UTC).strftime(DATETIME_FORMAT)
