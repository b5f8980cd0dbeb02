"""Every hand-written SQL statement of the project, each next to a test of its ORM twin.

The code speaks the ORM everywhere else. These few fixed statements run on
every authenticated request or every write to a topic, where the ORM took
longer to *compile* the query than the database took to run it
(docs/architecture.md, "Hand-written SQL", has the figures). The rules that
keep them as safe as the ORM:

- Table names come from the models' ``_meta`` and go through
  ``connection.ops.quote_name``; the column names written out here are the
  models' own (a rename fails ``tests/test_sql.py`` on both backends).
- Every value is a query parameter, prepared by its model field
  (``get_db_prep_value``) so it is compared exactly as the ORM would.
- Reads go through ``Model.objects.raw(..., using=connection.alias)``, which
  converts columns as the ORM would and stays on the write connection inside
  the caller's transaction. Writes are wrapped in
  ``transaction.mark_for_rollback_on_error``, as the ORM's are.
- Each statement's text is built once per backend (``_text``).

``tests/test_sql.py`` runs each function against the ORM query it replaces,
on SQLite and on MariaDB. Anything new starts with the ORM; a statement
joins this module only with a measurement that shows the ORM's cost.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import connection, transaction

from topics.models import Agent, AgentToken, Argument, Camp, CampName, RatingLedger, Round, Topic


def _quote(model: type) -> str:
    return connection.ops.quote_name(model._meta.db_table)


@functools.cache
def _text(vendor: str, build: Callable[..., str], *args: Any) -> str:  # vendor: the quoting differs per backend
    return build(*args)


def _pk(model: type, value: Any) -> Any:
    return model._meta.pk.get_db_prep_value(value, connection)


# --- the topic row lock: every write to a topic starts here -------------------------------------


def _lock_text() -> str:
    # No join: MySQL would lock the joined rows too (the shared verdict schema).
    sql = f"SELECT * FROM {_quote(Topic)} WHERE id = %s"
    return sql + " FOR UPDATE" if connection.features.has_select_for_update else sql


def topic_select_for_update(topic_id: Any) -> Topic | None:
    """``Topic.objects.select_for_update().filter(pk=topic_id).first()`` without the ORDER BY ``first()`` adds.

    On SQLite row locks do not exist; the caller's IMMEDIATE transaction holds the database's write lock instead.
    """
    rows = Topic.objects.raw(_text(connection.vendor, _lock_text), [_pk(Topic, topic_id)], using=connection.alias)
    return next(iter(rows), None)


# --- the conditional UPDATE behind the lock: the single writer of status and event_seq ---------


def _update_text(fields: tuple[str, ...]) -> str:
    assignments = ", ".join(f"{connection.ops.quote_name(field)} = %s" for field in fields)
    return f"UPDATE {_quote(Topic)} SET {assignments} WHERE id = %s AND status = %s AND event_seq = %s"


def topic_update_if_unchanged(topic: Topic, updates: dict[str, int | str]) -> int:
    """``Topic.objects.filter(pk=, status=, event_seq=).update(**updates)`` for the topic as it was read.

    Returns the rows matched (Django asks MySQL for found rows, not changed
    ones): 1, or 0 when another writer got there first. The values are ints
    and strings, which every backend takes as they are.
    """
    params = [*updates.values(), _pk(Topic, topic.pk), topic.status, topic.event_seq]
    with transaction.mark_for_rollback_on_error(), connection.cursor() as cursor:
        cursor.execute(_text(connection.vendor, _update_text, tuple(updates)), params)
        return cursor.rowcount


# --- the open round of an argument POST ----------------------------------------------------------


def _open_round_text(counted: bool) -> str:
    rounds, camps, arguments = _quote(Round), _quote(Camp), _quote(Argument)
    counts = "".join(
        f", (SELECT COUNT(*) FROM {arguments} a WHERE a.round_id = r.id AND a.camp = '{camp}') AS {camp}_posted"
        for camp in (CampName.PRO, CampName.CON)
        if counted
    )
    return (
        f"SELECT r.*, (SELECT c.camp FROM {camps} c WHERE c.topic_id = r.topic_id AND c.agent_id = %s LIMIT 1)"
        f" AS caller_camp{counts} FROM {rounds} r WHERE r.topic_id = %s AND r.closed_at IS NULL"
        " ORDER BY r.round_no DESC LIMIT 1"
    )


def round_open_with_caller_camp(topic: Topic, *, agent: Agent, counted: bool) -> Round | None:
    """The topic's open round, annotated with ``caller_camp`` (``agent``'s camp or None) and, when
    ``counted``, ``pro_posted`` / ``con_posted`` (each camp's arguments in it). One query instead of three.

    Counting is only asked for when the topic has a per-round limit, since it grows with the round.
    """
    params = [_pk(Agent, agent.pk), _pk(Topic, topic.pk)]
    sql = _text(connection.vendor, _open_round_text, counted)
    return next(iter(Round.objects.raw(sql, params, using=connection.alias)), None)


# --- the bearer token and its agent: every authenticated request -----------------------------

# The token's columns on the agent row the lookup returns.
TOKEN_COLUMNS = ("token_id", "token_digest", "token_live", "token_use_due")


def _token_text() -> str:
    return (
        "SELECT a.*, t.id AS token_id, t.digest AS token_digest, t.revoked_at IS NULL AS token_live,"
        " (t.last_used_at IS NULL OR t.last_used_at < %s) AS token_use_due"
        f" FROM {_quote(AgentToken)} t INNER JOIN {_quote(Agent)} a ON a.id = t.agent_id WHERE t.prefix = %s"
    )


def agent_with_token(prefix: str, *, used_before: datetime) -> Agent | None:
    """The agent of the token with ``prefix``, carrying the token's columns (``TOKEN_COLUMNS``), or None.

    ``token_use_due`` says whether the token's ``last_used_at`` is unset or
    before ``used_before``, decided in SQL so the comparison is the database's.
    """
    params = [connection.ops.adapt_datetimefield_value(used_before), prefix]
    rows = Agent.objects.raw(_text(connection.vendor, _token_text), params, using=connection.alias)
    return next(iter(rows), None)


# --- the ratings ledger in share mode: every rated completion ------------------------------------


def _ledger_share_text() -> str:
    sql = f"SELECT id FROM {_quote(RatingLedger)} WHERE id = %s"
    if not connection.features.has_select_for_update:
        return sql
    # The ORM locks only exclusively (select_for_update); MariaDB spells the shared lock this way.
    return sql + (" LOCK IN SHARE MODE" if connection.vendor == "mysql" else " FOR SHARE")


def rating_ledger_share() -> bool:
    """``RatingLedger.objects.filter(pk=1).exists()``, holding the row in share mode until commit.

    Completions hold it together; ``select_for_update()`` on the row (the
    rebuild) waits for all of them and keeps new ones out. True when the row exists.
    """
    with connection.cursor() as cursor:
        cursor.execute(_text(connection.vendor, _ledger_share_text), [1])
        return cursor.fetchone() is not None


# --- the streams' poll: new events after every watched key's cursor ------------------------------


def _events_after_text(model: type, key: str, keys: int, limit: int) -> str:
    column = connection.ops.quote_name(model._meta.get_field(key).column)
    ranges = " OR ".join([f"({column} = %s AND seq > %s)"] * keys)
    order = f"ORDER BY {column}, seq LIMIT {limit:d}"
    return f"SELECT id, {column}, seq, kind, data FROM {_quote(model)} WHERE {ranges} {order}"


def events_after(
    model: type, key: str, cursors: list[tuple[Any, int]], *, limit: int
) -> list[tuple[Any, int, str, Any]]:
    """``model.objects.filter(Q(key=k, seq__gt=n) | …).order_by(key, "seq").values_list(key, "seq", "kind",
    "data")[:limit]`` for ``cursors``' (k, n) pairs, with the values converted as the ORM converts them.

    The streams' poller runs it every interval for every watched topic or
    agent: for 1,000 cursors the ORM spent 64 ms of CPU building and
    compiling the ``Q`` tree, where this takes 5 ms (``bench/profile_poll.py``,
    docs/sse.md, "The poll"). Each text is built once per key count (at most
    ``event_feed.TOPICS_PER_QUERY``) and limit.
    """
    field = model._meta.get_field(key)
    params: list[Any] = []
    for value, seq in cursors:
        params += [field.get_db_prep_value(value, connection), seq]
    text = _text(connection.vendor, _events_after_text, model, key, len(cursors), limit)
    rows = model._default_manager.raw(text, params, using=connection.alias)
    return [(getattr(row, field.attname), row.seq, row.kind, row.data) for row in rows]
