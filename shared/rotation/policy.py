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
           stored: StoredSecretFacts | None, *, force: bool) -> Decision:
    """Due when forced, when there is no usable stored secret, when it matches no credential, or when its
    credential is expired or expires within `rotate_before_days`. Recovering needs no old secret."""
    current = identify_current(credentials, stored)
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
    rotate_on = end - timedelta(days=policy.rotate_before_days)
    if rotate_on <= now:
        days = (end - now).total_seconds() / 86400
        return Decision(True, f"the current credential expires in {days:.1f} days (on {end:%Y-%m-%d}), within "
                              f"{policy.rotate_before_days} days", current, rotate_on)
    return Decision(False, f"the current credential expires on {end:%Y-%m-%d}; rotation is due on "
                           f"{rotate_on:%Y-%m-%d}", current, rotate_on)


def find_orphans(credentials: Iterable[AppCredential], key_ids_in_vault: set[str],
                 protected: Iterable[str | None] = ()) -> list[AppCredential]:
    """Credentials the product created (displayName marker) whose value is in no Key Vault secret: their value
    is lost, so nobody can use them. Never one without the marker, never one in `protected`."""
    keep = {k.lower() for k in protected if k} | {k.lower() for k in key_ids_in_vault}
    return [c for c in credentials if operation_of(c.display_name) and c.key_id.lower() not in keep]


def new_credential_end(now: datetime, lifetime_days: int) -> datetime:
    # whole seconds: Graph echoes endDateTime at second precision
    return (now + timedelta(days=lifetime_days)).replace(microsecond=0)


def clamp_lifetime(requested_days: int, policy_max_days: int | None) -> int | None:
    """The lifetime to retry with after an app management policy refused `requested_days`, or None when the
    policy's maximum is unknown (the caller then reports exactly that). A day is kept in hand so the clock
    skew between us and Entra cannot push the end date past the limit."""
    if policy_max_days is None or policy_max_days <= 0:
        return None
    clamped = min(requested_days, policy_max_days)
    if clamped == requested_days:
        clamped -= 1
    return max(clamped, 1)
