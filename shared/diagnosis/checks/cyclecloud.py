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
from ...errors import AccessDeniedError, CredentialUnavailableError, NotFoundError, RemediatorError
from ...findings import Finding, make_finding
from ...redaction import register_secret, scrub
from ..runner import CheckSkipped, identity_object_id
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


THE_FUNCTION_IDENTITY = "the Function app's managed identity"


async def _password_problem(facts: Facts) -> Finding | None:
    """Can the product read its CycleCloud password from Key Vault? When it cannot, that is the product's own
    problem: CycleCloud's login was never tried, so it must not be reported as CycleCloud refusing it."""
    from ...adapters.vault import VaultAdapter

    cc = facts.target.cyclecloud
    if cc is None or not cc.password_secret or cc.transport.value != "rest":
        return None
    await facts.sdk("vault")
    vault = facts.params().get("vault_name") or "the vault"
    try:
        secret = await VaultAdapter(facts.ctx.clients).get_secret(cc.password_secret)
        register_secret(secret.value)
        return None
    except (AccessDeniedError, CredentialUnavailableError, NotFoundError) as exc:
        error = exc
    oid = identity_object_id(error)
    assignee = oid or "$(az functionapp identity show --name <function-app> --resource-group <rg> --query " \
                      "principalId -o tsv)"
    if isinstance(error, NotFoundError):
        grant = {"grant_portal": f"Key vaults > {vault} > Objects > Secrets > Generate/Import > Name: "
                                 f"{cc.password_secret} (the CycleCloud user's password)",
                 "grant_cli": f"az keyvault secret set --vault-name {vault} --name {cc.password_secret} --file "
                              "<password-file>"}
        why = f"Key Vault has no secret '{cc.password_secret}'"
    elif isinstance(error, CredentialUnavailableError):
        grant = {"grant_portal": "Function App > Settings > Identity > System assigned > Status: On",
                 "grant_cli": "az functionapp identity assign --name <function-app> --resource-group <rg>"}
        why = "the product's own identity could not get a token for Key Vault"
    else:
        role = str(error.details.get("role") or "Key Vault Secrets User")
        grant = {"grant_portal": f"Key vaults > {vault} > Access control (IAM) > Add role assignment > {role} > "
                                 f"Members: {oid or THE_FUNCTION_IDENTITY}",
                 "grant_cli": f"az role assignment create --role \"{role}\" --assignee-object-id {assignee} "
                              "--assignee-principal-type ServicePrincipal --scope $(az keyvault show --name "
                              f"{vault} --query id -o tsv)"}
        why = f"the product's identity may not read secret '{cc.password_secret}'"
    return make_finding(
        "function.cyclecloud_password_unreadable",
        f"The product could not read the password of CycleCloud user '{cc.user}' from Key Vault ({why}), so it never "
        "tried to log in to CycleCloud: this is the product's own access, not CycleCloud refusing a login.",
        evidence={"password_secret": cc.password_secret, "error_code": error.code, "reason": scrub(error.reason),
                  "identity_object_id": oid, "cyclecloud_contacted": False},
        params={**facts.params(), **grant}, check="cyclecloud", subject=f"password secret {cc.password_secret}",
    )


async def _sync_findings(facts: Facts, account: CycleCloudAccount) -> list[Finding]:
    target = facts.target
    differences: list[str] = []
    mismatched: list[str] = []  # the account's app or tenant: a configuration question, not a secret to push
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
            mismatched.append(f"application id is '{account.app_id or '(empty)'}', the target says "
                              f"'{target.app_id}'")
        if account.tenant_id and account.tenant_id != target.tenant_id.lower():
            mismatched.append(f"tenant id is '{account.tenant_id}', the target says '{target.tenant_id}'")
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
    findings: list[Finding] = []
    if mismatched:
        findings.append(make_finding(
            "cyclecloud.identity_mismatch",
            f"CycleCloud account '{account.name}' signs in as another identity than target '{target.name}': "
            f"{'; '.join(mismatched)}; correct whichever is wrong (pushing a secret cannot).",
            evidence={**evidence, "differences": mismatched}, params=facts.params(), check="cyclecloud",
            subject=target.cyclecloud.url if target.cyclecloud else None,
        ))
    if not differences or mismatched:
        # with the identity itself in question a secret comparison means nothing: one finding, the right one
        return findings
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
        # a login that worked read the password already: ask Key Vault again only to explain a failed one
        logged_in = any(c.name == "login" and c.status is CheckStatus.OK for c in probe.checks)
        password_problem = None if logged_in else await _password_problem(facts)
        if password_problem is not None:
            # the login step failed because the product had no password to send: say that, and only that
            findings = [f for f in findings if f.code != "cyclecloud.login_failed"] + [password_problem]
        account_ok = any(c.name == "account" and c.status is CheckStatus.OK for c in probe.checks)
        if not account_ok:
            return findings
        try:
            # the probe's account check read the account moments ago: the same answer, without a second request
            account = client.probed_account() or await client.read_account()
        except RemediatorError as exc:
            finding = _error_finding(facts, exc)
            if finding is None:
                raise
            return [*findings, finding]
        return [*findings, *await _sync_findings(facts, account)]
    finally:
        await client.close()
