"""The README's "Running it locally", as a new user follows it: a fresh clone, nothing set, the commands verbatim.

In a clone of the committed HEAD, with an environment that has none of
Dialectic's variables (nor what make, pytest or a virtualenv add), the test
runs ``make run`` (install, which writes the local ``.env``; migrate; the
server and a ticker) and waits for /healthz. Then it runs each command of
the fenced block after "In another terminal:" of the clone's README.md, as
written (split as a shell splits it) in the clone; the only substitution is the token
placeholder ``dlc_...``, replaced by the token create_agent printed. So the
test follows the README when the README changes.

It checks: create_agent's last line is a token, create_topic's a topic id;
the reference agent signs up for that topic (asked through the API, with the
agent's own token) and stops with 0 on Ctrl-C; Ctrl-C stops ``make run``'s
server and ticker together, and nothing is left running. Everything it
started is stopped, whatever fails.

Speed: the clone borrows this checkout's virtualenv (a symlink), and its
requirement files get this checkout's timestamps, so its ``make install``
installs nothing but still writes ``.env``. About 30 s, mostly migrations,
server start-up and the agent's first poll.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from devtools.environments import without_configuration
from devtools.processes import BASE_DIR, ChildProcess, last_line, wait_for

pytestmark = pytest.mark.timeout(180)

MAKE_RUN_URL = "http://127.0.0.1:8000"  # the Procfile's BIND default, which the README's commands assume
TOKEN = re.compile(r"dlc_[0-9a-f]{12}_[A-Za-z0-9_-]+")
BLOCK = re.compile(r"```(?:sh|bash|console)\n(.*?)```", re.S)

# An HTTP GET from wherever the commands run (our own network namespace, see private_loopback);
# prints the status (0: no answer) and the body.
PROBE = """
import sys, requests
headers = {"Authorization": "Bearer " + sys.argv[2]} if len(sys.argv) > 2 else {}
try:
    r = requests.get(sys.argv[1], headers=headers, timeout=10)
    print(r.status_code); print(r.text)
except requests.RequestException as exc:  # refused, or accepted while the workers still boot
    print(0); print(exc)
"""


def readme_section(readme: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    assert match, f"the README has no '## {title}' section"
    return match[1]


def commands_after(section: str, marker: str) -> list[str]:
    """The commands of the first fenced shell block after ``marker``: one per line, as written."""
    assert marker in section, f"the section no longer says {marker!r}"
    block = BLOCK.search(section, section.index(marker))
    assert block, f"no fenced shell block after {marker!r}"
    return [line for line in block[1].splitlines() if line.strip() and not line.lstrip().startswith("#")]


def as_typed(command: str) -> list[str]:
    """The argv an interactive shell runs for this line: split as the shell splits it, the comment dropped.

    No wrapping shell: in a terminal, Ctrl-C reaches the command and not the
    shell it was typed into, whereas ``sh -c`` would die of the SIGINT itself.
    """
    assert not re.search(r"[|&;<>`$]", command.split(" #", 1)[0]), (
        f"not a simple command, run it with a shell: {command}"
    )
    return shlex.split(command, comments=True)


def fresh_clone(target: Path) -> Path:
    """A clone of this checkout's committed HEAD, on this checkout's virtualenv, as it was installed."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=BASE_DIR, capture_output=True, text=True, check=True)
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(BASE_DIR), str(target)], check=True)
    subprocess.run(["git", "checkout", "--quiet", "--detach", head.stdout.strip()], cwd=target, check=True)
    venv = BASE_DIR / ".venv"
    installed = venv / ".installed"
    requirements = ["requirements.txt", "requirements-dev.txt"]
    stale = [name for name in requirements if (BASE_DIR / name).stat().st_mtime > installed.stat().st_mtime]
    assert not stale, f"the virtualenv is older than {stale}: run make install first"
    (target / ".venv").symlink_to(venv)
    for name in requirements:  # so the clone's make install finds the virtualenv up to date, as it is
        stat = (BASE_DIR / name).stat()
        os.utime(target / name, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return target


def terminal_env() -> dict[str, str]:
    """What a new terminal has: our environment without Dialectic's variables and what make/pytest/a venv add."""
    added_by_us = re.compile(r"^(MAKE|MFLAGS$|PYTEST_|VIRTUAL_ENV|PYTHONPATH$|PYTHONUNBUFFERED$)")
    return {k: v for k, v in without_configuration().items() if not added_by_us.match(k)}


@contextmanager
def private_loopback(env: dict[str, str]) -> Iterator[list[str]]:
    """A command prefix that runs commands in a network namespace of our own; ``[]`` if the machine forbids it.

    The README's commands assume make run's fixed address, 127.0.0.1:8000. On a
    shared machine that port may be taken (a developer's own ``make run``,
    another checkout's suite running this test at the same moment), which
    would fail the test for a reason that has nothing to do with the README.
    In a namespace of our own (unprivileged: a user namespace mapping us to
    root in it), 127.0.0.1:8000 is ours and the commands stay exactly as
    written. Where user namespaces are not allowed, the commands run on the
    machine's own loopback and the test fails, saying so, if 8000 is taken.
    """
    tools = [shutil.which(tool) for tool in ("unshare", "nsenter", "ip")]
    if not all(tools):
        yield []
        return
    unshare, nsenter, ip = tools
    # The holder keeps the namespace alive (sleep bounded: nothing here outlives a stuck run by long).
    script = f"{ip} link set lo up && echo up && exec sleep 600"
    with ChildProcess([unshare, "--user", "--map-root-user", "--net", "sh", "-c", script], env=env) as holder:
        with contextlib.suppress(AssertionError):  # no "up" in time: treated as unavailable, below
            wait_for(lambda: holder.stdout or holder.returncode is not None, timeout=10)
        if holder.stdout.strip() != "up":
            yield []
            return
        yield [nsenter, f"--target={holder.pid}", "--user", "--net", "--preserve-credentials", "--"]


def require_port_8000_free() -> None:
    with socket.socket() as sock:
        # As gunicorn binds: connections of an earlier run still in TIME_WAIT do not make the port taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", 8000))
        except OSError as exc:
            pytest.fail(
                f"127.0.0.1:8000 is taken ({exc}), and this machine allows no private network namespace: "
                "the README's commands need make run's address; stop whatever listens there and run again"
            )


def processes_in(directory: Path) -> list[int]:
    """Our processes whose working directory is inside ``directory`` (make run's children run in the clone)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cwd = Path(os.readlink(entry / "cwd"))
            except OSError:
                continue  # gone meanwhile, or not ours
            if cwd == directory or directory in cwd.parents:
                found.append(int(entry.name))
    return found


def test_the_readme_commands_work_as_written_in_a_fresh_clone(tmp_path):
    clone = fresh_clone(tmp_path / "clone")
    section = readme_section((clone / "README.md").read_text(encoding="utf-8"), "Running it locally")
    assert section.lstrip().startswith("`make run`"), "the section starts from make run"
    commands = commands_after(section, "In another terminal:")
    kinds = {name: [c for c in commands if name in c] for name in ("create_agent", "create_topic", "dlc_...")}
    assert all(len(found) == 1 for found in kinds.values()), f"expected one of each of {list(kinds)}: {commands}"
    logs = tmp_path / "logs"
    logs.mkdir()
    env = terminal_env()

    with private_loopback(env) as inside:
        if not inside:
            require_port_8000_free()

        def get(path: str, token: str = "") -> tuple[int, str]:
            probe = [*inside, str(clone / ".venv/bin/python"), "-c", PROBE, f"{MAKE_RUN_URL}{path}"]
            done = subprocess.run([*probe, *([token] if token else [])], env=env, capture_output=True, text=True)
            status, _, body = done.stdout.partition("\n")
            assert done.returncode == 0 and status.isdigit(), f"probe failed: {done.stderr}"
            return int(status), body

        def typed(command: str, name: str) -> ChildProcess:
            return ChildProcess([*inside, *as_typed(command)], env=env, cwd=clone, name=name, log_dir=logs)

        make_run = ChildProcess([*inside, "make", "run"], env=env, cwd=clone, name="make-run", log_dir=logs)
        agent: ChildProcess | None = None
        try:
            try:
                wait_for(lambda: make_run.returncode is not None or get("/healthz")[0] == 200, timeout=90, interval=0.5)
            except AssertionError:
                pytest.fail(f"make run did not answer /healthz within 90s\n{make_run.describe(tail=3000)}")
            assert make_run.returncode is None, f"make run stopped\n{make_run.describe(tail=3000)}"

            # make install wrote the local .env: debug on, a generated key, said to be for development only.
            dot_env = (clone / ".env").read_text(encoding="utf-8")
            header = dot_env.lower()
            assert "local development" in header and "never use this file" in header and "production" in header
            assert re.search(r"^DJANGO_DEBUG=1$", dot_env, re.M)
            key = re.search(r"^DJANGO_SECRET_KEY=(\S+)$", dot_env, re.M)
            assert key and len(key[1]) >= 50
            if (BASE_DIR / ".env").is_file():
                assert key[1] not in (BASE_DIR / ".env").read_text(encoding="utf-8"), "a key of its own, generated"
            ignored = subprocess.run(["git", "check-ignore", "--quiet", ".env"], cwd=clone, check=False)
            assert ignored.returncode == 0, ".env must be git-ignored"

            token = topic_id = ""
            for number, command in enumerate(commands, start=1):
                if "dlc_..." in command:
                    agent = typed(command.replace("dlc_...", token), "agent")
                    continue
                with typed(command, f"command-{number}") as run:
                    assert run.wait(timeout=60) == 0, run.describe()
                if "create_agent" in command:
                    token = last_line(run.stdout)
                    assert TOKEN.fullmatch(token), f"create_agent's last line is not a token: {run.stdout!r}"
                if "create_topic" in command:
                    topic_id = last_line(run.stdout)
                    assert str(uuid.UUID(topic_id)) == topic_id, f"create_topic's last line: {run.stdout!r}"
            assert agent is not None and token and topic_id

            # The agent signs up once the ticker has opened signup; ask the server as the agent.
            def signed_up() -> dict | None:
                status, body = get("/api/agents/me/", token)
                assert status == 200, body
                me = json.loads(body)
                mine = [a for a in me["assignments"] if a["topic"]["id"] == topic_id and a["signup"]]
                return mine[0] if mine else None

            try:
                assignment = wait_for(signed_up, timeout=45, interval=1)
            except AssertionError:
                pytest.fail(f"the agent did not sign up within 45s\n{agent.describe()}\n{make_run.describe(tail=3000)}")
            assert assignment["topic"]["status"] == "signup_open"
            assert assignment["next_action"] == "wait_for_allocation"
            assert "signed up for 'Is P = NP?'" in agent.stdout, agent.describe()
            assert json.loads(get("/api/agents/me/", token)[1])["name"] == "alice"

            # Ctrl-C in each terminal: the agent exits 0; make run stops the server and the ticker together.
            agent.interrupt()
            assert agent.wait(timeout=15) == 0, agent.describe()
            make_run.interrupt()
            make_run.wait(timeout=30)
            assert get("/healthz")[0] == 0, "the server still answers after Ctrl-C"
            assert processes_in(clone) == [], "make run left processes behind after Ctrl-C"
        finally:
            if agent is not None:
                agent.close()
            make_run.close()
            for pid in processes_in(clone):  # honcho's children lead their own sessions: sweep them by pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
