"""What role reconciliation plans and reports: desired assignments and each one's outcome."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

PRODUCT = "cyclecloud-credential-remediator"
# uuid5 namespace of the product: assignment names are uuid5(namespace, "<scope>|<principal>|<role>")
ASSIGNMENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, f"https://github.com/{PRODUCT}/role-assignments")
DESCRIPTION_PREFIX = f"Managed by {PRODUCT} for target "


def assignment_name(scope: str, principal_id: str, role_id: str) -> str:
    """Deterministic: the same scope, principal and role always give the same assignment name, so a re-run
    (or a concurrent run) PUTs the same resource instead of creating a duplicate."""
    key = f"{scope.rstrip('/').lower()}|{principal_id.lower()}|{role_id.lower()}"
    return str(uuid.uuid5(ASSIGNMENT_NAMESPACE, key))


def description_for(target: str) -> str:
    """The label on every assignment the product creates, so a clean-up can tell it is a dependency."""
    return f"{DESCRIPTION_PREFIX}{target}"


def managed_by_product(description: str | None, target: str) -> bool:
    return (description or "").strip() == description_for(target)


class AssignmentState(StrEnum):
    PRESENT = "present"  # held at the scope or inherited from a parent scope
    MISSING = "missing"  # plan: would be created
    CREATED = "created"  # apply: created (or found under another name) and verified
    FAILED = "failed"  # could not be checked or created; see reason and fix
    EXTRA = "extra"  # the principal holds a role here that is not configured; kept
    REMOVED = "removed"  # an extra assignment removed (the product's own, or prune_unmanaged_roles)


@dataclass(frozen=True)
class PrincipalRef:
    object_id: str
    source: str  # "service_principal" (from the app id) | "vm_identity" (the VM's system-assigned identity)
    display: str = ""
    principal_type: str = "ServicePrincipal"


@dataclass(frozen=True)
class AssignmentOutcome:
    subscription_id: str
    scope: str
    role_id: str
    role_name: str
    principal_id: str
    state: AssignmentState
    assignment_name: str | None = None  # the deterministic name (planned or created) or the existing one
    assignment_id: str | None = None
    inherited_from: str | None = None  # when present through a parent scope
    managed_by_product: bool = False
    verified: bool | None = None  # apply: listed again after creation
    reason: str = ""
    fix: str = ""
    error_code: str | None = None
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.state in (AssignmentState.PRESENT, AssignmentState.CREATED, AssignmentState.EXTRA,
                              AssignmentState.REMOVED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "subscription_id": self.subscription_id, "scope": self.scope, "role_id": self.role_id,
            "role": self.role_name, "principal_id": self.principal_id, "state": self.state.value,
            "assignment_name": self.assignment_name, "assignment_id": self.assignment_id,
            "inherited_from": self.inherited_from, "managed_by_product": self.managed_by_product,
            "verified": self.verified, "reason": self.reason or None, "fix": self.fix or None,
            "error_code": self.error_code, "details": self.details,
        }


@dataclass(frozen=True)
class RoleReconciliation:
    target: str
    mode: str
    dry_run: bool
    principal: PrincipalRef
    assignments: tuple[AssignmentOutcome, ...]

    def count(self, state: AssignmentState) -> int:
        return sum(1 for a in self.assignments if a.state is state)

    @property
    def ok(self) -> bool:
        """Plan: nothing failed to be checked. Apply: every configured assignment is present or created."""
        if self.dry_run:
            return not self.count(AssignmentState.FAILED)
        return all(a.ok for a in self.assignments)

    @property
    def changes_needed(self) -> bool:
        return bool(self.count(AssignmentState.MISSING))

    @property
    def message(self) -> str:
        present, missing = self.count(AssignmentState.PRESENT), self.count(AssignmentState.MISSING)
        created, failed = self.count(AssignmentState.CREATED), self.count(AssignmentState.FAILED)
        removed = self.count(AssignmentState.REMOVED)
        if self.dry_run:
            text = f"Plan for '{self.target}': {present} present, {missing} to create"
        else:
            text = f"Roles of '{self.target}': {present} already present, {created} created"
            if removed:
                text += f", {removed} removed"
        return text + (f", {failed} failed." if failed else ".")

    @property
    def reason(self) -> str:
        return "; ".join(f"{a.role_name} at {a.scope}: {a.reason}" for a in self.assignments
                         if a.state is AssignmentState.FAILED and a.reason)

    @property
    def fix(self) -> str:
        fixes: list[str] = []
        for a in self.assignments:
            if a.state is AssignmentState.FAILED and a.fix and a.fix not in fixes:
                fixes.append(a.fix)
        return " ".join(fixes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "mode": self.mode, "dry_run": self.dry_run, "ok": self.ok,
            "message": self.message,
            "principal": {"object_id": self.principal.object_id, "source": self.principal.source,
                          "display_name": self.principal.display, "principal_type": self.principal.principal_type},
            "summary": {state.value: self.count(state) for state in AssignmentState},
            "assignments": [a.to_dict() for a in self.assignments],
        }
