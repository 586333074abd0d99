"""`python -m shared migrate <target> [--apply | --rollback] [--remove-secrets] [--json]`: move a target from a
client secret to the CycleCloud VM's managed identity (docs/migration.md). Without --apply it only plans
(changes nothing); --apply runs or resumes the migration; --rollback restores the secret-based account (until
the secrets are removed); --apply --remove-secrets removes the app's product-created secrets once offered.

Exit code: 0 done (or a plan that can run), 1 a plan the preflight blocks, 2 an error (see `shared.cli`).
"""

from __future__ import annotations

import argparse

from ..context import AppContext
from ..migration import MigrationOutcome, migrate_target, rollback_target
from .output import FAIL, OK, SKIP, WARN, emit, emit_json

_MARK = {"done": OK, "would": "→", "pending": SKIP, "failed": FAIL, "skipped": SKIP}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="the target's name (see `python -m shared config check`)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--apply", action="store_true", help="run or resume the migration (default: plan only)")
    action.add_argument("--rollback", action="store_true",
                        help="restore the secret-based CycleCloud account from Key Vault (until step 6)")
    parser.add_argument("--remove-secrets", action="store_true",
                        help="with --apply: remove the app's product-created secrets once the offer is ready")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def render(outcome: MigrationOutcome) -> None:
    emit(f"Migration of '{outcome.target}' to the VM's managed identity — "
         f"{'dry run (nothing is changed)' if outcome.dry_run else outcome.action}")
    if outcome.migration_id:
        emit(f"Journal: {outcome.migration_id} at stage '{outcome.stage}'")
    emit()
    for step in outcome.steps:
        emit(f"  {_MARK.get(step.status, WARN)} {step.name:<9} {step.status:<8} {step.detail}")
        if step.fix:
            emit(f"      fix: {step.fix}")
    emit()
    emit(outcome.message)
    change = outcome.config_change
    if change and outcome.status in ("migrated", "planned", "rolled_back"):
        emit(f"App settings: in {change['setting']}, target '{change['target']}': set {change['set']}"
             + (f", remove {change['remove']}" if change.get("remove") else "") + f" ({change['why']}).")
    offer = outcome.offer
    if offer and "ready" in offer:
        if offer["ready"]:
            emit(f"Offer: remove {len(offer['would_remove'])} product-created secret(s): {offer['how']}")
        else:
            emit("Secret removal not offered yet: " + "; ".join(offer["waiting_for"]))
        for kept in offer["keeps"]:
            emit(f"  kept: {kept['key_id']} ({kept['display_name']}): {kept['kept_because']}")
    elif offer:
        for removed in offer["removed"]:
            emit(f"  {OK} removed {removed['key_id']} ({removed['display_name']})")
        emit("The app registration still has:")
        for note in offer["app_still_has"]:
            emit(f"  - {note}")


async def run(args: argparse.Namespace) -> int:
    if args.remove_secrets and not args.apply:
        emit("--remove-secrets needs --apply")
        return 2
    async with AppContext.from_environment() as ctx:
        if args.rollback:
            outcome = await rollback_target(ctx, args.target)
        else:
            outcome = await migrate_target(ctx, args.target, dry_run=not args.apply,
                                           remove_old_secrets=args.remove_secrets)
    if args.json:
        emit_json(outcome.to_dict())
    else:
        render(outcome)
    return 0 if outcome.ok else 1
