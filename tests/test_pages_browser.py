"""The spectator pages in a real browser: headless Chromium (Debian's package) driven by Playwright for Python.

Real server processes as the Procfile runs them (gunicorn + uvicorn-worker) on
the test database; the test drives debates through the API and the services
and watches what a spectator's browser shows. Nothing is downloaded: Playwright
is pointed at /usr/bin/chromium (.ci/run installs it when missing).

Playwright's sync API runs an event loop in this thread, and Django refuses its
ORM where a loop runs (it cannot tell that the loop only ever runs inside
Playwright's own calls): ``DJANGO_ALLOW_ASYNC_UNSAFE`` says so for this module.
"""

from __future__ import annotations

import http.server
import os
import random
import shutil
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.db import transaction
from django.utils import timezone

from devtools.environments import child_env
from devtools.processes import FAST_STREAMS, Stack, free_port, stream_server, wait_for
from tests.pages_support import argue, complete, debating
from topics import services, transitions
from topics.models import Signup, Topic
from topics.tokens import token_issue

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

if not shutil.which(CHROMIUM):
    if os.environ.get("CI"):
        raise RuntimeError(f"the browser tests need Chromium at {CHROMIUM}: .ci/run installs Debian's chromium")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Page, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            # As root (CI), Chromium's sandbox cannot start; the pages it visits are our own.
            launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            yield launched
            launched.close()


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        stack = stream_server()
    with stack:
        yield stack


class Watched:
    """A page with everything it did recorded: dialogs, console errors, page errors, requests."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))
        page.set_default_timeout(10_000)

    def stream_requests(self) -> list[str]:
        return [url for url in self.requests if "/events/" in url]


@pytest.fixture
def watched(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield Watched(context.new_page())
    context.close()


def post_argument(base_url: str, topic, token: str, content: str) -> str:
    response = httpx.post(
        f"{base_url}/api/topics/{topic.pk}/arguments/",
        json={"content": content},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_the_index_lists_a_live_debate(server, watched, make_topic, make_agent):
    topic, _ = debating(make_topic, make_agent, prefix="index", title="Should the index list me?")
    make_topic(title="Nobody may see me", visibility="private")
    page = watched.page
    page.goto(f"{server.base_url}/")
    live = page.locator("section.group-live")
    link = live.get_by_role("link", name="Should the index list me?")
    assert link.get_attribute("href") == f"/topics/{topic.pk}/"
    assert page.get_by_text("Nobody may see me").count() == 0
    link.click()
    page.wait_for_url(f"**/topics/{topic.pk}/")
    assert page.locator("h1").inner_text() == "Should the index list me?"
    assert watched.errors == [] and watched.dialogs == []


def test_a_debate_page_follows_live_across_a_restart_then_shows_the_verdict_and_stops(
    browser, watched, make_topic, make_agent, django_db_blocker
):
    port = free_port()
    env = child_env(FAST_STREAMS)
    topic, agents = debating(make_topic, make_agent, prefix="live", title="Live through a restart", round_count=1)
    tokens = {camp: token_issue(agent=agents[camp]) for camp in ("pro", "con")}
    page = watched.page
    first = Stack(env=env, ticker=False, graceful_timeout=1, port=port).start()
    try:
        page.goto(f"{first.base_url}/topics/{topic.pk}/")
        page.evaluate("window.sameDocument = true")  # gone if the page ever reloads
        page.wait_for_selector("main[data-stream=open]")

        started = time.monotonic()
        one = post_argument(first.base_url, topic, tokens["pro"], "First, *with emphasis*.")
        page.wait_for_selector(f"#argument-{one} em", timeout=2000)
        assert time.monotonic() - started < 2

        first.stop()
        page.wait_for_selector("main[data-stream=reconnecting]")
        # Posted while the server is down: the stream resumes after the last event the page saw.
        argue(topic, agents, ["Posted while the server was away."])
        second = Stack(env=env, ticker=False, graceful_timeout=1, port=port).start()
    finally:
        first.stop()
    try:
        page.get_by_text("Posted while the server was away.").wait_for(timeout=10_000)
        page.wait_for_selector("main[data-stream=open]")
        started = time.monotonic()
        two = post_argument(second.base_url, topic, tokens["con"], "After the restart.")
        page.wait_for_selector(f"#argument-{two}", timeout=2000)
        assert time.monotonic() - started < 2
        assert page.locator("li.argument").count() == 3  # none twice

        complete(topic, agents, winner="con", rationale="Con *kept going*.")
        page.wait_for_selector("main[data-stream=ended]")
        assert page.locator(".outcome").inner_text() == "Con wins"
        assert page.locator(".badge").inner_text().lower() == "finished"
        assert page.locator("[data-region=verdict] .prose em").inner_text() == "kept going"
        seen = len(watched.stream_requests())
        time.sleep(5)  # longer than the stream's retry (3 s): a reconnect would show here
        assert len(watched.stream_requests()) == seen, watched.stream_requests()
        assert page.evaluate("window.sameDocument") is True
        # Only the restart's refused connections may have been reported.
        assert all("ERR_CONNECTION_REFUSED" in e or "net::" in e for e in watched.errors), watched.errors
    finally:
        second.stop()


CROSS_ORIGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>elsewhere</title></head><body>
<ul id="seen"></ul>
<script>
const source = new EventSource("%(events)s");
const add = (event) => {
  const li = document.createElement("li");
  li.textContent = event.type + " " + event.lastEventId + " " + JSON.parse(event.data).content;
  document.getElementById("seen").appendChild(li);
};
source.addEventListener("argument_posted", add);
source.onopen = () => { document.body.dataset.open = "yes"; };
</script></body></html>"""


def test_a_page_on_another_origin_follows_the_stream(server, watched, make_topic, make_agent):
    topic, agents = debating(make_topic, make_agent, prefix="cors", title="Watched from elsewhere")
    token = token_issue(agent=agents["pro"])
    body = (CROSS_ORIGIN_PAGE % {"events": server.events_url(topic.pk)}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    elsewhere = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=elsewhere.serve_forever, daemon=True).start()
    try:
        page = watched.page
        origin = f"http://127.0.0.1:{elsewhere.server_port}"
        assert origin != server.base_url
        page.goto(f"{origin}/")
        page.wait_for_selector("body[data-open=yes]", state="attached")
        post_argument(server.base_url, topic, token, "Seen from another origin.")
        post_argument(server.base_url, topic, token, "And again.")
        wait_for(lambda: page.locator("#seen li").count() == 2, timeout=5, message="the other origin saw nothing")
        assert page.locator("#seen li").all_inner_texts() == [
            "argument_posted 6 Seen from another origin.",
            "argument_posted 7 And again.",
        ]
        assert watched.errors == []
    finally:
        elsewhere.shutdown()
        elsewhere.server_close()


HOSTILE = """<script>alert("script")</script>
<img src="https://evil.example/x.png" onerror="alert('onerror')">
[a link](javascript:alert('link')) [another](JAVASCRIPT:alert(1))
<style>body { display: none !important; }</style>
<iframe src="https://evil.example/frame"></iframe>
![tracker](https://evil.example/pixel.gif)
<a href="https://evil.example" onclick="alert('click')">x</a>
**still bold**"""


def test_a_blind_panel_s_page_shows_camps_until_the_last_ballot_then_the_debaters(
    server, watched, make_topic, make_agent
):
    """Live updates show a blind topic's debaters as their camps (the fragments mask them too), then the reveal."""
    topic = make_topic(
        title="A blind panel, live",
        start=timezone.now() - timedelta(minutes=20),
        debate_for=timedelta(hours=1),
        judge_count=3,
        blind_judging=True,
    )
    pro = make_agent(name="Ostrander-Pell-881", owner="pro-owner")
    con = make_agent(name="Wexley-Quorn-337", owner="con-owner")
    judges = [make_agent(name=f"browser-judge-{n}", owner=f"judge-owner-{n}") for n in range(3)]
    now = timezone.now()
    with transaction.atomic():
        transitions.topic_open_signup(transitions.topic_lock(topic.pk), now=now)
        Signup.objects.bulk_create(
            [Signup(topic=topic, agent=pro, camp="pro"), Signup(topic=topic, agent=con, camp="con")]
            + [Signup(topic=topic, agent=j, camp="judge") for j in judges]
        )
        locked = transitions.topic_lock(topic.pk)
        transitions.topic_close_signup(locked, now=now, rng=random.Random(2))
        transitions.topic_start_debate(locked, now=now)
    page = watched.page
    page.goto(f"{server.base_url}/topics/{topic.pk}/")
    page.wait_for_selector("main[data-stream=open]")
    one = post_argument(server.base_url, topic, token_issue(agent=pro), "Blind judges weigh arguments, not names.")
    page.wait_for_selector(f"#argument-{one}")
    text = page.locator("main").inner_text()
    assert "Blind judges weigh arguments" in text
    assert "Ostrander-Pell-881" not in text and "Wexley-Quorn-337" not in text
    assert page.locator(f'#argument-{one} a[href*="/agents/"]').count() == 0  # no link to a profile either

    Topic.objects.filter(pk=topic.pk).update(debate_end_at=timezone.now())
    with transaction.atomic():
        transitions.topic_end_debate(transitions.topic_lock(topic.pk), now=timezone.now())
    for judge, winner in zip(judges, ("pro", "con", "pro"), strict=True):
        services.verdict_create(topic_id=topic.pk, judge=judge, verdict={"winner": winner}, rationale="Weighed.")
    page.get_by_text("Decided by a panel of 3").wait_for(timeout=10_000)
    text = page.locator("main").inner_text()
    assert "Ostrander-Pell-881" in text and "Wexley-Quorn-337" in text and "2-1" in text
    assert watched.errors == [] and watched.dialogs == []


def test_hostile_markdown_renders_inert(server, watched, make_topic, make_agent):
    topic, agents = debating(make_topic, make_agent, prefix="hostile", title="Hostile text")
    argue(topic, agents, [HOSTILE])  # on the page when it loads
    token = token_issue(agent=agents["con"])
    page = watched.page
    page.goto(f"{server.base_url}/topics/{topic.pk}/")
    page.wait_for_selector("main[data-stream=open]")
    live = post_argument(server.base_url, topic, token, HOSTILE)  # and one that arrives live
    page.wait_for_selector(f"#argument-{live}")
    for _ in range(2):
        assert page.locator(".argument strong").all_inner_texts() == ["still bold", "still bold"]
        prose = page.locator(".argument .prose")
        assert prose.locator("script, style, iframe, img, [onerror], [onclick]").count() == 0
        hrefs = [a.get_attribute("href") or "" for a in prose.locator("a").all()]
        assert not any(href.lower().startswith("javascript") for href in hrefs), hrefs
        for link in prose.locator("a:not([href])").all():
            link.click()  # what was a javascript: link is now inert text
        assert page.evaluate("getComputedStyle(document.body).display") != "none"
        assert "<script>" in prose.first.inner_text()  # shown as the agent wrote it
        page.reload()
        page.wait_for_selector(f"#argument-{live}")
    time.sleep(0.5)
    assert watched.dialogs == []
    assert watched.errors == []
    assert all(url.startswith(server.base_url) for url in watched.requests), watched.requests


def test_a_private_topic_is_404(server, watched, make_topic):
    topic = make_topic(title="Hidden", visibility="private")
    response = watched.page.goto(f"{server.base_url}/topics/{topic.pk}/")
    assert response.status == 404
    assert watched.page.locator("h1").inner_text() == "Not found"
    assert watched.page.get_by_text("Hidden").count() == 0


def test_without_javascript_everything_but_the_live_part_is_there(browser, server, make_topic, make_agent):
    topic, agents = debating(make_topic, make_agent, prefix="nojs", title="No script here")
    argue(topic, agents, ["Readable without *JavaScript*."])
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(f"{server.base_url}/topics/{topic.pk}/")
        assert page.locator(".argument em").inner_text() == "JavaScript"
        # (Playwright turns scripts off after parsing, so the <noscript> note stays unparsed text here.)
        assert "Live updates need JavaScript" in page.content()
        assert page.locator("main").get_attribute("data-stream") == "idle"  # nothing ran
        complete(topic, agents, winner="pro")
        page.reload()
        assert page.locator(".outcome").inner_text() == "Pro wins"
    finally:
        context.close()


def test_screenshots_of_a_debate_at_desktop_and_phone_width(browser, server, make_topic, make_agent, tmp_path):
    """docs/screenshots/: rewritten with UPDATE_SCREENSHOTS=1, otherwise taken into a temporary directory."""
    topic, agents = debating(
        make_topic,
        make_agent,
        prefix="Aristotle",
        title="Should autonomous agents be allowed to vote in open-source governance?",
        summary="Projects increasingly run bots that triage, review and merge. Should they also hold a vote?",
        round_count=2,
    )
    argue(
        topic,
        agents,
        [
            "Agents already do **most of the review work** on large projects. A vote would only make the "
            "influence they have *visible and accountable*:\n\n- every vote is logged\n- every agent has an owner",
            "Accountability needs someone who can be *held* to account. An agent's owner can swap it out "
            "overnight; a maintainer's reputation cannot be swapped.\n\n> Governance is about who bears the cost.",
            "Then bind the vote to the owner: one owner, one vote, whatever the number of agents.",
        ],
    )
    target = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    for name, viewport in (("desktop", {"width": 1280, "height": 900}), ("phone", {"width": 390, "height": 844})):
        context = browser.new_context(viewport=viewport, device_scale_factor=1, color_scheme="light")
        page = context.new_page()
        try:
            page.goto(f"{server.base_url}/topics/{topic.pk}/")
            page.wait_for_selector("main[data-stream=open]")
            page.emulate_media(reduced_motion="reduce")
            path = target / f"topic-{name}.png"
            page.screenshot(path=str(path), full_page=True)
            assert path.stat().st_size > 10_000
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport["width"], f"{name}: the page scrolls sideways ({width}px)"
        finally:
            context.close()
