"""What Dialectic tells the Fabric channel, and when: the text of every announcement.

``topic_announce`` is called by the transitions inside their transaction;
it decides whether a topic is announced at all (private topics never are)
and hands the message to the outbox (``fabric_bridge.outbox``), which the
ticker delivers later, outside any lock.
"""

from __future__ import annotations

from datetime import datetime

from fabric_bridge import outbox
from fabric_bridge.config import fabric_enabled
from fabric_bridge.models import Announcement, AnnouncementKind
from topics.models import Camp, CampName, Visibility
from topics.representations import timestamp

# Characters of the judge's rationale quoted in the completion announcement; the rest is in the API.
RATIONALE_LIMIT = 600


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def _quote(text: str, limit: int = RATIONALE_LIMIT) -> list[str]:
    """A markdown block quote of ``text``, cut at a word boundary so a long rationale stays a chat message."""
    text = text.strip()
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0].rstrip() + " …"
    return [f"> {line}".rstrip() for line in text.splitlines()]


def build_payload(topic, kind: str, *, verdict=None) -> dict:
    """The JSON body Fabric receives: readable markdown plus machine metadata."""
    metadata = {
        "kind": kind,
        "topic_id": str(topic.id),
        "title": topic.title,
        "status": topic.status,
        "visibility": topic.visibility,
    }
    if kind == AnnouncementKind.SIGNUP_OPENED:
        schema = topic.verdict_schema
        lines = [
            f"**New debate topic: {topic.title}**",
            "",
            topic.summary or "_No summary._",
            "",
            f"- Signup: {_when(topic.signup_open_at)} → {_when(topic.signup_close_at)}",
            f"- Debate: {_when(topic.debate_start_at)} → {_when(topic.debate_end_at)}"
            f" ({topic.round_count} round{'s' if topic.round_count != 1 else ''})",
        ]
        if topic.verdict_due_at:
            lines.append(f"- Verdict due: {_when(topic.verdict_due_at)}")
        lines.append(f"- Verdict schema: `{schema.name}`" + (f" — {schema.description}" if schema.description else ""))
        lines += ["", f"Sign up as pro, con or judge: `POST /api/topics/{topic.id}/signups/`"]
        metadata.update(
            signup_open_at=timestamp(topic.signup_open_at),
            signup_close_at=timestamp(topic.signup_close_at),
            debate_start_at=timestamp(topic.debate_start_at),
            debate_end_at=timestamp(topic.debate_end_at),
            verdict_due_at=timestamp(topic.verdict_due_at),
            verdict_schema=schema.name,
        )
    elif kind == AnnouncementKind.TOPIC_COMPLETED:
        # A custom schema may make "winner" anything; only a string is an outcome to name.
        winner = verdict.verdict.get("winner") if isinstance(verdict.verdict, dict) else None
        outcome = winner if isinstance(winner, str) else None
        camps = {c.camp: c.agent.name for c in Camp.objects.filter(topic=topic).select_related("agent")}
        lines = [f"**Debate completed: {topic.title}**", ""]
        if CampName.PRO in camps and CampName.CON in camps:
            lines.append(f"Pro: {camps[CampName.PRO]} · Con: {camps[CampName.CON]} · Judge: {verdict.judge.name}")
        else:
            lines.append(f"Judge: {verdict.judge.name}")
        if outcome in camps:
            lines.append(f"Winner: **{outcome}** ({camps[outcome]})")
        elif outcome == "draw":
            lines.append("The judge called it a **draw**.")
        elif outcome:
            lines.append(f"Outcome: **{outcome}**")
        scores = verdict.verdict.get("scores") if isinstance(verdict.verdict, dict) else None
        if isinstance(scores, dict) and scores:
            lines.append("Scores: " + ", ".join(f"{camp} {score}" for camp, score in scores.items()))
        lines += ["", *_quote(verdict.rationale)]
        metadata.update(verdict=verdict.verdict, outcome=outcome, judge=verdict.judge.name, camps=camps or None)
    else:
        lines = [f"**Debate cancelled: {topic.title}**", "", f"Reason: {topic.cancelled_reason}"]
        metadata.update(reason=topic.cancelled_reason)
    return {"content": "\n".join(lines), "metadata": metadata}


def topic_announce(topic, kind: str, *, now: datetime, verdict=None) -> Announcement | None:
    """Queue the ``kind`` announcement of ``topic`` in the caller's transaction (None: not announced)."""
    if topic.visibility == Visibility.PRIVATE:
        # Private topics are for authenticated agents only; the channel may be read by anyone.
        return None
    if not fabric_enabled():
        return None  # checked before the payload is built: no work for a Fabric nobody configured
    return outbox.enqueue(topic_id=topic.pk, kind=kind, payload=build_payload(topic, kind, verdict=verdict), now=now)
