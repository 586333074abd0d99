"""Roles and permissions of the CycleCloud identity at each subscription.

Two views, because each catches what the other misses:
- `roles`: does the principal hold each configured role at the subscription, directly or inherited (from a
  management group or the root)? An assignment only on a resource group below does not count. When one is
  missing, which policy assignment would deny creating it.
- `permissions`: with a token from the stored secret, what ARM says the service principal may really do there
  (`Microsoft.Authorization/permissions`), compared with the actions CycleCloud calls. This catches custom roles
  that lack actions, Reader instead of Contributor, and deny assignments. For a managed identity (no token to
  borrow) the same comparison uses its assigned roles' definitions.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ...adapters.rbac import PermissionEntry, PermissionSet, RoleAssignmentInfo, scope_covers
from ...errors import RemediatorError
from ...findings import Finding, make_finding
from ..required_actions import REQUIRED_ACTIONS
from ..runner import CheckSkipped
from .subscriptions import per_subscription

if TYPE_CHECKING:
    from ...adapters.rbac import RoleDefinitionInfo
    from ..facts import Facts

MAX_LISTED_ACTIONS = 40


async def _role_name(facts: Facts, sub: str, role_id: str) -> str:
    try:
        return (await facts.role(sub, role_id)).name
    except RemediatorError:
        return role_id


async def _covering(facts: Facts, sub: str, principal: str) -> tuple[list[RoleAssignmentInfo],
                                                                     list[RoleAssignmentInfo]]:
    scope = f"/subscriptions/{sub}"
    rbac = await facts.arm()
    assignments = await facts.once(f"assignments:{sub}:{principal}",
                                   lambda: rbac.list_assignments(scope, principal))
    covering = [a for a in assignments if a.principal_id == principal and scope_covers(a.scope, scope)]
    below = [a for a in assignments if a.principal_id == principal and not scope_covers(a.scope, scope)]
    return covering, below


async def check_roles(facts: Facts) -> list[Finding]:
    target = facts.target
    principal = await facts.principal_id()
    code = "identity.role_missing" if facts.is_managed_identity else "role.missing"
    who = "the CycleCloud VM's managed identity" if facts.is_managed_identity else "the service principal"

    async def one(sub: str) -> list[Finding]:
        scope = f"/subscriptions/{sub}"
        covering, below = await _covering(facts, sub, principal)
        wanted: list[RoleDefinitionInfo] = list(await asyncio.gather(*(facts.role(sub, r) for r in target.roles)))
        held_ids = {a.role_definition_id for a in covering}
        held = [{"role": await _role_name(facts, sub, a.role_definition_id), "scope": a.scope,
                 "inherited": a.scope.rstrip("/").lower() != scope.lower()} for a in covering]
        elsewhere = [{"role": await _role_name(facts, sub, a.role_definition_id), "scope": a.scope} for a in below]
        missing = [r for r in wanted if r.id not in held_ids]
        if not missing:
            return []
        policies = await (await facts.arm()).policy_assignments(sub)
        findings: list[Finding] = []
        for role in missing:
            params = {**facts.params(), "subscription_id": sub, "principal_id": principal, "role": role.name}
            held_text = ", ".join(sorted({h["role"] for h in held if isinstance(h["role"], str)})) or "no role"
            detail = (f"{who.capitalize()} ({principal}) does not hold '{role.name}' on subscription {sub}; it holds "
                      f"{held_text} there")
            if elsewhere:
                detail += f" (and {len(elsewhere)} assignment(s) on narrower scopes, which do not count)"
            findings.append(make_finding(
                code, detail + ".",
                evidence={"subscription_id": sub, "scope": scope, "principal_id": principal, "role": role.name,
                          "role_id": role.id, "held_roles": held, "assignments_below_scope": elsewhere},
                params=params, check="roles", subject=f"{role.name} on {scope}",
            ))
            for policy in policies:
                if policy.denies_role_assignment(role.id, "ServicePrincipal"):
                    findings.append(make_finding(
                        "role.policy_denied",
                        f"Azure Policy assignment '{policy.display_name}' (at {policy.scope}) denies assigning "
                        f"'{role.name}' on subscription {sub}, so the missing role cannot simply be added.",
                        evidence={"subscription_id": sub, "role": role.name, "role_id": role.id,
                                  "policy_assignment_id": policy.id, "policy_assignment_name": policy.name,
                                  "policy_assignment_display_name": policy.display_name,
                                  "policy_assignment_scope": policy.scope,
                                  "policy_definition_id": policy.policy_definition_id,
                                  "enforcement_mode": policy.enforcement_mode},
                        params={**params, "policy_assignment": policy.display_name,
                                "policy_assignment_id": policy.id},
                        check="roles", subject=f"{policy.id} / {role.name}",
                    ))
        return findings

    return await per_subscription(target.subscription_ids, one)


async def _assigned_permissions(facts: Facts, sub: str, principal: str) -> PermissionSet:
    """A managed identity's permissions from its assigned roles' definitions (deny assignments not visible)."""
    covering, _ = await _covering(facts, sub, principal)
    roles = await asyncio.gather(*(facts.role(sub, a.role_definition_id) for a in covering))
    return PermissionSet(f"/subscriptions/{sub}", tuple(
        PermissionEntry(r.actions, r.not_actions, r.data_actions, r.not_data_actions) for r in roles))


async def check_permissions(facts: Facts) -> list[Finding]:
    target = facts.target
    if facts.is_managed_identity:
        principal = await facts.principal_id()
        source = "the role definitions assigned to the managed identity (deny assignments are not visible here)"
    else:
        credential = await facts.secret_credential()
        try:
            principal = await facts.principal_id()
        except CheckSkipped:  # only for the evidence: ARM answers for the token's own principal anyway
            principal = ""
        source = "Microsoft.Authorization/permissions read with a token from the stored secret"

    async def one(sub: str) -> list[Finding]:
        if facts.is_managed_identity:
            permissions = await _assigned_permissions(facts, sub, principal)
        else:
            permissions = await (await facts.arm()).permissions(sub, credential)
        if not permissions.entries:
            return []  # no role at all there: the roles check reports what to assign
        missing = permissions.missing(REQUIRED_ACTIONS)
        if not missing:
            return []
        scope = f"/subscriptions/{sub}"
        first = missing[0]
        return [make_finding(
            "role.insufficient",
            f"On subscription {sub} the CycleCloud identity may not perform {len(missing)} of the "
            f"{len(REQUIRED_ACTIONS)} actions CycleCloud needs, e.g. '{first}'; CycleCloud fails with "
            f"\"does not have authorization to perform action '{first}' over scope '{scope}'\".",
            evidence={"subscription_id": sub, "scope": scope, "principal_id": principal or None,
                      "missing_actions": missing[:MAX_LISTED_ACTIONS], "missing_count": len(missing),
                      "checked_actions": len(REQUIRED_ACTIONS), "source": source,
                      "permission_entries": len(permissions.entries)},
            params={**facts.params(), "subscription_id": sub, "principal_id": principal or "<principal-id>"},
            check="permissions", subject=scope,
        )]

    return await per_subscription(target.subscription_ids, one)


async def check_vm_identity(facts: Facts) -> list[Finding]:
    """Managed identity mode: the CycleCloud VM's system-assigned identity is on."""
    if not facts.is_managed_identity:
        raise CheckSkipped("service principal target")
    vm = await facts.vm()
    if vm.has_system_identity:
        facts.observations["principal_id"] = vm.identity_principal_id
        return []
    return [make_finding(
        "identity.disabled",
        f"The CycleCloud VM '{vm.name}' has no system-assigned managed identity (Identity > System assigned is "
        "Off).",
        evidence={"vm_resource_id": vm.id, "vm_name": vm.name, "location": vm.location,
                  "system_assigned_identity": False},
        params=facts.params(), check="vm_identity", subject=vm.id,
    )]
