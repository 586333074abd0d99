"""The invariants of DESIGN.md "Rotation", as reusable checks over the twin's state.

- no lost secret: every live credential the product created has its value in Key Vault (main or pending), or is
  an orphan that the next run removes;
- no outage: the secret CycleCloud holds works at the token endpoint (unless it was broken before the run);
- the main Key Vault secret's newest enabled version is what CycleCloud holds;
- at most one new credential per due rotation.

`settled=True` is the state after a run that finished (no orphans allowed, KV == CycleCloud exactly);
`settled=False` is the state at an arbitrary crash point (orphans allowed, CycleCloud may already hold the
tested pending value that the commit step has not yet written to the main secret).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.twin import Twin
from tests.twin.services.entra import client_secret_problem
from tests.twin.state import hash_secret
from tests.world import APP_OBJECT_ID, CC_HOST, PENDING, SECRET_NAME, VAULT_NAME

MARKER = "ccremediator"


@dataclass
class Snapshot:
    credentials: list[dict[str, Any]]  # key_id, display_name, hint, hash
    main: list[dict[str, Any]]  # oldest first: value, tags, enabled
    pending: list[dict[str, Any]]
    cyclecloud_secret: str

    @property
    def marker_credentials(self) -> list[dict[str, Any]]:
        return [c for c in self.credentials if (c["display_name"] or "").startswith(MARKER + " ")]

    def newest_enabled_main(self) -> dict[str, Any] | None:
        return next((v for v in reversed(self.main) if v["enabled"]), None)

    def all_values(self) -> list[str]:
        return [v["value"] for v in self.main + self.pending] + [self.cyclecloud_secret]


def snapshot(twin: Twin) -> Snapshot:
    state = twin.state
    with state.lock:
        app = state.applications[APP_OBJECT_ID]
        creds = [{"key_id": c.key_id, "display_name": c.display_name, "hint": c.hint, "hash": c.secret_hash,
                  "end": c.end} for c in app.password_credentials]
        vault = state.vaults[f"{VAULT_NAME}.vault.azure.net"]

        def versions(name: str) -> list[dict[str, Any]]:
            secret = vault.secrets.get(name)
            if secret is None or secret.deleted_at is not None:
                return []
            return [{"value": v.value, "tags": dict(v.tags), "enabled": v.enabled, "expires": v.expires,
                     "version": v.version} for v in secret.versions]

        main, pending = versions(SECRET_NAME), versions(PENDING)
        cc = state.cyclecloud_servers[CC_HOST].accounts["azure"]["AzureRMApplicationSecret"]
    return Snapshot(creds, main, pending, str(cc))


def secret_works(twin: Twin, secret: str) -> bool:
    state = twin.state
    with state.lock:
        return client_secret_problem(state, state.applications[APP_OBJECT_ID], secret) is None


def check_invariants(twin: Twin, *, settled: bool, initial_key_ids: set[str], cyclecloud_was_working: bool = True,
                     where: str = "", product_key_ids: frozenset[str] = frozenset()) -> Snapshot:
    """`initial_key_ids`: the credentials before the rotation under test (people's, unless also named in
    `product_key_ids`, the product's own from earlier rotations, which it may retire)."""
    snap = snapshot(twin)
    label = f"[{where}] " if where else ""
    in_vault_hashes = {hash_secret(v["value"]) for v in snap.main + snap.pending if v["enabled"]}
    marker = snap.marker_credentials

    # no outage
    if cyclecloud_was_working:
        assert secret_works(twin, snap.cyclecloud_secret), f"{label}CycleCloud holds a secret that does not work"

    # KV newest enabled main version == CycleCloud's secret
    newest = snap.newest_enabled_main()
    if settled:
        assert newest is not None and newest["value"] == snap.cyclecloud_secret, \
            f"{label}Key Vault's newest enabled main version is not what CycleCloud holds"
    else:
        allowed = {newest["value"]} if newest else set()
        allowed |= {v["value"] for v in snap.pending if v["enabled"] and v["tags"].get("state") == "pending"}
        assert snap.cyclecloud_secret in allowed, \
            f"{label}CycleCloud holds a value that is neither the main nor the pending Key Vault secret"

    # no lost secret: every product credential is in Key Vault, or (mid-crash only) an orphan for the next run
    lost = [c["key_id"] for c in marker if c["hash"] not in in_vault_hashes]
    if settled:
        assert not lost, f"{label}credentials whose value is in no enabled Key Vault version: {lost}"
    else:
        assert len(lost) <= 1, f"{label}more than one orphan credential: {lost}"

    # nothing the product did not create is ever removed
    present = {c["key_id"] for c in snap.credentials}
    missing = sorted(k for k in initial_key_ids if k not in present and k not in product_key_ids)
    assert not missing, f"{label}credentials the product did not create were removed: {missing}"

    # at most one new credential (per due rotation)
    new = [c for c in snap.credentials if c["key_id"] not in initial_key_ids]
    assert len(new) <= 1, f"{label}{len(new)} new credentials: {[c['key_id'] for c in new]}"
    if settled:
        stored_new = [c for c in new if c["hash"] in in_vault_hashes]
        assert len(stored_new) <= 1
    # tags of the main secret's newest version describe the credential it holds
    if settled and newest is not None and newest["tags"].get("operationId"):
        key_id = newest["tags"]["keyId"]
        cred = next((c for c in snap.credentials if c["key_id"] == key_id), None)
        assert cred is not None and cred["hash"] == hash_secret(newest["value"]), \
            f"{label}the main secret's keyId tag does not name its credential"
    return snap

