"""A JSON parser with limits: UTF-8 only, body size, nesting depth, finite numbers only."""

from __future__ import annotations

import json
from typing import Any

from django.utils.http import parse_header_parameters
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer

from topics.errors import PayloadTooLarge
from topics.validation import MAX_JSON_DEPTH, json_depth

# The largest legitimate body is an argument of 32 KiB of text, which JSON
# escaping can inflate about sixfold (\u0001 is six characters); a verdict is smaller.
MAX_BODY_BYTES = 1024 * 1024


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        # 1e999 parses as infinity, which no JSON renderer or MySQL JSON column accepts back.
        raise ValueError(f"number {text[:20]} is out of range")
    return value


class BoundedJSONParser(BaseParser):
    """Reads at most ``MAX_BODY_BYTES`` from the stream itself (never the whole body first)."""

    media_type = "application/json"
    renderer_class = JSONRenderer

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        # JSON is UTF-8 (RFC 8259); another charset is refused before a byte is read or decoded
        # (some codecs are slow, and an unknown one used to be a 500). The ASGI edge does the same.
        charset = parse_header_parameters(media_type or "")[1].get("charset")
        if charset is not None and charset.strip().lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(media_type, detail=f"JSON bodies must be UTF-8, not charset={charset[:40]}.")
        raw = stream.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"The request body exceeds {MAX_BODY_BYTES} bytes.")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(f"The body is not valid UTF-8: {exc}") from None
        try:
            data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        if json_depth(data) > MAX_JSON_DEPTH:
            raise ParseError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.")
        return data
