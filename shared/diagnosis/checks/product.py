"""The product's own identity: can it sign in at all, explained with the rows of azure-identity's
troubleshooting guide (managed identity not assigned or its endpoint unreachable; for the CLI, `az` missing or
not logged in)."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from ...adapters.entra import probe_own_identity
from ...clients import credential_kind
from ...errors import AccessDeniedError, CredentialUnavailableError
from ...findings import Finding, make_finding
from ..runner import CheckSkipped

if TYPE_CHECKING:
    from ..facts import Facts


def explain_identity_failure(kind: str, reason: str) -> tuple[str, str]:
    """(the troubleshooting row that applies, what to do) for the product's identity failure."""
    text = reason.lower()
    if kind == "managed_identity":
        if "no managed identity" in text or "identity is not assigned" in text or "unable to load the proper" in text \
                or "hasn't been assigned" in text:
            return ("The requested identity hasn't been assigned to this resource.",
                    "Turn on the Function app's system-assigned identity (Identity > System assigned > On), or "
                    "assign the user-assigned identity and set AZURE_CLIENT_ID to its client id.")
        return ("Connection timed out / the managed identity endpoint is unreachable.",
                "Check that the Function app's identity is on and that IDENTITY_ENDPOINT and IDENTITY_HEADER are "
                "set by the platform (do not set them yourself); restart the app.")
    if shutil.which("az") is None:
        return ("az not found on PATH",
                "Install the Azure CLI (https://learn.microsoft.com/cli/azure/install-azure-cli) and make sure "
                "`az` is on PATH, then run `az login`.")
    if "az login" in text or "not logged in" in text or "please run" in text:
        return ("ERROR: Please run 'az login' to setup account",
                "Run `az login`, then check with `az account get-access-token --scope "
                "https://management.azure.com/.default`.")
    return ("No credential in the developer chain could sign in.",
            "Run `az login` (or set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET).")


async def check_own_identity(facts: Facts) -> list[Finding]:
    kind = credential_kind()
    try:
        await probe_own_identity(facts.ctx.clients)
    except CredentialUnavailableError as exc:
        row, fix = explain_identity_failure(kind, f"{exc.reason} {exc.message}")
        who = "its managed identity" if kind == "managed_identity" else "developer credentials such as `az login`"
        return [make_finding(
            "function.identity_unavailable",
            f"The product could not get a token as itself ({who}): {row}",
            evidence={"credential": kind, "reason": exc.reason, "troubleshooting_row": row, "fix": fix,
                      "az_on_path": shutil.which("az") is not None if kind != "managed_identity" else None},
            params=facts.params(), check="own_identity", subject="product identity",
        )]
    return []


# -- the product's rights -------------------------------------------------------------------------------------

_RBAC_ADMIN = "Role Based Access Control Administrator"


def _grant(role: str, scope: str, why: str) -> dict[str, object]:
    return {
        "grant_portal": f"{scope} > Access control (IAM) > Add role assignment > {role} > Members: the Function "
                        "app's managed identity",
        "grant_cli": "az role assignment create --assignee-object-id $(az functionapp identity show --name "
                     "<function-app> --resource-group <rg> --query principalId -o tsv) "
                     f"--assignee-principal-type ServicePrincipal --role \"{role}\" --scope {scope}",
        "role_to_grant": role,
        "why": why,
    }


async def check_product_rights(facts: Facts) -> list[Finding]:
    """What the product's own identity may do: Graph (read the app through its ownership), Key Vault (read the
    secret), ARM (read assignments, policy and the Activity Log; create role assignments; Run Command)."""
    from .subscriptions import per_subscription

    findings = [*await _graph_rights(facts), *await _vault_rights(facts)]
    try:
        findings += await per_subscription(facts.target.subscription_ids,
                                           lambda sub: _subscription_rights(facts, sub))
    except CheckSkipped:  # every subscription is in another tenant: the tenant check says so
        pass
    findings += await _runcommand_rights(facts)
    return findings


def _denied(facts: Facts, exc: AccessDeniedError, what: str, subject: str, role: str) -> Finding:
    from ..runner import grant_lines

    grant = grant_lines(exc)
    return make_finding(
        "function.permission_missing", f"The product's identity may not {what}: {exc.message}",
        evidence={"permission": subject, "role_to_grant": role, "reason": exc.reason, "fix": exc.fix},
        params={**facts.params(), **grant}, check="product_rights", subject=subject,
    )


async def _graph_rights(facts: Facts) -> list[Finding]:
    target = facts.target
    if not (target.app_id and target.uses_secret):
        return []
    try:
        await facts.application()
    except AccessDeniedError as exc:
        from .tenant_access import is_cross_tenant

        if not is_cross_tenant(exc):  # a tenant the product cannot reach is the tenant check's to report
            permission = str(exc.details.get("permission") or "Application.ReadWrite.OwnedBy")
            return [_denied(facts, exc, f"read app registration {target.app_id} in Microsoft Graph",
                            permission, f"Microsoft Graph {permission} + owner of the app registration")]
    except Exception:  # noqa: S110 - other Graph failures are the credential check's to report
        pass
    return []


async def _vault_rights(facts: Facts) -> list[Finding]:
    target = facts.target
    if not target.secret_name:
        return []
    try:
        await facts.stored_secret()
    except AccessDeniedError as exc:
        role = str(exc.details.get("role") or "Key Vault Secrets Officer")
        return [_denied(facts, exc, f"read secret '{target.secret_name}' in Key Vault", role, role)]
    except Exception:  # noqa: S110 - a missing secret is the secret check's to report
        pass
    return []


async def _subscription_rights(facts: Facts, sub: str) -> list[Finding]:
    from ..required_actions import PRODUCT_ACTION_ASSIGN, PRODUCT_ACTIONS_READ

    params = facts.params()
    scope = f"/subscriptions/{sub}"
    permissions = await (await facts.arm()).permissions(sub)
    out: list[Finding] = []
    missing_reads = permissions.missing(PRODUCT_ACTIONS_READ)
    if missing_reads:
        grant = _grant("Reader", scope, "to read role assignments, policy assignments and the Activity Log")
        out.append(make_finding(
            "function.permission_missing",
            f"The product's identity may not read {', '.join(missing_reads)} on subscription {sub}, so parts of "
            "the diagnosis cannot run.",
            evidence={"scope": scope, "missing_actions": missing_reads, **grant},
            params={**params, **grant, "subscription_id": sub}, check="product_rights",
            subject=f"Reader on {scope}",
        ))
    if not permissions.allows(PRODUCT_ACTION_ASSIGN):
        grant = _grant(_RBAC_ADMIN, scope, "to create the missing role assignments of the CycleCloud identity "
                       "(Contributor is not enough: it excludes Microsoft.Authorization/*/Write)")
        out.append(make_finding(
            "function.permission_missing",
            f"The product's identity may not create role assignments on subscription {sub} "
            f"({PRODUCT_ACTION_ASSIGN}), so `remediate` cannot repair missing roles there.",
            evidence={"scope": scope, "missing_actions": [PRODUCT_ACTION_ASSIGN], **grant},
            params={**params, **grant, "subscription_id": sub}, check="product_rights",
            subject=f"{_RBAC_ADMIN} on {scope}",
        ))
    return out


async def _runcommand_rights(facts: Facts) -> list[Finding]:
    from ...adapters.compute import parse_vm_id
    from ...config import Transport
    from ..required_actions import PRODUCT_ACTIONS_RUNCOMMAND

    target = facts.target
    cc = target.cyclecloud
    if not (target.vm_resource_id and cc is not None and cc.transport is Transport.RUNCOMMAND):
        return []
    sub, _, _ = parse_vm_id(target.vm_resource_id)
    # on the VM itself: the fix grants Virtual Machine Contributor there, which its resource group never shows
    permissions = await (await facts.arm()).permissions(sub, resource_id=target.vm_resource_id)
    missing = permissions.missing(PRODUCT_ACTIONS_RUNCOMMAND)
    if not missing:
        return []
    grant = _grant("Virtual Machine Contributor", target.vm_resource_id,
                   "to push the secret to CycleCloud with Run Command")
    return [make_finding(
        "function.permission_missing",
        f"The product's identity may not run commands on the CycleCloud VM ({', '.join(missing)}), so it "
        "cannot update CycleCloud over the runcommand transport.",
        evidence={"scope": target.vm_resource_id, "missing_actions": missing, **grant},
        params={**facts.params(), **grant}, check="product_rights",
        subject=f"Virtual Machine Contributor on {target.vm_resource_id}",
    )]
