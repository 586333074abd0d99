"""Property test of the removal rule: random sequences of rotations and human interference on two targets that
share one app registration, through the real SDKs against the twin and Azurite. After every step:

- every CycleCloud account holds a live credential of the app (no outage: the people in this test are careful,
  they never remove a credential a CycleCloud account holds);
- nothing the product did not create was removed, and nothing any CycleCloud account held was removed;
- each target has at most three credentials of its own on the app.

Seeded and reproducible: ROTATION_PROPERTY_SEED and ROTATION_PROPERTY_STEPS choose the run (a failure prints the
seed and the steps that led to it).
"""

from __future__ import annotations

import copy
import os
import random
from collections.abc import Callable
from typing import Any

import pytest

from shared.context import AppContext
from shared.rotation import rotate_target, rotation_status
from shared.rotation.model import operation_of
from tests.rotation_support import DEV, DEV_SECRET_NAME, apply_env, dev_target, rotation_env, shared_app
from tests.twin import Twin
from tests.twin.services.graph import new_client_secret
from tests.twin.state import PasswordCredential, hash_secret, new_guid
from tests.world import APP_OBJECT_ID, CC_HOST, SECRET_NAME, TARGET, VAULT_NAME, World

VAULT_HOST = f"{VAULT_NAME}.vault.azure.net"
ACCOUNTS = {TARGET: "azure", DEV: "azure-dev"}
SECRETS = {TARGET: SECRET_NAME, DEV: DEV_SECRET_NAME}
SEED = int(os.environ.get("ROTATION_PROPERTY_SEED", "20261201"))
STEPS = int(os.environ.get("ROTATION_PROPERTY_STEPS", "24"))


class People:
    """What a person may do in the portal between two runs (never removing what a CycleCloud account holds)."""

    def __init__(self, twin: Twin, rng: random.Random) -> None:
        self.twin, self.rng, self.state = twin, rng, twin.state

    @property
    def app(self) -> Any:
        return self.state.applications[APP_OBJECT_ID]

    def secret(self, target: str) -> Any:
        return self.state.vaults[VAULT_HOST].secrets.get(SECRETS[target])

    def cyclecloud_hashes(self) -> set[str]:
        accounts = self.state.cyclecloud_servers[CC_HOST].accounts
        return {hash_secret(str(accounts[a]["AzureRMApplicationSecret"])) for a in ACCOUNTS.values()}

    def live_values(self) -> list[str]:
        live = {c.secret_hash for c in self.app.password_credentials}
        values = {v.value for s in self.state.vaults[VAULT_HOST].secrets.values() for v in s.versions}
        return sorted(v for v in values if hash_secret(v) in live)

    def disable_newest(self, target: str) -> str:
        secret = self.secret(target)
        secret.versions[-1].enabled = False
        return f"disable the newest version of {SECRETS[target]}"

    def enable_all(self, target: str) -> str:
        for version in self.secret(target).versions[-2:]:
            version.enabled = True
        return f"re-enable the newest versions of {SECRETS[target]}"

    def soft_delete(self, target: str) -> str:
        self.secret(target).deleted_at = self.state.now()
        return f"soft-delete {SECRETS[target]}"

    def recover(self, target: str) -> str:
        self.secret(target).deleted_at = None
        return f"recover {SECRETS[target]}"

    def add_credential(self, _target: str) -> str:
        value = new_client_secret()
        now = self.state.now()
        self.app.password_credentials.append(PasswordCredential(
            new_guid(), hash_secret(value), value[:3], "added in the portal", now, now.replace(year=now.year + 1),
            now))
        return "add a credential in the portal"

    def remove_unused_credential(self, _target: str) -> str:
        held = self.cyclecloud_hashes()
        candidates = [c for c in self.app.password_credentials if c.secret_hash not in held]
        if not candidates:
            return "remove nothing (every credential is held)"
        gone = self.rng.choice(candidates)
        self.app.password_credentials.remove(gone)
        return f"remove credential {gone.key_id} ({gone.display_name}) in the portal"

    def change_cyclecloud_secret(self, target: str) -> str:
        values = self.live_values()
        value = self.rng.choice(values)
        self.state.cyclecloud_servers[CC_HOST].accounts[ACCOUNTS[target]]["AzureRMApplicationSecret"] = value
        return f"set {ACCOUNTS[target]}'s secret to another live credential (hint {value[:3]})"

    def roll_back(self, target: str) -> str:
        secret = self.secret(target)
        if secret is None or not secret.versions:
            return "roll back nothing"
        older = copy.deepcopy(self.rng.choice(secret.versions))
        older.tags, older.version, older.enabled = {}, new_guid().replace("-", ""), True
        older.created = older.updated = self.state.now()
        secret.versions.append(older)
        return f"roll {SECRETS[target]} back to an older value (untagged, hint {older.value[:3]})"

    def skew_clock(self, _target: str) -> str:
        # forward only: the twin has one clock for Entra and Key Vault, and a vault's clock never runs backwards
        # (a version created later would look older); the run starts with Azure two minutes behind us
        seconds = self.rng.choice([30, 90])
        self.twin.clock.advance(seconds)
        return f"move Azure's clock {seconds:+d} s"


async def credentials_of(target: str) -> set[str]:
    async with AppContext.from_environment() as ctx:
        journal = (await rotation_status(ctx, target)).journal
    return set(journal.own_operations)


@pytest.mark.parametrize("seed", [SEED])
async def test_random_rotations_and_interference_keep_the_removal_rule(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    env = rotation_env(twin, World(secret_end="now+10d"), cc_ca, azurite, edit=shared_app,
                       extra_targets=[dev_target(cc_ca)], rotation={"test_successes": 1, "grace_hours": 0.0003})
    apply_env(monkeypatch, env)
    twin.clock.advance(-120)
    rng = random.Random(seed)
    people = People(twin, rng)
    interference: list[Callable[[str], str]] = [
        people.disable_newest, people.enable_all, people.soft_delete, people.recover, people.add_credential,
        people.remove_unused_credential, people.change_cyclecloud_secret, people.roll_back, people.skew_clock,
    ]
    history: list[str] = []
    product_made: set[str] = set()  # key ids of credentials the product created
    for step in range(STEPS):
        target = rng.choice([TARGET, DEV])
        state = twin.state
        with state.lock:
            before = {c.key_id: c for c in people.app.password_credentials}
        if rng.random() < 0.55:
            async with AppContext.from_environment() as ctx:
                outcome = await rotate_target(ctx, target, force=rng.random() < 0.3, deadline_seconds=60)
            kept = "; ".join(f"kept {k['keyId'][:8]}: {k['reason'][:90]}" for k in outcome.kept)
            history.append(f"{step}: rotate {target} -> {outcome.status.value} ({outcome.reason}) "
                           f"{outcome.message[:90]} {kept}")
        else:
            with state.lock:
                history.append(f"{step}: {rng.choice(interference)(target)}")
        where = f"seed {seed}, after:\n  " + "\n  ".join(history)
        with state.lock:
            after = {c.key_id: c for c in people.app.password_credentials}
            product_made |= {k for k, c in after.items() if operation_of(c.display_name)}
            removed = [before[k] for k in before if k not in after]
            held_now = people.cyclecloud_hashes()
            live = {c.secret_hash for c in after.values()}
            if history[-1].split(": ", 1)[1].startswith("rotate"):
                for cred in removed:  # only the product acted in this step
                    assert operation_of(cred.display_name), f"removed {cred.key_id}, not the product's; {where}"
                    assert cred.secret_hash not in held_now, \
                        f"removed {cred.key_id}, which a CycleCloud account holds; {where}"
            assert held_now <= live, f"a CycleCloud account holds a secret that is no credential; {where}"
        for name in (TARGET, DEV):
            ops = await credentials_of(name)
            with state.lock:
                own = [c for c in people.app.password_credentials if operation_of(c.display_name) in ops]
            assert len(own) <= 3, f"{name} has {len(own)} credentials on the app; {where}"
    assert any("-> rotated" in h for h in history), "the sequence never rotated: it tested nothing"
