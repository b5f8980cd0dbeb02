"""A verdict schema's outcome: the ``x-outcome`` keyword, checked and read. Pure: JSON documents in, no Django.

A schema that is *rated* names, with ``"x-outcome": "<JSON Pointer>"``
(RFC 6901), the field of a verdict that says who won: ``pro``, ``con`` or
``draw``. ``outcome_problem`` is what the schema check at save runs: the
pointer must be well formed and lead, through ``properties`` (and
same-document ``$ref``), to a field every valid verdict has (``required``
at each step) and whose values are constrained to the outcomes (``enum``,
``const``, or ``oneOf``/``anyOf`` of ``const``), at least ``pro`` and
``con``. So a verdict accepted against a rated schema always has an
outcome, and ``verdict_outcome`` reads it.

This module sits below ``topics.models`` (whose schema validator calls
it) in the import layers, and imports nothing of the project.
"""

from __future__ import annotations

from typing import Any

KEYWORD = "x-outcome"
OUTCOMES = ("pro", "con", "draw")
# Without both debaters' wins the rating would be rigged; a draw may be left out (judges must pick a side).
REQUIRED_OUTCOMES = frozenset({"pro", "con"})
# Same-document $ref hops followed while walking a schema: a cycle ends here instead of looping.
MAX_REF_HOPS = 32


def pointer_tokens(pointer: object) -> list[str] | None:
    """The reference tokens of an RFC 6901 pointer to a field (not the root), or None if it is not one."""
    if not isinstance(pointer, str) or not pointer.startswith("/"):
        return None
    tokens = []
    for raw in pointer[1:].split("/"):
        # "~" is only valid as "~0" (a tilde) or "~1" (a slash).
        if raw.replace("~0", "").replace("~1", "").count("~"):
            return None
        tokens.append(raw.replace("~1", "/").replace("~0", "~"))
    return tokens


def outcome_pointer(schema: object) -> str | None:
    """The schema's outcome pointer, or None when the schema is not rated."""
    if isinstance(schema, dict) and isinstance(schema.get(KEYWORD), str):
        return schema[KEYWORD]
    return None


def _resolve(root: dict, node: Any) -> Any:
    """``node`` with same-document ``$ref`` followed (at most MAX_REF_HOPS); None when one does not resolve."""
    for _ in range(MAX_REF_HOPS):
        if not (isinstance(node, dict) and isinstance(node.get("$ref"), str)):
            return node
        ref = node["$ref"]
        if ref == "#":
            node = root
            continue
        tokens = pointer_tokens(ref[1:]) if ref.startswith("#") else None
        if tokens is None:
            return None
        node = root
        for token in tokens:
            if not isinstance(node, dict) or token not in node:
                return None
            node = node[token]
    return None


def _allowed_values(field: dict) -> set[object] | None:
    """The values ``field`` allows, when it enumerates them (enum, const, oneOf/anyOf of consts)."""
    if "const" in field:
        return {field["const"]}
    if isinstance(field.get("enum"), list):
        return {v for v in field["enum"] if isinstance(v, str | int | float | bool) or v is None}
    for combinator in ("oneOf", "anyOf"):
        branches = field.get(combinator)
        if isinstance(branches, list) and branches and all(isinstance(b, dict) and "const" in b for b in branches):
            return {b["const"] for b in branches}
    return None


def outcome_problem(schema: object) -> str | None:
    """Why the schema's ``x-outcome`` is not usable, or None (also when there is none)."""
    if not isinstance(schema, dict) or KEYWORD not in schema:
        return None
    pointer = schema[KEYWORD]
    tokens = pointer_tokens(pointer)
    if tokens is None:
        return f'{KEYWORD} must be a JSON Pointer to a field, such as "/winner" (got {pointer!r}).'
    node: Any = schema
    walked = ""
    for token in tokens:
        node = _resolve(schema, node)
        properties = node.get("properties") if isinstance(node, dict) else None
        field = properties.get(token) if isinstance(properties, dict) else None
        walked += "/" + token.replace("~", "~0").replace("/", "~1")
        if field is None:
            return f"{KEYWORD} points at {walked}, which the schema does not define under properties."
        required = node.get("required")
        if not (isinstance(required, list) and token in required):
            return f"{KEYWORD} points at {walked}, which is not required: every verdict must have an outcome."
        node = field
    node = _resolve(schema, node)
    allowed = _allowed_values(node) if isinstance(node, dict) else None
    if allowed is None or not allowed <= set(OUTCOMES) or not allowed >= REQUIRED_OUTCOMES:
        return (
            f"{KEYWORD} points at {pointer}, which must be constrained to pro, con and optionally draw "
            '(e.g. {"enum": ["pro", "con", "draw"]}).'
        )
    return None


def verdict_outcome(schema: object, verdict: object) -> str | None:
    """``pro``, ``con`` or ``draw`` read from ``verdict`` at the schema's pointer; None for an unrated schema."""
    tokens = pointer_tokens(outcome_pointer(schema))
    if tokens is None:
        return None
    node = verdict
    for token in tokens:
        if not isinstance(node, dict) or token not in node:
            return None
        node = node[token]
    return node if node in OUTCOMES else None


def verdict_of_outcome(schema: object, outcome: str) -> dict | None:
    """The smallest verdict that says ``outcome`` at the schema's pointer (a panel's aggregate); None if unrated."""
    tokens = pointer_tokens(outcome_pointer(schema))
    if tokens is None:
        return None
    verdict: dict = {}
    node = verdict
    for token in tokens[:-1]:
        node = node.setdefault(token, {})
    node[tokens[-1]] = outcome
    return verdict
