# The SDK models type every field Optional; these tests assert the values, so those checks add nothing here.
# mypy: disable-error-code="union-attr, operator, call-overload, attr-defined, arg-type"
"""Conformance: the unmodified ARM SDKs (azure-mgmt-authorization sync and aio, the subscriptions client,
azure-mgmt-compute) against the twin's ARM, through the proxy with Azure's real host names. Values and
documented exceptions, with ARM's real error codes and messages."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.identity import ClientSecretCredential, ManagedIdentityCredential
from azure.identity.aio import ManagedIdentityCredential as AsyncManagedIdentityCredential
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.aio import AuthorizationManagementClient as AsyncAuthorizationManagementClient
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.resource.subscriptions import SubscriptionClient

from tests.twin import Twin
from tests.world import (
    APP_ID,
    ARM_ENDPOINT,
    ARM_SCOPE,
    CONTRIBUTOR,
    CURRENT_SECRET,
    FUNCTION_CLIENT_ID,
    FUNCTION_OBJECT_ID,
    OTHER_TENANT,
    READER,
    RESOURCE_GROUP,
    SP_OBJECT_ID,
    SUB_SCOPE,
    SUBSCRIPTION,
    TENANT,
    VM_ID,
    VM_PRINCIPAL_ID,
    World,
)


def role_id(guid: str) -> str:
    return f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def params(role: str, principal: str, principal_type: str | None = "ServicePrincipal",
           description: str | None = None) -> RoleAssignmentCreateParameters:
    return RoleAssignmentCreateParameters(role_definition_id=role_id(role), principal_id=principal,
                                          principal_type=principal_type, description=description)


@pytest.fixture
def loaded(twin: Twin, world: World) -> dict[str, Any]:
    scenario = world.scenario()
    twin.load(scenario)
    return scenario


def auth_client(sub: str = SUBSCRIPTION) -> AuthorizationManagementClient:
    return AuthorizationManagementClient(ManagedIdentityCredential(), sub)


def sp_credential() -> ClientSecretCredential:
    return ClientSecretCredential(TENANT, APP_ID, CURRENT_SECRET)


# -- subscriptions ---------------------------------------------------------------------------------------------


def test_subscription_get_returns_tenant_and_state(loaded: dict[str, Any]) -> None:
    sub = SubscriptionClient(ManagedIdentityCredential()).subscriptions.get(SUBSCRIPTION)
    assert (sub.subscription_id, sub.tenant_id, sub.display_name, sub.state) == (
        SUBSCRIPTION, TENANT, "HPC Production", "Enabled")
    listed = list(SubscriptionClient(ManagedIdentityCredential()).subscriptions.list())
    assert [s.subscription_id for s in listed] == [SUBSCRIPTION]


def test_unknown_subscription_is_404_subscription_not_found(loaded: dict[str, Any]) -> None:
    missing = "99999999-0000-4000-8000-000000000000"
    with pytest.raises(ResourceNotFoundError) as raised:
        SubscriptionClient(ManagedIdentityCredential()).subscriptions.get(missing)
    assert raised.value.error is not None and raised.value.error.code == "SubscriptionNotFound"
    assert f"The subscription '{missing}' could not be found." in str(raised.value)


def test_token_from_another_tenant_is_invalid_authentication_token_tenant(twin: Twin, world: World) -> None:
    scenario = world.scenario()
    scenario["subscriptions"][0]["tenant_id"] = OTHER_TENANT
    twin.load(scenario)
    with pytest.raises(ClientAuthenticationError) as raised:
        SubscriptionClient(sp_credential()).subscriptions.get(SUBSCRIPTION)
    err = raised.value
    assert err.error is not None and err.error.code == "InvalidAuthenticationTokenTenant"
    assert f"https://sts.windows.net/{OTHER_TENANT}/" in err.error.message
    assert f"https://login.windows.net/{OTHER_TENANT}" in err.error.message
    assert err.response is not None
    challenge = err.response.headers["WWW-Authenticate"]
    assert f'authorization_uri="https://login.windows.net/{OTHER_TENANT}"' in challenge
    assert 'error="invalid_token"' in challenge


def test_missing_authorization_header_is_authentication_failed(loaded: dict[str, Any]) -> None:
    import requests

    answer = requests.get(f"{ARM_ENDPOINT}/subscriptions/{SUBSCRIPTION}?api-version=2022-12-01", timeout=10)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "AuthenticationFailed"


# -- role definitions -------------------------------------------------------------------------------------------


def test_role_definitions_get_and_filter_by_name(loaded: dict[str, Any]) -> None:
    client = auth_client()
    role = client.role_definitions.get(SUB_SCOPE, CONTRIBUTOR)
    assert role.role_name == "Contributor" and role.name == CONTRIBUTOR
    assert role.id == role_id(CONTRIBUTOR)
    assert role.permissions[0].actions == ["*"]
    assert "Microsoft.Authorization/*/Write" in role.permissions[0].not_actions
    found = list(client.role_definitions.list(SUB_SCOPE, filter="roleName eq 'Reader'"))
    assert [r.name for r in found] == [READER]
    assert list(client.role_definitions.list(SUB_SCOPE, filter="roleName eq 'No Such Role'")) == []
    with pytest.raises(ResourceNotFoundError) as raised:
        client.role_definitions.get(SUB_SCOPE, "00000000-0000-4000-8000-000000000000")
    assert raised.value.error is not None and raised.value.error.code == "RoleDefinitionDoesNotExist"


def test_custom_role_definition_from_the_scenario(twin: Twin, world: World) -> None:
    scenario = world.scenario()
    custom = str(uuid.uuid4())
    scenario["role_definitions"] = [{"id": custom, "name": f"CycleCloud {SUBSCRIPTION}",
                                     "actions": ["Microsoft.Compute/*/read"], "assignable_scopes": [SUB_SCOPE]}]
    twin.load(scenario)
    found = list(auth_client().role_definitions.list(SUB_SCOPE, filter=f"roleName eq 'CycleCloud {SUBSCRIPTION}'"))
    assert [(r.name, r.role_type) for r in found] == [(custom, "CustomRole")]


# -- role assignments -------------------------------------------------------------------------------------------


def test_create_get_list_delete_role_assignment(loaded: dict[str, Any], twin: Twin) -> None:
    client = auth_client()
    name = str(uuid.uuid4())
    created = client.role_assignments.create(SUB_SCOPE, name, params(READER, SP_OBJECT_ID, description="label"))
    assert created.name == name and created.principal_id == SP_OBJECT_ID
    assert created.role_definition_id.endswith(READER) and created.scope == SUB_SCOPE
    assert created.principal_type == "ServicePrincipal" and created.description == "label"
    assert created.id == f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleAssignments/{name}"
    assert twin.state.role_assignments[name].created_by == FUNCTION_OBJECT_ID

    again = client.role_assignments.create(SUB_SCOPE, name, params(READER, SP_OBJECT_ID))  # idempotent re-PUT
    assert again.name == name
    assert client.role_assignments.get(SUB_SCOPE, name).principal_id == SP_OBJECT_ID
    assert client.role_assignments.get_by_id(created.id).name == name

    mine = list(client.role_assignments.list_for_scope(SUB_SCOPE, filter=f"principalId eq '{SP_OBJECT_ID}'"))
    assert {a.role_definition_id.rsplit("/", 1)[-1] for a in mine} == {READER, CONTRIBUTOR}
    at_scope = list(client.role_assignments.list_for_scope(SUB_SCOPE, filter="atScope()"))
    assert name in {a.name for a in at_scope}
    everything = list(client.role_assignments.list_for_subscription())
    assert len(everything) == len(twin.state.role_assignments)

    deleted = client.role_assignments.delete(SUB_SCOPE, name)
    assert deleted is not None and deleted.name == name
    assert client.role_assignments.delete(SUB_SCOPE, name) is None  # 204 when already gone
    with pytest.raises(ResourceNotFoundError):
        client.role_assignments.get(SUB_SCOPE, name)


def test_list_filters_follow_arm_semantics(loaded: dict[str, Any]) -> None:
    client = auth_client()
    rg_scope = f"{SUB_SCOPE}/resourceGroups/{RESOURCE_GROUP}"
    client.role_assignments.create(rg_scope, str(uuid.uuid4()), params(READER, VM_PRINCIPAL_ID))
    # atScope() at the subscription: at or above only, so the resource-group assignment is not there
    at_sub = list(client.role_assignments.list_for_scope(SUB_SCOPE, filter="atScope()"))
    assert VM_PRINCIPAL_ID not in {a.principal_id for a in at_sub}
    # principalId eq: at, above or below
    below = list(client.role_assignments.list_for_scope(SUB_SCOPE, filter=f"principalId eq '{VM_PRINCIPAL_ID}'"))
    assert [a.scope for a in below] == [rg_scope]
    # at the resource group, atScope() includes the subscription's (inherited) assignments
    at_rg = list(client.role_assignments.list_for_scope(rg_scope, filter="atScope()"))
    assert SP_OBJECT_ID in {a.principal_id for a in at_rg}
    with pytest.raises(HttpResponseError) as raised:
        list(client.role_assignments.list_for_scope(SUB_SCOPE, filter="roleDefinitionId eq 'x'"))
    assert raised.value.status_code == 400


def test_role_assignment_exists_under_another_name_is_409(loaded: dict[str, Any]) -> None:
    client = auth_client()
    with pytest.raises(ResourceExistsError) as raised:
        client.role_assignments.create(SUB_SCOPE, str(uuid.uuid4()), params(CONTRIBUTOR, SP_OBJECT_ID))
    err = raised.value
    assert err.status_code == 409 and err.error is not None and err.error.code == "RoleAssignmentExists"
    assert "The role assignment already exists." in err.error.message
    assert "0d6a3c1e8b7f4e2d9c5a1f3e5d7b9a01" in err.error.message  # the existing assignment's id


def test_same_name_for_another_principal_is_update_not_permitted(loaded: dict[str, Any]) -> None:
    with pytest.raises(HttpResponseError) as raised:
        auth_client().role_assignments.create(SUB_SCOPE, "0d6a3c1e-8b7f-4e2d-9c5a-1f3e5d7b9a01",
                                              params(CONTRIBUTOR, VM_PRINCIPAL_ID))
    assert raised.value.error is not None and raised.value.error.code == "RoleAssignmentUpdateNotPermitted"


def test_caller_without_role_assignments_write_gets_authorization_failed(twin: Twin, world: World) -> None:
    scenario = world.scenario()
    scenario["role_assignments"] = [ra for ra in scenario["role_assignments"]
                                    if ra["role"] != "Role Based Access Control Administrator"]
    scenario["role_assignments"].append({"scope": SUB_SCOPE, "role": "Contributor", "principal_id": FUNCTION_OBJECT_ID})
    twin.load(scenario)
    name = str(uuid.uuid4())
    with pytest.raises(HttpResponseError) as raised:
        auth_client().role_assignments.create(SUB_SCOPE, name, params(READER, VM_PRINCIPAL_ID))
    err = raised.value
    assert err.status_code == 403 and err.error is not None and err.error.code == "AuthorizationFailed"
    # a service principal is named by its object id twice (Azure/azure-sdk-for-net#1157), never its client id
    assert FUNCTION_CLIENT_ID not in err.error.message
    assert err.error.message == (
        f"The client '{FUNCTION_OBJECT_ID}' with object id '{FUNCTION_OBJECT_ID}' does not have authorization to "
        f"perform action 'Microsoft.Authorization/roleAssignments/write' over scope "
        f"'{SUB_SCOPE}/providers/Microsoft.Authorization/roleAssignments/{name}' or the scope is invalid. If access "
        "was recently granted, please refresh your credentials.")
    failed = [e for e in twin.state.activity_log if e.status == "Failed"]
    assert failed and failed[-1].operation_name == "Microsoft.Authorization/roleAssignments/write"


def test_policy_denial_is_request_disallowed_by_policy(twin: Twin, world: World) -> None:
    scenario = world.scenario()
    scenario["policy_assignments"] = [{"name": "deny-contrib", "scope": SUB_SCOPE, "display_name": "No Contributor",
                                       "denied_roles": ["Reader"]}]
    twin.load(scenario)
    name = str(uuid.uuid4())
    with pytest.raises(HttpResponseError) as raised:
        auth_client().role_assignments.create(SUB_SCOPE, name, params(READER, VM_PRINCIPAL_ID))
    err = raised.value
    assert err.status_code == 403 and err.error is not None and err.error.code == "RequestDisallowedByPolicy"
    assert err.error.target == name
    assert err.error.message.startswith(f"Resource '{name}' was disallowed by policy. Policy identifiers: '[")
    info = err.error.additional_info[0]
    assert info.type == "PolicyViolation"
    assert info.info["policyAssignmentId"] == f"{SUB_SCOPE}/providers/Microsoft.Authorization/policyAssignments/" \
                                              "deny-contrib"
    # a role the policy does not list is allowed
    auth_client().role_assignments.create(SUB_SCOPE, str(uuid.uuid4()), params(CONTRIBUTOR, VM_PRINCIPAL_ID))


def test_principal_not_found_while_replicating_unless_principal_type_is_set(twin: Twin, world: World) -> None:
    scenario = world.scenario()
    scenario["applications"][0]["service_principal"]["created"] = "now"
    scenario["role_assignments"] = [ra for ra in scenario["role_assignments"] if ra["principal_id"] != SP_OBJECT_ID]
    scenario["propagation"] = {"principal_replication_seconds": 600}
    twin.load(scenario)
    client = auth_client()
    with pytest.raises(HttpResponseError) as raised:
        client.role_assignments.create(SUB_SCOPE, str(uuid.uuid4()), params(CONTRIBUTOR, SP_OBJECT_ID, None))
    err = raised.value
    assert err.status_code == 400 and err.error is not None and err.error.code == "PrincipalNotFound"
    assert f"Principal {SP_OBJECT_ID.replace('-', '')} does not exist in the directory {TENANT}." in err.error.message
    # setting principalType skips the lookup, as ARM documents
    created = client.role_assignments.create(SUB_SCOPE, str(uuid.uuid4()), params(CONTRIBUTOR, SP_OBJECT_ID))
    assert created.principal_type == "ServicePrincipal"


def test_forced_principal_not_found_window_ignores_principal_type(twin: Twin, world: World) -> None:
    scenario = world.scenario()
    scenario["applications"][0]["service_principal"]["created"] = "now"
    scenario["role_assignments"] = [ra for ra in scenario["role_assignments"] if ra["principal_id"] != SP_OBJECT_ID]
    scenario["propagation"] = {"principal_not_found_seconds": 30}
    twin.load(scenario)
    client = auth_client()
    with pytest.raises(HttpResponseError) as raised:
        client.role_assignments.create(SUB_SCOPE, str(uuid.uuid4()), params(CONTRIBUTOR, SP_OBJECT_ID))
    assert raised.value.error is not None and raised.value.error.code == "PrincipalNotFound"
    twin.clock.advance(31)
    assert client.role_assignments.create(SUB_SCOPE, str(uuid.uuid4()), params(CONTRIBUTOR, SP_OBJECT_ID)).name


def test_new_assignment_takes_effect_after_the_propagation_delay(twin: Twin, world: World) -> None:
    scenario = world.scenario()
    scenario["propagation"] = {"role_assignment_seconds": 60}
    twin.load(scenario)
    client = auth_client()
    client.role_assignments.create(SUB_SCOPE, str(uuid.uuid4()), params(READER, VM_PRINCIPAL_ID))
    assert not twin.state.is_allowed(VM_PRINCIPAL_ID, "Microsoft.Storage/storageAccounts/read", SUB_SCOPE)
    twin.clock.advance(61)
    assert twin.state.is_allowed(VM_PRINCIPAL_ID, "Microsoft.Storage/storageAccounts/read", SUB_SCOPE)


async def test_async_authorization_client_creates_and_reports_exists(loaded: dict[str, Any]) -> None:
    async with AsyncManagedIdentityCredential() as cred, AsyncAuthorizationManagementClient(cred, SUBSCRIPTION) as c:
        created = await c.role_assignments.create(SUB_SCOPE, str(uuid.uuid4()), params(READER, VM_PRINCIPAL_ID))
        assert created.principal_id == VM_PRINCIPAL_ID
        with pytest.raises(ResourceExistsError) as raised:
            await c.role_assignments.create(SUB_SCOPE, str(uuid.uuid4()), params(READER, VM_PRINCIPAL_ID))
        assert raised.value.error is not None and raised.value.error.code == "RoleAssignmentExists"
        names = [a.name async for a in c.role_assignments.list_for_scope(
            SUB_SCOPE, filter=f"principalId eq '{VM_PRINCIPAL_ID}'")]
        assert names == [created.name]
        role = await c.role_definitions.get(SUB_SCOPE, READER)
        assert role.role_name == "Reader"


# -- permissions, policy, activity log (raw ARM) ----------------------------------------------------------------


def _raw_get(credential: Any, path: str) -> Any:
    import requests

    token = credential.get_token(ARM_SCOPE).token
    answer = requests.get(f"{ARM_ENDPOINT}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return answer


def test_effective_permissions_are_the_callers(loaded: dict[str, Any]) -> None:
    mine = _raw_get(ManagedIdentityCredential(),
                    f"{SUB_SCOPE}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01").json()
    actions = {a for entry in mine["value"] for a in entry["actions"]}
    assert "Microsoft.Authorization/roleAssignments/write" in actions and "*/read" in actions
    theirs = _raw_get(sp_credential(),
                      f"{SUB_SCOPE}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Authorization/permissions"
                      "?api-version=2022-04-01").json()
    assert theirs["value"][0]["actions"] == ["*"]
    assert "Microsoft.Authorization/*/Write" in theirs["value"][0]["notActions"]


def test_policy_assignments_list_names_the_denied_roles(twin: Twin, world: World) -> None:
    scenario = world.scenario()
    scenario["policy_assignments"] = [{"name": "deny-ra", "scope": SUB_SCOPE, "display_name": "Deny RA",
                                       "denied_roles": ["Contributor"], "denied_principal_types": ["ServicePrincipal"]}]
    twin.load(scenario)
    body = _raw_get(ManagedIdentityCredential(), f"{SUB_SCOPE}/providers/Microsoft.Authorization/policyAssignments"
                                                 "?api-version=2023-04-01").json()
    [policy] = body["value"]
    assert policy["properties"]["displayName"] == "Deny RA"
    assert policy["properties"]["enforcementMode"] == "Default"
    assert policy["properties"]["parameters"]["deniedRoleDefinitionIds"]["value"] == [CONTRIBUTOR]


def test_activity_log_lists_failed_operations_in_the_window(twin: Twin, world: World) -> None:
    scenario = world.scenario()
    scenario["activity_log"] = [
        {"subscription_id": SUBSCRIPTION, "caller": APP_ID, "timestamp": "now-2h",
         "operation_name": "Microsoft.Storage/storageAccounts/read", "resource_id": SUB_SCOPE,
         "message": '{"error":{"code":"AuthorizationFailed","message":"denied"}}'},
        {"subscription_id": SUBSCRIPTION, "caller": "someone-else", "timestamp": "now-1h",
         "operation_name": "Microsoft.Compute/virtualMachines/write", "resource_id": VM_ID, "message": "x"},
        {"subscription_id": SUBSCRIPTION, "caller": APP_ID, "timestamp": "now-3d",
         "operation_name": "Microsoft.Compute/disks/write", "resource_id": SUB_SCOPE, "message": "old"},
    ]
    twin.load(scenario)
    now = twin.clock.now()
    start = (now.replace(microsecond=0) - __import__("datetime").timedelta(days=1)).isoformat().replace("+00:00", "Z")
    path = (f"{SUB_SCOPE}/providers/Microsoft.Insights/eventtypes/management/values?api-version=2015-04-01"
            f"&$filter=eventTimestamp ge '{start}' and caller eq '{APP_ID}'")
    body = _raw_get(ManagedIdentityCredential(), path).json()
    [event] = body["value"]
    assert event["operationName"]["value"] == "Microsoft.Storage/storageAccounts/read"
    assert event["status"]["value"] == "Failed" and event["caller"] == APP_ID
    assert "AuthorizationFailed" in event["properties"]["statusMessage"]
    assert event["eventTimestamp"].endswith("Z") and event["correlationId"]
    # the client id names the service principal; its object id is only in the claims
    claims = event["claims"]
    assert claims["appid"] == APP_ID.lower()
    assert claims["http://schemas.microsoft.com/identity/claims/objectidentifier"] == SP_OBJECT_ID


# -- compute --------------------------------------------------------------------------------------------------


def test_vm_identity_is_reported(loaded: dict[str, Any], twin: Twin, world: World) -> None:
    vm = ComputeManagementClient(ManagedIdentityCredential(), SUBSCRIPTION).virtual_machines.get(
        RESOURCE_GROUP, "cyclecloud-vm")
    assert vm.identity is not None and vm.identity.type == "SystemAssigned"
    assert (vm.identity.principal_id, vm.identity.tenant_id) == (VM_PRINCIPAL_ID, TENANT)
    scenario = world.scenario()
    scenario["virtual_machines"][0].pop("identity")
    twin.reset()
    twin.load(scenario)
    vm = ComputeManagementClient(ManagedIdentityCredential(), SUBSCRIPTION).virtual_machines.get(
        RESOURCE_GROUP, "cyclecloud-vm")
    assert vm.identity is None
    with pytest.raises(ResourceNotFoundError) as raised:
        ComputeManagementClient(ManagedIdentityCredential(), SUBSCRIPTION).virtual_machines.get(RESOURCE_GROUP, "nope")
    assert raised.value.error is not None and raised.value.error.code == "ResourceNotFound"


def _run_command(script: str, protected: str = "s3cr3t-value") -> dict[str, Any]:
    return {"location": "eastus", "properties": {
        "source": {"script": script},
        "parameters": [{"name": "ACCOUNT", "value": "azure"}],
        "protectedParameters": [{"name": "SECRET", "value": protected}],
        "timeoutInSeconds": 120,
    }}


def test_run_command_lro_runs_the_executor_and_never_stores_protected_values(loaded: dict[str, Any],
                                                                              twin: Twin) -> None:
    seen: list[Any] = []

    def executor(vm: Any, lines: list[str], parameters: dict[str, str], protected: dict[str, str]) -> tuple[
            int, str, str]:
        seen.append((vm.id, lines, parameters, protected))
        return 0, "account updated\n", ""

    twin.run_command_executor = executor
    client = ComputeManagementClient(ManagedIdentityCredential(), SUBSCRIPTION)
    poller = client.virtual_machine_run_commands.begin_create_or_update(
        RESOURCE_GROUP, "cyclecloud-vm", "rotate-1", _run_command("echo one\ncyclecloud account edit azure"))
    result = poller.result()
    assert result.properties.provisioning_state == "Succeeded"
    view = client.virtual_machine_run_commands.get_by_virtual_machine(
        RESOURCE_GROUP, "cyclecloud-vm", "rotate-1", expand="instanceView").properties.instance_view
    assert (view.execution_state, view.exit_code, view.output) == ("Succeeded", 0, "account updated\n")
    assert seen == [(VM_ID, ["echo one", "cyclecloud account edit azure"], {"ACCOUNT": "azure"},
                     {"SECRET": "s3cr3t-value"})]
    assert "s3cr3t-value" not in repr(twin.state.vm(VM_ID).run_commands)
    client.virtual_machine_run_commands.begin_delete(RESOURCE_GROUP, "cyclecloud-vm", "rotate-1").result()
    with pytest.raises(ResourceNotFoundError):
        client.virtual_machine_run_commands.get_by_virtual_machine(RESOURCE_GROUP, "cyclecloud-vm", "rotate-1")


def test_run_command_without_executor_exits_127(loaded: dict[str, Any], twin: Twin) -> None:
    twin.run_command_executor = None  # a VM without the CycleCloud CLI (reset restores the default)
    client = ComputeManagementClient(ManagedIdentityCredential(), SUBSCRIPTION)
    client.virtual_machine_run_commands.begin_create_or_update(
        RESOURCE_GROUP, "cyclecloud-vm", "probe", _run_command("cyclecloud account show azure")).result()
    view = client.virtual_machine_run_commands.get_by_virtual_machine(
        RESOURCE_GROUP, "cyclecloud-vm", "probe", expand="instanceView").properties.instance_view
    assert (view.execution_state, view.exit_code) == ("Failed", 127)
    assert "cyclecloud: command not found" in view.error


def test_run_command_needs_run_commands_write(twin: Twin, world: World) -> None:
    scenario = world.scenario()
    scenario["role_assignments"] = [ra for ra in scenario["role_assignments"]
                                    if ra["role"] != "Virtual Machine Contributor"]
    twin.load(scenario)
    client = ComputeManagementClient(ManagedIdentityCredential(), SUBSCRIPTION)
    with pytest.raises(HttpResponseError) as raised:
        client.virtual_machine_run_commands.begin_create_or_update(
            RESOURCE_GROUP, "cyclecloud-vm", "x", _run_command("true"))
    assert raised.value.status_code == 403
    assert "Microsoft.Compute/virtualMachines/runCommands/write" in str(raised.value)
