"""`?dry_run=true`, `{"dry_run": true}` and the CLI's `--dry-run` mean the same thing: the same plan, and
nothing changed in Azure, CycleCloud or the state container. And the documented defaults are the code's."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from shared import http_routes
from shared.cli import main as cli_main
from tests.functions_host import FunctionsHost
from tests.rotation_support import apply_env, rotation_env
from tests.scenarios.library import without_contributor
from tests.schema_check import validate_response
from tests.twin import Twin
from tests.world import TARGET, World

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fresh_context(functions_host: FunctionsHost) -> Iterator[None]:
    functions_host.reset_app()
    yield
    functions_host.reset_app()


def writes(twin: Twin) -> list[str]:
    return [f"{r.service} {r.operation}" for r in twin.request_log if r.method in ("POST", "PUT", "PATCH", "DELETE")
            and not (r.service == "entra" and r.operation == "token")]


def container_exists(env: dict[str, str]) -> bool:
    service = BlobServiceClient.from_connection_string(env["AzureWebJobsStorage"])
    return bool(service.get_container_client(env["STATE_CONTAINER"]).exists())


def three_ways(host: FunctionsHost, capsys: pytest.CaptureFixture[str], function: str, route: str,
               cli: list[str]) -> list[dict[str, Any]]:
    url = f"http://localhost/api/targets/{TARGET}/{route}"
    params = {"target": TARGET}
    bodies = []
    for reply in (host.http(function, "POST", url + "?dry_run=true", body=b"", route_params=params),
                  host.http(function, "POST", url, body=b'{"dry_run": true}', route_params=params),
                  host.http(function, "POST", url + "?dry_run=TRUE", body=b'{"dry_run": true}', route_params=params)):
        assert reply.status == 200, reply.body[:500]
        validate_response(f"/targets/{{target}}/{route}", "post", 200, reply.json(), reply.headers)
        bodies.append(reply.json())
    capsys.readouterr()
    cli_main([*cli, TARGET, "--dry-run", "--json"])
    bodies.append(json.loads(capsys.readouterr().out))
    return bodies


def test_remediate_dry_run_query_body_and_cli_agree_and_change_nothing(
        functions_host: FunctionsHost, twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    env = rotation_env(twin, World(secret_end="now-2d"), cc_ca, azurite, edit=without_contributor)
    apply_env(monkeypatch, env)
    bodies = three_ways(functions_host, capsys, "remediate", "remediate", ["remediate"])
    plans = [(b["result"], b["dry_run"], [(a["action"], a["outcome"]) for a in b["actions"]]) for b in bodies]
    assert plans[0][0] == "planned" and plans[0][1] is True
    assert {a for a, _ in plans[0][2]} >= {"reconcile_roles", "rotate"}
    assert all(p == plans[0] for p in plans), plans
    assert writes(twin) == []
    assert not container_exists(env)


def test_rotate_dry_run_query_body_and_cli_agree_and_change_nothing(
        functions_host: FunctionsHost, twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    env = rotation_env(twin, World(secret_end="now+10d"), cc_ca, azurite)
    apply_env(monkeypatch, env)
    bodies = three_ways(functions_host, capsys, "rotate", "rotate", ["rotate"])
    plans = [(b["status"], b["plan"]["due"], b["plan"]["steps"]) for b in bodies]
    assert plans[0][0] == "planned" and plans[0][1] is True
    assert all(p == plans[0] for p in plans), plans
    assert writes(twin) == []
    assert not container_exists(env)


def test_reconcile_plans_by_default_and_the_query_can_say_so_too(
        functions_host: FunctionsHost, twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    apply_env(monkeypatch, rotation_env(twin, World(), cc_ca, azurite, edit=without_contributor))
    url = f"http://localhost/api/targets/{TARGET}/roles/reconcile"
    default = functions_host.http("reconcile_roles", "POST", url, route_params={"target": TARGET})
    explicit = functions_host.http("reconcile_roles", "POST", url + "?dry_run=true", route_params={"target": TARGET})
    assert default.status == explicit.status == 200
    validate_response("/targets/{target}/roles/reconcile", "post", 200, default.json(), default.headers)
    assert default.json()["dry_run"] is True and explicit.json()["dry_run"] is True
    assert default.json()["summary"] == explicit.json()["summary"]
    assert writes(twin) == []


def test_query_and_body_that_disagree_are_refused_before_anything_runs(
        functions_host: FunctionsHost, twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    apply_env(monkeypatch, rotation_env(twin, World(secret_end="now-2d"), cc_ca, azurite))
    reply = functions_host.http("remediate", "POST", f"http://localhost/api/targets/{TARGET}/remediate?dry_run=true",
                                body=b'{"dry_run": false}', route_params={"target": TARGET})
    assert reply.status == 400 and reply.json()["error"]["code"] == "conflicting_option"
    validate_response("/targets/{target}/remediate", "post", 400, reply.json(), reply.headers)
    assert twin.request_log == []


def test_the_documented_defaults_table_is_the_code() -> None:
    text = (ROOT / "docs" / "http.md").read_text()
    documented = {m.group(1): m.group(2) == "true"
                  for m in re.finditer(r"^\| `POST /api/targets/\{target\}/([a-z/-]+)` \| [^|]+ \| `(true|false)` \|",
                                       text, re.MULTILINE)}
    code = {r.name.split("{target}/")[1]: r.options["dry_run"] for r in http_routes.ROUTES if "dry_run" in r.options}
    assert documented == code == {"rotate": False, "roles/reconcile": True, "remediate": False,
                                  "migrate-to-managed-identity": True}
