"""Entra ID (AADSTS) error codes in plain English, and the evidence a support case needs.

`parse_entra_error(text)` pulls the AADSTS code, trace id, correlation id and timestamp out of any error text
Entra or azure-identity produces; `explain(code)` says what it means and how to fix it. Unknown codes pass
through with Entra's own description and the error-lookup link.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ERROR_LOOKUP = "https://login.microsoftonline.com/error?code={code}"

_CODE = re.compile(r"AADSTS(\d{5,7})")
_TRACE = re.compile(r"Trace ID:\s*([0-9a-fA-F-]{36})")
_CORRELATION = re.compile(r"Correlation ID:\s*([0-9a-fA-F-]{36})")
_TIMESTAMP = re.compile(r"Timestamp:\s*(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\dZ?)")
_DESCRIPTION = re.compile(r"AADSTS\d+:\s*(.*?)(?:\r?\n|\s+Trace ID:|$)", re.S)


@dataclass(frozen=True)
class AadstsCode:
    code: int
    title: str
    summary: str  # one sentence a newcomer understands
    fix: str  # portal path and the equivalent CLI
    finding: str  # the diagnosis finding code it leads to


@dataclass(frozen=True)
class EntraEvidence:
    code: int | None
    description: str
    trace_id: str | None
    correlation_id: str | None
    timestamp: str | None

    @property
    def link(self) -> str | None:
        return ERROR_LOOKUP.format(code=self.code) if self.code else None

    def to_dict(self) -> dict[str, str | int | None]:
        return {
            "aadsts": f"AADSTS{self.code}" if self.code else None,
            "description": self.description,
            "trace_id": self.trace_id,
            "correlation_id": self.correlation_id,
            "timestamp": self.timestamp,
            "link": self.link,
        }


_REPLACEMENT_STEPS = ("Portal: Microsoft Entra ID > App registrations > (the app) > Certificates & secrets > "
                      "New client secret; CLI: az ad app credential reset --id <app-id> --append. "
                      "Or let the product rotate it: POST /api/targets/<target>/rotate")

CATALOG: dict[int, AadstsCode] = {c.code: c for c in [
    AadstsCode(7000222, "Client secret expired",
               "The client secret CycleCloud uses has passed its expiry date, so Entra ID refuses every sign-in.",
               _REPLACEMENT_STEPS, "secret.expired"),
    AadstsCode(7000215, "Invalid client secret",
               "Entra ID does not recognise the client secret: it is wrong, has extra spaces, is the secret's ID "
               "instead of its value, belongs to another app, or was created seconds ago and has not spread yet.",
               "Check the value has no spaces and is the secret Value (not the Secret ID); " + _REPLACEMENT_STEPS,
               "secret.invalid"),
    AadstsCode(7000216, "Client secret missing",
               "The sign-in request carried no client secret at all.",
               "Store the secret in Key Vault under the target's secret_name; " + _REPLACEMENT_STEPS,
               "secret.invalid"),
    AadstsCode(700016, "Application not found in the directory",
               "No app with this Application (client) ID exists in this tenant: the app id or the tenant id is "
               "wrong, or the app was deleted.",
               "Portal: Microsoft Entra ID > App registrations > All applications, search the client id and "
               "compare the Directory (tenant) ID; CLI: az ad app show --id <app-id>",
               "app.not_found_in_tenant"),
    AadstsCode(90002, "Tenant not found",
               "The tenant id does not exist, or belongs to another Azure cloud (Government, China).",
               "Portal: Microsoft Entra ID > Overview > Tenant ID; CLI: az account show --query tenantId",
               "tenant.not_found"),
    AadstsCode(900023, "Tenant identifier invalid",
               "The tenant identifier is neither a GUID nor a valid domain name.",
               "Use the Directory (tenant) ID from the app registration's Overview page", "tenant.not_found"),
    AadstsCode(700027, "Client assertion signature invalid",
               "The certificate used to sign in is not one registered on the app, or has been removed.",
               "Portal: App registrations > (the app) > Certificates & secrets > Certificates; compare thumbprints",
               "entra.sign_in_refused"),
    AadstsCode(700024, "Client assertion outside its valid time range",
               "The signed sign-in request is expired or not yet valid: the caller's clock is probably wrong.",
               "Synchronise the clock of the machine that signs in (NTP)", "entra.sign_in_refused"),
    AadstsCode(7000112, "Application disabled",
               "The app's service principal is disabled in this tenant, so nobody can sign in as it.",
               "Portal: Microsoft Entra ID > Enterprise applications > (the app) > Properties > Enabled for users "
               "to sign-in = Yes; CLI: az ad sp update --id <app-id> --set accountEnabled=true",
               "app.disabled"),
    AadstsCode(7000229, "Service principal missing",
               "The app exists but has no service principal (enterprise application) in this tenant.",
               "CLI: az ad sp create --id <app-id>", "app.not_found_in_tenant"),
    AadstsCode(500011, "Resource not found in tenant",
               "The service the token is for (e.g. Azure Resource Manager in another cloud) is not known to this "
               "tenant: usually the wrong Azure cloud is configured.",
               "Set AZURE_CLOUD to the cloud the tenant lives in", "entra.sign_in_refused"),
    AadstsCode(53003, "Blocked by Conditional Access",
               "A Conditional Access policy blocked this sign-in (for example a location or workload identity "
               "policy).",
               "Portal: Microsoft Entra ID > Sign-in logs > Service principal sign-ins, open the failure and read "
               "the Conditional Access tab; exclude the service principal or allow its location",
               "entra.sign_in_refused"),
    AadstsCode(50034, "Account does not exist",
               "The user or principal is not in this directory.",
               "Check the tenant id and the account name", "app.not_found_in_tenant"),
    AadstsCode(50053, "Account locked",
               "Too many failed sign-ins locked the account for a while.",
               "Wait, then fix whatever is sending the wrong credential", "entra.sign_in_refused"),
    AadstsCode(70011, "Invalid scope",
               "The token request asked for a scope Entra ID does not accept.",
               "Request '<resource>/.default' for client credentials", "entra.sign_in_refused"),
    # the product's own sign-in to another tenant (docs/tenants.md): its managed identity's token as a client
    # assertion for its multi-tenant app
    *(AadstsCode(code, title,
                 "The product's multi-tenant app has no federated identity credential that trusts this managed "
                 "identity's token (issuer, subject and audience must match exactly), so Entra ID refuses the "
                 "assertion.",
                 "Portal: Microsoft Entra ID > App registrations > (the product's multi-tenant app) > Certificates "
                 "& secrets > Federated credentials; CLI: az ad app federated-credential list --id <app-id> "
                 "(docs/tenants.md)", "tenant.federation_mismatch")
      for code, title in ((70021, "No matching federated identity record"),
                          (700211, "No matching federated identity record for the assertion's issuer"),
                          (700212, "No matching federated identity record for the assertion's audience"),
                          (700213, "No matching federated identity record for the assertion's subject"))),
    AadstsCode(50027, "Invalid assertion",
               "The client assertion the product presented is not a valid token (malformed, expired or not signed "
               "by a trusted issuer).",
               "Check the Function's managed identity and HOME_TENANT_ID (docs/tenants.md)",
               "tenant.federation_mismatch"),
]}


def parse_entra_error(text: str) -> EntraEvidence:
    """Evidence from an Entra error text (azure-identity's exception message, or the raw body)."""
    code_match = _CODE.search(text)
    description = ""
    desc_match = _DESCRIPTION.search(text)
    if desc_match:
        description = desc_match.group(1).strip()
    elif text:
        description = text.strip().splitlines()[0][:500]
    trace = _TRACE.search(text)
    corr = _CORRELATION.search(text)
    ts = _TIMESTAMP.search(text)
    return EntraEvidence(
        code=int(code_match.group(1)) if code_match else None,
        description=description,
        trace_id=trace.group(1) if trace else None,
        correlation_id=corr.group(1) if corr else None,
        timestamp=ts.group(1) if ts else None,
    )


def explain(code: int | None) -> AadstsCode | None:
    return CATALOG.get(code) if code is not None else None
