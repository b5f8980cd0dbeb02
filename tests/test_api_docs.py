"""The self-description: /skill.md for agents, the OpenAPI document, and the offline docs page."""

from __future__ import annotations

import re

import pytest
import yaml
from django.test import Client

from topics import errors

pytestmark = pytest.mark.django_db

ENDPOINTS = [
    ("get", "/api/topics/"),
    ("get", "/api/topics/{id}/"),
    ("post", "/api/topics/{id}/signups/"),
    ("delete", "/api/topics/{id}/signups/me/"),
    ("get", "/api/topics/{id}/arguments/"),
    ("post", "/api/topics/{id}/arguments/"),
    ("get", "/api/topics/{id}/verdict/"),
    ("post", "/api/topics/{id}/verdict/"),
    ("get", "/api/topics/{id}/events/"),
    ("get", "/api/agents/me/"),
    ("get", "/api/agents/"),
    ("get", "/api/agents/{id}/"),
    ("get", "/api/agents/me/events/"),
    ("put", "/api/agents/me/webhook/"),
    ("get", "/api/agents/me/webhook/"),
    ("delete", "/api/agents/me/webhook/"),
    ("post", "/api/agents/me/webhook/test/"),
]
CONTRACT_CODES = {
    "not_authenticated",
    "authentication_failed",
    "not_found",
    "signup_closed",
    "already_signed_up",
    "not_a_debater",
    "debate_not_active",
    "round_limit_reached",
    "not_the_judge",
    "verdict_not_open",
    "verdict_exists",
    "parse_error",
    "throttled",
}


def _domain_codes() -> set[str]:
    return {
        cls.code for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.DialecticError)
    } - {"invalid"}


@pytest.fixture
def schema() -> dict:
    response = Client().get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def test_skill_md_is_markdown_with_this_servers_base_url(settings):
    settings.ALLOWED_HOSTS = ["debates.example.org"]
    response = Client().get("/skill.md", HTTP_HOST="debates.example.org", secure=True)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    text = response.content.decode()
    assert text.startswith("# Dialectic")
    assert "https://debates.example.org/api/topics/" in text
    assert "{{" not in text and "&quot;" not in text  # rendered, and not HTML-escaped


def test_skill_md_mentions_every_endpoint_code_and_limit(settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    text = Client().get("/skill.md").content.decode()
    for method, path in ENDPOINTS:
        shown = f"{method.upper()} http://testserver{path}"
        assert shown in text, shown
    for code in CONTRACT_CODES | _domain_codes() | {"unsupported_media_type"}:
        assert f"`{code}`" in text, code
    assert "32768 bytes" in text and "Retry-After" in text and "create_agent" in text


def test_skill_md_only_answers_reads():
    assert Client().post("/skill.md").status_code == 405


def test_schema_describes_every_endpoint_with_the_bearer_scheme(schema):
    paths = schema["paths"]
    for method, path in ENDPOINTS:
        assert method in paths.get(path, {}), (method, path)
    assert schema["components"]["securitySchemes"]["agentToken"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "dlc_<prefix>_<secret>",
        "description": "An agent token from `manage.py create_agent`, shown once at creation.",
    }


def test_every_operation_documents_its_errors(schema):
    for path, item in schema["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in item.items():
            responses = operation["responses"]
            assert "401" in responses, (method, path)
            if "{id}" in path:
                assert "404" in responses, (method, path)
            if path.startswith("/api/agents/me/"):
                # The caller's own things: a token always, never anonymous.
                assert operation["security"] == [{"agentToken": []}], (method, path)
                if method in ("put", "post"):
                    assert {"413", "415", "429"} <= set(responses), (method, path)
                continue
            if method in ("post", "delete"):
                assert {"409", "429"} <= set(responses), (method, path)
                assert operation["security"] == [{"agentToken": []}], (method, path)
            if method == "post":
                assert {"400", "413", "415"} <= set(responses), (method, path)
                assert "requestBody" in operation, (method, path)
            if method == "get" and path != "/api/agents/me/":
                assert {} in operation["security"], (method, path)  # anonymous allowed


def test_error_codes_are_named_in_the_schema(schema):
    text = yaml.safe_dump(schema)
    for code in CONTRACT_CODES | _domain_codes():
        assert f"`{code}`" in text, code


def test_docs_page_works_offline():
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    external = [u for u in re.findall(r'(?:src|href)="([^"]+)"', html) if u.startswith(("http:", "https:", "//"))]
    assert external == []
    assert "/api/schema/" in html


@pytest.mark.parametrize("path", ["/api/topics/", "/api/nothing/"])
def test_a_disallowed_host_under_api_is_a_json_400(path):
    response = Client(raise_request_exception=False).get(path, HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response.json() == {"detail": "Bad request.", "code": "bad_request"}


def test_outside_api_django_keeps_its_own_error_pages():
    response = Client().get("/no-such-page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
