"""Hostile requests through the real worker path (azure-functions-runtime invoking function_app.py), as a
reviewer would send them: generated bodies, query strings, target names and identity headers on every HTTP
route. Zero 5xx; every 4xx in the error shape with its code in x-ms-error-code; no decoder text; a rejected
request answers in under 4 KiB, changes nothing (no request reaches the twin, no blob appears in the state
container) and leaves no log line with a CR/LF or over 1,000 characters.

REQUIRE_APP_ROLE is on, so a generated request that is valid and would apply a change is refused (403) instead of
rotating for real: reads and dry runs run for real against the twin; changes are tested elsewhere."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from azure.storage.blob import BlobServiceClient
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from tests.functions_host import FunctionsHost, HttpReply
from tests.rotation_support import apply_env, rotation_env
from tests.schema_check import validate_response
from tests.twin import Twin
from tests.world import TARGET, World

REJECTED_MAX_BYTES = 4096
DECODER_TEXT = ("Expecting", "JSONDecodeError", "Traceback", "(char ", "codec can't", "Exceeds the limit",
                "maximum recursion", "Invalid control character", "Extra data")

# function name, method, path (with {target} / {id} placeholders, as in the OpenAPI document)
ROUTES = [
    ("health", "GET", "health"), ("openapi", "GET", "openapi.json"), ("list_targets", "GET", "targets"),
    ("operation", "GET", "operations/{id}"),
    ("validate", "POST", "targets/{target}/validate"), ("rotate", "POST", "targets/{target}/rotate"),
    ("rotation", "GET", "targets/{target}/rotation"),
    ("reconcile_roles", "POST", "targets/{target}/roles/reconcile"),
    ("remediate", "POST", "targets/{target}/remediate"),
    ("cyclecloud_probe", "POST", "targets/{target}/cyclecloud/probe"),
]

_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
_json = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                         max_size=3), max_leaves=8)
_keys = st.sampled_from(["dry_run", "force", "principal_id", "scope", "role", "dry_run\r\nINFO forged", ""]) | st.text(
    max_size=24)
_objects = st.dictionaries(_keys, st.one_of(st.booleans(), _json), max_size=5).map(lambda d: json.dumps(d).encode())
_hostile = st.sampled_from([
    b"[" * 10_000 + b"]" * 10_000, b'{"dry_run": ' + b"9" * 5000 + b"}", b'{"dry_run": true, "dry_run": true}',
    b"\xff\xfe\x00{", b"NaN", b'{"dry_run": Infinity}', b"{" * 100, b'"string"', b"null", b"\xef\xbb\xbf{}",
    b'{"dry_run": true}', b'{"dry_run": false}', b'{"force": true}', b"{}", b"   ", b'{"a":1}' * 3,
    b'{"x": "' + b"y" * 70_000 + b'"}', json.dumps({f"key{i}\n": 1 for i in range(3000)}).encode(),
    b'{"\\ud800": true}', b'{"dry_run": 1e999}', b'{"dry_run": -0.0}', b"\x00",
])
BODIES = st.one_of(st.just(b""), _objects, _hostile, st.binary(max_size=64),
                   _json.map(lambda v: json.dumps(v).encode()))

_qkeys = st.sampled_from(["dry_run", "force", "code", "clientId", "DRY_RUN", "dry_run\n", "x"]) | st.text(max_size=10)
_qvals = st.sampled_from(["true", "false", "TRUE", "1", "0", "yes", "", "\r\n"]) | st.text(max_size=10)
QUERIES = st.one_of(
    st.just(""), st.just(""), st.sampled_from(["dry_run=true", "dry_run=false", "force=true&dry_run=1"]),
    st.lists(st.tuples(_qkeys, _qvals), max_size=4).map(urlencode),
    st.sampled_from(["dry_run=%ff", "%ff=1", "a&&b==c", "dry_run=%E2%80%A8", "x=" + "a" * 3000,
                     "&".join(f"p{i}=1" for i in range(30)), "dry_run=true&dry_run=false", "dry_run"]),
)
TARGETS = st.one_of(st.just(TARGET), st.just(TARGET), st.just(TARGET), st.just("nope"),
                    st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,20}\Z"),
                    st.text(max_size=80), st.just("hpc-prod\r\n2026-01-01 INFO forged"), st.just("A" * 5000))
OPERATION_IDS = st.one_of(st.from_regex(r"\A[0-9a-f]{32}\Z"), st.text(max_size=40))


def _principal(roles: list[str]) -> str:
    claims = [{"typ": "roles", "val": r} for r in roles]
    return base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()


HEADERS: st.SearchStrategy[dict[str, str]] = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"X-MS-CLIENT-PRINCIPAL-NAME": st.text(max_size=40),
                           "X-MS-CLIENT-PRINCIPAL-ID": st.text(max_size=40)}),
    st.fixed_dictionaries({"X-MS-CLIENT-PRINCIPAL": st.one_of(st.text(max_size=60), st.just(_principal(["Reader"])),
                                                              st.just("e30"), st.just("W10="))}),
)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def fuzz_env(functions_host: FunctionsHost, twin: Twin, cc_ca: str, azurite: str,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    env = rotation_env(twin, World(), cc_ca, azurite)
    env["REQUIRE_APP_ROLE"] = "true"
    env["HTTP_BUDGET_SECONDS"] = "10"
    apply_env(monkeypatch, env)
    functions_host.reset_app()
    yield env
    functions_host.reset_app()


def _blobs(env: dict[str, str]) -> list[str]:
    container = BlobServiceClient.from_connection_string(env["AzureWebJobsStorage"]).get_container_client(
        env["STATE_CONTAINER"])
    return sorted(b.name for b in container.list_blobs()) if container.exists() else []


def check_reply(reply: HttpReply, path: str, method: str) -> dict[str, Any] | None:
    """The rules every reply obeys, the OpenAPI document's included; returns the error object for a 4xx."""
    assert reply.status < 500, reply.body[:400]
    text = reply.body.decode("utf-8")
    for internal in DECODER_TEXT:
        assert internal not in text, (internal, text[:400])
    body = json.loads(text)
    validate_response(path, method, reply.status, body, reply.headers)
    if reply.status < 400:
        return None
    assert len(reply.body) < REJECTED_MAX_BYTES, len(reply.body)
    assert reply.headers.get("x-ms-error-code") == body["error"]["code"]
    assert "\n" not in body["error"]["message"] and "\r" not in body["error"]["message"]
    return dict(body["error"])


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(route=st.sampled_from(ROUTES), target=TARGETS, operation_id=OPERATION_IDS, query=QUERIES, body=BODIES,
       headers=HEADERS)
@example(route=ROUTES[8], target=TARGET, operation_id="x", query="dry_run=true", body=b"", headers={})
@example(route=ROUTES[8], target=TARGET, operation_id="x", query="", body=b"", headers={})
def test_no_request_produces_a_5xx_or_changes_anything_when_rejected(
        functions_host: FunctionsHost, twin: Twin, fuzz_env: dict[str, str], route: tuple[str, str, str],
        target: str, operation_id: str, query: str, body: bytes, headers: dict[str, str]) -> None:
    name, method, path = route
    documented = "/" + path.replace("{id}", "{operationId}")
    params: dict[str, str] = {}
    if "{target}" in path:
        params["target"] = target
        path = path.replace("{target}", quote(target, safe=""))
    if "{id}" in path:
        params["operation_id"] = operation_id
        path = path.replace("{id}", quote(operation_id, safe=""))
    url = f"http://localhost/api/{path}" + (f"?{query}" if query else "")
    seen, blobs = len(twin.request_log), _blobs(fuzz_env)
    records = _Records()
    logging.getLogger().addHandler(records)
    try:
        reply = functions_host.http(name, method, url, body=body, route_params=params,
                                    headers={"content-type": "application/json", **headers})
    finally:
        logging.getLogger().removeHandler(records)
    error = check_reply(reply, documented, method)
    event(f"status {reply.status}" + (f" {error['code']}" if error else ""))
    if error is None:
        return
    assert len(twin.request_log) == seen, f"a rejected request ({error['code']}) reached Azure"
    assert _blobs(fuzz_env) == blobs, f"a rejected request ({error['code']}) changed the state container"
    for record in records.records:
        if record.name.startswith(("shared", "function_app")):
            message = record.getMessage()
            assert "\n" not in message and "\r" not in message, message[:300]
            assert len(message) < 1000, message[:300]


def test_the_reviewers_cases(functions_host: FunctionsHost, twin: Twin, fuzz_env: dict[str, str]) -> None:
    """The cases from issue 11, one by one: each is a small 4xx in the error shape."""
    url = f"http://localhost/api/targets/{TARGET}/remediate"
    cases = {
        "a 5,000-digit number": (url, b'{"dry_run": ' + b"1" * 5000 + b"}", 400),
        "JSON nested 10,000 deep": (url, b"[" * 10_000 + b"]" * 10_000, 400),
        "12 MB of unknown keys": (url, json.dumps({f"k{i}": 0 for i in range(1_000_000)}).encode(), 413),
        "55 KB of unknown keys": (url, json.dumps({f"k{i}": 0 for i in range(5000)}).encode(), 400),
        "a decoder error": (url, b'{"dry_run": tru}', 400),
        "CR/LF in a key": (url, b'{"dry_run\\r\\n2026 INFO forged": true}', 400),
        "an unknown query parameter": (url + "?dryrun=true", b"", 400),
    }
    for case, (where, body, status) in cases.items():
        reply = functions_host.http("remediate", "POST", where, body=body, route_params={"target": TARGET})
        assert reply.status == status, (case, reply.body[:300])
        check_reply(reply, "/targets/{target}/remediate", "post")
    reply = functions_host.http("validate", "POST", "http://localhost/api/targets/x/validate",
                                route_params={"target": "hpc\r\n2026-12-01 INFO forged line"})
    assert reply.status == 400 and "\\x0d\\x0a" in reply.json()["error"]["message"]
    assert twin.request_log == []
