"""`python -m shared token <target>`: try the target's stored client secret against Entra ID and explain the
answer in plain English (the seed's "translate the wall-of-text error"), with the evidence a support case
needs. Exit 0 when Entra issues a token, 1 when it does not (or the secret cannot be read).

The secret is read from Key Vault and sent only to Entra ID; it is never printed.
"""

from __future__ import annotations

import argparse
import logging

from ..aadsts import EntraEvidence, explain
from ..adapters.entra import probe_secret
from ..adapters.vault import VaultAdapter
from ..config import is_guid
from ..context import AppContext
from ..errors import RemediatorError
from ..redaction import register_secret
from .output import FAIL, OK, WARN, emit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="a configured target name")


def explain_refusal(evidence: EntraEvidence) -> list[str]:
    """The refusal in plain English: what it means, what to do, and the ids Microsoft support asks for."""
    known = explain(evidence.code)
    code = f"AADSTS{evidence.code}" if evidence.code else "an error without an AADSTS code"
    lines = [f"{FAIL} Entra ID refused the secret: {code}" + (f" - {known.title}" if known else "")]
    if known:
        lines.append(f"  What it means: {known.summary}")
        lines.append(f"  How to fix it: {known.fix}")
    else:
        lines.append(f"  Entra ID says: {evidence.description or '(no description)'}")
        lines.append("  This code is not in the product's catalog; look it up (link below) and open the sign-in "
                     "log entry with the correlation id.")
    lines.append("  Evidence for a support case:")
    lines.append(f"    Trace ID:       {evidence.trace_id or '-'}")
    lines.append(f"    Correlation ID: {evidence.correlation_id or '-'}")
    lines.append(f"    Timestamp:      {evidence.timestamp or '-'}")
    if evidence.link:
        lines.append(f"    Lookup:         {evidence.link}")
    return lines


async def run(args: argparse.Namespace) -> int:
    if not getattr(args, "verbose", False):
        logging.getLogger("azure.identity").setLevel(logging.ERROR)  # this command explains the refusal itself
    async with AppContext.from_environment() as ctx:
        target = ctx.settings.target(args.target)
        if not target.uses_secret or not target.secret_name or not target.app_id:
            emit(f"{WARN} Target '{target.name}' uses the CycleCloud VM's managed identity: it has no client secret "
                 "to try. Run `python -m shared validate " + target.name + "` instead.")
            return 1
        try:
            stored = await VaultAdapter(ctx.clients).get_secret(target.secret_name)
        except RemediatorError as exc:
            emit(f"{FAIL} The secret '{target.secret_name}' could not be read from Key Vault: {exc.message}")
            if exc.reason:
                emit(f"  Why: {exc.reason}")
            if exc.fix:
                emit(f"  Fix: {exc.fix}")
            return 1
        register_secret(stored.value)
        emit(f"Trying the secret stored in Key Vault '{target.secret_name}' (version {stored.properties.version}, "
             f"starts '{stored.value.strip()[:3]}') for app {target.app_id} in tenant {target.tenant_id} ...")
        probe = await probe_secret(ctx.clients, target.tenant_id, target.app_id, stored.value)
        if probe.ok:
            emit(f"{OK} Entra ID issued a token for {probe.scope}: the secret works.")
            return 0
        assert probe.evidence is not None
        for line in explain_refusal(probe.evidence):
            emit(line)
        value = stored.value
        if value != value.strip():
            emit(f"  {WARN} The stored value has spaces or line breaks around it; Entra ID counts them as part of "
                 "the secret. Store it again without them.")
        elif is_guid(value.strip()):
            emit(f"  {WARN} The stored value is a GUID: that is the secret's ID (Secret ID column), not its Value.")
        return 1
