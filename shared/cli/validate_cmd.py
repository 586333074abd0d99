"""`python -m shared validate <target> [--json]`: everything wrong with a target, in plain English.

Exit code: 0 healthy, 1 degraded, 2 failing (so scripts and CI can gate on it).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ..context import AppContext
from ..diagnosis import Report, validate_target
from ..diagnosis.runner import DEFAULT_CHECK_TIMEOUT_SECONDS
from .output import FAIL, OK, SKIP, WARN, emit, emit_json

_MARK = {"error": FAIL, "warning": WARN, "info": "i"}
_OUTCOME_MARK = {"passed": OK, "problems": FAIL, "skipped": SKIP, "failed": WARN, "timed_out": WARN}
# evidence that is long or nested: shown as a count, the full value is in --json
_BULKY = {"app_credentials", "probe", "events", "held_roles", "assignments_below_scope", "by_action", "seen_by",
          "description", "meaning", "fix", "reason", "message", "entra_description", "differences", "grant_portal",
          "grant_cli", "why",
          # detail the JSON keeps but the table leaves out
          "vault", "secret_version", "start", "stored_value_hint", "key_id_tag", "matched_by", "scope", "tenant_id",
          "app_id", "link", "credential_display_name", "role_id", "cyclecloud_subscription_ids", "source"}
_MAX_LIST = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="a configured target name")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (the HTTP API's shape)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_CHECK_TIMEOUT_SECONDS, metavar="SECONDS",
                        help=f"time limit of each check (default {DEFAULT_CHECK_TIMEOUT_SECONDS:g})")


def _value(value: Any) -> str:
    if isinstance(value, list):
        shown = ", ".join(str(v) for v in value[:_MAX_LIST])
        return f"{shown} (+{len(value) - _MAX_LIST} more)" if len(value) > _MAX_LIST else shown
    return str(value)


def evidence_line(evidence: dict[str, Any]) -> str:
    parts = []
    for key, value in evidence.items():
        if value in (None, "", [], {}) or key in _BULKY:
            continue
        parts.append(f"{key}={_value(value)}")
    return "; ".join(parts)


def render(report: Report) -> list[str]:
    data = report.to_dict()
    status = data["status"].upper()
    counts = data["counts"]
    lines = [f"Target {data['target']} ({data['mode']}): {status}  -  {counts['error']} error(s), "
             f"{counts['warning']} warning(s), {counts['info']} advice  [{data['generated_at']}, "
             f"{data['duration_ms']:.0f} ms]", ""]
    if not data["findings"]:
        lines += [f"{OK} No problems found.", ""]
    # the code column fits the longest code shown, so a code never runs into its title
    code_width = max((len(f["code"]) for f in (*data["findings"], *data["advice"])), default=0) + 2
    for section, items in (("Problems", data["findings"]), ("Advice", data["advice"])):
        if not items:
            continue
        lines.append(f"{section}:")
        for f in items:
            lines.append(f"{_MARK[f['severity']]} {f['severity']:<8}{f['code']:<{code_width}}{f['title']}")
            lines.append(f"    {f['detail']}")
            evidence = evidence_line(f["evidence"])
            if evidence:
                lines.append(f"    Evidence: {evidence}")
            for step in f["remediation"]:
                lines.append(f"    Fix: {step['action']}")
                lines.append(f"      Portal: {step['portal']}")
                lines.append(f"      CLI:    {step['cli']}")
            if f["fixable_by_remediate"]:
                lines.append(f"    `python -m shared remediate {data['target']}` fixes this ({f['remediate_action']}).")
            lines.append("")
    lines.append("Checks:")
    width = max((len(c["name"]) for c in data["checks"]), default=10) + 2
    for c in data["checks"]:
        extra = ", ".join(c["findings"]) or (c["note"] or "")
        advice_only = c["findings"] and all(code.startswith("advice.") for code in c["findings"])
        mark = "i" if advice_only else _OUTCOME_MARK[c["outcome"]]
        outcome = "advice" if advice_only else c["outcome"]
        lines.append(f"  {mark} {c['name']:<{width}}{outcome:<10}"
                     f"{c['duration_ms']:>7.0f} ms  {extra}".rstrip())
    return lines


async def run(args: argparse.Namespace) -> int:
    if not getattr(args, "verbose", False):
        # azure-identity logs every refused token request as a warning; the report explains it better
        logging.getLogger("azure.identity").setLevel(logging.ERROR)
    async with AppContext.from_environment() as ctx:
        report = await validate_target(ctx, args.target, timeout_seconds=args.timeout)
    if args.json:
        emit_json(report.to_dict())
    else:
        for line in render(report):
            emit(line)
    return report.exit_code
