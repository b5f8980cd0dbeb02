"""examples/agent.py on its own: how its client reacts to each kind of answer, and the verdicts it builds.

The happy path against the real server is tests/test_demo_flow.py; here a
scripted HTTP server (devtools/fabric_receiver.py) plays the bad days: 5xx,
429 with Retry-After, 401, refused connections.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import jsonschema
import pytest

from devtools.fabric_receiver import FabricServer, Reply

AGENT_PY = Path(__file__).resolve().parent.parent / "examples" / "agent.py"
spec = importlib.util.spec_from_file_location("reference_agent", AGENT_PY)
agent = importlib.util.module_from_spec(spec)
sys.modules["reference_agent"] = agent  # dataclasses look their module up by name
spec.loader.exec_module(agent)

WINNER = {
    "type": "object",
    "required": ["winner"],
    "properties": {
        "winner": {"enum": ["pro", "con", "draw"]},
        "scores": {"type": "object", "additionalProperties": {"type": "number"}},
    },
}


@pytest.fixture
def server():
    server = FabricServer().start()
    yield server
    server.stop()


def api(server: FabricServer, **kwargs) -> agent.Api:
    kwargs.setdefault("backoff", 0.01)
    return agent.Api(server.base_url, "dlc_abc_secret", log=lambda message: None, **kwargs)


def test_server_errors_are_retried_until_an_answer(server):
    server.script(Reply(503), Reply(502, body="<html>bad gateway</html>"), Reply(200, body={"ok": True}))
    reply = api(server).call("GET", "/api/agents/me/")
    assert reply.status == 200 and reply.body == {"ok": True}
    assert len(server.requests()) == 3
    assert server.requests()[0].headers["authorization"] == "Bearer dlc_abc_secret"


def test_throttled_waits_for_retry_after(server):
    server.script(Reply(429, body={"detail": "slow down", "code": "throttled"}, headers={"Retry-After": "0.3"}))
    server.script(Reply(201, body={"id": 1}))
    reply = api(server).call("POST", "/api/topics/x/arguments/", json={"content": "hi"})
    assert reply.status == 201
    first, second = server.requests()
    assert second.at - first.at >= 0.3
    assert second.json == {"content": "hi"}


def test_unauthorized_stops_at_once(server):
    server.script(Reply(401, body={"detail": "Invalid token.", "code": "authentication_failed"}))
    with pytest.raises(agent.AuthFailed, match="Invalid token"):
        api(server).call("GET", "/api/agents/me/")
    assert len(server.requests()) == 1


def test_conflicts_come_back_with_their_code(server):
    server.script(Reply(409, body={"detail": "Already judged.", "code": "verdict_exists"}))
    reply = api(server).call("POST", "/api/topics/x/verdict/", json={})
    assert (reply.status, reply.code) == (409, "verdict_exists")
    assert len(server.requests()) == 1  # a 4xx is an answer, not a failure to retry


def test_gives_up_after_max_retries(server):
    server.default = Reply(500)
    with pytest.raises(agent.ServerUnavailable, match="3 tries"):
        api(server, max_retries=3).call("GET", "/api/topics/")
    assert len(server.requests()) == 3


def test_refused_connections_are_retried_then_reported(server):
    server.stop()
    with pytest.raises(agent.ServerUnavailable):
        api(server, max_retries=2).call("GET", "/api/topics/")


def test_command_line_exits_2_with_a_message_when_the_token_is_refused(server, capsys):
    server.default = Reply(401, body={"detail": "Invalid token.", "code": "authentication_failed"})
    code = agent.main(["--base-url", server.base_url, "--token", "dlc_abc_wrong", "--once"])
    assert code == 2
    assert "refused the token" in capsys.readouterr().err


@pytest.fixture
def elsewhere():
    """Another real server: a link to it must never be followed, least of all with the token."""
    other = FabricServer().start()
    yield other
    other.stop()


def test_gets_are_conditional_and_a_304_reuses_the_body_held(server):
    server.script(
        Reply(200, body={"assignments": []}, headers={"ETag": '"v1"'}),
        Reply(304, body="", headers={"ETag": '"v1"'}),
        Reply(200, body={"assignments": [1]}, headers={"ETag": '"v2"'}),
        Reply(304, body="", headers={"ETag": '"v2"'}),
    )
    client = api(server)
    first = client.me()
    assert client.me() == first == {"assignments": []}
    assert client.me() == {"assignments": [1]}
    assert client.me() == {"assignments": [1]}
    sent = [r.headers.get("if-none-match") for r in server.requests()]
    assert sent == [None, '"v1"', '"v1"', '"v2"']
    # Writes are never conditional.
    server.script(Reply(201, body={"id": 1}))
    client.call("POST", "/api/agents/me/", json={})
    assert server.requests()[-1].headers.get("if-none-match") is None


def page(results: list, next_link: str | None) -> Reply:
    return Reply(200, body={"count": 9, "next": next_link, "previous": None, "results": results})


def test_pagination_follows_next_links_on_its_own_server(server):
    server.script(
        page([{"id": 1}], f"{server.base_url}/api/topics/?page=2&status=signup_open"),
        page([{"id": 2}], None),
    )
    assert api(server).topics("signup_open") == [{"id": 1}, {"id": 2}]
    assert [r.path for r in server.requests()] == [
        "/api/topics/?status=signup_open",
        "/api/topics/?page=2&status=signup_open",
    ]


@pytest.mark.parametrize(
    "where",
    [
        "{other}/api/topics/?page=2",  # another port on the same host is another origin
        "https://127.0.0.1:{port}/api/topics/?page=2",  # another scheme
        "http://localhost:{port}/api/topics/?page=2",  # another host name for the same machine
        "//127.0.0.1:{other_port}/api/topics/",  # protocol-relative
        "http://127.0.0.1:{port}@127.0.0.1:{other_port}/api/topics/",  # credentials trick
        "http://127.0.0.1:notaport/x",
    ],
    ids=["other-port", "other-scheme", "other-host", "protocol-relative", "userinfo", "bad-port"],
)
def test_a_next_link_to_another_origin_is_refused_and_never_gets_the_token(server, elsewhere, where):
    link = where.format(other=elsewhere.base_url, port=server.port, other_port=elsewhere.port)
    server.script(page([{"id": 1}], link))
    with pytest.raises(agent.ForeignLink, match="refusing to follow") as refused:
        api(server).topics("signup_open")
    assert server.base_url in str(refused.value)
    assert len(server.requests()) == 1
    assert elsewhere.requests() == []


def test_the_command_line_exits_1_with_a_message_on_a_foreign_link(server, elsewhere, capsys):
    server.script(Reply(200, body={"id": "a1", "name": "bot"}), page([], f"{elsewhere.base_url}/steal"))
    code = agent.main(["--base-url", server.base_url, "--token", "dlc_abc_secret", "--once"])
    assert code == 1
    assert "link to another host" in capsys.readouterr().err
    assert elsewhere.requests() == []


def test_a_local_verdict_check_never_fetches_a_ref(elsewhere):
    schema = {"type": "object", "required": ["winner"], "properties": {"winner": {"enum": ["pro", "con"]}}}
    schema["properties"]["scores"] = {"$ref": f"{elsewhere.base_url}/scores.json"}
    with pytest.raises(agent.CannotBuild, match="does not fetch"):
        agent.build_verdict(schema, winner="pro", scores={"pro": 1.0, "con": 0.0})
    assert elsewhere.requests() == []


def test_verdict_for_the_winner_schema_is_valid_and_carries_the_decision():
    verdict = agent.build_verdict(WINNER, winner="con", scores={"pro": 1.5, "con": 2.0})
    assert verdict == {"winner": "con", "scores": {"pro": 1.5, "con": 2.0}}
    jsonschema.validate(verdict, WINNER)


def test_verdict_for_another_schema_is_a_minimal_valid_instance():
    schema = {
        "type": "object",
        "required": ["outcome", "confidence", "reasons", "unanimous"],
        "properties": {
            "outcome": {"enum": ["pro", "con"]},
            "confidence": {"type": "integer", "minimum": 1, "maximum": 5},
            "reasons": {"type": "array", "minItems": 2, "items": {"type": "string", "minLength": 3}},
            "unanimous": {"type": "boolean"},
        },
        "additionalProperties": False,
    }
    verdict = agent.build_verdict(schema, winner="pro", scores={})
    jsonschema.validate(verdict, schema)
    assert verdict["outcome"] == "pro"


def test_verdict_for_an_unsupported_schema_is_refused_not_guessed():
    with pytest.raises(agent.CannotBuild, match=r"\$ref"):
        agent.build_verdict({"$ref": "#/definitions/v"}, winner="pro", scores={})
    with pytest.raises(agent.CannotBuild, match="pattern"):
        agent.build_verdict(
            {"type": "object", "required": ["id"], "properties": {"id": {"type": "string", "pattern": "^[A-Z]{3}$"}}},
            winner="pro",
            scores={},
        )


def test_judge_picks_the_camp_with_more_substance():
    transcript = [
        {"camp": "pro", "content": "short"},
        {"camp": "con", "content": "a much longer argument " * 40},
        {"camp": "con", "content": "and another"},
    ]
    winner, scores, rationale = agent.judge({"title": "t"}, transcript)
    assert winner == "con" and scores["con"] > scores["pro"]
    assert "3 arguments" in rationale
    assert agent.judge({"title": "t"}, [])[0] == "draw"
