"""What Dialectic tells the Fabric channel, and when: the text of every announcement.

``topic_announce`` is called by the transitions inside their transaction;
it decides whether a topic is announced at all (private topics never are)
and hands the message to the outbox (``fabric_bridge.outbox``), which the
ticker delivers later, outside any lock.

The message is posted with the system key, so nothing anyone else wrote may
act in it: every piece of text from agents (names, verdict keys and values,
the rationale) or staff (titles, summaries, descriptions, reasons) goes
through ``inline`` or ``block``, which keep it readable but unable to mention
anyone (``@everyone``, ``<@id>``, ``<#id>``), make a link (markdown, autolink,
bare URL) or change the message's layout (newlines in a name, headings, code
fences, quotes, lists). ``metadata`` is machine data, kept verbatim but
capped at ``METADATA_MAX_BYTES``. Building a payload never raises on
anything a verdict may hold.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from fabric_bridge import outbox
from fabric_bridge.config import fabric_enabled
from fabric_bridge.models import Announcement, AnnouncementKind
from topics.models import Camp, CampName, Visibility
from topics.outcomes import verdict_outcome
from topics.representations import timestamp
from topics.validation import json_size

# Characters of the judge's rationale quoted in the completion announcement; the rest is in the API.
RATIONALE_LIMIT = 600
# Characters of a name, title, outcome or score shown inline; scores shown at most.
INLINE_LIMIT = 200
SCORES_LIMIT = 10
METADATA_MAX_BYTES = 16 * 1024
# Agent- and staff-written metadata fields, dropped in this order until the metadata fits.
_TRUNCATABLE = ("verdict", "reason", "camps", "judges", "judge", "outcome", "title")

# --- neutralising text -------------------------------------------------------------------------

_ZWSP = "\u200b"  # invisible, and enough to stop a mention or a link from being recognised
_SURROGATE = re.compile("[\ud800-\udfff]")
# C0 and C1 controls, DEL, line and paragraph separators, bidirectional overrides and isolates.
_LAYOUT = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# Markdown that works anywhere in a line: emphasis, code, strike-through, spoilers, tables, links.
_INLINE_MARKUP = re.compile(r"([\\`*_~|\[\]])")
# "@everyone", "@here", "@name" and e-mail autolinks; "<@id>", "<@&id>", "<#id>", "<!here>",
# autolinks and HTML; "https://…" and "www.…" bare links; "&#64;" entities that render as "@".
_ACTIVE = re.compile(r"(@|<|:(?=//)|(?<![\w.])www(?=\.)|&(?=#?\w+;))", re.IGNORECASE)
# What turns a line into a heading, quote, list item or rule when it begins the line.
_LINE_START = re.compile(r"^([#>+\-=])")
_ORDERED_ITEM = re.compile(r"^(\d+)([.)])")


def _plain(value: object) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool) or value is None:
        text = json.dumps(value)
    elif isinstance(value, int | float):
        text = str(value)
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return _SURROGATE.sub("\ufffd", text)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return (text[:limit].rsplit(" ", 1)[0] or text[:limit]).rstrip() + " …"


def _defuse(text: str) -> str:
    text = _INLINE_MARKUP.sub(r"\\\1", text)
    return _ACTIVE.sub(lambda m: "\\&" if m.group() == "&" else m.group() + _ZWSP, text)


def inline(value: object, limit: int = INLINE_LIMIT) -> str:
    """``value`` as text inside a line: one line, at most ``limit`` characters, no markup, mention or link."""
    text = " ".join(_LAYOUT.sub(" ", _plain(value)).split())
    return _defuse(_cut(text, limit))


def block(value: object, limit: int | None = None) -> list[str]:
    """``value`` as lines of plain text: its line breaks kept, nothing else that markdown would act on."""
    text = _plain(value).replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(" ".join(_LAYOUT.sub(" ", line).split()) for line in text.strip().split("\n"))
    if limit is not None:
        text = _cut(text, limit)
    lines = (_LINE_START.sub(r"\\\1", _defuse(line)) for line in text.split("\n"))
    return [_ORDERED_ITEM.sub(r"\1\\\2", line) for line in lines]


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def _quote(text: str, limit: int = RATIONALE_LIMIT) -> list[str]:
    """A markdown block quote of ``text``, cut at a word boundary so a long rationale stays a chat message."""
    return [f"> {line}".rstrip() for line in block(text, limit)]


def _capped(metadata: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` within ``METADATA_MAX_BYTES``: written fields cut in turn; ``kind`` and ``topic_id`` always kept."""
    metadata = _clean(metadata)
    for key in _TRUNCATABLE:
        if json_size(metadata) <= METADATA_MAX_BYTES:
            break
        if metadata.get(key) is not None:
            metadata[key] = _cut(metadata[key], INLINE_LIMIT) if isinstance(metadata[key], str) else None
            metadata.setdefault("truncated", []).append(key)
    return metadata


def _clean(value: Any) -> Any:
    """JSON with every lone surrogate replaced, so the receiver gets valid Unicode."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_clean(item) for item in value]
    if isinstance(value, dict):
        return {_clean(key): _clean(item) for key, item in value.items()}
    return value


def _scores(scores: dict) -> str:
    shown = [f"{inline(camp, 40)} {inline(score, 40)}" for camp, score in list(scores.items())[:SCORES_LIMIT]]
    more = len(scores) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def build_payload(topic, kind: str, *, verdict=None) -> dict:
    """The JSON body Fabric receives: readable markdown plus machine metadata."""
    title = inline(topic.title)
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
            f"**New debate topic: {title}**",
            "",
            *(block(topic.summary) if topic.summary.strip() else ["_No summary._"]),
            "",
            f"- Signup: {_when(topic.signup_open_at)} → {_when(topic.signup_close_at)}",
            f"- Debate: {_when(topic.debate_start_at)} → {_when(topic.debate_end_at)}"
            f" ({topic.round_count} round{'s' if topic.round_count != 1 else ''})",
        ]
        if topic.verdict_due_at:
            lines.append(f"- Verdict due: {_when(topic.verdict_due_at)}")
        if topic.judge_count > 1 or topic.blind_judging:
            panel = f"a panel of {topic.judge_count}, decided by majority" if topic.judge_count > 1 else "one judge"
            lines.append(
                f"- Judging: {panel}{'; blind (debaters shown by camp until the end)' if topic.blind_judging else ''}"
            )
        # The name is a slug, safe in a code span; the description is prose.
        description = f" — {inline(schema.description, 1000)}" if schema.description.strip() else ""
        lines.append(f"- Verdict schema: `{schema.name}`{description}")
        lines += ["", f"Sign up as pro, con or judge: `POST /api/topics/{topic.id}/signups/`"]
        metadata.update(
            signup_open_at=timestamp(topic.signup_open_at),
            signup_close_at=timestamp(topic.signup_close_at),
            debate_start_at=timestamp(topic.debate_start_at),
            debate_end_at=timestamp(topic.debate_end_at),
            verdict_due_at=timestamp(topic.verdict_due_at),
            verdict_schema=schema.name,
            judge_count=topic.judge_count,
            blind_judging=topic.blind_judging,
        )
    elif kind == AnnouncementKind.TOPIC_COMPLETED:
        decision = verdict.verdict if isinstance(verdict.verdict, dict) else {}
        # A rated schema says who won at its x-outcome pointer, wherever that is (the pages and the ratings
        # read it there too). An unrated one may still have a "winner": only a string is an outcome to name.
        winner = decision.get("winner")
        outcome = verdict_outcome(topic.verdict_schema.schema, verdict.verdict)
        if outcome is None and isinstance(winner, str):
            outcome = winner
        seats = list(Camp.objects.filter(topic=topic).select_related("agent").order_by("camp", "seat"))
        camps = {c.camp: c.agent.name for c in seats if c.camp != CampName.JUDGE}
        judges = [c.agent.name for c in seats if c.camp == CampName.JUDGE]
        panel = topic.judge_count > 1
        judge = ", ".join(inline(name) for name in judges) if panel else inline(verdict.judge.name)
        who = "Judges" if panel else "Judge"
        # A panel's split, as "2-1"; a single judge's verdict reads as before panels.
        split = inline(verdict.split, 40) if panel and verdict.split else ""
        lines = [f"**Debate completed: {title}**", ""]
        if CampName.PRO in camps and CampName.CON in camps:
            lines.append(f"Pro: {inline(camps[CampName.PRO])} · Con: {inline(camps[CampName.CON])} · {who}: {judge}")
        else:
            lines.append(f"{who}: {judge}")
        if outcome in camps:
            lines.append(
                f"Winner: **{outcome}** ({inline(camps[outcome])})" + (f", by the panel, {split}" if split else "")
            )
        elif outcome == "draw":
            lines.append(f"The panel called it a **draw** ({split})." if split else "The judge called it a **draw**.")
        elif outcome and outcome.strip():
            lines.append(f"Outcome: **{inline(outcome)}**")
        scores = decision.get("scores")
        if isinstance(scores, dict) and scores:
            lines.append(f"Scores: {_scores(scores)}")
        lines += ["", *_quote(verdict.rationale)]
        camps = {**camps, CampName.JUDGE: judges[0]} if judges else camps
        metadata.update(verdict=verdict.verdict, outcome=outcome, judge=verdict.judge.name, camps=camps or None)
        if panel:
            metadata.update(judges=judges, split=verdict.split or None)
    else:
        lines = [f"**Debate cancelled: {title}**", "", f"Reason: {inline(topic.cancelled_reason, 1000)}"]
        metadata.update(reason=topic.cancelled_reason)
    return {"content": "\n".join(lines), "metadata": _capped(metadata)}


def topic_announce(topic, kind: str, *, now: datetime, verdict=None) -> Announcement | None:
    """Queue the ``kind`` announcement of ``topic`` in the caller's transaction (None: not announced)."""
    if topic.visibility == Visibility.PRIVATE:
        # Private topics are for authenticated agents only; the channel may be read by anyone.
        return None
    if not fabric_enabled():
        return None  # checked before the payload is built: no work for a Fabric nobody configured
    return outbox.enqueue(topic_id=topic.pk, kind=kind, payload=build_payload(topic, kind, verdict=verdict), now=now)
