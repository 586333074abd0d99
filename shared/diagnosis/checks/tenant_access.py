"""Can the product reach the target's tenant at all? A target in another Entra tenant needs the product's
multi-tenant app there (consent: its service principal; Graph's Application.ReadWrite.OwnedBy; ownership of the
app). When any of that is missing, Graph and Entra answer like "not found" - this says precisely what is missing,
in which tenant, and the consent URL and `az` lines that fix it (docs/tenants.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...adapters.graph import (
    CROSS_TENANT_CODES,
    TENANT_APP_ACCESS_MISSING,
    TENANT_CONSENT_MISSING,
    TENANT_FEDERATION_MISMATCH,
    TENANT_NOT_ONBOARDED,
    consent_url,
    onboarding_lines,
)
from ...config import HOME_IDENTITY
from ...errors import AccessDeniedError
from ...findings import Finding, make_finding
from ...redaction import scrub

if TYPE_CHECKING:
    from ..facts import Facts

FINDING_FOR_CODE = {
    TENANT_NOT_ONBOARDED: "tenant.not_onboarded",
    TENANT_CONSENT_MISSING: "tenant.consent_missing",
    TENANT_FEDERATION_MISMATCH: "tenant.federation_mismatch",
    TENANT_APP_ACCESS_MISSING: "tenant.app_access_missing",
}


def is_cross_tenant(exc: BaseException) -> bool:
    """True for the errors this check reports (other checks skip instead of reporting them again)."""
    return isinstance(exc, AccessDeniedError) and exc.code in CROSS_TENANT_CODES


def _multi_tenant_app(facts: Facts) -> str | None:
    """The product's multi-tenant app: the target's identity, else one another target already uses."""
    if facts.target.identity != HOME_IDENTITY:
        return facts.target.identity
    return next((t.identity for t in facts.ctx.settings.targets if t.identity != HOME_IDENTITY), None)


def tenant_params(facts: Facts) -> dict[str, object]:
    """Placeholders of the tenant findings' steps: consent URL and the exact `az` lines, with this target's ids."""
    target, clients = facts.target, facts.ctx.clients
    identity = _multi_tenant_app(facts) or "<multi-tenant app client id>"
    lines = onboarding_lines(clients, target.tenant_id, identity, target.app_id or "<app id>")
    return {
        "identity_app_id": identity,
        "home_tenant_id": facts.ctx.settings.home_tenant_id or "<home tenant id>",
        "consent_url": consent_url(clients, target.tenant_id, identity),
        "az_consent": " && ".join(lines[:4]),
        "az_owner": " && ".join([*lines[:2], *lines[4:]]),
    }


async def tenant_access_findings(facts: Facts) -> list[Finding]:
    """The tenant finding, if any: first whether the product can sign in to the target's tenant at all, then
    (for a service principal target) whether Graph there lets it manage the app registration."""
    target = facts.target
    try:
        await facts.tenant_access()
        if target.app_id and target.uses_secret:
            await facts.application()
    except AccessDeniedError as exc:
        if not is_cross_tenant(exc):
            return []  # the product_rights check reports a plain Graph denial
        evidence: dict[str, object] = {
            key: value for key, value in exc.details.items() if value is not None and key != "az"
        }
        evidence.update(reason=scrub(exc.reason), fix=scrub(exc.fix))
        if exc.details.get("az"):
            evidence["az"] = list(exc.details["az"])
        return [make_finding(
            FINDING_FOR_CODE[exc.code], f"{scrub(exc.message)} ({exc.details.get('missing')} missing in tenant "
                                        f"{target.tenant_id})",
            evidence=evidence, params={**facts.params(), **tenant_params(facts)}, check="tenant",
            subject=target.tenant_id,
        )]
    except Exception:  # noqa: S110 - other Graph failures are the credential check's to report
        pass
    return []
