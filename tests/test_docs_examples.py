"""Every curl example in docs/*.md runs against a live server and answers what the docs say.

An example is a fenced ``sh`` block holding one curl command, preceded by a
marker comment naming the situation it needs and the documented answer::

    <!-- example: setup=debating status=201 -->
    <!-- example: setup=signed_up status=409 code=already_signed_up -->

A block may hold several curl commands (one per line); each must answer
the documented status. The commands use the variables a reader exports:
``$DIALECTIC`` (base URL; ``http://127.0.0.1:8000``, ``make run``'s address,
also works), ``$TOKEN`` (an agent token), ``$TOPIC`` (a topic id),
``$PRIVATE_TOPIC`` (setup ``streams``). For each example the
test builds the ``setup`` on the test database (fresh agents and a fresh
topic), starts from a real ASGI server process, runs the block with bash and
the real curl, and compares the status code (and ``code``, when given).
Each example also runs through a small curl-to-requests translation, so the
check does not depend on curl being installed (and the translation stays honest).
A curl block without a marker fails the test: nothing in docs/ goes unchecked.
"""

from __future__ import annotations

import json
import random
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.db import transaction
from django.utils import timezone

from devtools.environments import child_env
from devtools.processes import Stack
from topics import transitions
from topics.models import Agent, Signup, Topic
from topics.tokens import token_issue

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"```(?:sh|bash|console)\n(.*?)```", re.S)
MARKED = re.compile(r"<!--\s*example:(?P<attrs>[^>]*?)-->\s*\n```(?:sh|bash)\n(?P<command>.*?)```", re.S)
CURL_MAX_TIME = "20"
MAKE_RUN_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Example:
    source: str
    setup: str
    status: int
    code: str | None
    command: str

    def __str__(self) -> str:
        return f"{self.source}:{self.setup}:{self.status}{':' + self.code if self.code else ''}"


def collect() -> list[Example]:
    examples = []
    for path in sorted(DOCS.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for match in MARKED.finditer(text):
            attrs = dict(pair.split("=", 1) for pair in match["attrs"].split())
            line = text.count("\n", 0, match.start()) + 1
            setup, status, code = attrs["setup"], int(attrs["status"]), attrs.get("code")
            examples.append(Example(f"{path.name}#L{line}", setup, status, code, match["command"]))
    return examples


EXAMPLES = collect()


def test_every_curl_block_in_docs_is_a_checked_example():
    marked = {m["command"] for path in DOCS.glob("*.md") for m in MARKED.finditer(path.read_text(encoding="utf-8"))}
    unmarked = [
        f"{path.name}: {block.strip()[:80]}"
        for path in sorted(DOCS.glob("*.md"))
        for block in BLOCK.findall(path.read_text(encoding="utf-8"))
        if re.search(r"(^|\s)curl\s", block) and block not in marked
    ]
    assert not unmarked, "curl examples without an <!-- example: ... --> marker:\n" + "\n".join(unmarked)
    assert len(EXAMPLES) >= 15, "the agent guide's examples were not found"
    for example in EXAMPLES:
        assert all(c.lstrip().startswith("curl ") for c in commands(example.command)), f"{example}: curl only"


# --- situations the examples need -----------------------------------------------


def _agent(name: str) -> tuple[Agent, str]:
    agent = Agent.objects.create(name=name)
    return agent, token_issue(agent=agent)


def _topic(*, opened_ago: timedelta, signup_for: timedelta, debate_for: timedelta, **fields) -> Topic:
    start = timezone.now() - opened_ago
    close = start + signup_for
    return Topic.objects.create(
        title="Should agents vote?",
        summary="A topic the docs examples run against.",
        signup_open_at=start,
        signup_close_at=close,
        debate_start_at=close,
        debate_end_at=close + debate_for,
        **fields,
    )


def _step(topic: Topic, *edges) -> None:
    for edge in edges:
        with transaction.atomic():
            locked = transitions.topic_lock(topic.pk)
            edge(locked)


def build(setup: str, base_url: str, *, visibility: str = "public") -> dict[str, str]:
    """Agents, a topic in the state ``setup`` names, and the variables the example uses."""
    now = timezone.now
    agents = {camp: _agent(f"{camp}-{random.getrandbits(32):08x}") for camp in ("pro", "con", "judge", "other")}
    tokens = {camp: token for camp, (_, token) in agents.items()}

    if setup in ("signup_open", "signed_up", "private", "bad_token"):
        topic = _topic(
            opened_ago=timedelta(minutes=1),
            signup_for=timedelta(minutes=10),
            debate_for=timedelta(minutes=30),
            visibility="private" if setup == "private" else "public",
        )
        _step(topic, lambda t: transitions.topic_open_signup(t, now=now()))
        if setup == "signed_up":
            Signup.objects.create(topic=topic, agent=agents["other"][0], camp="pro")
        token = "dlc_0123456789ab_not-a-real-secret" if setup == "bad_token" else tokens["other"]
        return {"TOPIC": str(topic.id), "TOKEN": token}

    if setup == "streams":
        # Two finished topics, one private: the stream examples replay and end at once.
        public = build("completed", base_url)
        private = build("completed", base_url, visibility="private")
        return {**public, "PRIVATE_TOPIC": private["TOPIC"]}

    # A debate under way (or over): signup closed in the past with one volunteer per camp.
    over = setup in ("judging", "debate_over", "completed")
    topic = _topic(
        opened_ago=timedelta(minutes=5),
        signup_for=timedelta(minutes=1),
        debate_for=timedelta(minutes=2) if over else timedelta(minutes=30),
        round_count=2,
        max_arguments_per_round=3,
        visibility=visibility,
    )
    _step(topic, lambda t: transitions.topic_open_signup(t, now=now()))
    for camp in ("pro", "con", "judge"):
        Signup.objects.create(topic=topic, agent=agents[camp][0], camp=camp)
    _step(
        topic,
        lambda t: transitions.topic_close_signup(t, now=now(), rng=random.Random(0)),
        lambda t: transitions.topic_start_debate(t, now=now()),
    )
    if over:
        _step(topic, lambda t: transitions.topic_end_debate(t, now=now()))
    if setup == "completed":
        response = requests.post(
            f"{base_url}/api/topics/{topic.id}/verdict/",
            json={"verdict": {"winner": "pro"}, "rationale": "Pro answered every objection."},
            headers={"Authorization": f"Bearer {tokens['judge']}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
    caller = {
        "debating": "pro",
        "debating_outsider": "other",
        "debating_judge": "judge",
        "debate_over": "pro",
        "judging": "judge",
        "completed": "judge",
    }[setup]
    return {"TOPIC": str(topic.id), "TOKEN": tokens[caller]}


# --- running an example -----------------------------------------------------------


Answer = tuple[int, str]  # status code and body of one request


def commands(block: str) -> list[str]:
    """The curl commands of a block: one per logical line (backslash continuations joined), comments dropped."""
    lines = block.replace("\\\n", " ").splitlines()
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def localise(block: str, base_url: str) -> str:
    """Examples written against `make run`'s address go to the test server instead."""
    return block.replace(MAKE_RUN_URL, base_url)


def run_with_curl(block: str, variables: dict[str, str], tmp_path: Path) -> list[Answer]:
    bodies = tmp_path / "bodies"
    bodies.mkdir(exist_ok=True)
    # The docs' commands, verbatim; this wrapper only adds where each answer goes and a time limit.
    script = (
        f"n=0; curl() {{ n=$((n + 1)); command curl --silent --show-error --max-time {CURL_MAX_TIME} "
        f'--output "$BODIES/$n" --write-out "%{{http_code}}\\n" "$@"; }}\n{block}'
    )
    result = subprocess.run(
        ["bash", "-c", script],
        env={**variables, "BODIES": str(bodies), "PATH": "/usr/bin:/bin:/usr/local/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"curl failed: {result.stderr}"
    statuses = [int(code) for code in result.stdout.split()]
    return [
        (status, (bodies / str(n)).read_text(encoding="utf-8") if (bodies / str(n)).exists() else "")
        for n, status in enumerate(statuses, start=1)
    ]


def curl_to_requests(block: str, variables: dict[str, str]) -> list[Answer]:
    """Send what each curl command in ``block`` would send, with requests."""
    return [_one_request(command, variables) for command in commands(block)]


def _one_request(command: str, variables: dict[str, str]) -> Answer:
    expanded = re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m[1], ""), command)
    argv = shlex.split(expanded, comments=True)
    assert argv[0] == "curl", f"not a curl command: {command}"
    method, url, headers, data = None, None, {}, None
    args = iter(argv[1:])
    for arg in args:
        if arg in ("-X", "--request"):
            method = next(args)
        elif arg in ("-H", "--header"):
            name, _, value = next(args).partition(":")
            headers[name.strip()] = value.strip()
        elif arg in ("-d", "--data", "--data-raw"):
            data = next(args)
            # curl's default for -d, unless the example says otherwise.
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif arg in ("-s", "-S", "-sS", "-N", "-sN", "--silent", "--no-buffer"):
            continue
        elif arg.startswith("-"):
            raise AssertionError(f"the docs test does not know curl's {arg}: keep examples to -X, -H, -d, -s, -N")
        else:
            url = arg
    method = method or ("POST" if data is not None else "GET")
    response = requests.request(
        method, url, headers=headers, data=data.encode() if data else None, timeout=float(CURL_MAX_TIME)
    )
    return response.status_code, response.text


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, tmp_path_factory):
    """One ASGI server process (no ticker: the examples' topics stay where the setup put them)."""
    with django_db_blocker.unblock():
        env = child_env()
    with Stack(env=env, log_dir=tmp_path_factory.mktemp("docs-server"), ticker=False) as stack:
        yield stack


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_documented_example_answers_as_documented(example: Example, server: Stack, tmp_path, winner_schema):
    runs = {"requests": curl_to_requests}
    if shutil.which("curl"):
        runs["curl"] = lambda block, variables: run_with_curl(block, variables, tmp_path)
    block = localise(example.command, server.base_url)
    for how, run in runs.items():
        # A fresh situation per run: many examples change it (a signup, a verdict).
        answers = run(block, {"DIALECTIC": server.base_url, **build(example.setup, server.base_url)})
        assert len(answers) == len(commands(block)), f"{example} via {how}: {len(answers)} answers"
        for status, body in answers:
            assert status == example.status, f"{example} via {how}: got {status}\n{body[:500]}"
            if example.code:
                assert json.loads(body).get("code") == example.code, f"{example} via {how}: {body[:500]}"
