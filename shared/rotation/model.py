"""The rotation's domain types: stages, the journaled operation, the journal itself and the outcome.

Everything here is plain data that round-trips through JSON (the journal blob) and never holds a secret
value: only key ids, 3-character hints, operation ids, dates and secret-free error text.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from .. import clock

HISTORY_LIMIT = 20  # finished operations kept in the journal (the journal is read on every run)
OPERATION_IDS_LIMIT = 200  # every operation id this target started: what proves a credential is this target's
MARKER = "ccremediator"  # prefix of the displayName of every credential the product creates


class RotationStage(StrEnum):
    """The step an operation runs next (what the journal's `stage` means)."""

    PLAN = "plan"
    INTENT = "intent"
    CREATE = "create"
    TEST = "test"
    PUSH = "push"
    COMMIT = "commit"
    RETIRE = "retire"
    DONE = "done"


class RotationStatus(StrEnum):
    """What a call to rotate_target ended with."""

    NOT_DUE = "not_due"  # nothing to do (maintenance such as orphan removal may still have run)
    ROTATED = "rotated"  # a rotation finished in this call (committed; retirement may be scheduled)
    IN_PROGRESS = "in_progress"  # stopped at a resumable point (propagation, deadline); the next call resumes
    FAILED = "failed"  # stopped by an error that needs a person or a later retry; the journal says where
    PLANNED = "planned"  # dry run


def credential_display_name(operation_id: str) -> str:
    """The displayName of a credential the product creates: marker + operation id, so a credential whose value
    never reached Key Vault can be recognised (and removed) by the next run."""
    return f"{MARKER} {operation_id}"


def operation_of(display_name: str | None) -> str | None:
    """The operation id in a product-created credential's displayName, or None for anyone else's credential."""
    if not display_name or not display_name.startswith(MARKER + " "):
        return None
    op = display_name[len(MARKER) + 1:].strip()
    return op or None


@dataclass(frozen=True)
class StepError:
    """A secret-free record of why a step stopped."""

    stage: str
    code: str
    message: str
    at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Operation:
    """One rotation in flight. `stage` is the step it runs next."""

    id: str
    stage: RotationStage
    started_at: str
    updated_at: str
    reason: str
    previous_key_id: str | None = None  # the credential being replaced (retired after the grace period)
    new_key_id: str | None = None
    new_hint: str | None = None
    new_end: str | None = None
    pending_version: str | None = None  # version of the `<secret>-pending` Key Vault secret holding the value
    lifetime_days: int | None = None
    lifetime_clamped_by_policy: bool = False
    test_successes: int = 0
    attempts: int = 0
    last_error: StepError | None = None
    finished_at: str | None = None
    result: str | None = None  # for history: "committed", "abandoned"
    push_confirmed: bool | None = None  # False: CycleCloud's read-back showed no hint (masked), so unconfirmed
    requested_by: str | None = None  # who asked (the timer, a caller's identity, the CLI's user)

    def advance(self, stage: RotationStage, **changes: Any) -> Operation:
        return replace(self, stage=stage, updated_at=clock.iso(clock.now()), last_error=None, **changes)

    def failed(self, error: StepError) -> Operation:
        return replace(self, updated_at=error.at, last_error=error)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stage"] = self.stage.value
        data["last_error"] = self.last_error.to_dict() if self.last_error else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Operation:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["stage"] = RotationStage(known["stage"])
        err = known.get("last_error")
        known["last_error"] = StepError(**err) if isinstance(err, dict) else None
        return cls(**known)


@dataclass(frozen=True)
class Retirement:
    """A replaced credential to remove (by keyId) once `after` has passed."""

    key_id: str
    after: str
    operation_id: str
    kept_because: str | None = None  # why the last attempt kept it (the removal rule could not be established)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Journal:
    """The per-target rotation journal (one JSON blob, written with ETag conditions)."""

    target: str
    current: Operation | None = None
    retirements: tuple[Retirement, ...] = ()
    adopted_key_id: str | None = None  # the credential adopted on first contact
    history: tuple[dict[str, Any], ...] = ()
    events: tuple[dict[str, Any], ...] = ()  # maintenance done outside an operation (orphans, retirements)
    operation_ids: tuple[str, ...] = ()  # every operation this target started, newest first
    # an app management policy's maximum secret lifetime, learned from a refusal: later rotations start there
    policy_max_lifetime_days: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "target": self.target,
            "current": self.current.to_dict() if self.current else None,
            "retirements": [r.to_dict() for r in self.retirements],
            "adopted_key_id": self.adopted_key_id,
            "history": list(self.history),
            "events": list(self.events),
            "operation_ids": list(self.operation_ids),
            "policy_max_lifetime_days": self.policy_max_lifetime_days,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Journal:
        current = data.get("current")
        return cls(
            target=str(data.get("target", "")),
            current=Operation.from_dict(current) if isinstance(current, dict) else None,
            retirements=tuple(Retirement(**{k: v for k, v in r.items() if k in Retirement.__dataclass_fields__})
                              for r in data.get("retirements", [])),
            adopted_key_id=data.get("adopted_key_id"),
            history=tuple(data.get("history", [])),
            events=tuple(data.get("events", [])),
            operation_ids=tuple(str(i) for i in data.get("operation_ids", [])),
            policy_max_lifetime_days=data.get("policy_max_lifetime_days"),
        )

    @property
    def own_operations(self) -> frozenset[str]:
        """Every operation id this journal shows this target started: a credential whose displayName carries one
        of these is this target's; any other `ccremediator` credential belongs to someone else."""
        ids = set(self.operation_ids) | {str(h.get("id")) for h in self.history if h.get("id")}
        ids |= {r.operation_id for r in self.retirements}
        if self.current is not None:
            ids.add(self.current.id)
        return frozenset(ids)

    def start(self, op: Operation) -> Journal:
        """Record a new operation (INTENT): it becomes current and its id is this target's for good."""
        return replace(self, current=op, operation_ids=(op.id, *self.operation_ids)[:OPERATION_IDS_LIMIT])

    def with_current(self, op: Operation | None) -> Journal:
        return replace(self, current=op)

    def finish(self, op: Operation, result: str) -> Journal:
        done = replace(op, stage=RotationStage.DONE, finished_at=clock.iso(clock.now()), result=result)
        history = (done.to_dict(), *self.history)[:HISTORY_LIMIT]
        return replace(self, current=None, history=history)

    def log_event(self, kind: str, **details: Any) -> Journal:
        event = {"at": clock.iso(clock.now()), "event": kind, **details}
        return replace(self, events=(event, *self.events)[:HISTORY_LIMIT])


@dataclass
class RotationOutcome:
    """What rotate_target returns (HTTP body via to_dict; never a secret)."""

    target: str
    status: RotationStatus
    message: str
    stage: RotationStage | None = None
    operation_id: str | None = None
    due: bool | None = None
    reason: str | None = None
    new_key_id: str | None = None
    previous_key_id: str | None = None
    expires_on: str | None = None
    retire_after: str | None = None
    steps: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    maintenance: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    kept: list[dict[str, str]] = field(default_factory=list)  # credentials kept, each with why
    findings: list[dict[str, str]] = field(default_factory=list)  # code, message, fix: what a person should do
    push_confirmed: bool | None = None

    @property
    def http_status(self) -> int:
        return 202 if self.status is RotationStatus.IN_PROGRESS else 200

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "target": self.target,
            "status": self.status.value,
            "message": self.message,
            "stage": self.stage.value if self.stage else None,
            "operationId": self.operation_id,
            "due": self.due,
            "reason": self.reason,
            "newKeyId": self.new_key_id,
            "previousKeyId": self.previous_key_id,
            "expiresOn": self.expires_on,
            "retireAfter": self.retire_after,
            "steps": list(self.steps),
            "warnings": list(self.warnings),
            "maintenance": list(self.maintenance),
            "error": self.error,
            "kept": list(self.kept),
            "findings": list(self.findings),
            "pushConfirmed": self.push_confirmed,
        }
        if self.plan is not None:
            body["plan"] = self.plan
        if self.status is RotationStatus.IN_PROGRESS:
            body["statusUrl"] = f"/api/targets/{self.target}/rotation"
            stage = self.stage.value if self.stage else "?"
            body["next"] = (f"Call POST /api/targets/{self.target}/rotate again (or wait for the timer): it resumes "
                            f"at stage '{stage}'.")
        return {k: v for k, v in body.items() if v not in (None, [])} | {"status": self.status.value}
