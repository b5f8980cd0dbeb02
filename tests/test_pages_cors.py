"""CORS (django-cors-headers): the public reads and the topic stream for CORS_ALLOWED_ORIGINS, never credentials.

The stream itself is followed from another origin in a real browser in tests/test_pages_browser.py.
"""

from __future__ import annotations

import pytest
from django.test import Client

from devtools.environments import isolated_environ
from devtools.processes import last_line, manage

pytestmark = pytest.mark.django_db

ORIGIN = "https://watch.example"


@pytest.fixture
def client():
    return Client(headers={"Origin": ORIGIN})


@pytest.mark.parametrize(
    "path",
    [
        "/api/topics/",
        "/api/topics/{id}/",
        "/api/topics/{id}/arguments/",
        "/api/topics/{id}/verdict/",
        "/api/agents/",
        "/api/agents/{agent}/",
    ],
)
def test_public_reads_answer_any_origin_without_credentials(client, make_topic, make_agent, path):
    topic = make_topic()
    response = client.get(path.format(id=topic.pk, agent=make_agent().pk))
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response


def test_a_preflight_for_the_stream_allows_last_event_id_and_only_reads(client, make_topic):
    topic = make_topic()
    response = client.options(
        f"/api/topics/{topic.pk}/events/",
        headers={"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "last-event-id"},
    )
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "last-event-id" in response["Access-Control-Allow-Headers"]
    assert set(response["Access-Control-Allow-Methods"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    assert "Access-Control-Allow-Credentials" not in response


def test_writes_are_not_allowed_from_another_origin(client, make_topic):
    topic = make_topic()
    response = client.options(
        f"/api/topics/{topic.pk}/arguments/",
        headers={"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"},
    )
    assert "POST" not in response.get("Access-Control-Allow-Methods", "")
    assert "authorization" not in response.get("Access-Control-Allow-Headers", "")


@pytest.mark.parametrize("path", ["/api/agents/me/", "/admin/login/", "/", "/healthz", "/api/schema/"])
def test_other_paths_say_nothing(client, path):
    assert "Access-Control-Allow-Origin" not in client.get(path)


def test_a_list_of_origins_answers_only_those(settings, make_topic):
    settings.CORS_ALLOW_ALL_ORIGINS = False
    settings.CORS_ALLOWED_ORIGINS = [ORIGIN]
    allowed = Client(headers={"Origin": ORIGIN}).get("/api/topics/")
    assert allowed["Access-Control-Allow-Origin"] == ORIGIN
    assert "Access-Control-Allow-Origin" not in Client(headers={"Origin": "https://other.example"}).get("/api/topics/")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("*", "all origins"), ("https://a.example, https://b.example", "['https://a.example', 'https://b.example']")],
)
def test_the_variable_is_read_at_startup(value, expected):
    code = (
        "from django.conf import settings as s; "
        "print('all origins' if getattr(s, 'CORS_ALLOW_ALL_ORIGINS', False) else s.CORS_ALLOWED_ORIGINS)"
    )
    env = isolated_environ(DJANGO_SECRET_KEY="x", CORS_ALLOWED_ORIGINS=value)
    assert last_line(manage("shell", "-c", code, env=env)) == expected


def test_a_mixed_value_fails_at_startup_naming_the_variable():
    env = isolated_environ(DJANGO_SECRET_KEY="x", CORS_ALLOWED_ORIGINS="*,https://a.example")
    with pytest.raises(RuntimeError, match="CORS_ALLOWED_ORIGINS"):
        manage("check", env=env)
