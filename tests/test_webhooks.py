"""Agents' webhooks: registration, the SSRF rules, and delivery to a real local HTTP receiver.

Every request the receiver gets is verified with the ``standardwebhooks``
library, exactly as an agent would. Private addresses and plain http are
allowed only where a test says so (the receiver listens on 127.0.0.1); the
SSRF tests switch that off and change what names resolve to by replacing
``socket.getaddrinfo`` in this process, which is the resolver the checks
and the connection use.
"""

from __future__ import annotations

import base64
import json
import random
import socket
import threading
import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook as Verifier

from devtools.fabric_receiver import FabricServer, Received, Reply
from devtools.processes import free_port
from fabric_bridge import ssrf
from fabric_bridge.delivery import deliver_due, deliver_webhooks_while
from fabric_bridge.models import DeliveryStatus, Webhook, WebhookDelivery
from fabric_bridge.services import webhook_delivery_retry_now
from tests.api_support import client, player
from topics import services, transitions
from topics.models import AgentEvent, Topic

pytestmark = pytest.mark.django_db

WEBHOOK = "/api/agents/me/webhook/"


@pytest.fixture
def receiver(settings):
    """A real HTTP server for the agents' webhooks; plain http to 127.0.0.1 allowed, short timeouts."""
    server = FabricServer().start()
    server.default = Reply(204, body=b"")
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_CONNECT_TIMEOUT = timedelta(seconds=1)
    settings.WEBHOOK_READ_TIMEOUT = timedelta(seconds=0.5)
    settings.WEBHOOK_DELIVERY_BUDGET = timedelta(seconds=3)
    yield server
    server.stop()


def register(agent_player, url: str) -> str:
    response = client(agent_player.token).put(WEBHOOK, {"url": url}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["secret"]


def verified(request: Received, secret: str) -> dict:
    """The payload, after the library accepted its signature (it raises otherwise)."""
    return Verifier(secret).verify(request.body.decode(), request.headers)


# --- registration ------------------------------------------------------------------------


def test_put_returns_a_standard_secret_once_and_a_second_put_rotates_it(receiver):
    agent = player()
    url = f"{receiver.base_url}/hooks/a"
    first = client(agent.token).put(WEBHOOK, {"url": url}, format="json")
    assert first.status_code == 200
    assert set(first.json()) == {"url", "secret"} and first.json()["url"] == url
    secret = first.json()["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 32

    shown = client(agent.token).get(WEBHOOK)
    assert shown.status_code == 200
    assert set(shown.json()) == {"url", "created_at", "last_success_at", "failing_since"}
    assert secret not in shown.content.decode()
    # At rest the secret is sealed, not stored as given.
    assert secret not in Webhook.objects.get(agent=agent.agent).secret_encrypted

    second = register(agent, f"{receiver.base_url}/hooks/b")
    assert second != secret
    assert Webhook.objects.filter(agent=agent.agent).count() == 1
    me = client(agent.token).get("/api/agents/me/").json()
    assert me["webhook"]["url"] == f"{receiver.base_url}/hooks/b" and "secret" not in me["webhook"]


def test_get_and_test_without_a_webhook_are_404_and_delete_is_204(receiver):
    agent = player()
    api = client(agent.token)
    assert api.get(WEBHOOK).json()["code"] == "not_found"
    assert api.post(WEBHOOK + "test/").json()["code"] == "not_found"
    assert api.get("/api/agents/me/").json()["webhook"] is None
    register(agent, f"{receiver.base_url}/hooks/x")
    assert api.delete(WEBHOOK).status_code == 204
    assert api.get(WEBHOOK).status_code == 404
    assert api.delete(WEBHOOK).status_code == 204  # nothing left to remove is fine too


def test_the_webhook_endpoints_need_a_token():
    for method in ("get", "put", "delete"):
        response = getattr(client(), method)(WEBHOOK)
        assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")
    assert client().post(WEBHOOK + "test/").status_code == 401


# --- SSRF ------------------------------------------------------------------------------


@pytest.fixture
def resolver(monkeypatch):
    """Names resolve to what the test puts in ``answers``; IP literals and anything else as usual."""
    real = socket.getaddrinfo
    answers: dict[str, list[str]] = {}
    calls: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name in answers:
            calls.append(name)
            return [
                (socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
                for ip in answers[name]
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    getaddrinfo.answers = answers
    getaddrinfo.calls = calls
    return getaddrinfo


REFUSED = [
    ("https://127.0.0.1/hook", "loopback"),
    ("https://127.8.9.10/hook", "loopback"),
    ("https://[::1]/hook", "loopback"),
    ("https://10.1.2.3/hook", "private"),
    ("https://172.16.0.1/hook", "private"),
    ("https://172.31.255.254/hook", "private"),
    ("https://192.168.1.1/hook", "private"),
    ("https://169.254.169.254/latest/meta-data/", "link-local"),
    ("https://[fd00::1]/hook", "private"),
    ("https://[fe80::1]/hook", "link-local"),
    ("https://[::ffff:127.0.0.1]/hook", "IPv6 form of 127.0.0.1"),
    ("https://[::ffff:10.0.0.1]/hook", "IPv6 form of 10.0.0.1"),
    ("https://[2002:7f00:1::]/hook", "IPv6 form of 127.0.0.1"),  # 6to4
    ("https://[64:ff9b::a00:1]/hook", "IPv6 form of 10.0.0.1"),  # NAT64
    ("https://0.0.0.0/hook", "unspecified"),
    ("https://224.0.0.1/hook", "multicast"),
    ("https://240.0.0.1/hook", "reserved"),
    ("https://100.64.0.1/hook", "carrier-grade"),
    ("https://2130706433/hook", "unusual spelling"),  # decimal 127.0.0.1
    ("https://0177.0.0.1/hook", "unusual spelling"),  # octal
    ("https://0x7f.1/hook", "unusual spelling"),  # hex, shortened
    ("https://127.1/hook", "unusual spelling"),
    ("http://93.184.216.34/hook", "must use https"),
    ("ftp://93.184.216.34/hook", "scheme must be https"),
    ("https://user:pw@93.184.216.34/hook", "user name or password"),
    ("https:///hook", "no host"),
    ("not a url", "whitespace"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_urls_naming_non_public_addresses_are_refused_with_the_reason(settings, url, reason):
    settings.WEBHOOK_ALLOW_HTTP = False
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    agent = player()
    response = client(agent.token).put(WEBHOOK, {"url": url}, format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid_webhook_url"
    assert reason in body["detail"], body["detail"]
    assert not Webhook.objects.filter(agent=agent.agent).exists()


@pytest.mark.parametrize("private", ["10.0.0.5", "127.0.0.1", "::1", "fd12::7", "::ffff:192.168.0.1"])
def test_a_name_that_resolves_to_a_private_address_is_refused(settings, resolver, private):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    # One public answer does not make up for a private one: every address must be public.
    resolver.answers["hooks.example.com"] = ["93.184.216.34", private]
    response = client(player().token).put(WEBHOOK, {"url": "https://hooks.example.com/in"}, format="json")
    assert response.json()["code"] == "invalid_webhook_url"
    assert f"resolves to {ssrf.ipaddress.ip_address(private)}" in response.json()["detail"]


def test_a_name_that_does_not_resolve_is_refused(settings):
    response = client(player().token).put(WEBHOOK, {"url": "https://no-such-host.invalid/in"}, format="json")
    assert response.json()["code"] == "invalid_webhook_url"
    assert "does not resolve" in response.json()["detail"]


def test_a_public_name_that_later_resolves_privately_is_refused_at_delivery(settings, resolver, receiver):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    settings.WEBHOOK_ALLOW_HTTP = False
    resolver.answers["hooks.example.com"] = ["93.184.216.34"]
    agent = player()
    register(agent, "https://hooks.example.com/in")
    resolver.answers["hooks.example.com"] = ["127.0.0.1"]  # DNS rebinding
    client(agent.token).post(WEBHOOK + "test/")

    assert deliver_due() == 1
    row = WebhookDelivery.objects.get()
    assert row.status == DeliveryStatus.DEAD
    assert "refused to send" in row.last_error and "loopback" in row.last_error
    assert receiver.requests() == []


def test_the_connection_goes_to_the_vetted_address_with_the_real_host(resolver, receiver):
    """Resolved once per delivery, checked, then connected to by address, with the name in Host."""
    resolver.answers["hooks.test"] = ["127.0.0.1"]
    agent = player()
    secret = register(agent, f"http://hooks.test:{receiver.port}/in")
    client(agent.token).post(WEBHOOK + "test/")
    lookups = len(resolver.calls)

    assert deliver_due() == 1
    [request] = receiver.requests()
    assert request.headers["host"] == f"hooks.test:{receiver.port}"
    assert verified(request, secret)["type"] == "webhook_test"
    # The check's lookup only: had the connection resolved the name again, it could have got another answer.
    assert len(resolver.calls) == lookups + 1


def test_a_redirect_is_not_followed(receiver):
    receiver.script(Reply(302, body=b"", headers={"Location": "http://169.254.169.254/latest/meta-data/"}))
    agent = player()
    register(agent, f"{receiver.base_url}/hooks/r")
    client(agent.token).post(WEBHOOK + "test/")
    assert deliver_due() == 1
    row = WebhookDelivery.objects.get()
    assert row.status == DeliveryStatus.DEAD
    assert "HTTP 302" in row.last_error and "not followed" in row.last_error
    assert len(receiver.requests()) == 1


# --- delivery ------------------------------------------------------------------------------


def whole_debate(now, debaters):
    """Staged through the services and transitions as the API and the ticker would: every kind of event."""
    pro, con, judge, extra = debaters
    topic = Topic.objects.create(
        title="Webhooks or polling?",
        signup_open_at=now,
        signup_close_at=now + timedelta(minutes=1),
        debate_start_at=now + timedelta(minutes=1),
        debate_end_at=now + timedelta(minutes=3),
        round_count=2,
    )
    with transaction.atomic():
        transitions.topic_open_signup(transitions.topic_lock(topic.pk), now=now)
    for agent, camp in ((pro, "pro"), (con, "con"), (judge, "judge"), (extra, "judge")):
        services.signup_create(topic_id=topic.pk, agent=agent.agent, camp=camp, now=now)
    later = now + timedelta(minutes=1)
    with transaction.atomic():
        locked = transitions.topic_lock(topic.pk)
        transitions.topic_close_signup(locked, now=later, rng=random.Random(3))
    with transaction.atomic():
        transitions.topic_start_debate(transitions.topic_lock(topic.pk), now=later)
    with transaction.atomic():
        transitions.topic_advance_round(transitions.topic_lock(topic.pk), now=now + timedelta(minutes=2))
    return topic


def test_every_event_reaches_its_agents_webhook_signed_once_and_in_order(receiver, now):
    debaters = [player() for _ in range(4)]
    secrets = {str(p.agent.pk): register(p, f"{receiver.base_url}/hooks/{p.agent.pk}") for p in debaters}
    topic = whole_debate(timezone.now(), debaters)
    judge = next(p for p in debaters if p.agent.camps.filter(topic=topic, camp="judge").exists())
    services.verdict_create(
        topic_id=topic.pk,
        judge=judge.agent,
        verdict={"winner": "pro"},
        rationale="Clearer.",
        now=timezone.now() + timedelta(minutes=4),
    )

    while deliver_due():
        pass

    received: dict[str, list[dict]] = {}
    for request in receiver.requests():
        agent_id = request.path.rsplit("/", 1)[1]
        received.setdefault(agent_id, []).append(verified(request, secrets[agent_id]))
    for agent_id in secrets:
        events = list(AgentEvent.objects.filter(agent_id=agent_id).order_by("seq").values_list("seq", "kind", "data"))
        assert [(e["seq"], e["type"], e["data"]) for e in received.get(agent_id, [])] == [
            (seq, kind, json.loads(json.dumps(data))) for seq, kind, data in events
        ]
    kinds = sorted(e["type"] for events in received.values() for e in events)
    assert kinds.count("signup_accepted") == 4 and kinds.count("placed") == 3 and kinds.count("not_placed") == 1
    assert kinds.count("round_opened") == 4 and kinds.count("judging_opened") == 1
    assert kinds.count("topic_completed") == 3
    assert WebhookDelivery.objects.exclude(status=DeliveryStatus.SENT).count() == 0
    ids = [r.headers["webhook-id"] for r in receiver.requests()]
    assert len(ids) == len(set(ids))
    hook = Webhook.objects.get(agent=judge.agent)
    assert hook.last_success_at is not None and hook.failing_since is None


def test_a_retry_carries_the_same_webhook_id_and_waits_for_its_backoff(receiver, now):
    agent = player()
    secret = register(agent, f"{receiver.base_url}/hooks/retry")
    receiver.script(Reply(500))
    client(agent.token).post(WEBHOOK + "test/")
    client(agent.token).post(WEBHOOK + "test/")

    assert deliver_due() == 1  # the first failed; the second waits behind it (one agent: in order)
    first = WebhookDelivery.objects.get(seq=1)
    assert (first.status, first.attempts) == (DeliveryStatus.PENDING, 1) and "HTTP 500" in first.last_error
    assert Webhook.objects.get(agent=agent.agent).failing_since is not None
    assert deliver_due() == 0, "the backoff is honoured"

    assert deliver_due(now=first.next_attempt_at + timedelta(seconds=1)) == 2
    requests = receiver.requests()
    assert [r.headers["webhook-id"] for r in requests[:2]] == [f"msg_{first.pk.hex}"] * 2
    assert [verified(r, secret)["seq"] for r in requests] == [1, 1, 2]
    assert Webhook.objects.get(agent=agent.agent).failing_since is None


def test_the_fault_sequence_ends_in_one_delivery_after_five_attempts(receiver, now):
    """500, 503, a hang past the read timeout, a refused connection, then 2xx: delivered, same id each time."""
    agent = player()
    secret = register(agent, f"{receiver.base_url}/hooks/faults")
    client(agent.token).post(WEBHOOK + "test/")
    receiver.script(Reply(500), Reply(503), Reply.hanging())
    row = WebhookDelivery.objects.get()
    errors = []
    for attempt in range(1, 6):
        if attempt == 4:
            receiver.stop()  # refused
        if attempt == 5:
            receiver.start()
        row.refresh_from_db()
        assert deliver_due(now=row.next_attempt_at) == 1
        row.refresh_from_db()
        errors.append(row.last_error)
    assert (row.status, row.attempts) == (DeliveryStatus.SENT, 5)
    assert "HTTP 500" in errors[0] and "HTTP 503" in errors[1] and "read timeout" in errors[2]
    assert "connection error" in errors[3]
    ids = {r.headers["webhook-id"] for r in receiver.requests()}
    assert ids == {f"msg_{row.pk.hex}"}
    assert verified(receiver.requests()[-1], secret)["type"] == "webhook_test"


def test_410_gone_removes_the_webhook_and_what_it_had_left(receiver):
    agent = player()
    register(agent, f"{receiver.base_url}/hooks/gone")
    receiver.script(Reply(410))
    for _ in range(3):
        client(agent.token).post(WEBHOOK + "test/")
    assert deliver_due() == 1
    assert not Webhook.objects.filter(agent=agent.agent).exists()
    assert WebhookDelivery.objects.count() == 0
    assert client(agent.token).get(WEBHOOK).status_code == 404
    # The events themselves stay: the stream still has them.
    assert AgentEvent.objects.filter(agent=agent.agent).count() == 3


def test_a_dead_delivery_no_longer_holds_back_the_later_ones_and_can_be_retried(receiver, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    agent = player()
    secret = register(agent, f"{receiver.base_url}/hooks/dead")
    receiver.script(Reply(503))
    client(agent.token).post(WEBHOOK + "test/")
    client(agent.token).post(WEBHOOK + "test/")
    assert deliver_due() == 2
    dead, sent = WebhookDelivery.objects.order_by("seq")
    assert dead.status == DeliveryStatus.DEAD and "gave up after 1 attempts" in dead.last_error
    assert sent.status == DeliveryStatus.SENT

    assert webhook_delivery_retry_now(delivery_id=dead.pk, now=timezone.now())
    assert deliver_due() == 1
    assert [verified(r, secret)["seq"] for r in receiver.requests()] == [1, 2, 1]
    assert {r.headers["webhook-id"] for r in receiver.requests()[::2]} == {f"msg_{dead.pk.hex}"}


def test_one_agents_broken_receiver_does_not_stop_the_others(receiver, settings):
    healthy = player()
    broken = player()
    register(healthy, f"{receiver.base_url}/hooks/healthy")
    register(broken, f"http://127.0.0.1:{free_port()}/hooks/broken")  # nothing listens there
    client(broken.token).post(WEBHOOK + "test/")
    client(healthy.token).post(WEBHOOK + "test/")
    assert deliver_due() == 2
    assert [r.path for r in receiver.requests()] == ["/hooks/healthy"]


def test_staff_see_a_dead_delivery_in_the_admin_and_retry_it(receiver, settings, admin_client):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    agent = player()
    register(agent, f"{receiver.base_url}/hooks/admin")
    receiver.script(Reply(503))
    client(agent.token).post(WEBHOOK + "test/")
    deliver_due()
    row = WebhookDelivery.objects.get()
    assert row.status == DeliveryStatus.DEAD

    listing = admin_client.get("/admin/fabric_bridge/webhookdelivery/?status=dead")
    assert listing.status_code == 200 and "HTTP 503" in listing.content.decode()
    assert admin_client.get(f"/admin/fabric_bridge/webhookdelivery/{row.pk}/change/").status_code == 200
    response = admin_client.post(
        "/admin/fabric_bridge/webhookdelivery/",
        {"action": "retry_now", "_selected_action": [str(row.pk)]},
        follow=True,
    )
    assert "1 webhook delivery queued" in response.content.decode()
    row.refresh_from_db()
    assert (row.status, row.attempts) == (DeliveryStatus.PENDING, 0)
    assert deliver_due() == 1
    row.refresh_from_db()
    assert row.status == DeliveryStatus.SENT


# --- the ticker's sender: as soon as the transition commits ---------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_sender_thread_sends_as_soon_as_a_delivery_commits_and_stops_promptly(receiver):
    """``deliver_webhooks_while`` (the ticker's thread) is woken by the commit, not by its idle poll."""
    agent = player()
    secret = register(agent, f"{receiver.base_url}/hooks/now")
    running = threading.Event()
    running.set()
    sender = threading.Thread(target=deliver_webhooks_while, args=(running.is_set,), kwargs={"idle": 60})
    sender.start()
    try:
        time.sleep(0.5)  # past its first look, which finds nothing: the next one is a minute away unless woken
        assert receiver.requests() == []
        committed = time.monotonic()
        assert client(agent.token).post(WEBHOOK + "test/").status_code == 202
        while not receiver.requests() and time.monotonic() - committed < 5:
            time.sleep(0.02)
        assert receiver.requests(), "the commit did not wake the sender"
        assert time.monotonic() - committed < 2
        [request] = receiver.requests()
        assert verified(request, secret)["type"] == "webhook_test"
    finally:
        running.clear()
        sender.join(timeout=2)
    assert not sender.is_alive(), "the sender did not stop within its poll"
    assert WebhookDelivery.objects.get().status == DeliveryStatus.SENT
