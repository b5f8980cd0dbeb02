"""The spectator pages through Django's test client: what each page shows, public topics only, fixed queries."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from tests.pages_support import argue, complete, debating
from topics.models import Topic

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return Client()


def test_the_index_groups_public_topics_and_leaves_out_private_ones(client, make_topic, make_agent):
    live, _ = debating(make_topic, make_agent, prefix="idx", title="A live one")
    Topic.objects.filter(pk=make_topic(title="Open for signup").pk).update(status="signup_open")
    make_topic(title="Coming soon")
    make_topic(title="A secret one", visibility="private")
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    live_section = html.split('id="group-live"')[1].split("</section>")[0]
    assert "A live one" in live_section and f"/topics/{live.pk}/" in live_section
    assert "idx-pro" in live_section and "idx-con" in live_section
    assert "Open for signup" in html.split('id="group-signup"')[1].split("</section>")[0]
    assert "Coming soon" in html.split('id="group-coming"')[1].split("</section>")[0]
    assert "A secret one" not in html


def test_a_debate_page_shows_timeline_camps_transcript_and_verdict(client, make_topic, make_agent):
    topic, agents = debating(make_topic, make_agent, prefix="page", title="Is P = NP?", summary="The old question.")
    argue(topic, agents, ["**Pro** opens.", "Con *replies*."])
    page = client.get(f"/topics/{topic.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<h1>Is P = NP?</h1>" in html
    assert 'data-live="true"' in html and "badge-live" in html
    assert "<strong>Pro</strong> opens." in html and "Con <em>replies</em>." in html
    for camp in ("pro", "con", "judge"):
        assert f'href="/agents/{agents[camp].pk}/"' in html
    assert 'aria-current="step"' in html  # the open round
    assert "live.js" in html
    assert page["Content-Security-Policy"].startswith("default-src 'none'")

    complete(topic, agents, winner="con", rationale="Con was *sharper*.")
    html = client.get(f"/topics/{topic.pk}/").content.decode()
    assert 'data-live="false"' in html and "badge-finished" in html
    assert "Con wins" in html and "Con was <em>sharper</em>." in html
    assert "live.js" not in html  # nothing to follow on a finished debate
    # The debaters' ratings, once the completion rated them.
    shown = re.findall(r'camp-(pro|con)">.*?">rating ([\d.]+) <small>\((\d)\u2013(\d)\u2013(\d)\)', html, re.DOTALL)
    assert [(camp, wins, losses) for camp, _, wins, losses, _ in shown] == [("pro", "0", "1"), ("con", "1", "0")]
    assert float(shown[1][1]) > float(shown[0][1])


@pytest.mark.parametrize(
    "path",
    [
        "/topics/{private}/",
        "/topics/{missing}/",
        "/topics/not-a-uuid/",
        "/topics/{private}/arguments/{missing}/",
        "/agents/{missing}/",
        "/agents/nope/",
    ],
)
def test_private_missing_and_malformed_are_404(client, make_topic, path):
    private = make_topic(visibility="private")
    url = path.format(private=private.pk, missing="00000000-0000-0000-0000-000000000000")
    response = client.get(url)
    assert response.status_code == 404
    assert b"Not found" in response.content and b"A secret" not in response.content


def test_an_argument_fragment_is_the_page_s_own_markup(client, make_topic, make_agent):
    topic, agents = debating(make_topic, make_agent, prefix="frag")
    argue(topic, agents, ["Hello *world*"])
    argument = topic.arguments.get()
    response = client.get(f"/topics/{topic.pk}/arguments/{argument.pk}/")
    assert response.status_code == 200
    fragment = response.content.decode()
    assert fragment.startswith(f'<li class="argument camp-pro" id="argument-{argument.pk}">')
    assert fragment.strip() in client.get(f"/topics/{topic.pk}/").content.decode()
    Topic.objects.filter(pk=topic.pk).update(visibility="private")
    assert client.get(f"/topics/{topic.pk}/arguments/{argument.pk}/").status_code == 404


def test_agent_page_and_leaderboard_show_ratings_and_records(client, make_topic, make_agent):
    assert "No rated agents yet" in client.get("/leaderboard/").content.decode()
    topic, agents = debating(make_topic, make_agent, prefix="rank")
    argue(topic, agents, ["a", "b"])
    complete(topic, agents, winner="pro")
    board = client.get("/leaderboard/").content.decode()
    assert board.index("rank-pro") < board.index("rank-con")
    assert "rank-judge" not in board  # judges are not rated
    profile = client.get(f"/agents/{agents['pro'].pk}/").content.decode()
    assert "<h1>rank-pro</h1>" in profile and f'href="/topics/{topic.pk}/"' in profile and "won" in profile
    assert client.get("/leaderboard/?page=9").status_code == 404


def test_the_topic_page_reads_a_fixed_number_of_queries(client, make_topic, make_agent, django_assert_max_num_queries):
    topic, agents = debating(make_topic, make_agent, prefix="q")
    argue(topic, agents, [f"argument {i}" for i in range(2)])
    with django_assert_max_num_queries(20) as few:
        client.get(f"/topics/{topic.pk}/")
    argue(topic, agents, [f"more {i}" for i in range(30)])
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(f"/topics/{topic.pk}/")


def test_the_admin_view_site_link_lands_on_the_index(admin_client):
    html = admin_client.get("/admin/").content.decode()
    assert '<a href="/">View site</a>' in html


def test_the_pages_stylesheet_and_script_are_served_without_collectstatic(client):
    css = client.get("/static/pages/site.css")
    assert css.status_code == 200 and css["Content-Type"].startswith("text/css")
    assert b"prefers-color-scheme: dark" in b"".join(css.streaming_content)
    js = client.get("/static/pages/live.js")
    assert js.status_code == 200 and "javascript" in js["Content-Type"]


def test_a_cached_page_follows_every_event_and_every_staff_edit(client, make_topic, make_agent):
    topic, agents = debating(make_topic, make_agent, prefix="cache", title="Before")
    assert "<h1>Before</h1>" in client.get(f"/topics/{topic.pk}/").content.decode()
    argue(topic, agents, ["A new argument"])
    assert "A new argument" in client.get(f"/topics/{topic.pk}/").content.decode()
    Topic.objects.filter(pk=topic.pk).update(title="After")  # what the admin's change page does
    assert "<h1>After</h1>" in client.get(f"/topics/{topic.pk}/").content.decode()
    Topic.objects.filter(pk=topic.pk).update(visibility="private")
    assert client.get(f"/topics/{topic.pk}/").status_code == 404
