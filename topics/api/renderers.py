"""JSON rendering that cannot fail on text the client sent."""

from __future__ import annotations

from typing import Any

from rest_framework.renderers import JSONRenderer


class SafeJSONRenderer(JSONRenderer):
    """Readable UTF-8 output, falling back to ASCII escapes when a string is not valid Unicode.

    Stored data never holds a lone surrogate (input validation rejects it),
    but an error message may quote the rejected input back; UTF-8 cannot
    encode that and DRF's renderer would raise, turning a 400 into a 500.
    """

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            # DRF makes renderer instances per request, so this does not leak into other responses.
            self.ensure_ascii = True
            return super().render(data, accepted_media_type, renderer_context)
