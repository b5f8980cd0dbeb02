"""``GET /api/agents/me/events/`` end to end: real server processes, real HTTP clients.

Events are appended in this process (the services, as the API would), and
reach the stream through the server's own poller: the database is the bus.
"""

from __future__ import annotations

import httpx
import pytest
from django.db import transaction

from devtools.environments import child_env
from devtools.processes import Stack, wait_for
from devtools.sse_client import SseReader
from topics import transitions
from topics.models import AgentEvent, AgentEventKind
from topics.tokens import token_issue, tokens_revoke

pytestmark = pytest.mark.django_db(transaction=True)

STREAM_SETTINGS = {"SSE_HEARTBEAT_INTERVAL": "1s", "SSE_POLL_INTERVAL": "100ms", "SSE_STATS_ENABLED": "1"}


def tell(agent, count: int = 1) -> None:
    """Append ``count`` events for ``agent`` in one transaction, as a transition would."""
    with transaction.atomic():
        transitions.agent_events_append(
            [(agent.pk, AgentEventKind.WEBHOOK_TEST, {"topic_id": None, "title": None, "n": i}) for i in range(count)]
        )


def stream(server: Stack, token: str | None, **headers: str) -> SseReader:
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    return SseReader(f"{server.base_url}/api/agents/me/events/", headers={**auth, **headers})


def agent_listeners(server: Stack) -> int:
    return httpx.get(f"{server.base_url}/api/_stream/stats/", timeout=5).json()["agents"]["listeners"]


def db_seqs(agent) -> list[int]:
    return list(AgentEvent.objects.filter(agent=agent).order_by("seq").values_list("seq", flat=True))


def test_the_agent_stream_resumes_exactly_across_a_reconnect_and_a_server_restart(make_agent):
    env = child_env(STREAM_SETTINGS)
    agent = make_agent(name="listener")
    other = make_agent(name="someone-else")
    token = token_issue(agent=agent)
    tell(agent, 3)
    tell(other, 2)  # never on this agent's stream

    with Stack(env=env, ticker=False, graceful_timeout=1) as server:
        first = stream(server, token)
        first.wait_for_seq(3)
        assert first.status == 200 and first.response_headers["content-type"] == "text/event-stream"
        wait_for(lambda: agent_listeners(server) == 1, timeout=10, message="the stream did not subscribe")
        tell(agent, 2)  # live
        first.wait_for_seq(5)
        first.wait_for(lambda r: r.comments, timeout=5, message="no heartbeat")
        first.close()

        tell(agent, 2)  # while disconnected
        again = stream(server, token, **{"Last-Event-ID": str(first.events[-1].id)})
        again.wait_for_seq(7)
        assert again.seqs == [6, 7], "exactly what was missed, nothing twice"
        again.close()
        last_seen = again.events[-1].id

    tell(agent, 3)  # while no server runs
    with Stack(env=env, ticker=False, graceful_timeout=1) as restarted:
        resumed = SseReader(
            f"{restarted.base_url}/api/agents/me/events/?after={last_seen}",
            headers={"Authorization": f"Bearer {token}"},
        )
        resumed.wait_for_seq(10)
        tell(agent)
        resumed.wait_for_seq(11)
        resumed.close()

    seen = [e.id for e in first.events] + again.seqs + resumed.seqs
    assert seen == db_seqs(agent) == list(range(1, 12))
    assert {e.kind for e in first.events + again.events + resumed.events} == {"webhook_test"}
    assert all(e.data["n"] is not None for e in resumed.events)


def test_the_agent_stream_ends_when_its_token_is_revoked_and_refuses_bad_requests(make_agent):
    env = child_env(STREAM_SETTINGS)
    agent = make_agent(name="revoked-listener")
    token = token_issue(agent=agent)
    with Stack(env=env, ticker=False, graceful_timeout=1) as server:
        reader = stream(server, token)
        wait_for(lambda: agent_listeners(server) == 1, timeout=10, message="the stream did not subscribe")
        tell(agent)
        reader.wait_for_seq(1)
        tokens_revoke(agent=agent)
        tell(agent)  # written after the revocation: must not reach the stream
        reader.wait_done(timeout=10)
        assert reader.ended and reader.seqs == [1]
        wait_for(lambda: agent_listeners(server) == 0, timeout=5, message="the listener outlived its stream")

        anonymous = httpx.get(f"{server.base_url}/api/agents/me/events/", timeout=5)
        assert (anonymous.status_code, anonymous.json()["code"]) == (401, "not_authenticated")
        revoked = httpx.get(
            f"{server.base_url}/api/agents/me/events/", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert (revoked.status_code, revoked.json()["code"]) == (401, "authentication_failed")
        fresh = token_issue(agent=agent)
        beyond = httpx.get(
            f"{server.base_url}/api/agents/me/events/?after=99",
            headers={"Authorization": f"Bearer {fresh}"},
            timeout=5,
        )
        assert (beyond.status_code, beyond.json()["code"]) == (400, "invalid_event_id")
