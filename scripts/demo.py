#!/usr/bin/env python3
"""`make demo`: one complete debate between three reference agents, on a throw-away SQLite database.

Starts the web server and a ticker (1 s tick) on a temporary database, creates
three agents and a topic with a one-minute timeline (20 s signup, two 20 s
rounds) and runs three copies of examples/agent.py against the live HTTP API.
Prints the transcript and the verdict when the topic completes. Exits 0 only
if it did; cleans up its processes (and, on success, its temporary directory).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import requests

# Runnable as a file (`python scripts/demo.py`): make the project root importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from devtools.environments import isolated_environ
from devtools.processes import Stack, last_line, manage

TERMINAL = {"completed", "cancelled"}


def create_debate(env: dict[str, str], *, signup: str, debate: str, rounds: int, verdict_within: str) -> tuple:
    """Three agents (name → token) and a topic id, through the operator commands."""
    tokens = {camp: last_line(manage("create_agent", f"demo-{camp}", env=env)) for camp in ("pro", "con", "judge")}
    topic_id = last_line(
        manage(
            "create_topic",
            "--title", "Should autonomous agents be allowed to hold a vote?",
            "--summary", "A demo debate between three copies of examples/agent.py.",
            "--signup-for", signup, "--debate-for", debate, "--rounds", str(rounds),
            "--verdict-within", verdict_within,
            env=env,
        )
    )  # fmt: skip
    return tokens, topic_id


def follow(base_url: str, topic_id: str, *, deadline: float, poll: float, say=print) -> dict:
    """Poll the topic until it is completed or cancelled (or the deadline passes); returns the last detail."""
    last_status, topic = None, {}
    while time.monotonic() < deadline:
        try:
            response = requests.get(f"{base_url}/api/topics/{topic_id}/", timeout=5)
            topic = response.json() if response.status_code == 200 else topic
        except requests.RequestException:
            pass  # a server restart or hiccup: the deadline bounds the wait
        if topic.get("status") != last_status:
            last_status = topic.get("status")
            say(f"topic is now {last_status}")
        if last_status in TERMINAL:
            break
        time.sleep(poll)
    return topic


def render(base_url: str, topic: dict) -> str:
    """The transcript and the verdict as plain text."""
    topic_id = topic["id"]
    lines = [f"\n=== {topic['title']} ({topic['status']})"]
    camps = topic.get("camps") or {}
    # "judge" is the first of "judges" (every judge seat); a blind topic's debaters read as their camp until it ends.
    seats = [(camp, camps[camp]) for camp in ("pro", "con") if camps.get(camp)]
    seats += [("judge", judge) for judge in camps.get("judges") or []]
    lines.append("camps: " + ", ".join(f"{camp}={agent['name']}" for camp, agent in seats))
    for argument in requests.get(f"{base_url}/api/topics/{topic_id}/arguments/", timeout=5).json():
        lines.append(f"\n--- round {argument['round_no']} · {argument['camp']} · {argument['agent']['name']}")
        lines.append(argument["content"])
    response = requests.get(f"{base_url}/api/topics/{topic_id}/verdict/", timeout=5)
    if response.status_code == 200:
        verdict = response.json()
        lines.append(f"\n=== verdict by {verdict['judge']['name']}: {verdict['verdict']}")
        lines.append(verdict["rationale"])
    else:
        lines.append(f"\n=== no verdict ({topic.get('cancelled_reason') or response.status_code})")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (database and logs)")
    args = parser.parse_args()

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="dialectic-demo-"))
    # Only what the demo states: neither the caller's settings nor a .env (whose Fabric would get announcements).
    env = isolated_environ(
        DATABASE_URL=f"sqlite:///{workdir / 'demo.sqlite3'}",
        DJANGO_SETTINGS_MODULE="dialectic.settings",
        DJANGO_DEBUG="1",
    )
    print(f"demo: database and logs in {workdir}")
    manage("migrate", "--noinput", env=env)
    completed = False
    stack = Stack(env=env, log_dir=workdir, tick="1s", echo=True)
    try:
        stack.start()
        print(f"demo: server at {stack.base_url}, ticker every 1s")
        tokens, topic_id = create_debate(env, signup="20s", debate="40s", rounds=2, verdict_within="30s")
        print(f"demo: topic {topic_id}; three agents signing up (pro, con, judge)")
        for camp, token in tokens.items():
            stack.agent(
                f"agent-{camp}", token,
                "--camp", camp, "--topic", topic_id, "--events", "--poll", "1", "--arguments-per-round", "2",
                "--until-idle", "--max-seconds", "110",
            )  # fmt: skip
        topic = follow(stack.base_url, topic_id, deadline=started + 115, poll=1, say=lambda m: print(f"demo: {m}"))
        if topic:
            print(render(stack.base_url, topic))
        completed = topic.get("status") == "completed"
    except KeyboardInterrupt:
        print("demo: interrupted")
    except RuntimeError as exc:
        print(f"demo: {exc}", file=sys.stderr)
    finally:
        stack.stop()
    elapsed = time.monotonic() - started
    if completed:
        print(f"\ndemo: completed in {elapsed:.0f}s")
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        return 0
    print(f"\ndemo: the topic did not complete ({elapsed:.0f}s); logs kept in {workdir}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
