"""GET /api/agents/ (the leaderboard), /api/agents/{id}/ (a public profile), ratings on agents/me, the admin."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.pagination import PageNumberPagination

from tests.api_support import client, player, stage_topic
from tests.test_ratings import debate
from topics.models import Agent, AgentRating, Camp, RatedOutcome, Topic

pytestmark = pytest.mark.django_db


@pytest.fixture
def now():
    return timezone.now()


def _count(call) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as ctx:
        response = call()
    assert response.status_code == 200, response.content[:300]
    return len(ctx.captured_queries), response


def test_the_leaderboard_lists_rated_agents_best_first_with_their_record(now):
    ada, bo, cy = player("ada"), player("bo"), player("cy")
    debate(ada, bo, cy, "pro", now=now)
    debate(ada, cy, bo, "pro", now=now)
    response = client().get("/api/agents/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3 and body["previous"] is None
    first = body["results"][0]
    assert first["id"] == str(ada.agent.pk) and first["name"] == "ada"
    assert first["record"] == {
        "debates": 2,
        "wins": 2,
        "losses": 0,
        "draws": 0,
        "judged": 0,
        "panel_ballots": 0,
        "agreement": None,
    }
    assert set(first["rating"]) == {"value", "low", "high", "games"} and first["rating"]["games"] == 2
    rating = first["rating"]
    assert rating["low"] < rating["value"] < rating["high"]
    assert [e["name"] for e in body["results"]][1:] in (["bo", "cy"], ["cy", "bo"])
    assert all(e["record"]["judged"] == 1 for e in body["results"][1:])


def test_the_leaderboard_is_paginated(now, monkeypatch):
    # The paginator reads PAGE_SIZE once, at import.
    monkeypatch.setattr(PageNumberPagination, "page_size", 2)
    debate(player(), player(), player(), "con", now=now)
    debate(player(), player(), player(), "draw", now=now)
    page = client().get("/api/agents/").json()
    assert page["count"] == 4 and len(page["results"]) == 2 and page["next"]
    rest = client().get(page["next"]).json()
    assert len(rest["results"]) == 2
    assert not {e["id"] for e in page["results"]} & {e["id"] for e in rest["results"]}
    assert client().get("/api/agents/?page=9").json()["code"] == "not_found"


def test_a_profile_shows_the_last_public_topics_with_camp_and_outcome(now):
    me, other, judge = player(), player(), player()
    debate(me, other, judge, "con", now=now)
    private = stage_topic("debating", now=now, visibility="private", players={"pro": me, "con": other, "judge": judge})
    debating = stage_topic("debating", now=now, players={"pro": other, "con": me, "judge": judge})
    body = client().get(f"/api/agents/{me.agent.pk}/").json()
    assert body["name"] == me.agent.name
    assert body["record"] == {
        "debates": 1,
        "wins": 0,
        "losses": 1,
        "draws": 0,
        "judged": 0,
        "panel_ballots": 0,
        "agreement": None,
    }
    recent = {t["id"]: t for t in body["recent"]}
    assert str(private.topic.pk) not in recent
    assert recent[str(debating.topic.pk)] == {
        "id": str(debating.topic.pk),
        "title": debating.topic.title,
        "status": "debating",
        "camp": "con",
        "outcome": None,
    }
    done = [t for t in body["recent"] if t["status"] == "completed"]
    assert [(t["camp"], t["outcome"]) for t in done] == [("pro", "con")]
    assert [t["id"] for t in body["recent"]] == [str(debating.topic.pk), done[0]["id"]]  # newest first


def test_a_profile_lists_at_most_20_topics(now):
    me = player()
    template = stage_topic("debating", now=now, players={"pro": me, "con": player(), "judge": player()}).topic
    fields = {f.attname: getattr(template, f.attname) for f in Topic._meta.concrete_fields if f.attname != "id"}
    clones = Topic.objects.bulk_create([Topic(id=uuid.uuid4(), **fields) for _ in range(25)])
    Camp.objects.bulk_create([Camp(topic=t, camp="judge", agent=me.agent) for t in clones])
    assert len(client().get(f"/api/agents/{me.agent.pk}/").json()["recent"]) == 20


@pytest.mark.parametrize("agent_id", [str(uuid.uuid4()), "not-a-uuid", "12345"])
def test_an_unknown_or_malformed_agent_id_is_not_found(agent_id):
    response = client().get(f"/api/agents/{agent_id}/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_agents_me_adds_rating_and_record(now):
    me, other, judge = player(), player(), player()
    assert me.client().get("/api/agents/me/").json()["rating"] == {
        "value": 25.0,
        "low": 8.33,
        "high": 41.67,
        "games": 0,
    }
    debate(me, other, judge, "pro", now=now)
    body = me.client().get("/api/agents/me/").json()
    assert body["record"]["wins"] == 1 and body["rating"]["games"] == 1
    assert body["rating"]["value"] == round(AgentRating.objects.get(agent=me.agent).mu, 2) > 25
    assert body["owner"] == me.agent.owner and "assignments" in body


def test_the_me_path_is_not_taken_for_an_agent_id():
    response = client().get("/api/agents/me/")
    assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")


# --- query counts -----------------------------------------------------------------------


def test_leaderboard_queries_do_not_grow_with_agents_or_topics(now, monkeypatch):
    monkeypatch.setattr(PageNumberPagination, "page_size", 500)
    debate(player(), player(), player(), "pro", now=now)
    small, response = _count(lambda: client().get("/api/agents/"))
    assert len(response.json()["results"]) == 2
    agents = Agent.objects.bulk_create([Agent(name=f"bulk-{i}") for i in range(300)])
    AgentRating.objects.bulk_create(
        [
            AgentRating(agent=a, mu=25.0 + i / 100, sigma=5.0, low=15.0 + i / 100, games=3, updated_at=now)
            for i, a in enumerate(agents)
        ]
    )
    large, response = _count(lambda: client().get("/api/agents/"))
    assert response.json()["count"] == len(response.json()["results"]) == 302
    assert small == large == 2  # count, page with ratings


def test_profile_queries_do_not_grow_with_topics(now):
    me = player()
    debate(me, player(), player(), "draw", now=now)
    small, _ = _count(lambda: client().get(f"/api/agents/{me.agent.pk}/"))
    for outcome in ("pro", "con", "draw"):
        debate(me, player(), player(), outcome, now=now)
        stage_topic("debating", now=now, players={"pro": player(), "con": me, "judge": player()})
    large, response = _count(lambda: client().get(f"/api/agents/{me.agent.pk}/"))
    assert len(response.json()["recent"]) == 7
    assert small == large == 2  # agent with rating, recent topics with their outcomes


# --- the admin ------------------------------------------------------------------------


def test_ratings_are_read_only_in_the_admin(staff_client, now):
    debate(player(), player(), player(), "pro", now=now)
    row = AgentRating.objects.first()
    assert staff_client.get(reverse("admin:topics_agentrating_changelist")).status_code == 200
    page = staff_client.get(reverse("admin:topics_agentrating_change", args=[row.pk]))
    assert page.status_code == 200 and not page.context["adminform"].form.fields
    staff_client.post(reverse("admin:topics_agentrating_change", args=[row.pk]), {"mu": "99"})
    assert AgentRating.objects.get(pk=row.pk).mu == row.mu
    assert staff_client.get(reverse("admin:topics_agentrating_add")).status_code == 403


def test_the_rebuild_action_repairs_drift_for_staff_allowed_to(staff_client, now):
    debate(player(), player(), player(), "con", now=now)
    live = sorted(AgentRating.objects.values_list("mu", flat=True))
    AgentRating.objects.update(mu=0.0)
    url = reverse("admin:topics_agentrating_changelist")
    any_row = str(AgentRating.objects.first().pk)
    response = staff_client.post(url, {"action": "rebuild_ratings", "_selected_action": [any_row]}, follow=True)
    assert "Replayed 1 outcome(s) for 3 agent(s); 3 rating row(s) differed" in response.content.decode()
    assert sorted(AgentRating.objects.values_list("mu", flat=True)) == live
    assert RatedOutcome.objects.count() == 1


def test_the_rebuild_action_needs_its_permission(client, db, now):
    viewer = get_user_model().objects.create_user("viewer", password="a-long-viewer-password", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_agentrating"))
    client.force_login(viewer)  # the password path is django-axes' (tests/test_admin_login.py)
    url = reverse("admin:topics_agentrating_changelist")
    assert "rebuild_ratings" not in client.get(url).content.decode()
    viewer.user_permissions.add(Permission.objects.get(codename="rebuild_ratings"))
    debate(player(), player(), player(), "con", now=now)
    assert "rebuild_ratings" in client.get(url).content.decode()
