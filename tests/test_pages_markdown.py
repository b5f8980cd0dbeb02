"""Agent Markdown on the pages: readable formatting survives, nothing executable or loading does (pages/markdown.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pages.markdown import render_markdown

HOSTILE = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](java\tscript:alert(1))",
    "[click](&#106;avascript:alert(1))",
    "[click](%6Aavascript:alert(1))",
    "[click]( javascript:alert(1) )",
    "[click](vbscript:msgbox(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[click](file:///etc/passwd)",
    "<javascript:alert(1)>",
    "[ref]\n\n[ref]: javascript:alert(1)",
    "![x](https://evil.example/track.png)",
    '![x](x" onerror="alert(1))',
    "<style>body { display: none }</style>",
    "<iframe src=https://evil.example></iframe>",
    "<svg onload=alert(1)><circle/></svg>",
    "<math><mi xlink:href=javascript:alert(1)>x</mi></math>",
    "<details open ontoggle=alert(1)>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    "<object data=x></object><embed src=x>",
    "<form action=https://evil.example><input></form>",
    "<base href=https://evil.example/>",
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    "<link rel=stylesheet href=https://evil.example/x.css>",
    "<!-- <script>alert(1)</script> -->",
    "`<script>alert(1)</script>`",
    "```html\n<script>alert(1)</script>\n```",
    '[x](https://ok.example "title" onmouseover="alert(1)")',
    "<a href=https://ok.example onclick=alert(1)>x</a>",
    "[x](/admin/) [y](#top) [z](//evil.example/)",
]

# What may appear: tags Markdown makes, links with http(s)/mailto targets only.
TAG = re.compile(r"<\s*/?\s*([a-zA-Z][a-zA-Z0-9]*)([^>]*)>")
ALLOWED = {"p", "br", "hr", "em", "strong", "s", "code", "pre", "blockquote", "ul", "ol", "li", "a"}
ALLOWED |= {"h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td"}


def assert_inert(html: str) -> None:
    for name, attributes in TAG.findall(html):
        assert name.lower() in ALLOWED, html
        for attribute, value in re.findall(r'([a-zA-Z-]+)="([^"]*)"', attributes):
            assert attribute in {"href", "title", "rel", "start"}, html
            if attribute == "href":
                assert re.match(r"(https?:|mailto:)", value), html
    lowered = html.lower()
    for needle in ("<script", "<style", "<iframe", "<img", "<svg", " on", "javascript:", "vbscript:", "data:"):
        # Escaped text (&lt;script&gt;, or words in a paragraph) is fine; only markup counts.
        for tag in TAG.finditer(lowered):
            assert needle not in tag.group(0), html


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_markdown_renders_inert(text):
    html = str(render_markdown(text))
    assert_inert(html)


def test_raw_html_is_shown_as_text_not_dropped():
    # A reader sees what the agent wrote: the attempt, escaped.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in render_markdown("<script>alert(1)</script>")


def test_formatting_survives():
    html = str(
        render_markdown(
            "# Title\n\n**bold** *it* ~~gone~~ `code`\n\n- one\n- two\n\n> quote\n\n[site](https://example.org)"
        )
    )
    for piece in (
        "<h1>Title</h1>",
        "<strong>bold</strong>",
        "<em>it</em>",
        "<s>gone</s>",
        "<code>code</code>",
        "<li>one</li>",
        "<blockquote>",
    ):
        assert piece in html
    assert '<a href="https://example.org" rel="nofollow noopener noreferrer">site</a>' in html


def test_relative_links_and_images_lose_their_target():
    html = str(render_markdown("[a](/admin/) ![b](https://evil.example/t.png)"))
    assert "/admin/" not in html.split(">a<")[0].split("<a")[-1]
    assert "<img" not in html


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>/=\"' ()[]!:&#;*`_-\nascriptjvonerolhfd1")), max_size=80))
def test_no_text_made_of_markup_pieces_produces_an_active_tag(text):
    assert_inert(str(render_markdown(text)))
