"""Token acquisition with the stored secret, exactly as CycleCloud would do it, mapped through the AADSTS
catalog into a finding with Entra's evidence (code, trace id, correlation id, timestamp, lookup link)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...aadsts import EntraEvidence, explain
from ...adapters.entra import probe_secret
from ...config import is_guid
from ...findings import Finding, make_finding
from ..runner import CheckSkipped
from .secret import whitespace_kind

if TYPE_CHECKING:
    from ..facts import Facts

INVALID_SECRET = 7000215
UNKNOWN_FINDING = "entra.unknown_error"


def entra_evidence(evidence: EntraEvidence) -> dict[str, object]:
    """The AADSTS evidence plus what the catalog says about the code."""
    out: dict[str, object] = dict(evidence.to_dict())
    known = explain(evidence.code)
    if known is not None:
        out["meaning"] = known.summary
        out["fix"] = known.fix
    return out


def finding_code_for(evidence: EntraEvidence) -> str:
    known = explain(evidence.code)
    return known.finding if known is not None else UNKNOWN_FINDING


async def check_token(facts: Facts) -> list[Finding]:
    if not facts.target.uses_secret:
        raise CheckSkipped("managed identity target: CycleCloud signs in with the VM's identity")
    probe = await facts.token_probe()
    if probe.ok or probe.evidence is None:
        return []
    target = facts.target
    params = facts.params()
    evidence = {**entra_evidence(probe.evidence), "tenant_id": target.tenant_id, "app_id": target.app_id,
                "scope": probe.scope}
    code = finding_code_for(probe.evidence)
    label = f"AADSTS{probe.evidence.code}" if probe.evidence.code else "an error without an AADSTS code"
    detail = f"Entra ID refused a token for app {target.app_id} in tenant {target.tenant_id} with {label}"
    subject: str | None = target.secret_name
    if code == "secret.invalid" and probe.evidence.code == INVALID_SECRET:
        secret = await facts.need(facts.stored_secret, "the secret in Key Vault")
        value = secret.value
        if whitespace_kind(value):
            code = "secret.whitespace"
            # Would the value work without the whitespace? That decides whether trimming is the whole fix.
            trimmed = await probe_secret(facts.ctx.clients, target.tenant_id, target.app_id or "", value.strip())
            evidence["trimmed_value_works"] = trimmed.ok
            detail += "; the stored value has whitespace around it"
            if trimmed.ok:
                detail += ", and the same value without it is accepted"
        elif is_guid(value.strip()):
            code = "secret.looks_like_secret_id"
            detail += "; the stored value is a GUID (a Secret ID), not a secret Value"
    elif code in ("app.not_found_in_tenant", "app.disabled"):
        subject = target.app_id
    elif code == "tenant.not_found":
        subject = target.tenant_id
    elif code == UNKNOWN_FINDING and probe.evidence.description:
        evidence["entra_description"] = probe.evidence.description
    return [make_finding(code, detail + ".", evidence=evidence, params=params, check="token", subject=subject)]
