"""The simulated estate: `targets` CycleCloud targets with mixed policies on one tenant, built from a seed.

Layout (deterministic for a seed): targets 0 and 1 share one app registration (prod and dev CycleCloud on the
same service principal); every 7th target is a managed-identity target; every 3rd talks to CycleCloud through
ARM Run Command; every 5th app has an app management policy with a maximum secret lifetime; one target's
CycleCloud server masks the whole secret on read-back (pushes stay unconfirmed there). Lifetimes, lead times and
grace periods vary per target, and each starting secret expires at a different point of the simulated year.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.world import (
    CC_HOST,
    CC_PASSWORD,
    CC_PASSWORD_SECRET,
    CC_USER,
    FUNCTION_CLIENT_ID,
    FUNCTION_OBJECT_ID,
    RESOURCE_GROUP,
    SUBSCRIPTION,
    TENANT,
    VAULT_NAME,
    VAULT_RESOURCE_ID,
    VAULT_URL,
    account_record,
)

MASKED_CC_HOST = "cyclecloud-masked.contoso.com"  # a server whose read-back hides the whole secret
PASSWORD_SECRETS = {CC_HOST: CC_PASSWORD_SECRET, MASKED_CC_HOST: "cyclecloud-masked-admin-password"}
VAULT_HOST = f"{VAULT_NAME}.vault.azure.net"


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass
class SimTarget:
    name: str
    mode: str  # service_principal | managed_identity
    transport: str  # rest | runcommand
    cc_host: str
    account: str
    vm_id: str
    vm_principal: str
    app_object_id: str = ""  # empty for a managed-identity target
    app_id: str = ""
    sp_object_id: str = ""
    secret_name: str = ""
    initial_key_id: str = ""
    initial_secret: str = ""
    initial_end_days: int = 0
    rotation: dict[str, Any] = field(default_factory=dict)
    policy_max_days: int | None = None

    @property
    def uses_secret(self) -> bool:
        return self.mode == "service_principal"

    @property
    def principal(self) -> str:
        """The principal CycleCloud acts as (its Contributor assignment is what a person may remove)."""
        return self.sp_object_id if self.uses_secret else self.vm_principal


@dataclass
class Estate:
    targets: list[SimTarget]
    scenario: dict[str, Any]

    def target(self, name: str) -> SimTarget:
        return next(t for t in self.targets if t.name == name)

    def settings(self, cc_cas: dict[str, str], storage: str, container: str, queue: str) -> dict[str, str]:
        import json

        targets = []
        for t in self.targets:
            cyclecloud = {"url": f"https://{t.cc_host}", "account": t.account, "user": CC_USER,
                          "password_secret": PASSWORD_SECRETS[t.cc_host], "transport": t.transport,
                          "ca_bundle": cc_cas[t.cc_host]}
            entry: dict[str, Any] = {"name": t.name, "mode": t.mode, "tenant_id": TENANT,
                                     "subscription_ids": [SUBSCRIPTION], "cyclecloud": cyclecloud,
                                     "vm_resource_id": t.vm_id}
            if t.uses_secret:
                entry.update(app_id=t.app_id, secret_name=t.secret_name, rotation=t.rotation)
            targets.append(entry)
        return {"TARGETS": json.dumps(targets), "KEY_VAULT_URL": VAULT_URL, "AZURE_CLOUD": "AzureCloud",
                "AzureWebJobsStorage": storage, "STATE_CONTAINER": container, "CONTINUATION_QUEUE": queue,
                "AUTO_REMEDIATE": "true", "MAX_CONCURRENCY": "4"}


def build_estate(seed: int, count: int) -> Estate:
    rng = random.Random(f"estate-{seed}")
    scenario: dict[str, Any] = {
        "tenants": [{"id": TENANT, "domain": "contoso.onmicrosoft.com"}],
        "applications": [],
        "principals": [{"object_id": FUNCTION_OBJECT_ID, "tenant_id": TENANT, "app_id": FUNCTION_CLIENT_ID,
                        "display_name": "func-remediator", "function_identity": True,
                        # reading app management policies lets the product clamp lifetimes to their maximum
                        "graph_app_roles": ["Application.ReadWrite.OwnedBy", "Policy.Read.ApplicationConfiguration"]}],
        "subscriptions": [{"id": SUBSCRIPTION, "tenant_id": TENANT, "display_name": "HPC Production"}],
        "role_assignments": [
            {"scope": f"/subscriptions/{SUBSCRIPTION}", "role": "Role Based Access Control Administrator",
             "principal_id": FUNCTION_OBJECT_ID},
            {"scope": f"/subscriptions/{SUBSCRIPTION}", "role": "Reader", "principal_id": FUNCTION_OBJECT_ID},
            {"scope": VAULT_RESOURCE_ID, "role": "Key Vault Secrets Officer", "principal_id": FUNCTION_OBJECT_ID},
            # Run Command on every CycleCloud VM (the product checks this right on the VMs' resource group)
            {"scope": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}",
             "role": "Virtual Machine Contributor", "principal_id": FUNCTION_OBJECT_ID},
        ],
        "virtual_machines": [],
        "vaults": [{"name": VAULT_NAME, "tenant_id": TENANT, "resource_id": VAULT_RESOURCE_ID,
                    "secrets": {name: [{"value": CC_PASSWORD}] for name in PASSWORD_SECRETS.values()}}],
        "cyclecloud_servers": [
            {"host": CC_HOST, "users": [{"name": CC_USER, "password": CC_PASSWORD}], "accounts": []},
            {"host": MASKED_CC_HOST, "users": [{"name": CC_USER, "password": CC_PASSWORD}], "accounts": [],
             "masks_secret_fully": True},
        ],
    }
    targets: list[SimTarget] = []
    shared_app: dict[str, Any] | None = None
    for i in range(count):
        name = f"hpc-{i:02d}"
        mode = "managed_identity" if i % 7 == 6 else "service_principal"
        transport = "runcommand" if i % 3 == 2 else "rest"
        cc_host = MASKED_CC_HOST if i == 3 and mode == "service_principal" else CC_HOST
        vm_id = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
                 f"/providers/Microsoft.Compute/virtualMachines/cyclecloud-vm-{i:02d}")
        vm_principal = _guid(rng)
        target = SimTarget(name, mode, transport, cc_host, f"acct-{i:02d}", vm_id, vm_principal)
        scenario["virtual_machines"].append({"id": vm_id, "cyclecloud_host": cc_host,
                                             "identity": {"principal_id": vm_principal, "tenant_id": TENANT}})
        server = next(s for s in scenario["cyclecloud_servers"] if s["host"] == cc_host)
        if mode == "managed_identity":
            record = account_record(managed_identity=True)
            scenario["role_assignments"].append({"scope": f"/subscriptions/{SUBSCRIPTION}", "role": "Contributor",
                                                 "principal_id": vm_principal})
        else:
            secret = f"{rng.choice('ABCDEFGH')}{rng.randrange(10)}{rng.choice('abcdefgh')}8Q~" + _guid(rng)
            key_id = _guid(rng)
            end_days = rng.randrange(3, 120)
            lifetime = rng.choice([21, 30, 45, 60, 90])
            target.rotation = {"lifetime_days": lifetime, "rotate_before_days": rng.choice([5, 7, 10, 14]),
                               "grace_hours": rng.choice([0.5, 2, 12, 24, 72]), "test_successes": 1,
                               "test_timeout_seconds": 20}
            target.secret_name = f"cyclecloud-{name}-secret"
            target.initial_key_id, target.initial_secret, target.initial_end_days = key_id, secret, end_days
            credential = {"key_id": key_id, "secret": secret, "display_name": f"initial {name}",
                          "start": "now-30d", "end": f"now+{end_days}d"}
            if i == 1 and shared_app is not None:  # the second target on the first target's app registration
                shared_app["password_credentials"].append(credential)
                target.app_object_id, target.app_id = shared_app["object_id"], shared_app["app_id"]
                target.sp_object_id = shared_app["service_principal"]["object_id"]
            else:
                app: dict[str, Any] = {"object_id": _guid(rng), "app_id": _guid(rng), "tenant_id": TENANT,
                       "display_name": f"cyclecloud-{name}", "owners": [FUNCTION_OBJECT_ID],
                       "password_credentials": [credential], "service_principal": {"object_id": _guid(rng)}}
                if i % 5 == 4:
                    app["max_password_lifetime_days"] = target.policy_max_days = rng.choice([20, 30, 40])
                scenario["applications"].append(app)
                target.app_object_id, target.app_id = app["object_id"], app["app_id"]
                target.sp_object_id = app["service_principal"]["object_id"]
                scenario["role_assignments"].append({"scope": f"/subscriptions/{SUBSCRIPTION}",
                                                     "role": "Contributor", "principal_id": target.sp_object_id})
                if i == 0:
                    shared_app = app
            scenario["vaults"][0]["secrets"][target.secret_name] = [
                {"value": secret, "tags": {"keyId": key_id, "appId": target.app_id}, "expires": f"now+{end_days}d"}]
            record = account_record(secret, app_id=target.app_id)
        record["Name"] = target.account
        server["accounts"].append(record)
        targets.append(target)
    return Estate(targets, scenario)
