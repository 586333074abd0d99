"""Checks of the client secret itself: is it in Key Vault, is it well-formed, which credential is it, and when
does that credential expire.

The stored value is only ever compared (whitespace, GUID shape, its first three characters against Graph's
`hint`); it is never copied into a finding. A hint is public metadata: Graph lists it for every credential.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ... import clock
from ...config import is_guid
from ...errors import AccessDeniedError, NotFoundError
from ...findings import Finding, make_finding
from ...rotation.layout import key_id_tag
from ..runner import CheckSkipped
from .tenant_access import is_cross_tenant

if TYPE_CHECKING:
    from ...adapters.graph import AppCredential, AppRegistration
    from ...adapters.vault import StoredSecret
    from ..facts import Facts

HINT_LENGTH = 3


def _secret_ref(facts: Facts, secret: StoredSecret | None = None) -> dict[str, object]:
    ref: dict[str, object] = {"vault": facts.ctx.settings.key_vault_url, "secret_name": facts.target.secret_name}
    if secret is not None:
        ref["secret_version"] = secret.properties.version
    return ref


def whitespace_kind(value: str) -> str | None:
    """Where the whitespace is ('leading', 'trailing', 'leading and trailing'), or None."""
    leading, trailing = value != value.lstrip(), value != value.rstrip()
    if leading and trailing:
        return "leading and trailing"
    return "leading" if leading else "trailing" if trailing else None


async def check_secret_in_vault(facts: Facts) -> list[Finding]:
    """The secret exists, is enabled, and holds a secret value (not whitespace around it, not a Secret ID)."""
    if not facts.target.uses_secret:
        raise CheckSkipped("managed identity target: no client secret")
    params = facts.params()
    try:
        secret = await facts.stored_secret()
    except NotFoundError as exc:
        return [make_finding(
            "secret.missing_in_vault",
            f"Key Vault has no secret named '{facts.target.secret_name}' (or it is disabled or deleted).",
            evidence={**_secret_ref(facts), "error_code": exc.code, "message": exc.message},
            params=params, check="secret_in_vault", subject=facts.target.secret_name,
        )]
    findings: list[Finding] = []
    value = secret.value
    evidence = _secret_ref(facts, secret)
    if not value.strip():
        return [make_finding(
            "secret.missing_in_vault",
            f"The Key Vault secret '{facts.target.secret_name}' is empty.",
            evidence={**evidence, "empty": True}, params=params, check="secret_in_vault",
            subject=facts.target.secret_name,
        )]
    where = whitespace_kind(value)
    if where:
        findings.append(make_finding(
            "secret.whitespace",
            f"The secret stored in '{facts.target.secret_name}' has {where} whitespace "
            f"({len(value) - len(value.strip())} character(s)), which Entra ID rejects.",
            evidence={**evidence, "whitespace": where, "whitespace_characters": len(value) - len(value.strip())},
            params=params, check="secret_in_vault", subject=facts.target.secret_name,
        ))
    stripped = value.strip()
    if is_guid(stripped):
        evidence_id: dict[str, object] = {**evidence, "value_is_guid": True}
        detail = (f"The value stored in '{facts.target.secret_name}' is a GUID, the shape of a client secret's "
                  "Secret ID, not of its Value.")
        try:
            app = await facts.application()
        except Exception:
            app = None
        if app is not None:
            match = app.credential(stripped)
            evidence_id["matches_key_id_of_app"] = match is not None
            if match is not None:
                evidence_id["key_id"] = match.key_id
                evidence_id["credential_display_name"] = match.display_name
                detail = (f"The value stored in '{facts.target.secret_name}' is the Secret ID (keyId "
                          f"{match.key_id}) of the app's client secret '{match.display_name or match.key_id}', "
                          "not its Value.")
        findings.append(make_finding(
            "secret.looks_like_secret_id", detail, evidence=evidence_id, params=params, check="secret_in_vault",
            subject=facts.target.secret_name,
        ))
    return findings


def identify_credential(app: AppRegistration, secret: StoredSecret) -> tuple[AppCredential | None, str,
                                                                                list[AppCredential]]:
    """Which of the app's credentials the stored value is: by the keyId tag the product writes, confirmed by the
    3-character hint; without a tag, by the hint alone. Returns (credential, how, candidates)."""
    hint = secret.value.strip()[:HINT_LENGTH]
    tagged = key_id_tag(secret.properties.tags)
    if tagged:
        credential = app.credential(tagged)
        if credential is None:
            return None, "key_id_tag_not_on_app", []
        if credential.hint and credential.hint != hint:
            return None, "hint_differs_from_tagged_credential", [credential]
        return credential, "key_id_tag", [credential]
    candidates = [c for c in app.credentials if c.hint and c.hint == hint]
    if len(candidates) == 1:
        return candidates[0], "hint", candidates
    if not candidates:
        return None, "no_credential_with_hint", []
    # several credentials share the hint: the one ending first is the conservative answer for expiry
    soonest = min(candidates, key=lambda c: c.end.timestamp() if c.end else float("inf"))
    return soonest, "hint_ambiguous", candidates


async def check_credential(facts: Facts) -> list[Finding]:
    """Which credential the stored value is, and whether it has expired or expires within the rotation window."""
    if not facts.target.uses_secret:
        raise CheckSkipped("managed identity target: no client secret")
    params = facts.params()
    secret = await facts.need(facts.stored_secret, "the secret in Key Vault")
    try:
        app = await facts.application()
    except AccessDeniedError as exc:
        if is_cross_tenant(exc):
            raise CheckSkipped(f"needs the app registration, which the product cannot reach in tenant "
                               f"{facts.target.tenant_id} (see the tenant check)") from None
        raise
    except NotFoundError as exc:
        return [make_finding(
            "app.not_found_in_tenant",
            f"Microsoft Graph has no app registration with Application (client) ID {facts.target.app_id} in the "
            "product's tenant.",
            evidence={"app_id": facts.target.app_id, "tenant_id": facts.target.tenant_id, "source": "graph",
                      "error_code": exc.code, "message": exc.message},
            params=params, check="credential", subject=facts.target.app_id,
        )]
    if not secret.value.strip() or is_guid(secret.value.strip()):
        raise CheckSkipped("the stored value is empty or a Secret ID (see the secret_in_vault check)")
    credential, how, candidates = identify_credential(app, secret)
    base: dict[str, object] = {
        **_secret_ref(facts, secret),
        "app_id": app.app_id,
        "stored_value_hint": secret.value.strip()[:HINT_LENGTH],
        "key_id_tag": key_id_tag(secret.properties.tags),
        "matched_by": how,
        "app_credentials": [{"key_id": c.key_id, "display_name": c.display_name, "hint": c.hint,
                             "end": clock.iso(c.end)} for c in app.credentials],
    }
    if credential is None:
        if how == "hint_differs_from_tagged_credential":
            tagged = candidates[0]
            return [make_finding(
                "secret.invalid",
                f"The secret in '{facts.target.secret_name}' is tagged as credential {tagged.key_id} but its first "
                f"characters differ from that credential's hint '{tagged.hint}': the stored value is mistyped, "
                "truncated or from another secret.",
                evidence=base, params=params, check="credential", subject=facts.target.secret_name,
            )]
        why = ("its keyId tag names a credential the app no longer has" if how == "key_id_tag_not_on_app" else
               "none of the app's client secrets has its hint")
        return [make_finding(
            "secret.unknown_credential",
            f"The secret in '{facts.target.secret_name}' is not one of app {app.app_id}'s client secrets: {why}.",
            evidence=base, params=params, check="credential", subject=facts.target.secret_name,
        )]
    end = credential.end
    evidence = {**base, "key_id": credential.key_id, "credential_display_name": credential.display_name,
                "hint": credential.hint, "start": clock.iso(credential.start), "end": clock.iso(end)}
    if how == "hint_ambiguous":
        evidence["candidates"] = [c.key_id for c in candidates]
    facts.observations.update({"secret_key_id": credential.key_id, "secret_expires_on": clock.iso(end)})
    if end is None:
        return []
    days_left = (end - facts.now).total_seconds() / 86400
    facts.observations["days_to_expiry"] = round(days_left, 1)
    evidence["days_to_expiry"] = round(days_left, 1)
    name = credential.display_name or credential.key_id
    if days_left <= 0:
        return [make_finding(
            "secret.expired",
            f"The client secret '{name}' (keyId {credential.key_id}, hint '{credential.hint}') expired on "
            f"{end:%Y-%m-%d %H:%M} UTC, {abs(days_left):.0f} day(s) ago.",
            evidence=evidence, params=params, check="credential", subject=facts.target.secret_name,
        )]
    from ...rotation.policy import lead_days_for  # the same "due" rule as the rotation

    window = lead_days_for(facts.target.rotation, credential)
    if days_left <= window:
        evidence["rotate_before_days"] = window
        return [make_finding(
            "secret.expiring_soon",
            f"The client secret '{name}' (keyId {credential.key_id}) expires on {end:%Y-%m-%d} UTC, in "
            f"{days_left:.0f} day(s), inside the {window}-day rotation window.",
            evidence=evidence, params=params, check="credential", subject=facts.target.secret_name,
        )]
    return []
