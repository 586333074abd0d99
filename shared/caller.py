"""Who is calling: the identity App Service Authentication (Easy Auth) puts in front of the app.

When Easy Auth fronts the Function it strips any X-MS-CLIENT-PRINCIPAL* header a client sends and sets them
from the validated token: `X-MS-CLIENT-PRINCIPAL` (base64 JSON with the claims, app roles among them),
`-NAME` and `-ID`. Without Easy Auth those headers are whatever the caller typed, which is why REQUIRE_APP_ROLE
is only meaningful with Easy Auth on (docs/http.md). A caller with only a function key is "function key".

Every change records `Caller.label` (journal/operation record, outcome, log fields).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import RemediatorError
from .http_request import log_safe

MAX_PRINCIPAL_HEADER = 16 * 1024
MAX_FIELD = 128
_ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")


class ForbiddenError(RemediatorError):
    """The caller is authenticated but may not make this change."""

    code = "forbidden"
    status = 403


class InvalidPrincipalError(RemediatorError):
    code = "invalid_client_principal"
    status = 400


@dataclass(frozen=True)
class Caller:
    name: str | None = None
    id: str | None = None
    identity_provider: str | None = None
    roles: frozenset[str] = frozenset()

    @property
    def signed_in(self) -> bool:
        return bool(self.name or self.id)

    @property
    def label(self) -> str:
        """What the audit trail records: `name (id)`, or `function key` for a key-only caller."""
        if not self.signed_in:
            return "function key"
        if self.name and self.id:
            return f"{self.name} ({self.id})"
        return self.name or self.id or ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.id, "identityProvider": self.identity_provider,
                "roles": sorted(self.roles), "label": self.label}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def _clean(value: str | None) -> str | None:
    # identity text goes into journals and log fields: escaped, short, never empty
    if value is None or not value.strip():
        return None
    return log_safe(value.strip(), MAX_FIELD)


def _invalid(why: str) -> InvalidPrincipalError:
    return InvalidPrincipalError(f"The X-MS-CLIENT-PRINCIPAL header is not valid: {why}.",
                                 fix="Let App Service Authentication set this header; do not send it yourself.")


def _principal_claims(raw: str) -> tuple[str | None, str | None, frozenset[str]]:
    if len(raw) > MAX_PRINCIPAL_HEADER:
        raise _invalid(f"it is longer than {MAX_PRINCIPAL_HEADER} characters")
    try:
        data = json.loads(base64.b64decode(raw.strip() + "=" * (-len(raw.strip()) % 4), validate=False))
    except (binascii.Error, ValueError, RecursionError):
        raise _invalid("it is not base64-encoded JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("claims", []), list):
        raise _invalid("it has no claims list")
    role_type = data.get("role_typ") if isinstance(data.get("role_typ"), str) else None
    name_type = data.get("name_typ") if isinstance(data.get("name_typ"), str) else None
    provider = data.get("auth_typ") if isinstance(data.get("auth_typ"), str) else None
    roles: set[str] = set()
    name = None
    for claim in data.get("claims", []):
        if not isinstance(claim, dict) or not isinstance(claim.get("typ"), str) or not isinstance(claim.get("val"),
                                                                                                      str):
            continue
        typ, val = claim["typ"], claim["val"]
        if typ == role_type or typ in _ROLE_CLAIMS:
            roles.add(val)
        elif name is None and typ == name_type:
            name = val
    return name, provider, frozenset(roles)


def caller_from_headers(headers: Mapping[str, str]) -> Caller:
    principal = _header(headers, "X-MS-CLIENT-PRINCIPAL")
    name, provider, roles = _principal_claims(principal) if principal else (None, None, frozenset[str]())
    return Caller(
        name=_clean(_header(headers, "X-MS-CLIENT-PRINCIPAL-NAME") or name),
        id=_clean(_header(headers, "X-MS-CLIENT-PRINCIPAL-ID")),
        identity_provider=_clean(_header(headers, "X-MS-CLIENT-PRINCIPAL-IDP") or provider),
        roles=frozenset(r[:MAX_FIELD] for r in roles),
    )


def require_role(caller: Caller, role: str | None, what: str) -> None:
    """With REQUIRE_APP_ROLE set, a change needs a signed-in caller holding `role` (dry runs and reads don't)."""
    if not role or role in caller.roles:
        return
    who = "a caller with only a function key" if not caller.signed_in else f"'{caller.label}'"
    raise ForbiddenError(
        f"{what} changes Azure and needs the app role '{role}'; {who} does not hold it.",
        reason="REQUIRE_APP_ROLE is set: changes need a signed-in caller (App Service Authentication) with the role.",
        fix=f"Assign the app role '{role}' to the caller in Entra ID (Enterprise applications > the Function's app "
            "> Users and groups), or send dry_run=true to see the plan.",
        details={"requiredRole": role},
    )
