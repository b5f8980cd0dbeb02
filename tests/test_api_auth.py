"""Bearer tokens on the API: last-use bookkeeping at most once a minute, and the create_agent command."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.api_support import client, player
from topics.models import Agent, AgentToken
from topics.tokens import token_issue, token_lookup, token_touch, tokens_revoke

pytestmark = pytest.mark.django_db


def _writes(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("UPDATE")]


def test_last_used_and_last_seen_are_written_at_most_once_a_minute():
    me = player()
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        with CaptureQueriesContext(connection) as first:
            assert me.client().get("/api/agents/me/").status_code == 200
        with CaptureQueriesContext(connection) as second:
            assert me.client().get("/api/topics/").status_code == 200
    token = AgentToken.objects.get(agent=me.agent)
    me.agent.refresh_from_db()
    assert token.last_used_at == start and me.agent.last_seen_at == start
    assert len(_writes(first.captured_queries)) == 2  # token and agent
    assert _writes(second.captured_queries) == []  # within the minute: reads stay reads
    later = start + timedelta(seconds=61)
    with time_machine.travel(later, tick=False):
        me.client().get("/api/topics/")
    token.refresh_from_db()
    assert token.last_used_at == later


def test_the_touch_is_conditional_in_sql_too():
    """Two processes that both read a stale last_used_at write it once: the UPDATE re-checks the age."""
    me = player()
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        me.client().get("/api/topics/")
    token = AgentToken.objects.get(agent=me.agent)
    stale_copy = dataclasses.replace(token_lookup(me.token, now=start), use_due=True)  # as another process saw it
    with time_machine.travel(start + timedelta(seconds=5), tick=False):
        token_touch(stale_copy)
    token.refresh_from_db()
    assert token.last_used_at == start


def test_a_revoked_token_stops_working_at_once_and_another_token_still_works():
    me = player()
    assert me.client().get("/api/agents/me/").status_code == 200
    tokens_revoke(agent=me.agent)
    assert me.client().get("/api/agents/me/").json()["code"] == "authentication_failed"
    fresh = token_issue(agent=me.agent)
    assert client(fresh).get("/api/agents/me/").status_code == 200


def test_deactivating_the_agent_rejects_its_tokens():
    me = player()
    Agent.objects.filter(pk=me.agent.pk).update(is_active=False)
    response = me.client().get("/api/topics/")
    assert response.status_code == 401 and response.json()["code"] == "authentication_failed"


def test_create_agent_prints_a_working_token_on_the_last_line():
    out = StringIO()
    call_command("create_agent", "plato", "--owner", "academy", stdout=out)
    lines = out.getvalue().strip().splitlines()
    token = lines[-1]
    assert token.startswith("dlc_") and token not in "\n".join(lines[:-1])
    agent = Agent.objects.get(name="plato")
    assert agent.owner == "academy"
    # Only the digest is stored.
    stored = AgentToken.objects.get(agent=agent)
    assert token.split("_", 2)[2] not in (stored.digest, stored.prefix)
    body = client(token).get("/api/agents/me/").json()
    assert body["name"] == "plato" and body["owner"] == "academy"


@pytest.mark.parametrize("args, message", [(["  "], "blank"), (["x" * 101], "longer than")])
def test_create_agent_rejects_bad_names(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("create_agent", *args, stdout=StringIO())


def test_create_agent_rejects_a_duplicate_name():
    call_command("create_agent", "aristotle", stdout=StringIO())
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_agent", "aristotle", stdout=StringIO())
    assert Agent.objects.filter(name="aristotle").count() == 1


def test_token_lookup_reads_token_and_agent_in_one_query_and_keeps_the_digest_off_the_agent():
    me = player()
    with CaptureQueriesContext(connection) as lookup:
        bearer = token_lookup(me.token)
    assert len(lookup.captured_queries) == 1
    # The agent is converted as the ORM would (it becomes request.user) and carries no token columns.
    assert bearer.agent == me.agent and bearer.agent.name == me.agent.name
    assert isinstance(bearer.agent.pk, uuid.UUID) and bearer.agent.created_at.tzinfo is not None
    assert bearer.agent.is_active is True
    assert not [name for name in vars(bearer.agent) if name.startswith("token_")]
    assert bearer.use_due  # never used yet
    token_touch(bearer)
    assert token_lookup(me.token).use_due is False
    wrong_secret = me.token[:-1] + ("A" if me.token[-1] != "A" else "B")
    assert token_lookup(wrong_secret) is None
    assert token_lookup("dlc_000000000000_" + me.token.split("_", 2)[2]) is None  # unknown prefix


def test_use_is_due_strictly_after_a_minute_whatever_the_stored_precision():
    """The SQL comparison matches the old Python one, on SQLite's text datetimes too."""
    me = player()
    whole_second = timezone.now().replace(microsecond=0)
    AgentToken.objects.filter(agent=me.agent).update(last_used_at=whole_second)
    minute_later = whole_second + timedelta(minutes=1)
    assert token_lookup(me.token, now=minute_later - timedelta(milliseconds=500)).use_due is False
    assert token_lookup(me.token, now=minute_later).use_due is False
    assert token_lookup(me.token, now=minute_later + timedelta(microseconds=1)).use_due is True
    with_fraction = whole_second + timedelta(microseconds=500_000)
    AgentToken.objects.filter(agent=me.agent).update(last_used_at=with_fraction)
    assert token_lookup(me.token, now=minute_later).use_due is False
    assert token_lookup(me.token, now=with_fraction + timedelta(minutes=1, microseconds=1)).use_due is True
