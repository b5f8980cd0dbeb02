"""Text people read refuses control characters (DESIGN.md, "Hostile input", "Text").

Arguments and rationales through the API; agent names and owners, topic
titles and summaries, schema descriptions and cancel reasons through every
way staff write them (the admin pages, ``create_agent``, ``create_topic``).
One rule, ``topics.validation.control_character_problem``: the C0 controls
but TAB, LF and CR, and DEL, named in the message (``U+001B``).
"""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from tests.api_support import stage_topic
from tests.test_admin import submit
from topics.models import Agent, Argument, Topic, TopicStatus, Verdict, VerdictSchema

pytestmark = pytest.mark.django_db

REFUSED = ["\x1b[2J", "\x00", "\x07", "\x08", "\x0b", "\x0c", "\x1f", "\x7f"]
REFUSED_IDS = ["escape", "nul", "bell", "backspace", "vtab", "formfeed", "unit-separator", "del"]


def code_point(text: str) -> str:
    return f"U+{ord(text[0]):04X}"


def post(player, path: str, body: dict):
    return player.client().generic("POST", path, json.dumps(body), content_type="application/json")


@pytest.mark.parametrize("bad", REFUSED, ids=REFUSED_IDS)
def test_an_argument_with_a_control_character_is_a_field_error_naming_it(bad):
    debating = stage_topic("debating", now=timezone.now())
    response = post(debating.pro, f"/api/topics/{debating.topic.pk}/arguments/", {"content": f"Red {bad}alert"})
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["content"]
    assert code_point(bad) in response.json()["content"][0]
    assert not Argument.objects.exists()


@pytest.mark.parametrize("bad", REFUSED, ids=REFUSED_IDS)
def test_a_rationale_with_a_control_character_is_a_field_error_naming_it(bad):
    judging = stage_topic("judging", now=timezone.now())
    body = {"verdict": {"winner": "pro"}, "rationale": f"Pro{bad} won."}
    response = post(judging.judge, f"/api/topics/{judging.topic.pk}/verdict/", body)
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["rationale"]
    assert code_point(bad) in response.json()["rationale"][0]
    assert not Verdict.objects.exists()


def test_tab_newline_and_carriage_return_stay_allowed():
    text = "First point:\tcosts.\r\nSecond point:\n\tbenefits. ünïcödé and emoji 🦜 too."
    debating = stage_topic("debating", now=timezone.now())
    response = post(debating.pro, f"/api/topics/{debating.topic.pk}/arguments/", {"content": text})
    assert response.status_code == 201 and response.json()["content"] == text
    judging = stage_topic("judging", now=timezone.now())
    body = {"verdict": {"winner": "con"}, "rationale": text}
    response = post(judging.judge, f"/api/topics/{judging.topic.pk}/verdict/", body)
    assert response.status_code == 201 and response.json()["rationale"] == text


# --- names, titles and descriptions, on every path that writes them ----------------------------


@pytest.mark.parametrize("field", ["name", "owner"])
def test_the_admin_refuses_an_agent_name_or_owner_with_a_control_character(staff_client, field):
    values = {"name": "socrates", "owner": "athens", field: "soc\x1b[31mrates"}
    response = submit(staff_client, reverse("admin:topics_agent_add"), "agent_form", **values)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field] and "U+001B" in errors[field][0]
    assert not Agent.objects.exists()


@pytest.mark.parametrize("args", [["bad\x07name"], ["fine", "--owner", "ow\x7fner"]], ids=["name", "owner"])
def test_create_agent_refuses_a_control_character(args):
    with pytest.raises(CommandError, match=r"U\+00(07|7F)"):
        call_command("create_agent", *args, stdout=StringIO())
    assert not Agent.objects.exists()


@pytest.mark.parametrize("field", ["title", "summary"])
def test_the_admin_refuses_a_topic_title_or_summary_with_a_control_character(staff_client, winner_schema, field):
    values = {"title": "Tabs or spaces?", "summary": "Indentation.", field: "Tabs\x1b]8;;http://x\x07 or spaces?"}
    response = submit(staff_client, reverse("admin:topics_topic_add"), "topic_form", **values)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field] and "U+001B" in errors[field][0]
    assert not Topic.objects.exists()


@pytest.mark.parametrize("flag", ["--title", "--summary"])
def test_create_topic_refuses_a_control_character(winner_schema, flag):
    args = ["--title", "Fine title", flag, "Bad\x1b[0m text"]
    with pytest.raises(CommandError, match=r"U\+001B"):
        call_command("create_topic", *args, stdout=StringIO())
    assert not Topic.objects.exists()


def test_the_admin_refuses_a_schema_description_with_a_control_character(staff_client):
    response = submit(
        staff_client,
        reverse("admin:topics_verdictschema_add"),
        "verdictschema_form",
        name="plain",
        schema='{"type": "object"}',
        description="Who won\x08\x08\x08 lost",
    )
    assert response.status_code == 200
    assert "U+0008" in response.context["adminform"].form.errors["description"][0]
    assert not VerdictSchema.objects.filter(name="plain").exists()


def test_the_cancel_reason_refuses_a_control_character(staff_client, make_topic):
    topic = make_topic(title="Doomed")
    data = {
        "action": "cancel_with_reason",
        "_selected_action": [str(topic.pk)],
        "confirm_cancel": "yes",
        "reason": "Spam\x1b[8m hidden",
    }
    response = staff_client.post(reverse("admin:topics_topic_changelist"), data)
    assert response.status_code == 200
    assert "U+001B" in response.content.decode()
    topic.refresh_from_db()
    assert topic.status == TopicStatus.CREATED
