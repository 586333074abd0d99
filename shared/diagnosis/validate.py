"""`validate`: run every check for one target concurrently and assemble the report."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from .. import clock, telemetry
from ..config import Target
from ..findings import Finding, Severity
from .checks import ALL_CHECKS
from .facts import Facts
from .report import Report, overall_status
from .runner import DEFAULT_CHECK_TIMEOUT_SECONDS, run_checks

if TYPE_CHECKING:
    from ..context import AppContext

logger = logging.getLogger(__name__)

_SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


def merge_findings(findings: list[Finding]) -> list[Finding]:
    """One finding per (code, subject): several checks may see the same problem from different sides (Graph
    says the credential expired, Entra says AADSTS7000222); keep the first and add the others' evidence."""
    merged: dict[tuple[str, str | None], Finding] = {}
    for finding in findings:
        key = (finding.code, finding.subject)
        first = merged.get(key)
        if first is None:
            merged[key] = finding
            continue
        evidence = dict(first.evidence)
        for name, value in finding.evidence.items():
            evidence.setdefault(name, value)
        seen_by = [*evidence.get("seen_by", [first.check]), finding.check]
        evidence["seen_by"] = list(dict.fromkeys(seen_by))
        merged[key] = Finding(
            code=first.code, severity=first.severity, title=first.title, summary=first.summary, detail=first.detail,
            evidence=evidence, steps=first.steps, fix_action=first.fix_action, remediate_how=first.remediate_how,
            check=first.check, subject=first.subject,
        )
    ordered = list(merged.values())
    ordered.sort(key=lambda f: _SEVERITY_ORDER[f.severity])  # stable: check order within a severity
    return ordered


def _with(finding: Finding, detail: str, evidence: dict[str, object]) -> Finding:
    return Finding(code=finding.code, severity=finding.severity, title=finding.title, summary=finding.summary,
                   detail=detail, evidence={**finding.evidence, **evidence}, steps=finding.steps,
                   fix_action=finding.fix_action, remediate_how=finding.remediate_how, check=finding.check,
                   subject=finding.subject)


# what fails downstream when the product cannot get a token as itself: consequences of that one cause
_NO_OWN_TOKEN = {"authentication_failed", "identity_unavailable"}


def _fold_into_own_identity(findings: list[Finding]) -> list[Finding]:
    root = next((f for f in findings if f.code == "function.identity_unavailable"), None)
    if root is None:
        return findings
    consequences = [f for f in findings if f is not root and (
        (f.code == "check.failed" and f.evidence.get("error_code") in _NO_OWN_TOKEN)
        or (f.code == "function.cyclecloud_password_unreadable" and f.evidence.get("error_code") in _NO_OWN_TOKEN))]
    if not consequences:
        return findings
    checks = sorted({str(f.evidence.get("check") or f.check) for f in consequences})
    detail = root.detail.rstrip(".") + f"; so {', '.join(checks)} could not run either."
    merged = _with(root, detail, {"explains": sorted({f.code for f in consequences}), "checks_blocked": checks})
    return [merged if f is root else f for f in findings if f not in consequences]


def explain_together(findings: list[Finding]) -> list[Finding]:
    """One cause, one finding. A mistyped tenant or app id also makes every subscription look like another
    tenant's and CycleCloud's account look like another identity; those are consequences, not causes. They are
    folded into the cause as evidence (and, where the subscription or CycleCloud name the id, as the likely
    right value) instead of sending a person after three problems."""
    out = _fold_into_own_identity(list(findings))
    for cause, kind, label in (("tenant.not_found", "tenant", "tenant_id"),
                               ("app.not_found_in_tenant", "application", "app_id")):
        root = next((f for f in out if f.code == cause), None)
        if root is None:
            continue
        consequences: list[Finding] = []
        seen_by: dict[str, str] = {}  # where the likely right value was seen -> the value
        for other in out:
            differences = [str(d) for d in other.evidence.get("differences") or []]
            if other.code == "cyclecloud.identity_mismatch" and differences and all(
                    d.startswith(f"{kind} id") for d in differences):
                consequences.append(other)
                seen_by["CycleCloud's account"] = str(other.evidence.get(f"cyclecloud_{label}") or "")
            elif other.code == "tenant.mismatch" and kind == "tenant":
                consequences.append(other)
                seen_by["the subscription"] = str(other.evidence.get("subscription_tenant_id") or "")
        if not consequences:
            continue
        likely = {v for v in seen_by.values() if v}
        detail = root.detail.rstrip(".")
        if len(likely) == 1:
            verb = "use" if len(seen_by) > 1 else "uses"
            detail += (f"; {' and '.join(seen_by)} {verb} {label} {next(iter(likely))}: most likely the right "
                       f"value for the target's {label}.")
        else:
            detail += "."
        evidence: dict[str, object] = {"explains": sorted({f.code for f in consequences}),
                                       "likely_" + label: next(iter(likely)) if len(likely) == 1 else None}
        out = [_with(f, detail, evidence) if f is root else f for f in out if f not in consequences]
    return out


async def diagnose(ctx: AppContext, target: Target, *, timeout_seconds: float = DEFAULT_CHECK_TIMEOUT_SECONDS,
                   only: set[str] | None = None) -> Report:
    """Run the target's checks (all of them, or the names in `only`) and return the report."""
    started_at = clock.now()
    started = time.perf_counter()
    facts = Facts(ctx, target, now=started_at)
    checks = [c for c in ALL_CHECKS if only is None or c.name in only]
    try:
        findings, runs = await run_checks(checks, facts, timeout_seconds=timeout_seconds)
    finally:
        await facts.close()
    merged = explain_together(merge_findings(findings))
    problems = tuple(f for f in merged if f.severity is not Severity.INFO)
    advice = tuple(f for f in merged if f.severity is Severity.INFO)
    report = Report(
        target=target.name, mode=target.mode.value, status=overall_status(problems),
        generated_at=started_at.strftime("%Y-%m-%dT%H:%M:%SZ"), duration_ms=(time.perf_counter() - started) * 1000,
        findings=problems, advice=advice, checks=tuple(runs), observations=dict(facts.observations),
    )
    logger.info("validated %s: %s (%s) in %.0f ms", target.name, report.status.value,
                ", ".join(report.codes) or "no findings", report.duration_ms)
    return report


@telemetry.traced("validate", record=telemetry.record_validation)  # span: target, outcome, findings
async def validate_target(ctx: AppContext, name: str, *,
                          timeout_seconds: float = DEFAULT_CHECK_TIMEOUT_SECONDS) -> Report:
    """POST /api/targets/{target}/validate and `python -m shared validate`: the report, even when the credential
    is broken (a broken credential is a finding, not an error). Unknown target -> TargetNotFoundError."""
    target = ctx.settings.target(name)
    return await diagnose(ctx, target, timeout_seconds=timeout_seconds)
