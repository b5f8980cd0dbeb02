"""Configuration: every variable is parsed strictly at startup, and a bad one names itself.

Each case starts a fresh interpreter that loads the production settings
(``dialectic.settings``) with a controlled environment, exactly as a server
or ticker process would at boot. The repository's own ``.env`` never leaks
in: ``DJANGO_ENV_FILE`` points at a file the test writes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent

# Loads the settings and prints what the tests look at.
PROBE = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({
    "debug": s.DEBUG,
    "secret_key": s.SECRET_KEY,
    "engine": s.DATABASES["default"]["ENGINE"],
    "db_name": str(s.DATABASES["default"]["NAME"]),
    "db_options": s.DATABASES["default"]["OPTIONS"],
    "conn_max_age": s.DATABASES["default"]["CONN_MAX_AGE"],
    "web_threads": s.WEB_THREADS,
    "tick": s.ORCHESTRATOR_TICK_INTERVAL.total_seconds(),
    "throttle": s.THROTTLE_AGENT_WRITES,
    "cache": s.CACHES["default"]["BACKEND"],
    "hosts": s.ALLOWED_HOSTS,
    "csrf_origins": s.CSRF_TRUSTED_ORIGINS,
    "proxy_ssl_header": s.SECURE_PROXY_SSL_HEADER,
}))
"""


@pytest.fixture
def boot(tmp_path):
    """Start a process with the production settings; returns (returncode, settings dict or None, stderr)."""
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")

    def run(*, pythonpath: Path = BASE_DIR, **variables: str | None):
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "PYTHONPATH": os.pathsep.join(dict.fromkeys([str(pythonpath), str(BASE_DIR)])),
            "DJANGO_SETTINGS_MODULE": "dialectic.settings",
            "DJANGO_ENV_FILE": str(empty_env_file),
            "DJANGO_SECRET_KEY": "a-secret-for-this-test",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'probe.sqlite3'}",
        }
        for name, value in variables.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        proc = subprocess.run(
            [sys.executable, "-c", PROBE], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        loaded = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
        return proc.returncode, loaded, proc.stderr

    return run


def test_defaults_boot(boot, tmp_path):
    code, loaded, stderr = boot()
    assert code == 0, stderr
    assert loaded["debug"] is False
    assert loaded["secret_key"] == "a-secret-for-this-test"
    assert loaded["engine"] == "django.db.backends.sqlite3"
    assert loaded["db_options"]["transaction_mode"] == "IMMEDIATE"
    assert loaded["tick"] == 15.0
    assert loaded["throttle"] == "120/minute"
    assert loaded["cache"].endswith("LocMemCache")
    assert loaded["hosts"] == ["localhost", "127.0.0.1"]
    assert loaded["web_threads"] == 8
    assert loaded["conn_max_age"] == 60


def test_good_values_are_parsed(boot):
    code, loaded, stderr = boot(
        DJANGO_DEBUG="yes",
        ORCHESTRATOR_TICK_INTERVAL="1m30s",
        THROTTLE_AGENT_WRITES="10/second",
        DATABASE_URL="mysql://dialectic:pw@db.internal:3306/dialectic?conn_max_age=0",
        DJANGO_ALLOWED_HOSTS="debate.example.com, localhost",
        WEB_THREADS="16",
    )
    assert code == 0, stderr
    assert loaded["debug"] is True
    assert loaded["tick"] == 90.0
    assert loaded["throttle"] == "10/second"
    assert loaded["engine"] == "django.db.backends.mysql"
    assert loaded["db_options"]["charset"] == "utf8mb4"
    assert loaded["hosts"] == ["debate.example.com", "localhost"]
    assert loaded["web_threads"] == 16
    assert loaded["conn_max_age"] == 0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DJANGO_DEBUG", "maybe"),
        ("DJANGO_DEBUG", "2"),
        ("DATABASE_URL", "postgres://u:p@localhost/dialectic"),
        ("DATABASE_URL", "not a url"),
        ("DATABASE_URL", "mysql://root@127.0.0.1:3306/"),
        ("ORCHESTRATOR_TICK_INTERVAL", "fast"),
        ("ORCHESTRATOR_TICK_INTERVAL", "-5s"),
        ("ORCHESTRATOR_TICK_INTERVAL", "15 s"),
        ("THROTTLE_AGENT_WRITES", "lots"),
        ("THROTTLE_AGENT_WRITES", "10/fortnight"),
        ("DATABASE_URL", "sqlite://"),
        ("CACHE_URL", "bogus://cache"),
        ("WEB_THREADS", "0"),
        ("WEB_THREADS", "many"),
        ("MAX_ARGUMENTS_PER_TOPIC", "0"),
        ("SSE_MAX_LIFETIME", "0"),
        ("SSE_MAX_LIFETIME", "forever"),
        ("SSE_MAX_STREAMS", "0"),
        ("DJANGO_HSTS_SECONDS", "-1"),
        ("DJANGO_HSTS_SECONDS", "a year"),
        ("MAX_ARGUMENTS_PER_TOPIC", "lots"),
    ],
)
def test_a_bad_value_fails_at_startup_naming_the_variable(boot, variable, value):
    code, _, stderr = boot(**{variable: value})
    assert code != 0
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured")
    assert variable in last_line


def test_behind_a_tls_proxy_the_admin_trusts_the_configured_origins(boot):
    code, loaded, stderr = boot()
    assert code == 0, stderr
    assert loaded["csrf_origins"] == [] and loaded["proxy_ssl_header"] is None
    code, loaded, stderr = boot(
        DJANGO_CSRF_TRUSTED_ORIGINS="https://debate.example.com, https://admin.example.com",
        DJANGO_BEHIND_TLS_PROXY="on",
    )
    assert code == 0, stderr
    assert loaded["csrf_origins"] == ["https://debate.example.com", "https://admin.example.com"]
    assert loaded["proxy_ssl_header"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_a_bad_database_url_does_not_leak_its_password(boot):
    code, _, stderr = boot(DATABASE_URL="postgres://dialectic:hunter2-secret@db.internal/dialectic")
    assert code != 0
    assert "DATABASE_URL" in stderr and "hunter2-secret" not in stderr


def test_the_secret_key_is_required_unless_debug_is_on(boot):
    code, _, stderr = boot(DJANGO_SECRET_KEY=None)
    assert code != 0
    assert "DJANGO_SECRET_KEY" in stderr.strip().splitlines()[-1]
    code, _, stderr = boot(DJANGO_SECRET_KEY="", DJANGO_DEBUG="off")
    assert code != 0 and "DJANGO_SECRET_KEY" in stderr
    code, loaded, stderr = boot(DJANGO_SECRET_KEY=None, DJANGO_DEBUG="1")
    assert code == 0, stderr
    assert loaded["secret_key"].startswith("django-insecure-")


def test_an_env_file_is_read_and_the_environment_wins(boot, tmp_path):
    env_file = tmp_path / "dialectic.env"
    env_file.write_text(
        "# local overrides\nDJANGO_DEBUG=on\nORCHESTRATOR_TICK_INTERVAL=2s\nTHROTTLE_AGENT_WRITES=5/minute\n"
    )
    code, loaded, stderr = boot(DJANGO_ENV_FILE=str(env_file), DJANGO_SECRET_KEY=None, THROTTLE_AGENT_WRITES="7/hour")
    assert code == 0, stderr
    assert loaded["debug"] is True  # so no secret key was needed
    assert loaded["tick"] == 2.0
    assert loaded["throttle"] == "7/hour"  # the process environment beats the file


def test_a_bad_value_in_the_env_file_names_the_variable(boot, tmp_path):
    env_file = tmp_path / "bad.env"
    env_file.write_text("ORCHESTRATOR_TICK_INTERVAL=soon\n")
    code, _, stderr = boot(DJANGO_ENV_FILE=str(env_file))
    assert code != 0
    assert "ORCHESTRATOR_TICK_INTERVAL" in stderr.strip().splitlines()[-1]


def test_a_missing_env_file_named_explicitly_is_an_error(boot, tmp_path):
    code, _, stderr = boot(DJANGO_ENV_FILE=str(tmp_path / "nope.env"))
    assert code != 0
    assert "DJANGO_ENV_FILE" in stderr.strip().splitlines()[-1]


def test_dot_env_next_to_the_project_is_read_by_default(boot, tmp_path):
    # A copy of the settings package in a scratch project root, so the real
    # checkout never gets a .env file (not even for the length of a test).
    project = tmp_path / "project"
    shutil.copytree(BASE_DIR / "dialectic", project / "dialectic", ignore=shutil.ignore_patterns("__pycache__"))
    (project / ".env").write_text("DJANGO_SECRET_KEY=from-dot-env\nORCHESTRATOR_TICK_INTERVAL=500ms\n")
    code, loaded, stderr = boot(pythonpath=project, DJANGO_ENV_FILE=None, DJANGO_SECRET_KEY=None)
    assert code == 0, stderr
    assert loaded["secret_key"] == "from-dot-env"
    assert loaded["tick"] == 0.5
