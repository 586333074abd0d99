"""`python -m shared targets [--json]`: every target at a glance (the same data as GET /api/targets): status and
last health check, days to expiry, last rotation and its outcome, the rotation in progress and its stage,
unconfirmed pushes. Reads only the state container (and Key Vault before a target's first health check).

Exit code: 0 when every checked target is healthy and nothing needs a person; 1 when a target is failing or
degraded, has a rotation stopped by an error, or an unconfirmed push.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..context import AppContext
from ..diagnosis import list_targets
from .output import FAIL, OK, SKIP, WARN, emit, emit_json

_MARK = {"healthy": OK, "degraded": WARN, "failing": FAIL, None: SKIP}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the list as JSON (the HTTP response body)")


def _days(value: Any) -> str:
    return "-" if value is None else f"{value:g}"


def _rotation(last: dict[str, Any] | None) -> str:
    if not last:
        return "never"
    when = (last.get("finished_at") or "")[:16].replace("T", " ")
    return f"{last.get('result') or '?'} {when}".strip()


def _open(op: dict[str, Any] | None) -> str:
    if not op:
        return "-"
    text = f"{op.get('id', '')[:8]} at {op.get('stage')}"
    error = op.get("last_error")
    if isinstance(error, dict) and error.get("code"):
        text += f" (stopped: {error['code']})"
    return text


def needs_attention(row: dict[str, Any]) -> bool:
    op = row.get("open_operation") or {}
    return (row.get("status") in ("failing", "degraded") or bool(row.get("unconfirmed_pushes"))
            or bool(op.get("last_error")))


def render(rows: list[dict[str, Any]]) -> None:
    headers = ("TARGET", "STATUS", "CHECKED", "EXPIRES IN (DAYS)", "LAST ROTATION", "IN PROGRESS")
    table = [(r["name"], r.get("status") or "unchecked", (r.get("checked_at") or "-")[:16].replace("T", " "),
              _days(r.get("days_to_expiry")), _rotation(r.get("last_rotation")), _open(r.get("open_operation")))
             for r in rows]
    widths = [max([len(h)] + [len(str(row[i])) for row in table]) for i, h in enumerate(headers)]
    emit("  " + "  ".join(f"{h:<{w}}" for h, w in zip(headers, widths, strict=True)).rstrip())
    for row, data in zip(table, rows, strict=True):
        mark = _MARK.get(data.get("status"), SKIP)
        emit(f"{mark} " + "  ".join(f"{v!s:<{w}}" for v, w in zip(row, widths, strict=True)).rstrip())
        if data.get("findings"):
            emit(f"    findings: {', '.join(data['findings'])}")
        if data.get("unconfirmed_pushes"):
            emit(f"    {WARN} unconfirmed push (operation {', '.join(data['unconfirmed_pushes'])}): CycleCloud's "
                 "read-back could not confirm the new secret")
    if not rows:
        emit("no targets configured")


async def run(args: argparse.Namespace) -> int:
    async with AppContext.from_environment() as ctx:
        result = await list_targets(ctx)
    if args.json:
        emit_json(result.to_dict())
    else:
        render(result.targets)
    return 1 if any(needs_attention(r) for r in result.targets) else 0
