"""The admin login is rate-limited per client (django-axes), through the real login page; agents are never affected.

Five wrong passwords from one address lock that address out for 15
minutes: the login page then answers 429, even to the right password.
Other addresses, and agents' bearer tokens, are not affected. Behind the
TLS proxy the address is the last ``X-Forwarded-For`` entry, the one the
proxy appended (``dialectic.proxy``).
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from topics.tokens import token_issue

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"
PASSWORD = "the-right-staff-password"


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_superuser("staff", "staff@example.com", PASSWORD)


def log_in(client: Client, password: str, **headers: str):
    """Through the page, as a browser: GET the form (CSRF cookie and token), POST it."""
    page = client.get(LOGIN, **headers)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    data = {"username": "staff", "password": password, "next": "/admin/"}
    if token:
        data["csrfmiddlewaretoken"] = token.group(1)
    return client.post(LOGIN, data, **headers)


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def test_five_failures_lock_the_client_out_even_for_the_right_password(staff):
    attacker = Client(enforce_csrf_checks=True, REMOTE_ADDR="203.0.113.7")
    for _ in range(4):
        assert log_in(attacker, "guess").status_code == 200  # the form again, with its error
    assert log_in(attacker, "guess").status_code == 429
    assert log_in(attacker, PASSWORD).status_code == 429

    colleague = Client(enforce_csrf_checks=True, REMOTE_ADDR="198.51.100.20")
    assert logged_in(log_in(colleague, PASSWORD))


def test_a_success_before_the_limit_clears_the_count(staff):
    staff_member = Client(enforce_csrf_checks=True, REMOTE_ADDR="203.0.113.8")
    for _ in range(4):
        log_in(staff_member, "typo")
    assert logged_in(log_in(staff_member, PASSWORD))
    staff_member.logout()
    for _ in range(4):
        assert log_in(staff_member, "typo").status_code == 200


def test_agents_tokens_are_never_rate_limited_by_the_admin_lockout(staff, make_agent):
    address = "203.0.113.9"
    attacker = Client(REMOTE_ADDR=address)
    for _ in range(6):
        log_in(attacker, "guess")
    assert log_in(attacker, PASSWORD).status_code == 429
    token = token_issue(agent=make_agent())
    agent = Client(REMOTE_ADDR=address, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert agent.get("/api/agents/me/").status_code == 200


def test_behind_the_proxy_the_client_is_the_address_the_proxy_appended(staff, settings):
    settings.AXES_CLIENT_IP_CALLABLE = "dialectic.proxy.client_ip"
    # Everyone arrives from the proxy's address; a client may prepend whatever it likes.
    via_proxy = {"REMOTE_ADDR": "127.0.0.1"}
    attacker = Client(**via_proxy)
    for n in range(5):
        spoofed = {"HTTP_X_FORWARDED_FOR": f"10.0.0.{n}, 203.0.113.50"}
        log_in(attacker, "guess", **spoofed)
    assert log_in(attacker, PASSWORD, HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.50").status_code == 429

    colleague = Client(**via_proxy)
    assert logged_in(log_in(colleague, PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.21"))


def test_without_the_proxy_switch_x_forwarded_for_is_ignored(staff):
    attacker = Client(REMOTE_ADDR="203.0.113.60")
    for n in range(5):
        log_in(attacker, "guess", HTTP_X_FORWARDED_FOR=f"10.1.0.{n}")
    assert log_in(attacker, PASSWORD, HTTP_X_FORWARDED_FOR="10.1.1.1").status_code == 429
