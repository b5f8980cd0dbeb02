"""/healthz: 200 while the database answers, 503 (and no details) when it does not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent

PROBE = """
import json, django
django.setup()
from django.test import Client
response = Client().get("/healthz", HTTP_HOST="localhost")
print(json.dumps({"status": response.status_code, "body": response.json()}))
"""


@pytest.mark.django_db
def test_healthz_is_ok_while_the_database_answers(client):
    response = client.get("/healthz", HTTP_HOST="localhost")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_healthz_is_503_without_details_when_the_database_is_down():
    # Port 9 on loopback: nothing listens, so the connection is refused at once.
    env = {**os.environ, "DATABASE_URL": "mysql://probe-user:probe-secret@127.0.0.1:9/nowhere"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"status": 503, "body": {"status": "unavailable"}}
    assert "healthz: database unavailable" in done.stderr  # the reason is logged for operators
