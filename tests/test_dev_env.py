"""The local ``.env`` that ``make install`` writes; nothing the suite, the benchmarks or the demo runs reads it.

``scripts/write_dev_env.py`` writes ``DJANGO_DEBUG=1`` and a generated
``DJANGO_SECRET_KEY`` when there is no ``.env``, never overwriting one. The
suite (``tests/settings.py``), the children it starts (``child_env``), the
benchmarks (``bench_environment``) and the demo (``isolated_environ``) read
``devtools/isolated.env`` instead, so that file changes nothing they test or
measure. (The fresh-clone run of ``make install`` itself is in
``test_readme.py``.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.environments import ISOLATED_ENV_FILE, bench_environment, child_env, isolated_environ
from devtools.processes import BASE_DIR

WRITER = BASE_DIR / "scripts" / "write_dev_env.py"

# Prints the settings the tests look at; DJANGO_SETTINGS_MODULE says which.
PROBE = """
import json
from django.conf import settings as s
print(json.dumps({
    "debug": s.DEBUG,
    "secret_key": s.SECRET_KEY,
    "tick": s.ORCHESTRATOR_TICK_INTERVAL.total_seconds(),
    "fabric": s.FABRIC_GUILD_BASE_URL,
}))
"""


def write(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(WRITER), str(path)], capture_output=True, text=True, timeout=30, check=True
    )


def probe(project: Path, settings_module: str, **variables: str) -> dict:
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(project),
        "DJANGO_SETTINGS_MODULE": settings_module,
        "DATABASE_URL": f"sqlite:///{project / 'probe.sqlite3'}",
        **variables,
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=project, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_writer_makes_a_private_development_file_once_and_never_overwrites_it(tmp_path):
    path = tmp_path / ".env"
    assert "not for production" in write(path).stdout
    text = path.read_text(encoding="utf-8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "the key is readable by its owner only"
    header = " ".join(line for line in text.splitlines() if line.startswith("#")).lower()
    assert "local development" in header and "make install" in header
    assert "never use this file" in header and "in production" in header
    values = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert values.keys() == {"DJANGO_SECRET_KEY", "DJANGO_DEBUG"} and values["DJANGO_DEBUG"] == "1"
    assert re.fullmatch(r"[A-Za-z0-9_-]{50,}", values["DJANGO_SECRET_KEY"]), "long, and nothing a parser misreads"

    path.write_text(text + "LOG_LEVEL=DEBUG\n", encoding="utf-8")  # the developer's own edit
    assert "left as it is" in write(path).stdout
    assert path.read_text(encoding="utf-8") == text + "LOG_LEVEL=DEBUG\n"

    other = tmp_path / "other.env"
    write(other)
    assert other.read_text(encoding="utf-8") != text, "every checkout gets a key of its own"


def test_with_the_written_file_the_server_starts_in_debug_with_its_key(tmp_path):
    path = tmp_path / ".env"
    write(path)
    key = re.search(r"^DJANGO_SECRET_KEY=(.+)$", path.read_text(encoding="utf-8"), re.M)[1]
    loaded = probe(BASE_DIR, "dialectic.settings", DJANGO_ENV_FILE=str(path))
    assert loaded["debug"] is True and loaded["secret_key"] == key


@pytest.fixture
def project_with_a_dot_env(tmp_path) -> Path:
    """A copy of the settings packages in a scratch project root whose .env turns debug on and sets more.

    A copy, so the real checkout's .env (if any) is neither needed nor touched.
    """
    project = tmp_path / "project"
    for package in ("dialectic", "devtools"):
        shutil.copytree(BASE_DIR / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "tests").mkdir()
    for name in ("__init__.py", "settings.py"):
        shutil.copy(BASE_DIR / "tests" / name, project / "tests" / name)
    (project / ".env").write_text(
        "DJANGO_SECRET_KEY=from-dot-env\nDJANGO_DEBUG=1\nORCHESTRATOR_TICK_INTERVAL=7s\n"
        "FABRIC_GUILD_BASE_URL=https://fabric.example\n"
    )
    return project


def test_the_suites_settings_never_read_the_projects_dot_env(project_with_a_dot_env):
    # Control: the production settings in that project do read it ...
    production = probe(project_with_a_dot_env, "dialectic.settings")
    assert production == {"debug": True, "secret_key": "from-dot-env", "tick": 7.0, "fabric": "https://fabric.example"}
    # ... the suite's do not, and neither do the children it starts with the suite's settings.
    suite = probe(project_with_a_dot_env, "tests.settings")
    assert suite == {"debug": False, "secret_key": "insecure-key-for-tests-only", "tick": 15.0, "fabric": ""}
    assert os.environ["DJANGO_ENV_FILE"] == str(ISOLATED_ENV_FILE)
    isolated = ISOLATED_ENV_FILE.read_text(encoding="utf-8").splitlines()
    assert isolated and all(line.startswith("#") for line in isolated), "the isolated file sets nothing"


@pytest.mark.django_db
def test_children_start_from_what_the_test_states_not_from_our_configuration(monkeypatch):
    monkeypatch.setenv("DJANGO_DEBUG", "1")
    monkeypatch.setenv("FABRIC_GUILD_BASE_URL", "https://leaked.example")
    monkeypatch.setenv("LOG_LEVEL", "ERROR")
    monkeypatch.setenv("DJANGO_ENV_FILE", str(BASE_DIR / ".env"))
    env = child_env({"SSE_POLL_INTERVAL": "100ms"})
    assert {"DJANGO_DEBUG", "FABRIC_GUILD_BASE_URL", "LOG_LEVEL"}.isdisjoint(env)
    assert env["DJANGO_ENV_FILE"] == str(ISOLATED_ENV_FILE)
    assert env["DJANGO_SETTINGS_MODULE"] == "tests.settings"
    assert env["DATABASE_URL"].startswith(("sqlite:///", "mysql://")) and "test" in env["DATABASE_URL"]
    assert env["SSE_POLL_INTERVAL"] == "100ms" and env["PATH"] == os.environ["PATH"]

    demo = isolated_environ(DJANGO_DEBUG="1")
    assert demo["DJANGO_DEBUG"] == "1" and "FABRIC_GUILD_BASE_URL" not in demo
    assert demo["DJANGO_ENV_FILE"] == str(ISOLATED_ENV_FILE)


def test_benchmarks_run_production_settings_whatever_the_dot_env_says(monkeypatch):
    names = ("DATABASE_URL", "DJANGO_SECRET_KEY", "DJANGO_SETTINGS_MODULE", "DJANGO_DEBUG", "DJANGO_ENV_FILE")
    for name in (*names, "LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)  # and restored after the test
    monkeypatch.setenv("DJANGO_DEBUG", "1")
    monkeypatch.setenv("DJANGO_ENV_FILE", str(BASE_DIR / ".env"))
    bench_environment("mysql://root@127.0.0.1:3306/some_bench")
    assert os.environ["DATABASE_URL"] == "mysql://root@127.0.0.1:3306/some_bench"
    assert os.environ["DJANGO_SETTINGS_MODULE"] == "dialectic.settings"
    assert os.environ["DJANGO_DEBUG"] == "0"
    assert os.environ["DJANGO_ENV_FILE"] == str(ISOLATED_ENV_FILE)
    assert os.environ["LOG_LEVEL"] == "WARNING" and os.environ["DJANGO_SECRET_KEY"]
