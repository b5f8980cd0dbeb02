import random
from datetime import timedelta

from django.db import transaction

from orchestrator import transitions
from topics.models import Camp, Signup, TopicEvent, TopicStatus


def test_walk_a_topic_through_the_happy_path(make_topic, make_agent, now):
    topic = make_topic()
    agents = [make_agent() for _ in range(3)]
    with transaction.atomic():
        t = transitions.lock_topic(topic.pk)
        transitions.open_signup(t, now=now)
    for agent, camp in zip(agents, ["pro", "con", "judge"], strict=True):
        Signup.objects.create(topic=topic, agent=agent, camp=camp)
    with transaction.atomic():
        t = transitions.lock_topic(topic.pk)
        transitions.close_signup(t, now=now, rng=random.Random(1))
        transitions.start_debate(t, now=now)
        transitions.end_debate(t, now=now + timedelta(hours=1))
    topic.refresh_from_db()
    assert topic.status == TopicStatus.JUDGING
    assert Camp.objects.filter(topic=topic).count() == 3
    seqs = list(TopicEvent.objects.filter(topic=topic).values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1)) and topic.event_seq == len(seqs)
