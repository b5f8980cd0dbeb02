"""Real ticker processes delivering one outbox: no double sends between them, nothing lost to a SIGKILL."""

from __future__ import annotations

import re
import signal
from collections import Counter

import pytest
from django.db import connection

from devtools.environments import child_env
from devtools.fabric_receiver import FabricServer, Reply, fabric_env
from devtools.processes import ChildProcess, wait_for
from devtools.seeding import seed_announcements
from fabric_bridge.config import REQUIRED
from fabric_bridge.models import Announcement, AnnouncementStatus

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]

ATTEMPTED = re.compile(r"(\d+) announcements attempted")


@pytest.fixture
def server():
    fabric = FabricServer().start()
    yield fabric
    fabric.stop()


def wait_or_explain(proc: ChildProcess, condition, what: str) -> None:
    try:
        wait_for(condition, timeout=60, message=f"timed out waiting for {what}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{proc.describe()}") from None


def ticker_env(server: FabricServer, **overrides: str) -> dict[str, str]:
    return child_env(fabric_env(server, **overrides))


@pytest.mark.parametrize(
    ("tickers", "count"),
    [
        pytest.param(4, 500, marks=pytest.mark.mariadb, id="4 tickers, MariaDB"),
        pytest.param(2, 200, id="2 tickers"),
    ],
)
def test_concurrent_tickers_send_each_announcement_exactly_once(server, tickers, count):
    if connection.vendor == "mysql" and tickers == 2:
        pytest.skip("MariaDB runs the 4-ticker case")
    ids = seed_announcements(count)
    # A few milliseconds per answer, so the tickers' deliveries overlap instead of one finishing first.
    server.default = Reply(201, delay=0.005)
    # Budget large enough for one pass to drain the whole backlog alone.
    env = ticker_env(server, FABRIC_DELIVERY_BUDGET="60s")

    procs = [ChildProcess.manage("run_ticker", "--once", env=env) for _ in range(tickers)]
    try:
        for proc in procs:
            assert proc.wait(timeout=120) == 0, proc.describe()
        attempted = [sum(map(int, ATTEMPTED.findall(proc.stderr))) for proc in procs]
        outputs = "\n".join(proc.describe() for proc in procs)
    finally:
        for proc in procs:
            proc.close()

    keys = Counter(server.keys())
    assert sorted(keys) == ids, outputs
    assert set(keys.values()) == {1}, [k for k, n in keys.items() if n > 1]
    # What the tickers say they attempted adds up to what the server saw: no send went unreported.
    assert sum(attempted) == count, attempted
    assert Announcement.objects.filter(status=AnnouncementStatus.SENT, attempts=1).count() == count


def test_a_ticker_killed_mid_delivery_loses_nothing(server):
    ids = seed_announcements(60)
    # The 26th request hangs: the ticker is inside a send, with the rest of its batch claimed.
    server.script(*[Reply(201)] * 25, Reply.hanging())
    # Short timeouts and budget keep the claim lease (2 x (budget + connect + read) = 4.4s) short;
    # the hang is seen within milliseconds, long before its 1s read timeout.
    env = ticker_env(server, FABRIC_CONNECT_TIMEOUT="200ms", FABRIC_READ_TIMEOUT="1s", FABRIC_DELIVERY_BUDGET="1s")

    with ChildProcess.manage("run_ticker", "--interval", "100ms", env=env) as first:
        wait_or_explain(first, lambda: len(server.requests()) >= 26, "the hanging send")
        first.kill()
    server.unhang()
    hung = server.requests()[25].key
    leased = Announcement.objects.filter(status=AnnouncementStatus.PENDING, attempts=1).count()
    assert leased >= 1, "the killed ticker left its claimed batch leased"

    env = ticker_env(server, FABRIC_CONNECT_TIMEOUT="200ms", FABRIC_READ_TIMEOUT="200ms", FABRIC_DELIVERY_BUDGET="1s")
    with ChildProcess.manage("run_ticker", "--interval", "100ms", env=env) as second:
        wait_or_explain(
            second,
            lambda: Announcement.objects.filter(status=AnnouncementStatus.SENT).count() == 60,
            "every announcement sent after the restart",
        )
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=10) == 0, second.describe()

    keys = Counter(server.keys())
    assert sorted(keys) == ids
    # Only the send the kill interrupted went twice, with the same Idempotency-Key.
    assert {k: n for k, n in keys.items() if n > 1} == {hung: 2}
    assert Announcement.objects.get(pk=hung).attempts == 2


def test_ticker_names_the_missing_fabric_variables_once_at_startup():
    env = child_env({"FABRIC_GUILD_BASE_URL": "https://fabric.example"})
    assert env.keys() & set(REQUIRED) == {"FABRIC_GUILD_BASE_URL"}, "child_env passes none of ours on"
    with ChildProcess.manage("run_ticker", "--once", env=env) as ticker:
        assert ticker.wait(timeout=60) == 0, ticker.describe()
        lines = [line for line in ticker.stderr.splitlines() if "fabric announcements" in line]
    assert len(lines) == 1, lines
    assert lines[0].endswith(
        "fabric announcements disabled: missing FABRIC_ANNOUNCE_CHANNEL_ID, FABRIC_SYSTEM_API_KEY, "
        "FABRIC_BOT_BEARER_TOKEN"
    )
