"""infra/scripts/onboard-tenant.sh against a stand-in `az` that keeps the other tenant's directory and role
assignments in a JSON file: it grants exactly what docs/tenants.md lists, a second run changes nothing, --dry-run
changes nothing, and --offboard removes every grant (and only those)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.fake_az import install_fake_az

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "infra" / "scripts" / "onboard-tenant.sh"
TENANT = "11111111-2222-3333-4444-555555555555"
PRODUCT_APP = "dddddddd-1111-4222-8333-444444444444"
APP = "00000001-aaaa-4bbb-8ccc-000000000001"
SUBSCRIPTION = "00000001-aaaa-4bbb-8ccc-000000000005"
OWNED_BY = "18a4783c-866b-4cc7-a460-3d5e5662c884"

# A stand-in for the few `az` commands the script runs, answering what the real CLI prints with `-o tsv`.
FAKE_AZ = r'''
import re
def out(value):
    print(value)
def save():
    json.dump(state, open(state_path, "w"))
owners = state["owners"]
if args[:2] == ["account", "show"]:
    out(state["tenant"])
elif args[:2] == ["cloud", "show"]:
    out("https://graph.microsoft.com/")
elif args[:3] == ["ad", "sp", "show"]:
    ident = opt("--id")
    if ident == "00000003-0000-0000-c000-000000000000":
        out("graph-sp" if opt("--query") == "id" else "18a4783c-866b-4cc7-a460-3d5e5662c884")
    else:
        out("sp-of-" + ident)
elif args[:3] == ["ad", "sp", "list"]:
    app = re.search(r"appId eq '([^']+)'", opt("--filter")).group(1)
    out(state["sps"].get(app, ""))
elif args[:3] == ["ad", "sp", "create"]:
    state["sps"][opt("--id")] = "sp-" + opt("--id")[:8]
elif args[:3] == ["ad", "sp", "delete"]:
    state["sps"] = {k: v for k, v in state["sps"].items() if v != opt("--id")}
elif args[:2] == ["role", "assignment"]:
    key = [opt("--assignee") or opt("--assignee-object-id"), opt("--role"), opt("--scope")]
    if args[2] == "list":
        out(sum(1 for a in state["roles"] if a[:3] == key))
    elif args[2] == "create":
        state["roles"].append(key + [opt("--condition")])
    elif args[2] == "delete":
        state["roles"] = [a for a in state["roles"] if a[:3] != key]
elif args[:3] == ["ad", "app", "owner"]:
    app, who = opt("--id"), opt("--owner-object-id")
    if args[3] == "list":
        sp = re.search(r"id=='([^']+)'", opt("--query")).group(1)
        out(owners.get(app, []).count(sp))
    elif args[3] == "add":
        owners.setdefault(app, []).append(who)
    elif args[3] == "remove":
        owners[app].remove(who)
elif args[0] == "rest":
    method, uri = opt("--method"), opt("--uri")
    m = re.search(r"servicePrincipals/([^/?]+)/owners", uri)
    if m:
        target = m.group(1)
        if method == "GET":
            sp = re.search(r"id=='([^']+)'", opt("--query")).group(1)
            out(owners.get(target, []).count(sp))
        elif method == "POST":
            owners.setdefault(target, []).append(json.loads(opt("--body"))["@odata.id"].rsplit("/", 1)[1])
        else:
            owners[target].remove(re.search(r"owners/([^/]+)/", uri).group(1))
    else:
        sp = re.search(r"servicePrincipals/([^/?]+)/appRoleAssignments", uri).group(1)
        if method == "GET":
            held = [a for a in state["grants"] if a["principalId"] == sp]
            out(held[0]["id"] if held else "")
        elif method == "POST":
            state["grants"].append({**json.loads(opt("--body")), "id": "grant-1"})
        else:
            state["grants"] = [a for a in state["grants"] if not uri.endswith("/" + a["id"])]
else:
    sys.exit("fake az: unknown command " + " ".join(args))
save()
'''


def run(tmp_path: Path, *extra: str,
        signed_in: str = TENANT) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    env, state_path = install_fake_az(tmp_path, FAKE_AZ, {"tenant": signed_in, "calls": [], "sps": {}, "roles": [],
                                                         "owners": {}, "grants": []})
    env["LANG"] = os.environ.get("LANG", "C")
    done = subprocess.run([shutil.which("bash") or "/bin/bash", str(SCRIPT), "--tenant", TENANT, "--product-app",
                           PRODUCT_APP, *extra], capture_output=True, text=True, env=env, timeout=60, check=False)
    return done, json.loads(state_path.read_text())


ARGS = ("--app-id", APP, "--subscription", SUBSCRIPTION)


def test_onboarding_grants_once_then_changes_nothing_and_offboarding_removes_it(tmp_path: Path) -> None:
    done, state = run(tmp_path, "--dry-run", *ARGS)
    assert done.returncode == 0, done.stderr
    assert state["sps"] == {} and "+ az ad sp create --id " + PRODUCT_APP in done.stdout

    done, state = run(tmp_path, *ARGS)
    assert done.returncode == 0, done.stderr
    sp = state["sps"][PRODUCT_APP]
    assert state["grants"] == [{"principalId": sp, "resourceId": "graph-sp", "appRoleId": OWNED_BY, "id": "grant-1"}]
    assert state["owners"] == {APP: [sp], f"sp-of-{APP}": [sp]}
    scope = f"/subscriptions/{SUBSCRIPTION}"
    roles = {(a[1], a[2]): a[3] for a in state["roles"] if a[0] == sp}
    assert set(roles) == {("acdd72a7-3385-48ef-bd42-f606fba81ae7", scope),
                          ("f58310d9-a9f6-439a-9e8d-f62e7b41a168", scope)}
    condition = roles[("f58310d9-a9f6-439a-9e8d-f62e7b41a168", scope)]
    assert "GuidEquals {b24988ac-6180-42a0-ab88-20f7382dd24c}" in condition and "'ServicePrincipal'" in condition
    assert f'"identity": "{PRODUCT_APP}"' in done.stdout

    calls_before = len(state["calls"])
    done, state = run(tmp_path, *ARGS)
    assert done.returncode == 0 and "+ az" not in done.stdout and done.stdout.count("already") == 5, done.stdout
    writes = [c for c in state["calls"][calls_before:]
              if (c[:1] == ["rest"] and "GET" not in c) or "add" in c or "create" in c or "delete" in c]
    assert writes == []

    done, state = run(tmp_path, "--offboard", *ARGS)
    assert done.returncode == 0, done.stderr
    assert state["sps"] == {} and state["grants"] == [] and state["roles"] == []
    assert state["owners"] == {APP: [], f"sp-of-{APP}": []}


def test_onboarding_refuses_the_wrong_tenant_and_privileged_roles(tmp_path: Path) -> None:
    done, state = run(tmp_path, *ARGS, signed_in="99999999-2222-3333-4444-555555555555")
    assert done.returncode == 2 and f"az login --tenant {TENANT}" in done.stderr
    assert [c for c in state["calls"] if c[:2] != ["account", "show"]] == []
    done, _ = run(tmp_path, *ARGS, "--role", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635")
    assert done.returncode == 2 and "never delegated" in done.stderr
