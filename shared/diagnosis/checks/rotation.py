"""The rotation journal, as the health check sees it: an operation that stopped with an error, a replaced
credential the removal rule keeps (and why), a push CycleCloud could not confirm. Reads only: a target with no
journal (or no storage configured) is skipped, never an error."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...findings import Finding, make_finding
from ..runner import CheckSkipped

if TYPE_CHECKING:
    from ..facts import Facts


async def check_rotation_journal(facts: Facts) -> list[Finding]:
    from ...rotation.store import JournalStore

    target, settings = facts.target, facts.ctx.settings
    if not target.uses_secret:
        raise CheckSkipped("managed identity target: nothing rotates")
    if not (settings.storage.connection_string or settings.storage.blob_service_uri):
        raise CheckSkipped("no Functions storage configured, so there is no rotation journal to read")
    journal = (await JournalStore(facts.ctx.clients.blob_service(), settings.storage.container)
               .read(target.name)).journal
    params = {**facts.params(), "target": target.name}
    findings: list[Finding] = []
    current = journal.current
    if current is not None and current.last_error is not None:
        error = current.last_error
        findings.append(make_finding(
            "rotation.stopped",
            f"Rotation operation {current.id} of target '{target.name}' stopped at stage '{error.stage}' "
            f"({error.code}): {error.message}",
            evidence={"operation_id": current.id, "stage": error.stage, "error_code": error.code, "at": error.at},
            params=params, check="rotation", subject=target.name))
    for retirement in journal.retirements:
        if retirement.kept_because:
            findings.append(make_finding(
                "rotation.credential_kept",
                f"Credential {retirement.key_id} of target '{target.name}' was replaced but is kept: "
                f"{retirement.kept_because}",
                evidence={"key_id": retirement.key_id, "operation_id": retirement.operation_id,
                          "retire_after": retirement.after},
                params=params, check="rotation", subject=retirement.key_id))
    if journal.policy_max_lifetime_days is not None:
        from ...rotation.policy import effective_lead_days, effective_lifetime_days

        lifetime = effective_lifetime_days(target.rotation, journal.policy_max_lifetime_days)
        lead = effective_lead_days(target.rotation, lifetime)  # what lead_days_for gives its new secrets
        findings.append(make_finding(
            "rotation.lifetime_limited",
            f"An app management policy limits new secrets of target '{target.name}' to "
            f"{journal.policy_max_lifetime_days} days: they live {lifetime} days (rotation.lifetime_days is "
            f"{target.rotation.lifetime_days}) and are rotated {lead} days before expiry"
            + (f" (not rotate_before_days={target.rotation.rotate_before_days}, which would make every new secret "
               "due at once)" if lead != target.rotation.rotate_before_days else "") + ".",
            evidence={"policy_max_lifetime_days": journal.policy_max_lifetime_days, "lifetime_days": lifetime,
                      "lead_days": lead},
            params=params, check="rotation", subject=target.name))
    last = journal.history[0] if journal.history else None
    if last is not None and last.get("result") == "committed" and last.get("push_confirmed") is False:
        findings.append(make_finding(
            "rotation.push_unconfirmed",
            f"The last rotation of target '{target.name}' (operation {last.get('id')}) pushed credential "
            f"{last.get('new_key_id')} to CycleCloud, but CycleCloud's read-back showed no hint of its secret.",
            evidence={"operation_id": last.get("id"), "key_id": last.get("new_key_id")},
            params=params, check="rotation", subject=str(last.get("id"))))
    return findings
