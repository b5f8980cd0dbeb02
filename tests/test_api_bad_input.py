"""Hand-written hostile input: every answer is a 4xx with the contract's shape, never a 500, and nothing is stored."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from tests.api_support import client, player, stage_topic
from topics.models import Argument, Signup, Verdict

pytestmark = pytest.mark.django_db

MAX = Argument.MAX_CONTENT_BYTES


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def debating(now):
    return stage_topic("debating", now=now)


@pytest.fixture
def judging(now):
    return stage_topic("judging", now=now)


def post_raw(p, path: str, body: bytes | str, content_type: str = "application/json"):
    return p.client().generic("POST", path, body, content_type=content_type)


def assert_code(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == code, response.json()


# --- JSON syntax ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"content": "unterminated',
        '{"content": "x"',  # truncated
        '{"content": }',
        "{'content': 'single quotes'}",
        '{"content": "x"} trailing',
        "   ",
        '{"content": NaN}',
        '{"content": Infinity}',
        '{"content": 1e999}',
        '{"content": 1' + "0" * 5000 + "}",  # over Python's int-digits limit
        "[" * 100_000 + "]" * 100_000,  # would blow the recursion limit
        '{"a":' * 40 + "1" + "}" * 40,  # deeper than we accept
    ],
    ids=[
        "unterminated",
        "truncated",
        "missing-value",
        "single-quotes",
        "trailing",
        "blank",
        "nan",
        "infinity",
        "overflow-float",
        "huge-int",
        "deep-array",
        "deep-object",
    ],
)
def test_malformed_json_is_parse_error(debating, body):
    response = post_raw(debating.pro, f"/api/topics/{debating.topic.pk}/arguments/", body)
    assert_code(response, 400, "parse_error")
    assert not Argument.objects.exists()


def test_an_empty_body_is_an_empty_object(debating):
    response = post_raw(debating.pro, f"/api/topics/{debating.topic.pk}/arguments/", "")
    assert response.status_code == 400 and list(response.json()) == ["content"]


def test_invalid_utf8_is_parse_error(debating):
    response = post_raw(debating.pro, f"/api/topics/{debating.topic.pk}/arguments/", b'{"content": "\xff\xfe"}')
    assert_code(response, 400, "parse_error")


@pytest.mark.parametrize(
    "charset", ["latin-1", "utf-16", "utf-32", "cp500", "idna", "punycode", "uu_codec", "no-such-codec", '"x;y"']
)
def test_a_charset_other_than_utf8_is_unsupported_media_type(debating, charset):
    # DESIGN.md, "Hostile input": JSON bodies are UTF-8; some codecs are slow, an unknown one was a 500.
    path = f"/api/topics/{debating.topic.pk}/arguments/"
    response = post_raw(debating.pro, path, '{"content": "café"}'.encode(), f"application/json; charset={charset}")
    assert_code(response, 415, "unsupported_media_type")
    assert "UTF-8" in response.json()["detail"]
    assert not Argument.objects.exists()


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "utf8", '"utf-8"'])
def test_utf8_spelled_any_usual_way_is_accepted(debating, charset):
    path = f"/api/topics/{debating.topic.pk}/arguments/"
    response = post_raw(debating.pro, path, '{"content": "café"}'.encode(), f"application/json; charset={charset}")
    assert response.status_code == 201 and response.json()["content"] == "café"


@pytest.mark.parametrize("body", ["[]", '"content"', "42", "null", '["content", "x"]'])
def test_a_body_that_is_not_an_object_is_a_non_field_error(debating, body):
    response = post_raw(debating.pro, f"/api/topics/{debating.topic.pk}/arguments/", body)
    assert response.status_code == 400, response.content
    assert set(response.json()) == {"detail", "code"}


# --- content type and size --------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "", "json"]
)
def test_wrong_or_missing_content_type_is_unsupported_media_type(debating, content_type):
    response = post_raw(debating.pro, f"/api/topics/{debating.topic.pk}/arguments/", '{"content": "x"}', content_type)
    assert_code(response, 415, "unsupported_media_type")
    assert not Argument.objects.exists()


def test_a_2mb_body_is_payload_too_large(debating):
    body = json.dumps({"content": "a" * (2 * 1024 * 1024)})
    response = post_raw(debating.pro, f"/api/topics/{debating.topic.pk}/arguments/", body)
    assert_code(response, 413, "payload_too_large")
    assert not Argument.objects.exists()


def test_a_2mb_verdict_is_payload_too_large(judging):
    body = json.dumps({"verdict": {"winner": "pro", "notes": "n" * (2 * 1024 * 1024)}, "rationale": "r"})
    assert_code(post_raw(judging.judge, f"/api/topics/{judging.topic.pk}/verdict/", body), 413, "payload_too_large")
    assert not Verdict.objects.exists()


# --- the byte limit -----------------------------------------------------------------


def test_emoji_argument_exactly_at_the_limit_is_accepted(debating):
    content = "😀" * (MAX // 4)  # 4 bytes each: exactly 32768 bytes, 8192 characters
    assert len(content.encode()) == MAX
    response = debating.pro.client().post(
        f"/api/topics/{debating.topic.pk}/arguments/", {"content": f"  {content}\n"}, format="json"
    )
    assert response.status_code == 201, response.content[:200]
    assert Argument.objects.get().content == content
    assert client().get(f"/api/topics/{debating.topic.pk}/arguments/").json()[0]["content"] == content


def test_emoji_argument_one_byte_over_the_limit_is_a_field_error(debating):
    content = "😀" * (MAX // 4) + "a"
    assert len(content.encode()) == MAX + 1
    response = debating.pro.client().post(
        f"/api/topics/{debating.topic.pk}/arguments/", {"content": content}, format="json"
    )
    assert response.status_code == 400
    assert "32768 bytes" in response.json()["content"][0] and "32769" in response.json()["content"][0]
    assert not Argument.objects.exists()


def test_three_byte_characters_count_as_three(debating):
    path = f"/api/topics/{debating.topic.pk}/arguments/"
    too_long = "€" * 10_923  # 32,769 bytes in only 10,923 characters
    assert debating.pro.client().post(path, {"content": too_long}, format="json").status_code == 400
    assert debating.pro.client().post(path, {"content": "€" * 10_922}, format="json").status_code == 201


# --- NUL bytes and lone surrogates ----------------------------------------------------


@pytest.mark.parametrize(
    "text", ["a\\u0000b", "\\ud800", "x\\udfffy", "\\ud83d"], ids=["nul", "high", "low", "half-emoji"]
)
def test_nul_and_lone_surrogates_in_an_argument_are_field_errors(debating, text):
    response = post_raw(debating.pro, f"/api/topics/{debating.topic.pk}/arguments/", f'{{"content": "{text}"}}')
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["content"]
    assert not Argument.objects.exists()


def test_a_paired_surrogate_escape_is_a_real_emoji(debating):
    response = post_raw(debating.pro, f"/api/topics/{debating.topic.pk}/arguments/", '{"content": "\\ud83d\\ude00"}')
    assert response.status_code == 201 and response.json()["content"] == "😀"


@pytest.mark.parametrize(
    "body, field",
    [
        ('{"verdict": {"winner": "pro"}, "rationale": "a\\u0000b"}', "rationale"),
        ('{"verdict": {"winner": "pro"}, "rationale": "\\udc00"}', "rationale"),
        ('{"verdict": {"winner": "pro", "note": "\\ud800"}, "rationale": "r"}', "verdict"),
        ('{"verdict": {"winner": "pro", "\\ud800": 1}, "rationale": "r"}', "verdict"),
        ('{"verdict": {"winner": "\\u0000"}, "rationale": "r"}', "verdict"),
    ],
)
def test_nul_and_lone_surrogates_in_a_verdict_are_field_errors(judging, body, field):
    response = post_raw(judging.judge, f"/api/topics/{judging.topic.pk}/verdict/", body)
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Verdict.objects.exists()


@pytest.mark.parametrize("camp", ['"\\ud800"', '"\\u0000"', '"' + "p" * 100_000 + '"', "1", "[]", "{}"])
def test_a_bad_camp_is_a_field_error_even_when_it_cannot_be_encoded(now, camp):
    staged = stage_topic("signup_open", now=now)
    response = post_raw(player(), f"/api/topics/{staged.topic.pk}/signups/", f'{{"camp": {camp}}}')
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["camp"]
    assert len(response.content) < 1000  # the rejected value is not echoed back
    assert not Signup.objects.exists()


# --- verdict shapes ---------------------------------------------------------------------


@pytest.mark.parametrize("verdict", ['["pro"]', '"pro"', '"{\\"winner\\": \\"pro\\"}"', "null"])
def test_a_verdict_that_is_a_list_or_a_string_is_a_field_error(judging, verdict):
    body = f'{{"verdict": {verdict}, "rationale": "because"}}'
    response = post_raw(judging.judge, f"/api/topics/{judging.topic.pk}/verdict/", body)
    assert response.status_code == 400 and list(response.json()) == ["verdict"]


def test_a_verdict_with_extreme_numbers_never_fails_on_storage(judging):
    body = {
        "verdict": {"winner": "pro", "scores": {"pro": 1.7976931348623157e308, "con": -(10**300)}},
        "rationale": "r",
    }
    response = judging.judge.client().post(f"/api/topics/{judging.topic.pk}/verdict/", body, format="json")
    assert response.status_code == 201, response.content
    assert client().get(f"/api/topics/{judging.topic.pk}/verdict/").json()["verdict"]["scores"]["con"] == -(10**300)


# --- paths and methods ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "segment",
    [
        "not-a-uuid",
        "123",
        "3f1c1c1e00004000800000000000000",  # one hex digit short
        "3f1c1c1e-0000-4000-8000-00000000000g",
        "%00",
        "%ED%A0%80",  # a lone surrogate, UTF-8 encoded
        "%FF",
        "a.b",
        "x" * 300,
        "..",
    ],
)
@pytest.mark.parametrize("tail", ["", "arguments/", "verdict/", "signups/"])
def test_invalid_uuids_in_the_path_are_json_not_found(segment, tail):
    me = player()
    path = f"/api/topics/{segment}/{tail}"
    for response in (client().get(path), me.client().post(path, {}, format="json")):
        assert response.status_code in (404, 405), (path, response.status_code)
        if response.status_code == 404:
            assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("path", ["/api/", "/api/nothing/", "/api/topics/x/y/z/", "/api/agents/a/b/"])
def test_unknown_api_paths_are_json_not_found(path):
    response = client().get(path)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


@pytest.mark.parametrize(
    "method, tail",
    [("put", ""), ("patch", ""), ("delete", ""), ("put", "arguments/"), ("delete", "verdict/"), ("get", "signups/")],
)
def test_wrong_methods_are_method_not_allowed(now, method, tail):
    staged = stage_topic("signup_open", now=now)
    response = getattr(player().client(), method)(f"/api/topics/{staged.topic.pk}/{tail}", {}, format="json")
    assert_code(response, 405, "method_not_allowed")
    assert "Allow" in response


def test_an_unacceptable_accept_header_is_not_acceptable(now):
    staged = stage_topic("signup_open", now=now)
    response = client().get(f"/api/topics/{staged.topic.pk}/", HTTP_ACCEPT="text/csv")
    assert response.status_code == 406 and response.json()["code"] == "not_acceptable"


@pytest.mark.parametrize("header", ["Bearer dlc_abc_é", "Bearer \x7f", "Bearer " + "A" * 10_000, "Bearer dlc__x"])
def test_odd_authorization_headers_are_authentication_failed(header):
    response = client().get("/api/topics/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401 and response.json()["code"] == "authentication_failed"


def test_a_blank_round_filter_is_a_field_error_not_no_filter(debating):
    # The document says integer; DRF would read a blank optional form value as absent.
    response = client().get(f"/api/topics/{debating.topic.pk}/arguments/?round=")
    assert response.status_code == 400 and list(response.json()) == ["round"]
    assert client().get(f"/api/topics/{debating.topic.pk}/arguments/?round=0").status_code == 200
    assert client().get(f"/api/topics/{debating.topic.pk}/arguments/").status_code == 200


@pytest.mark.parametrize("query", ["round=0.0", "round=1e0", "round=%200", "round=0&round=1", "round=1&round=0"])
def test_a_round_filter_is_one_integer_in_digits(debating, query):
    # DRF would take ?round=1.0 as 1 and the last of repeated values (schemathesis found it).
    response = client().get(f"/api/topics/{debating.topic.pk}/arguments/?{query}")
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["round"]


@pytest.mark.parametrize("path", ["/api/topics/", "/api/agents/"])
@pytest.mark.parametrize("page", ["", " ", "abc", "0", "99"])
def test_a_page_that_is_not_a_page_number_is_not_found(db, path, page):
    # The document says page is an integer; a blank one was read as page 1 (schemathesis found it).
    response = client().get(path, {"page": page})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
