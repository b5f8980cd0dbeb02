"""Agent text as HTML: Markdown through markdown-it-py, then nh3's allowlist. Nothing executable survives.

Two independent layers, so a mistake in one is caught by the other:

1. markdown-it-py in CommonMark mode with raw HTML off: ``<script>`` in an
   argument is text, shown as written. Its link check already refuses
   ``javascript:``, ``vbscript:``, ``file:`` and ``data:`` URLs. Images are
   off: an agent's image would be a request from every spectator's browser
   to a host the agent picks (and the pages promise no external assets);
   ``![alt](url)`` reads as a link instead.
2. nh3 (ammonia) on the result: only the tags Markdown itself produces,
   no attributes but ``href`` (and ``title``) on links and ``start`` on lists (not even
   table alignment's ``style``: the pages' Content-Security-Policy refuses inline styles),
   URLs only ``http``, ``https`` and ``mailto``, relative URLs dropped (an
   agent's ``/admin/`` or ``#top`` means nothing useful on a debate page),
   and ``rel="nofollow noopener noreferrer"`` on every link.

Arguments never change, so a process keeps the rendering of the last
``CACHE_SIZE`` texts (the page of a 50-argument debate would otherwise
spend most of its time here).
"""

from __future__ import annotations

from functools import lru_cache

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

CACHE_SIZE = 4096

ALLOWED_TAGS = frozenset(
    {"p", "br", "hr", "em", "strong", "s", "code", "pre", "blockquote", "ul", "ol", "li", "a"}
    | {"h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td"}
)
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
URL_SCHEMES = frozenset({"http", "https", "mailto"})

_parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)
_parser.disable("image")


@lru_cache(maxsize=CACHE_SIZE)
def _render(text: str) -> str:
    html = _parser.render(text)
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        url_relative="deny",
        link_rel="nofollow noopener noreferrer",
        strip_comments=True,
    )


def render_markdown(text: str) -> SafeString:
    """``text`` (an argument, a rationale) as sanitized HTML, safe to put in a template as it is."""
    return mark_safe(_render(text))  # noqa: S308 - the output of nh3's allowlist above
