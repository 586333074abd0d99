"""Pure rotation policy: which credential CycleCloud uses, whether it is due, which credentials are orphans,
and how long a new secret lives. No I/O here, so every rule has a plain unit test."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..adapters.graph import AppCredential
from ..config import RotationPolicy
from .model import operation_of


@dataclass(frozen=True)
class StoredSecretFacts:
    """What the rotation may know about the stored (main) secret without keeping its value."""

    key_id_tag: str | None
    hint: str  # first 3 characters of the value
    has_whitespace: bool
    operation_id_tag: str | None = None


@dataclass(frozen=True)
class CurrentCredential:
    """The credential CycleCloud uses, as far as the stored secret tells."""

    credential: AppCredential | None
    how: str  # "keyId tag", "hint", "no stored secret", "ambiguous hint", "no match", "whitespace"

    @property
    def known(self) -> bool:
        return self.credential is not None


@dataclass(frozen=True)
class Decision:
    due: bool
    reason: str
    current: CurrentCredential
    rotate_on: datetime | None = None  # when it becomes due (not-due case)


def identify_current(credentials: Iterable[AppCredential], stored: StoredSecretFacts | None) -> CurrentCredential:
    """The stored secret's credential: by its keyId tag when present, else by the 3-character hint when exactly
    one credential matches (first contact / adoption). Never a guess: ambiguity means unknown."""
    creds = list(credentials)
    if stored is None:
        return CurrentCredential(None, "no stored secret")
    if stored.key_id_tag:
        for cred in creds:
            if cred.key_id.lower() == stored.key_id_tag.lower():
                if cred.hint and stored.hint and cred.hint != stored.hint:
                    return CurrentCredential(None, "keyId tag names a credential whose hint differs from the value")
                return CurrentCredential(cred, "keyId tag")
        return CurrentCredential(None, "keyId tag names a credential the app no longer has")
    matches = [c for c in creds if c.hint and c.hint == stored.hint]
    if len(matches) == 1:
        return CurrentCredential(matches[0], "hint")
    if len(matches) > 1:
        return CurrentCredential(None, "ambiguous hint")
    return CurrentCredential(None, "no match")


def decide(now: datetime, policy: RotationPolicy, credentials: Iterable[AppCredential],
           stored: StoredSecretFacts | None, *, force: bool, policy_max_days: int | None = None) -> Decision:
    """Due when forced, when there is no usable stored secret, when it matches no credential, or when its
    credential is expired or expires within its lead time (`lead_days_for`). Recovering needs no old secret."""
    current = identify_current(credentials, stored)
    lead = lead_days_for(policy, current.credential, policy_max_days)
    if force:
        return Decision(True, "forced", current)
    if stored is None:
        return Decision(True, "Key Vault holds no secret for this target", current)
    if stored.has_whitespace:
        return Decision(True, "the stored secret has leading or trailing whitespace (invalid)", current)
    if current.credential is None:
        return Decision(True, f"the stored secret matches no credential of the app ({current.how})", current)
    end = current.credential.end
    if end is None:
        return Decision(False, "the current credential never expires", current)
    if end <= now:
        return Decision(True, f"the current credential expired on {end:%Y-%m-%d %H:%M} UTC", current)
    rotate_on = end - timedelta(days=lead)
    if rotate_on <= now:
        days = (end - now).total_seconds() / 86400
        return Decision(True, f"the current credential expires in {days:.1f} days (on {end:%Y-%m-%d}), within "
                              f"{lead} days", current, rotate_on)
    return Decision(False, f"the current credential expires on {end:%Y-%m-%d}; rotation is due on "
                           f"{rotate_on:%Y-%m-%d}", current, rotate_on)


def find_orphans(credentials: Iterable[AppCredential], own_operations: frozenset[str], held_in_vault: set[str],
                 in_flight_key_id: str | None = None) -> list[AppCredential]:
    """This target's credentials (displayName marker with one of its operation ids) whose value is in no Key Vault
    version of its main secret (enabled or not) nor in the pending value of the operation in progress: nobody was
    ever given their value. They are candidates only: removal.py decides, with evidence read now."""
    held = {k.lower() for k in held_in_vault if k}
    in_flight = (in_flight_key_id or "").lower()
    return [c for c in credentials
            if operation_of(c.display_name) in own_operations and c.key_id.lower() not in held
            and c.key_id.lower() != in_flight]


def new_credential_end(now: datetime, lifetime_days: int) -> datetime:
    # whole seconds: Graph echoes endDateTime at second precision
    return (now + timedelta(days=lifetime_days)).replace(microsecond=0)


def clamp_lifetime(requested_days: int, policy_max_days: int | None) -> int | None:
    """The lifetime to retry with after an app management policy refused `requested_days`, or None when the
    policy's maximum is unknown (the caller then reports exactly that). A day is kept in hand: Entra measures
    the lifetime from ITS clock, and ours may run seconds to minutes ahead of it."""
    if policy_max_days is None or policy_max_days <= 0:
        return None
    return max(1, min(requested_days, policy_max_days - 1))


def effective_lifetime_days(policy: RotationPolicy, policy_max_days: int | None) -> int:
    """The lifetime a new secret asks for: the configured one, clamped below a policy maximum learned before
    (so a known limit is not refused again on every run)."""
    return clamp_lifetime(policy.lifetime_days, policy_max_days) or policy.lifetime_days


def lead_days_for(policy: RotationPolicy, credential: AppCredential | None, policy_max_days: int | None = None
                  ) -> int:
    """How many days before its expiry `credential` is due: effective_lead_days over the shorter of the lifetime a
    new secret gets and the credential's own lifetime (a credential made under a policy maximum lives shorter).
    Diagnosis ("expires soon") and rotation ("due") use this one rule."""
    lifetime = effective_lifetime_days(policy, policy_max_days)
    if credential is not None and credential.start is not None and credential.end is not None:
        lived = int((credential.end - credential.start).total_seconds() // 86400)
        if lived > 0:
            lifetime = min(lifetime, lived)
    return effective_lead_days(policy, lifetime)


def effective_lead_days(policy: RotationPolicy, lifetime_days: int) -> int:
    """How many days before expiry a credential is due: `rotate_before_days`, but at most half the lifetime a
    new secret gets, so a short lifetime (say a policy maximum at or below `rotate_before_days`) does not make
    every new secret due at once and rotate on every run."""
    return max(1, min(policy.rotate_before_days, lifetime_days // 2))
