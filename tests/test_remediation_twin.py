"""One-call remediation against the Azure twin: the real SDKs, the real roles/rotation/diagnosis/CycleCloud code,
Azurite for the rotation's journal and lease.

Covered: every auto-fixable problem of the seeds at once ends healthy after one call; a dry run changes nothing
(full twin state and storage compared); whitespace-only is fixed by trimming; CycleCloud-only-out-of-sync by a
re-push without a new Entra credential; a finding that needs a person stays with its steps; a rotation waiting
for propagation answers 202 and where to look; the HTTP function accepts nothing but dry_run."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from datetime import timedelta
from typing import Any

import azure.functions as func
import pytest

from shared.context import AppContext
from shared.remediation import Outcome, RemediationReport, Result, remediate_target
from shared.remediation.schema import REMEDIATION_SCHEMA
from tests.leaks import assert_no_leak
from tests.rotation_invariants import check_invariants, secret_works
from tests.scenarios.library import combine, cyclecloud_holds, with_previous_credential, without_contributor
from tests.schema_check import validate_json
from tests.twin import Twin
from tests.twin.control import snapshot as twin_snapshot
from tests.world import (
    APP_OBJECT_ID,
    CC_HOST,
    CC_PASSWORD,
    CURRENT_SECRET,
    KEY_ID,
    OTHER_TENANT,
    PREVIOUS_SECRET,
    SECRET_NAME,
    SP_OBJECT_ID,
    SUBSCRIPTION,
    TARGET,
    VAULT_NAME,
    World,
    account_record,
)

SECRETS = (CURRENT_SECRET, PREVIOUS_SECRET, CC_PASSWORD)  # no response or log line may carry one


# -- helpers -------------------------------------------------------------------------------------------------


def remediate(*, dry_run: bool = False, deadline: float = 200.0) -> RemediationReport:
    async def go() -> RemediationReport:
        async with AppContext.from_environment() as ctx:
            return await remediate_target(ctx, TARGET, dry_run=dry_run, deadline_seconds=deadline)
    return asyncio.run(go())


def state_fingerprint(twin: Twin) -> dict[str, Any]:
    """Everything remediation could change, secret values included (as hashes): the control API's snapshot
    (minus the request count and the clock) plus vault values, CycleCloud secrets and credential hashes."""
    snap = twin_snapshot(twin)
    snap.pop("requests")
    snap.pop("now")
    state = twin.state

    def digest(value: object) -> str:
        return hashlib.sha256(str(value).encode()).hexdigest()

    with state.lock:
        snap["vault_values"] = {v.name: {n: [(x.version, digest(x.value)) for x in s.versions]
                                         for n, s in v.secrets.items()} for v in state.vaults.values()}
        snap["cyclecloud_secrets"] = {c.host: {n: digest(a.get("AzureRMApplicationSecret"))
                                               for n, a in c.accounts.items()}
                                      for c in state.cyclecloud_servers.values()}
        snap["credential_hashes"] = {a.object_id: [c.secret_hash for c in a.password_credentials]
                                     for a in state.applications.values()}
    return snap


def state_container_exists(env: dict[str, str]) -> bool:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(env["AzureWebJobsStorage"])
    return bool(service.get_container_client(env["STATE_CONTAINER"]).exists())


def state_blobs(env: dict[str, str]) -> list[str]:
    # imported here: azure.storage.blob imports aiohttp, whose default TLS context is fixed at import time, and
    # the twin's CA is only in the environment once the `twin` fixture has run
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(env["AzureWebJobsStorage"])
    container = service.get_container_client(env["STATE_CONTAINER"])
    if not container.exists():
        return []
    return sorted(b.name for b in container.list_blobs())


def cyclecloud_secret(twin: Twin) -> str:
    with twin.state.lock:
        return str(twin.state.cyclecloud_servers[CC_HOST].accounts["azure"]["AzureRMApplicationSecret"])


def vault_versions(twin: Twin) -> list[Any]:
    with twin.state.lock:
        return list(twin.state.vaults[f"{VAULT_NAME}.vault.azure.net"].secrets[SECRET_NAME].versions)


def credential_ids(twin: Twin) -> list[str]:
    with twin.state.lock:
        return [c.key_id for c in twin.state.applications[APP_OBJECT_ID].password_credentials]


# -- the seed's whole incident ---------------------------------------------------------------------------------


def test_every_seed_problem_at_once_is_fixed_by_one_call(setup: Any, twin: Twin,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Expired secret (AADSTS7000222), Contributor removed, CycleCloud holding an older secret: healthy after ONE
    remediate call, roles first, one new credential, Key Vault == CycleCloud."""
    caplog.set_level(logging.DEBUG, logger="shared")
    setup(World(secret_end="now-2d"), combine(without_contributor, cyclecloud_holds(PREVIOUS_SECRET)))
    before_ids = set(credential_ids(twin))

    report = remediate()

    validate_json(report.to_dict(), REMEDIATION_SCHEMA)
    body = json.dumps(report.to_dict())
    assert report.before.status.value == "failing"
    assert {"secret.expired", "role.missing", "cyclecloud.out_of_sync"} <= set(report.before.codes), \
        report.before.codes
    assert [a.action.value for a in report.actions] == ["reconcile_roles", "rotate"]
    assert [a.outcome for a in report.actions] == [Outcome.APPLIED, Outcome.APPLIED], body
    assert report.after is not None and report.after.status.value == "healthy", report.after and report.after.codes
    assert report.result is Result.FIXED and report.http_status == 200 and report.exit_code == 0
    assert report.to_dict()["needs_attention"] == []
    # the world afterwards: the role is back, one new credential, Key Vault == CycleCloud and it works
    with twin.state.lock:
        assert any(ra.principal_id == SP_OBJECT_ID and ra.scope == f"/subscriptions/{SUBSCRIPTION}"
                   and ra.role_definition_id.lower().endswith("b24988ac-6180-42a0-ab88-20f7382dd24c")
                   for ra in twin.state.role_assignments.values())
    check_invariants(twin, settled=True, initial_key_ids=before_ids, cyclecloud_was_working=False)
    assert len(set(credential_ids(twin)) - before_ids) == 1
    newest = vault_versions(twin)[-1]
    assert_no_leak(body, *SECRETS, newest.value)
    assert_no_leak(caplog, *SECRETS, newest.value)


def test_dry_run_changes_nothing(setup: Any, twin: Twin, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="shared")
    env = setup(World(secret_end="now-2d"), combine(without_contributor, cyclecloud_holds(PREVIOUS_SECRET)))
    before = state_fingerprint(twin)
    blobs_before = state_blobs(env)
    assert not state_container_exists(env)

    report = remediate(dry_run=True)

    assert state_fingerprint(twin) == before
    assert state_blobs(env) == blobs_before == []  # no journal, no lock blob, no lease
    assert not state_container_exists(env), "a dry run must not even create the state container"
    assert report.result is Result.PLANNED and report.after is None and report.http_status == 200
    validate_json(report.to_dict(), REMEDIATION_SCHEMA)
    assert [(a.action.value, a.outcome) for a in report.actions] == [("reconcile_roles", Outcome.PLANNED),
                                                                      ("rotate", Outcome.PLANNED)]
    # the CycleCloud probe's update-path check is a validate-only PUT (`validateAccount`, ?dry_run=true)
    writes = [r for r in twin.request_log if r.operation != "validateAccount" and (
        r.method in ("PUT", "PATCH", "DELETE") or (r.method == "POST" and r.service in ("graph", "cyclecloud")))]
    assert not writes, [(r.service, r.method, r.path) for r in writes]
    assert report.exit_code == 2
    assert_no_leak([json.dumps(report.to_dict()), caplog], *SECRETS)


# -- the secret fixes that are not a rotation ------------------------------------------------------------------


def test_whitespace_only_is_fixed_by_storing_the_trimmed_value(setup: Any, twin: Twin,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="shared")
    padded = CURRENT_SECRET + "\r\n"

    def pasted_with_a_line_break(scenario: dict[str, Any]) -> None:
        scenario["vaults"][0]["secrets"][SECRET_NAME][0]["value"] = padded

    setup(World(), combine(pasted_with_a_line_break, cyclecloud_holds(padded)))
    ids = credential_ids(twin)
    old_versions = vault_versions(twin)

    report = remediate()

    assert "secret.whitespace" in report.before.codes, report.before.codes
    assert [(a.action.value, a.outcome) for a in report.actions] == [("store_trimmed_secret", Outcome.APPLIED)], \
        [a.to_dict() for a in report.actions]
    versions = vault_versions(twin)
    assert len(versions) == len(old_versions) + 1
    assert versions[-1].value == CURRENT_SECRET and versions[-1].tags == old_versions[-1].tags
    old_expiry, new_expiry = old_versions[-1].expires, versions[-1].expires
    assert old_expiry is not None and new_expiry is not None
    assert new_expiry == old_expiry.replace(microsecond=0)  # Key Vault keeps expiry in whole seconds
    assert cyclecloud_secret(twin) == CURRENT_SECRET
    assert credential_ids(twin) == ids  # no new Entra credential
    assert report.after is not None and report.after.status.value == "healthy", report.after and report.after.codes
    assert report.result is Result.FIXED
    assert_no_leak([json.dumps(report.to_dict()), caplog], *SECRETS)


def test_cyclecloud_only_out_of_sync_is_fixed_by_a_repush_without_a_new_credential(
        setup: Any, twin: Twin, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="shared")
    setup(World(), combine(with_previous_credential, cyclecloud_holds(PREVIOUS_SECRET)))
    ids = credential_ids(twin)
    versions = [v.version for v in vault_versions(twin)]

    report = remediate()

    assert report.before.codes == ["cyclecloud.out_of_sync"], report.before.codes
    (action,) = report.actions
    assert (action.action.value, action.outcome) == ("push_to_cyclecloud", Outcome.APPLIED), action.to_dict()
    assert cyclecloud_secret(twin) == CURRENT_SECRET
    assert credential_ids(twin) == ids and KEY_ID in ids  # no addPassword, nothing removed
    assert [v.version for v in vault_versions(twin)] == versions  # Key Vault untouched
    assert not [r for r in twin.request_log if r.service == "graph" and r.method == "POST"]
    assert report.after is not None and report.after.status.value == "healthy", report.after and report.after.codes
    assert_no_leak([json.dumps(report.to_dict()), caplog], *SECRETS)


def test_repush_refuses_a_vault_secret_entra_does_not_accept(setup: Any, twin: Twin) -> None:
    """CycleCloud must never get a dead secret: when Key Vault's value is refused, CycleCloud keeps its own."""
    from shared.remediation.fixers import ProductFixers

    setup(World(), combine(with_previous_credential, cyclecloud_holds(PREVIOUS_SECRET)))
    with twin.state.lock:  # Key Vault's credential deleted from the app behind everyone's back
        app = twin.state.applications[APP_OBJECT_ID]
        app.password_credentials = [c for c in app.password_credentials if c.key_id != KEY_ID]

    async def go() -> Any:
        async with AppContext.from_environment() as ctx:
            return await ProductFixers(ctx).push_to_cyclecloud(TARGET, dry_run=False, deadline_seconds=60)

    result = asyncio.run(go())
    assert result.outcome is Outcome.FAILED and "AADSTS7000215" in result.reason, result
    assert cyclecloud_secret(twin) == PREVIOUS_SECRET and secret_works(twin, PREVIOUS_SECRET)


# -- what needs a person -----------------------------------------------------------------------------------------


def test_a_finding_that_needs_a_person_stays_with_its_steps(setup: Any, twin: Twin) -> None:
    def other_tenant(scenario: dict[str, Any]) -> None:
        scenario["subscriptions"][0]["tenant_id"] = OTHER_TENANT

    setup(World(), other_tenant)
    before = state_fingerprint(twin)

    report = remediate()

    assert "tenant.mismatch" in report.before.codes, report.before.codes
    assert report.after is not None and "tenant.mismatch" in report.after.codes
    left = {f["code"]: f for f in report.to_dict()["needs_attention"]}
    assert left["tenant.mismatch"]["remediation"] and left["tenant.mismatch"]["fixable_by_remediate"] is False
    assert report.http_status == 200 and report.exit_code == 2
    assert report.result in (Result.NEEDS_ATTENTION, Result.PARTIALLY_FIXED)
    if not report.actions:
        assert state_fingerprint(twin) == before


# -- the time limit ------------------------------------------------------------------------------------------------


def test_rotation_waiting_for_propagation_answers_202_and_the_next_call_finishes(setup: Any, twin: Twin) -> None:
    def slow_propagation(scenario: dict[str, Any]) -> None:
        scenario["propagation"] = {"new_secret_seconds": 3600}

    setup(World(secret_end="now-2d"), slow_propagation, rotation={"test_timeout_seconds": 3})

    first = remediate(deadline=45.0)

    assert first.http_status == 202 and first.result is Result.IN_PROGRESS, [a.to_dict() for a in first.actions]
    body = first.to_dict()
    validate_json(body, REMEDIATION_SCHEMA)
    assert body["statusUrl"] == f"/api/targets/{TARGET}/rotation"
    assert any(f"/api/targets/{TARGET}/remediate" in step for step in body["next"])
    assert cyclecloud_secret(twin) == CURRENT_SECRET  # CycleCloud never got the untested secret

    twin.clock.advance(3600)
    second = remediate()
    assert second.after is not None and second.after.status.value == "healthy", second.after and second.after.codes
    assert second.http_status == 200


# -- through the Function -------------------------------------------------------------------------------------------


def call_function(route: str, body: bytes = b"") -> func.HttpResponse:
    """POST /api/targets/hpc-prod/<route> through the Function (`route` names it), as the worker invokes it."""
    import function_app

    handler = getattr(function_app, route).build().get_user_function()
    request = func.HttpRequest(method="POST", url=f"https://func.example/api/targets/{TARGET}/{route}", body=body,
                               route_params={"target": TARGET}, headers={"Content-Type": "application/json"})
    function_app._context = None  # settings come from this test's environment

    async def invoke() -> func.HttpResponse:
        try:
            answer: func.HttpResponse = await handler(request)
            return answer
        finally:  # the worker's context ends with this test's event loop: close its connections on that loop
            if function_app._context is not None:
                await function_app._context.clients.close()
            function_app._context = None

    return asyncio.run(invoke())


@pytest.mark.parametrize("body", [
    {"dry_run": False, "principal_id": SP_OBJECT_ID},
    {"dry_run": False, "scope": "/subscriptions/" + SUBSCRIPTION},
    {"role": "Owner"},
    {"dry_run": "false"},
    [SP_OBJECT_ID],
])
def test_the_request_body_can_carry_nothing_but_dry_run(setup: Any, twin: Twin, body: Any) -> None:
    setup(World(secret_end="now-2d"), without_contributor)
    before = state_fingerprint(twin)
    response = call_function("remediate", json.dumps(body).encode())
    assert response.status_code == 400, response.get_body()
    assert json.loads(response.get_body())["error"]["code"] in ("bad_request", "unknown_field", "invalid_option",
                                                                 "invalid_body")
    assert state_fingerprint(twin) == before


def test_the_function_remediates_and_answers_the_report(setup: Any, twin: Twin) -> None:
    setup(World(), combine(with_previous_credential, cyclecloud_holds(PREVIOUS_SECRET)))
    dry = call_function("remediate", b'{"dry_run": true}')
    assert dry.status_code == 200 and json.loads(dry.get_body())["result"] == "planned"
    assert cyclecloud_secret(twin) == PREVIOUS_SECRET
    response = call_function("remediate", b"")
    payload = json.loads(response.get_body())
    assert response.status_code == 200, payload
    validate_json(payload, REMEDIATION_SCHEMA)
    assert payload["result"] == "fixed" and payload["after"]["status"] == "healthy"
    assert [a["action"] for a in payload["actions"]] == ["push_to_cyclecloud"]
    assert_no_leak(response.get_body().decode(), *SECRETS)


def test_policy_denial_fails_the_role_repair_and_the_rotation_is_skipped(setup: Any, twin: Twin) -> None:
    """Roles first: when a policy denies the assignment, the rotation is not tried (its authorization probe would
    fail and leave a new credential unused); the policy stays with the exemption steps."""
    def denied(scenario: dict[str, Any]) -> None:
        without_contributor(scenario)
        scenario["policy_assignments"] = [{"name": "no-contributor", "scope": f"/subscriptions/{SUBSCRIPTION}",
                                           "display_name": "Deny Contributor grants", "denied_roles": ["Contributor"]}]

    setup(World(secret_end="now-2d"), denied)
    ids = credential_ids(twin)

    report = remediate()

    roles, rotate = report.actions
    assert (roles.action.value, roles.outcome) == ("reconcile_roles", Outcome.FAILED), roles.to_dict()
    assert "Deny Contributor grants" in roles.reason and "exemption" in roles.fix
    assert (rotate.action.value, rotate.outcome) == ("rotate", Outcome.SKIPPED)
    assert "reconcile_roles" in rotate.message
    assert credential_ids(twin) == ids  # no credential created for nothing
    assert report.http_status == 200 and report.exit_code == 2 and report.result is Result.NEEDS_ATTENTION
    left = {f.code for f in report.needs_attention}
    assert "secret.expired" in left and left & {"role.missing", "role.policy_denied"}
    validate_json(report.to_dict(), REMEDIATION_SCHEMA)


def test_managed_identity_target_gets_its_vm_identity_role(setup: Any, twin: Twin,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.world import VM_PRINCIPAL_ID

    env = setup(World(), cyclecloud_holds(""))
    with twin.state.lock:  # CycleCloud configured for the VM's managed identity
        twin.state.cyclecloud_servers[CC_HOST].accounts["azure"] = account_record(managed_identity=True)
    target = json.loads(env["TARGETS"])[0]
    target.update({"mode": "managed_identity"})
    for key in ("app_id", "secret_name", "rotation"):
        target.pop(key, None)
    monkeypatch.setenv("TARGETS", json.dumps([target]))

    report = remediate()

    assert report.before.codes == ["identity.role_missing"], report.before.codes
    assert [(a.action.value, a.outcome) for a in report.actions] == [("reconcile_roles", Outcome.APPLIED)]
    # a managed identity's effective permissions cannot be read from here: a just-created assignment is not
    # called healthy; the answer is in progress (202) with when to look again
    assert report.after is not None and report.after.codes == ["role.propagating"], report.after and report.after.codes
    assert report.result is Result.IN_PROGRESS and report.http_status == 202
    body = report.to_dict()
    assert body["checkAgainAt"] and body["statusUrl"] == f"/api/targets/{TARGET}/validate"
    with twin.state.lock:
        created = [ra for ra in twin.state.role_assignments.values() if ra.principal_id == VM_PRINCIPAL_ID]
        assert created
        for ra in created:  # two minutes later
            ra.created_at = ra.created_at - timedelta(minutes=3) if ra.created_at else None

    again = remediate()
    assert again.before.status.value == "healthy" and again.result is Result.HEALTHY, again.before.codes
