"""The database from the stream's worker threads: connection lifetimes, and statements counted.

The stream's reads run on threads that outlive any request, so Django's
per-request connection handling never closes their connections; these
wrappers do. ``DbCounter`` counts what the stream asks of the database
(``/api/_stream/stats/``, read by ``make bench-sse``).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.db import close_old_connections, connection

T = TypeVar("T")


@dataclass
class DbCounter:
    """What the stream machinery asks of the database: statements per read, and new connections."""

    poll: int = 0
    backlog: int = 0
    access: int = 0  # token re-checks (the agent stream)
    connects: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, kind: str) -> None:
        with self._lock:
            setattr(self, kind, getattr(self, kind) + 1)

    def counted(self, fn: Callable[..., T], kind: str) -> Callable[..., T]:
        """``fn`` with its statements counted as ``kind`` (a new connection's setup statements included)."""

        def count_statement(execute, sql, params, many, context):
            self.add(kind)
            return execute(sql, params, many, context)

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> T:
            connected = connection.connection is not None
            try:
                with connection.execute_wrapper(count_statement):
                    return fn(*args, **kwargs)
            finally:
                if not connected and connection.connection is not None:
                    self.add("connects")

        return call


def tidy_connections(fn: Callable[..., T]) -> Callable[..., T]:
    """Wrap ``fn`` for a shared worker thread: stale connections dropped before, closed (per CONN_MAX_AGE) after.

    The threads outlive any request, so nothing else would ever close their connections.
    """

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> T:
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return call


def keep_connection(fn: Callable[..., T]) -> Callable[..., T]:
    """Wrap ``fn`` for the poller's own thread: one connection kept between polls, renewed after an error.

    With the default CONN_MAX_AGE=0, closing after every poll would mean a
    new connection (and its setup statements) twice a second, per process.
    """

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except Exception:
            connection.close()
            raise

    return call


def close_connection() -> None:
    connection.close()
