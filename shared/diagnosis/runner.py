"""Runs a target's checks concurrently, each under its own time limit.

A check is an async function that returns findings. The runner never lets one check hide or delay another:
every check is its own task; one that raises becomes a `check.failed` finding (or, when the product's own
identity lacks a right, `function.permission_missing`), one that exceeds its limit becomes `check.timed_out`,
and the rest of the report stands. Checks share expensive lookups through `Facts` (each fetched once, shielded
from a cancelled caller), so concurrency costs no duplicate calls.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import AccessDeniedError, CredentialUnavailableError, RemediatorError
from ..findings import Finding, make_finding
from ..redaction import scrub
from .report import CheckOutcome, CheckRun

if TYPE_CHECKING:
    from .facts import Facts

logger = logging.getLogger(__name__)

DEFAULT_CHECK_TIMEOUT_SECONDS = 45.0


class CheckSkipped(Exception):
    """Raised by a check that does not apply, or that needs what another check could not get."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


CheckFunction = Callable[["Facts"], Awaitable[list[Finding]]]


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    run: CheckFunction
    timeout_seconds: float | None = None  # None: the runner's default


def _error_evidence(exc: BaseException) -> dict[str, object]:
    if isinstance(exc, RemediatorError):
        evidence: dict[str, object] = {"error_code": exc.code, "message": scrub(exc.message)}
        if exc.reason:
            evidence["reason"] = scrub(exc.reason)
        if exc.fix:
            evidence["fix"] = scrub(exc.fix)
        for key, value in exc.details.items():
            if isinstance(value, str | int | float | bool) or value is None:
                evidence.setdefault(key, scrub(value) if isinstance(value, str) else value)
        return evidence
    return {"error_code": type(exc).__name__, "message": scrub(str(exc))[:500]}


_OID = re.compile(r"(?:oid=|object id ')([0-9a-fA-F-]{36})")
_COMMAND = re.compile(r"\((az [^)]*)\)")
_PLACEHOLDER = "<identity object id>"
_LOOKUP_OID = ("$(az functionapp identity show --name <function-app> --resource-group <rg> --query principalId "
               "-o tsv)")


def identity_object_id(exc: RemediatorError) -> str | None:
    """The refused identity's object id where Azure's own error names it (Key Vault's `oid=`, ARM's `object id
    '...'`), or an adapter put it in the details."""
    named = exc.details.get("caller_object_id") or exc.details.get("object_id")
    match = _OID.search(f"{exc.reason} {exc.message} oid={named}" if named else f"{exc.reason} {exc.message}")
    return match.group(1).lower() if match else None


def grant_lines(exc: RemediatorError) -> dict[str, str]:
    """A grant as two different lines, a portal path and a command, with the product identity's object id filled
    in wherever Azure's own error named it (Key Vault's `oid=`, ARM's `object id '...'`)."""
    oid = identity_object_id(exc)
    fix = exc.fix or ""
    command = _COMMAND.search(fix)
    cli = str(exc.details.get("cli") or (command.group(1) if command else ""))
    portal = str(exc.details.get("portal") or (fix[:command.start()] + fix[command.end():] if command else fix))
    portal = re.sub(r"\s+\.", ".", portal).strip()
    if exc.details.get("permission") and not exc.details.get("portal"):
        portal = (f"Microsoft Entra ID > Enterprise applications > (the Function app's identity) > Permissions: "
                  f"{exc.details['permission']} (admin consent); App registrations > (the app) > Owners > Add: "
                  f"{oid or 'the Function app identity'}")
    elif exc.details.get("role") and not exc.details.get("portal"):
        portal = (f"(the resource) > Access control (IAM) > Add role assignment > {exc.details['role']} > Members: "
                  f"{oid or 'the Function app identity'}")
    cli = cli.replace(_PLACEHOLDER, oid or _LOOKUP_OID)
    vault = str(exc.details.get("vault") or "").split("//")[-1].split(".")[0]
    if vault:
        cli = cli.replace("<vault resource id>", f"$(az keyvault show --name {vault} --query id -o tsv)")
    portal = portal.replace(_PLACEHOLDER, oid or "the Function app identity")
    return {"grant_portal": portal or "see the evidence", "grant_cli": cli or portal or "see the evidence",
            **({"identity_object_id": oid} if oid else {})}


def _denied_subject(exc: AccessDeniedError, check: Check) -> str:
    """What was denied, worded the same way the product_rights check words it, so the two findings merge."""
    details = exc.details
    if details.get("permission") or details.get("role"):
        return str(details.get("permission") or details.get("role"))
    if details.get("action"):
        return f"{details['action']} on {details.get('scope') or '?'}"
    return check.name


def _arm_finding(check: Check, exc: RemediatorError, evidence: dict[str, object],
                 params: dict[str, object]) -> Finding | None:
    """An ARM error code with a finding of its own (SubscriptionNotFound, InvalidAuthenticationTokenTenant, ...):
    that finding, about the subscription it names, instead of a generic `check.failed`."""
    from ..adapters.arm_errors import ARM_CODE_FINDINGS
    from ..adapters.rbac import subscription_of

    code = ARM_CODE_FINDINGS.get(str(exc.details.get("arm_code") or ""))
    if code is None:
        return None
    sub = str(exc.details.get("subscription_id") or subscription_of(str(exc.details.get("scope") or "")) or "")
    return make_finding(code, f"While checking '{check.description}', ARM answered {exc.details.get('arm_code')}: "
                              f"{scrub(exc.message)}",
                        evidence=evidence, params={**params, "subscription_id": sub or params.get("subscription_id")},
                        check=check.name, subject=sub or None)


def finding_for_error(check: Check, exc: BaseException, params: dict[str, object]) -> Finding:
    """What a check's exception means for the report."""
    evidence = _error_evidence(exc)
    evidence["check"] = check.name
    if isinstance(exc, RemediatorError):
        arm = _arm_finding(check, exc, evidence, params)
        if arm is not None:
            return arm
    if isinstance(exc, AccessDeniedError):
        grant_params = {**params, **grant_lines(exc)}
        return make_finding(
            "function.permission_missing",
            f"While checking '{check.description}', the product was refused: {scrub(exc.message)}",
            evidence=evidence, params=grant_params, check=check.name,
            subject=_denied_subject(exc, check),
        )
    if isinstance(exc, CredentialUnavailableError):
        return make_finding(
            "function.identity_unavailable", f"The product could not sign in as itself: {scrub(exc.message)}",
            evidence=evidence, params=params, check=check.name, subject="product identity",
        )
    return make_finding(
        "check.failed", f"The check '{check.description}' failed: {evidence['message']}",
        evidence=evidence, params=params, check=check.name, subject=check.name,
    )


async def run_checks(checks: list[Check], facts: Facts, *, timeout_seconds: float = DEFAULT_CHECK_TIMEOUT_SECONDS,
                     ) -> tuple[list[Finding], list[CheckRun]]:
    """Run every check at once; return all findings (in check order) and one CheckRun per check."""
    origin = time.perf_counter()
    params = facts.params()

    async def one(check: Check) -> tuple[list[Finding], CheckRun]:
        started = time.perf_counter()
        limit = check.timeout_seconds or timeout_seconds
        findings: list[Finding] = []
        note: str | None = None
        try:
            async with asyncio.timeout(limit):
                findings = list(await check.run(facts))
            outcome = CheckOutcome.PROBLEMS if findings else CheckOutcome.PASSED
        except CheckSkipped as skipped:
            outcome, note = CheckOutcome.SKIPPED, skipped.reason
        except TimeoutError:
            outcome, note = CheckOutcome.TIMED_OUT, f"did not finish within {limit:g} s"
            findings = [make_finding(
                "check.timed_out", f"The check '{check.description}' did not finish within {limit:g} seconds.",
                evidence={"check": check.name, "time_limit_seconds": limit}, params=params, check=check.name,
                subject=check.name,
            )]
            logger.warning("check %s timed out after %s s", check.name, limit)
        except Exception as exc:  # a failing check is a finding, never a crashed validation
            finding = finding_for_error(check, exc, params)
            outcome, note = CheckOutcome.FAILED, finding.detail
            findings = [finding]
            logger.warning("check %s failed: %s", check.name, scrub(str(exc)).splitlines()[0] if str(exc) else
                           type(exc).__name__)
        ended = time.perf_counter()
        run = CheckRun(
            name=check.name, description=check.description, outcome=outcome,
            started_ms=(started - origin) * 1000, duration_ms=(ended - started) * 1000,
            findings=tuple(dict.fromkeys(f.code for f in findings)), note=note,
        )
        return findings, run

    results = await asyncio.gather(*(one(check) for check in checks))
    all_findings = [finding for findings, _ in results for finding in findings]
    return all_findings, [run for _, run in results]
