"""Role reconciliation against the twin: every role failure of the seeds (missing, Reader only, wrong scope,
managed identity without role or without identity, policy denial, the product lacking rights, replication
delay, already present), through the domain function, the HTTP function and the CLI."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import azure.functions as func
import pytest

from shared.adapters.rbac import RoleAssignmentInfo, RoleDefinitionInfo
from shared.context import AppContext
from shared.errors import ConflictError
from shared.roles import (
    AssignmentState,
    PrincipalRef,
    assignment_name,
    description_for,
    plan_roles,
    reconcile_target_roles,
)
from tests.leaks import assert_no_leak
from tests.twin import Twin
from tests.twin.control import snapshot
from tests.twin.faults import Fault
from tests.world import (
    CC_PASSWORD,
    CONTRIBUTOR,
    CURRENT_SECRET,
    FUNCTION_OBJECT_ID,
    OTHER_TENANT,
    OWNER,
    RBAC_ADMINISTRATOR,
    READER,
    RESOURCE_GROUP,
    SP_OBJECT_ID,
    SUB_SCOPE,
    SUBSCRIPTION,
    SUBSCRIPTION_2,
    TARGET,
    TENANT,
    USER_ACCESS_ADMINISTRATOR,
    VM_PRINCIPAL_ID,
    World,
)

SUB2_SCOPE = f"/subscriptions/{SUBSCRIPTION_2}"
SECRETS = [CURRENT_SECRET, CC_PASSWORD]


def without_sp_roles(scenario: dict[str, Any]) -> dict[str, Any]:
    scenario["role_assignments"] = [ra for ra in scenario["role_assignments"] if ra["principal_id"] != SP_OBJECT_ID]
    return scenario


@pytest.fixture
def configure(twin: Twin, cc_ca: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Load a scenario and set the product's settings, with overrides of the target's configuration."""

    def apply(scenario: dict[str, Any] | None = None, **target: Any) -> None:
        world = World()
        twin.load(scenario if scenario is not None else world.scenario())
        env = world.env(ca_bundle=cc_ca)
        env["TARGETS"] = json.dumps([world.target(cc_ca) | target])
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("TARGETS_FILE", raising=False)

    return apply


async def reconcile(dry_run: bool) -> Any:
    async with AppContext.from_environment() as ctx:
        return await reconcile_target_roles(ctx, TARGET, dry_run=dry_run)


def sp_assignments(twin: Twin, scope: str = SUB_SCOPE) -> dict[str, Any]:
    return {ra.role_definition_id: ra for ra in twin.state.role_assignments.values()
            if ra.principal_id == SP_OBJECT_ID and ra.scope.lower() == scope.lower()}


def creates(twin: Twin) -> int:
    return sum(1 for r in twin.request_log if r.operation == "createRoleAssignment")


# -- pure planning ---------------------------------------------------------------------------------------------


def test_plan_roles_is_pure_and_counts_inherited_assignments() -> None:
    contributor = RoleDefinitionInfo(CONTRIBUTOR, "Contributor", "BuiltInRole")
    principal = PrincipalRef(SP_OBJECT_ID, "service_principal")

    def held(scope: str, role: str = CONTRIBUTOR, description: str | None = None) -> RoleAssignmentInfo:
        name = str(uuid.uuid4())
        return RoleAssignmentInfo(f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}", name, scope,
                                  role, SP_OBJECT_ID, "ServicePrincipal", description)

    [root] = plan_roles(TARGET, principal, SUBSCRIPTION, [contributor], [held("/")])
    assert root.state is AssignmentState.PRESENT and root.inherited_from == "/"
    [rg_only] = plan_roles(TARGET, principal, SUBSCRIPTION, [contributor], [held(f"{SUB_SCOPE}/resourceGroups/rg")])
    assert rg_only.state is AssignmentState.MISSING and "narrower scope" in rg_only.reason
    assert rg_only.assignment_name == assignment_name(SUB_SCOPE, SP_OBJECT_ID, CONTRIBUTOR)
    assert assignment_name(SUB_SCOPE + "/", SP_OBJECT_ID.upper(), CONTRIBUTOR) == rg_only.assignment_name
    assert assignment_name(SUB2_SCOPE, SP_OBJECT_ID, CONTRIBUTOR) != rg_only.assignment_name
    missing, extra = plan_roles(TARGET, principal, SUBSCRIPTION, [contributor], [held(SUB_SCOPE, READER)],
                                role_names={READER: "Reader"})
    assert missing.state is AssignmentState.MISSING and "holds only Reader" in missing.reason
    assert extra.state is AssignmentState.EXTRA and not extra.managed_by_product and "kept" in extra.reason


# -- plan / apply ----------------------------------------------------------------------------------------------


async def test_healthy_target_plan_is_all_present(configure: Any) -> None:
    configure()
    result = await reconcile(dry_run=True)
    assert result.ok and not result.changes_needed
    [only] = result.assignments
    assert (only.state, only.role_name, only.principal_id, only.scope) == (
        AssignmentState.PRESENT, "Contributor", SP_OBJECT_ID, SUB_SCOPE)
    assert only.assignment_name == "0d6a3c1e-8b7f-4e2d-9c5a-1f3e5d7b9a01"  # present under its own (other) name


async def test_missing_contributor_plan_changes_nothing_then_apply_creates_it(configure: Any, twin: Twin) -> None:
    configure(without_sp_roles(World().scenario()))
    before = snapshot(twin)
    plan = await reconcile(dry_run=True)
    assert snapshot(twin)["role_assignments"] == before["role_assignments"]  # a dry run changes nothing
    [missing] = plan.assignments
    assert missing.state is AssignmentState.MISSING and plan.changes_needed and plan.ok
    assert missing.assignment_name == assignment_name(SUB_SCOPE, SP_OBJECT_ID, CONTRIBUTOR)

    applied = await reconcile(dry_run=False)
    [created] = applied.assignments
    assert (created.state, created.verified, applied.ok) == (AssignmentState.CREATED, True, True)
    ra = sp_assignments(twin)[CONTRIBUTOR]
    assert ra.name == missing.assignment_name
    assert ra.principal_type == "ServicePrincipal"
    assert ra.description == description_for(TARGET) == f"Managed by cyclecloud-credential-remediator for target " \
                                                         f"{TARGET}"
    assert ra.created_by == FUNCTION_OBJECT_ID
    # idempotent: a second apply finds it present and creates nothing
    count = creates(twin)
    again = await reconcile(dry_run=False)
    assert [a.state for a in again.assignments] == [AssignmentState.PRESENT] and creates(twin) == count
    assert again.assignments[0].managed_by_product


async def test_reader_only_gets_contributor_and_reader_is_kept(configure: Any, twin: Twin) -> None:
    scenario = without_sp_roles(World().scenario())
    scenario["role_assignments"].append({"scope": SUB_SCOPE, "role": "Reader", "principal_id": SP_OBJECT_ID})
    configure(scenario)
    plan = await reconcile(dry_run=True)
    by_state = {a.state: a for a in plan.assignments}
    assert "holds only Reader" in by_state[AssignmentState.MISSING].reason
    assert by_state[AssignmentState.EXTRA].role_name == "Reader"
    await reconcile(dry_run=False)
    assert set(sp_assignments(twin)) == {CONTRIBUTOR, READER}  # never removes what it did not create


async def test_prune_unmanaged_roles_removes_extra_assignments_only_when_configured(configure: Any,
                                                                                    twin: Twin) -> None:
    scenario = World().scenario()
    scenario["role_assignments"].append({"scope": SUB_SCOPE, "role": "Reader", "principal_id": SP_OBJECT_ID})
    configure(scenario, prune_unmanaged_roles=True)
    result = await reconcile(dry_run=False)
    assert {a.role_name: a.state for a in result.assignments} == {"Contributor": AssignmentState.PRESENT,
                                                                   "Reader": AssignmentState.REMOVED}
    assert set(sp_assignments(twin)) == {CONTRIBUTOR}


async def test_product_removes_its_own_assignment_of_a_role_no_longer_configured(configure: Any,
                                                                                 twin: Twin) -> None:
    scenario = World().scenario()
    scenario["role_assignments"].append({"scope": SUB_SCOPE, "role": "Reader", "principal_id": SP_OBJECT_ID,
                                         "description": description_for(TARGET)})
    configure(scenario)
    result = await reconcile(dry_run=False)
    assert {a.role_name: a.state for a in result.assignments}["Reader"] is AssignmentState.REMOVED
    assert set(sp_assignments(twin)) == {CONTRIBUTOR}


async def test_wrong_scope_resource_group_only_is_missing_at_the_subscription(configure: Any, twin: Twin) -> None:
    rg_scope = f"{SUB_SCOPE}/resourceGroups/{RESOURCE_GROUP}"
    scenario = without_sp_roles(World().scenario())
    scenario["role_assignments"].append({"scope": rg_scope, "role": "Contributor", "principal_id": SP_OBJECT_ID})
    configure(scenario)
    [plan] = (await reconcile(dry_run=True)).assignments
    assert plan.state is AssignmentState.MISSING and rg_scope in plan.reason
    await reconcile(dry_run=False)
    assert CONTRIBUTOR in sp_assignments(twin) and CONTRIBUTOR in sp_assignments(twin, rg_scope)


async def test_inherited_root_assignment_counts_as_present(configure: Any, twin: Twin) -> None:
    scenario = without_sp_roles(World().scenario())
    scenario["role_assignments"].append({"scope": "/", "role": "Contributor", "principal_id": SP_OBJECT_ID})
    configure(scenario)
    [present] = (await reconcile(dry_run=False)).assignments
    assert present.state is AssignmentState.PRESENT and present.inherited_from == "/"
    assert creates(twin) == 0


async def test_managed_identity_without_role_gets_it(configure: Any, twin: Twin) -> None:
    configure(mode="managed_identity", app_id=None, secret_name=None)
    plan = await reconcile(dry_run=True)
    assert plan.principal.object_id == VM_PRINCIPAL_ID and plan.principal.source == "vm_identity"
    assert [a.state for a in plan.assignments] == [AssignmentState.MISSING]
    applied = await reconcile(dry_run=False)
    assert applied.ok and applied.assignments[0].state is AssignmentState.CREATED
    assert any(ra.principal_id == VM_PRINCIPAL_ID and ra.role_definition_id == CONTRIBUTOR
               and ra.scope == SUB_SCOPE for ra in twin.state.role_assignments.values())


async def test_managed_identity_off_is_identity_disabled(configure: Any) -> None:
    scenario = World().scenario()
    scenario["virtual_machines"][0].pop("identity")
    configure(scenario, mode="managed_identity", app_id=None, secret_name=None)
    with pytest.raises(ConflictError) as raised:
        await reconcile(dry_run=False)
    err = raised.value
    assert err.code == "identity.disabled" and err.status == 409
    assert "az vm identity assign" in err.fix
    assert err.details["finding"]["code"] == "identity.disabled"


async def test_policy_denial_is_predicted_in_the_plan_and_explained_on_apply(configure: Any, twin: Twin) -> None:
    scenario = without_sp_roles(World().scenario())
    scenario["policy_assignments"] = [{"name": "no-contributor", "scope": SUB_SCOPE,
                                       "display_name": "Deny Contributor grants", "denied_roles": ["Contributor"]}]
    configure(scenario)
    [planned] = (await reconcile(dry_run=True)).assignments
    assert planned.state is AssignmentState.MISSING and "Deny Contributor grants" in planned.reason
    result = await reconcile(dry_run=False)
    [failed] = result.assignments
    assert failed.state is AssignmentState.FAILED and failed.error_code == "policy_denied" and not result.ok
    assert "Deny Contributor grants" in failed.reason
    assert failed.details["policy_assignment_id"].endswith("/policyAssignments/no-contributor")
    assert "exemption" in failed.fix
    assert CONTRIBUTOR not in sp_assignments(twin)


async def test_product_lacking_rights_on_one_subscription_does_not_stop_the_other(configure: Any,
                                                                                  twin: Twin) -> None:
    scenario = without_sp_roles(World().scenario())
    scenario["subscriptions"].append({"id": SUBSCRIPTION_2, "tenant_id": TENANT, "display_name": "HPC Burst"})
    # on the second subscription the product is only Contributor: it may read but not grant
    scenario["role_assignments"].append({"scope": SUB2_SCOPE, "role": "Contributor",
                                         "principal_id": FUNCTION_OBJECT_ID})
    configure(scenario, subscription_ids=[SUBSCRIPTION, SUBSCRIPTION_2])
    result = await reconcile(dry_run=False)
    by_sub = {a.subscription_id: a for a in result.assignments}
    assert by_sub[SUBSCRIPTION].state is AssignmentState.CREATED
    denied = by_sub[SUBSCRIPTION_2]
    assert denied.state is AssignmentState.FAILED and denied.error_code == "access_denied"
    assert denied.details["action"] == "Microsoft.Authorization/roleAssignments/write"
    assert "Role Based Access Control Administrator" in denied.fix and "Contributor is not enough" in denied.fix
    assert SUB2_SCOPE in denied.fix
    assert not result.ok and "Contributor is not enough" in result.fix


async def test_subscription_in_another_tenant_is_reported_per_subscription(configure: Any) -> None:
    scenario = World().scenario()
    scenario["subscriptions"].append({"id": SUBSCRIPTION_2, "tenant_id": OTHER_TENANT, "display_name": "Elsewhere"})
    configure(scenario, subscription_ids=[SUBSCRIPTION, SUBSCRIPTION_2])
    result = await reconcile(dry_run=True)
    by_sub = {a.subscription_id: a for a in result.assignments}
    assert by_sub[SUBSCRIPTION].state is AssignmentState.PRESENT
    assert by_sub[SUBSCRIPTION_2].state is AssignmentState.FAILED
    assert by_sub[SUBSCRIPTION_2].error_code == "tenant_mismatch" and OTHER_TENANT in by_sub[SUBSCRIPTION_2].reason


async def test_replication_delay_principal_not_found_is_retried_until_it_works(configure: Any, twin: Twin) -> None:
    scenario = without_sp_roles(World().scenario())
    scenario["applications"][0]["service_principal"]["created"] = "now"
    scenario["propagation"] = {"principal_not_found_seconds": 1.5}
    configure(scenario)
    result = await reconcile(dry_run=False)
    assert result.ok and result.assignments[0].state is AssignmentState.CREATED
    refused = [r for r in twin.request_log if r.operation == "createRoleAssignment" and r.status == 400]
    assert refused and creates(twin) == len(refused) + 1


async def test_assignment_already_present_under_another_name_is_success(configure: Any, twin: Twin) -> None:
    configure()
    # the listing lags behind (ARM replication), so the plan thinks it is missing; the PUT answers
    # RoleAssignmentExists, which counts as success
    twin.faults.add(Fault(service="arm", operation="listRoleAssignments", status=200, body={"value": []}, times=1))
    result = await reconcile(dry_run=False)
    [outcome] = result.assignments
    assert outcome.state is AssignmentState.CREATED and result.ok
    assert outcome.assignment_name == "0d6a3c1e-8b7f-4e2d-9c5a-1f3e5d7b9a01"
    assert "Already present" in outcome.reason
    assert len(sp_assignments(twin)) == 1


async def test_unknown_configured_role_fails_that_role_only(configure: Any) -> None:
    configure(roles=["Contributor", "No Such Role"])
    result = await reconcile(dry_run=True)
    states = {a.role_name: a.state for a in result.assignments}
    assert states == {"Contributor": AssignmentState.PRESENT, "No Such Role": AssignmentState.FAILED}


# -- privileged roles are refused unless the target opts in ------------------------------------------------------

ESCALATING_ROLE = "5e0c6a1d-7f44-4b2a-9d1e-0a6f3c2b1d99"


def test_privileged_roles_are_recognised_by_what_they_allow() -> None:
    from shared.config import load_settings
    from shared.roles.privilege import granted_sensitive_actions, privileged_role_refusal

    contributor_not_actions = ("Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write",
                               "Microsoft.Authorization/elevateAccess/Action")
    cases = {
        "Contributor": (RoleDefinitionInfo(CONTRIBUTOR, "Contributor", "BuiltInRole", ("*",),
                                           contributor_not_actions), False),
        "Reader": (RoleDefinitionInfo(READER, "Reader", "BuiltInRole", ("*/read",)), False),
        "Owner": (RoleDefinitionInfo(OWNER, "Owner", "BuiltInRole", ("*",)), True),
        "UAA": (RoleDefinitionInfo(USER_ACCESS_ADMINISTRATOR, "User Access Administrator", "BuiltInRole",
                                   ("*/read", "Microsoft.Authorization/*", "Microsoft.Support/*")), True),
        "RBAC admin": (RoleDefinitionInfo(RBAC_ADMINISTRATOR, "Role Based Access Control Administrator", "BuiltInRole",
                                          ("Microsoft.Authorization/roleAssignments/write",)), True),
        "star, writes excluded but not deletes": (
            RoleDefinitionInfo(ESCALATING_ROLE, "Almost contributor", "CustomRole", ("*",),
                               ("Microsoft.Authorization/*/Write",)), True),
        "CycleCloud least privilege": (
            RoleDefinitionInfo(ESCALATING_ROLE, "CycleCloud", "CustomRole",
                               ("Microsoft.Compute/*", "Microsoft.Network/*", "Microsoft.Storage/*",
                                "Microsoft.Authorization/*/read", "Microsoft.Authorization/roleAssignments/read")),
            False),
    }
    target = load_settings(World().env()).target(TARGET)
    for label, (role, privileged) in cases.items():
        assert bool(granted_sensitive_actions(role)) or role.id == OWNER or not privileged, label
        refusal = privileged_role_refusal(target, role)
        assert (refusal is not None) == privileged, label
        if refusal is not None:
            assert refusal.code == "privileged_role_refused" and refusal.status == 400
            assert "allow_privileged_roles: true" in refusal.fix and role.name in refusal.message


def _with_escalating_custom_role(scenario: dict[str, Any]) -> dict[str, Any]:
    scenario.setdefault("role_definitions", []).append({
        "id": ESCALATING_ROLE, "name": "CycleCloud Operator", "description": "",
        "actions": ["Microsoft.Compute/*", "Microsoft.Network/*", "Microsoft.Authorization/*"],
        "not_actions": [], "data_actions": [], "not_data_actions": [], "assignable_scopes": [SUB_SCOPE]})
    return scenario


async def test_a_custom_role_that_can_grant_access_is_refused_before_assigning(configure: Any, twin: Twin) -> None:
    configure(_with_escalating_custom_role(World().scenario()), roles=["Contributor", "CycleCloud Operator"])
    plan = await reconcile(dry_run=True)
    states = {a.role_name: a.state for a in plan.assignments}
    assert states == {"Contributor": AssignmentState.PRESENT, "CycleCloud Operator": AssignmentState.FAILED}
    refused = next(a for a in plan.assignments if a.role_name == "CycleCloud Operator")
    assert refused.error_code == "privileged_role_refused" and refused.role_id == ESCALATING_ROLE
    assert "Microsoft.Authorization/roleAssignments/write" in refused.reason
    assert "allow_privileged_roles: true" in refused.fix

    applied = await reconcile(dry_run=False)
    assert not applied.ok and creates(twin) == 0
    assert ESCALATING_ROLE not in sp_assignments(twin)


async def test_allow_privileged_roles_is_the_explicit_opt_in(configure: Any, twin: Twin) -> None:
    configure(_with_escalating_custom_role(World().scenario()), roles=["Contributor", "CycleCloud Operator"],
              allow_privileged_roles=True)
    applied = await reconcile(dry_run=False)
    assert applied.ok, applied.to_dict()
    assert ESCALATING_ROLE in sp_assignments(twin)


# -- the HTTP function -----------------------------------------------------------------------------------------


def _call(body: Any, target: str = TARGET) -> func.HttpResponse:
    """Through the real decorated function (FunctionApp.get_functions() may only run once per app: use build())."""
    import asyncio

    import function_app

    function_app._context = None  # settings come from this test's environment
    handler = function_app.reconcile_roles.build().get_user_function()
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = func.HttpRequest(method="POST", url=f"http://localhost/api/targets/{target}/roles/reconcile",
                               body=raw, route_params={"target": target}, headers={"Content-Type": "application/json"})

    async def call() -> func.HttpResponse:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        finally:
            if function_app._context is not None:
                await function_app._context.clients.close()
            function_app._context = None

    return asyncio.run(call())


@pytest.mark.parametrize(("body", "code"), [
    ({"dry_run": False, "principal_id": VM_PRINCIPAL_ID}, "unknown_field"),
    ({"dry_run": False, "scope": "/"}, "unknown_field"),
    ({"dry_run": False, "role": "Owner"}, "unknown_field"),
    ({"dry_run": "no"}, "invalid_option"),
    (b"[]", "invalid_body"),
])
def test_request_body_cannot_name_principal_role_or_scope(configure: Any, twin: Twin, body: Any, code: str) -> None:
    configure(without_sp_roles(World().scenario()))
    response = _call(body)
    assert response.status_code == 400
    assert json.loads(response.get_body())["error"]["code"] == code
    assert response.headers["x-ms-error-code"] == code
    assert creates(twin) == 0


def test_http_plan_and_apply(configure: Any, twin: Twin, caplog: pytest.LogCaptureFixture) -> None:
    configure(without_sp_roles(World().scenario()))
    caplog.set_level(logging.DEBUG)
    plan = _call({})  # the default is a dry run
    assert plan.status_code == 200
    body = json.loads(plan.get_body())
    assert body["dry_run"] is True and body["assignments"][0]["state"] == "missing" and creates(twin) == 0
    applied = _call({"dry_run": False})
    body = json.loads(applied.get_body())
    assert applied.status_code == 200 and body["ok"] is True
    assert body["assignments"][0]["state"] == "created" and body["principal"]["object_id"] == SP_OBJECT_ID
    assert_no_leak([plan.get_body().decode(), applied.get_body().decode(), caplog], *SECRETS)


def test_http_unknown_target_is_404(configure: Any) -> None:
    configure()
    response = _call({"dry_run": True}, target="nope")
    assert response.status_code == 404
    assert json.loads(response.get_body())["error"]["code"] == "target_not_found"


# -- the CLI ---------------------------------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    from shared.cli import main

    return main(argv)


def test_cli_plan_apply_and_exit_codes(configure: Any, twin: Twin, capsys: pytest.CaptureFixture[str]) -> None:
    configure(without_sp_roles(World().scenario()))
    assert _cli(["roles", TARGET]) == 1
    out = capsys.readouterr().out
    assert "missing" in out and "Contributor" in out and f"python -m shared roles {TARGET} --apply" in out
    assert _cli(["roles", TARGET, "--apply"]) == 0
    out = capsys.readouterr().out
    assert "created" in out and "verified" in out
    assert _cli(["roles", TARGET, "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["assignments"][0]["state"] == "present"
    assert_no_leak(out, *SECRETS)


def test_cli_reports_failures_with_the_fix(configure: Any, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = without_sp_roles(World().scenario())
    scenario["role_assignments"] = [ra for ra in scenario["role_assignments"]
                                    if ra["role"] != "Role Based Access Control Administrator"]
    configure(scenario)
    assert _cli(["roles", TARGET, "--apply"]) == 1
    out = capsys.readouterr().out
    assert "failed" in out and "fix: Grant Role Based Access Control Administrator" in out
