"""Verdict schemas are code staff write and the server runs (DESIGN.md, "Hostile input").

At save, through the real admin pages: a schema that refers outside itself,
loops, uses a regular expression RE2 refuses, or explodes once its
references are followed is a form error on ``schema``, and ``full_clean``
refuses it too. At verdict time: against any schema the admin accepted, the
answer is a 201 or a 400 within a second, with at most 10 errors, never a
fetch, never a 5xx; schemas stored before these rules are checked the same
safe way, and the admin warns about them.
"""

from __future__ import annotations

import json
import time

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from devtools.fabric_receiver import FabricServer
from tests.api_support import stage_topic
from tests.test_admin import browser_form, change_url, submit
from topics.models import Topic, TopicStatus, Verdict, VerdictSchema
from topics.verdict_schemas import MAX_SCHEMA_ERRORS, verdict_problems

pytestmark = pytest.mark.django_db

ADD = reverse("admin:topics_verdictschema_add")


@pytest.fixture
def fetch_target():
    """A real HTTP server a schema points at: it must never receive a request."""
    server = FabricServer().start()
    yield server
    server.stop()


def save_through_admin(staff_client, name: str, schema: dict | str):
    text = schema if isinstance(schema, str) else json.dumps(schema)
    return submit(staff_client, ADD, "verdictschema_form", name=name, schema=text, description="")


def schema_errors(response) -> list[str]:
    assert response.status_code == 200, response.status_code  # the page again, with errors: nothing saved
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["schema"], errors
    return errors["schema"]


def accepted(staff_client, name: str, schema: dict) -> VerdictSchema:
    response = save_through_admin(staff_client, name, schema)
    assert response.status_code == 302, response.context["adminform"].form.errors
    return VerdictSchema.objects.get(name=name)


def a_loop_of_defs() -> dict:
    return {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}


def doubling_refs(levels: int) -> dict:
    """No loop, but each level refers to the next twice: 2**levels subschemas to evaluate."""
    defs = {f"l{i}": {"allOf": [{"$ref": f"#/$defs/l{i + 1}"}, {"$ref": f"#/$defs/l{i + 1}"}]} for i in range(levels)}
    defs[f"l{levels}"] = {"type": "object"}
    return {"$defs": defs, "$ref": "#/$defs/l0"}


def a_chain_of_refs(length: int) -> dict:
    defs = {f"c{i}": {"$ref": f"#/$defs/c{i + 1}"} for i in range(length)}
    return {"$defs": {**defs, f"c{length}": {}}, "$ref": "#/$defs/c0"}


# --- refused at save ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        ({"$ref": "{url}/schema.json"}, "refers outside this schema"),
        ({"properties": {"winner": {"$ref": "{url}/winner.json#/x"}}}, "refers outside this schema"),
        ({"$ref": "file:///etc/passwd"}, "refers outside this schema"),
        ({"$ref": "winner.json"}, "refers outside this schema"),
        ({"$ref": "//127.0.0.1:9/x"}, "refers outside this schema"),
        ({"$defs": {"w": {"$id": "{url}/w", "enum": ["pro"]}}, "$ref": "{url}/w"}, "refers outside this schema"),
        ({"$defs": {"w": {"$id": "{url}/w", "$defs": {"x": {}}}}}, "nested $id"),
        ({"$dynamicRef": "#meta"}, "$dynamicRef is not allowed"),
        ({"$schema": "https://json-schema.org/draft/2019-09/schema", "$recursiveRef": "#"}, "$recursiveRef"),
        ({"$schema": "{url}/my-metaschema"}, "not a JSON Schema dialect"),
        ({"$ref": "#/$defs/missing"}, "points at nothing"),
    ],
    ids=[
        "absolute-url",
        "nested-url",
        "file",
        "relative-file",
        "network-path",
        "id-based",
        "nested-id",
        "dynamic-ref",
        "recursive-ref",
        "foreign-metaschema",
        "dangling",
    ],
)
def test_a_schema_referring_outside_itself_is_a_form_error(staff_client, fetch_target, schema, fragment):
    schema = json.loads(json.dumps(schema).replace("{url}", fetch_target.base_url))
    errors = schema_errors(save_through_admin(staff_client, "outside", schema))
    assert any(fragment in error for error in errors), errors
    assert not VerdictSchema.objects.filter(name="outside").exists()
    assert fetch_target.requests() == []  # checking the schema fetched nothing either


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#"},
        {"properties": {"winner": {"$ref": "#"}}},
        a_loop_of_defs(),
        {"$defs": {"unused": {"not": {"$ref": "#/$defs/unused"}}}},
        {"$defs": {"a": {"$anchor": "a", "anyOf": [{"$ref": "#a"}]}}},
    ],
    ids=["root", "through-a-property", "two-defs", "unused-def", "anchor"],
)
def test_a_reference_loop_is_a_form_error(staff_client, schema):
    errors = schema_errors(save_through_admin(staff_client, "loop", schema))
    assert any("makes a loop" in error for error in errors), errors


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        ({"properties": {"a": {"pattern": r"^(a)\1$"}}}, r"invalid escape sequence: \1"),
        ({"properties": {"a": {"pattern": "^(?=a)"}}}, "invalid perl operator: (?="),
        ({"properties": {"a": {"pattern": "^(?<!a)b"}}}, "invalid perl operator: (?<"),
        ({"properties": {"a": {"pattern": "^(?>a+)b"}}}, "invalid perl operator: (?>"),
        ({"properties": {"a": {"pattern": "^a++b"}}}, "bad repetition operator: ++"),
        ({"properties": {"a": {"pattern": r"a\Z"}}}, r"invalid escape sequence: \Z"),
        ({"properties": {"a": {"pattern": "^a{1001}$"}}}, "invalid repetition size"),
        ({"patternProperties": {r"^(\w)\1$": {}}}, "patternProperties"),
        ({"propertyNames": {"pattern": "^(?!x)"}}, "invalid perl operator"),
        ({"$defs": {"unused": {"pattern": r"(a)\1"}}}, "refused by RE2"),
    ],
    ids=[
        "backreference",
        "lookahead",
        "lookbehind",
        "atomic-group",
        "possessive",
        "python-end-anchor",
        "huge-repeat",
        "pattern-properties",
        "property-names",
        "in-an-unused-def",
    ],
)
def test_a_pattern_that_cannot_run_in_linear_time_is_a_form_error(staff_client, schema, fragment):
    errors = schema_errors(save_through_admin(staff_client, "regex", schema))
    assert any(fragment in error for error in errors), errors


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        (doubling_refs(30), "subschemas once its $refs are followed"),
        (a_chain_of_refs(100), "subschemas deep"),
        ('{"not":' * 70 + "{}" + "}" * 70, "Nested deeper than"),
        ("[" * 100_000 + "]" * 100_000, "Nested too deeply"),
    ],
    ids=["exponential", "long-chain", "deep", "absurdly-deep"],
)
def test_a_schema_too_large_to_run_is_a_form_error(staff_client, schema, fragment):
    errors = schema_errors(save_through_admin(staff_client, "huge", schema))
    assert any(fragment in error for error in errors), errors


def test_full_clean_refuses_what_the_form_refuses():
    with pytest.raises(ValidationError) as caught:
        VerdictSchema(name="sneaky", schema={"$ref": "http://127.0.0.1:9/x"}).full_clean()
    assert "refers outside this schema" in str(caught.value.message_dict["schema"])


def test_same_document_references_anchors_and_ordinary_patterns_are_saved(staff_client):
    schema = {
        "type": "object",
        "required": ["winner"],
        "$defs": {"camp": {"$anchor": "camp", "enum": ["pro", "con", "draw"]}, "score": {"type": "number"}},
        "properties": {
            "winner": {"$ref": "#camp"},
            "scores": {"additionalProperties": {"$ref": "#/$defs/score"}},
            "judge_id": {"type": "string", "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}$"},
            "notes": {"patternProperties": {"^(a+)+$": {"type": "string"}}},  # fine for RE2
        },
    }
    saved = accepted(staff_client, "rubric", schema)
    assert saved.schema == schema


# --- verdicts against accepted schemas --------------------------------------------------------


def judging_on(schema: VerdictSchema):
    staged = stage_topic("judging", now=timezone.now())
    Topic.objects.filter(pk=staged.topic.pk).update(verdict_schema=schema)
    return staged


def post_verdict(staged, verdict: object, rationale: str = "Because."):
    """The answer and the CPU time the request took.

    The test client runs the request in this thread, so thread CPU time is what the server spent on
    it; wall-clock time on a shared test machine mostly measures the other processes.
    """
    body = json.dumps({"verdict": verdict, "rationale": rationale})
    started = time.thread_time()
    response = staged.judge.client().generic(
        "POST", f"/api/topics/{staged.topic.pk}/verdict/", body, content_type="application/json"
    )
    return response, time.thread_time() - started


ADVERSARIAL = {
    # Exponential in Python's re for a string of a's ending in "!", linear in RE2.
    "nested-quantifier": (
        {"properties": {"winner": {"pattern": "^(a+)+$"}}},
        {"winner": "a" * 30_000 + "!"},
    ),
    "pattern-properties": (
        {"patternProperties": {"^(a+)+$": {"type": "integer"}}, "additionalProperties": False},
        {"a" * 30_000 + "!": 1},
    ),
    "unevaluated-properties": (
        {"patternProperties": {"^(a+)+$": {}}, "unevaluatedProperties": False},
        {"a" * 30_000 + "!": 1},
    ),
    # Linear in RE2, but with a thousand live states: ~4 s on 60 KB unless the work is budgeted.
    "wide-automaton": (
        {"properties": {"winner": {"allOf": [{"pattern": "[ab]*a[ab]{999}c"}] * 5}}},
        {"winner": "ab" * 30_000},
    ),
    # Pairwise comparison of 3,000 objects in jsonschema's uniqueItems fallback.
    "unique-objects": (
        {"properties": {"votes": {"uniqueItems": True}}},
        {"votes": [{"n": i} for i in range(3_000)] + [{"n": 0}]},
    ),
    "many-branches": (
        {"properties": {"votes": {"items": {"anyOf": [{"type": "string", "minLength": i} for i in range(1, 200)]}}}},
        {"votes": ["x"] * 20_000},
    ),
    "format-regex-is-an-annotation": (
        {"properties": {"winner": {"type": "string", "format": "regex"}}},
        {"winner": "(a+)+\\1" * 1000},
    ),
}


@pytest.mark.parametrize("case", list(ADVERSARIAL))
def test_a_verdict_against_an_accepted_adversarial_schema_is_answered_within_a_second(staff_client, case):
    schema, verdict = ADVERSARIAL[case]
    staged = judging_on(accepted(staff_client, case, schema))
    response, took = post_verdict(staged, verdict)
    assert response.status_code in (201, 400), response.content
    assert took < 1.0, f"{took:.2f} s"
    if response.status_code == 400:
        assert list(response.json()) == ["verdict"]
        assert len(response.json()["verdict"]) <= MAX_SCHEMA_ERRORS + 1


def test_a_stopped_check_says_why_and_stores_nothing(staff_client):
    schema, verdict = ADVERSARIAL["wide-automaton"]
    staged = judging_on(accepted(staff_client, "wide", schema))
    response, _ = post_verdict(staged, verdict)
    assert response.status_code == 400
    assert "too long for the schema's regular expressions" in response.json()["verdict"][-1]
    assert not Verdict.objects.exists()


def test_rules_are_re2s_and_json_schemas_not_pythons(staff_client):
    # ECMA-262, which JSON Schema's patterns are: \d is ASCII and $ is the very end. Python's re differs on both.
    staged = judging_on(accepted(staff_client, "ascii", {"properties": {"winner": {"pattern": r"^\d$"}}}))
    assert post_verdict(staged, {"winner": "٣"})[0].status_code == 400  # an Arabic-Indic digit
    assert post_verdict(staged, {"winner": "3\n"})[0].status_code == 400
    assert post_verdict(staged, {"winner": "3"})[0].status_code == 201


def test_tens_of_thousands_of_invalid_entries_are_refused_within_a_second_with_ten_errors(staff_client):
    schema = {"type": "object", "properties": {"scores": {"type": "array", "items": {"type": "string"}}}}
    staged = judging_on(accepted(staff_client, "strings", schema))
    response, took = post_verdict(staged, {"scores": [1] * 30_000})
    assert response.status_code == 400, response.content
    assert took < 1.0, f"{took:.2f} s"
    errors = response.json()["verdict"]
    assert len(errors) == MAX_SCHEMA_ERRORS
    assert errors[0] == "verdict.scores.0: 1 is not of type 'string'"


def test_a_verdict_over_64_kib_is_a_field_error(staff_client):
    staged = judging_on(accepted(staff_client, "open", {"type": "object"}))
    response, _ = post_verdict(staged, {"winner": "pro", "notes": "n" * (64 * 1024)})
    assert response.status_code == 400
    assert list(response.json()) == ["verdict"] and "at most 65536 bytes" in response.json()["verdict"][0]
    response, _ = post_verdict(staged, {"winner": "pro", "notes": "n" * (60 * 1024)})
    assert response.status_code == 201
    assert Topic.objects.get(pk=staged.topic.pk).status == TopicStatus.COMPLETED


# --- schemas stored before the rules ------------------------------------------------------------


def stored_before_the_rules(schema: dict) -> VerdictSchema:
    # objects.create skips full_clean: what a schema saved by an earlier version looks like.
    return VerdictSchema.objects.create(name=f"old-{len(VerdictSchema.objects.all())}", schema=schema)


def test_a_stored_schema_with_a_remote_ref_is_never_fetched(fetch_target, tmp_path):
    local = tmp_path / "winner.json"
    local.write_text(json.dumps({"enum": ["pro"]}))
    for ref in (f"{fetch_target.base_url}/winner.json", local.as_uri()):
        staged = judging_on(stored_before_the_rules({"properties": {"winner": {"$ref": ref}}}))
        response, took = post_verdict(staged, {"winner": "con"})
        assert response.status_code == 400, response.content
        assert "refers outside itself" in response.json()["verdict"][-1]
        assert took < 1.0
    assert fetch_target.requests() == []


def test_a_stored_looping_schema_is_a_400_not_a_500():
    staged = judging_on(stored_before_the_rules(a_loop_of_defs()))
    response, took = post_verdict(staged, {"winner": "pro"})
    assert response.status_code == 400, response.content
    assert "loop" in response.json()["verdict"][-1]
    assert took < 1.0


def test_a_stored_exponential_schema_is_stopped_within_a_second():
    staged = judging_on(stored_before_the_rules(doubling_refs(30)))
    response, took = post_verdict(staged, {"winner": "pro"})
    assert response.status_code == 400, response.content
    assert "longer than" in response.json()["verdict"][-1]
    assert took < 1.0


def test_the_admin_warns_about_a_stored_schema_the_rules_now_refuse(staff_client):
    schema = stored_before_the_rules({"properties": {"winner": {"pattern": r"(a)\1"}}})
    response = staff_client.get(change_url(schema))
    assert response.status_code == 200
    warnings = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("would be refused if saved today" in w and "refused by RE2" in w for w in warnings), warnings
    browser_form(response, "verdictschema_form")  # the page still works; staff replace or fix it


def test_the_winner_schema_passes_and_errors_are_capped_without_the_api(winner_schema):
    winner_schema.full_clean()
    verdict = {"winner": "pro", "scores": {f"s{i}": "high" for i in range(5_000)}}
    assert len(verdict_problems(verdict, winner_schema.schema)) == MAX_SCHEMA_ERRORS
