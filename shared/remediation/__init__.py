"""One-call remediation: validate -> fix what can be fixed safely, in order -> validate again."""

from __future__ import annotations

from .model import ActionRecord, FixResult, Outcome, PlannedFix, RemediationReport, Result

__all__ = ["ActionRecord", "FixResult", "Outcome", "PlannedFix", "RemediationReport", "Result"]
