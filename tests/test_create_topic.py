"""``manage.py create_topic``: the timeline relative to now, every flag, and clear errors."""

from __future__ import annotations

import uuid
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command

from devtools.environments import child_env
from devtools.processes import ChildProcess
from topics.models import Topic, TopicStatus, VerdictSchema


def create(*args: str) -> tuple[Topic, str]:
    out = StringIO()
    call_command("create_topic", *args, stdout=out)
    output = out.getvalue()
    topic_id = uuid.UUID(output.strip().splitlines()[-1])  # the id is the last line, on its own
    return Topic.objects.get(pk=topic_id), output


def test_defaults_open_now_for_ten_minutes_then_thirty_minutes_of_debate(winner_schema, now):
    with time_machine.travel(now, tick=False):
        topic, output = create("--title", "Is P = NP?")
    assert (topic.title, topic.summary, topic.visibility, topic.status) == (
        "Is P = NP?",
        "",
        "public",
        TopicStatus.CREATED,
    )
    assert topic.signup_open_at == now
    assert topic.signup_close_at == now + timedelta(minutes=10)
    assert topic.debate_start_at == topic.signup_close_at
    assert topic.debate_end_at == topic.debate_start_at + timedelta(minutes=30)
    assert (topic.verdict_due_at, topic.round_count, topic.verdict_schema) == (None, 1, winner_schema)
    assert "Is P = NP?" in output.splitlines()[0]


def test_every_flag(winner_schema, now):
    scores = VerdictSchema.objects.create(name="scores", schema={"type": "object"})
    with time_machine.travel(now, tick=False):
        topic, _ = create(
            "--title", "  Tabs or spaces  ",
            "--summary", "The eternal question.",
            "--visibility", "private",
            "--opens-in", "1h",
            "--signup-for", "2h",
            "--gap", "15m",
            "--debate-for", "1h30m",
            "--rounds", "3",
            "--verdict-within", "45m",
            "--schema", "scores",
        )  # fmt: skip
    assert (topic.title, topic.summary, topic.visibility) == ("Tabs or spaces", "The eternal question.", "private")
    assert topic.signup_open_at == now + timedelta(hours=1)
    assert topic.signup_close_at == now + timedelta(hours=3)
    assert topic.debate_start_at == now + timedelta(hours=3, minutes=15)
    assert topic.debate_end_at == now + timedelta(hours=4, minutes=45)
    assert topic.verdict_due_at == now + timedelta(hours=5, minutes=30)
    assert (topic.round_count, topic.verdict_schema) == (3, scores)


def test_plain_seconds_are_durations_too(winner_schema, now):
    with time_machine.travel(now, tick=False):
        topic, _ = create("--title", "T", "--signup-for", "90", "--debate-for", "1.5")
    assert topic.signup_close_at - topic.signup_open_at == timedelta(seconds=90)
    assert topic.debate_end_at - topic.debate_start_at == timedelta(seconds=1.5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--title", "T", "--gap", "5q"], "--gap: '5q' is not a duration"),
        (["--title", "T", "--opens-in=-1m"], "--opens-in: '-1m' is not a duration"),
        (["--title", "T", "--debate-for", "0"], "--debate-for: The debate must end after it starts."),
        (["--title", "T", "--verdict-within", "0s"], "--verdict-within: The verdict deadline must be after"),
        (["--title", "T", "--debate-for", "2s", "--rounds", "3"], "--rounds: Each round must last at least a second"),
        (["--title", "T", "--schema", "nope"], "--schema: no verdict schema named 'nope' (known: winner)"),
        (["--title", "   "], "--title: This field cannot be blank."),
        (["--title", "x" * 201], "--title: Ensure this value has at most 200 characters"),
        (["--title", "T", "--rounds", "0"], "argument --rounds: a debate has at least one round"),
        (["--title", "T", "--visibility", "secret"], "argument --visibility: invalid choice"),
        ([], "the following arguments are required: --title"),
    ],
)
def test_bad_input_names_the_option_and_creates_nothing(args, message, winner_schema):
    with pytest.raises(CommandError) as excinfo:
        call_command("create_topic", *args, stdout=StringIO())
    assert message in str(excinfo.value)
    assert not Topic.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_from_a_shell_the_id_is_the_last_line_and_errors_exit_non_zero(winner_schema):
    with ChildProcess.manage("create_topic", "--title", "Scripted", "--rounds", "2", env=child_env()) as ok:
        assert ok.wait(timeout=30) == 0, ok.describe()
        topic_id = ok.stdout.strip().splitlines()[-1]
    assert Topic.objects.get(pk=topic_id).round_count == 2

    broken = ("create_topic", "--title", "Broken", "--signup-for", "ten minutes")
    with ChildProcess.manage(*broken, env=child_env()) as bad:
        assert bad.wait(timeout=30) != 0
        assert "--signup-for: 'ten minutes' is not a duration" in bad.stderr
        assert bad.stdout == ""
    assert Topic.objects.count() == 1
