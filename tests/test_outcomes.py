"""x-outcome: which schemas are rated, what the check at save refuses (through the real admin form), reading it."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from tests.test_admin import submit
from topics.models import VerdictSchema
from topics.outcomes import outcome_pointer, outcome_problem, pointer_tokens, verdict_outcome


def obj(properties: dict, required: list[str] | None = None, **extra) -> dict:
    return {"type": "object", "required": required or list(properties), "properties": properties, **extra}


OUTCOME = {"enum": ["pro", "con", "draw"]}

ACCEPTED = [
    obj({"winner": OUTCOME}, **{"x-outcome": "/winner"}),
    obj({"winner": {"type": "string", "enum": ["pro", "con"]}}, **{"x-outcome": "/winner"}),  # no draws allowed
    obj({"w": {"oneOf": [{"const": "pro"}, {"const": "con"}, {"const": "draw"}]}}, **{"x-outcome": "/w"}),
    obj({"result": obj({"side": OUTCOME})}, **{"x-outcome": "/result/side"}),
    obj({"a/b": OUTCOME}, **{"x-outcome": "/a~1b"}),
    obj({"winner": {"$ref": "#/$defs/side"}}, **{"x-outcome": "/winner", "$defs": {"side": OUTCOME}}),
    obj({"score": {"type": "number"}}),  # no x-outcome: valid, simply not rated
]

REFUSED = [
    (obj({"winner": OUTCOME}, **{"x-outcome": "winner"}), "must be a JSON Pointer"),
    (obj({"winner": OUTCOME}, **{"x-outcome": ""}), "must be a JSON Pointer"),
    (obj({"winner": OUTCOME}, **{"x-outcome": "/win~2ner"}), "must be a JSON Pointer"),
    (obj({"winner": OUTCOME}, **{"x-outcome": 3}), "must be a JSON Pointer"),
    (obj({"winner": OUTCOME}, **{"x-outcome": "/loser"}), "does not define"),
    (obj({"winner": OUTCOME}, required=["other"], **{"x-outcome": "/winner"}), "not required"),
    (obj({"winner": {"type": "string"}}, **{"x-outcome": "/winner"}), "constrained to pro, con"),
    (obj({"winner": {"enum": ["pro", "con", "draw", "both"]}}, **{"x-outcome": "/winner"}), "constrained"),
    (obj({"winner": {"enum": ["pro", "draw"]}}, **{"x-outcome": "/winner"}), "constrained"),
    (obj({"winner": {"const": "pro"}}, **{"x-outcome": "/winner"}), "constrained"),  # a rigged schema
    (obj({"winner": {"$ref": "#/$defs/nowhere"}}, **{"x-outcome": "/winner"}), "constrained"),
    (
        obj({"winner": {"$ref": "#/$defs/a"}}, **{"x-outcome": "/winner", "$defs": {"a": {"$ref": "#/$defs/a"}}}),
        "constrained",
    ),
]


@pytest.mark.parametrize("schema", ACCEPTED)
def test_accepted_outcomes(schema):
    assert outcome_problem(schema) is None


@pytest.mark.parametrize(("schema", "fragment"), REFUSED)
def test_refused_outcomes(schema, fragment):
    problem = outcome_problem(schema)
    assert problem is not None and fragment in problem


def test_pointer_tokens_follow_rfc_6901():
    assert pointer_tokens("/a~1b/c~0d/") == ["a/b", "c~d", ""]
    assert pointer_tokens("a") is None and pointer_tokens("/~") is None and pointer_tokens(None) is None


def test_a_verdicts_outcome_is_read_at_the_pointer():
    nested = ACCEPTED[3]
    assert verdict_outcome(nested, {"result": {"side": "con"}}) == "con"
    assert verdict_outcome(nested, {"result": {}}) is None
    assert verdict_outcome(ACCEPTED[-1], {"score": 3}) is None  # unrated schema
    assert outcome_pointer(ACCEPTED[-1]) is None and outcome_pointer(ACCEPTED[0]) == "/winner"


def test_the_migrations_rate_the_winner_schema(winner_schema):
    assert winner_schema.schema["x-outcome"] == "/winner"
    assert outcome_problem(winner_schema.schema) is None
    assert verdict_outcome(winner_schema.schema, {"winner": "draw", "scores": {"pro": 1}}) == "draw"


# --- the admin -----------------------------------------------------------------------


@pytest.mark.parametrize(("schema", "fragment"), [REFUSED[0], REFUSED[5], REFUSED[6]])
def test_the_admin_form_refuses_a_bad_outcome(staff_client, schema, fragment):
    url = reverse("admin:topics_verdictschema_add")
    response = submit(staff_client, url, "verdictschema_form", name="bad-outcome", schema=json.dumps(schema))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["schema"] and fragment in errors["schema"][0]
    assert not VerdictSchema.objects.filter(name="bad-outcome").exists()


def test_the_admin_saves_a_rated_schema_and_lists_which_are_rated(staff_client, winner_schema):
    url = reverse("admin:topics_verdictschema_add")
    response = submit(staff_client, url, "verdictschema_form", name="nested", schema=json.dumps(ACCEPTED[3]))
    assert response.status_code == 302
    VerdictSchema.objects.create(name="scores-only", schema=ACCEPTED[-1])
    page = staff_client.get(reverse("admin:topics_verdictschema_changelist")).content.decode()
    listing = page.split('id="result_list"', 1)[1]
    rows = {name: listing.split(f">{name}<", 1)[1].split("</tr>", 1)[0] for name in ("winner", "nested", "scores-only")}
    assert "/winner" in rows["winner"]
    assert "/result/side" in rows["nested"]
    assert "not rated" in rows["scores-only"]
