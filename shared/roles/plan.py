"""Pure planning: given what ARM reports for one subscription, which configured assignments are present,
which are missing (and why, in words a person can act on), and which extra ones the principal holds.
No I/O, so diagnosis and remediation reuse it on facts they already gathered."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..adapters.rbac import (
    PolicyAssignmentInfo,
    RoleAssignmentInfo,
    RoleDefinitionInfo,
    same_scope,
    scope_covers,
)
from .model import AssignmentOutcome, AssignmentState, PrincipalRef, assignment_name, managed_by_product


def _apply_hint(target: str) -> str:
    return (f"Run `python -m shared roles {target} --apply`, or POST /api/targets/{target}/roles/reconcile with "
            '{"dry_run": false}.')


def _missing_reason(role: RoleDefinitionInfo, scope: str, principal: PrincipalRef,
                    held: Sequence[RoleAssignmentInfo], names: Mapping[str, str]) -> str:
    below = [a for a in held if a.role_definition_id == role.id and not scope_covers(a.scope, scope)
             and scope_covers(scope, a.scope)]
    covering_other = [a for a in held if scope_covers(a.scope, scope) and a.role_definition_id != role.id]
    who = "the CycleCloud VM's managed identity" if principal.source == "vm_identity" else "the service principal"
    if below:
        return (f"{who} holds {role.name} only at {', '.join(sorted({a.scope for a in below}))}, a narrower scope; "
                f"CycleCloud needs it at {scope}.")
    if covering_other:
        others = sorted({names.get(a.role_definition_id, a.role_definition_id) for a in covering_other})
        return f"{who} holds only {', '.join(others)} at {scope}, not {role.name}."
    return f"{who} has no {role.name} assignment at {scope} or above it."


def plan_roles(target: str, principal: PrincipalRef, subscription_id: str, roles: Sequence[RoleDefinitionInfo],
               assignments: Sequence[RoleAssignmentInfo], policies: Sequence[PolicyAssignmentInfo] = (),
               *, role_names: Mapping[str, str] | None = None, prune_unmanaged: bool = False,
               ) -> list[AssignmentOutcome]:
    """Compare the configured `roles` at the subscription with the principal's `assignments` (as listed with
    `principalId eq`: at, above or below the subscription). Inherited assignments (root, management group)
    count as present; ones only on a resource group below do not."""
    scope = f"/subscriptions/{subscription_id}"
    names = {r.id: r.name for r in roles} | dict(role_names or {})
    held = [a for a in assignments if a.principal_id.lower() == principal.object_id.lower()]
    outcomes: list[AssignmentOutcome] = []
    for role in roles:
        covering = [a for a in held if a.role_definition_id == role.id and scope_covers(a.scope, scope)]
        if covering:
            exact = next((a for a in covering if same_scope(a.scope, scope)), covering[0])
            outcomes.append(AssignmentOutcome(
                subscription_id, scope, role.id, role.name, principal.object_id, AssignmentState.PRESENT,
                assignment_name=exact.name, assignment_id=exact.id,
                inherited_from=None if same_scope(exact.scope, scope) else exact.scope,
                managed_by_product=managed_by_product(exact.description, target),
            ))
            continue
        reason = _missing_reason(role, scope, principal, held, names)
        fix = _apply_hint(target)
        details: dict[str, object] = {}
        denying = [p for p in policies if p.denies_role_assignment(role.id, principal.principal_type)]
        if denying:
            policy = denying[0]
            reason += f" Azure Policy assignment '{policy.display_name}' ({policy.id}) is expected to deny creating it."
            fix = (f"Ask the owner of policy assignment '{policy.display_name}' for an exemption at {scope}, or "
                   "configure a role the policy allows; then apply again.")
            details["policy_assignment_id"] = policy.id
        outcomes.append(AssignmentOutcome(
            subscription_id, scope, role.id, role.name, principal.object_id, AssignmentState.MISSING,
            assignment_name=assignment_name(scope, principal.object_id, role.id), reason=reason, fix=fix,
            details=details,
        ))
    wanted = {r.id for r in roles}
    for extra in held:
        if same_scope(extra.scope, scope) and extra.role_definition_id not in wanted:
            managed = managed_by_product(extra.description, target)
            outcomes.append(AssignmentOutcome(
                subscription_id, scope, extra.role_definition_id,
                names.get(extra.role_definition_id, extra.role_definition_id), principal.object_id,
                AssignmentState.EXTRA, assignment_name=extra.name, assignment_id=extra.id,
                managed_by_product=managed,
                reason="Not in the target's configured roles; " + (
                    "created by this product, so apply removes it." if managed else
                    "not created by this product, but prune_unmanaged_roles is set, so apply removes it."
                    if prune_unmanaged else
                    "not created by this product, so it is kept (set prune_unmanaged_roles to remove it)."),
            ))
    return outcomes
