"""Helpers for tests that start real processes (tickers, servers) against the test database.

A child process only sees committed rows, so tests using these helpers need
``pytest.mark.django_db(transaction=True)``. Children inherit the parent's
environment plus ``DATABASE_URL`` pointing at the *test* database (on MySQL
``test_<name>``, on SQLite the ``-test.sqlite3`` file) and
``DJANGO_SETTINGS_MODULE=tests.settings``.

Output goes to temporary files, not pipes: a chatty child (a ticker logs a
line per transition) would block on a full pipe buffer.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TypeVar
from urllib.parse import quote

from django.apps import apps
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent
MANAGE_PY = BASE_DIR / "manage.py"

T = TypeVar("T")


def ensure_winner_schema():
    """The migrations' default ``winner`` verdict schema (rated: ``x-outcome``), re-created if needed.

    A ``transaction=True`` test ends with a flush that deletes rows written by
    data migrations, so any later test may find it gone.
    """
    importlib.import_module("topics.migrations.0002_winner_schema").create_winner(apps, None)
    importlib.import_module("topics.migrations.0004_winner_outcome").add_outcome(apps, None)
    return apps.get_model("topics", "VerdictSchema").objects.get(name="winner")


def child_database_url() -> str:
    """The DATABASE_URL of the database this test is using right now (the test database)."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        name = settings["NAME"]
        if not name or name == ":memory:" or str(name).startswith("file:"):
            raise RuntimeError("child processes need a file-backed SQLite test database")
        return f"sqlite:///{Path(name).resolve()}"
    if connection.vendor == "mysql":
        user = quote(settings.get("USER") or "", safe="")
        password = quote(settings.get("PASSWORD") or "", safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = settings.get("HOST") or "127.0.0.1"
        port = settings.get("PORT") or 3306
        return f"mysql://{auth}{host}:{port}/{settings['NAME']}"
    raise RuntimeError(f"no child DATABASE_URL for {connection.vendor}")


def child_env(extra: Mapping[str, str] | None = None, *, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment for a child: ours, on the test database, unbuffered, plus ``extra``, minus ``drop``."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        DATABASE_URL=child_database_url(),
        DJANGO_SETTINGS_MODULE="tests.settings",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


class ManageProcess:
    """``python manage.py <args>`` as a child process; use as a context manager so it never outlives the test."""

    def __init__(self, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.args = args
        # Closed in close(): they live as long as the process, not a with-block.
        self._stdout: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, str(MANAGE_PY), *args],
            cwd=BASE_DIR,
            env=dict(env) if env is not None else child_env(),
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=self._stderr,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float) -> int:
        """Wait for the exit code; raises ``subprocess.TimeoutExpired`` (with the output so far) when it runs on."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise subprocess.TimeoutExpired(exc.cmd, timeout, output=self.stdout, stderr=self.stderr) from None

    def send_signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL and reap: no cleanup runs in the child."""
        self.send_signal(signal.SIGKILL)
        self.proc.wait()

    @property
    def stdout(self) -> str:
        return self._read(self._stdout)

    @property
    def stderr(self) -> str:
        return self._read(self._stderr)

    @staticmethod
    def _read(file: IO[bytes]) -> str:
        file.flush()
        file.seek(0)
        return file.read().decode("utf-8", errors="replace")

    def describe(self) -> str:
        """Exit code and output, for assertion messages."""
        return (
            f"manage.py {' '.join(self.args)} → {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        self._stdout.close()
        self._stderr.close()

    def __enter__(self) -> ManageProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def wait_for(condition: Callable[[], T], *, timeout: float, interval: float = 0.02, message: str = "") -> T:
    """Poll ``condition`` until it returns something truthy (returned); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(message or f"condition not met within {timeout}s")
        time.sleep(interval)
