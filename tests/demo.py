"""`make demo`: the seed's story, told by the product's CLI against the Azure twin.

Two CycleCloud targets:
- hpc-prod: the seed's incident. Its client secret expired (AADSTS7000222), its Contributor role was removed
  (the `Microsoft.Storage/storageAccounts/read` error), and CycleCloud holds an even older secret than Key Vault.
- hpc-dev: healthy, but its secret expires in 12 days: the rotation timer's everyday job.

Each step runs `python -m shared ...` in a subprocess, exactly as an operator would, with the environment
`python -m tests.twin` prints. Nothing here talks to Azure.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.azurite import start_azurite, stop_azurite
from tests.twin import Twin
from tests.world import (
    APP_ID,
    CC_HOST,
    CC_PASSWORD,
    CC_PASSWORD_SECRET,
    CC_USER,
    CONTRIBUTOR,
    SUBSCRIPTION,
    TENANT,
    VAULT_NAME,
    World,
    account_record,
)

ROOT = Path(__file__).resolve().parent.parent

DEV_APP_ID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"
DEV_APP_OBJECT_ID = "6f7a8b9c-0d1e-4f2a-b3c4-d5e6f7a8b9c0"
DEV_SP_OBJECT_ID = "7a8b9c0d-1e2f-4a3b-8c4d-e5f6a7b8c9d0"
DEV_SECRET = "Dev8Q~dev-secret-value-expiring-soon-42"
DEV_CC_HOST = "cyclecloud-dev.contoso.com"
PREVIOUS_SECRET = "Old8Q~previous-secret-value-from-2024-xyz"


def demo_scenario() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    world = World(secret_end="now-2d")  # hpc-prod: expired two days ago
    scenario = world.scenario()
    # the seed's third failure: someone removed the service principal's Contributor assignment
    scenario["role_assignments"] = [ra for ra in scenario["role_assignments"] if ra["role"] != "Contributor"]
    # ...and CycleCloud was never given the last secret someone stored in Key Vault: it holds an older one
    scenario["applications"][0]["password_credentials"].insert(0, {
        "secret": PREVIOUS_SECRET, "display_name": "initial-2024", "start": "now-400d", "end": "now-35d"})
    scenario["cyclecloud_servers"][0]["accounts"] = [account_record(PREVIOUS_SECRET)]
    # hpc-dev: a second app whose secret expires in 12 days
    scenario["applications"].append({
        "object_id": DEV_APP_OBJECT_ID, "app_id": DEV_APP_ID, "tenant_id": TENANT, "display_name": "cyclecloud-dev",
        "owners": [scenario["principals"][0]["object_id"]],
        "password_credentials": [{"secret": DEV_SECRET, "display_name": "initial", "start": "now-168d",
                                  "end": "now+12d"}],
        "service_principal": {"object_id": DEV_SP_OBJECT_ID},
    })
    scenario["role_assignments"].append({"scope": f"/subscriptions/{SUBSCRIPTION}", "role": "Contributor",
                                         "principal_id": DEV_SP_OBJECT_ID})
    vault = scenario["vaults"][0]
    vault["secrets"]["cyclecloud-dev-secret"] = [{"value": DEV_SECRET, "expires": "now+12d"}]
    dev_account = account_record(DEV_SECRET, app_id=DEV_APP_ID)
    scenario["cyclecloud_servers"].append({"host": DEV_CC_HOST, "users": [{"name": CC_USER, "password": CC_PASSWORD}],
                                           "accounts": [dev_account]})
    targets = [world.target()]
    dev = copy.deepcopy(world.target())
    dev.update({"name": "hpc-dev", "app_id": DEV_APP_ID, "secret_name": "cyclecloud-dev-secret",
                "cyclecloud": {"url": f"https://{DEV_CC_HOST}", "account": "azure", "user": CC_USER,
                               "password_secret": CC_PASSWORD_SECRET}})
    dev.pop("vm_resource_id", None)
    targets.append(dev)
    return scenario, targets


STEPS: list[tuple[str, list[str], set[int]]] = [
    ("Is the configuration sound?", ["config", "check"], {0}),
    ("The seed's incident: what does Entra ID say about hpc-prod's stored secret?", ["token", "hpc-prod"], {1}),
    ("Can we reach CycleCloud, and does it trust us?", ["cyclecloud", "probe", "hpc-prod"], {0}),
    ("Everything wrong with hpc-prod, in plain English", ["validate", "hpc-prod"], {2}),
    ("What would remediation do? (dry run: nothing changes)", ["remediate", "hpc-prod", "--dry-run"], {0, 1, 2}),
    ("One call fixes what can be fixed", ["remediate", "hpc-prod"], {0}),
    ("hpc-prod after remediation", ["validate", "hpc-prod"], {0}),
    ("The everyday job: hpc-dev's secret expires in 12 days. What would rotation do?",
     ["rotate", "hpc-dev", "--dry-run"], {0}),
    ("Rotate it: create, store, test, push, commit (crash-safe)", ["rotate", "hpc-dev"], {0}),
    ("The rotation journal: what happened, step by step (no secrets)", ["rotate", "hpc-dev", "--status"], {0}),
    ("hpc-dev after rotation", ["validate", "hpc-dev"], {0}),
]


def banner(text: str) -> None:
    line = "─" * min(100, max(60, len(text) + 4))
    sys.stdout.write(f"\n{line}\n  {text}\n{line}\n")
    sys.stdout.flush()


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="remediator-demo-"))
    twin = Twin(workdir / "twin").start()
    azurite, storage = start_azurite()
    failures = 0
    try:
        scenario, targets = demo_scenario()
        twin.load(scenario)
        for target in targets:
            target.setdefault("cyclecloud", {})["ca_bundle"] = str(twin.cyclecloud_ca_path(target["cyclecloud"]["url"]
                                                                                           .removeprefix("https://")))
        env = {**os.environ, **twin.environment(), "TARGETS": json.dumps(targets),
               "KEY_VAULT_URL": f"https://{VAULT_NAME}.vault.azure.net", "AzureWebJobsStorage": storage,
               "PYTHONPATH": str(ROOT)}
        for key in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "HTTP_PROXY", "http_proxy"):
            env.pop(key, None)
        banner("CycleCloud Credential Remediator: demo against the Azure twin (no Azure needed)")
        sys.stdout.write(
            f"Target hpc-prod: app {APP_ID} in tenant {TENANT}, subscription {SUBSCRIPTION}, CycleCloud at "
            f"https://{CC_HOST}.\nBroken on purpose: expired client secret, Contributor ({CONTRIBUTOR}) removed, "
            "CycleCloud holding an older secret than Key Vault.\nTarget hpc-dev: healthy, secret expires in 12 days.\n")
        for title, args, expected in STEPS:
            banner(f"$ python -m shared {' '.join(args)}    # {title}")
            result = subprocess.run([sys.executable, "-m", "shared", *args], cwd=ROOT, env=env, check=False,
                                    timeout=600)
            if result.returncode not in expected:
                failures += 1
                sys.stdout.write(f"\n[demo] unexpected exit code {result.returncode} (expected "
                                 f"{' or '.join(map(str, sorted(expected)))})\n")
        banner("Demo finished" + (f" with {failures} unexpected result(s)" if failures else ": every step as expected"))
    finally:
        twin.stop()
        stop_azurite(azurite)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
