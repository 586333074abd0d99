"""Roles the product refuses to give the CycleCloud principal: ones that let their holder grant any access to
anyone (Owner, User Access Administrator, Role Based Access Control Administrator, or any role whose actions
reach role assignments or definitions). Configuration refuses the built-in ones by id or name; a custom role,
or a role named in a way config cannot know, is checked here on the definition ARM returns, before assigning.
`allow_privileged_roles: true` on the target is the operator's explicit opt-in."""

from __future__ import annotations

from ..adapters.rbac import RoleDefinitionInfo, action_matches
from ..config import PRIVILEGED_BUILTIN_ROLES, Target
from ..errors import BadRequestError

# what makes a role privileged: it can change who holds which access
SENSITIVE_ACTIONS = (
    "Microsoft.Authorization/roleAssignments/write",
    "Microsoft.Authorization/roleAssignments/delete",
    "Microsoft.Authorization/roleDefinitions/write",
    "Microsoft.Authorization/roleDefinitions/delete",
    "Microsoft.Authorization/elevateAccess/action",
)


class PrivilegedRoleRefusedError(BadRequestError):
    code = "privileged_role_refused"
    status = 400


def granted_sensitive_actions(role: RoleDefinitionInfo) -> list[str]:
    """The sensitive actions the role's actions allow and its notActions do not take away."""
    return [action for action in SENSITIVE_ACTIONS
            if any(action_matches(p, action) for p in role.actions)
            and not any(action_matches(p, action) for p in role.not_actions)]


def privileged_role_refusal(target: Target, role: RoleDefinitionInfo) -> PrivilegedRoleRefusedError | None:
    """The error to record instead of assigning `role`, or None when it may be assigned."""
    if target.allow_privileged_roles:
        return None
    builtin = PRIVILEGED_BUILTIN_ROLES.get(role.id.lower())
    granted = granted_sensitive_actions(role)
    if builtin is None and not granted:
        return None
    why = (f"'{role.name}' is the built-in {builtin} role" if builtin else
           f"role '{role.name}' ({role.role_type}) allows {', '.join(granted)}")
    return PrivilegedRoleRefusedError(
        f"Refusing to assign '{role.name}' to the CycleCloud principal of target '{target.name}'.",
        reason=f"{why}: whoever holds it can grant any access to anyone. CycleCloud needs no such right.",
        fix=f"Configure Contributor or the CycleCloud custom role (without Microsoft.Authorization write or delete) in "
            f"the target's roles; if you really mean it, set allow_privileged_roles: true on target '{target.name}'.",
        target=target.name, details={"role_id": role.id, "role": role.name, "sensitive_actions": granted})
