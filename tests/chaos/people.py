"""Human interference: what people do by hand in the portal, in Key Vault and on CycleCloud between runs.

Each action changes the twin's state directly (as the portal would), says what it did, and, when the product can
only report it (not repair it), carries the fix a person makes once the finding is reported (`undo`). The
simulation then checks that within one health interval the product repaired it or reported it as a finding.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.twin import Twin
from tests.twin.services.graph import new_client_secret
from tests.twin.state import PasswordCredential, PolicyAssignment, hash_secret, new_guid
from tests.world import CC_USER, CONTRIBUTOR, SUBSCRIPTION

from .world import PASSWORD_SECRETS, VAULT_HOST, Estate, SimTarget


@dataclass
class Interference:
    kind: str
    target: str
    at: datetime
    description: str
    undo: Callable[[], str] | None = None  # what a person does once the product has reported it
    removed_key_ids: set[str] = field(default_factory=set)  # credentials the person removed
    broken_at_start: bool = False  # whether it left the target broken (otherwise it was harmless)
    outcome: str | None = None  # harmless | repaired | reported | UNACCOUNTED
    reported_at: datetime | None = None
    undone_at: datetime | None = None
    closed_at: datetime | None = None


class People:
    """The actions, each `(target) -> Interference | None` (None: not applicable to this target now)."""

    def __init__(self, twin: Twin, estate: Estate, rng: random.Random) -> None:
        self.twin, self.estate, self.rng = twin, estate, rng
        self.actions: dict[str, Callable[[SimTarget], Interference | None]] = {
            "soft_delete_secret": self.soft_delete_secret,
            "disable_newest_version": self.disable_newest_version,
            "disable_older_version": self.disable_older_version,
            "add_credential": self.add_credential,
            "remove_unused_credential": self.remove_unused_credential,
            "remove_credential_in_use": self.remove_credential_in_use,
            "roll_back_value": self.roll_back_value,
            "remove_contributor": self.remove_contributor,
            "change_cyclecloud_secret": self.change_cyclecloud_secret,
            "change_cyclecloud_password": self.change_cyclecloud_password,
            "disable_vm_identity": self.disable_vm_identity,
            "deny_role_assignments": self.deny_role_assignments,
        }

    @property
    def state(self) -> Any:
        return self.twin.state

    def _new(self, kind: str, target: SimTarget, description: str, **kw: Any) -> Interference:
        return Interference(kind, target.name, self.state.now(), description, **kw)

    def _app(self, target: SimTarget) -> Any:
        return self.state.applications[target.app_object_id]

    def _secret(self, target: SimTarget) -> Any:
        return self.state.vaults[VAULT_HOST].secrets.get(target.secret_name)

    def _held_hashes(self) -> set[str]:
        return {hash_secret(str(a.get("AzureRMApplicationSecret") or ""))
                for s in self.state.cyclecloud_servers.values() for a in s.accounts.values()}

    # -- Key Vault -------------------------------------------------------------------------------------------

    def soft_delete_secret(self, t: SimTarget) -> Interference | None:
        secret = self._secret(t)
        if not t.uses_secret or secret is None or secret.deleted_at is not None:
            return None
        secret.deleted_at = self.state.now()

        def undo() -> str:
            secret.deleted_at = None
            return f"recover {t.secret_name}"
        return self._new("soft_delete_secret", t, f"soft-delete {t.secret_name}", undo=undo)

    def disable_newest_version(self, t: SimTarget) -> Interference | None:
        return self._disable_version(t, "disable_newest_version", "the newest version",
                                     lambda enabled: enabled[-1] if enabled else None)

    def disable_older_version(self, t: SimTarget) -> Interference | None:
        return self._disable_version(t, "disable_older_version", "an older version",
                                     lambda enabled: self.rng.choice(enabled[:-1]) if len(enabled) >= 2 else None)

    def _disable_version(self, t: SimTarget, kind: str, which: str,
                         pick: Callable[[list[Any]], Any]) -> Interference | None:
        """Disable the version `pick` chooses among the enabled ones (None: nothing to disable)."""
        secret = self._secret(t)
        version = pick([v for v in secret.versions if v.enabled] if t.uses_secret and secret else [])
        if version is None:
            return None
        version.enabled = False

        def undo() -> str:
            version.enabled = True
            return f"re-enable {which} of {t.secret_name}"
        return self._new(kind, t, f"disable {which} of {t.secret_name}", undo=undo)

    def roll_back_value(self, t: SimTarget) -> Interference | None:
        secret = self._secret(t)
        if not t.uses_secret or secret is None or secret.deleted_at is not None or len(secret.versions) < 2:
            return None
        older = copy.deepcopy(self.rng.choice(secret.versions[:-1]))
        older.tags, older.version, older.enabled = {}, new_guid().replace("-", ""), True
        older.created = older.updated = self.state.now()
        secret.versions.append(older)

        def undo() -> str:
            older.enabled = False
            return f"disable the rolled-back version of {t.secret_name}"
        return self._new("roll_back_value", t, f"roll {t.secret_name} back to an older value (untagged, hint "
                         f"{older.value[:3]})", undo=undo)

    # -- Entra ---------------------------------------------------------------------------------------------

    def add_credential(self, t: SimTarget) -> Interference | None:
        if not t.uses_secret:
            return None
        value, now = new_client_secret(), self.state.now()
        cred = PasswordCredential(new_guid(), hash_secret(value), value[:3], "added in the portal", now,
                                  now.replace(year=now.year + 2), now)
        self._app(t).password_credentials.append(cred)
        return self._new("add_credential", t, f"add credential {cred.key_id[:8]} in the portal")

    def remove_unused_credential(self, t: SimTarget) -> Interference | None:
        """A careful person: removes a credential no CycleCloud account holds (the product must cope)."""
        if not t.uses_secret:
            return None
        held = self._held_hashes()
        candidates = [c for c in self._app(t).password_credentials if c.secret_hash not in held]
        if not candidates:
            return None
        gone = self.rng.choice(candidates)
        self._app(t).password_credentials.remove(gone)
        return self._new("remove_unused_credential", t, f"remove unused credential {gone.key_id[:8]} "
                         f"({gone.display_name}) in the portal", removed_key_ids={gone.key_id})

    def remove_credential_in_use(self, t: SimTarget) -> Interference | None:
        """A careless person: removes the credential this target's CycleCloud account holds (an outage)."""
        if not t.uses_secret:
            return None
        account = self.state.cyclecloud_servers[t.cc_host].accounts[t.account]
        held = hash_secret(str(account["AzureRMApplicationSecret"]))
        gone = next((c for c in self._app(t).password_credentials if c.secret_hash == held), None)
        if gone is None or held in {hash_secret(str(a.get("AzureRMApplicationSecret") or ""))
                                    for n, a in self._other_accounts(t)}:
            return None
        self._app(t).password_credentials.remove(gone)
        return self._new("remove_credential_in_use", t, f"remove credential {gone.key_id[:8]} that CycleCloud "
                         "uses", removed_key_ids={gone.key_id})

    def _other_accounts(self, t: SimTarget) -> list[tuple[str, dict[str, Any]]]:
        return [(n, a) for s in self.state.cyclecloud_servers.values() for n, a in s.accounts.items()
                if not (s.host == t.cc_host and n == t.account)]

    # -- ARM -----------------------------------------------------------------------------------------------

    def _contributor(self, t: SimTarget) -> Any:
        return next((ra for ra in self.state.role_assignments.values()
                     if ra.principal_id == t.principal and ra.role_definition_id == CONTRIBUTOR), None)

    def remove_contributor(self, t: SimTarget) -> Interference | None:
        ra = self._contributor(t)
        if ra is None:
            return None
        del self.state.role_assignments[ra.name]
        return self._new("remove_contributor", t, f"remove {t.name}'s Contributor assignment")

    def deny_role_assignments(self, t: SimTarget) -> Interference | None:
        """A policy that denies Contributor assignments, then the assignment removed: the product cannot repair
        it and must report it; the person then lifts the policy (the product restores the role)."""
        ra = self._contributor(t)
        if ra is None or any(p.name == "deny-contributor" for p in self.state.policy_assignments):
            return None
        policy = PolicyAssignment(name="deny-contributor", scope=f"/subscriptions/{SUBSCRIPTION}",
                                  display_name="Deny Contributor assignments",
                                  definition_name="deny-role-assignments",
                                  denied_role_definition_ids=[CONTRIBUTOR], denied_principal_types=[])
        self.state.policy_assignments.append(policy)
        del self.state.role_assignments[ra.name]

        def undo() -> str:
            self.state.policy_assignments.remove(policy)
            return "lift the policy that denies Contributor assignments"
        return self._new("deny_role_assignments", t, "assign a policy denying Contributor assignments and remove "
                         f"{t.name}'s Contributor assignment", undo=undo)

    def disable_vm_identity(self, t: SimTarget) -> Interference | None:
        vm = self.state.vm(t.vm_id)
        if t.uses_secret or vm.identity_principal_id is None:
            return None
        principal = vm.identity_principal_id
        vm.identity_principal_id = None

        def undo() -> str:
            vm.identity_principal_id = principal
            return f"turn {t.name}'s VM identity back on"
        return self._new("disable_vm_identity", t, f"turn off {t.name}'s VM identity", undo=undo)

    # -- CycleCloud ----------------------------------------------------------------------------------------

    def change_cyclecloud_secret(self, t: SimTarget) -> Interference | None:
        # not on the server that masks the whole secret: the product cannot see it there (a known gap, pinned by
        # tests/test_chaos.py::test_a_wrong_secret_on_a_fully_masking_cyclecloud_is_reported)
        if not t.uses_secret or self.state.cyclecloud_servers[t.cc_host].masks_secret_fully:
            return None
        account = self.state.cyclecloud_servers[t.cc_host].accounts[t.account]
        account["AzureRMApplicationSecret"] = "Typ8Q~" + new_guid()  # pasted a wrong value

        def undo() -> str:
            secret = self._secret(t)
            enabled = [v for v in secret.versions if v.enabled] if secret else []
            if enabled:
                account["AzureRMApplicationSecret"] = enabled[-1].value
            return f"paste Key Vault's secret into {t.account} on CycleCloud"
        return self._new("change_cyclecloud_secret", t, f"paste a wrong secret into {t.account} on CycleCloud",
                         undo=undo)

    def change_cyclecloud_password(self, t: SimTarget) -> Interference | None:
        if t.transport != "rest":  # Run Command uses the CLI on the VM, not the password
            return None
        server = self.state.cyclecloud_servers[t.cc_host]
        user = server.users[CC_USER]
        password = "Rotated-by-hand-" + new_guid()[:8]
        user.password = password

        def undo() -> str:  # the person stores the new password where the product reads it
            vault = self.state.vaults[VAULT_HOST]
            versions = vault.secrets[PASSWORD_SECRETS[t.cc_host]].versions
            fresh = copy.deepcopy(versions[-1])
            fresh.value, fresh.version = password, new_guid().replace("-", "")
            fresh.created = fresh.updated = self.state.now()
            versions.append(fresh)
            return f"store {t.cc_host}'s new CycleCloud password in Key Vault"
        return self._new("change_cyclecloud_password", t, f"change the CycleCloud user's password on {t.cc_host}",
                         undo=undo)
