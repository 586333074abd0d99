"""`validate` against the Azure twin: every failure mode of the seed documents, reproduced in the twin, yields
the right finding code with the right evidence; the healthy world yields none; no report contains a secret."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from shared.context import AppContext
from shared.diagnosis import REPORT_SCHEMA, Report, validate_target
from tests.leaks import assert_no_leak
from tests.schema_check import validate_json
from tests.twin import Twin
from tests.world import (
    APP_ID,
    CC_PASSWORD,
    CURRENT_SECRET,
    KEY_ID,
    OTHER_TENANT,
    SECRET_NAME,
    SP_OBJECT_ID,
    SUBSCRIPTION,
    TARGET,
    TENANT,
    VAULT_URL,
    VM_ID,
    VM_PRINCIPAL_ID,
    World,
    account_record,
)

Scenario = dict[str, Any]


@pytest.fixture(autouse=True)
def _logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


@pytest.fixture
async def run(twin: Twin, world: World, cc_ca: str, monkeypatch: pytest.MonkeyPatch,
              caplog: pytest.LogCaptureFixture) -> AsyncIterator[Callable[..., Any]]:
    """Load a (modified) world into the twin, validate the target, and check the report against the schema and
    for leaked secrets (in the report and in every log line)."""

    async def go(scenario: Scenario | None = None, *, target: dict[str, Any] | None = None,
                 secrets: tuple[str, ...] = ()) -> Report:
        twin.load(scenario if scenario is not None else world.scenario())
        env = world.env(ca_bundle=cc_ca)
        if target is not None:
            env["TARGETS"] = json.dumps([target])
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("TARGETS_FILE", raising=False)
        async with AppContext.from_environment() as ctx:
            report = await validate_target(ctx, TARGET, timeout_seconds=30)
        body = report.to_dict()
        validate_json(body, REPORT_SCHEMA)
        text = json.dumps(body) + "\n".join(r.getMessage() for r in caplog.records)
        assert_no_leak(text, CURRENT_SECRET, CC_PASSWORD, *secrets)
        return report

    yield go


def codes(report: Report) -> list[str]:
    return sorted(f.code for f in report.findings)


def the(report: Report, code: str) -> dict[str, Any]:
    finding = report.finding(code)
    assert finding is not None, f"{code} not in {codes(report)}"
    return finding.to_dict()


async def test_the_healthy_world_has_no_findings(run: Callable[..., Any]) -> None:
    report = await run()
    assert report.findings == (), [f.to_dict() for f in report.findings]
    assert report.status.value == "healthy"
    outcomes = {c.name: c.outcome.value for c in report.checks}
    assert outcomes["token"] == "passed" and outcomes["roles"] == "passed" and outcomes["cyclecloud"] == "passed"
    assert outcomes["permissions"] == "passed" and outcomes["tenant"] == "passed"
    assert outcomes["vm_identity"] == "skipped"
    assert report.observations["secret_key_id"] == KEY_ID
    assert 199 <= report.observations["days_to_expiry"] <= 200
    # a single-subscription service principal gets advice, which does not change the status
    assert [a.code for a in report.advice] == ["advice.use_managed_identity"]


WRONG_SECRET = "Xyz8Q~mistyped-secret-value-9876543210abc"
OLD_SECRET = "Old8Q~previous-secret-value-111122223333"
OTHER_APP = "0f0e0d0c-0b0a-4909-8807-060504030201"
BOGUS_TENANT = "99999999-9999-4999-8999-999999999999"
EVIDENCE_IDS = ("trace_id", "correlation_id", "timestamp")


def vault_secret(scenario: Scenario) -> dict[str, Any]:
    return scenario["vaults"][0]["secrets"][SECRET_NAME][-1]  # type: ignore[no-any-return]


def set_cyclecloud_account(scenario: Scenario, record: dict[str, Any] | None) -> None:
    scenario["cyclecloud_servers"][0]["accounts"] = [record] if record else []


def sp_assignments(scenario: Scenario) -> list[dict[str, Any]]:
    return [a for a in scenario["role_assignments"] if a["principal_id"] == SP_OBJECT_ID]


def without_sp_roles(scenario: Scenario) -> Scenario:
    scenario["role_assignments"] = [a for a in scenario["role_assignments"] if a["principal_id"] != SP_OBJECT_ID]
    return scenario


def assert_entra_evidence(evidence: dict[str, Any], code: str) -> None:
    assert evidence["aadsts"] == code
    for key in EVIDENCE_IDS:
        assert evidence[key], f"{key} missing from {evidence}"
    assert evidence["link"].endswith(code.removeprefix("AADSTS"))


# -- the client secret ---------------------------------------------------------------------------------------


async def test_expired_secret_is_aadsts7000222_with_the_credential_and_entra_evidence(run: Callable[..., Any]) -> None:
    report = await run(World(secret_end="now-3d").scenario())
    assert codes(report) == ["secret.expired"]
    assert report.status.value == "failing"
    finding = the(report, "secret.expired")
    evidence = finding["evidence"]
    assert_entra_evidence(evidence, "AADSTS7000222")
    assert evidence["key_id"] == KEY_ID and evidence["hint"] == CURRENT_SECRET[:3]
    assert evidence["days_to_expiry"] < 0
    assert set(evidence["seen_by"]) == {"credential", "token"}
    assert finding["fixable_by_remediate"] and finding["remediate_action"] == "rotate"
    steps = " ".join(s["portal"] + s["cli"] for s in finding["remediation"])
    assert "Certificates & secrets" in steps and f"az ad app credential reset --id {APP_ID}" in steps
    outcomes = {c.name: c.outcome.value for c in report.checks}
    assert outcomes["permissions"] == "skipped"  # no token to read them with; said once, by the token check


async def test_secret_expiring_within_the_rotation_window_degrades(run: Callable[..., Any]) -> None:
    report = await run(World(secret_end="now+10d").scenario())
    assert codes(report) == ["secret.expiring_soon"]
    assert report.status.value == "degraded"
    evidence = the(report, "secret.expiring_soon")["evidence"]
    assert 9 <= evidence["days_to_expiry"] <= 10 and evidence["rotate_before_days"] == 30


async def test_invalid_secret_is_aadsts7000215_and_not_the_tagged_credential(run: Callable[..., Any],
                                                                            world: World) -> None:
    scenario = world.scenario()
    vault_secret(scenario)["value"] = WRONG_SECRET
    set_cyclecloud_account(scenario, account_record(WRONG_SECRET))
    report = await run(scenario, secrets=(WRONG_SECRET,))
    assert codes(report) == ["secret.invalid"]
    evidence = the(report, "secret.invalid")["evidence"]
    assert_entra_evidence(evidence, "AADSTS7000215")
    assert evidence["matched_by"] == "hint_differs_from_tagged_credential"
    assert evidence["key_id_tag"] == KEY_ID and evidence["stored_value_hint"] == WRONG_SECRET[:3]


async def test_whitespace_around_the_secret_is_named_and_the_trimmed_value_is_tried(run: Callable[..., Any],
                                                                                  world: World) -> None:
    scenario = world.scenario()
    vault_secret(scenario)["value"] = CURRENT_SECRET + " \n"
    report = await run(scenario)
    assert codes(report) == ["secret.whitespace"]
    finding = the(report, "secret.whitespace")
    evidence = finding["evidence"]
    assert evidence["whitespace"] == "trailing" and evidence["whitespace_characters"] == 2
    assert_entra_evidence(evidence, "AADSTS7000215")
    assert evidence["trimmed_value_works"] is True
    assert finding["remediate_action"] == "store_trimmed_secret"


async def test_secret_id_pasted_instead_of_the_value_is_recognised_as_the_apps_key_id(run: Callable[..., Any],
                                                                                    world: World) -> None:
    scenario = world.scenario()
    vault_secret(scenario)["value"] = KEY_ID
    set_cyclecloud_account(scenario, account_record(KEY_ID))
    report = await run(scenario)
    assert codes(report) == ["secret.looks_like_secret_id"]
    evidence = the(report, "secret.looks_like_secret_id")["evidence"]
    assert evidence["matches_key_id_of_app"] is True and evidence["key_id"] == KEY_ID
    assert_entra_evidence(evidence, "AADSTS7000215")


async def test_secret_missing_from_key_vault(run: Callable[..., Any], world: World) -> None:
    scenario = world.scenario()
    del scenario["vaults"][0]["secrets"][SECRET_NAME]
    report = await run(scenario)
    assert codes(report) == ["secret.missing_in_vault"]
    finding = the(report, "secret.missing_in_vault")
    assert finding["evidence"]["secret_name"] == SECRET_NAME and finding["evidence"]["vault"] == VAULT_URL
    assert finding["remediate_action"] == "rotate"
    skipped = {c.name for c in report.checks if c.outcome.value == "skipped"}
    assert {"token", "credential", "permissions"} <= skipped


async def test_stored_secret_that_is_no_longer_a_credential_of_the_app(run: Callable[..., Any],
                                                                       world: World) -> None:
    scenario = world.scenario()
    vault_secret(scenario)["tags"] = {"keyId": "12345678-1234-4234-8234-123456789abc"}
    scenario["applications"][0]["password_credentials"].append(
        {"key_id": "abcdefab-1234-4234-8234-123456789abc", "secret": WRONG_SECRET, "end": "now+100d"})
    scenario["applications"][0]["password_credentials"].pop(0)
    set_cyclecloud_account(scenario, account_record(CURRENT_SECRET))
    report = await run(scenario, secrets=(WRONG_SECRET,))
    assert codes(report) == ["secret.invalid", "secret.unknown_credential"]
    assert the(report, "secret.unknown_credential")["evidence"]["matched_by"] == "key_id_tag_not_on_app"


# -- the app and the tenant ----------------------------------------------------------------------------------


async def test_app_not_in_the_configured_tenant_is_aadsts700016(run: Callable[..., Any], world: World) -> None:
    scenario = world.scenario()
    scenario["applications"][0]["tenant_id"] = OTHER_TENANT
    report = await run(scenario)
    assert codes(report) == ["app.not_found_in_tenant"]
    evidence = the(report, "app.not_found_in_tenant")["evidence"]
    assert_entra_evidence(evidence, "AADSTS700016")
    assert evidence["source"] == "graph" and evidence["app_id"] == APP_ID


async def test_tenant_that_does_not_exist_is_aadsts90002_and_the_subscription_names_the_real_one(
        run: Callable[..., Any], world: World, cc_ca: str) -> None:
    scenario = world.scenario()
    set_cyclecloud_account(scenario, account_record(tenant_id=BOGUS_TENANT))
    target = {**world.target(cc_ca), "tenant_id": BOGUS_TENANT}
    report = await run(scenario, target=target)
    # one cause, one finding: the subscription's tenant is folded in as the likely right value
    assert codes(report) == ["tenant.not_found"]
    not_found = the(report, "tenant.not_found")
    assert_entra_evidence(not_found["evidence"], "AADSTS90002")
    assert not_found["evidence"]["explains"] == ["tenant.mismatch"]
    assert not_found["evidence"]["likely_tenant_id"] == TENANT and TENANT in not_found["detail"]


async def test_subscription_in_another_tenant_is_a_tenant_mismatch(run: Callable[..., Any], world: World) -> None:
    scenario = world.scenario()
    scenario["subscriptions"][0]["tenant_id"] = OTHER_TENANT
    report = await run(scenario)
    assert codes(report) == ["tenant.mismatch"]
    evidence = the(report, "tenant.mismatch")["evidence"]
    assert evidence["subscription_id"] == SUBSCRIPTION and evidence["subscription_tenant_id"] == OTHER_TENANT
    assert evidence["target_tenant_id"] == TENANT


# -- roles and permissions -----------------------------------------------------------------------------------


async def test_reader_instead_of_contributor(run: Callable[..., Any], world: World) -> None:
    scenario = world.scenario()
    sp_assignments(scenario)[0]["role"] = "Reader"
    report = await run(scenario)
    # one finding, the one remediate fixes: the missing Contributor (no second "insufficient" for the same cause)
    assert codes(report) == ["role.missing"]
    missing = the(report, "role.missing")
    assert missing["evidence"]["role"] == "Contributor"
    assert [h["role"] for h in missing["evidence"]["held_roles"]] == ["Reader"]
    assert missing["remediate_action"] == "reconcile_roles"
    assert f"--assignee-object-id {SP_OBJECT_ID}" in missing["remediation"][0]["cli"]
    assert f"--scope /subscriptions/{SUBSCRIPTION}" in missing["remediation"][0]["cli"]


async def test_storage_read_authorization_failure_from_a_custom_role_and_the_activity_log(
        run: Callable[..., Any], world: World, cc_ca: str) -> None:
    scenario = world.scenario()
    scenario["role_definitions"] = [{"id": "5e1c3b2a-0000-4000-8000-00000000cc01", "name": "CycleCloud Orchestrator",
                                     "actions": ["Microsoft.Compute/*", "Microsoft.Network/*",
                                                 "Microsoft.Resources/*", "Microsoft.Authorization/*/read",
                                                 "Microsoft.MarketplaceOrdering/*", "Microsoft.Commerce/*"]}]
    sp_assignments(scenario)[0]["role"] = "CycleCloud Orchestrator"
    message = (f"The client '{APP_ID}' with object id '{SP_OBJECT_ID}' does not have authorization to perform "
               f"action 'Microsoft.Storage/storageAccounts/read' over scope '/subscriptions/{SUBSCRIPTION}' or the "
               "scope is invalid.")
    scenario["activity_log"] = [{
        "subscription_id": SUBSCRIPTION, "caller": APP_ID, "operation_name": "Microsoft.Storage/storageAccounts/read",
        "resource_id": f"/subscriptions/{SUBSCRIPTION}", "status": "Failed", "timestamp": "now-2h",
        "message": json.dumps({"error": {"code": "AuthorizationFailed", "message": message}}),
    }]
    target = {**world.target(cc_ca), "roles": ["CycleCloud Orchestrator"]}
    report = await run(scenario, target=target)
    assert codes(report) == ["activity.failed_operations", "role.custom_role_incomplete"]
    incomplete = the(report, "role.custom_role_incomplete")
    assert incomplete["evidence"]["missing_actions"][0] == "Microsoft.Storage/storageAccounts/read"
    assert all(a.startswith("Microsoft.Storage/") for a in incomplete["evidence"]["missing_actions"])
    assert incomplete["evidence"]["role"] == "CycleCloud Orchestrator" and not incomplete["fixable_by_remediate"]
    assert "az role definition update" in incomplete["remediation"][0]["cli"]
    activity = the(report, "activity.failed_operations")["evidence"]
    assert activity["events"][0]["operation"] == "Microsoft.Storage/storageAccounts/read"
    assert activity["events"][0]["error_code"] == "AuthorizationFailed"
    assert "does not have authorization" in activity["events"][0]["message"]


async def test_deny_assignment_removes_actions_contributor_would_grant(run: Callable[..., Any],
                                                                       world: World) -> None:
    scenario = world.scenario()
    scenario["deny_assignments"] = [{"scope": f"/subscriptions/{SUBSCRIPTION}", "actions": ["Microsoft.Storage/*"],
                                     "principal_ids": [SP_OBJECT_ID]}]
    report = await run(scenario)
    assert codes(report) == ["role.insufficient"]
    assert "Microsoft.Storage/storageAccounts/read" in the(report, "role.insufficient")["evidence"]["missing_actions"]


async def test_policy_that_denies_the_missing_role_assignment(run: Callable[..., Any], world: World) -> None:
    scenario = without_sp_roles(world.scenario())
    scenario["policy_assignments"] = [{"name": "deny-contributor", "scope": f"/subscriptions/{SUBSCRIPTION}",
                                       "display_name": "Deny broad Contributor assignments",
                                       "denied_roles": ["Contributor"]}]
    report = await run(scenario)
    assert codes(report) == ["role.missing", "role.policy_denied"]
    denied = the(report, "role.policy_denied")
    assert denied["evidence"]["policy_assignment_display_name"] == "Deny broad Contributor assignments"
    assert denied["evidence"]["policy_assignment_id"].endswith("/policyAssignments/deny-contributor")
    assert denied["evidence"]["role"] == "Contributor"
    assert not denied["fixable_by_remediate"]


async def test_role_only_on_a_resource_group_does_not_count(run: Callable[..., Any], world: World) -> None:
    scenario = world.scenario()
    sp_assignments(scenario)[0]["scope"] = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-cyclecloud"
    report = await run(scenario)
    assert codes(report) == ["role.missing"]
    evidence = the(report, "role.missing")["evidence"]
    assert evidence["assignments_below_scope"][0]["role"] == "Contributor"


# -- managed identity mode -----------------------------------------------------------------------------------


def managed_identity_target(world: World, cc_ca: str) -> dict[str, Any]:
    target = world.target(cc_ca)
    target.update(mode="managed_identity")
    for key in ("app_id", "secret_name"):
        target.pop(key)
    return target


def managed_identity_world(world: World) -> Scenario:
    scenario = world.scenario()
    set_cyclecloud_account(scenario, account_record(managed_identity=True))
    scenario["role_assignments"].append({"scope": f"/subscriptions/{SUBSCRIPTION}", "role": "Contributor",
                                         "principal_id": VM_PRINCIPAL_ID})
    return scenario


async def test_managed_identity_target_that_is_healthy(run: Callable[..., Any], world: World, cc_ca: str) -> None:
    report = await run(managed_identity_world(world), target=managed_identity_target(world, cc_ca))
    assert report.findings == () and report.advice == ()
    assert report.observations["principal_id"] == VM_PRINCIPAL_ID


async def test_managed_identity_turned_off(run: Callable[..., Any], world: World, cc_ca: str) -> None:
    scenario = managed_identity_world(world)
    scenario["virtual_machines"][0]["identity"] = None
    report = await run(scenario, target=managed_identity_target(world, cc_ca))
    assert codes(report) == ["identity.disabled"]
    finding = the(report, "identity.disabled")
    assert finding["evidence"]["vm_resource_id"] == VM_ID
    assert f"az vm identity assign --ids {VM_ID}" in finding["remediation"][0]["cli"]


async def test_managed_identity_without_its_role(run: Callable[..., Any], world: World, cc_ca: str) -> None:
    scenario = managed_identity_world(world)
    scenario["role_assignments"] = [a for a in scenario["role_assignments"] if a["principal_id"] != VM_PRINCIPAL_ID]
    report = await run(scenario, target=managed_identity_target(world, cc_ca))
    assert codes(report) == ["identity.role_missing"]
    finding = the(report, "identity.role_missing")
    assert finding["evidence"]["principal_id"] == VM_PRINCIPAL_ID and finding["evidence"]["role"] == "Contributor"
    assert finding["remediate_action"] == "reconcile_roles"


# -- CycleCloud -------------------------------------------------------------------------------------------------


async def test_cyclecloud_holding_another_secret_is_out_of_sync(run: Callable[..., Any], world: World) -> None:
    scenario = world.scenario()
    set_cyclecloud_account(scenario, account_record(OLD_SECRET))
    report = await run(scenario, secrets=(OLD_SECRET,))
    assert codes(report) == ["cyclecloud.out_of_sync"]
    finding = the(report, "cyclecloud.out_of_sync")
    assert finding["evidence"]["cyclecloud_secret_hint"] == OLD_SECRET[:3]
    assert finding["evidence"]["vault_secret_hint"] == CURRENT_SECRET[:3]
    assert finding["remediate_action"] == "push_to_cyclecloud"


async def test_cyclecloud_unreachable(run: Callable[..., Any], world: World) -> None:
    scenario = world.scenario()
    scenario["cyclecloud_servers"][0]["unreachable"] = True
    report = await run(scenario)
    assert codes(report) == ["cyclecloud.unreachable"]
    assert report.status.value == "degraded"
    assert the(report, "cyclecloud.unreachable")["evidence"]["failed_step"] == "reachable"


async def test_cyclecloud_login_refused(run: Callable[..., Any], world: World) -> None:
    scenario = world.scenario()
    scenario["cyclecloud_servers"][0]["users"][0]["password"] = "another-password-entirely"
    report = await run(scenario, secrets=("another-password-entirely",))
    assert codes(report) == ["cyclecloud.login_failed"]
    assert the(report, "cyclecloud.login_failed")["evidence"]["failed_step"] == "login"


async def test_cyclecloud_account_missing(run: Callable[..., Any], world: World) -> None:
    scenario = world.scenario()
    set_cyclecloud_account(scenario, None)
    report = await run(scenario)
    assert codes(report) == ["cyclecloud.account_missing"]


# -- the product's own rights and identity ---------------------------------------------------------------------


async def test_product_cannot_create_role_assignments(run: Callable[..., Any], world: World) -> None:
    scenario = world.scenario()
    scenario["role_assignments"] = [a for a in scenario["role_assignments"]
                                    if a["role"] != "Role Based Access Control Administrator"]
    report = await run(scenario)
    assert codes(report) == ["function.permission_missing"]
    finding = the(report, "function.permission_missing")
    assert finding["evidence"]["missing_actions"] == ["Microsoft.Authorization/roleAssignments/write"]
    assert finding["evidence"]["role_to_grant"] == "Role Based Access Control Administrator"
    assert '--role "Role Based Access Control Administrator"' in finding["remediation"][0]["cli"]


async def test_product_not_owner_of_the_app_in_graph(run: Callable[..., Any], world: World) -> None:
    scenario = world.scenario()
    scenario["applications"][0]["owners"] = []
    report = await run(scenario)
    assert codes(report) == ["function.permission_missing"]
    finding = the(report, "function.permission_missing")
    assert finding["subject"] == "Application.ReadWrite.OwnedBy"


async def test_product_cannot_read_key_vault(run: Callable[..., Any], world: World) -> None:
    scenario = world.scenario()
    scenario["role_assignments"] = [a for a in scenario["role_assignments"] if a["role"] != "Key Vault Secrets Officer"]
    report = await run(scenario)
    assert "function.permission_missing" in codes(report)
    finding = the(report, "function.permission_missing")
    assert finding["subject"] == "Key Vault Secrets Officer"


async def test_product_identity_unavailable(run: Callable[..., Any], twin: Twin, world: World) -> None:
    scenario = world.scenario()
    scenario["principals"][0]["function_identity"] = False
    report = await run(scenario)
    assert "function.identity_unavailable" in codes(report)
    assert report.status.value == "failing"
    finding = the(report, "function.identity_unavailable")
    assert finding["evidence"]["credential"] == "managed_identity"
    assert "hasn't been assigned" in finding["evidence"]["troubleshooting_row"]


# -- other Entra refusals, through the AADSTS catalog ----------------------------------------------------------


def entra_refusal(code: int, text: str) -> dict[str, Any]:
    trace, correlation = "0a1b2c3d-0000-4000-8000-000000000001", "0a1b2c3d-0000-4000-8000-000000000002"
    return {"error": "invalid_client", "error_codes": [code], "timestamp": "2026-01-01 10:00:00Z",
            "trace_id": trace, "correlation_id": correlation,
            "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\n"
                                 "Timestamp: 2026-01-01 10:00:00Z"}


@pytest.mark.parametrize(("code", "text", "finding"), [
    (53003, "Access has been blocked by Conditional Access policies.", "entra.sign_in_refused"),
    (7000112, "Application is disabled.", "app.disabled"),
    (9999999, "Something Entra invented yesterday.", "entra.unknown_error"),
])
async def test_other_entra_refusals_go_through_the_catalog(run: Callable[..., Any], twin: Twin, code: int,
                                                           text: str, finding: str) -> None:
    from tests.twin import Fault

    twin.faults.add(Fault(service="entra", operation="token", status=400, body=entra_refusal(code, text),
                          times=None))
    report = await run()
    assert codes(report) == [finding]
    evidence = the(report, finding)["evidence"]
    assert_entra_evidence(evidence, f"AADSTS{code}")
    assert evidence["trace_id"] == "0a1b2c3d-0000-4000-8000-000000000001"
    assert evidence["description"].startswith(text.split(".")[0])
