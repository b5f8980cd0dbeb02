"""What the benchmarks share: their own MariaDB database and the web server command."""

from __future__ import annotations

import os
import sys
from urllib.parse import urlparse

from scripts.stack import terminate, web_argv  # noqa: F401  (re-exported: the stack's process helpers)


def bench_environment(database_url: str) -> None:
    """Production settings on the benchmark's own database (DATABASE_URL overrides), quiet logs."""
    os.environ.setdefault("DATABASE_URL", database_url)
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key")
    os.environ["DJANGO_SETTINGS_MODULE"] = "dialectic.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")


def ensure_mysql_database(url: str, bench: str) -> None:
    """Create the MariaDB database ``url`` names, so a benchmark runs on a fresh machine."""
    import MySQLdb

    parts = urlparse(url)
    if parts.scheme != "mysql":
        sys.exit(f"{bench} measures MariaDB/MySQL; DATABASE_URL is {parts.scheme}://")
    conn = MySQLdb.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
    )
    conn.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{parts.path.lstrip('/')}` CHARACTER SET utf8mb4")
    conn.close()
