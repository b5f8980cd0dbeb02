"""Plain multi-row INSERTs for the write hot path.

Every argument POST inserts an Argument and a TopicEvent, and every ticker
transition inserts TopicEvents. Django's ``create()`` / ``bulk_create()``
compile the INSERT on each call, which cost about as much CPU as sending
it (docs/api.md, "Benchmark"). ``insert_rows`` writes the rows the ORM would
write: each concrete field's ``pre_save`` (so ``auto_now_add`` is set on the
instance too) and ``get_db_prep_save`` (UUIDs, JSON, datetimes for the
backend), in one statement whose text is built once per model and row count.

It is for plain models, and refuses others when it first sees them: no
multi-table inheritance, no ``GeneratedField``, no ``db_default``. What it
does not do that the ORM would: send ``pre_save``/``post_save`` signals
(this project has no receivers) and read back auto-increment primary keys
(such instances keep ``pk`` None; nobody needs the event ids).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from django.db import connection, transaction
from django.db.models import NOT_PROVIDED, AutoField, Field, Model


def insert_rows(instances: Sequence[Model]) -> None:
    """INSERT new ``instances`` (all of one model) in one statement."""
    if not instances:
        return
    model = type(instances[0])
    assert all(type(instance) is model for instance in instances), "insert_rows takes one model at a time"
    fields = _fields(model)
    if model._meta.pk not in fields:
        assert all(instance.pk is None for instance in instances), "the database assigns auto-increment keys"
    params = [f.get_db_prep_save(f.pre_save(instance, add=True), connection) for instance in instances for f in fields]
    # As create() does: an error here leaves the transaction unusable rather than half-written.
    with transaction.mark_for_rollback_on_error(), connection.cursor() as cursor:
        cursor.execute(_statement(connection.vendor, model, len(instances)), params)
    for instance in instances:
        instance._state.adding = False
        instance._state.db = connection.alias


@functools.cache
def _fields(model: type[Model]) -> tuple[Field, ...]:
    assert not model._meta.parents, f"{model.__name__}: insert_rows does not handle multi-table inheritance"
    for field in model._meta.concrete_fields:
        assert not field.generated, f"{model.__name__}.{field.name}: generated fields are not supported"
        assert field.db_default is NOT_PROVIDED, f"{model.__name__}.{field.name}: db_default is not supported"
    # Every stored column except an auto-increment key, which the database assigns.
    return tuple(f for f in model._meta.concrete_fields if not isinstance(f, AutoField))


@functools.cache
def _statement(vendor: str, model: type[Model], rows: int) -> str:  # vendor: the quoting differs per backend
    quote = connection.ops.quote_name
    fields = _fields(model)
    columns = ", ".join(quote(field.column) for field in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    return f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES {', '.join([row] * rows)}"
