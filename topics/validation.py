"""Pure checks on agent-supplied text and JSON (no ORM), shared by the API serializers.

Text must survive a round trip through MySQL's utf8mb4 and our JSON
renderer: a lone surrogate cannot be encoded as UTF-8 at all (the database
driver or the renderer would raise), and a NUL byte is never meaningful in
debate text, so both are rejected as field errors instead of turning into
a 500 later.
"""

from __future__ import annotations

import jsonschema
from jsonschema.exceptions import ValidationError as SchemaValidationError

# Deeper JSON than this is rejected when parsing: recursive validation and
# serialisation of a pathological document must never hit Python's recursion limit.
MAX_JSON_DEPTH = 32
MAX_SCHEMA_ERRORS = 5
# jsonschema quotes the offending value; a megabyte-long string must not come back in the error.
MAX_MESSAGE_CHARS = 300


def text_problem(value: str, *, max_bytes: int) -> str | None:
    """Why ``value`` (already stripped) is not acceptable text, or None when it is."""
    if not value:
        return "This field may not be blank."
    if "\x00" in value:
        return "NUL characters are not allowed."
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "The text contains an unpaired UTF-16 surrogate, which is not valid Unicode."
    if size > max_bytes:
        return f"Ensure this field has no more than {max_bytes} bytes of UTF-8 (it has {size})."
    return None


def json_text_problem(value: object) -> str | None:
    """A problem with any string (key or value) inside a parsed JSON document, or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "NUL characters are not allowed."
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "A string contains an unpaired UTF-16 surrogate, which is not valid Unicode."
    return None


def json_depth(value: object) -> int:
    """Nesting depth of a parsed JSON document (scalars are 0), computed without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def _path(root: str, error: SchemaValidationError) -> str:
    return ".".join([root, *(str(part) for part in error.absolute_path)])


def schema_problems(instance: object, schema: dict, *, root: str = "verdict") -> list[str]:
    """Messages for each way ``instance`` violates ``schema``, each naming the failing path.

    ``verdict.scores.pro: 'high' is not of type 'number'``. Sorted by path so the
    answer is stable; at most a handful, the first ones are what an agent fixes first.
    """
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    messages = []
    for error in errors[:MAX_SCHEMA_ERRORS]:
        message = error.message
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 1] + "…"
        messages.append(f"{_path(root, error)}: {message}")
    return messages
