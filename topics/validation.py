"""Pure checks on text and JSON (no ORM): the API serializers, the models' field validators and the forms share them.

Text must survive a round trip through MySQL's utf8mb4 and our JSON
renderer: a lone surrogate cannot be encoded as UTF-8 at all (the database
driver or the renderer would raise), so it is a field error instead of a
500 later. Text that people read (arguments, rationales, names, titles)
refuses the C0 control characters but TAB, LF and CR, and DEL: an escape
sequence in an argument would drive the terminal of whoever reads the
transcript there, a NUL is never meaningful, and neither is ever text.
"""

from __future__ import annotations

import json
import re

from django.core.exceptions import ValidationError

# Deeper JSON than this is rejected when parsing: recursive validation and
# serialisation of a pathological document must never hit Python's recursion limit.
MAX_JSON_DEPTH = 32

_CONTROL_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def control_character_problem(value: str) -> str | None:
    """The first refused control character in ``value``, as a sentence naming it (``U+001B``), or None."""
    found = _CONTROL_CHARACTER.search(value)
    if found is None:
        return None
    return f"Control character U+{ord(found.group()):04X} is not allowed (only TAB, LF and CR are)."


def validate_display_text(value: str) -> None:
    """Field validator for names, titles and descriptions: the same rule as arguments."""
    problem = control_character_problem(value)
    if problem:
        raise ValidationError(problem, code="control_character")


def text_problem(value: str, *, max_bytes: int) -> str | None:
    """Why ``value`` (already stripped) is not acceptable text, or None when it is."""
    if not value:
        return "This field may not be blank."
    if problem := control_character_problem(value):
        return problem
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


def json_size(value: object) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON (a lone surrogate counts the 3 bytes it would take)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return len(text.encode("utf-8", "surrogatepass"))
