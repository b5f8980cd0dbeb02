"""Conditional GET for the hot reads: each body's ETag from a cheap query, never from the body itself.

A tag is a hash of what determines the body, read in one to three small
queries (``values_list`` rows, no model instances, no serializer):

- **Everything a transition or a service changes** advances the topic's
  ``event_seq`` in the same transaction (status, rounds, camps, arguments,
  the verdict). Signups write no topic event, so ``agents/me`` reads its
  own signup rows, and the agent's own ``event_seq`` and webhook row (which
  deliveries update).
- **Every staff edit** goes through the admin, which writes a ``LogEntry``
  in the edit's transaction (add, change, inline rows, delete): the latest
  ``LogEntry`` id is part of every tag that shows admin-editable text
  (titles, agent names, verdict schemas, visibility). An edit therefore
  renews the tags of every topic, which is rare and costs one 200 each.
  Writes from outside the admin and the services (a Django shell, raw SQL)
  are not seen until the topic's next event.
- **The request**: the absolute URI (paging and filter parameters, and the
  host the ``next``/``previous`` links are built with), and for
  ``agents/me`` the agent. Visibility is not hashed: the query applies it
  (a private topic an anonymous caller cannot see has no tag and answers
  404), and the list hashes the rows it finds.
- **The clock**, for ``agents/me`` only: what it tells a debater or judge
  of a debating topic depends on which of the topic's round windows have
  ended (``rules.debate_is_active``, ``rules.round_at``,
  ``rules.debate_is_over``), so the tag counts the window ends already
  passed. Nothing else in a body reads ``now``.

The view computes the tag *before* it builds a 200, and the body from
reads made after it: a change that lands in between gives a body newer than
its tag, so the client's next request, whose tag no longer matches, gets a
fresh 200. The opposite order could pin a stale body behind a current tag.

``If-None-Match`` is compared as RFC 9110 (13.1.2) says for GET: the weak
comparison (``W/"x"`` matches ``"x"``), any tag of a list, and ``*`` for any
current representation (only a request that would be a 200 has a tag).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from types import SimpleNamespace
from typing import Any
from uuid import UUID

from django.contrib.admin.models import LogEntry
from django.db.models import Exists, OuterRef, Subquery
from django.http import HttpResponseNotModified
from django.utils.http import parse_etags

from topics import selectors
from topics.models import Agent, Signup, Topic, TopicStatus, Verdict

# The latest admin edit, as a column of the query that needs it (no query of its own).
_LATEST_ADMIN_EDIT = Subquery(LogEntry.objects.order_by("-id").values("id")[:1])


def etag(*parts: Any) -> str:
    """A strong entity tag for the values that determine a body."""
    return '"' + hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest() + '"'


def matches(if_none_match: str | None, tag: str) -> bool:
    """Whether ``If-None-Match`` names ``tag`` (weak comparison, lists, ``*``); a malformed header names none."""
    if not if_none_match:
        return False
    tags = parse_etags(if_none_match)
    if tags == ["*"]:
        return True
    return tag in (t.removeprefix("W/") for t in tags)


def not_modified(tag: str) -> HttpResponseNotModified:
    response = HttpResponseNotModified()
    response["ETag"] = tag
    return response


# --- the five tags ------------------------------------------------------------------------


def _topic_row(*, topic_id: UUID, agent: Agent | None, **extra: Any) -> tuple | None:
    """The visible topic's ``event_seq`` and the latest admin edit: one query; None when it is not visible."""
    return (
        selectors.topics_visible(agent=agent)
        .filter(pk=topic_id)
        .annotate(admin_edit=_LATEST_ADMIN_EDIT, **extra)
        .values_list("event_seq", "admin_edit", *extra)
        .first()
    )


def topic_tag(*, topic_id: UUID, agent: Agent | None, uri: str) -> str | None:
    """Topic detail and transcript (``uri`` carries ``?round=``). One query."""
    row = _topic_row(topic_id=topic_id, agent=agent)
    return etag("topic", uri, row) if row is not None else None


def verdict_tag(*, topic_id: UUID, agent: Agent | None, uri: str) -> str | None:
    """The verdict: None (so a 404 is built) until there is one. One query."""
    row = _topic_row(topic_id=topic_id, agent=agent, has_verdict=Exists(Verdict.objects.filter(topic=OuterRef("pk"))))
    if row is None or not row[-1]:
        return None
    return etag("verdict", uri, row)


def topic_list_tag(
    *, agent: Agent | None, status: str | None, page: str | None, page_size: int, uri: str
) -> str | None:
    """A page of the list: the count and the page's rows. Two queries; None for a page that is a 404."""
    topics = selectors.topic_list_rows(agent=agent, status=status)
    count = topics.count()
    pages = max(1, -(-count // page_size))
    if page is None:
        number = 1
    elif page == "last":
        number = pages
    else:
        try:
            number = int(page)
        except ValueError:
            return None
    if not 1 <= number <= pages:
        return None
    offset = (number - 1) * page_size
    rows = list(
        topics.annotate(admin_edit=_LATEST_ADMIN_EDIT).values_list("id", "event_seq", "admin_edit")[
            offset : offset + page_size
        ]
    )
    return etag("topics", uri, count, rows)


def me_tag(*, agent: Agent, now: datetime) -> str:
    """``agents/me`` at ``now``: the agent, its rating, event seq and webhook, its topics and signups, the round
    ends passed. Three queries."""
    standing = (
        Agent.objects.filter(pk=agent.pk)
        .annotate(admin_edit=_LATEST_ADMIN_EDIT)
        .values_list(
            "rating__mu",
            "rating__sigma",
            "rating__games",
            "rating__wins",
            "rating__losses",
            "rating__draws",
            "rating__judged",
            "rating__panel_ballots",
            "rating__agreed",
            "webhook__url",
            "webhook__created_at",
            "webhook__last_success_at",
            "webhook__failing_since",
            "admin_edit",
        )
        .first()
    )
    my_signup = Signup.objects.filter(topic=OuterRef("pk"), agent=agent).values("pk")[:1]
    active = [
        (
            topic_id,
            seq,
            status,
            signup,
            _round_ends_passed(start, end, rounds, now) if status == TopicStatus.DEBATING else None,
        )
        for topic_id, seq, status, start, end, rounds, signup in selectors.assignment_topics_active(agent=agent)
        .annotate(my_signup=Subquery(my_signup))
        .values_list("id", "event_seq", "status", "debate_start_at", "debate_end_at", "round_count", "my_signup")
    ]
    finished = list(selectors.assignment_topics_finished(agent=agent).values_list("id", "event_seq"))
    # As the token's lookup read them, which is what the body shows (event_seq included: a fresh read here
    # could count an event the body's older copy does not, and pin that body behind a current tag).
    who = (agent.pk, agent.name, agent.owner, agent.created_at, agent.last_seen_at, agent.event_seq)
    return etag("me", who, standing, active, finished)


def _round_ends_passed(start: datetime, end: datetime, round_count: int, now: datetime) -> int:
    """How many of a debating topic's round windows have ended at ``now`` (``Topic.round_window``'s split)."""
    timeline = SimpleNamespace(debate_start_at=start, debate_end_at=end, round_count=round_count)
    return sum(1 for round_no in range(round_count) if Topic.round_window(timeline, round_no)[1] <= now)
