"""Transport: behind the TLS proxy `check --deploy` is clean, HTTP redirects (`/healthz` excepted), HTTPS has HSTS.

The check runs in a fresh process with the production settings
(``dialectic.settings``, not the suite's) and the environment docs/deploy.md
lists; the redirect and the headers are asserted against a real server.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import httpx
import pytest

from devtools.processes import BASE_DIR, MANAGE_PY, stream_server


def deploy_check(tmp_path, **overrides: str) -> subprocess.CompletedProcess:
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "dialectic.settings",
        "DJANGO_ENV_FILE": str(env_file),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
        # What docs/deploy.md tells an operator to set.
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "debate.example.com",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://debate.example.com",
        "DJANGO_BEHIND_TLS_PROXY": "on",
        **overrides,
    }
    return subprocess.run(
        [sys.executable, str(MANAGE_PY), "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_reports_nothing_behind_the_tls_proxy(tmp_path):
    result = deploy_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_without_the_proxy_switch_check_deploy_still_names_what_is_missing(tmp_path):
    """The clean report above is the switch's doing, not a check that cannot fail."""
    result = deploy_check(tmp_path, DJANGO_BEHIND_TLS_PROXY="off")
    assert result.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in result.stderr, (check, result.stderr)


@pytest.mark.django_db(transaction=True)
def test_behind_the_proxy_http_is_redirected_healthz_is_not_and_https_carries_hsts():
    with stream_server({"DJANGO_BEHIND_TLS_PROXY": "on", "DJANGO_HSTS_SECONDS": "3600"}) as server:
        server.wait_healthy()  # /healthz answers 200 over plain HTTP: exempt from the redirect
        plain = httpx.get(f"{server.base_url}/api/topics/?status=debating", timeout=5)
        assert plain.status_code == 301
        assert plain.headers["Location"] == f"https://127.0.0.1:{server.port}/api/topics/?status=debating"

        proxied = httpx.get(f"{server.base_url}/api/topics/", headers={"X-Forwarded-Proto": "https"}, timeout=5)
        assert proxied.status_code == 200
        assert proxied.headers["Strict-Transport-Security"] == "max-age=3600; includeSubDomains; preload"

        health = httpx.get(f"{server.base_url}/healthz", timeout=5)
        assert health.status_code == 200
        assert "Strict-Transport-Security" not in health.headers  # never over plain HTTP
