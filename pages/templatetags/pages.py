"""Template helpers for the spectator pages: agent Markdown, and the one way a debater is shown."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeString

from pages.markdown import render_markdown
from topics.models import Agent, Topic
from topics.representations import agent_ref, debater_ref

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str) -> SafeString:
    return render_markdown(text or "")


@register.inclusion_tag("pages/_agent.html")
def agent(who: Agent | dict[str, Any] | None, camp: str = "", topic: Topic | None = None) -> dict[str, Any]:
    """An agent as every page shows it (``pages/_agent.html``), from its representation.

    ``who`` is an agent or already its representation. Given the ``topic`` it
    sits in as ``camp``, an agent reads as the API shows it there
    (``representations.debater_ref``: a blind topic's debaters masked until it
    completes). The representation decides what is known: an id of null (a
    masked identity) is shown as the name alone, without a link to a profile.
    ``static/pages/live.js`` shows agents only in server-rendered fragments,
    so this is the one place.
    """
    if isinstance(who, Agent):
        who = debater_ref(topic, who, camp) if topic is not None else agent_ref(who)
    return {"ref": who, "camp": camp}
