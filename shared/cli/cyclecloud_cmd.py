"""`python -m shared cyclecloud probe <target> [--json]`: check the CycleCloud connection without changing
anything, and print a checklist with the fix for each failure. Exit 0 when every check passed, 1 otherwise."""

from __future__ import annotations

import argparse

from ..adapters.cyclecloud import CheckStatus
from ..context import AppContext
from ..cyclecloud_probe import probe_target
from .output import FAIL, OK, SKIP, emit, emit_json

_LABELS = {"reachable": "server reachable", "tls": "TLS certificate trusted", "login": "login works",
           "account": "account exists", "update_path": "update path answers"}
_MARKS = {CheckStatus.OK: OK, CheckStatus.FAILED: FAIL, CheckStatus.SKIPPED: SKIP}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    probe = sub.add_parser("probe", help="reachable, TLS, login, account, update path (changes nothing)")
    probe.add_argument("target", help="the target's name")
    probe.add_argument("--json", action="store_true", help="print the result as JSON")


async def run(args: argparse.Namespace) -> int:
    async with AppContext.from_environment() as ctx:
        result = await probe_target(ctx, args.target)
    if args.json:
        emit_json(result.to_dict())
        return 0 if result.ok else 1
    emit(f"CycleCloud probe for target '{result.target}' ({result.transport}, {result.url})")
    for check in result.checks:
        emit(f"  {_MARKS[check.status]} {_LABELS.get(check.name, check.name):<24} {check.detail}")
        if check.status is CheckStatus.FAILED and check.fix:
            emit(f"      fix: {check.fix}")
    emit("All checks passed." if result.ok else "Some checks failed: see the fixes above.")
    return 0 if result.ok else 1
