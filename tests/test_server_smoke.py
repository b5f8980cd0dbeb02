"""The Procfile's web process, for real: gunicorn with uvicorn workers serving the ASGI app.

Started on a free 127.0.0.1 port against the test database with DEBUG on,
as ``make run`` does. The admin login page answers, its stylesheets load
(static files under ASGI), and a staff login reaches data the test wrote.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model

from devtools.environments import child_env
from devtools.processes import BASE_DIR, ChildProcess, free_port, wait_until_healthy
from topics.models import Agent


def procfile_command(process: str) -> str:
    for line in (BASE_DIR / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            return command.strip()
    raise AssertionError(f"no {process!r} process in the Procfile")


@pytest.fixture
def web_server(transactional_db) -> Iterator[str]:
    port = free_port()
    venv_bin = Path(sys.executable).parent
    env = child_env(
        {
            "DJANGO_DEBUG": "1",
            "BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": "1",
            "PATH": f"{venv_bin}:{child_env()['PATH']}",
        }
    )
    base = f"http://127.0.0.1:{port}"
    # The Procfile line exactly as honcho runs it (through a shell, which its `exec` replaces).
    with ChildProcess(["/bin/sh", "-c", procfile_command("web")], env=env, name="web") as web:
        wait_until_healthy(base, watch=[web], timeout=60)
        yield base


def test_procfile_web_process_serves_the_admin_with_its_static_files(web_server):
    staff = get_user_model().objects.create_superuser("ops", "ops@example.com", "an-operator-password")
    Agent.objects.create(name="served-by-gunicorn")
    session = requests.Session()
    login = session.get(f"{web_server}/admin/login/", timeout=10)
    assert login.status_code == 200
    assert "Dialectic administration" in login.text

    stylesheets = re.findall(r'<link rel="stylesheet" href="([^"]+\.css)"', login.text)
    assert any(href.endswith("admin/css/base.css") for href in stylesheets), stylesheets
    for href in stylesheets:
        css = session.get(f"{web_server}{href}", timeout=10)
        assert css.status_code == 200, href
        assert css.headers["Content-Type"].startswith("text/css")
        assert len(css.content) > 100

    # A staff login through the real server reaches rows this test committed.
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    response = session.post(
        f"{web_server}/admin/login/?next=/admin/topics/agent/",
        data={"username": staff.username, "password": "an-operator-password", "csrfmiddlewaretoken": token},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.url.endswith("/admin/topics/agent/")
    assert "served-by-gunicorn" in response.text
