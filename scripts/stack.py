"""A local Dialectic stack as child processes: the ASGI web server, a ticker, reference agents.

Used by ``scripts/demo.py`` (``make demo``) and by the tests that run the same
flow (``tests/test_demo_flow.py``, ``tests/test_docs_examples.py``), so the demo
and its test cannot drift apart. Standard library and ``requests`` only.

Every child runs in its own session (process group) and is stopped by its
process id: SIGTERM first, SIGKILL after a grace period. Output goes to files
in ``log_dir`` (a full pipe would block a chatty child), optionally echoed
with a prefix while it runs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import requests

BASE_DIR = Path(__file__).resolve().parent.parent
AGENT_PY = BASE_DIR / "examples" / "agent.py"


def web_argv(port: int, *, workers: int = 1, graceful_timeout: float = 2) -> list[str]:
    """The web server the Procfile and the Dockerfile run: gunicorn with uvicorn workers."""
    return [
        sys.executable, "-m", "gunicorn", "dialectic.asgi:application",
        "--worker-class", "uvicorn_worker.UvicornWorker", "--workers", str(workers),
        "--bind", f"127.0.0.1:{port}", "--graceful-timeout", f"{graceful_timeout:g}",
        # Every local gunicorn would otherwise share the control socket's default path.
        "--no-control-socket",
    ]  # fmt: skip


def free_port() -> int:
    """A port the OS says is free right now (another process could still take it before we bind)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def terminate(proc: subprocess.Popen, grace: float = 5.0) -> int:
    """SIGTERM, then SIGKILL after ``grace`` seconds (unless it has exited already); returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Child:
    """One child process with its output in ``log_dir/<name>.log``, optionally echoed line by line."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_dir: Path,
        echo: bool = False,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.proc = subprocess.Popen(  # noqa: S603 - our own argv, no shell
            list(argv),
            cwd=BASE_DIR,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if echo else self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal reaches us, not the children; we stop them
        )
        self._relay: threading.Thread | None = None
        if echo:
            self._relay = threading.Thread(target=self._echo, daemon=True)
            self._relay.start()

    def _echo(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._log.write(line)
            self._log.flush()
            sys.stdout.write(f"[{self.name}] {line.decode('utf-8', errors='replace')}")
            sys.stdout.flush()

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        if self._relay:
            self._relay.join(timeout=2)
        return code

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, grace: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        terminate(self.proc, grace)
        if self._relay:
            self._relay.join(timeout=2)
        self._log.close()
        return self.proc.returncode


class Stack:
    """Web server (+ optional ticker) on ``port``; a context manager that always stops what it started."""

    def __init__(
        self,
        *,
        env: Mapping[str, str],
        log_dir: Path,
        tick: str = "1s",
        ticker: bool = True,
        echo: bool = False,
        port: int | None = None,
    ) -> None:
        """``echo`` prints the ticker's and the agents' output as it comes (the web server's stays in its log)."""
        self.env = {**env, "ORCHESTRATOR_TICK_INTERVAL": tick, "PYTHONUNBUFFERED": "1"}
        self.log_dir = log_dir
        self.with_ticker = ticker
        self.echo = echo
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.children: list[Child] = []

    def start(self, *, timeout: float = 30.0) -> Stack:
        self.web = self._spawn("web", web_argv(self.port))
        if self.with_ticker:
            self.ticker = self._spawn("ticker", [sys.executable, "manage.py", "run_ticker"])
        self.wait_healthy(timeout=timeout)
        return self

    def _spawn(self, name: str, argv: list[str]) -> Child:
        child = Child(name, argv, env=self.env, log_dir=self.log_dir, echo=self.echo and name != "web")
        self.children.append(child)
        return child

    def agent(self, name: str, token: str, *args: str) -> Child:
        """A copy of the reference agent (examples/agent.py) against this server."""
        argv = [sys.executable, str(AGENT_PY), "--base-url", self.base_url, "--token", token, *args]
        return self._spawn(name, argv)

    def wait_healthy(self, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for child in self.children:
                if child.returncode is not None:
                    raise RuntimeError(f"{child.name} exited with {child.returncode}:\n{child.output()[-3000:]}")
            try:
                if requests.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the web server did not answer /healthz within {timeout}s:\n{self.web.output()[-3000:]}")

    def stop(self) -> dict[str, int]:
        """Stop every child (agents first, the server last); returns their exit codes by name."""
        return {child.name: child.stop() for child in reversed(self.children)}

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def manage(*args: str, env: Mapping[str, str]) -> str:
    """Run ``python manage.py <args>`` to completion; returns stdout, raises with stderr on failure."""
    result = subprocess.run(  # noqa: S603 - our own argv, no shell
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result.stdout


def last_line(text: str) -> str:
    """The last non-empty line: where create_agent prints the token and create_topic the topic id."""
    return [line for line in text.splitlines() if line.strip()][-1].strip()


def child_base_env() -> dict[str, str]:
    """Our environment without variables that would point a child at another database or server."""
    return {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ORCHESTRATOR_TICK_INTERVAL")}
