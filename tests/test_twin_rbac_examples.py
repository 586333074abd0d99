"""The twin's RBAC evaluation against Microsoft's published examples, independent of the product's own
permission matching (nothing from shared/ is imported): if both shared one mistaken assumption, these catch it.

Sources (quoted per case):
- learn.microsoft.com/azure/role-based-access-control/role-definitions (MicrosoftDocs/azure-docs
  articles/role-based-access-control/role-definitions.md): the wildcard table under "Actions", "NotActions is
  not a deny rule", DataActions are separate from Actions (Owner's `*` grants no data access).
- .../built-in-roles (the published JSON of Contributor, Owner, Reader, Key Vault Secrets User,
  Storage Blob Data Contributor); Contributor's notActions spell `Microsoft.Authorization/*/Delete` and `*/Write`
  with capitals, yet Contributor cannot assign roles: matching is case-insensitive.
- .../deny-assignments: deny assignments take precedence over role assignments; excluded principals are exempt.
- .../scope-overview: permissions granted at a scope are inherited by the child scopes, not the parents.
- azure-rest-api-specs Microsoft.Authorization stable/2022-04-01 `Permissions_ListForResourceGroup`: the answer is
  `{"value": [{"actions", "notActions", "dataActions", "notDataActions"}], "nextLink"?}`, one entry per role.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from azure.identity import ManagedIdentityCredential

from tests.twin import Twin

TENANT = "11111111-0000-4000-8000-000000000001"
SUB = "22222222-0000-4000-8000-000000000002"
ALICE = "33333333-0000-4000-8000-000000000003"  # the principal under test (a managed identity)
BOB = "44444444-0000-4000-8000-000000000004"
SUB_SCOPE = f"/subscriptions/{SUB}"
RG_SCOPE = f"{SUB_SCOPE}/resourceGroups/rg-hpc"
ACCOUNT = f"{RG_SCOPE}/providers/Microsoft.Storage/storageAccounts/hpcdata"
VAULT = f"{RG_SCOPE}/providers/Microsoft.KeyVault/vaults/kv-hpc"

# Built-in definitions as Microsoft publishes them (built-in-roles), not the twin's copies
PUBLISHED_CONTRIBUTOR_NOT_ACTIONS = [
    "Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write",
    "Microsoft.Authorization/elevateAccess/Action",
    "Microsoft.Blueprint/blueprintAssignments/write", "Microsoft.Blueprint/blueprintAssignments/delete",
    "Microsoft.Compute/galleries/share/action", "Microsoft.Purview/consents/write", "Microsoft.Purview/consents/delete",
]


def world(twin: Twin, assignments: list[dict[str, Any]], roles: list[dict[str, Any]] | None = None,
          denies: list[dict[str, Any]] | None = None) -> None:
    twin.load({
        "tenants": [{"id": TENANT}],
        "principals": [{"object_id": ALICE, "tenant_id": TENANT, "function_identity": True},
                       {"object_id": BOB, "tenant_id": TENANT}],
        "subscriptions": [{"id": SUB, "tenant_id": TENANT}],
        "role_definitions": roles or [],
        "role_assignments": [{"principal_id": ALICE, **a} for a in assignments],
        "deny_assignments": denies or [],
    })


def custom(name: str, actions: list[str], not_actions: list[str] | None = None, data: list[str] | None = None,
           not_data: list[str] | None = None) -> dict[str, Any]:
    return {"name": name, "actions": actions, "not_actions": not_actions or [], "data_actions": data or [],
            "not_data_actions": not_data or [], "assignable_scopes": [SUB_SCOPE]}


def allowed(twin: Twin, action: str, scope: str = RG_SCOPE, *, data: bool = False, who: str = ALICE) -> bool:
    with twin.state.lock:
        return twin.state.is_allowed(who, action, scope, data=data)


# -- the wildcard table of role-definitions.md ----------------------------------------------------------------

WILDCARDS = [
    # (pattern, an operation it grants, an operation it does not)
    ("*/read", "Microsoft.Compute/virtualMachines/read", "Microsoft.Compute/virtualMachines/write"),
    ("*/read", "Microsoft.Network/virtualNetworks/subnets/read", "Microsoft.Storage/storageAccounts/listKeys/action"),
    ("Microsoft.Compute/*", "Microsoft.Compute/disks/write", "Microsoft.Network/virtualNetworks/read"),
    ("Microsoft.Network/*/read", "Microsoft.Network/virtualNetworks/subnets/read",
     "Microsoft.Network/virtualNetworks/write"),
    ("Microsoft.Compute/virtualMachines/*", "Microsoft.Compute/virtualMachines/runCommands/write",  # child types
     "Microsoft.Compute/disks/read"),
    ("Microsoft.Compute/virtualMachines/*", "Microsoft.Compute/virtualMachines/start/action",
     "Microsoft.Compute/virtualMachineScaleSets/read"),
    ("microsoft.web/sites/restart/Action", "Microsoft.Web/sites/restart/action", "Microsoft.Web/sites/stop/action"),
]


@pytest.mark.parametrize(("pattern", "granted", "not_granted"), WILDCARDS)
def test_wildcards_grant_what_the_published_table_says(twin: Twin, pattern: str, granted: str,
                                                       not_granted: str) -> None:
    world(twin, [{"scope": SUB_SCOPE, "role": "Pattern"}], [custom("Pattern", [pattern])])
    assert allowed(twin, granted)
    assert not allowed(twin, not_granted)


# -- NotActions ------------------------------------------------------------------------------------------------


def test_contributor_cannot_assign_roles_but_reads_them(twin: Twin) -> None:
    world(twin, [{"scope": SUB_SCOPE, "role": "Published Contributor"}],
          [custom("Published Contributor", ["*"], PUBLISHED_CONTRIBUTOR_NOT_ACTIONS)])
    assert allowed(twin, "Microsoft.Storage/storageAccounts/read")
    assert allowed(twin, "Microsoft.Compute/virtualMachines/runCommands/write")
    assert not allowed(twin, "Microsoft.Authorization/roleAssignments/write")  # `*/Write`, case-insensitive
    assert not allowed(twin, "Microsoft.Authorization/roleAssignments/delete")
    assert allowed(twin, "Microsoft.Authorization/roleAssignments/read")


def test_the_twins_contributor_matches_the_published_one(twin: Twin) -> None:
    world(twin, [])
    contributor = twin.state.role_by_name_or_id("Contributor")
    assert contributor is not None and contributor.id == "b24988ac-6180-42a0-ab88-20f7382dd24c"
    assert contributor.actions == ["*"] and set(PUBLISHED_CONTRIBUTOR_NOT_ACTIONS) <= set(contributor.not_actions)
    assert contributor.data_actions == []


def test_not_actions_is_not_a_deny_rule(twin: Twin) -> None:
    """role-definitions.md: a second role granting the excluded operation wins."""
    world(twin, [{"scope": SUB_SCOPE, "role": "Published Contributor"},
                 {"scope": SUB_SCOPE, "role": "Assigner"}],
          [custom("Published Contributor", ["*"], PUBLISHED_CONTRIBUTOR_NOT_ACTIONS),
           custom("Assigner", ["Microsoft.Authorization/roleAssignments/write"])])
    assert allowed(twin, "Microsoft.Authorization/roleAssignments/write")
    assert not allowed(twin, "Microsoft.Authorization/roleDefinitions/write")


# -- DataActions -------------------------------------------------------------------------------------------------


def test_owner_star_grants_no_data_actions(twin: Twin) -> None:
    """role-definitions.md, data operations: Owner's `*` covers the management plane only."""
    world(twin, [{"scope": SUB_SCOPE, "role": "Owner"}])
    assert allowed(twin, "Microsoft.KeyVault/vaults/write", VAULT)
    assert not allowed(twin, "Microsoft.KeyVault/vaults/secrets/getSecret/action", f"{VAULT}/secrets/x", data=True)
    assert not allowed(twin, "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
                       f"{ACCOUNT}/blobServices/default/containers/c", data=True)


def test_data_actions_are_granted_only_by_data_roles_and_limited_by_not_data_actions(twin: Twin) -> None:
    world(twin, [{"scope": ACCOUNT, "role": "Blob Data Writer"}, {"scope": VAULT, "role": "Key Vault Secrets User"}],
          [custom("Blob Data Writer", [], data=["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*"],
                  not_data=["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete"])])
    container = f"{ACCOUNT}/blobServices/default/containers/c"
    assert allowed(twin, "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read", container, data=True)
    assert allowed(twin, "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write", container, data=True)
    assert not allowed(twin, "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete", container,
                       data=True)
    # a data action is not a management action, and the reverse
    assert not allowed(twin, "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read", container)
    # Key Vault Secrets User (built-in): read secret values and metadata, never write them
    secret = f"{VAULT}/secrets/cyclecloud"
    assert allowed(twin, "Microsoft.KeyVault/vaults/secrets/getSecret/action", secret, data=True)
    assert allowed(twin, "Microsoft.KeyVault/vaults/secrets/readMetadata/action", secret, data=True)
    assert not allowed(twin, "Microsoft.KeyVault/vaults/secrets/setSecret/action", secret, data=True)


# -- scope and deny assignments ---------------------------------------------------------------------------------


def test_scope_is_inherited_downwards_only(twin: Twin) -> None:
    world(twin, [{"scope": RG_SCOPE, "role": "Reader"}])
    assert allowed(twin, "Microsoft.Storage/storageAccounts/read", ACCOUNT)
    assert allowed(twin, "Microsoft.Resources/subscriptions/resourceGroups/read", RG_SCOPE)
    assert not allowed(twin, "Microsoft.Resources/subscriptions/read", SUB_SCOPE)
    assert not allowed(twin, "Microsoft.Storage/storageAccounts/read",
                       f"{SUB_SCOPE}/resourceGroups/rg-other/providers/Microsoft.Storage/storageAccounts/x")


def test_deny_assignments_win_over_any_role_and_spare_excluded_principals(twin: Twin) -> None:
    world(twin, [{"scope": SUB_SCOPE, "role": "Owner"}, {"scope": SUB_SCOPE, "role": "Owner", "principal_id": BOB}],
          denies=[{"name": "protect", "scope": RG_SCOPE, "actions": ["*/write", "*/delete"],
                   "not_actions": ["Microsoft.Compute/virtualMachines/write"], "exclude_principal_ids": [BOB]}])
    assert not allowed(twin, "Microsoft.Storage/storageAccounts/write", ACCOUNT)
    assert allowed(twin, "Microsoft.Compute/virtualMachines/write", RG_SCOPE)  # carved out of the deny
    assert allowed(twin, "Microsoft.Storage/storageAccounts/read", ACCOUNT)
    assert allowed(twin, "Microsoft.Storage/storageAccounts/write", SUB_SCOPE)  # above the deny's scope
    assert allowed(twin, "Microsoft.Storage/storageAccounts/write", ACCOUNT, who=BOB)  # excluded


# -- the permissions answer -----------------------------------------------------------------------------------


def test_permissions_answer_has_the_published_shape_one_entry_per_role(twin: Twin) -> None:
    world(twin, [{"scope": SUB_SCOPE, "role": "Reader"}, {"scope": RG_SCOPE, "role": "Key Vault Secrets User"}])
    token = ManagedIdentityCredential().get_token("https://management.azure.com/.default").token
    answer = requests.get(f"https://management.azure.com{RG_SCOPE}/providers/Microsoft.Authorization/permissions",
                          params={"api-version": "2022-04-01"}, headers={"Authorization": f"Bearer {token}"},
                          timeout=10)
    assert answer.status_code == 200
    value = answer.json()["value"]
    assert all(set(entry) == {"actions", "notActions", "dataActions", "notDataActions"} for entry in value)
    assert sorted((e["actions"], e["dataActions"]) for e in value) == sorted([
        (["*/read"], []),
        ([], ["Microsoft.KeyVault/vaults/secrets/getSecret/action",
              "Microsoft.KeyVault/vaults/secrets/readMetadata/action"]),
    ])
    at_subscription = requests.get(f"https://management.azure.com{SUB_SCOPE}/providers/Microsoft.Authorization/"
                                   "permissions", params={"api-version": "2022-04-01"},
                                   headers={"Authorization": f"Bearer {token}"}, timeout=10).json()["value"]
    assert [e["actions"] for e in at_subscription] == [["*/read"]]  # the RG-scoped role does not reach up
