"""Webhook delivery by real ticker processes: a SIGKILL in the middle of a send loses nothing."""

from __future__ import annotations

import signal
from collections import Counter

import pytest
from django.db import transaction
from standardwebhooks.webhooks import Webhook as Verifier

from devtools.environments import child_env
from devtools.fabric_receiver import FabricServer, Reply
from devtools.processes import ChildProcess, wait_for
from fabric_bridge import webhooks
from fabric_bridge.models import DeliveryStatus, Webhook, WebhookDelivery
from topics import transitions
from topics.models import AgentEventKind

pytestmark = pytest.mark.django_db(transaction=True)

AGENTS = 6
EVENTS_EACH = 10


def ticker_env(**overrides: str) -> dict[str, str]:
    return child_env(
        {
            "WEBHOOK_ALLOW_HTTP": "1",
            "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "1",
            "WEBHOOK_CONNECT_TIMEOUT": "200ms",
            "WEBHOOK_DELIVERY_BUDGET": "1s",
            **overrides,
        }
    )


def test_a_ticker_killed_mid_delivery_loses_nothing_and_keeps_each_agents_order(make_agent):
    server = FabricServer().start()
    server.default = Reply(204, body=b"")
    try:
        secrets = {}
        for n in range(AGENTS):
            agent = make_agent(name=f"hooked-{n}")
            secret = webhooks.secret_new()
            Webhook.objects.create(
                agent=agent,
                url=f"{server.base_url}/hooks/{agent.pk}",
                secret_encrypted=webhooks.secret_seal(secret),
                created_at=agent.created_at,
            )
            secrets[str(agent.pk)] = secret
            with transaction.atomic():
                transitions.agent_events_append(
                    [(agent.pk, AgentEventKind.WEBHOOK_TEST, {"topic_id": None, "title": None})] * EVENTS_EACH
                )
        total = AGENTS * EVENTS_EACH
        # The 21st request hangs: the ticker is inside a send, with other deliveries claimed beside it.
        server.script(*[Reply(204, body=b"")] * 20, Reply.hanging())

        with ChildProcess.manage(
            "run_ticker", "--interval", "100ms", env=ticker_env(WEBHOOK_READ_TIMEOUT="5s")
        ) as first:
            wait_for(lambda: len(server.requests()) >= 21, timeout=60, message=first.describe())
            first.kill()
        server.unhang()
        hung = server.requests()[20].headers["webhook-id"]
        assert WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, attempts=1).exists(), "claims left leased"

        with ChildProcess.manage(
            "run_ticker", "--interval", "100ms", env=ticker_env(WEBHOOK_READ_TIMEOUT="500ms")
        ) as second:
            wait_for(
                lambda: WebhookDelivery.objects.filter(status=DeliveryStatus.SENT).count() == total,
                timeout=90,
                message=second.describe(),
            )
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=10) == 0, second.describe()
    finally:
        server.stop()

    requests = server.requests()
    ids = Counter(r.headers["webhook-id"] for r in requests)
    assert len(ids) == total
    # Only the send the kill interrupted (and at most the ones beside it in flight) went twice, same id.
    assert hung in {k for k, n in ids.items() if n == 2}
    assert all(n <= 2 for n in ids.values())
    # Every request verifies, and each agent saw its events in seq order (a repeat re-sends the same one).
    per_agent: dict[str, list[int]] = {}
    for request in requests:
        agent_id = request.path.rsplit("/", 1)[1]
        event = Verifier(secrets[agent_id]).verify(request.body.decode(), request.headers)
        per_agent.setdefault(agent_id, []).append(event["seq"])
    for seqs in per_agent.values():
        assert sorted(set(seqs)) == list(range(1, EVENTS_EACH + 1))
        assert list(dict.fromkeys(seqs)) == sorted(set(seqs)), f"out of order: {seqs}"
