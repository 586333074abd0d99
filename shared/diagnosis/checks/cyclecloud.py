"""CycleCloud: reachable, the product's login works, the account exists, and it holds the same credential as
Key Vault. The secrets are compared by their 3-character hints only: CycleCloud's adapter never returns the
secret it holds, and the stored value never leaves this process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...adapters.cyclecloud import (
    CheckStatus,
    CycleCloudAccountMissingError,
    CycleCloudLockedOutError,
    CycleCloudLoginError,
    CycleCloudNotConfiguredError,
    CycleCloudTlsError,
    CycleCloudUnreachableError,
    open_cyclecloud,
)
from ...errors import RemediatorError
from ...findings import Finding, make_finding
from ..runner import CheckSkipped
from .secret import HINT_LENGTH

if TYPE_CHECKING:
    from ...adapters.cyclecloud import CycleCloudAccount, CycleCloudClient, ProbeResult
    from ..facts import Facts

# probe checklist item -> finding code
_PROBE_FINDINGS = (
    ("reachable", "cyclecloud.unreachable"),
    ("tls", "cyclecloud.unreachable"),
    ("login", "cyclecloud.login_failed"),
    ("account", "cyclecloud.account_missing"),
)


def _probe_findings(facts: Facts, probe: ProbeResult) -> list[Finding]:
    params = facts.params()
    checklist = [c.to_dict() for c in probe.checks]
    findings = []
    for item in probe.checks:
        if item.status is not CheckStatus.FAILED:
            continue
        code = dict(_PROBE_FINDINGS).get(item.name, "cyclecloud.update_unsupported")
        findings.append(make_finding(
            code, f"CycleCloud probe step '{item.name}' failed: {item.detail}".rstrip(),
            evidence={"url": probe.url, "transport": probe.transport, "failed_step": item.name,
                      "reason": item.detail, "fix": item.fix, "probe": checklist},
            params=params, check="cyclecloud", subject=probe.url,
        ))
    return findings


def _error_finding(facts: Facts, exc: RemediatorError) -> Finding | None:
    code = None
    if isinstance(exc, CycleCloudUnreachableError | CycleCloudTlsError):
        code = "cyclecloud.unreachable"
    elif isinstance(exc, CycleCloudLoginError | CycleCloudLockedOutError):
        code = "cyclecloud.login_failed"
    elif isinstance(exc, CycleCloudAccountMissingError):
        code = "cyclecloud.account_missing"
    if code is None:
        return None
    cc = facts.target.cyclecloud
    return make_finding(code, exc.message, evidence={"url": cc.url if cc else None, "error_code": exc.code,
                                                     "reason": exc.reason, "fix": exc.fix},
                        params=facts.params(), check="cyclecloud", subject=cc.url if cc else None)


async def _sync_findings(facts: Facts, account: CycleCloudAccount) -> list[Finding]:
    target = facts.target
    differences: list[str] = []
    evidence: dict[str, object] = {"account": account.name, "cyclecloud_app_id": account.app_id,
                                   "cyclecloud_tenant_id": account.tenant_id,
                                   "cyclecloud_subscription_ids": list(account.subscription_ids),
                                   "cyclecloud_uses_managed_identity": account.use_managed_identity}
    if facts.is_managed_identity:
        if not account.use_managed_identity:
            differences.append("CycleCloud's account signs in with a client secret, but the target is configured "
                               "for the VM's managed identity")
    else:
        if account.use_managed_identity:
            differences.append("CycleCloud's account uses the VM's managed identity, not the service principal")
        if target.app_id and account.app_id != target.app_id.lower():
            differences.append(f"application id is '{account.app_id or '(empty)'}', expected '{target.app_id}'")
        if account.tenant_id and account.tenant_id != target.tenant_id.lower():
            differences.append(f"tenant id is '{account.tenant_id}', expected '{target.tenant_id}'")
        try:
            stored = await facts.stored_secret()
        except Exception:  # the secret check reports it; the hints just cannot be compared
            stored = None
        if stored is not None and stored.value.strip():
            vault_hint = stored.value.strip()[:HINT_LENGTH]
            evidence.update(cyclecloud_secret_hint=account.secret_hint, vault_secret_hint=vault_hint)
            if account.secret_hint is not None and account.secret_hint != vault_hint:
                differences.append(f"CycleCloud's secret starts '{account.secret_hint}', Key Vault's starts "
                                   f"'{vault_hint}': they are different secrets")
    outside = [s for s in account.subscription_ids if s not in target.subscription_ids]
    if outside:
        evidence["subscriptions_not_in_target"] = outside
    if not differences:
        return []
    evidence["differences"] = differences
    return [make_finding(
        "cyclecloud.out_of_sync",
        f"CycleCloud account '{account.name}' does not hold the credential Key Vault has: {'; '.join(differences)}.",
        evidence=evidence, params=facts.params(), check="cyclecloud",
        subject=target.cyclecloud.url if target.cyclecloud else None,
    )]


async def check_cyclecloud(facts: Facts) -> list[Finding]:
    if facts.target.cyclecloud is None:
        raise CheckSkipped("the target has no CycleCloud connection")
    try:
        client: CycleCloudClient = await open_cyclecloud(facts.ctx, facts.target)
    except CycleCloudNotConfiguredError as exc:
        raise CheckSkipped(exc.message) from None
    try:
        probe = await client.probe()
        findings = _probe_findings(facts, probe)
        account_ok = any(c.name == "account" and c.status is CheckStatus.OK for c in probe.checks)
        if not account_ok:
            return findings
        try:
            account = await client.read_account()
        except RemediatorError as exc:
            finding = _error_finding(facts, exc)
            if finding is None:
                raise
            return [*findings, finding]
        return [*findings, *await _sync_findings(facts, account)]
    finally:
        await client.close()
