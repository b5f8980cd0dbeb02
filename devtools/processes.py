"""Child processes that never outlive their caller: the web server, tickers, commands, agents.

``ChildProcess`` runs every child the toolkit starts. Its stdout and stderr
each go to a file, never to a pipe we might not drain (a ticker logs a line
per transition, and a full pipe would block it); with ``echo`` they are also
relayed line by line with the child's name in front. Each child leads its own
session (process group): Ctrl-C in a terminal reaches us and not it, and
stopping it can reach whatever it started (``make run`` starts honcho, which
starts gunicorn and a ticker). Stopping is SIGTERM (or the signal asked
for), then SIGKILL to the whole group after a grace period, then a SIGKILL
sweep of the group for anything left behind.

``Stack`` is the local stack: the web server exactly as the Procfile runs it
(gunicorn with the uvicorn worker), optionally a ticker, and reference agents.

Standard library and ``requests`` only: no Django, so ``make demo`` and the
benchmarks can use it before (or without) configuring Django.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

import requests

BASE_DIR = Path(__file__).resolve().parent.parent
MANAGE_PY = BASE_DIR / "manage.py"
AGENT_PY = BASE_DIR / "examples" / "agent.py"

T = TypeVar("T")


def free_port() -> int:
    """A port the OS says is free right now (another process could still take it before we bind)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def web_argv(port: int, *, workers: int = 1, graceful_timeout: float = 2) -> list[str]:
    """The web server the Procfile and the Dockerfile run: gunicorn with uvicorn workers."""
    return [
        sys.executable, "-m", "gunicorn", "dialectic.asgi:application",
        "--worker-class", "uvicorn_worker.UvicornWorker", "--workers", str(workers),
        "--bind", f"127.0.0.1:{port}", "--graceful-timeout", f"{graceful_timeout:g}",
        # Every local gunicorn would otherwise share the control socket's default path.
        "--no-control-socket",
    ]  # fmt: skip


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process ``pid`` has open (Linux /proc), to match against /proc/net/tcp."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed while we looked
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def wait_for(condition: Callable[[], T], *, timeout: float, interval: float = 0.02, message: str = "") -> T:
    """Poll ``condition`` until it returns something truthy (returned); fail like an assert after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(message or f"condition not met within {timeout}s")
        time.sleep(interval)


class ChildProcess:
    """One child process; use it as a context manager so it never outlives the block."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        name: str | None = None,
        cwd: Path = BASE_DIR,
        log_dir: Path | None = None,
        echo: bool = False,
    ) -> None:
        """Start ``argv`` now. Output goes to ``log_dir/<name>.{out,err}.log``, or to anonymous files."""
        self.argv = list(argv)
        self.name = name or Path(self.argv[0]).name
        # Unbuffered, so the child's writes and the relays' are in the file as soon as they are made.
        self._out = self._log_file(log_dir, "out")
        self._err = self._log_file(log_dir, "err")
        self.proc = subprocess.Popen(  # noqa: S603 - our own argv, no shell
            self.argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if echo else self._out,
            stderr=subprocess.PIPE if echo else self._err,
            start_new_session=True,
        )
        self._relays: list[threading.Thread] = []
        self._closed_output: tuple[str, str] | None = None
        if echo:
            for pipe, file in ((self.proc.stdout, self._out), (self.proc.stderr, self._err)):
                relay = threading.Thread(target=self._relay, args=(pipe, file), daemon=True)
                relay.start()
                self._relays.append(relay)

    @classmethod
    def manage(cls, *args: str, env: Mapping[str, str], **options: object) -> ChildProcess:
        """``python manage.py <args>`` in the project, as a child."""
        return cls([sys.executable, str(MANAGE_PY), *args], env=env, name=f"manage.py {args[0]}", **options)

    def _log_file(self, log_dir: Path | None, stream: str) -> IO[bytes]:
        # Closed in close(): the files live as long as the process, not a with-block.
        if log_dir is None:
            return tempfile.TemporaryFile(buffering=0)
        return (log_dir / f"{self.name}.{stream}.log").open("w+b", buffering=0)

    def _relay(self, pipe: IO[bytes], file: IO[bytes]) -> None:
        for line in pipe:
            file.write(line)
            sys.stdout.write(f"[{self.name}] {line.decode('utf-8', errors='replace')}")
            sys.stdout.flush()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float) -> int:
        """Wait for the exit code; raises ``subprocess.TimeoutExpired`` (with the output so far) when it runs on."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise subprocess.TimeoutExpired(exc.cmd, timeout, output=self.stdout, stderr=self.stderr) from None
        self._join_relays()
        return code

    def send_signal(self, sig: int, *, group: bool = False) -> None:
        """Signal the child (or its whole process group) if it is still running."""
        if self.proc.poll() is None:
            if group:
                self._signal_group(sig)
            else:
                self.proc.send_signal(sig)

    def interrupt(self) -> None:
        """SIGINT to the whole process group: what Ctrl-C in its terminal would do."""
        self.send_signal(signal.SIGINT, group=True)

    def kill(self) -> None:
        """SIGKILL to the group and reap: no cleanup runs in the child."""
        self._signal_group(signal.SIGKILL)
        self.proc.wait()
        self._join_relays()

    def stop(self, grace: float = 10.0, sig: int = signal.SIGTERM) -> int:
        """``sig`` (SIGTERM), SIGKILL to the group after ``grace`` seconds, then sweep the group; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):  # then SIGKILL, below
                self.proc.wait(timeout=grace)
        # Whatever the child started and left behind (or the child itself, past its grace) goes too.
        self._signal_group(signal.SIGKILL)
        self.proc.wait()
        self._join_relays()
        return self.proc.returncode

    def _signal_group(self, sig: int) -> None:
        # The child leads its own session, so its process group id is its pid.
        with contextlib.suppress(ProcessLookupError):  # nobody left in the group
            os.killpg(self.proc.pid, sig)

    def _join_relays(self) -> None:
        for relay in self._relays:
            relay.join(timeout=2)

    @property
    def stdout(self) -> str:
        return self._closed_output[0] if self._closed_output else self._read(self._out)

    @property
    def stderr(self) -> str:
        return self._closed_output[1] if self._closed_output else self._read(self._err)

    @staticmethod
    def _read(file: IO[bytes]) -> str:
        # pread leaves the file offset alone: the child shares it and keeps writing at the end.
        fd = file.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", errors="replace")

    def describe(self, tail: int | None = None) -> str:
        """Exit code and output (the last ``tail`` characters of each stream), for assertion messages."""
        out, err = self.stdout, self.stderr
        if tail is not None:
            out, err = out[-tail:], err[-tail:]
        return f"{self.name} → {self.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"

    def close(self) -> None:
        """Stop the child and close its files; what it wrote stays readable (failure messages come late)."""
        if self._closed_output is None:
            self.stop()
            self._closed_output = (self.stdout, self.stderr)
            self._out.close()
            self._err.close()

    def __enter__(self) -> ChildProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def wait_until_healthy(base_url: str, *, watch: Iterable[ChildProcess], timeout: float) -> None:
    """Until ``base_url/healthz`` answers 200; RuntimeError if a watched child exits first or time runs out."""
    watched = list(watch)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in watched:
            if child.returncode is not None:
                raise RuntimeError(f"{child.name} exited before {base_url} was up:\n{child.describe(tail=3000)}")
        try:
            if requests.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    logs = "\n".join(child.describe(tail=3000) for child in watched)
    raise RuntimeError(f"{base_url}/healthz did not answer 200 within {timeout}s:\n{logs}")


class Stack:
    """Web server (+ optional ticker) on ``port``; a context manager that always stops what it started."""

    def __init__(
        self,
        *,
        env: Mapping[str, str],
        log_dir: Path | None = None,
        tick: str = "1s",
        ticker: bool = True,
        echo: bool = False,
        port: int | None = None,
        graceful_timeout: float = 2,
    ) -> None:
        """``echo`` prints the ticker's and the agents' output as it comes (the web server's stays in its log)."""
        self.env = {**env, "ORCHESTRATOR_TICK_INTERVAL": tick, "PYTHONUNBUFFERED": "1"}
        self.log_dir = log_dir
        self.with_ticker = ticker
        self.echo = echo
        self.graceful_timeout = graceful_timeout
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.children: list[ChildProcess] = []

    def launch(self) -> Stack:
        """Start the processes and return at once (launch several stacks, then ``wait_healthy`` each)."""
        self.web = self._spawn("web", web_argv(self.port, graceful_timeout=self.graceful_timeout))
        if self.with_ticker:
            self.ticker = self._spawn("ticker", [sys.executable, str(MANAGE_PY), "run_ticker"])
        return self

    def wait_healthy(self, *, timeout: float = 30.0) -> Stack:
        wait_until_healthy(self.base_url, watch=self.children, timeout=timeout)
        return self

    def start(self, *, timeout: float = 30.0) -> Stack:
        return self.launch().wait_healthy(timeout=timeout)

    def _spawn(self, name: str, argv: list[str]) -> ChildProcess:
        child = ChildProcess(argv, env=self.env, name=name, log_dir=self.log_dir, echo=self.echo and name != "web")
        self.children.append(child)
        return child

    def agent(self, name: str, token: str, *args: str) -> ChildProcess:
        """A copy of the reference agent (examples/agent.py) against this server."""
        argv = [sys.executable, str(AGENT_PY), "--base-url", self.base_url, "--token", token, *args]
        return self._spawn(name, argv)

    def events_url(self, topic_id: object) -> str:
        return f"{self.base_url}/api/topics/{topic_id}/events/"

    def stats(self) -> dict[str, int]:
        """The web process's stream counters (needs ``SSE_STATS_ENABLED``, as ``stream_server`` sets)."""
        return requests.get(f"{self.base_url}/api/_stream/stats/", timeout=5).json()

    def logs(self, tail: int | None = 2000) -> str:
        """Every child's exit code and output so far, for failure messages."""
        return "\n".join(child.describe(tail=tail) for child in self.children)

    def stop(self) -> dict[str, int | None]:
        """Stop every child (agents first, the server last); returns their exit codes by name."""
        codes: dict[str, int | None] = {}
        for child in reversed(self.children):
            child.close()
            codes[child.name] = child.returncode
        return codes

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.stop()  # __exit__ does not run when __enter__ raises
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# Heartbeats and polls fast enough for a test, and the stream's counters on.
FAST_STREAMS = {"SSE_HEARTBEAT_INTERVAL": "1s", "SSE_POLL_INTERVAL": "100ms", "SSE_STATS_ENABLED": "1"}


def stream_server(extra: Mapping[str, str] | None = None) -> Stack:
    """One web server, no ticker, on the test database with ``FAST_STREAMS`` and ``extra`` on top.

    Use it as a context manager (it waits until the server answers), or ``launch()`` several and wait for each.
    """
    from devtools.environments import child_env

    return Stack(env=child_env({**FAST_STREAMS, **(extra or {})}), ticker=False, graceful_timeout=1)


def manage(*args: str, env: Mapping[str, str]) -> str:
    """Run ``python manage.py <args>`` to completion; returns stdout, raises with stderr on failure."""
    result = subprocess.run(  # noqa: S603 - our own argv, no shell
        [sys.executable, str(MANAGE_PY), *args],
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
