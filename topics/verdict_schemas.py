"""Verdict schemas are code staff write and the server runs: what one may contain, and how a verdict is checked.

Two halves, one rule each (DESIGN.md, "Hostile input"):

- ``verdict_schema_problems`` is the check at save (the model field's
  validator, so the admin form, ``full_clean`` and anything else that saves a
  schema refuse the same things). Beyond being valid JSON Schema, a schema
  may only refer inside itself (``#`` plus a JSON pointer or an ``$anchor``),
  its references may not loop, its regular expressions must compile with
  RE2 (linear time: no backreferences, lookaround, atomic groups, possessive
  quantifiers), and it must stay small once its references are followed.
- ``verdict_problems`` checks a verdict with a jsonschema validator extended
  so that nothing it does can run away: every regular expression is matched
  by RE2 (never Python's backtracking ``re``), references are resolved from
  the document only (the registry's retrieve refuses every URI, so nothing
  is fetched, not even ``file://``), ``uniqueItems`` is hashed instead of
  compared pairwise, at most ``MAX_SCHEMA_ERRORS`` errors are produced, and a
  budget of time and regular-expression work stops the check with a 400
  rather than letting a request run on. Schemas stored before these rules
  (docs/security.md) are checked the same way, so they can be slow to refuse
  but never fetch, loop into a 500 or hang.

No ORM here: ``topics.models`` calls down into this module.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import re2
import referencing
import referencing.exceptions
import referencing.jsonschema
from jsonschema import _utils as jsonschema_utils
from jsonschema.exceptions import ValidationError as SchemaValidationError

from topics.outcomes import outcome_problem
from topics.validation import json_depth

logger = logging.getLogger("topics.verdict_schemas")

MAX_SCHEMA_ERRORS = 10
# jsonschema quotes the offending value; a 64 KiB string must not come back in every error.
MAX_MESSAGE_CHARS = 300
# Deeper than this and checking the schema against its metaschema could reach Python's recursion
# limit; a verdict is at most 32 levels deep, and a schema level per instance level is plenty.
MAX_SCHEMA_DEPTH = 64
# Subschemas once every $ref is followed (a reference graph that is a DAG can still double at
# each step: 30 levels of two refs to the next is a billion), and the longest chain of them.
MAX_EXPANDED_SUBSCHEMAS = 5_000
MAX_EXPANDED_DEPTH = 64
# A verdict check stops after this much CPU time of its thread: the answer (201 or 400) must come
# within a second. CPU rather than wall-clock time, so the same verdict gets the same answer
# however busy the machine is.
CHECK_SECONDS = 0.4
# RE2 is linear in the subject, times up to the pattern's program size (a pattern like
# [ab]*a[ab]{999}c keeps a thousand states alive: ~4 s on 64 KiB). Each match is charged
# program size x subject length in advance; 10 million such steps take ~0.35 s at worst.
REGEX_WORK_BUDGET = 10_000_000

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is a form error, not a line on stderr


class _CheckTooCostly(Exception):
    pass


@dataclass
class _Budget:
    deadline: float
    regex_work: int = REGEX_WORK_BUDGET

    def tick(self) -> None:
        if time.thread_time() > self.deadline:
            raise _CheckTooCostly(f"it took longer than {CHECK_SECONDS:g} s of CPU time")

    def spend(self, work: int) -> None:
        self.regex_work -= work
        if self.regex_work < 0:
            raise _CheckTooCostly("its strings are too long for the schema's regular expressions")


_budget: ContextVar[_Budget | None] = ContextVar("verdict_check_budget", default=None)


# --- regular expressions ---------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _compile(pattern: str) -> re2._Regexp:
    return re2.compile(pattern, options=_RE2_OPTIONS)


def regex_problem(pattern: str) -> str | None:
    """Why RE2 refuses ``pattern`` (it could not be matched in linear time), or None."""
    try:
        _compile(pattern)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        return reason
    return None


def _search(pattern: str, subject: str) -> bool:
    regex = _compile(pattern)
    budget = _budget.get()
    if budget is not None:
        budget.spend(regex.programsize * max(len(subject), 1))
    return regex.search(subject) is not None


# --- the keywords that use regular expressions or compare items, re-implemented -------------


def _pattern(validator, pattern, instance, schema) -> Iterator[SchemaValidationError]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield SchemaValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator, pattern_properties, instance, schema) -> Iterator[SchemaValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in pattern_properties.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_keys(instance: dict, schema: dict) -> list[str]:
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    return [key for key in instance if key not in properties and not any(_search(pattern, key) for pattern in patterns)]


def _additional_properties(validator, additional, instance, schema) -> Iterator[SchemaValidationError]:
    if not validator.is_type(instance, "object"):
        return
    extras = _additional_keys(instance, schema)
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        if "patternProperties" in schema:
            verb = "does" if len(extras) == 1 else "do"
            joined = ", ".join(repr(each) for each in sorted(extras))
            patterns = ", ".join(repr(each) for each in sorted(schema["patternProperties"]))
            yield SchemaValidationError(f"{joined} {verb} not match any of the regexes: {patterns}")
        else:
            listed, verb = jsonschema_utils.extras_msg(sorted(extras, key=str))
            yield SchemaValidationError(f"Additional properties are not allowed ({listed} {verb} unexpected)")


def _is_valid(errors: Iterator[SchemaValidationError]) -> bool:
    return next(errors, None) is None


def _evaluated_keys(validator, instance: dict, schema: Any) -> set[str]:
    """jsonschema's ``find_evaluated_property_keys_by_schema`` with RE2 for ``patternProperties``."""
    if validator.is_type(schema, "boolean"):
        return set()
    budget = _budget.get()
    if budget is not None:
        budget.tick()  # this helper recurses on its own, outside the keyword functions
    keys: set[str] = set()
    for keyword in ("$ref", "$dynamicRef"):
        if (reference := schema.get(keyword)) is not None:
            resolved = validator._resolver.lookup(reference)
            keys |= _evaluated_keys(
                validator.evolve(schema=resolved.contents, _resolver=resolved.resolver), instance, resolved.contents
            )
    properties = schema.get("properties")
    if validator.is_type(properties, "object"):
        keys |= properties.keys() & instance.keys()
    for keyword in ("additionalProperties", "unevaluatedProperties"):
        if (subschema := schema.get(keyword)) is not None:
            keys |= {key for key, value in instance.items() if _is_valid(validator.descend(value, subschema))}
    for pattern in schema.get("patternProperties", {}):
        keys |= {key for key in instance if _search(pattern, key)}
    for key, subschema in schema.get("dependentSchemas", {}).items():
        if key in instance:
            keys |= _evaluated_keys(validator, instance, subschema)
    for keyword in ("allOf", "oneOf", "anyOf"):
        for subschema in schema.get(keyword, []):
            if _is_valid(validator.descend(instance, subschema)):
                keys |= _evaluated_keys(validator, instance, subschema)
    if "if" in schema:
        if validator.evolve(schema=schema["if"]).is_valid(instance):
            keys |= _evaluated_keys(validator, instance, schema["if"])
            if "then" in schema:
                keys |= _evaluated_keys(validator, instance, schema["then"])
        elif "else" in schema:
            keys |= _evaluated_keys(validator, instance, schema["else"])
    return keys


def _unevaluated_properties(validator, unevaluated, instance, schema) -> Iterator[SchemaValidationError]:
    if not validator.is_type(instance, "object"):
        return
    evaluated = _evaluated_keys(validator, instance, schema)
    invalid = [
        key
        for key in instance
        if key not in evaluated
        and not _is_valid(validator.descend(instance[key], unevaluated, path=key, schema_path=key))
    ]
    if invalid:
        if unevaluated is False:
            listed, verb = jsonschema_utils.extras_msg(sorted(invalid, key=str))
            yield SchemaValidationError(f"Unevaluated properties are not allowed ({listed} {verb} unexpected)")
        else:
            listed, verb = jsonschema_utils.extras_msg(invalid)
            yield SchemaValidationError(
                f"Unevaluated properties are not valid under the given schema ({listed} {verb} unevaluated and invalid)"
            )


def _canonical(value: Any) -> Any:
    """A hashable stand-in equal exactly when JSON Schema calls two values equal (1 == 1.0, true != 1)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, list):
        return ("array", tuple(_canonical(item) for item in value))
    if isinstance(value, dict):
        return ("object", frozenset((key, _canonical(item)) for key, item in value.items()))
    return (type(value).__name__, value)


def _unique_items(validator, unique, instance, schema) -> Iterator[SchemaValidationError]:
    # jsonschema falls back to comparing every pair when items do not sort (objects, mixed
    # types): 30,000 objects would be 450 million comparisons. Hashing is linear.
    if not unique or not validator.is_type(instance, "array"):
        return
    seen: set[Any] = set()
    for item in instance:
        key = _canonical(item)
        if key in seen:
            yield SchemaValidationError(f"{_short(repr(instance))} has non-unique elements")
            return
        seen.add(key)


_OVERRIDES: dict[str, Callable] = {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
    "unevaluatedProperties": _unevaluated_properties,
    "uniqueItems": _unique_items,
}


def _on_the_clock(keyword: Callable) -> Callable:
    """The keyword, checking the budget first: every step of a check (``$ref`` included) passes here."""

    def checked(validator, value, instance, schema) -> Iterator[SchemaValidationError]:
        budget = _budget.get()
        if budget is not None:
            budget.tick()
        yield from keyword(validator, value, instance, schema)

    return checked


@functools.cache
def _safe_validator_class(base: type) -> type:
    keywords = {**base.VALIDATORS, **{k: v for k, v in _OVERRIDES.items() if k in base.VALIDATORS}}
    return jsonschema.validators.extend(base, {k: _on_the_clock(fn) for k, fn in keywords.items()})


def _refuse_retrieval(uri: str) -> referencing.Resource:
    # Never fetch anything (jsonschema's default would GET http(s) and even file:// URIs).
    raise referencing.exceptions.NoSuchResource(ref=uri)


# jsonschema adds its bundled metaschemas to a registry it is given, so those still resolve offline.
_REGISTRY: referencing.Registry = referencing.Registry(retrieve=_refuse_retrieval)


def _base_class(schema: dict) -> type:
    return jsonschema.validators.validator_for(schema, default=jsonschema.validators._LATEST_VERSION)


# --- checking a verdict ---------------------------------------------------------------------


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 1] + "…"


def _path(root: str, error: SchemaValidationError) -> str:
    return ".".join([root, *(str(part) for part in error.absolute_path)])


def verdict_problems(verdict: object, schema: dict, *, root: str = "verdict") -> list[str]:
    """Messages for the ways ``verdict`` violates ``schema``, each naming the failing path; [] when valid.

    ``verdict.scores.pro: 'high' is not of type 'number'``. At most
    ``MAX_SCHEMA_ERRORS``, sorted by path so the answer is stable. A check that
    runs out of budget, or a stored schema that cannot be followed (an outside
    reference, a loop), ends with a message saying so: never an exception.
    """
    validator = _safe_validator_class(_base_class(schema))(schema, registry=_REGISTRY)
    errors: list[SchemaValidationError] = []
    stopped: str | None = None
    token = _budget.set(_Budget(deadline=time.thread_time() + CHECK_SECONDS))
    try:
        for error in itertools.islice(validator.iter_errors(verdict), MAX_SCHEMA_ERRORS):
            errors.append(error)
    except _CheckTooCostly as exc:
        stopped = f"{root}: the check against the topic's verdict schema was stopped: {exc}."
    except referencing.exceptions.Unresolvable as exc:
        logger.warning("verdict schema refers outside itself: %s", exc)
        stopped = f"{root}: the topic's verdict schema refers outside itself ({exc}); it cannot be checked."
    except RecursionError:
        logger.warning("verdict schema loops")
        stopped = f"{root}: the topic's verdict schema refers to itself in a loop; it cannot be checked."
    finally:
        _budget.reset(token)
    errors.sort(key=lambda e: [str(p) for p in e.absolute_path])
    messages = [f"{_path(root, error)}: {_short(error.message)}" for error in errors]
    return [*messages, stopped] if stopped else messages


# --- checking a schema at save ----------------------------------------------------------------

_REFERENCE_KEYWORDS = ("$dynamicRef", "$recursiveRef")
# Where subschemas are kept for reference rather than applied: walked for their references and
# patterns, but not part of what validating an instance evaluates.
_DEFINITION_KEYWORDS = ("$defs", "definitions")


@dataclass
class _Node:
    """A subschema and the subschemas validating it goes on to: its applied children and its ``$ref`` target."""

    location: str
    edges: list[int] = field(default_factory=list)


def _children(specification, node: dict, location: str) -> Iterator[tuple[Any, str, bool]]:
    """Each direct subschema of ``node``: (subschema, readable path, whether validation applies it)."""
    children = {id(child) for child in specification.subresources_of(node)}
    for key, value in node.items():
        applied = key not in _DEFINITION_KEYWORDS
        if id(value) in children:
            yield value, f"{location}/{key}".lstrip("/"), applied
        elif isinstance(value, dict | list):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for name, item in items:
                if id(item) in children:
                    yield item, f"{location}/{key}/{name}".lstrip("/"), applied


def _node_problems(contents: dict, where: str, *, nested: bool, specification) -> list[str]:
    problems = []
    if nested and specification.id_of(contents) is not None:
        problems.append(f"{where}: a nested $id changes what '#' means; only the root may have one.")
    problems += [
        f"{where}: {keyword} is not allowed; use $ref to a '#…' location in this schema."
        for keyword in _REFERENCE_KEYWORDS
        if keyword in contents
    ]
    if isinstance(contents.get("pattern"), str) and (reason := regex_problem(contents["pattern"])):
        problems.append(f"{where}: pattern {_short(repr(contents['pattern']))} is refused by RE2 ({reason}).")
    for pattern in contents.get("patternProperties", {}):  # an object: check_schema saw to that
        if reason := regex_problem(pattern):
            problems.append(f"{where}: patternProperties {_short(repr(pattern))} is refused by RE2 ({reason}).")
    return problems


def _graph_problems(schema: dict, base: type) -> list[str]:
    """Outside references, regular expressions RE2 refuses, loops and size, found by walking every subschema."""
    specification = referencing.jsonschema.specification_with(base.META_SCHEMA["$schema"])
    resource = specification.create_resource(schema)
    resolver = referencing.Registry().with_resource(uri="", resource=resource).crawl().resolver(base_uri="")
    problems: list[str] = []
    nodes: dict[int, _Node] = {}
    pending: list[tuple[Any, str]] = [(schema, "")]
    while pending:
        contents, location = pending.pop()
        if id(contents) in nodes:
            continue
        node = nodes[id(contents)] = _Node(location or "(root)")
        if not isinstance(contents, dict):
            continue  # true / false
        problems += _node_problems(contents, node.location, nested=bool(location), specification=specification)
        reference = contents.get("$ref")
        if isinstance(reference, str) and not reference.startswith("#"):
            problems.append(f"{node.location}: $ref {reference!r} refers outside this schema; only '#…' is allowed.")
        elif isinstance(reference, str):
            try:
                target = resolver.lookup(reference).contents
            except referencing.exceptions.Unresolvable:
                problems.append(f"{node.location}: $ref {reference!r} points at nothing in this schema.")
            else:
                node.edges.append(id(target))
                pending.append((target, reference.removeprefix("#").lstrip("/")))
        for child, path, applied in _children(specification, contents, location):
            if applied:
                node.edges.append(id(child))
            pending.append((child, path))
    return problems or _shape_problems(nodes, id(schema))


def _shape_problems(nodes: dict[int, _Node], root: int) -> list[str]:
    """A loop anywhere, or a schema too large once its references are followed (iterative depth-first search)."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    # From the root first, then from definitions nothing applies: a loop is refused wherever it is.
    for start in [root, *nodes]:
        if start in size:
            continue
        on_path = {start}
        stack: list[tuple[int, Iterator[int]]] = [(start, iter(nodes[start].edges))]
        while stack:
            current, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                on_path.discard(current)
                edges = nodes[current].edges
                size[current] = min(1 + sum(size[c] for c in edges), MAX_EXPANDED_SUBSCHEMAS + 1)
                depth[current] = 1 + max((depth[c] for c in edges), default=0)
            elif child in on_path:
                return [f"{nodes[child].location}: $ref makes a loop; a verdict schema may not refer to itself."]
            elif child not in size:
                on_path.add(child)
                stack.append((child, iter(nodes[child].edges)))
    if size[root] > MAX_EXPANDED_SUBSCHEMAS:
        return [f"(root): over {MAX_EXPANDED_SUBSCHEMAS} subschemas once its $refs are followed; simplify it."]
    if depth[root] > MAX_EXPANDED_DEPTH:
        return [f"(root): {depth[root]} subschemas deep once its $refs are followed (at most {MAX_EXPANDED_DEPTH})."]
    return []


def verdict_schema_problems(schema: object) -> list[str]:
    """Every reason ``schema`` may not be a verdict schema; [] when it may. The one check at save."""
    if not isinstance(schema, dict):
        return ["A verdict schema must be a JSON object."]
    if json_depth(schema) > MAX_SCHEMA_DEPTH:
        return [f"Nested deeper than {MAX_SCHEMA_DEPTH} levels."]
    dialect = schema.get("$schema")
    if dialect is not None and (
        not isinstance(dialect, str) or jsonschema.validators.validator_for(schema, default=None) is None
    ):
        return [f"$schema {_short(repr(schema['$schema']))} is not a JSON Schema dialect this server knows."]
    base = _base_class(schema)
    try:
        base.check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = "/".join(str(p) for p in exc.path) or "(root)"
        return [f"Not a valid JSON Schema at {path}: {_short(exc.message)}"]
    problems = _graph_problems(schema, base)
    # The outcome keyword (x-outcome) names what ratings read; topics.outcomes says what it may point at.
    if not problems and (problem := outcome_problem(schema)):
        problems.append(problem)
    return problems
