"""The stream's settings are parsed strictly at startup, like every other variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devtools.processes import BASE_DIR

PROBE = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.SSE_POLL_INTERVAL.total_seconds(), s.SSE_HEARTBEAT_INTERVAL.total_seconds(), "
    "s.SSE_BATCH_SIZE, s.SSE_STATS_ENABLED)"
)


def boot(tmp_path, **variables: str) -> subprocess.CompletedProcess:
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(BASE_DIR),
        "DJANGO_SETTINGS_MODULE": "dialectic.settings",
        "DJANGO_ENV_FILE": str(env_file),
        "DJANGO_SECRET_KEY": "a-secret-for-this-test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'probe.sqlite3'}",
        **variables,
    }
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )


def test_defaults_and_good_values(tmp_path):
    assert boot(tmp_path).stdout.split() == ["0.5", "15.0", "500", "False"]
    tuned = boot(
        tmp_path, SSE_POLL_INTERVAL="250ms", SSE_HEARTBEAT_INTERVAL="1m", SSE_BATCH_SIZE="50", SSE_STATS_ENABLED="on"
    )
    assert tuned.stdout.split() == ["0.25", "60.0", "50", "True"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SSE_POLL_INTERVAL", "0"), ("SSE_HEARTBEAT_INTERVAL", "soon"), ("SSE_BATCH_SIZE", "0")],
)
def test_a_bad_value_stops_startup_naming_the_variable(tmp_path, variable, value):
    result = boot(tmp_path, **{variable: value})
    assert result.returncode != 0
    assert variable in result.stderr.strip().splitlines()[-1]
