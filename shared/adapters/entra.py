"""Entra ID token probes: can this secret (or the product's own identity) get a token, and if not, why."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError

from ..aadsts import AadstsCode, EntraEvidence, explain, parse_entra_error
from ..clients import ClientFactory, credential_kind
from ..errors import CredentialUnavailableError, ServiceError
from ..redaction import register_secret, scrub

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenProbe:
    ok: bool
    scope: str
    evidence: EntraEvidence | None = None

    @property
    def explanation(self) -> AadstsCode | None:
        return explain(self.evidence.code) if self.evidence else None


async def probe_secret(clients: ClientFactory, tenant_id: str, app_id: str, secret: str,
                       scope: str | None = None, credential: AsyncTokenCredential | None = None) -> TokenProbe:
    """Ask Entra ID for a client-credentials token with `secret`. Never raises for a refused secret: a
    refusal is a result (with its AADSTS evidence); only unreachable Entra raises. With `credential` (the
    caller's, built from the same secret and closed by the caller) the token stays cached in it for the
    caller's next ARM call."""
    register_secret(secret)
    scope = scope or clients.cloud.arm_scope
    owned = credential is None
    credential = credential or clients.secret_credential(tenant_id, app_id, secret)
    try:
        await credential.get_token(scope)
        return TokenProbe(True, scope)
    except ClientAuthenticationError as exc:
        evidence = parse_entra_error(scrub(str(exc.message if hasattr(exc, "message") else exc), secret))
        logger.info("token request for app %s refused: AADSTS%s", app_id, evidence.code)
        return TokenProbe(False, scope, evidence)
    except ServiceRequestError as exc:
        raise ServiceError(
            "Entra ID could not be reached.", reason=scrub(str(exc), secret),
            fix=f"Check outbound HTTPS from this host to {clients.cloud.login}.",
        ) from None
    finally:
        if owned:
            await credential.close()


async def probe_own_identity(clients: ClientFactory) -> str:
    """Get an ARM token as the product itself; return the credential kind. Raise CredentialUnavailableError
    with the troubleshooting rows of azure-identity's guide when the identity cannot be used."""
    from azure.identity import CredentialUnavailableError as SdkCredentialUnavailable

    kind = credential_kind()
    try:
        await clients.credential.get_token(clients.cloud.arm_scope)
        return kind
    except (SdkCredentialUnavailable, ClientAuthenticationError) as exc:
        text = scrub(str(exc))
        if kind == "managed_identity":
            fix = ("Turn on the Function app's managed identity (Identity > System assigned > On), or assign the "
                   "user-assigned identity and set AZURE_CLIENT_ID to its client id.")
        else:
            fix = ("Sign in with `az login` (install the Azure CLI if `az` is missing), or set AZURE_CLIENT_ID, "
                   "AZURE_TENANT_ID and AZURE_CLIENT_SECRET for a service principal.")
        raise CredentialUnavailableError(
            "The product's own identity cannot get a token.", reason=text.splitlines()[0] if text else "", fix=fix,
            details={"credential": kind},
        ) from None
