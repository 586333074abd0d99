"""Crash-safe rotation of a CycleCloud service principal's client secret (see docs/rotation.md).

plan -> intent -> create -> test -> push -> commit -> retire, journaled per target in the Functions storage
account, one run per target at a time (blob lease)."""

from .layout import PENDING_SUFFIX, pending_name
from .model import MARKER, Journal, Operation, RotationOutcome, RotationStage, RotationStatus
from .runner import RotationState, SweepResult, plan_rotation, rotate_all_due, rotate_target, rotation_status

__all__ = [
    "MARKER",
    "PENDING_SUFFIX",
    "Journal",
    "Operation",
    "RotationOutcome",
    "RotationStage",
    "RotationState",
    "RotationStatus",
    "SweepResult",
    "pending_name",
    "plan_rotation",
    "rotate_all_due",
    "rotate_target",
    "rotation_status",
]
