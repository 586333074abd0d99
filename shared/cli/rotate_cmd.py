"""`python -m shared rotate <target> [--force] [--dry-run] [--status] [--json]`: rotate a target's client secret
with the crash-safe protocol (the same code as the Function), or show its rotation journal.

Exit codes: 0 rotated / not due / planned, 3 still in progress (run again to resume), 1 failed (the journal
keeps the stage), 2 usage or configuration error, 4 another rotation of the target is running."""

from __future__ import annotations

import argparse

from ..context import AppContext
from ..errors import LockedError
from .output import FAIL, OK, WARN, emit, emit_json, progress

EXIT = {"rotated": 0, "not_due": 0, "planned": 0, "in_progress": 3, "failed": 1}
EXIT_LOCKED = 4
CLI_DEADLINE_SECONDS = 3600.0  # no HTTP limit here: wait through propagation (test_timeout_seconds still applies)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="target name (see `config check`)")
    parser.add_argument("--force", action="store_true", help="rotate even if the secret is not due")
    parser.add_argument("--dry-run", action="store_true", help="show what would happen; change nothing")
    parser.add_argument("--status", action="store_true", help="show the rotation journal and history; change nothing")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--deadline", type=float, default=CLI_DEADLINE_SECONDS, metavar="SECONDS",
                        help="stop (resumably) after this long (default: %(default)s)")


async def run(args: argparse.Namespace) -> int:
    from ..rotation import rotate_target, rotation_status

    async with AppContext.from_environment() as ctx:
        if args.status:
            state = await rotation_status(ctx, args.target)
            if args.json:
                emit_json(state.to_dict())
            else:
                _print_status(state.to_dict())
            return 0
        if not args.json:
            progress(f"rotating {args.target}{' (dry run)' if args.dry_run else ''}{' (forced)' if args.force else ''}")
        try:
            outcome = await rotate_target(ctx, args.target, force=args.force, dry_run=args.dry_run,
                                          deadline_seconds=args.deadline,
                                          on_progress=None if args.json else (lambda text: progress(f"  {text}")))
        except LockedError as exc:
            if args.json:
                emit_json({"error": exc.to_dict()})
            else:
                emit(f"{WARN} {exc.message}")
                emit(f"  {exc.fix}")
            return EXIT_LOCKED
    body = outcome.to_dict()
    if args.json:
        emit_json(body)
    else:
        _print_outcome(body)
    return EXIT.get(body["status"], 1)


def _print_outcome(body: dict[str, object]) -> None:
    status = str(body["status"])
    mark = {"rotated": OK, "not_due": OK, "planned": OK, "in_progress": WARN}.get(status, FAIL)
    emit(f"{mark} {body['target']}: {status.replace('_', ' ')}")
    emit(f"  {body['message']}")
    for key, label in (("operationId", "operation"), ("stage", "stage"), ("newKeyId", "new credential"),
                       ("previousKeyId", "replaced credential"), ("expiresOn", "new secret expires"),
                       ("retireAfter", "replaced credential removed after")):
        if body.get(key):
            emit(f"  {label}: {body[key]}")
    for step in body.get("steps", []) or []:  # type: ignore[attr-defined]
        emit(f"  - {step}")
    for item in body.get("maintenance", []) or []:  # type: ignore[attr-defined]
        emit(f"  * {item}")
    for warning in body.get("warnings", []) or []:  # type: ignore[attr-defined]
        emit(f"  {WARN} {warning}")
    error = body.get("error")
    if isinstance(error, dict):
        emit(f"  {FAIL} {error.get('code')}: {error.get('message')}")
    for finding in body.get("findings", []) or []:  # type: ignore[attr-defined]
        emit(f"  {WARN} {finding['code']}: fix: {finding['fix']}")
    if body.get("pushConfirmed") is False:
        emit(f"  {WARN} the push to CycleCloud is unconfirmed: its read-back shows no hint of the secret")
    if status == "in_progress":
        emit(f"  run `python -m shared rotate {body['target']}` again to resume")


def _print_status(state: dict[str, object]) -> None:
    current = state.get("current")
    emit(f"{state['target']}: {'rotation in progress' if current else 'no rotation in progress'}"
         f"{' (locked)' if state.get('locked') else ''}")
    if isinstance(current, dict):
        emit(f"  operation {current.get('id')} at stage '{current.get('stage')}' since {current.get('started_at')}")
        if current.get("last_error"):
            emit(f"  last error: {current['last_error']}")
    for r in state.get("pendingRetirements", []) or []:  # type: ignore[attr-defined]
        emit(f"  retire {r['key_id']} after {r['after']}"
             + (f" (kept last time: {r['kept_because']})" if r.get("kept_because") else ""))
    history = state.get("history", []) or []
    for h in history[:10]:  # type: ignore[index]
        emit(f"  {h.get('finished_at')}: {h.get('result')} operation {h.get('id')} -> {h.get('new_key_id')}")
