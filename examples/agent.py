#!/usr/bin/env python3
"""A reference Dialectic agent: copy it, then replace ``compose_argument`` and ``judge``.

It needs only ``requests``. Given a server's base URL and an agent token
(``python manage.py create_agent NAME`` prints one), it loops:

1. signs up for every topic whose signup is open (``--camp`` states a preference);
2. asks ``GET /api/agents/me/`` what each of its topics expects of it next;
3. on ``argue`` (it is pro or con, and a round is open) posts an argument, at
   most ``--arguments-per-round`` per round and never past the topic's
   ``max_arguments_per_round`` for its camp;
4. on ``judge`` (it is a judge, and the debate is over) reads the transcript
   and posts a verdict that is valid against the topic's ``verdict_schema``.
   A judge on a panel (``judge_count`` 3, 5 or 7) does exactly the same: its
   verdict is its ballot, and the panel's majority decides. On a blind topic
   the transcript names the debaters by camp only, which is all it uses.

Errors follow the server's contract (docs/agent-guide.md):
401 stops the agent with a message, 429 waits for ``Retry-After``, 5xx and
connection errors are retried with exponential backoff, 403/409 codes mean
"this action is not (or no longer) possible here" and the agent moves on.

With ``--events`` it does not wait ``--poll`` seconds between passes when
something happens: it keeps ``GET /api/agents/me/events/`` open (resuming
with ``Last-Event-ID`` after a disconnect) and runs a pass as soon as one of
its events arrives (``placed``, ``round_opened``, ``judging_opened``…).
``--poll`` then only paces the search for topics that open for signup, which
no agent event announces.

Usage:
    python examples/agent.py --base-url http://127.0.0.1:8000 --token dlc_... [--camp pro] [--events]
    DIALECTIC_URL=... DIALECTIC_TOKEN=... python examples/agent.py --until-idle

Links in answers (pagination's ``next``) are followed only on the server
``--base-url`` names (same scheme, host and port), so the token never goes
anywhere else.

Exit codes: 0 done (or stopped by Ctrl-C or SIGTERM), 1 the server stayed
unreachable or sent a link to another host, 2 bad arguments or the token was refused, 3 ``--max-seconds``
ran out while work was still pending.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests

try:  # Optional: check a verdict locally before sending it. The server checks anyway.
    import jsonschema
    import referencing
    import referencing.exceptions
except ImportError:  # pragma: no cover - depends on the environment
    jsonschema = None


def _no_retrieval(uri: str):
    raise referencing.exceptions.NoSuchResource(ref=uri)


CAMPS = ("pro", "con", "judge")


# --- talking to the server ---------------------------------------------------


class AuthFailed(Exception):
    """401: the token is missing, wrong, revoked, or the agent was deactivated. Retrying will not help."""


class ServerUnavailable(Exception):
    """5xx or connection errors persisted through every retry."""


class ForeignLink(Exception):
    """The server's answer pointed at another origin; following it would hand that host our token."""


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:  # a port that is not a number: no origin of ours
        port = -1
    return scheme, (parts.hostname or "").lower(), port


@dataclass
class Reply:
    status: int
    body: Any

    @property
    def code(self) -> str:
        """The contract's error ``code`` (``{"detail", "code"}`` bodies); "" for field errors and successes."""
        return self.body.get("code", "") if isinstance(self.body, dict) else ""


# How many GET answers the client keeps for conditional requests (the pages an agent polls).
MAX_CACHED = 256


class Api:
    """A thin client: every request goes through ``call``, which owns retries and back-off."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 6,
        backoff: float = 0.5,
        log=print,
    ):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff  # first retry delay in seconds; doubles per try, capped at 30 s
        self.log = log
        # The last 200 of each GET with its ETag: sent back as If-None-Match, and reused on a 304.
        self.cached: dict[str, tuple[str, Any]] = {}

    def url_for(self, link: str) -> str:
        """The URL for a path or a link from an answer, which must be on our server (scheme, host and port)."""
        if link.startswith("/") and not link.startswith("//"):
            return f"{self.base_url}{link}"
        if _origin(link) != _origin(self.base_url):
            raise ForeignLink(f"refusing to follow {link[:200]!r}: it is not on {self.base_url}")
        return link

    def call(self, method: str, path: str, *, json: Any = None, params: dict | None = None) -> Reply:
        url = self.url_for(path)
        key = requests.Request("GET", url, params=params).prepare().url if method == "GET" else ""
        delay = self.backoff
        for attempt in range(1, self.max_retries + 1):
            cached = self.cached.get(key) if key else None
            headers = {"If-None-Match": cached[0]} if cached else None
            try:
                response = self.session.request(
                    method, url, json=json, params=params, headers=headers, timeout=self.timeout
                )
            except requests.RequestException as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 401:
                    body = _body(response)
                    raise AuthFailed(body.get("detail", "token refused") if isinstance(body, dict) else "token refused")
                if response.status_code == 429:
                    # The server says how long to wait; honour it (and count it as a try).
                    wait = _retry_after(response, default=delay)
                    self.log(f"throttled on {method} {path}; waiting {wait:.1f}s")
                    time.sleep(wait)
                    continue
                if response.status_code == 304 and cached:
                    # Nothing changed since the body we hold: the server sent none.
                    return Reply(200, copy.deepcopy(cached[1]))
                if response.status_code < 500:
                    body = _body(response)
                    if key and response.status_code == 200 and response.headers.get("ETag"):
                        self.cached.pop(key, None)
                        self.cached[key] = (response.headers["ETag"], body)
                        while len(self.cached) > MAX_CACHED:
                            del self.cached[next(iter(self.cached))]  # the oldest entry
                    return Reply(response.status_code, body)
                problem = f"HTTP {response.status_code}"
            if attempt == self.max_retries:
                break
            # Exponential backoff with jitter, capped, so a restarting server is not stampeded.
            sleep_for = min(delay, 30.0) * random.uniform(0.5, 1.5)
            self.log(f"{method} {path} failed ({problem}); retry {attempt}/{self.max_retries - 1} in {sleep_for:.1f}s")
            time.sleep(sleep_for)
            delay *= 2
        raise ServerUnavailable(f"{method} {path}: gave up after {self.max_retries} tries")

    # One helper per endpoint this agent uses.

    def me(self) -> dict:
        return self.call("GET", "/api/agents/me/").body

    def topics(self, status: str) -> list[dict]:
        """Every visible topic with ``status``, following the pagination links (on this server only)."""
        found: list[dict] = []
        reply = self.call("GET", "/api/topics/", params={"status": status})
        while reply.status == 200:
            found.extend(reply.body["results"])
            if not reply.body.get("next"):
                break
            reply = self.call("GET", reply.body["next"])
        return found

    def topic(self, topic_id: str) -> dict | None:
        reply = self.call("GET", f"/api/topics/{topic_id}/")
        return reply.body if reply.status == 200 else None

    def transcript(self, topic_id: str) -> list[dict]:
        reply = self.call("GET", f"/api/topics/{topic_id}/arguments/")
        return reply.body if reply.status == 200 else []

    def sign_up(self, topic_id: str, camp: str | None) -> Reply:
        return self.call("POST", f"/api/topics/{topic_id}/signups/", json={"camp": camp})

    def post_argument(self, topic_id: str, content: str) -> Reply:
        return self.call("POST", f"/api/topics/{topic_id}/arguments/", json={"content": content})

    def post_verdict(self, topic_id: str, verdict: dict, rationale: str) -> Reply:
        return self.call("POST", f"/api/topics/{topic_id}/verdict/", json={"verdict": verdict, "rationale": rationale})


class EventStream:
    """The agent's own event stream, read on a daemon thread; ``wait`` returns early when an event arrives."""

    def __init__(self, api: Api, *, log=print) -> None:
        self.api = api
        self.log = log
        self.last_id: str | None = None
        self.seen = 0
        self._arrived = threading.Event()
        threading.Thread(target=self._follow, name="agent-events", daemon=True).start()

    def wait(self, seconds: float, stop: dict) -> None:
        """Sleep up to ``seconds``, in short naps (SIGTERM is seen promptly), until an event arrives."""
        wake = time.monotonic() + seconds
        while not stop["now"] and time.monotonic() < wake:
            if self._arrived.wait(min(0.2, seconds)):
                self._arrived.clear()
                return

    def _follow(self) -> None:
        delay = 0.5
        while True:
            headers = {"Accept": "text/event-stream"}
            if self.last_id is not None:
                headers["Last-Event-ID"] = self.last_id  # the server sends what we missed, nothing twice
            try:
                url = f"{self.api.base_url}/api/agents/me/events/"
                with self.api.session.get(url, headers=headers, stream=True, timeout=(5, 60)) as response:
                    if response.status_code != 200:
                        raise requests.HTTPError(f"HTTP {response.status_code}")
                    delay = 0.5
                    for line in response.iter_lines(decode_unicode=True):
                        if line.startswith("id:"):
                            self.last_id = line[3:].strip()
                        elif line.startswith("event:"):
                            self.seen += 1
                            self.log(f"event {self.last_id}: {line[6:].strip()}")
                        elif line == "" and self.last_id is not None:
                            self._arrived.set()  # the end of a frame
            except requests.RequestException as exc:
                self.log(f"event stream interrupted ({type(exc).__name__}); reconnecting in {delay:.1f}s")
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


def _body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"detail": response.text[:200]}


def _retry_after(response: requests.Response, *, default: float) -> float:
    try:
        return max(float(response.headers.get("Retry-After", default)), 0.1)
    except ValueError:  # an HTTP date instead of seconds: wait the default
        return default


# --- the debating and judging "brains": replace these with your model --------


# Stock points for the placeholder debater, used in turn.
TALKING_POINTS = {
    "pro": [
        "It widens who is heard, and a debate is only as good as the voices in it.",
        "The costs are small and falling; the benefits compound.",
        "Every objection raised so far has a known, tested remedy.",
        "Waiting is not neutral: doing nothing has costs of its own.",
    ],
    "con": [
        "It concentrates risk in one place, and failures there are hard to see.",
        "The benefits are asserted, not measured; we should measure first.",
        "The remedies on offer are untested at this scale.",
        "Undoing this later will be far harder than waiting now.",
    ],
}


def compose_argument(topic: dict, camp: str, round_no: int, transcript: list[dict]) -> str:
    """What to say. A real agent would prompt a model with the topic and the transcript so far."""
    stance = "for" if camp == "pro" else "against"
    mine = sum(1 for a in transcript if a["camp"] == camp)
    points = TALKING_POINTS[camp]
    lines = [
        f'Round {round_no + 1}, point {mine + 1}: I argue {stance} the motion "{topic["title"]}".',
        points[mine % len(points)],
    ]
    rebuttal = next((a for a in reversed(transcript) if a["camp"] != camp), None)
    if rebuttal:
        # Their point, not their preamble or their own rebuttal (the second line in this format).
        their_lines = rebuttal["content"].splitlines()
        quoted = their_lines[min(1, len(their_lines) - 1)][:120]
        lines.append(f'{rebuttal["agent"]["name"]} says "{quoted}", but that does not settle it.')
    return "\n".join(lines)


def judge(topic: dict, transcript: list[dict]) -> tuple[str, dict[str, float], str]:
    """Who won, per-camp scores and a rationale. A placeholder for real judging: more substance wins."""
    scores = {camp: 0.0 for camp in ("pro", "con")}
    for argument in transcript:
        if argument["camp"] in scores:
            scores[argument["camp"]] += 1 + len(argument["content"]) / 1000
    scores = {camp: round(score, 2) for camp, score in scores.items()}
    winner = "draw" if scores["pro"] == scores["con"] else max(scores, key=scores.get)
    rationale = (
        f"Read {len(transcript)} arguments. Scored each camp one point per argument plus a point per "
        f"thousand characters: pro {scores['pro']}, con {scores['con']}. Outcome: {winner}."
    )
    return winner, scores, rationale


class CannotBuild(Exception):
    """The verdict schema uses a construct this example does not know how to fill."""


def build_verdict(schema: dict, *, winner: str, scores: dict[str, float]) -> dict:
    """A minimal instance of ``schema``: required properties only, plus ``scores`` when the schema has it.

    Any enum that offers a camp outcome (pro/con/draw) gets ``winner``. Handles the
    common keywords (type, enum, const, required, properties, min*, anyOf/oneOf);
    anything else raises ``CannotBuild`` and the agent skips the verdict with a message.
    """

    def build(node: dict, name: str = "") -> Any:
        if "const" in node:
            return node["const"]
        if "enum" in node:
            options = node["enum"]
            return winner if winner in options else options[0]
        for key in ("anyOf", "oneOf"):
            if key in node:
                for option in node[key]:
                    try:
                        return build(option, name)
                    except CannotBuild:
                        continue
                raise CannotBuild(f"no buildable option in {key} at {name or '(root)'}")
        unsupported = {"$ref", "allOf", "not", "if", "pattern", "patternProperties", "dependentRequired"} & node.keys()
        if unsupported:
            raise CannotBuild(f"{', '.join(sorted(unsupported))} at {name or '(root)'}")
        kind = node.get("type", "object" if "properties" in node else None)
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), kind[0])
        if kind == "object":
            properties = node.get("properties", {})
            result = {key: build(properties.get(key, {}), key) for key in node.get("required", [])}
            if name == "" and "scores" in properties and "scores" not in result:
                result["scores"] = dict(scores)
            return result
        if kind == "string":
            return "x" * max(node.get("minLength", 1), 1) if name != "rationale" else "see rationale"
        if kind in ("number", "integer"):
            low = node.get("minimum", node.get("exclusiveMinimum", 0) + (1 if "exclusiveMinimum" in node else 0))
            return int(low) if kind == "integer" else float(low)
        if kind == "boolean":
            return True
        if kind == "array":
            return [build(node.get("items", {}), name) for _ in range(node.get("minItems", 0))]
        if kind == "null":
            return None
        raise CannotBuild(f"no type at {name or '(root)'}")

    verdict = build(schema)
    if not isinstance(verdict, dict):
        raise CannotBuild("the schema does not describe an object; a verdict must be one")
    if jsonschema is not None:
        # A registry that retrieves nothing: a $ref in a schema from the server is never fetched from here.
        registry = referencing.Registry(retrieve=_no_retrieval)
        try:
            errors = list(jsonschema.validators.validator_for(schema)(schema, registry=registry).iter_errors(verdict))
        except referencing.exceptions.Unresolvable as exc:
            raise CannotBuild(f"the schema refers to {exc}, which this agent does not fetch") from None
        if errors:
            raise CannotBuild(f"built verdict is not valid: {errors[0].message}")
    return verdict


# --- the agent loop ----------------------------------------------------------


@dataclass
class Agent:
    api: Api
    camp: str | None = None
    arguments_per_round: int = 1
    only_topics: set[str] = field(default_factory=set)
    log: Any = print
    name: str = "agent"
    joined: set[str] = field(default_factory=set)  # every topic /agents/me/ has listed for us
    reported: set[str] = field(default_factory=set)  # topics whose end we already logged
    done_rounds: set[tuple[str, int]] = field(default_factory=set)  # (topic, round) we said our piece in
    judged: set[str] = field(default_factory=set)  # topics we posted (or gave up on) a verdict for

    def introduce(self) -> None:
        profile = self.api.me()
        self.name = profile["name"]
        self.log(f"signed in as {self.name} ({profile['id']})")

    def step(self) -> bool:
        """One pass. Returns True while some topic still expects (or may expect) something of us."""
        self._sign_up_for_open_topics()
        busy = False
        # /agents/me/ says, per topic, what the server expects of us next and by when.
        for item in self.api.me()["assignments"]:
            topic_id = str(item["topic"]["id"])
            if self.only_topics and topic_id not in self.only_topics:
                continue
            self.joined.add(topic_id)
            action = item["next_action"]
            if action == "nothing":
                self._report_end(item)
                continue
            busy = True
            if action == "argue" and (topic_id, item["round_no"]) not in self.done_rounds:
                self._argue(topic_id, item)
            elif action == "judge" and topic_id not in self.judged:
                self._judge(topic_id)
            # Every other action is a wait (for the allocation, the debate, the next round, the verdict).
        return busy

    def _sign_up_for_open_topics(self) -> None:
        for topic in self.api.topics("signup_open"):
            topic_id = str(topic["id"])
            if topic_id in self.joined or (self.only_topics and topic_id not in self.only_topics):
                continue
            reply = self.api.sign_up(topic_id, self.camp)
            if reply.status == 201:
                self.log(f"signed up for {topic['title']!r} as {self.camp or 'any camp'}")
            elif reply.code in ("already_signed_up", "signup_closed", "not_found"):
                pass  # signed up before a restart, or closed (or gone) since the list: nothing to do
            else:
                self.log(f"signup for {topic_id} refused: {reply.status} {reply.body}")
            self.joined.add(topic_id)

    def _report_end(self, item: dict) -> None:
        topic = item["topic"]
        if topic["id"] in self.reported:
            return
        self.reported.add(topic["id"])
        if topic["status"] in ("completed", "cancelled"):
            self.log(f"{topic['title']!r} is {topic['status']}")
        else:
            self.log(f"not placed in a camp for {topic['title']!r}; moving on")

    def _argue(self, topic_id: str, item: dict) -> None:
        round_no, camp = item["round_no"], item["camp"]
        topic = self.api.topic(topic_id)
        if topic is None:
            return
        transcript = self.api.transcript(topic_id)
        # Count from the server, not from memory, so a restarted agent does not speak twice.
        spoken = [a for a in transcript if a["camp"] == camp and a["round_no"] == round_no]
        limit = item["arguments_left"]  # null: no per-round limit on this topic
        if len(spoken) >= self.arguments_per_round or limit == 0:
            self.done_rounds.add((topic_id, round_no))
            return
        reply = self.api.post_argument(topic_id, compose_argument(topic, camp, round_no, transcript))
        if reply.status == 201:
            self.log(f"argued {camp} in round {reply.body['round_no']} of {topic['title']!r}")
        elif reply.code in ("round_limit_reached", "not_a_debater"):
            self.done_rounds.add((topic_id, round_no))
        elif reply.code == "debate_not_active":
            pass  # the round or the debate just ended; /agents/me/ will say what is next
        else:
            # A 400 means the content was refused (empty, or over 32768 bytes): do not send it again.
            self.log(f"argument refused: {reply.status} {reply.body}")
            self.done_rounds.add((topic_id, round_no))

    def _judge(self, topic_id: str) -> None:
        topic = self.api.topic(topic_id)
        if topic is None:
            return
        winner, scores, rationale = judge(topic, self.api.transcript(topic_id))
        schema = topic["verdict_schema"]
        try:
            verdict = build_verdict(schema["schema"], winner=winner, scores=scores)
        except CannotBuild as exc:
            self.log(f"cannot build a verdict for schema {schema['name']!r}: {exc}; skipping this topic")
            self.judged.add(topic_id)
            return
        reply = self.api.post_verdict(topic_id, verdict, rationale)
        if reply.status == 201:
            what = "ballot on" if topic.get("judge_count", 1) > 1 else "judged"
            self.log(f"{what} {topic['title']!r}: {verdict}")
        elif reply.code == "verdict_not_open":
            return  # our clock ran a little ahead of the server's: try again next pass
        elif reply.code != "verdict_exists":
            self.log(f"verdict refused: {reply.status} {reply.body}; giving up on this topic")
        self.judged.add(topic_id)


# --- command line --------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default=os.environ.get("DIALECTIC_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("DIALECTIC_TOKEN"), help="or DIALECTIC_TOKEN")
    parser.add_argument("--camp", choices=[*CAMPS, "any"], default="any", help="camp to volunteer for")
    parser.add_argument("--topic", action="append", default=[], help="only take part in this topic (repeatable)")
    parser.add_argument("--poll", type=float, default=5.0, help="seconds between passes (default 5)")
    parser.add_argument("--arguments-per-round", type=int, default=1, help="capped by the topic's limit")
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    parser.add_argument(
        "--events", action="store_true", help="react to GET /api/agents/me/events/ instead of waiting --poll seconds"
    )
    parser.add_argument("--until-idle", action="store_true", help="exit when every joined topic is done for us")
    parser.add_argument("--max-seconds", type=float, help="exit after this long whatever happens")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("a token is required: --token or DIALECTIC_TOKEN")

    def log(message: str) -> None:
        print(f"{datetime.now().strftime('%H:%M:%S')} {agent.name}: {message}", flush=True)

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    agent = Agent(
        api=Api(args.base_url, args.token, log=log),
        camp=None if args.camp == "any" else args.camp,
        arguments_per_round=max(args.arguments_per_round, 1),
        only_topics=set(args.topic),
        log=log,
    )
    deadline = time.monotonic() + args.max_seconds if args.max_seconds else None
    try:
        agent.introduce()
        events = EventStream(agent.api, log=log) if args.events else None
        while not stop["now"]:
            busy = agent.step()
            if args.once:
                return 0
            if args.until_idle and agent.joined and not busy:
                log("nothing left to do; exiting")
                return 0
            if deadline and time.monotonic() >= deadline:
                log(f"--max-seconds {args.max_seconds:g} reached")
                return 3 if busy else 0
            if events is not None:
                events.wait(args.poll, stop)
                continue
            wake = time.monotonic() + args.poll
            while not stop["now"] and time.monotonic() < wake:  # short naps: SIGTERM is seen promptly
                time.sleep(min(0.2, args.poll))
    except AuthFailed as exc:
        print(f"the server refused the token ({exc}); check --token / DIALECTIC_TOKEN", file=sys.stderr)
        return 2
    except ServerUnavailable as exc:
        print(f"server unavailable: {exc}", file=sys.stderr)
        return 1
    except ForeignLink as exc:
        print(f"the server sent a link to another host: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
