"""The Procfile's web process, for real: gunicorn with uvicorn workers serving the ASGI app.

Started on a free 127.0.0.1 port against the test database with DEBUG on,
as ``make run`` does. The admin login page answers, its stylesheets load
(static files under ASGI), and a staff login reaches data the test wrote.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model

from scripts.stack import terminate
from tests.support import BASE_DIR, child_env, wait_for
from topics.models import Agent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, after the process
    # The Procfile line exactly as honcho runs it (through a shell, which its `exec` replaces).
    proc = subprocess.Popen(
        ["/bin/sh", "-c", procfile_command("web")], cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read().decode(errors='replace')}")
        try:
            return requests.get(f"{base}/healthz", timeout=2).status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            # gunicorn accepts before its worker has booted; on a loaded machine that takes seconds.
            return False

    try:
        wait_for(answering, timeout=60, interval=0.2, message="the web process did not answer within 60s")
        yield base
    finally:
        terminate(proc, grace=15)
        log.close()


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
