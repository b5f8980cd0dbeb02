"""The staff workflow through the real admin URLs, as a logged-in staff user with a browser would drive it.

Forms are submitted the way a browser does: every field the page rendered
(management forms, hidden inputs) plus the fields the test changes.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from datetime import datetime, timedelta
from html.parser import HTMLParser

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from topics import tokens, transitions
from topics.models import (
    Agent,
    AgentToken,
    Argument,
    Ballot,
    EventKind,
    Signup,
    Topic,
    TopicEvent,
    TopicStatus,
    VerdictSchema,
)

TOPICS = reverse("admin:topics_topic_changelist")
AGENTS = reverse("admin:topics_agent_changelist")
TOKEN_RE = re.compile(r"dlc_[0-9a-f]+_[A-Za-z0-9_-]+")


class _FormReader(HTMLParser):
    """Collects what a browser would submit from the form with the given id."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id = form_id
        self.inside = False
        self.data: dict[str, list[str]] = {}
        self._select: str | None = None
        self._select_first: str | None = None
        self._select_chosen = False
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text")
            if kind in ("submit", "button", "image", "file"):
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            self.data.setdefault(name, []).append(a.get("value", "on" if kind == "checkbox" else ""))
        elif tag == "select" and name:
            self._select, self._select_first, self._select_chosen = name, None, False
        elif tag == "option" and self._select:
            value = a.get("value", "")
            if self._select_first is None:
                self._select_first = value
            if "selected" in a:
                self.data.setdefault(self._select, []).append(value)
                self._select_chosen = True
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = [""]

    def handle_data(self, data):
        if self._textarea:
            self.data[self._textarea][0] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select" and self._select:
            if not self._select_chosen and self._select_first is not None:
                self.data[self._select] = [self._select_first]
            self._select = None
        elif tag == "textarea":
            if self._textarea:
                # Browsers drop the single newline right after <textarea>.
                self.data[self._textarea][0] = self.data[self._textarea][0].removeprefix("\n")
            self._textarea = None


def browser_form(response, form_id: str) -> dict[str, list[str]]:
    assert response.status_code == 200, response.status_code
    reader = _FormReader(form_id)
    reader.feed(response.content.decode())
    assert reader.data, f"no form #{form_id} on the page"
    return reader.data


def split(value: datetime) -> dict[str, str]:
    """The admin's split date/time widget values for a datetime (the admin runs in UTC)."""
    return {"0": f"{value:%Y-%m-%d}", "1": f"{value:%H:%M:%S}"}


def timeline_fields(**moments: datetime | None) -> dict[str, str]:
    data = {}
    for name, value in moments.items():
        parts = split(value) if value else {"0": "", "1": ""}
        data.update({f"{name}_{i}": v for i, v in parts.items()})
    return data


def submit(client, url: str, form_id: str, **changes):
    data = browser_form(client.get(url), form_id)
    data.update({k: v if isinstance(v, list) else [str(v)] for k, v in changes.items()})
    return client.post(url, data)


def change_url(obj) -> str:
    return reverse(f"admin:topics_{obj._meta.model_name}_change", args=[obj.pk])


def form_fields(response) -> set[str]:
    return set(response.context["adminform"].form.fields)


def flash(response) -> str:
    return " | ".join(str(m) for m in get_messages(response.wsgi_request))


def walk(topic: Topic, step, *, now: datetime, **kwargs):
    with transaction.atomic():
        locked = transitions.topic_lock(topic.pk)
        result = step(locked, now=now, **kwargs)
    topic.refresh_from_db()
    return result


@pytest.fixture
def debated_topic(make_topic, make_agent, now):
    """A completed two-round topic with signups, camps, rounds, a transcript, a verdict and its event log."""
    topic = make_topic(title="Is P = NP?", round_count=2)
    walk(topic, transitions.topic_open_signup, now=now)
    agents = {camp: make_agent(f"{camp}-bot") for camp in ("pro", "con", "judge")}
    for camp, agent in agents.items():
        Signup.objects.create(topic=topic, agent=agent, camp=camp)
    walk(topic, transitions.topic_close_signup, now=topic.signup_close_at, rng=random.Random(7))
    walk(topic, transitions.topic_start_debate, now=topic.debate_start_at)
    with transaction.atomic():
        locked = transitions.topic_lock(topic.pk)
        rnd = locked.rounds.get(round_no=0)
        for camp, text in (("pro", "Pro opens: 🦜 a polynomial parrot."), ("con", "Con replies: no certificate.")):
            arg = Argument.objects.create(topic=locked, round=rnd, agent=agents[camp], camp=camp, content=text)
            transitions.topic_append_events(locked, [(EventKind.ARGUMENT_POSTED, {"id": str(arg.pk), "content": text})])
    walk(topic, transitions.topic_advance_round, now=topic.debate_start_at + timedelta(minutes=16))
    walk(topic, transitions.topic_end_debate, now=topic.debate_end_at)
    with transaction.atomic():
        locked = transitions.topic_lock(topic.pk)
        seats = transitions.topic_lock_agents(locked)
        ballot = Ballot.objects.create(
            topic=locked,
            seat=locked.camps.get(camp="judge"),
            judge=agents["judge"],
            verdict={"winner": "con"},
            rationale="Con kept the burden of proof.",
        )
        transitions.topic_record_ballot(
            locked, ballot=ballot, now=topic.debate_end_at + timedelta(minutes=1), seats=seats
        )
    topic.refresh_from_db()
    assert topic.status == TopicStatus.COMPLETED
    return topic


# --- topics: create, validate, edit ---------------------------------------------


def test_staff_creates_a_topic_through_the_add_page(staff_client, winner_schema, now):
    url = reverse("admin:topics_topic_add")
    opens = now + timedelta(hours=1)
    response = submit(
        staff_client,
        url,
        "topic_form",
        title="Should the ticker be a cron job?",
        summary="Operators weigh in.",
        visibility="private",
        round_count=3,
        max_arguments_per_round=2,
        **timeline_fields(
            signup_open_at=opens,
            signup_close_at=opens + timedelta(minutes=10),
            debate_start_at=opens + timedelta(minutes=15),
            debate_end_at=opens + timedelta(minutes=45),
            verdict_due_at=opens + timedelta(hours=2),
        ),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    topic = Topic.objects.get(title="Should the ticker be a cron job?")
    assert topic.status == TopicStatus.CREATED
    assert topic.visibility == "private"
    assert (topic.round_count, topic.max_arguments_per_round) == (3, 2)
    assert topic.signup_open_at == opens and topic.verdict_due_at == opens + timedelta(hours=2)
    assert topic.verdict_schema == winner_schema
    assert topic.event_seq == 0 and not topic.events.exists()


def test_the_add_page_offers_a_working_default_timeline(staff_client, winner_schema):
    response = submit(staff_client, reverse("admin:topics_topic_add"), "topic_form", title="Defaults")
    assert response.status_code == 302
    topic = Topic.objects.get(title="Defaults")
    assert topic.signup_close_at - topic.signup_open_at == timedelta(minutes=10)
    assert topic.debate_end_at - topic.debate_start_at == timedelta(minutes=30)


@pytest.mark.parametrize(
    ("field", "moments", "message"),
    [
        (
            "debate_end_at",
            {"debate_start_at": timedelta(minutes=20), "debate_end_at": timedelta(minutes=5)},
            "The debate must end after it starts.",
        ),
        (
            "debate_end_at",
            {"debate_start_at": timedelta(minutes=20), "debate_end_at": timedelta(minutes=20)},
            "The debate must end after it starts.",
        ),
        (
            "signup_close_at",
            {"signup_open_at": timedelta(minutes=10), "signup_close_at": timedelta(minutes=5)},
            "Signup must close at or after it opens.",
        ),
        (
            "debate_start_at",
            {"signup_close_at": timedelta(minutes=15), "debate_start_at": timedelta(minutes=12)},
            "The debate must start at or after signup closes.",
        ),
        (
            "verdict_due_at",
            {"verdict_due_at": timedelta(minutes=30)},
            "The verdict deadline must be after the debate ends.",
        ),
    ],
)
def test_a_bad_timeline_shows_the_error_on_its_field_and_saves_nothing(
    staff_client, winner_schema, now, field, moments, message
):
    base = now + timedelta(hours=1)
    timeline = {
        "signup_open_at": timedelta(0),
        "signup_close_at": timedelta(minutes=10),
        "debate_start_at": timedelta(minutes=10),
        "debate_end_at": timedelta(minutes=40),
    }
    timeline.update(moments)
    response = submit(
        staff_client,
        reverse("admin:topics_topic_add"),
        "topic_form",
        title="Broken timeline",
        **timeline_fields(**{name: base + offset for name, offset in timeline.items()}),
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field]
    assert errors[field] == [message]
    html = response.content.decode()
    # Rendered on the field's own row, not only at the top of the page.
    row = re.search(rf'<div class="form-row errors field-{field}">(.*?)</div>', html, re.S)
    assert row and message in row.group(1)
    assert not Topic.objects.exists()


def test_round_count_below_one_is_a_field_error(staff_client, winner_schema):
    response = submit(staff_client, reverse("admin:topics_topic_add"), "topic_form", title="Zero", round_count=0)
    assert response.status_code == 200
    assert "round_count" in response.context["adminform"].form.errors
    assert not Topic.objects.exists()


def test_status_is_never_a_form_field(staff_client, make_topic):
    topic = make_topic()
    for url in (reverse("admin:topics_topic_add"), change_url(topic)):
        response = staff_client.get(url)
        assert response.status_code == 200
        assert "status" not in form_fields(response)
        assert 'name="status"' not in response.content.decode()
        assert 'name="cancelled_reason"' not in response.content.decode()
    # A hand-crafted POST cannot smuggle a status in either.
    response = submit(
        staff_client, change_url(topic), "topic_form", title="Renamed", status="completed", cancelled_reason="x"
    )
    assert response.status_code == 302
    topic.refresh_from_db()
    assert (topic.title, topic.status, topic.cancelled_reason) == ("Renamed", TopicStatus.CREATED, "")


def test_an_announced_topic_keeps_its_past_and_moves_only_into_the_future(staff_client, make_topic, now):
    topic = make_topic(verdict_within=timedelta(hours=1))
    walk(topic, transitions.topic_open_signup, now=now)
    response = staff_client.get(change_url(topic))
    assert form_fields(response) == {
        "title",
        "summary",
        "visibility",
        "signup_close_at",
        "debate_start_at",
        "debate_end_at",
        "verdict_due_at",
        "round_count",
        "max_arguments_per_round",
        # The judging fields are fixed at allocation, not at the announcement.
        "judge_count",
        "blind_judging",
    }
    # Moving signup close into the past would close it retroactively: refused on that field.
    response = submit(
        staff_client, change_url(topic), "topic_form", **timeline_fields(signup_close_at=now - timedelta(minutes=1))
    )
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["signup_close_at"]

    # Extending signup (and shifting the debate after it) is fine.
    later = topic.signup_close_at + timedelta(minutes=20)
    response = submit(
        staff_client,
        change_url(topic),
        "topic_form",
        title="Extended",
        **timeline_fields(
            signup_close_at=later,
            debate_start_at=later,
            debate_end_at=later + timedelta(minutes=30),
            verdict_due_at=later + timedelta(hours=1),
        ),
    )
    assert response.status_code == 302
    seq_before = topic.event_seq
    topic.refresh_from_db()
    assert topic.title == "Extended" and topic.signup_close_at == later
    # The edit wrote only its own fields: the orchestrator's columns are as they were.
    assert topic.status == TopicStatus.SIGNUP_OPEN and topic.event_seq == seq_before
    assert TopicEvent.objects.filter(topic=topic).count() == seq_before


def test_a_passed_moment_cannot_move_even_if_the_ticker_lags(staff_client, make_topic, now):
    # signup_close_at has passed but the ticker has not closed signup yet.
    topic = make_topic(start=now - timedelta(minutes=30), signup_for=timedelta(minutes=20), gap=timedelta(hours=1))
    walk(topic, transitions.topic_open_signup, now=now)
    response = submit(
        staff_client, change_url(topic), "topic_form", **timeline_fields(signup_close_at=now + timedelta(minutes=20))
    )
    assert response.status_code == 200
    assert "has passed" in response.context["adminform"].form.errors["signup_close_at"][0]


def test_a_running_debate_has_a_fixed_shape(staff_client, make_topic, make_agent, now):
    topic = make_topic()
    walk(topic, transitions.topic_open_signup, now=now)
    for camp in ("pro", "con", "judge"):
        Signup.objects.create(topic=topic, agent=make_agent(), camp=camp)
    walk(topic, transitions.topic_close_signup, now=now, rng=random.Random(1))
    walk(topic, transitions.topic_start_debate, now=now)
    response = staff_client.get(change_url(topic))
    assert form_fields(response) == {"title", "summary", "visibility", "verdict_due_at"}
    deadline = topic.debate_end_at + timedelta(hours=2)
    response = submit(staff_client, change_url(topic), "topic_form", **timeline_fields(verdict_due_at=deadline))
    assert response.status_code == 302
    topic.refresh_from_db()
    assert topic.verdict_due_at == deadline and topic.status == TopicStatus.DEBATING


def test_a_finished_topic_is_read_only(staff_client, debated_topic):
    response = staff_client.get(change_url(debated_topic))
    assert response.status_code == 200
    assert not form_fields(response)
    assert 'name="title"' not in response.content.decode()
    response = staff_client.post(change_url(debated_topic), {"title": "Rewritten history"})
    assert response.status_code == 403
    debated_topic.refresh_from_db()
    assert debated_topic.title == "Is P = NP?"


def test_only_unannounced_topics_can_be_deleted(staff_client, make_topic, now):
    fresh = make_topic(title="Fresh")
    announced = make_topic(title="Announced")
    walk(announced, transitions.topic_open_signup, now=now)
    assert staff_client.get(reverse("admin:topics_topic_delete", args=[announced.pk])).status_code == 403
    response = staff_client.post(reverse("admin:topics_topic_delete", args=[fresh.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert list(Topic.objects.values_list("title", flat=True)) == ["Announced"]
    # No bulk delete in the list: it would bypass the per-topic rule.
    actions = staff_client.get(TOPICS).context["action_form"].fields["action"].choices
    assert [name for name, _ in actions if name] == ["cancel_with_reason"]


# --- topics: inspecting history ----------------------------------------------------


def test_the_topic_page_shows_signups_camps_rounds_transcript_verdict_and_events(staff_client, debated_topic):
    response = staff_client.get(change_url(debated_topic))
    assert response.status_code == 200
    html = response.content.decode()
    formsets = {f.formset.prefix: f for f in response.context["inline_admin_formsets"]}
    assert set(formsets) == {"signups", "camps", "rounds", "arguments", "verdict", "ballots", "events"}
    sizes = {prefix: len(f.formset.initial_forms) for prefix, f in formsets.items()}
    assert sizes == {
        "signups": 3,
        "camps": 3,
        "rounds": 2,
        "arguments": 2,
        "verdict": 1,
        "ballots": 1,
        "events": debated_topic.event_seq,
    }
    for text in ("pro-bot", "con-bot", "judge-bot", "a polynomial parrot", "🦜", "Con kept the burden of proof."):
        assert text in html
    for kind in ("camps_allocated", "round_opened", "round_closed", "argument_posted", "verdict_posted"):
        assert kind in html
    # History is shown, never offered for editing: no inline input carries a value field.
    assert not re.search(r'name="(signups|camps|rounds|arguments|verdict|events)-\d+-(?!id"|topic")', html)
    for inline in formsets.values():
        assert not inline.has_add_permission and not inline.has_change_permission


def test_a_signup_can_be_removed_only_while_signup_is_open(staff_client, make_topic, make_agent, now):
    topic = make_topic()
    walk(topic, transitions.topic_open_signup, now=now)
    keep, drop = make_agent("keep"), make_agent("drop")
    Signup.objects.create(topic=topic, agent=keep, camp="pro")
    Signup.objects.create(topic=topic, agent=drop, camp="con")
    response = submit(staff_client, change_url(topic), "topic_form", **{"signups-1-DELETE": "on"})
    assert response.status_code == 302
    assert list(Signup.objects.filter(topic=topic).values_list("agent__name", flat=True)) == ["keep"]

    Signup.objects.create(topic=topic, agent=drop, camp="con")
    Signup.objects.create(topic=topic, agent=make_agent(), camp="judge")
    walk(topic, transitions.topic_close_signup, now=now, rng=random.Random(2))
    response = staff_client.get(change_url(topic))
    assert 'name="signups-0-DELETE"' not in response.content.decode()


def test_changelist_search_and_filters(staff_client, make_topic, winner_schema, now):
    other_schema = VerdictSchema.objects.create(name="score", schema={"type": "object"})
    public = make_topic(title="Tabs versus spaces")
    private = make_topic(title="Vim or Emacs", visibility="private", summary="editor wars", verdict_schema=other_schema)
    cancelled = make_topic(title="Cancelled one")
    walk(cancelled, transitions.topic_cancel, now=now, reason="duplicate")

    def listed(query: str = "") -> set[str]:
        response = staff_client.get(f"{TOPICS}{query}")
        assert response.status_code == 200
        return {t.title for t in response.context["cl"].result_list}

    assert listed() == {"Tabs versus spaces", "Vim or Emacs", "Cancelled one"}
    assert listed("?q=spaces") == {"Tabs versus spaces"}
    assert listed("?q=editor") == {"Vim or Emacs"}
    assert listed(f"?q={private.pk}") == {"Vim or Emacs"}
    assert listed("?status__exact=cancelled") == {"Cancelled one"}
    assert listed("?visibility__exact=private") == {"Vim or Emacs"}
    assert listed(f"?verdict_schema__id__exact={winner_schema.pk}") == {"Tabs versus spaces", "Cancelled one"}
    # A UUID search still respects the active filters.
    assert listed(f"?q={public.pk}&status__exact=cancelled") == set()
    html = staff_client.get(TOPICS).content.decode()
    assert "signup " in html and "debate " in html  # the timeline column


def test_changelist_queries_do_not_grow_with_the_number_of_topics(staff_client, make_topic):
    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert staff_client.get(TOPICS).status_code == 200
        return len(ctx.captured_queries)

    make_topic()
    few = count()
    for i in range(10):
        make_topic(title=f"topic {i}")
    assert count() == few


# --- cancelling with a reason -------------------------------------------------------


def test_cancel_action_asks_for_a_reason_then_cancels_through_the_transitions(
    staff_client, make_topic, debated_topic, now
):
    open_topic = make_topic(title="Open one")
    walk(open_topic, transitions.topic_open_signup, now=now)
    fresh = make_topic(title="Fresh one")
    selected = [str(open_topic.pk), str(fresh.pk), str(debated_topic.pk)]

    # Step 1: the intermediate page, nothing changed yet.
    response = staff_client.post(TOPICS, {"action": "cancel_with_reason", "_selected_action": selected})
    assert response.status_code == 200
    assert "Reason" in response.content.decode()
    assert Topic.objects.filter(status=TopicStatus.CANCELLED).count() == 0

    # A blank reason is refused on the same page.
    data = {"action": "cancel_with_reason", "_selected_action": selected, "confirm_cancel": "yes", "reason": "   "}
    response = staff_client.post(TOPICS, data)
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert Topic.objects.filter(status=TopicStatus.CANCELLED).count() == 0

    # Step 2: confirmed with a reason.
    data["reason"] = "  The sponsor withdrew.  "
    response = staff_client.post(TOPICS, data)
    assert response.status_code == 302
    for topic in (open_topic, fresh):
        topic.refresh_from_db()
        assert topic.status == TopicStatus.CANCELLED
        assert topic.cancelled_reason == "The sponsor withdrew."
        last_two = list(TopicEvent.objects.filter(topic=topic).order_by("-seq").values_list("kind", "data")[:2])
        assert last_two[1][0] == EventKind.STATUS_CHANGED and last_two[1][1]["to"] == "cancelled"
        assert last_two[0] == (EventKind.TOPIC_CANCELLED, {"reason": "The sponsor withdrew."})
        assert LogEntry.objects.filter(object_id=str(topic.pk), change_message__contains="withdrew").exists()
    debated_topic.refresh_from_db()
    assert debated_topic.status == TopicStatus.COMPLETED
    text = flash(response)
    assert "Cancelled 2 topic(s)" in text
    assert "1 topic(s) already finished" in text and "“Is P = NP?” (completed)" in text


def test_cancelling_a_debate_closes_its_open_round(staff_client, make_topic, make_agent, now):
    topic = make_topic()
    walk(topic, transitions.topic_open_signup, now=now)
    for camp in ("pro", "con", "judge"):
        Signup.objects.create(topic=topic, agent=make_agent(), camp=camp)
    walk(topic, transitions.topic_close_signup, now=now, rng=random.Random(3))
    walk(topic, transitions.topic_start_debate, now=now)
    data = {"action": "cancel_with_reason", "_selected_action": [str(topic.pk)], "confirm_cancel": "yes"}
    response = staff_client.post(TOPICS, {**data, "reason": "Judge went offline"})
    assert response.status_code == 302
    topic.refresh_from_db()
    assert topic.status == TopicStatus.CANCELLED
    assert not topic.rounds.filter(closed_at__isnull=True).exists()
    kinds = list(TopicEvent.objects.filter(topic=topic).order_by("seq").values_list("kind", flat=True))
    assert kinds[-3:] == [EventKind.ROUND_CLOSED, EventKind.STATUS_CHANGED, EventKind.TOPIC_CANCELLED]


# --- verdict schemas ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema_text", "fragment"),
    [
        ('{"type": "nonsense"}', "Not a valid JSON Schema"),
        ('{"type": "object", "required": "winner"}', "Not a valid JSON Schema at required"),
        ("[1, 2]", "must be a JSON object"),
        ("{not json", "Enter a valid JSON"),
    ],
)
def test_a_verdict_schema_is_checked_as_json_schema_on_save(staff_client, schema_text, fragment):
    response = submit(
        staff_client, reverse("admin:topics_verdictschema_add"), "verdictschema_form", name="broken", schema=schema_text
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["schema"]
    assert fragment in errors["schema"][0]
    assert not VerdictSchema.objects.filter(name="broken").exists()


def test_a_valid_verdict_schema_is_saved(staff_client):
    schema = '{"type": "object", "required": ["score"], "properties": {"score": {"type": "integer"}}}'
    response = submit(
        staff_client, reverse("admin:topics_verdictschema_add"), "verdictschema_form", name="score", schema=schema
    )
    assert response.status_code == 302
    assert VerdictSchema.objects.get(name="score").schema["required"] == ["score"]


def test_a_schema_announced_topics_use_is_frozen(staff_client, winner_schema, make_topic, now):
    url = change_url(winner_schema)
    assert "schema" in form_fields(staff_client.get(url))
    topic = make_topic()
    walk(topic, transitions.topic_open_signup, now=now)
    response = staff_client.get(url)
    assert form_fields(response) == {"description"}
    assert "&quot;winner&quot;" in response.content.decode()  # still shown, read-only


# --- agents and tokens -----------------------------------------------------------------


def test_staff_creates_an_agent(staff_client):
    response = submit(staff_client, reverse("admin:topics_agent_add"), "agent_form", name="socrates", owner="athens")
    assert response.status_code == 302
    agent = Agent.objects.get(name="socrates")
    assert agent.owner == "athens" and agent.is_active
    assert not agent.tokens.exists()


def test_issue_a_token_shows_it_once_and_stores_only_prefix_and_digest(staff_client, make_agent, caplog):
    agent = make_agent("plato")
    caplog.set_level(logging.DEBUG)
    response = staff_client.post(AGENTS, {"action": "issue_token", "_selected_action": [str(agent.pk)]})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    shown = TOKEN_RE.findall(html)
    assert len(shown) == 1
    raw = shown[0]
    prefix, secret = tokens.parse_token(raw)

    stored = AgentToken.objects.get(agent=agent)
    assert stored.prefix == prefix
    assert stored.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in {stored.prefix, stored.digest}
    # It works as a bearer token.
    found = tokens.token_lookup(raw)
    assert found is not None and found.agent == agent

    # Never logged, never kept in the audit trail.
    assert secret not in caplog.text
    assert not LogEntry.objects.filter(change_message__contains=secret).exists()
    assert LogEntry.objects.filter(object_id=str(agent.pk), change_message__contains=prefix).exists()

    # A second look shows the prefix only; the digest is not on the page either.
    for url in (change_url(agent), AGENTS, reverse("admin:topics_agent_history", args=[agent.pk])):
        page = staff_client.get(url).content.decode()
        assert secret not in page and stored.digest not in page
    page = staff_client.get(change_url(agent)).content.decode()
    assert f"dlc_{prefix}_…" in page
    assert "digest" not in form_fields(staff_client.get(change_url(agent)))


def test_the_agent_page_button_issues_a_token_for_that_agent(staff_client, make_agent):
    agent, other = make_agent("aristotle"), make_agent("other")
    page = staff_client.get(change_url(agent))
    form = re.search(r'<form method="post" action="([^"]+)">.*?</form>', page.content.decode(), re.S)
    assert form and form.group(1) == AGENTS
    data = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]+)"', form.group(0)))
    assert data["action"] == "issue_token"
    response = staff_client.post(AGENTS, data)
    assert len(TOKEN_RE.findall(response.content.decode())) == 1
    assert agent.tokens.count() == 1 and not other.tokens.exists()


def test_no_token_for_an_inactive_agent(staff_client, make_agent):
    agent = make_agent("sleepy", is_active=False)
    response = staff_client.post(AGENTS, {"action": "issue_token", "_selected_action": [str(agent.pk)]})
    assert response.status_code == 302
    assert not agent.tokens.exists()
    assert "inactive" in flash(response)


def test_revoke_all_tokens(staff_client, make_agent):
    agent, bystander = make_agent("revoked"), make_agent("bystander")
    first, second = tokens.token_issue(agent=agent), tokens.token_issue(agent=agent)
    kept = tokens.token_issue(agent=bystander)
    response = staff_client.post(AGENTS, {"action": "revoke_tokens", "_selected_action": [str(agent.pk)]})
    assert response.status_code == 302
    assert "Revoked 2 token(s) of 1 agent(s)" in flash(response)
    assert tokens.token_lookup(first) is None and tokens.token_lookup(second) is None
    assert tokens.token_lookup(kept) is not None
    assert agent.tokens.filter(revoked_at__isnull=True).count() == 0
    page = staff_client.get(change_url(agent)).content.decode()
    assert page.count("dlc_") >= 2  # revoked tokens stay listed, with their revocation time


def test_agent_list_filters_and_prefix_search(staff_client, make_agent):
    alpha = make_agent("alpha", owner="lab-a")
    make_agent("beta", owner="lab-b", is_active=False)
    raw = tokens.token_issue(agent=alpha)
    tokens.token_issue(agent=alpha)
    prefix, _ = tokens.parse_token(raw)

    def listed(query: str) -> list[tuple[str, int]]:
        response = staff_client.get(f"{AGENTS}{query}")
        assert response.status_code == 200
        return [(a.name, a.live_token_count) for a in response.context["cl"].result_list]

    assert listed("") == [("alpha", 2), ("beta", 0)]
    assert listed("?is_active__exact=0") == [("beta", 0)]
    assert listed("?owner=lab-a") == [("alpha", 2)]
    assert listed(f"?q={prefix}") == [("alpha", 2)]
    assert listed("?q=lab-b") == [("beta", 0)]


def test_view_only_staff_see_history_but_change_nothing(client, debated_topic, make_topic, make_agent):
    from django.contrib.auth.models import Permission

    viewer = get_user_model().objects.create_user("viewer", password="a-long-viewer-password", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename__in=["view_topic", "view_agent"]))
    client.force_login(viewer)
    response = client.get(change_url(debated_topic))
    assert response.status_code == 200
    assert {f.formset.prefix for f in response.context["inline_admin_formsets"]} >= {"arguments", "events"}
    assert "a polynomial parrot" in response.content.decode()
    fresh = make_topic(title="Fresh")
    assert client.post(change_url(fresh), {"title": "Nope"}).status_code == 403
    assert client.get(TOPICS).context["action_form"] is None  # no actions offered
    agent = make_agent("viewed")
    tokens.token_issue(agent=agent)
    response = client.get(change_url(agent))
    assert response.status_code == 200 and "dlc_" in response.content.decode()
    assert "Issue a token" not in response.content.decode()
    response = client.post(AGENTS, {"action": "issue_token", "_selected_action": [str(agent.pk)]})
    assert agent.tokens.count() == 1


@pytest.mark.mariadb
@pytest.mark.django_db(transaction=True)
def test_an_edit_waits_for_a_running_transition_and_is_checked_against_its_result(make_topic, make_agent, now):
    """The ticker closes signup while a staff save is in flight: the save waits for the row lock, then
    sees signup_closed, where signup_close_at is no longer editable, and leaves it alone."""
    import threading

    from django.test import Client

    from devtools.processes import wait_for
    from tests.api_support import connection_id, waits_for_a_lock

    staff = get_user_model().objects.create_superuser("staff", "staff@example.com", "a-long-staff-password")
    topic = make_topic(signup_for=timedelta(minutes=10), gap=timedelta(minutes=30))
    walk(topic, transitions.topic_open_signup, now=now)
    for camp in ("pro", "con", "judge"):
        Signup.objects.create(topic=topic, agent=make_agent(), camp=camp)
    admin = Client()
    admin.force_login(staff)
    later = topic.signup_close_at + timedelta(minutes=5)
    data = browser_form(admin.get(change_url(topic)), "topic_form")  # rendered while signup is open
    data.update(
        {"title": ["Renamed mid-transition"], **{k: [v] for k, v in timeline_fields(signup_close_at=later).items()}}
    )
    responses = []
    saver_connection: list[int] = []

    def save() -> None:
        try:
            saver_connection.append(connection_id())
            responses.append(admin.post(change_url(topic), data))
        finally:
            connection.close()

    with transaction.atomic():
        locked = transitions.topic_lock(topic.pk)  # the "ticker" holds the row
        saver = threading.Thread(target=save)
        saver.start()

        def admin_is_waiting() -> bool:
            return bool(saver_connection) and waits_for_a_lock(saver_connection[0])

        wait_for(admin_is_waiting, timeout=20, interval=0.25, message="the admin save never waited for the row lock")
        transitions.topic_close_signup(locked, now=now, rng=random.Random(4))
    saver.join(timeout=30)
    assert responses and responses[0].status_code == 302
    topic_after = Topic.objects.get(pk=topic.pk)
    assert topic_after.status == TopicStatus.SIGNUP_CLOSED
    assert topic_after.title == "Renamed mid-transition"
    assert topic_after.signup_close_at == topic.signup_close_at  # not moved after signup had closed
