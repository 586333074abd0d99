"""Role reconciliation: the target's principal holds its configured roles at its configured subscriptions.

- `plan_roles(...)`: pure; compare configured roles with listed assignments (reused by diagnosis/remediation).
- `reconcile_target_roles(ctx, target, dry_run=...)`: plan or apply through ARM; see `reconcile`.
"""

from .model import (
    DESCRIPTION_PREFIX,
    AssignmentOutcome,
    AssignmentState,
    PrincipalRef,
    RoleReconciliation,
    assignment_name,
    description_for,
    managed_by_product,
)
from .plan import plan_roles
from .reconcile import PRINCIPAL_RETRY_DELAYS, reconcile_target_roles, resolve_principal

__all__ = [
    "DESCRIPTION_PREFIX",
    "PRINCIPAL_RETRY_DELAYS",
    "AssignmentOutcome",
    "AssignmentState",
    "PrincipalRef",
    "RoleReconciliation",
    "assignment_name",
    "description_for",
    "managed_by_product",
    "plan_roles",
    "reconcile_target_roles",
    "resolve_principal",
]
