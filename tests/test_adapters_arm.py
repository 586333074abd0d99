# The SDK models type every field Optional; these tests assert the values, so those checks add nothing here.
# mypy: disable-error-code="union-attr, operator, call-overload, attr-defined, arg-type"
"""The ARM adapters (rbac, compute) against the twin: domain values, and every ARM failure turned into the
domain error that says what failed, why, and which role to grant where."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

import pytest

from shared.adapters.compute import ComputeAdapter, parse_vm_id
from shared.adapters.rbac import PermissionEntry, PermissionSet, RbacAdapter, action_matches
from shared.clients import ClientFactory
from shared.config import Settings
from shared.errors import (
    AccessDeniedError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PolicyDeniedError,
    PrincipalNotFoundError,
    TenantMismatchError,
)
from tests.leaks import assert_no_leak
from tests.twin import Twin
from tests.world import (
    APP_ID,
    CONTRIBUTOR,
    CURRENT_SECRET,
    FUNCTION_OBJECT_ID,
    OTHER_TENANT,
    READER,
    SP_OBJECT_ID,
    SUB_SCOPE,
    SUBSCRIPTION,
    TENANT,
    VM_ID,
    VM_PRINCIPAL_ID,
    World,
)


def reload(twin: Twin, scenario: dict[str, Any]) -> None:
    twin.reset()
    twin.load(scenario)


# -- pure logic ------------------------------------------------------------------------------------------------


def test_permission_set_evaluates_wildcards_and_not_actions_per_entry() -> None:
    contributor = PermissionEntry(("*",), ("Microsoft.Authorization/*/Write", "Microsoft.Authorization/*/Delete"))
    perms = PermissionSet(SUB_SCOPE, (contributor,))
    assert perms.allows("Microsoft.Storage/storageAccounts/read")
    assert not perms.allows("Microsoft.Authorization/roleAssignments/write")
    assert perms.missing(["Microsoft.Compute/virtualMachines/write", "microsoft.authorization/roleassignments/WRITE"]) \
        == ["microsoft.authorization/roleassignments/WRITE"]
    # another role's grant is not cancelled by Contributor's notActions (ARM evaluates per role)
    rbac_admin = PermissionEntry(("Microsoft.Authorization/roleAssignments/write", "*/read"))
    assert PermissionSet(SUB_SCOPE, (contributor, rbac_admin)).allows("Microsoft.Authorization/roleAssignments/write")
    assert not PermissionSet(SUB_SCOPE, ()).allows("Microsoft.Storage/storageAccounts/read")
    assert action_matches("*/read", "Microsoft.Compute/virtualMachines/read")
    assert not action_matches("Microsoft.Compute/*/read", "Microsoft.Storage/storageAccounts/read")


def test_parse_vm_id_rejects_anything_else() -> None:
    assert parse_vm_id(VM_ID) == (SUBSCRIPTION, "rg-cyclecloud", "cyclecloud-vm")
    with pytest.raises(BadRequestError):
        parse_vm_id(f"{SUB_SCOPE}/resourceGroups/rg")


# -- subscriptions and roles ------------------------------------------------------------------------------------


async def test_get_subscription(clients: ClientFactory) -> None:
    sub = await RbacAdapter(clients).get_subscription(SUBSCRIPTION)
    assert (sub.subscription_id, sub.tenant_id, sub.display_name, sub.state) == (
        SUBSCRIPTION, TENANT, "HPC Production", "Enabled")


async def test_subscription_of_another_tenant_names_the_owner(twin: Twin, world: World,
                                                              clients: ClientFactory) -> None:
    scenario = world.scenario()
    scenario["subscriptions"][0]["tenant_id"] = OTHER_TENANT
    reload(twin, scenario)
    with pytest.raises(TenantMismatchError) as raised:
        await RbacAdapter(clients).get_subscription(SUBSCRIPTION)
    assert raised.value.details["owning_tenant"] == OTHER_TENANT
    assert raised.value.details["token_tenant"] == TENANT
    assert OTHER_TENANT in raised.value.message and raised.value.fix


async def test_unknown_subscription_is_not_found(clients: ClientFactory) -> None:
    with pytest.raises(NotFoundError) as raised:
        await RbacAdapter(clients).get_subscription("99999999-0000-4000-8000-000000000000")
    assert raised.value.details["arm_code"] == "SubscriptionNotFound"
    # which subscription, and how to find the right id: not "look at the Function's logs"
    assert raised.value.details["subscription_id"] == "99999999-0000-4000-8000-000000000000"
    assert "99999999-0000-4000-8000-000000000000" in raised.value.message
    assert "az account list --all" in raised.value.fix and "logs" not in raised.value.fix


async def test_resolve_role_by_id_name_and_custom_name(twin: Twin, world: World, clients: ClientFactory) -> None:
    scenario = world.scenario()
    custom = str(uuid.uuid4())
    scenario["role_definitions"] = [{"id": custom, "name": "CycleCloud Orchestrator", "actions": ["*/read"],
                                     "assignable_scopes": [SUB_SCOPE]}]
    reload(twin, scenario)
    rbac = RbacAdapter(clients)
    by_id = await rbac.resolve_role(SUBSCRIPTION, CONTRIBUTOR)
    assert (by_id.id, by_id.name, by_id.role_type) == (CONTRIBUTOR, "Contributor", "BuiltInRole")
    assert "Microsoft.Authorization/*/Write" in by_id.not_actions
    assert (await rbac.resolve_role(SUBSCRIPTION, "Reader")).id == READER
    assert (await rbac.resolve_role(SUBSCRIPTION, f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/"
                                                  f"{READER}")).name == "Reader"
    assert (await rbac.resolve_role(SUBSCRIPTION, "CycleCloud Orchestrator")).id == custom
    with pytest.raises(NotFoundError) as raised:
        await rbac.resolve_role(SUBSCRIPTION, "Contributer")
    assert "Contributer" in raised.value.message


# -- assignments ---------------------------------------------------------------------------------------------


async def test_create_list_delete_and_exists_is_success(clients: ClientFactory) -> None:
    rbac = RbacAdapter(clients)
    name = str(uuid.uuid4())
    created = await rbac.create_assignment(SUB_SCOPE, READER, VM_PRINCIPAL_ID, name=name, description="managed")
    assert (created.name, created.role_definition_id, created.principal_id, created.principal_type) == (
        name, READER, VM_PRINCIPAL_ID, "ServicePrincipal")
    assert created.description == "managed"
    # the same principal+role+scope under another name: RoleAssignmentExists -> the existing one
    again = await rbac.create_assignment(SUB_SCOPE, READER, VM_PRINCIPAL_ID, name=str(uuid.uuid4()))
    assert again.name == name
    listed = await rbac.list_assignments(SUB_SCOPE, VM_PRINCIPAL_ID)
    assert [a.name for a in listed] == [name]
    at_scope = await rbac.list_assignments(SUB_SCOPE)
    assert {a.principal_id for a in at_scope} >= {SP_OBJECT_ID, FUNCTION_OBJECT_ID, VM_PRINCIPAL_ID}
    assert await rbac.delete_assignment(created.id) is True
    assert await rbac.delete_assignment(created.id) is False
    assert await rbac.list_assignments(SUB_SCOPE, VM_PRINCIPAL_ID) == []


async def test_missing_role_assignments_write_names_the_role_to_grant(twin: Twin, world: World,
                                                                       clients: ClientFactory) -> None:
    scenario = world.scenario()
    scenario["role_assignments"] = [ra for ra in scenario["role_assignments"]
                                    if ra["role"] != "Role Based Access Control Administrator"]
    scenario["role_assignments"].append({"scope": SUB_SCOPE, "role": "Contributor", "principal_id": FUNCTION_OBJECT_ID})
    reload(twin, scenario)
    with pytest.raises(AccessDeniedError) as raised:
        await RbacAdapter(clients).create_assignment(SUB_SCOPE, READER, VM_PRINCIPAL_ID, name=str(uuid.uuid4()))
    err = raised.value
    assert err.details["action"] == "Microsoft.Authorization/roleAssignments/write"
    assert f"'{SUB_SCOPE}'" in err.message  # the grant scope, not the assignment's own id
    assert "Role Based Access Control Administrator" in err.fix and "Contributor is not enough" in err.fix
    assert SUB_SCOPE in err.fix


async def test_policy_denial_names_the_policy_assignment(twin: Twin, world: World, clients: ClientFactory) -> None:
    scenario = world.scenario()
    scenario["policy_assignments"] = [{"name": "deny-ra", "scope": SUB_SCOPE, "display_name": "Block role grants"}]
    reload(twin, scenario)
    rbac = RbacAdapter(clients)
    with pytest.raises(PolicyDeniedError) as raised:
        await rbac.create_assignment(SUB_SCOPE, READER, VM_PRINCIPAL_ID, name=str(uuid.uuid4()))
    err = raised.value
    assert "Block role grants" in err.message
    assert err.details["policy_assignment_id"] == f"{SUB_SCOPE}/providers/Microsoft.Authorization/policyAssignments/" \
                                                  "deny-ra"
    [policy] = await rbac.policy_assignments(SUBSCRIPTION)
    assert policy.display_name == "Block role grants" and policy.denies_role_assignment(READER)


async def test_principal_not_found_is_a_retriable_domain_error(twin: Twin, world: World,
                                                               clients: ClientFactory) -> None:
    scenario = world.scenario()
    scenario["applications"][0]["service_principal"]["created"] = "now"
    scenario["propagation"] = {"principal_not_found_seconds": 60}
    reload(twin, scenario)
    with pytest.raises(PrincipalNotFoundError):
        await RbacAdapter(clients).create_assignment(SUB_SCOPE, READER, SP_OBJECT_ID, name=str(uuid.uuid4()))


# -- permissions, policy, activity log --------------------------------------------------------------------------


async def test_permissions_of_the_product_and_of_the_cyclecloud_principal(clients: ClientFactory) -> None:
    rbac = RbacAdapter(clients)
    mine = await rbac.permissions(SUBSCRIPTION)
    assert mine.allows("Microsoft.Authorization/roleAssignments/write")
    assert not mine.allows("Microsoft.Storage/storageAccounts/write")
    credential = clients.secret_credential(TENANT, APP_ID, CURRENT_SECRET)
    try:
        theirs = await rbac.permissions(SUBSCRIPTION, credential)
        assert theirs.allows("Microsoft.Storage/storageAccounts/read")
        assert not theirs.allows("Microsoft.Authorization/roleAssignments/write")
        in_rg = await rbac.permissions(SUBSCRIPTION, credential, resource_group="rg-cyclecloud")
        assert in_rg.scope.endswith("/resourceGroups/rg-cyclecloud") and in_rg.allows("Microsoft.Compute/disks/write")
    finally:
        await credential.close()


async def test_permissions_with_an_expired_secret_is_an_authentication_error(
        twin: Twin, clients: ClientFactory, caplog: pytest.LogCaptureFixture) -> None:
    reload(twin, World(secret_end="now-1d").scenario())
    credential = clients.secret_credential(TENANT, APP_ID, CURRENT_SECRET)
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(AuthenticationError) as raised:
            await RbacAdapter(clients).permissions(SUBSCRIPTION, credential)
    finally:
        await credential.close()
    assert raised.value.details["entra"]["aadsts"] == "AADSTS7000222"
    assert_no_leak([str(raised.value), str(raised.value.to_dict()), caplog], CURRENT_SECRET)


async def test_sp_without_role_has_no_permissions(twin: Twin, world: World, clients: ClientFactory) -> None:
    scenario = world.scenario()
    scenario["role_assignments"] = [ra for ra in scenario["role_assignments"] if ra["principal_id"] != SP_OBJECT_ID]
    reload(twin, scenario)
    credential = clients.secret_credential(TENANT, APP_ID, CURRENT_SECRET)
    try:
        perms = await RbacAdapter(clients).permissions(SUBSCRIPTION, credential)
    finally:
        await credential.close()
    assert perms.entries == () and not perms.allows("Microsoft.Storage/storageAccounts/read")


async def test_failed_operations_from_the_activity_log(twin: Twin, world: World, clients: ClientFactory) -> None:
    scenario = world.scenario()
    scenario["activity_log"] = [
        {"subscription_id": SUBSCRIPTION, "caller": APP_ID, "timestamp": "now-2h",
         "operation_name": "Microsoft.Storage/storageAccounts/read", "resource_id": SUB_SCOPE,
         "message": '{"error":{"code":"AuthorizationFailed","message":"The client does not have authorization"}}'},
        {"subscription_id": SUBSCRIPTION, "caller": APP_ID, "timestamp": "now-1h", "status": "Succeeded",
         "operation_name": "Microsoft.Compute/virtualMachines/write", "resource_id": VM_ID, "message": ""},
        {"subscription_id": SUBSCRIPTION, "caller": "someone@contoso.com", "timestamp": "now-1h",
         "operation_name": "Microsoft.Compute/virtualMachines/write", "resource_id": VM_ID, "message": "no"},
        {"subscription_id": SUBSCRIPTION, "caller": APP_ID, "timestamp": "now-5d",
         "operation_name": "Microsoft.Compute/disks/write", "resource_id": SUB_SCOPE, "message": "too old"},
    ]
    reload(twin, scenario)
    since = twin.clock.now() - timedelta(days=1)
    events = await RbacAdapter(clients).failed_operations(SUBSCRIPTION, [APP_ID, SP_OBJECT_ID], since)
    assert [(e.operation, e.error_code, e.message) for e in events] == [
        ("Microsoft.Storage/storageAccounts/read", "AuthorizationFailed", "The client does not have authorization")]
    assert events[0].timestamp < twin.clock.now() and events[0].correlation_id


async def test_reads_without_reader_are_access_denied(twin: Twin, world: World, clients: ClientFactory) -> None:
    scenario = world.scenario()
    scenario["role_assignments"] = [ra for ra in scenario["role_assignments"]
                                    if ra["principal_id"] != FUNCTION_OBJECT_ID]
    reload(twin, scenario)
    with pytest.raises(AccessDeniedError) as raised:
        await RbacAdapter(clients).policy_assignments(SUBSCRIPTION)
    assert "Reader" in raised.value.fix


# -- compute --------------------------------------------------------------------------------------------------


async def test_get_vm_identity_on_and_off(twin: Twin, world: World, settings: Settings) -> None:
    async with ClientFactory(settings) as clients:
        vm = await ComputeAdapter(clients).get_vm(VM_ID)
    assert (vm.name, vm.identity_principal_id, vm.identity_tenant_id, vm.has_system_identity) == (
        "cyclecloud-vm", VM_PRINCIPAL_ID, TENANT, True)
    scenario = world.scenario()
    scenario["virtual_machines"][0].pop("identity")
    reload(twin, scenario)  # the reset forgets issued tokens: use a fresh factory
    async with ClientFactory(settings) as clients:
        vm = await ComputeAdapter(clients).get_vm(VM_ID)
        assert vm.identity_principal_id is None and not vm.has_system_identity
        with pytest.raises(NotFoundError):
            await ComputeAdapter(clients).get_vm(VM_ID.replace("cyclecloud-vm", "gone"))


async def test_run_command_returns_output_deletes_itself_and_keeps_protected_values_secret(
        twin: Twin, clients: ClientFactory, caplog: pytest.LogCaptureFixture) -> None:
    secret = "Run-Command-Protected-Value-123"
    calls: list[Any] = []

    def executor(vm: Any, lines: list[str], parameters: dict[str, str], protected: dict[str, str]) -> tuple[
            int, str, str]:
        calls.append((lines, parameters, protected))
        return 0, f"ok {parameters['ACCOUNT']}\n", ""

    twin.run_command_executor = executor
    caplog.set_level(logging.DEBUG)
    result = await ComputeAdapter(clients).run_command(
        VM_ID, "ccr-push-1", ["set -e", 'echo "$ACCOUNT"'], {"ACCOUNT": "azure"}, {"SECRET": secret},
        timeout_seconds=60)
    assert (result.execution_state, result.exit_code, result.stdout, result.succeeded) == (
        "Succeeded", 0, "ok azure\n", True)
    assert calls == [(["set -e", 'echo "$ACCOUNT"'], {"ACCOUNT": "azure"}, {"SECRET": secret})]
    assert twin.state.vm(VM_ID).run_commands == {}
    assert_no_leak([caplog, repr(result)], secret)


async def test_run_command_failure_is_a_result_not_an_exception(clients: ClientFactory, twin: Twin) -> None:
    twin.run_command_executor = None  # a VM without the CycleCloud CLI (reset restores the default)
    result = await ComputeAdapter(clients).run_command(VM_ID, "ccr-probe", ["cyclecloud account show azure"], {}, {},
                                                       timeout_seconds=60)
    assert (result.execution_state, result.exit_code, result.succeeded) == ("Failed", 127, False)
    assert "command not found" in result.stderr


async def test_run_command_without_rights_names_virtual_machine_contributor(twin: Twin, world: World,
                                                                           clients: ClientFactory) -> None:
    scenario = world.scenario()
    scenario["role_assignments"] = [ra for ra in scenario["role_assignments"]
                                    if ra["role"] != "Virtual Machine Contributor"]
    reload(twin, scenario)
    with pytest.raises(AccessDeniedError) as raised:
        await ComputeAdapter(clients).run_command(VM_ID, "x", ["true"], {}, {"S": "protected-value-xyz"},
                                                  location="eastus")
    assert raised.value.details["action"] == "Microsoft.Compute/virtualMachines/runCommands/write"
    assert "Virtual Machine Contributor" in raised.value.fix


async def test_activity_log_events_carry_the_object_id_in_their_claims(twin: Twin, world: World,
                                                                     clients: ClientFactory) -> None:
    """Events name a service principal by its client id in `caller`; the object id is only in the claims, so a
    search by object id alone still finds them."""
    scenario = world.scenario()
    scenario["activity_log"] = [{"subscription_id": SUBSCRIPTION, "caller": APP_ID, "timestamp": "now-1h",
                                 "operation_name": "Microsoft.Storage/storageAccounts/read", "resource_id": SUB_SCOPE,
                                 "message": '{"error":{"code":"AuthorizationFailed","message":"denied"}}'}]
    reload(twin, scenario)
    since = twin.clock.now() - timedelta(days=1)
    (event,) = await RbacAdapter(clients).failed_operations(SUBSCRIPTION, [SP_OBJECT_ID], since)
    assert event.caller.lower() == APP_ID and event.object_id == SP_OBJECT_ID


async def test_a_policy_denial_in_the_activity_log_names_its_assignment(twin: Twin, world: World,
                                                                       clients: ClientFactory) -> None:
    from tests.scenarios.library import policy_denied_vm

    scenario = world.scenario()
    policy_denied_vm(scenario)
    reload(twin, scenario)
    since = twin.clock.now() - timedelta(days=1)
    (event,) = await RbacAdapter(clients).failed_operations(SUBSCRIPTION, [APP_ID], since)
    assert event.error_code == "RequestDisallowedByPolicy"
    assert event.policy is not None
    assert event.policy["policy_assignment_display_name"] == "Allowed VM sizes"
    assert event.policy["policy_assignment_id"].endswith("/policyAssignments/allowed-vm-skus")
