"""Property-based run over our own OpenAPI document with schemathesis, in-process through the WSGI app.

Every operation (except the endless SSE stream) gets positive and negative
cases (schemathesis generates valid and invalid parameters and bodies), sent
anonymously, with each kind of valid token (pro, con, judge, an outsider) and
with a revoked one, against topics in every state, each strategy with its own
fuzzed headers (``Content-Type`` with parameters, ``Last-Event-ID``,
``If-None-Match``). Every answer must be a
non-5xx that matches the document: documented status, content type, headers
and body schema. The run is seeded, so a failure reproduces.
"""

from __future__ import annotations

import codecs
import random

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from dialectic.wsgi import application
from tests.api_support import STAGES, player, stage_topic
from topics import services
from topics.tokens import tokens_revoke

pytestmark = pytest.mark.django_db

# Run on top of schemathesis' default checks, so these are asserted whatever its defaults become.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Per operation, generation mode and caller. 9 operations x 2 modes x 6 callers x this = the request count.
EXAMPLES = 12
MIN_REQUESTS = 1000
# Endless streams; tests/test_sse_* and tests/test_agent_stream.py cover them.
# Setting a webhook resolves the URL's host: a schema-valid URL is refused unless it names a real public
# server, so generated bodies only ever find 400s; tests/test_webhooks.py covers it.
SKIPPED_OPERATIONS = {"topics_events", "agents_me_events", "agents_me_webhook_set"}
# A verdict is valid against its own topic's verdict schema, which no single document can state: a body the
# document allows (any JSON object) is refused with a 400 field error when that schema, or the text rules
# for every string in it, say no. Every other check still applies to it.
EXCLUDED_CHECKS = {"verdict_create": [positive_data_acceptance]}
PANEL_OPERATIONS = {"topics_retrieve", "arguments_list", "verdict_retrieve", "verdict_create"}
# Operations with neither parameters nor a body: nothing to make invalid.
NO_INPUT = {"GET /api/agents/me/", "GET /api/agents/me/webhook/", "DELETE /api/agents/me/webhook/"} | {
    "POST /api/agents/me/webhook/test/"
}

UTF8 = ["utf-8", "UTF-8", "utf8", '"utf-8"', "Utf-8"]
CHARSETS = ["latin-1", "utf-16", "utf-32", "cp500", "utf-7", "idna", "punycode", "bogus", "", '"', "x" * 300]
ETAGS = ["*", '""', '"abc"', 'W/"abc", "def"', "W/", '"unterminated', "*, *", ","]
EVENT_IDS = ["0", "1", "-1", "9" * 40, "1e3", "+7", "", "abc", "\u00e9"]


def _noise(rng: random.Random) -> str:
    # Header values as a client can send them: printable Latin-1, never CR or LF.
    return "".join(chr(rng.choice([*range(0x20, 0x7F), *range(0xA0, 0x100)])) for _ in range(rng.randrange(0, 40)))


def fuzzed_headers(rng: random.Random, *, with_content_type: bool, valid: bool) -> dict[str, str]:
    """A few odd headers, from a generator of their own: hypothesis' cases stay what they were without them.

    Django decodes the query string with the Content-Type's charset while it builds the request,
    before any view or middleware: a codec that is not a text encoding (rot13, hex…) raises on
    every request, some text codecs on some query strings. Refusing those on every request is
    the server edge's job (the ASGI guard; docs/security.md, "What remains"), so a fuzzed charset
    goes only on operations without query parameters, and never names a non-text codec. A valid
    (positive) case keeps a UTF-8 charset: any other makes the request one the server must refuse.
    """
    headers = {}
    if with_content_type and rng.random() < 0.8:
        charset = rng.choice(UTF8) if valid else rng.choice([*UTF8, *CHARSETS, _noise(rng)])
        try:
            if not codecs.lookup(charset.strip('"'))._is_text_encoding:
                charset = "bogus"
        except LookupError:
            pass
        headers["Content-Type"] = rng.choice(
            [f"application/json; charset={charset}", f"application/json; boundary=x; charset={charset}; q=0.5"]
        )
    if rng.random() < 0.8:
        headers["Last-Event-ID"] = rng.choice([*EVENT_IDS, _noise(rng)])
    if rng.random() < 0.8:
        headers["If-None-Match"] = rng.choice([*ETAGS, _noise(rng)])
    # No leading or trailing whitespace: HTTP clients refuse to send it (and servers strip it anyway).
    return {name: value.strip() for name, value in headers.items()}


@pytest.fixture
def keep_connection():
    """Like Django's test client: the WSGI handler must not close the connection holding the test transaction."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def world(settings, keep_connection):
    """Topics in every state (public and private) and the callers to send."""
    settings.THROTTLE_AGENT_WRITES = "100000/minute"  # the run is about shapes, not the rate limit
    now = timezone.now()
    staged = [stage_topic(stage, now=now, seed=i) for i, stage in enumerate(STAGES)]
    staged.append(stage_topic("debating", now=now, visibility="private", max_arguments_per_round=3))
    staged.append(stage_topic("judging", now=now, visibility="private"))
    # Panels and blind judging: masked debaters (a null id), a panel awaiting ballots, a decided one with its split.
    # (Sent to the reads and the verdict only: signups and arguments would just meet more 409s there, and
    # take draws from the topics where writes succeed.)
    blind = stage_topic("debating", now=now, judge_count=3, blind_judging=True, seed=20)
    panel = stage_topic("judging", now=now, judge_count=3, blind_judging=True, seed=21)
    decided = stage_topic("judging", now=now, judge_count=3, seed=22)
    for judge, winner in zip(decided.judges, ("pro", "con", "pro"), strict=True):
        services.verdict_create(topic_id=decided.topic.pk, judge=judge.agent, verdict={"winner": winner}, rationale="r")
    debate = staged[STAGES.index("debating")]
    revoked = player()
    tokens_revoke(agent=revoked.agent)
    callers = {
        "anonymous": None,
        "pro": debate.pro.token,
        "con": debate.con.token,
        "judge": staged[STAGES.index("judging")].judge.token,
        "panel_judge": panel.judges[1].token,
        "outsider": player().token,
        "revoked": revoked.token,
    }
    return [str(s.topic.pk) for s in staged], [str(s.topic.pk) for s in (blind, panel, decided)], callers


def _fuzz(strategy, examples: int, *, auth: dict[str, str], operation, sent: dict[int, int]) -> None:
    """Send ``examples`` cases of ``strategy`` and check each answer; count the answers by status in ``sent``."""

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],  # no shrinking: the failure message already has the request
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case):
        # The token goes in at call time, where schemathesis knows it is a real one: its ignored_auth
        # check then resends each 2xx without it and with a forged one, and expects a 401 (a token
        # in a generated header it would take for a guess, and any 2xx for a bypass).
        response = case.call_and_validate(
            headers=auth or None,
            additional_checks=CHECKS,
            excluded_checks=EXCLUDED_CHECKS.get(operation.definition.raw.get("operationId"), []),
        )
        sent[response.status_code] = sent.get(response.status_code, 0) + 1

    run()


def test_schemathesis_finds_no_5xx_and_no_schema_violations(world):
    topic_ids, panel_ids, callers = world
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if op.definition.raw.get("operationId") not in SKIPPED_OPERATIONS]
    assert len(operations) == 14, [op.label for op in operations]
    sent: dict[int, int] = {}
    fuzzed: dict[str, int] = {}
    rng = random.Random(12)

    for operation in operations:
        operation_id = operation.definition.raw.get("operationId")
        has_id = "{id}" in operation.path
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for caller, token in callers.items():
                auth = {"Authorization": f"Bearer {token}"} if token else {}

                def headers():
                    extra = fuzzed_headers(
                        rng,
                        with_content_type=operation.method.upper() != "GET",
                        valid=mode is GenerationMode.POSITIVE,
                    )
                    for name in extra:
                        fuzzed[name] = fuzzed.get(name, 0) + 1
                    return extra or None

                strategies = [operation.as_strategy(mode, headers=headers())]
                if has_id:
                    # Generated ids only ever find 404s; real topics reach the gates, the bodies and the writes
                    # (in negative mode schemathesis then makes the body or the query invalid instead).
                    strategies += [
                        operation.as_strategy(mode, headers=headers(), path_parameters={"id": tid})
                        for tid in topic_ids + (panel_ids if operation_id in PANEL_OPERATIONS else [])
                    ]
                # All of them mixed, then (valid cases) one on each real topic: hypothesis spreads the mixed
                # examples unevenly, and the one topic where a caller may write must not be left to chance.
                runs = [(st.one_of(strategies), EXAMPLES)]
                if mode is GenerationMode.POSITIVE:
                    runs += [(strategy, 1) for strategy in strategies[1:]]
                for strategy, examples in runs:
                    try:
                        _fuzz(strategy, examples, auth=auth, operation=operation, sent=sent)
                    except hypothesis.errors.Unsatisfiable:
                        # Nothing to make invalid: the operation has neither parameters nor a body.
                        assert mode is GenerationMode.NEGATIVE and operation.label in NO_INPUT, operation.label
                    except Exception as exc:
                        raise AssertionError(f"{operation.label} ({mode.value}, {caller}): {exc}") from exc

    total = sum(sent.values())
    print(f"schemathesis: {total} requests, by status {dict(sorted(sent.items()))}, fuzzed strategies {fuzzed}")
    assert total >= MIN_REQUESTS
    assert not [code for code in sent if code >= 500]
    # The run reached past the 404s: writes succeeded and the gates answered.
    assert {200, 201, 400, 401, 403, 404, 409} <= set(sent), sent
    # Each fuzzed header rode on many strategies, and odd charsets reached the parser and were refused.
    assert min(fuzzed.get(name, 0) for name in ("Content-Type", "Last-Event-ID", "If-None-Match")) >= 50, fuzzed
    assert sent.get(415, 0) >= 5, sent
