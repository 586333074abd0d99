"""Credential diagnosis: `validate` runs independent checks concurrently and returns one plain-English report
(see docs/diagnosis.md); the health sweep records every target's status; the target list reads it back."""

from .health import HealthSweep, TargetList, check_all_targets, list_targets
from .report import CheckOutcome, CheckRun, Report, Status
from .schema import REPORT_SCHEMA, TARGET_LIST_SCHEMA
from .validate import diagnose, validate_target

__all__ = [
    "REPORT_SCHEMA",
    "TARGET_LIST_SCHEMA",
    "CheckOutcome",
    "CheckRun",
    "HealthSweep",
    "Report",
    "Status",
    "TargetList",
    "check_all_targets",
    "diagnose",
    "list_targets",
    "validate_target",
]
