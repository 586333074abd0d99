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
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from ... import clock
from ...adapters.rbac import PermissionEntry, PermissionSet, RoleAssignmentInfo, RoleDefinitionInfo, scope_covers
from ...errors import RemediatorError
from ...findings import Finding, make_finding
from ..required_actions import REQUIRED_ACTIONS
from ..runner import CheckSkipped
from .subscriptions import per_subscription

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from ..facts import Facts

MAX_LISTED_ACTIONS = 40
# Azure applies new role assignments within one to two minutes, occasionally up to ten (Microsoft's RBAC
# troubleshooting guide); an assignment older than the limit that still has no effect is not propagation.
PROPAGATION_TYPICAL = timedelta(minutes=2)
PROPAGATION_LIMIT = timedelta(minutes=30)
MIN_RECHECK = timedelta(seconds=60)
MI_PROPAGATION_SOURCE = ("the assignment's age: a managed identity's effective permissions cannot be read from here, "
                         "so a just-created assignment is assumed to apply only after the typical two minutes")


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
            detail = (f"{who[0].upper()}{who[1:]} ({principal}) does not hold '{role.name}' on subscription {sub}; "
                      f"it holds {held_text} there")
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


def _propagating(facts: Facts, sub: str, principal: str, covering: list[RoleAssignmentInfo],
                 missing: list[str], source: str, *, limit: timedelta = PROPAGATION_LIMIT) -> Finding | None:
    """The assignment exists but Azure does not apply it yet: CycleCloud still fails, and will stop failing on its
    own. None when no covering assignment is younger than `limit`, i.e. propagation is not the explanation."""
    now = facts.now
    young = [a for a in covering if a.created_on is not None and now - a.created_on < limit]
    if not young:
        return None
    newest = max(a.created_on for a in young if a.created_on is not None)
    check_again = max(newest + PROPAGATION_TYPICAL, now + MIN_RECHECK)
    scope = f"/subscriptions/{sub}"
    first = missing[0] if missing else REQUIRED_ACTIONS[0]
    facts.observations["check_again_at"] = clock.iso(check_again, seconds=True)
    age = max(0, int((now - newest).total_seconds()))
    if missing:  # seen: ARM's permissions for CycleCloud's own principal lack the actions
        effect = (f"Azure does not apply it yet: CycleCloud still gets \"does not have authorization to perform "
                  f"action '{first}' over scope '{scope}'\"")
    else:  # assumed: nothing can read a managed identity's effective permissions from here
        effect = (f"Azure may not apply it yet (assignments take one to two minutes), so CycleCloud's calls such as "
                  f"'{first}' may still be refused")
    return make_finding(
        "role.propagating",
        f"The role assignment on subscription {sub} was created {age} s ago and {effect}; check again after "
        f"{clock.iso(check_again, seconds=True)}.",
        evidence={"subscription_id": sub, "scope": scope, "principal_id": principal,
                  "assignment_created_at": clock.iso(newest, seconds=True),
                  "check_again_at": clock.iso(check_again, seconds=True),
                  "retry_after_seconds": max(1, int((check_again - now).total_seconds())),
                  "missing_actions": missing[:MAX_LISTED_ACTIONS], "missing_count": len(missing), "source": source},
        params={**facts.params(), "subscription_id": sub, "principal_id": principal},
        check="permissions", subject=scope,
    )


async def _held_configured_roles(facts: Facts, sub: str,
                                 covering: list[RoleAssignmentInfo]) -> list[RoleDefinitionInfo] | None:
    """The configured roles' definitions when the identity holds every one of them there; None when one is
    missing (the roles check reports that, and `remediate` assigns it)."""
    wanted: list[RoleDefinitionInfo] = list(await asyncio.gather(*(facts.role(sub, r) for r in facts.target.roles)))
    held = {a.role_definition_id for a in covering}
    if any(r.id not in held for r in wanted):
        return None
    return wanted


def _grants(role: RoleDefinitionInfo, action: str) -> bool:
    return PermissionSet("", (PermissionEntry(role.actions, role.not_actions),)).allows(action)


def _insufficient(facts: Facts, sub: str, principal: str, missing: list[str], entries: int, source: str,
                  why: str) -> Finding:
    scope = f"/subscriptions/{sub}"
    first = missing[0]
    return make_finding(
        "role.insufficient",
        f"On subscription {sub} the CycleCloud identity may not perform {len(missing)} of the "
        f"{len(REQUIRED_ACTIONS)} actions CycleCloud needs, e.g. '{first}' ({why}); CycleCloud fails with \"does not "
        f"have authorization to perform action '{first}' over scope '{scope}'\".",
        evidence={"subscription_id": sub, "scope": scope, "principal_id": principal or None,
                  "missing_actions": missing[:MAX_LISTED_ACTIONS], "missing_count": len(missing),
                  "checked_actions": len(REQUIRED_ACTIONS), "source": source, "permission_entries": entries},
        params={**facts.params(), "subscription_id": sub, "principal_id": principal or "<principal-id>"},
        check="permissions", subject=scope,
    )


async def check_permissions(facts: Facts) -> list[Finding]:
    """Ground truth: what the CycleCloud identity may really do, compared with the actions CycleCloud calls.

    With a token from the stored secret (service principal), ARM's permissions API answers for CycleCloud's own
    principal, exactly as CycleCloud will experience it. An assignment that exists but is not applied yet
    (propagation) is `role.propagating`, never "nothing to report"; a held custom role that lacks actions is
    `role.custom_role_incomplete`, naming the actions and the role to edit."""
    asker = await _Asker.of(facts)
    return await per_subscription(facts.target.subscription_ids, lambda sub: _permissions_on(facts, asker, sub))


@dataclass(frozen=True)
class _Asker:
    """Whose permissions are read, and how: CycleCloud's principal, the secret's credential (None for a managed
    identity, whose permissions are computed from its role definitions), and the evidence's `source`."""

    principal: str
    credential: AsyncTokenCredential | None
    source: str

    @classmethod
    async def of(cls, facts: Facts) -> _Asker:
        if facts.is_managed_identity:
            return cls(await facts.principal_id(), None, "the role definitions assigned to the managed identity "
                       "(deny assignments are not visible here)")
        credential = await facts.secret_credential()
        try:
            principal = await facts.principal_id()
        except CheckSkipped:  # only for the evidence: ARM answers for the token's own principal anyway
            principal = ""
        return cls(principal, credential, "Microsoft.Authorization/permissions read with a token from the stored "
                   "secret")


async def _permissions_on(facts: Facts, asker: _Asker, sub: str) -> list[Finding]:
    principal, source = asker.principal, asker.source
    if facts.is_managed_identity:
        permissions = await _assigned_permissions(facts, sub, principal)
    else:
        permissions = await (await facts.arm()).permissions(sub, asker.credential)
    missing = permissions.missing(REQUIRED_ACTIONS)
    if not missing:
        return await _young_managed_identity_roles(facts, sub, principal)
    try:
        covering = (await _covering(facts, sub, principal))[0] if principal else None
        held = await _held_configured_roles(facts, sub, covering) if covering else None
    except RemediatorError:
        covering = held = None
    if covering is None:
        # the assignments cannot be read: ARM's answer alone still says CycleCloud will be refused
        return [] if not permissions.entries and principal else [_insufficient(
            facts, sub, principal, missing, len(permissions.entries), source,
            "its role assignments could not be read to say why")]
    if not covering:
        return []  # no role at all there: the roles check reports what to assign
    if held is None:
        return []  # a configured role is missing: role.missing says so and remediate assigns it
    granted_by_definition = [a for a in missing if any(_grants(r, a) for r in held)]
    if granted_by_definition or not permissions.entries:
        # the definitions grant it, ARM does not (yet): a new assignment still propagating...
        propagating = _propagating(facts, sub, principal, covering, missing, source)
        if propagating is not None:
            return [propagating]
    lacking = [a for a in missing if a not in granted_by_definition]
    findings, lacking = _incomplete_custom_roles(facts, sub, asker, held, lacking)
    remaining = lacking + granted_by_definition
    if remaining:
        findings.append(_insufficient(facts, sub, principal, remaining, len(permissions.entries), source,
                                      "a deny assignment or notActions removes them"))
    return findings


async def _young_managed_identity_roles(facts: Facts, sub: str, principal: str) -> list[Finding]:
    """Nothing is missing. A service principal's answer is ARM's own, so that is that; a managed identity has no
    token to ask ARM with, so a just-created assignment is assumed not to apply yet."""
    if not facts.is_managed_identity:
        return []
    held_now, _ = await _covering(facts, sub, principal)
    young = _propagating(facts, sub, principal, held_now, [], MI_PROPAGATION_SOURCE, limit=PROPAGATION_TYPICAL)
    return [young] if young is not None else []


def _incomplete_custom_roles(facts: Facts, sub: str, asker: _Asker, held: list[RoleDefinitionInfo],
                             lacking: list[str]) -> tuple[list[Finding], list[str]]:
    """`role.custom_role_incomplete` for each held custom role that alone lacks actions no other held role
    grants; and the actions still unexplained after them."""
    scope = f"/subscriptions/{sub}"
    principal = asker.principal
    params = {**facts.params(), "subscription_id": sub, "principal_id": principal or "<principal-id>"}
    findings: list[Finding] = []
    for role in held:
        role_missing = [a for a in lacking if not _grants(role, a)]
        if role.role_type.lower() != "customrole" or not role_missing or any(
                _grants(other, a) for other in held if other is not role for a in role_missing):
            continue
        shown = role_missing[:MAX_LISTED_ACTIONS]
        findings.append(make_finding(
            "role.custom_role_incomplete",
            f"The custom role '{role.name}' held on subscription {sub} does not include {len(role_missing)} "
            f"action(s) CycleCloud needs, e.g. '{role_missing[0]}'; CycleCloud fails with \"does not have "
            f"authorization to perform action '{role_missing[0]}' over scope '{scope}'\".",
            evidence={"subscription_id": sub, "scope": scope, "principal_id": principal or None,
                      "role": role.name, "role_id": role.id, "missing_actions": shown,
                      "missing_count": len(role_missing), "source": asker.source},
            params={**params, "role": role.name, "missing_actions": ", ".join(shown),
                    "missing_actions_json": json.dumps(shown)},
            check="permissions", subject=f"{role.name} on {scope}",
        ))
        lacking = [a for a in lacking if a not in role_missing]
    return findings, lacking


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
