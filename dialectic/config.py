"""Reading configuration from the environment, strictly.

django-environ parses URLs well but is lenient with booleans and durations;
a typo in production should stop the process with the variable's name, not
silently fall back to a default. Every reader here raises
``ImproperlyConfigured`` naming the variable.
"""

from __future__ import annotations

import re
from datetime import timedelta

import environ
from django.core.exceptions import ImproperlyConfigured

env = environ.Env()

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool = False) -> bool:
    raw = env.str(name, default=None)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env.str(name, default=default).split(",") if item.strip()]


_GO_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s))+$")
_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(raw: str) -> timedelta:
    """Parse a Go-style duration (``500ms``, ``1m30s``) or plain seconds (``15``, ``0.5``).

    Raises ``ValueError`` with a readable message; callers add the variable
    or option name.
    """
    text = raw.strip()
    if not text:
        raise ValueError("empty duration")
    try:
        seconds = float(text)
    except ValueError:
        if not _GO_DURATION.match(text):
            raise ValueError(f"{raw!r} is not a duration (examples: 500ms, 15s, 2m, 1m30s, 15)") from None
        seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _GO_PART.findall(text))
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        raise ValueError(f"{raw!r} is not a non-negative duration")
    return timedelta(seconds=seconds)


def env_duration(name: str, default: str, *, positive: bool = False) -> timedelta:
    raw = env.str(name, default=default)
    try:
        value = parse_duration(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None
    if positive and not value:
        raise ImproperlyConfigured(f"{name}={raw!r} must be greater than zero")
    return value


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = env.str(name, default=str(default)).strip()
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum}")
    return value


_URL_HINT = "use sqlite:////absolute/path/db.sqlite3, sqlite:///relative.sqlite3 or mysql://user:pass@host:3306/name"


def env_db(name: str, default: str) -> dict:
    raw = env.str(name, default=default)
    try:
        config = environ.Env.db_url_config(raw)
    except Exception as exc:  # django-environ raises several types for bad URLs
        # The URL is not echoed: it may carry a password.
        raise ImproperlyConfigured(f"{name} is not a database URL ({type(exc).__name__}); {_URL_HINT}") from None
    engine = config.get("ENGINE", "")
    if engine not in ("django.db.backends.sqlite3", "django.db.backends.mysql"):
        raise ImproperlyConfigured(f"{name}: unsupported database {raw.split(':', 1)[0]!r}; use sqlite:// or mysql://")
    if engine == "django.db.backends.sqlite3" and config.get("NAME") in ("", ":memory:"):
        # Every connection would see its own empty database.
        raise ImproperlyConfigured(f"{name}: an in-memory SQLite database is not supported; {_URL_HINT}")
    if engine == "django.db.backends.mysql" and not config.get("NAME"):
        # Not echoing the URL: it may carry the password.
        raise ImproperlyConfigured(f"{name}: the mysql:// URL names no database (mysql://user:pass@host:3306/NAME)")
    return config


def env_cache(name: str) -> dict:
    raw = env.str(name, default=None)
    if not raw:
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "dialectic"}
    try:
        return environ.Env.cache_url_config(raw)
    except Exception as exc:
        raise ImproperlyConfigured(f"{name} is not a cache URL ({exc}); example: redis://127.0.0.1:6379/0") from None


_RATE = re.compile(r"^\d+/(s|sec|second|m|min|minute|h|hour|d|day)$")


def env_rate(name: str, default: str) -> str:
    raw = env.str(name, default=default).strip()
    if not _RATE.match(raw):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a rate (examples: 120/minute, 10/second)")
    return raw
