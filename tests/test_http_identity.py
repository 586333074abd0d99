"""Caller identity and audit: X-MS-CLIENT-PRINCIPAL* read as App Service Authentication sets them, recorded for
every change (response, rotation journal, log fields); REQUIRE_APP_ROLE refuses changes without the app role
(403 in the error shape, before any cloud call) while reads, dry runs and function keys keep working."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from shared.caller import ForbiddenError, InvalidPrincipalError, caller_from_headers, require_role
from shared.config import OPERATE_ROLE
from tests.functions_host import FunctionsHost
from tests.rotation_support import apply_env, rotation_env
from tests.schema_check import validate_response
from tests.twin import Twin
from tests.world import TARGET, World

ALICE_ID = "6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f"


def principal(roles: list[str], name: str = "alice@contoso.com") -> str:
    claims = [{"typ": "roles", "val": r} for r in roles] + [{"typ": "name", "val": name}]
    data = {"auth_typ": "aad", "name_typ": "name", "role_typ": "roles", "claims": claims}
    return base64.b64encode(json.dumps(data).encode()).decode()


def signed_in(roles: list[str]) -> dict[str, str]:
    return {"content-type": "application/json", "X-MS-CLIENT-PRINCIPAL": principal(roles),
            "X-MS-CLIENT-PRINCIPAL-NAME": "alice@contoso.com", "X-MS-CLIENT-PRINCIPAL-ID": ALICE_ID,
            "X-MS-CLIENT-PRINCIPAL-IDP": "aad"}


# -- the headers ------------------------------------------------------------------------------------------------


def test_principal_headers_are_read_as_easy_auth_sets_them() -> None:
    caller = caller_from_headers(signed_in([OPERATE_ROLE, "Reader"]))
    assert caller.label == f"alice@contoso.com ({ALICE_ID})"
    assert caller.roles == {OPERATE_ROLE, "Reader"} and caller.identity_provider == "aad"
    assert caller_from_headers({"x-ms-client-principal": principal([], name="bob")}).label == "bob"
    assert caller_from_headers({}).label == "function key" and not caller_from_headers({}).signed_in


def test_identity_text_is_escaped_and_short_and_a_forged_principal_is_a_400() -> None:
    caller = caller_from_headers({"X-MS-CLIENT-PRINCIPAL-NAME": "mallory\r\n2026 INFO forged" + "x" * 500})
    assert "\n" not in caller.label and "\\x0d\\x0a" in caller.label and len(caller.label) < 200
    for bad in ("%%%", base64.b64encode(b"[1, 2]").decode(), "A" * 20_000):
        with pytest.raises(InvalidPrincipalError):
            caller_from_headers({"X-MS-CLIENT-PRINCIPAL": bad})


def test_require_role() -> None:
    require_role(caller_from_headers({}), None, "x")  # not required: a function key is enough
    require_role(caller_from_headers(signed_in([OPERATE_ROLE])), OPERATE_ROLE, "x")
    with pytest.raises(ForbiddenError) as caught:
        require_role(caller_from_headers(signed_in(["Reader"])), OPERATE_ROLE, "POST /api/targets/t/rotate")
    assert caught.value.status == 403 and OPERATE_ROLE in caught.value.message
    assert "alice@contoso.com" in caught.value.message


# -- through the worker -------------------------------------------------------------------------------------


@pytest.fixture
def env(functions_host: FunctionsHost, twin: Twin, cc_ca: str, azurite: str,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def load(world: World, **settings: str) -> dict[str, str]:
        values = rotation_env(twin, world, cc_ca, azurite)
        values.update(settings)
        apply_env(monkeypatch, values)
        functions_host.reset_app()
        return values

    yield load
    functions_host.reset_app()


def remediate(host: FunctionsHost, query: str = "", headers: dict[str, str] | None = None) -> Any:
    return host.http("remediate", "POST", f"http://localhost/api/targets/{TARGET}/remediate{query}",
                     route_params={"target": TARGET}, headers=headers)


def test_required_role_refuses_changes_before_any_cloud_call_but_not_reads_or_dry_runs(
        functions_host: FunctionsHost, twin: Twin, env: Any) -> None:
    env(World(), REQUIRE_APP_ROLE="true")
    for headers in (None, signed_in(["Reader"])):
        reply = remediate(functions_host, headers=headers)
        assert reply.status == 403, reply.body[:300]
        validate_response("/targets/{target}/remediate", "post", 403, reply.json(), reply.headers)
        assert reply.json()["error"]["details"]["requiredRole"] == OPERATE_ROLE
    reconcile = functions_host.http("reconcile_roles", "POST",
                                    f"http://localhost/api/targets/{TARGET}/roles/reconcile?dry_run=false",
                                    route_params={"target": TARGET})
    assert reconcile.status == 403
    assert twin.request_log == []
    assert remediate(functions_host, "?dry_run=true").status == 200  # a dry run changes nothing: key is enough
    assert functions_host.http("rotation", "GET", f"http://localhost/api/targets/{TARGET}/rotation",
                               route_params={"target": TARGET}).status == 200


def test_a_caller_with_the_role_is_served_and_recorded(functions_host: FunctionsHost, env: Any,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    env(World(), REQUIRE_APP_ROLE="true")
    caplog.set_level(logging.INFO)
    reply = remediate(functions_host, headers=signed_in([OPERATE_ROLE]))
    assert reply.status == 200, reply.body[:300]
    assert reply.json()["requestedBy"] == f"alice@contoso.com ({ALICE_ID})"
    validate_response("/targets/{target}/remediate", "post", 200, reply.json(), reply.headers)
    audit = [r for r in caplog.records if getattr(r, "requested_by", None)]
    assert audit and audit[-1].requested_by == f"alice@contoso.com ({ALICE_ID})"  # type: ignore[attr-defined]


def test_function_keys_keep_working_without_the_setting(functions_host: FunctionsHost, env: Any) -> None:
    env(World())
    reply = remediate(functions_host)
    assert reply.status == 200 and reply.json()["requestedBy"] == "function key"


def test_the_rotation_journal_records_who_asked(functions_host: FunctionsHost, twin: Twin, env: Any) -> None:
    env(World(secret_end="now+10d"))
    reply = functions_host.http("rotate", "POST", f"http://localhost/api/targets/{TARGET}/rotate",
                                route_params={"target": TARGET}, headers=signed_in([]))
    assert reply.status == 200 and reply.json()["status"] == "rotated", reply.body[:500]
    assert reply.json()["requestedBy"] == f"alice@contoso.com ({ALICE_ID})"
    state = functions_host.http("rotation", "GET", f"http://localhost/api/targets/{TARGET}/rotation",
                                route_params={"target": TARGET}).json()
    assert state["history"][0]["requested_by"] == f"alice@contoso.com ({ALICE_ID})"
