"""The scenario library: each failure the CycleCloud guide describes, as a twin scenario.

Written from the guide (the seed documents), not from our tests: each scenario quotes the guide's symptom and
breaks the canonical world (`tests.world`) the way the guide says it breaks, then the product's CLI is run on it
as a new user would (validate, remediate --dry-run, remediate, and a follow-up where time matters). The expected
codes are what the guide names as the cause; `tests/test_scenarios.py` checks them and that docs/scenarios/
matches what the CLI prints today.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from tests.twin import Twin
from tests.world import (
    APP_ID,
    CURRENT_SECRET,
    FUNCTION_OBJECT_ID,
    KEY_ID,
    OTHER_TENANT,
    PREVIOUS_KEY_ID,
    PREVIOUS_SECRET,
    RESOURCE_GROUP,
    SECRET_NAME,
    SP_OBJECT_ID,
    SUBSCRIPTION,
    VAULT_RESOURCE_ID,
    VM_PRINCIPAL_ID,
    World,
    account_record,
)

Scenario = dict[str, Any]
Target = dict[str, Any]

MISTYPED_SECRET = "Abc8Q~current-secret-value-0123456789xyZ"  # one character off
TYPO_SUBSCRIPTION = "0b1f6471-1bf0-4dda-aec3-cb9272f09591"  # the last digit mistyped
TYPO_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db48"
TYPO_APP_ID = "2d4e6f80-1a2b-4c3d-9e8f-a1b2c3d4e5f7"
CUSTOM_ROLE_ID = "5e1c3b2a-0000-4000-8000-00000000cc01"
CUSTOM_ROLE = "CycleCloud Orchestrator"


@dataclass(frozen=True)
class FollowUp:
    """Something that happens after remediate (time passing), then one more command."""

    description: str
    act: Callable[[Twin], None]
    command: tuple[str, ...]


@dataclass(frozen=True)
class GuideScenario:
    name: str  # file name under docs/scenarios/
    title: str
    guide: str  # what the CycleCloud guide says (the symptom and its cause)
    expect: tuple[str, ...]  # finding codes validate must name (the guide's cause)
    validate_exit: int
    world: World = field(default_factory=World)
    edit: Callable[[Scenario], None] | None = None
    target_edit: Callable[[Target], None] | None = None
    follow_up: FollowUp | None = None
    remediate_exit: int | None = None  # None: not checked (it depends on the fix)
    remediate_result: str | None = None


# -- edits ---------------------------------------------------------------------------------------------------


def _sp_contributor(scenario: Scenario) -> dict[str, Any]:
    return next(ra for ra in scenario["role_assignments"]
                if ra["role"] == "Contributor" and ra["principal_id"] == SP_OBJECT_ID)


def without_contributor(scenario: Scenario) -> None:
    scenario["role_assignments"].remove(_sp_contributor(scenario))


def cyclecloud_holds(secret: str) -> Callable[[Scenario], None]:
    def edit(scenario: Scenario) -> None:
        scenario["cyclecloud_servers"][0]["accounts"] = [account_record(secret)]
    return edit


def vault_holds(value: str) -> Callable[[Scenario], None]:
    def edit(scenario: Scenario) -> None:
        scenario["vaults"][0]["secrets"][SECRET_NAME][0]["value"] = value
    return edit


def combine(*edits: Callable[[Scenario], None]) -> Callable[[Scenario], None]:
    def edit(scenario: Scenario) -> None:
        for one in edits:
            one(scenario)
    return edit


def storage_read_failure(hours_ago: int, *, caller: str = APP_ID) -> Callable[[Scenario], None]:
    """The Activity Log entry of CycleCloud's failed storage read (the guide's third error)."""
    def edit(scenario: Scenario) -> None:
        message = (f"The client '{APP_ID}' with object id '{SP_OBJECT_ID}' does not have authorization to perform "
                   f"action 'Microsoft.Storage/storageAccounts/read' over scope '/subscriptions/{SUBSCRIPTION}' or "
                   "the scope is invalid. If access was recently granted, please refresh your credentials.")
        scenario.setdefault("activity_log", []).append({
            "subscription_id": SUBSCRIPTION, "caller": caller,
            "operation_name": "Microsoft.Storage/storageAccounts/read", "resource_id": f"/subscriptions/{SUBSCRIPTION}",
            "status": "Failed", "timestamp": f"now-{hours_ago}h",
            "message": json.dumps({"error": {"code": "AuthorizationFailed", "message": message}})})
    return edit


def with_previous_credential(scenario: Scenario) -> None:
    """The app also has an older, still valid credential (CycleCloud still holds it after a manual rotation
    that forgot CycleCloud)."""
    scenario["applications"][0]["password_credentials"].append(
        {"key_id": PREVIOUS_KEY_ID, "secret": PREVIOUS_SECRET, "display_name": "before-manual-rotation",
         "start": "now-300d", "end": "now+60d"})


def managed_identity_target(target: Target) -> None:
    target["mode"] = "managed_identity"
    for key in ("app_id", "secret_name", "rotation"):
        target.pop(key, None)


def cyclecloud_uses_managed_identity(scenario: Scenario) -> None:
    scenario["cyclecloud_servers"][0]["accounts"] = [account_record(managed_identity=True)]


def vm_identity_role(scenario: Scenario) -> None:
    scenario["role_assignments"].append({"scope": f"/subscriptions/{SUBSCRIPTION}", "role": "Contributor",
                                         "principal_id": VM_PRINCIPAL_ID})


def vm_identity_off(scenario: Scenario) -> None:
    scenario["virtual_machines"][0].pop("identity", None)


def custom_role_without(action: str) -> Callable[[Scenario], None]:
    """The guide's advice: a custom role trimmed down from Contributor; here one action too many was trimmed."""
    def edit(scenario: Scenario) -> None:
        scenario["role_definitions"] = [{
            "id": CUSTOM_ROLE_ID, "name": CUSTOM_ROLE, "description": "CycleCloud least privilege",
            "assignable_scopes": [f"/subscriptions/{SUBSCRIPTION}"],
            "actions": ["Microsoft.Compute/*", "Microsoft.Storage/*", "Microsoft.Network/*",
                        "Microsoft.Resources/*", "Microsoft.Authorization/*/read", "Microsoft.MarketplaceOrdering/*",
                        "Microsoft.Commerce/*"],
            "not_actions": [action]}]
        _sp_contributor(scenario)["role"] = CUSTOM_ROLE
    return edit


def custom_role_target(target: Target) -> None:
    target["roles"] = [CUSTOM_ROLE]


def role_created_recently(scenario: Scenario) -> None:
    """The Contributor assignment was made a minute ago (by hand, after the guide's step 4)."""
    _sp_contributor(scenario)["created"] = "now-60s"
    scenario["propagation"] = {"role_assignment_seconds": 120}


def contributor_created(ago: str) -> Callable[[Scenario], None]:
    def edit(scenario: Scenario) -> None:
        _sp_contributor(scenario)["created"] = ago
    return edit


def policy_denies(role: str) -> Callable[[Scenario], None]:
    def edit(scenario: Scenario) -> None:
        scenario["policy_assignments"] = [{"name": "deny-broad-roles", "scope": f"/subscriptions/{SUBSCRIPTION}",
                                           "display_name": "Deny Contributor for service principals",
                                           "denied_roles": [role]}]
    return edit


def policy_denied_vm(scenario: Scenario) -> None:
    """CycleCloud's node VM refused by an 'Allowed virtual machine size SKUs' policy (Activity Log entry)."""
    vm = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Compute/"
          "virtualMachines/hpc-execute-1")
    assignment = f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/policyAssignments/allowed-vm-skus"
    definition = "/providers/Microsoft.Authorization/policyDefinitions/cccc23c7-8427-4f53-ad12-b6a63eb452b3"
    error = {"code": "RequestDisallowedByPolicy", "target": "hpc-execute-1",
             "message": "Resource 'hpc-execute-1' was disallowed by policy. Policy identifiers: '[{\"policyAssignment\""
                        f":{{\"name\":\"Allowed VM sizes\",\"id\":\"{assignment}\"}},\"policyDefinition\":{{\"name\":"
                        f"\"Allowed virtual machine size SKUs\",\"id\":\"{definition}\"}}}}]'.",
             "additionalInfo": [{"type": "PolicyViolation", "info": {
                 "policyDefinitionId": definition, "policyDefinitionDisplayName": "Allowed virtual machine size SKUs",
                 "policyAssignmentId": assignment, "policyAssignmentName": "allowed-vm-skus",
                 "policyAssignmentDisplayName": "Allowed VM sizes",
                 "policyAssignmentScope": f"/subscriptions/{SUBSCRIPTION}"}}]}
    scenario.setdefault("activity_log", []).append({
        "subscription_id": SUBSCRIPTION, "caller": APP_ID, "operation_name": "Microsoft.Compute/virtualMachines/write",
        "resource_id": vm, "status": "Failed", "timestamp": "now-30m", "message": json.dumps({"error": error})})


def function_cannot_read_cyclecloud_password(scenario: Scenario) -> None:
    """The product's Key Vault role covers the CycleCloud secret only, not the CycleCloud password."""
    for ra in scenario["role_assignments"]:
        if ra["principal_id"] == FUNCTION_OBJECT_ID and ra["scope"] == VAULT_RESOURCE_ID:
            ra["scope"] = f"{VAULT_RESOURCE_ID}/secrets/{SECRET_NAME}"


def function_identity_off(scenario: Scenario) -> None:
    """The Function app's own managed identity is off (Identity > System assigned: Off)."""
    for principal in scenario["principals"]:
        principal.pop("function_identity", None)


def subscription_in_other_tenant(scenario: Scenario) -> None:
    scenario["subscriptions"][0]["tenant_id"] = OTHER_TENANT


def set_target(**values: Any) -> Callable[[Target], None]:
    def edit(target: Target) -> None:
        target.update(values)
    return edit


def both(*edits: Callable[[Target], None]) -> Callable[[Target], None]:
    def edit(target: Target) -> None:
        for one in edits:
            one(target)
    return edit


def two_minutes_pass(twin: Twin) -> None:
    """Time passes for Azure's role propagation. The product reads the time from its own clock, which the twin's
    clock does not move, so the assignments are aged instead (the same thing, seen from both sides)."""
    with twin.state.lock:
        for ra in twin.state.role_assignments.values():
            if ra.created_at is not None:
                ra.created_at = ra.created_at - timedelta(minutes=10)


def slow_role_propagation(scenario: Scenario) -> None:
    scenario["propagation"] = {"role_assignment_seconds": 120}


# -- the library ------------------------------------------------------------------------------------------------

SCENARIOS: tuple[GuideScenario, ...] = (
    GuideScenario(
        "expired-secret", "The client secret expired (AADSTS7000222)",
        "\"AADSTS7000222, 'The provided client secret keys are expired.' This appears during VM deployment or "
        "termination ... The fix is to generate a new client secret ... then update it in CycleCloud.\"",
        ("secret.expired",), 2, World(secret_end="now-2d"), remediate_exit=0, remediate_result="fixed"),
    GuideScenario(
        "invalid-secret", "The stored secret is mistyped (AADSTS7000215)",
        "\"AADSTS7000215, 'Invalid client secret is provided.' ... the secret itself was entered incorrectly, "
        "possibly with a leading space or truncated value.\"",
        ("secret.invalid",), 2, edit=combine(vault_holds(MISTYPED_SECRET), cyclecloud_holds(MISTYPED_SECRET)),
        remediate_exit=0, remediate_result="fixed"),
    GuideScenario(
        "secret-with-whitespace", "Whitespace pasted around the secret",
        "\"The portal copy button occasionally includes whitespace that causes silent validation failures.\"",
        ("secret.whitespace",), 2,
        edit=combine(vault_holds(CURRENT_SECRET + "\n"), cyclecloud_holds(CURRENT_SECRET + "\n")),
        remediate_exit=0, remediate_result="fixed"),
    GuideScenario(
        "secret-id-instead-of-value", "The Secret ID was pasted instead of the Value",
        "Azure Identity's guide: \"Ensure the secret being sent in the request is the client secret value, not the "
        "client secret ID.\"",
        ("secret.looks_like_secret_id",), 2, edit=combine(vault_holds(KEY_ID), cyclecloud_holds(KEY_ID)),
        remediate_exit=0, remediate_result="fixed"),
    GuideScenario(
        "cyclecloud-not-updated", "New secret made, CycleCloud never given it",
        "\"They regenerate the secret in Entra ID but forget to update it in CycleCloud, and the errors keep "
        "coming.\"",
        ("cyclecloud.out_of_sync",), 2, edit=combine(with_previous_credential, cyclecloud_holds(PREVIOUS_SECRET)),
        remediate_exit=0, remediate_result="fixed"),
    GuideScenario(
        "contributor-missing", "The Contributor role is missing (storageAccounts/read)",
        "\"does not have authorization to perform action 'Microsoft.Storage/storageAccounts/read' over scope "
        "'/subscriptions/<guid>' ... your service principal doesn't have the right role on the subscription.\"",
        ("role.missing",), 2, edit=combine(without_contributor, storage_read_failure(1)),
        remediate_result="fixed", remediate_exit=0),
    GuideScenario(
        "reader-instead-of-contributor", "Reader instead of Contributor",
        "\"Look for it under the Contributor role. If it's not there, or if it shows up under a different role, "
        "like Reader, that's your problem.\"",
        ("role.missing",), 2, edit=lambda s: _sp_contributor(s).update(role="Reader"),
        remediate_result="fixed", remediate_exit=0),
    GuideScenario(
        "role-on-resource-group", "Contributor assigned at the wrong scope",
        "\"If that role assignment was skipped, misapplied to the wrong resource scope, or assigned to the wrong "
        "identity ...\"",
        ("role.missing",), 2,
        edit=lambda s: _sp_contributor(s).update(scope=f"/subscriptions/{SUBSCRIPTION}/resourceGroups/"
                                                       f"{RESOURCE_GROUP}"),
        remediate_result="fixed", remediate_exit=0),
    GuideScenario(
        "role-propagating", "Role assigned a minute ago, not in effect yet",
        "\"Role assignments typically take one to two minutes to propagate. ... If validation still fails after "
        "the role assignment, wait another two minutes and try again.\"",
        ("role.propagating",), 2, edit=role_created_recently, remediate_exit=2, remediate_result="in_progress",
        follow_up=FollowUp("Two minutes later", two_minutes_pass, ("validate",))),
    GuideScenario(
        "remediate-waits-for-propagation", "remediate assigns the role; Azure applies it two minutes later",
        "\"According to the official documentation, it can take one to two minutes for the new assignment to "
        "propagate. After waiting, head back to CycleCloud ... and click Validate.\"",
        ("role.missing",), 2, edit=combine(without_contributor, slow_role_propagation), remediate_exit=2,
        remediate_result="in_progress", follow_up=FollowUp("Two minutes later", two_minutes_pass, ("validate",))),
    GuideScenario(
        "managed-identity-off", "The CycleCloud VM's managed identity is off",
        "\"Under the System assigned tab, verify that the status is set to On. If it's Off, managed identity isn't "
        "enabled at all.\"",
        ("identity.disabled",), 2, edit=combine(vm_identity_off, cyclecloud_uses_managed_identity),
        target_edit=managed_identity_target, remediate_exit=2, remediate_result="needs_attention"),
    GuideScenario(
        "managed-identity-without-role", "The VM's managed identity has no role",
        "\"The Contributor role hasn't been assigned to the managed identity at the subscription level.\"",
        ("identity.role_missing",), 2, edit=cyclecloud_uses_managed_identity, target_edit=managed_identity_target,
        remediate_exit=2, remediate_result="in_progress",
        follow_up=FollowUp("Two minutes later", two_minutes_pass, ("validate",))),
    GuideScenario(
        "policy-denies-role-assignment", "Azure Policy denies the Contributor assignment",
        "\"If your organization has a 'deny' policy on broad Contributor assignments ... your role assignment may "
        "appear to succeed in the portal but be silently denied at enforcement time.\"",
        ("role.missing", "role.policy_denied"), 2, edit=combine(without_contributor, policy_denies("Contributor")),
        remediate_exit=2, remediate_result="needs_attention"),
    GuideScenario(
        "policy-denies-vm-creation", "Azure Policy denies the VMs CycleCloud creates",
        "\"When CycleCloud can't create a resource ... The detailed view of each failed operation shows the exact "
        "authorization error, the calling identity, and the resource it tried to act on.\"",
        ("policy.denied_resource",), 2, edit=policy_denied_vm, remediate_exit=2,
        remediate_result="needs_attention"),
    GuideScenario(
        "tenant-mismatch", "The subscription belongs to another tenant",
        "\"Your service principal may have been created in Tenant A but the subscription you're deploying "
        "CycleCloud resources into belongs to Tenant B.\"",
        ("tenant.mismatch",), 2, edit=subscription_in_other_tenant, remediate_exit=2,
        remediate_result="needs_attention"),
    GuideScenario(
        "custom-role-missing-action", "A custom role lacks one action",
        "\"Any missing permission will show up as a new authorization error with the specific action name that "
        "failed, like Microsoft.Network/virtualNetworks/read, which you can then add to the custom role "
        "definition.\"",
        ("role.custom_role_incomplete",), 2, edit=custom_role_without("Microsoft.Network/virtualNetworks/read"),
        target_edit=custom_role_target, remediate_exit=2, remediate_result="needs_attention"),
    GuideScenario(
        "stale-activity-log", "Old authorization failures after the role was fixed",
        "\"Filter by Failed operations and look for entries in the timeframe when your CycleCloud deployment "
        "attempt occurred.\" (Failures from before the role was granted are history.)",
        (), 0, edit=combine(storage_read_failure(72), contributor_created("now-1d")), remediate_exit=0,
        remediate_result="healthy"),
    GuideScenario(
        "tenant-not-found", "The tenant id is wrong (AADSTS90002)",
        "\"If you're seeing authentication errors with AADSTS90002 (tenant not found) ... those indicate a deeper "
        "identity configuration issue.\"",
        ("tenant.not_found",), 2, target_edit=set_target(tenant_id=TYPO_TENANT), remediate_exit=2,
        remediate_result="needs_attention"),
    GuideScenario(
        "app-not-found", "The application id is wrong (AADSTS700016)",
        "\"AADSTS700016 (application not found in the tenant)\"; Azure Identity: \"Ensure the client and tenant IDs "
        "provided to the credential constructor are correct for your application registration.\"",
        ("app.not_found_in_tenant",), 2, target_edit=set_target(app_id=TYPO_APP_ID), remediate_exit=2,
        remediate_result="needs_attention"),
    GuideScenario(
        "wrong-subscription-id", "The subscription id is mistyped (SubscriptionNotFound)",
        "\"If you have multiple subscriptions, make sure you're in the right one, this is a common mistake in "
        "environments with dev, staging, and production accounts.\"",
        ("subscription.not_found",), 2, target_edit=set_target(subscription_ids=[TYPO_SUBSCRIPTION]),
        remediate_exit=2, remediate_result="needs_attention"),
    GuideScenario(
        "product-cannot-read-cyclecloud-password", "The product cannot read CycleCloud's password",
        "Azure Identity's guide: \"Service client errors with a status code of 401 or 403 often indicate that "
        "authentication succeeded but the caller doesn't have permission to access the specified API.\" (The "
        "product's own access, not CycleCloud's login.)",
        ("function.cyclecloud_password_unreadable",), 1, edit=function_cannot_read_cyclecloud_password,
        remediate_exit=1, remediate_result="needs_attention"),
    GuideScenario(
        "product-identity-off", "The product's own managed identity is off",
        "Azure Identity's guide (App Service and Functions): \"The App Service host hasn't set environment variables "
        "for managed identity configuration\"; \"The requested identity hasn't been assigned to this resource.\" (The "
        "product's problem: CycleCloud is neither contacted nor blamed.)",
        ("function.identity_unavailable",), 2, edit=function_identity_off, remediate_exit=2,
        remediate_result="needs_attention"),
    GuideScenario(
        "healthy", "Everything in order", "\"If the validation succeeds immediately, you're done.\"", (), 0,
        remediate_exit=0, remediate_result="healthy"),
)

BY_NAME = {s.name: s for s in SCENARIOS}
