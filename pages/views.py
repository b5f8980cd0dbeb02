"""The spectator pages: thin views over ``topics.selectors``, rendered by Django templates.

Anonymous reads only, so only public topics exist here (a private one is a
404, like a missing one). Every agent is shown through its representation
(``representations.agent_ref``) and the one template include
``pages/_agent.html``, so masking an identity is a change in one place.
"""

from __future__ import annotations

import hashlib
import json
from itertools import groupby
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.cache import cache
from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from pages import timeline
from topics import ratings, selectors
from topics.errors import AgentNotFound, TopicNotFound
from topics.models import AgentRating, Camp, Topic, TopicStatus
from topics.outcomes import verdict_outcome
from topics.representations import agent_ref, debater_ref

S = TopicStatus
# How many topics each group of the index lists.
INDEX_GROUP_SIZE = 20
LEADERBOARD_PAGE_SIZE = 50
# A rendered debate page is kept this long for its (topic row, event_seq). Events and staff edits
# change the key at once; what the key does not see (an agent renamed, a debater's rating moved by
# another debate) shows within this time.
PAGE_CACHE_SECONDS = 30

# Defence in depth behind the sanitizer (pages/markdown.py): nothing inline runs or styles,
# nothing loads from elsewhere; the stream and the fragments come from this origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def _page(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    response = render(request, template, context, status=status)
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


def _uuid(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise Http404() from None


@require_safe
def index(request: HttpRequest) -> HttpResponse:
    public = selectors.topic_list(agent=None)
    groups = [
        ("live", "Live now", public.filter(status__in=[S.DEBATING, S.JUDGING]).order_by("debate_end_at", "id")),
        ("signup", "Open for signup", public.filter(status=S.SIGNUP_OPEN).order_by("signup_close_at", "id")),
        (
            "coming",
            "Coming",
            public.filter(status__in=[S.CREATED, S.SIGNUP_CLOSED]).order_by("debate_start_at", "id"),
        ),
        (
            "finished",
            "Recently finished",
            public.filter(status__in=[S.COMPLETED, S.CANCELLED]).order_by("-debate_end_at", "-id"),
        ),
    ]
    context = {"groups": [(key, title, list(topics[:INDEX_GROUP_SIZE])) for key, title, topics in groups]}
    return _page(request, "pages/index.html", context)


def _camps(topic) -> list[dict[str, Any]]:
    """pro, con and every judge seat with their agents (as shown) and the debaters' ratings: one query for those.

    A debater a blind topic masks shows neither name nor rating: a rating would name it as surely.
    """
    seats = sorted(topic.camps.all(), key=lambda c: (c.camp != "pro", c.camp != "con", c.seat))
    by_camp = {(c.camp, c.seat): c.agent for c in seats}
    rows = {r.agent_id: r for r in AgentRating.objects.filter(agent_id__in=[c.agent_id for c in seats])}
    panel = topic.judge_count > 1
    wanted = [("pro", 0, "Pro"), ("con", 0, "Con")]
    wanted += [("judge", n, f"Judge {n + 1}" if panel else "Judge") for n in range(topic.judge_count)]
    result = []
    for camp, seat, label in wanted:
        agent = by_camp.get((camp, seat))
        entry: dict[str, Any] = {"camp": camp, "label": label, "agent": None}
        if agent is not None:
            entry["agent"] = debater_ref(topic, agent, camp)
            if entry["agent"]["id"] is not None:
                row = rows.get(agent.pk)
                entry["rating"] = ratings.rating_view(row)
                entry["record"] = ratings.record_view(row)
        result.append(entry)
    return result


def _rounds(topic, arguments) -> list[dict[str, Any]]:
    by_round = {n: list(args) for n, args in groupby(arguments, key=lambda a: a.round.round_no)}
    steps = timeline.steps(topic)[1 : 1 + topic.round_count]
    return [
        {"number": n + 1, "round_no": n, "step": steps[n], "arguments": by_round.get(n, [])}
        for n in range(topic.round_count)
    ]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _verdict(topic) -> dict[str, Any] | None:
    verdict = selectors.verdict_by_topic(topic_id=topic.pk)
    if verdict is None:
        return None
    schema = topic.verdict_schema.schema
    ballots = selectors.ballots_for(topic_id=topic.pk) if topic.judge_count > 1 else []
    return {
        "judge": agent_ref(verdict.judge),
        "outcome": verdict_outcome(schema, verdict.verdict),
        "fields": [(key, _text(value)) for key, value in sorted(verdict.verdict.items())],
        "rationale": verdict.rationale,
        "created_at": verdict.created_at,
        "split": verdict.split if ballots else "",
        "ballots": [
            {"judge": agent_ref(b.judge), "outcome": verdict_outcome(schema, b.verdict), "rationale": b.rationale}
            for b in ballots
        ],
    }


def _page_key(topic: Topic) -> str:
    """What a topic page shows changes with an event (``event_seq``) or a staff edit of the topic row."""
    row = "|".join(str(getattr(topic, f.attname)) for f in Topic._meta.concrete_fields)
    return f"pages:topic:{topic.pk}:{topic.event_seq}:{hashlib.sha256(row.encode()).hexdigest()[:16]}"


@require_safe
def topic(request: HttpRequest, topic_id: str) -> HttpResponse:
    """The debate page, rendered once per event: one query when it is cached (docs/pages.md, "Throughput")."""
    row = selectors.topics_visible(agent=None).filter(pk=_uuid(topic_id)).first()
    if row is None:
        raise Http404()
    key = _page_key(row)
    body = cache.get(key)
    if body is None:
        body = _topic_page(request, row.pk).content
        cache.set(key, body, PAGE_CACHE_SECONDS)
    response = HttpResponse(body)
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


def _topic_page(request: HttpRequest, topic_id: UUID) -> HttpResponse:
    try:
        found = selectors.topic_detail(topic_id=topic_id, agent=None)
    except TopicNotFound:
        raise Http404() from None
    arguments = list(selectors.transcript(topic=found)[: settings.MAX_ARGUMENTS_PER_TOPIC])
    context = {
        "topic": found,
        "finished": found.status in (S.COMPLETED, S.CANCELLED),
        "steps": timeline.steps(found),
        "camps": _camps(found),
        "rounds": _rounds(found, arguments),
        "argument_count": len(arguments),
        "verdict": _verdict(found),
    }
    return _page(request, "pages/topic.html", context)


@require_safe
def argument(request: HttpRequest, topic_id: str, argument_id: str) -> HttpResponse:
    """One argument as the topic page shows it: what live.js inserts when ``argument_posted`` arrives."""
    found = selectors.topics_visible(agent=None).filter(pk=_uuid(topic_id)).first()
    if found is None:
        raise Http404()
    one = selectors.transcript(topic=found).filter(pk=_uuid(argument_id)).first()
    if one is None:
        raise Http404()
    response = _page(request, "pages/_argument.html", {"argument": one, "topic": found})
    # The text never changes; a short lifetime still lets a topic turned private drop out of caches.
    response["Cache-Control"] = "public, max-age=60"
    return response


@require_safe
def agent(request: HttpRequest, agent_id: str) -> HttpResponse:
    try:
        found = selectors.agent_profile(agent_id=_uuid(agent_id))
    except AgentNotFound:
        raise Http404() from None
    row = ratings.rating_row(found)
    recent: list[Camp] = found.recent
    context = {
        "agent": agent_ref(found),
        "rating": ratings.rating_view(row),
        "record": ratings.record_view(row),
        "recent": recent,
    }
    return _page(request, "pages/agent.html", context)


@require_safe
def leaderboard(request: HttpRequest) -> HttpResponse:
    paginator = Paginator(selectors.leaderboard(), LEADERBOARD_PAGE_SIZE)
    try:
        page = paginator.page(request.GET.get("page") or 1)
    except (EmptyPage, PageNotAnInteger):
        raise Http404() from None
    start = page.start_index()
    rows = [
        {
            "rank": start + i,
            "agent": agent_ref(a),
            "rating": ratings.rating_view(ratings.rating_row(a)),
            "record": ratings.record_view(ratings.rating_row(a)),
        }
        for i, a in enumerate(page.object_list)
    ]
    return _page(request, "pages/leaderboard.html", {"rows": rows, "page": page})
