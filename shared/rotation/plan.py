"""What a rotation run would do now, decided once (`RotationRun.plan`, protocol.py) and shown by the dry run.

The real run and the dry run share the deciding steps: `RotationRun.removal_plan` (which orphans and due
retirements the removal rule lets go, on evidence read once) and `RotationRun.decide_now` (whether a rotation is
due); the real run acts on them in order (maintenance first, then the decision on the app as it is afterwards),
the dry run only reports them, as `RotationPlan`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .model import Operation, Retirement, RotationOutcome, RotationStatus, operation_of

if TYPE_CHECKING:
    from ..adapters.graph import AppCredential
    from ..config import Target
    from .policy import Decision


@dataclass(frozen=True)
class Removal:
    """The removal rule's verdict on one credential the maintenance would remove: an orphan (this target created
    it, its value never reached Key Vault) or a replaced credential whose retirement is due."""

    key_id: str
    credential: AppCredential | None  # None: a retirement whose credential is already gone from the app
    retirement: Retirement | None  # None for an orphan
    kept_because: str | None  # None: it may go now

    @property
    def is_orphan(self) -> bool:
        return self.retirement is None


@dataclass(frozen=True)
class RotationPlan:
    """The plan of one target: the operation to resume, the removals, and the decision (with the stop that holds
    a new rotation back, if any). Reading it changes nothing."""

    target: Target
    current_op: Operation | None
    removals: list[Removal]
    decision: Decision
    lead_days: int
    lifetime_days: int
    blocked: RotationOutcome | None  # a main secret a person must fix first (deleted, newest disabled)
    pending_name: str
    secret_name: str

    @property
    def due(self) -> bool:
        return self.current_op is not None or (self.blocked is None and self.decision.due)

    @property
    def kept(self) -> dict[str, str]:
        return {r.key_id: r.kept_because for r in self.removals if r.kept_because is not None}

    def _going(self, *, orphans: bool) -> list[Removal]:
        return [r for r in self.removals if r.is_orphan == orphans and r.kept_because is None]

    def steps(self) -> list[str]:
        steps = [f"remove orphan credential {r.key_id} (operation "
                 f"{operation_of(r.credential.display_name) if r.credential else None})"
                 for r in self._going(orphans=True)]
        steps += [f"retire replaced credential {r.key_id}" for r in self._going(orphans=False)]
        steps += [f"keep credential {key}: {why}" for key, why in self.kept.items()]
        if self.current_op is not None:
            steps.append(f"resume operation {self.current_op.id} at stage '{self.current_op.stage.value}'")
        elif self.blocked is not None:
            steps.append(f"stop: {self.blocked.message}")
        elif self.decision.due:
            policy = self.target.rotation
            steps += ["intent: record a new operation id in the journal",
                      f"create: add a client secret ({self.lifetime_days} days) and store it as "
                      f"'{self.pending_name}'",
                      f"test: {policy.test_successes} consecutive token + ARM authorization successes",
                      "push: update CycleCloud's account and verify",
                      f"commit: new version of '{self.secret_name}'",
                      f"retire: remove the replaced credential after {policy.grace_hours:g} hours, if the "
                      "product created it and nothing uses it then"]
        return steps

    def to_dict(self) -> dict[str, Any]:
        current, decision, op = self.decision.current.credential, self.decision, self.current_op
        return {
            "due": self.due, "reason": decision.reason,
            "currentKeyId": current.key_id if current else None,
            "currentMatchedBy": decision.current.how,
            "currentExpires": current.end.isoformat() if current and current.end else None,
            "rotateOn": decision.rotate_on.isoformat() if decision.rotate_on else None,
            "leadDays": self.lead_days, "lifetimeDays": self.lifetime_days,
            "resume": {"operationId": op.id, "stage": op.stage.value} if op else None,
            "orphans": [r.key_id for r in self._going(orphans=True)],
            "retire": [r.key_id for r in self._going(orphans=False)],
            "kept": [{"keyId": k, "reason": why} for k, why in self.kept.items()],
            "steps": self.steps(),
        }

    def outcome(self, findings: list[dict[str, str]], warnings: list[str]) -> RotationOutcome:
        """The dry run's answer."""
        steps, op = self.steps(), self.current_op
        message = "Dry run: " + ("; ".join(steps) if steps else f"nothing to do ({self.decision.reason})") + "."
        return RotationOutcome(self.target.name, RotationStatus.PLANNED, message, due=self.due,
                               reason=self.decision.reason, plan=self.to_dict(), operation_id=op.id if op else None,
                               stage=op.stage if op else None, findings=findings, warnings=warnings)
