"""The environment each kind of process runs with, stated rather than inherited by accident.

Settings come from environment variables and from a ``.env`` file in the
project root (``make install`` writes one for local development, with
``DJANGO_DEBUG=1``). A test, a benchmark or the demo must mean the same
thing on every machine, so none of them reads that file: they point
``DJANGO_ENV_FILE`` at ``isolated.env``, which sets nothing, and their
children start from our environment minus every variable the settings read
(``without_configuration``), plus what the caller states.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

# Every variable dialectic/settings.py reads, and the two the Procfile's web line reads.
CONFIGURATION = re.compile(
    r"^(DJANGO_|FABRIC_|ORCHESTRATOR_|SSE_|THROTTLE_|CORS_)|^(DATABASE_URL|CACHE_URL|LOG_LEVEL|BIND|WEB_CONCURRENCY)$"
)
ISOLATED_ENV_FILE = Path(__file__).resolve().with_name("isolated.env")


def without_configuration(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (ours by default) without any variable that configures Dialectic."""
    return {k: v for k, v in (os.environ if environ is None else environ).items() if not CONFIGURATION.match(k)}


def isolated_environ(**variables: str) -> dict[str, str]:
    """Our environment, configured only by ``variables``: no inherited setting, no ``.env``, unbuffered output."""
    return {
        **without_configuration(),
        "DJANGO_ENV_FILE": str(ISOLATED_ENV_FILE),
        "PYTHONUNBUFFERED": "1",
        **variables,
    }


def child_database_url() -> str:
    """The DATABASE_URL of the database this process is using right now (under pytest: the test database)."""
    from django.db import connection

    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        name = settings["NAME"]
        if not name or name == ":memory:" or str(name).startswith("file:"):
            raise RuntimeError("child processes need a file-backed SQLite database")
        return f"sqlite:///{Path(name).resolve()}"
    if connection.vendor == "mysql":
        user = quote(settings.get("USER") or "", safe="")
        password = quote(settings.get("PASSWORD") or "", safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = settings.get("HOST") or "127.0.0.1"
        port = settings.get("PORT") or 3306
        return f"mysql://{auth}{host}:{port}/{settings['NAME']}"
    raise RuntimeError(f"no child DATABASE_URL for {connection.vendor}")


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A child on this process's database and settings module (under pytest: the test database, tests.settings).

    A child only sees committed rows: tests that start one need
    ``pytest.mark.django_db(transaction=True)``. ``extra`` wins, ``DATABASE_URL`` included (a child on
    another node of a Galera cluster).
    """
    from django.conf import settings

    base = {"DATABASE_URL": child_database_url(), "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE}
    return isolated_environ(**{**base, **(extra or {})})


def bench_environment(database_url: str, *, log_level: str = "WARNING") -> None:
    """This process on production settings: the benchmark's own database (unless DATABASE_URL says), debug off."""
    os.environ.setdefault("DATABASE_URL", database_url)
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key")
    os.environ.setdefault("LOG_LEVEL", log_level)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="dialectic.settings",
        DJANGO_DEBUG="0",  # what is measured is production; debug mode keeps every query in memory
        DJANGO_ENV_FILE=str(ISOLATED_ENV_FILE),
    )


def create_mysql_database(url: str) -> None:
    """Create the MariaDB/MySQL database ``url`` names if it is missing (a benchmark on a fresh machine)."""
    import environ
    import MySQLdb

    config = environ.Env.db_url_config(url)
    if config["ENGINE"] != "django.db.backends.mysql":
        return
    conn = MySQLdb.connect(
        host=config["HOST"] or "127.0.0.1",
        port=int(config["PORT"] or 3306),
        user=config["USER"] or "root",
        password=config["PASSWORD"] or "",
    )
    try:
        conn.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{config['NAME']}` CHARACTER SET utf8mb4")
    finally:
        conn.close()


def require_mysql(url: str, bench: str) -> None:
    """Stop with a message unless ``url`` is a MariaDB/MySQL one: ``bench`` measures that database."""
    scheme = url.split(":", 1)[0]
    if scheme != "mysql":
        sys.exit(f"{bench} measures MariaDB/MySQL; DATABASE_URL is {scheme}://")
