"""The one rule for removing a credential from an app registration (docs/rotation.md, "What may be removed").

A credential is removed only when ALL of these hold:
1. this target's own journal shows the product created it: its displayName carries one of *this target's*
   operation ids (any other `ccremediator` credential belongs to another target or deployment);
2. no other configured target on the same app registration holds it (Key Vault versions enabled, disabled or
   soft-deleted, pending values, journal);
3. CycleCloud's current secret, read now, is not it (by hint: CycleCloud shows no key id);
4. the newest version of the main Key Vault secret does not hold it (by its keyId tag, or by hint when untagged).
Whatever could not be established (a soft-deleted or disabled secret, a masked read-back, an unreachable server)
keeps every credential: missing information is never proof that nobody uses one. One fact is proof on its own: a
credential whose end date passed (an hour ago, so that clocks minutes apart agree) signs nobody in, so rules 1
and 2-4 as far as they are known decide it alone. Without this, a CycleCloud server that masks the whole secret
(every push unconfirmed, every replaced credential kept) would gather one dead credential a rotation.

This module is pure: `usage.py` gathers the evidence, `protocol.py` removes what `removal_verdict` allows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..adapters.graph import AppCredential
from .model import operation_of

# an expired credential is removable once its end date lies this far behind the product's clock (Entra's clock
# and ours may differ by seconds or minutes; an hour is beyond any skew the product tolerates elsewhere)
EXPIRED_MARGIN = timedelta(hours=1)


@dataclass
class UsageEvidence:
    """Who holds which credential, read just before removing anything.

    `key_ids` and `hints` map a credential's keyId (or its 3-character hint, where a holder shows no keyId) to a
    sentence naming the holder; `unknown` lists what could not be established, each as a sentence."""

    key_ids: dict[str, str] = field(default_factory=dict)
    hints: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)

    def hold_key(self, key_id: str | None, holder: str) -> None:
        if key_id:
            self.key_ids.setdefault(key_id.lower(), holder)

    def hold_hint(self, hint: str | None, holder: str) -> None:
        if hint:
            self.hints.setdefault(hint, holder)

    def cannot_tell(self, why: str) -> None:
        if why not in self.unknown:
            self.unknown.append(why)


def removal_verdict(credential: AppCredential, own_operations: frozenset[str], evidence: UsageEvidence,
                    in_flight_key_id: str | None = None, now: datetime | None = None) -> str | None:
    """None when the credential may be removed now; otherwise the reason it is kept (a sentence). `now` (the
    product's clock) lets an expired credential go although evidence is missing."""
    operation = operation_of(credential.display_name)
    if operation is None:
        return "the product did not create it"
    if operation not in own_operations:
        return f"it was created by operation {operation}, which is not one of this target's"
    if in_flight_key_id and credential.key_id.lower() == in_flight_key_id.lower():
        return "the rotation in progress uses it"
    holder = evidence.key_ids.get(credential.key_id.lower())
    if holder:
        return f"{holder} holds it"
    if credential.hint and credential.hint in evidence.hints:
        return f"{evidence.hints[credential.hint]} holds a secret with its hint '{credential.hint}'"
    if evidence.unknown and not _expired(credential, now):
        return "it cannot be shown that nothing uses it: " + "; ".join(evidence.unknown)
    return None


def _expired(credential: AppCredential, now: datetime | None) -> bool:
    return now is not None and credential.end is not None and credential.end + EXPIRED_MARGIN <= now
