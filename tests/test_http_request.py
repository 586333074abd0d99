"""The request parser on its own: limits, our own wording, options in body or query, log-safe escaping."""

from __future__ import annotations

import json

import pytest

from shared import http_routes
from shared.errors import BadRequestError
from shared.http_request import (
    MAX_BODY_BYTES,
    PayloadTooLargeError,
    RouteSpec,
    escape,
    log_safe,
    parse_request,
    quoted,
)

URL = "https://app.azurewebsites.net/api/targets/hpc-prod/remediate"
TARGET = {"target": "hpc-prod"}


def parse(body: bytes = b"", url: str = URL, route: RouteSpec = http_routes.REMEDIATE,
          target: dict[str, str] | None = None) -> dict[str, bool]:
    return parse_request(route, url=url, body=body, route_params=TARGET if target is None else target).options


def refused(body: bytes = b"", url: str = URL, route: RouteSpec = http_routes.REMEDIATE,
            target: dict[str, str] | None = None) -> BadRequestError:
    with pytest.raises(BadRequestError) as caught:
        parse(body, url, route, target)
    error = caught.value
    assert error.status in (400, 413)
    assert len(json.dumps(error.to_dict())) < 2048, "a rejected request's error must stay small"
    for internal in ("Expecting", "Traceback", "JSONDecodeError", "codec", "Exceeds the limit", "recursion"):
        assert internal not in json.dumps(error.to_dict()), internal
    return error


def test_defaults_per_route() -> None:
    assert parse() == {"dry_run": False}
    assert parse(route=http_routes.RECONCILE) == {"dry_run": True}
    assert parse(route=http_routes.ROTATE) == {"force": False, "dry_run": False}


@pytest.mark.parametrize("body, url", [
    (b'{"dry_run": true}', URL),
    (b"", URL + "?dry_run=true"),
    (b"", URL + "?dry_run=True&code=function-key-value"),
    (b'{"dry_run": true}', URL + "?dry_run=1"),
    (b"  \r\n ", URL + "?dry_run=true"),
])
def test_dry_run_in_the_body_or_the_query_means_the_same(body: bytes, url: str) -> None:
    assert parse(body, url) == {"dry_run": True}


def test_conflicting_and_repeated_options_are_named() -> None:
    error = refused(b'{"dry_run": false}', URL + "?dry_run=true")
    assert error.code == "conflicting_option" and "'dry_run'" in error.message
    assert refused(b"", URL + "?dry_run=true&dry_run=true").code == "conflicting_option"
    assert refused(b"", URL + "?dry_run=yes").code == "invalid_option"
    assert refused(b"", URL + "?dry_run").code == "invalid_option"


def test_unknown_query_parameters_are_refused_by_name_but_the_function_key_is_not() -> None:
    error = refused(b"", URL + "?dryrun=true&code=k")
    assert error.code == "unknown_query_parameter" and "'dryrun'" in error.message
    assert "code" not in error.details["parameters"]
    assert parse(b"", URL + "?code=secret-key&clientId=default") == {"dry_run": False}


def test_a_body_on_a_route_that_takes_none_is_refused() -> None:
    error = refused(b"{}", route=http_routes.PROBE)
    assert error.code == "body_not_allowed" and "probe" in error.message
    assert parse(b"", route=http_routes.PROBE) == {}
    assert parse(b"{}", route=http_routes.VALIDATE) == {}


def test_size_limit_is_413() -> None:
    big = b'{"a": "' + b"x" * MAX_BODY_BYTES + b'"}'
    with pytest.raises(PayloadTooLargeError) as caught:
        parse(big)
    assert caught.value.status == 413 and str(MAX_BODY_BYTES) in caught.value.message


def test_hostile_json_is_a_400_in_our_words() -> None:
    assert "nested more than" in refused(b"[" * 10_000 + b"]" * 10_000).message
    assert "number longer than" in refused(b'{"dry_run": ' + b"9" * 5000 + b"}").message
    assert refused(b'{"dry_run": NaN}').code == "invalid_body"
    assert refused(b'{"dry_run": true, "dry_run": false}').message.startswith("The body gives the field 'dry_run'")
    assert refused(b"\xff\xfe{}").message.startswith("The body is not UTF-8")
    assert refused(b'{"dry_run": tru}').message == "The body is not valid JSON at line 1, column 13."
    assert refused(b"[true]").message == "The body must be a JSON object, not an array."
    assert refused(b'{"dry_run": "true"}').code == "invalid_option"
    assert parse(b'\xef\xbb\xbf{"dry_run": true}') == {"dry_run": True}  # a BOM is allowed


def test_unknown_fields_name_at_most_three_and_count_the_rest() -> None:
    body = json.dumps({f"k{i}": 1 for i in range(5000)}).encode()
    error = refused(body)
    assert error.code == "unknown_field"
    assert "'k0', 'k1', 'k2' and 4997 more" in error.message
    assert error.details["count"] == 5000 and len(error.details["fields"]) == 3


def test_crlf_and_long_input_is_escaped_and_cut_in_messages() -> None:
    error = refused(json.dumps({"x\r\nFORGED log line" + "y" * 500: True}).encode())
    assert "\r" not in error.message and "\n" not in error.message and "\\x0d\\x0a" in error.message
    assert "y" * 40 not in error.message
    bad_target = refused(target={"target": "hpc\r\nINFO forged"})
    assert bad_target.code == "invalid_target_name" and "\n" not in bad_target.message


def test_target_names_must_be_slugs() -> None:
    assert refused(target={"target": "A" * 64}).code == "invalid_target_name"
    assert refused(target={"target": "../etc"}).code == "invalid_target_name"
    parsed = parse_request(http_routes.ROTATION, url=URL, body=b"", route_params={"target": "hpc-prod"})
    assert parsed.target == "hpc-prod"


def test_query_string_limits() -> None:
    assert refused(b"", URL + "?" + "&".join(f"a{i}=1" for i in range(40))).code == "invalid_query"
    assert refused(b"", URL + "?dry_run=%ff").code == "invalid_query"
    assert refused(b"", URL + "?x=" + "a" * 5000).code == "invalid_query"


def test_escaping_helpers() -> None:
    assert escape("a\r\nb\x00\u2028\\") == "a\\x0d\\x0ab\\x00\\u2028\\\\"
    assert escape("José \u202eevil\ud800") == "José \\u202eevil\\ud800"  # letters stay; bidi, surrogates escaped
    assert log_safe("x" * 500, 10) == "x" * 10 + "...(+490 chars)"
    assert "\n" not in log_safe("line1\nline2")
    assert quoted("abc") == "'abc'" and quoted("a" * 100).endswith("'...")
