"""Crash matrix: a real `python -m shared rotate hpc-prod` process runs one rotation; the twin holds its k-th
outbound request and the test kills the process there, for EVERY k up to the number of requests a full rotation
makes. After the kill the held request is released (so a held addPassword creates its credential after its caller
died, exactly the orphan case) and the crash-time invariants are checked; then the lease the dead process held is
broken (standing in for its 30-second expiry), a fresh process runs to completion, and every DESIGN invariant is
checked on the settled state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.leaks import assert_no_leak
from tests.rotation_invariants import check_invariants, snapshot
from tests.rotation_support import rotation_env
from tests.twin import Fault, Twin
from tests.world import CC_PASSWORD, CURRENT_SECRET, KEY_ID, TARGET, World

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
INITIAL = {KEY_ID}
HOLD_TIMEOUT = 60.0


def _process_env(twin: Twin, env: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "PYTEST_"))}
    return {**base, **twin.environment(), **env, "PYTHONUNBUFFERED": "1"}


def _start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([PYTHON, "-m", "shared", "rotate", TARGET, "--json"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _break_lease(env: dict[str, str]) -> None:
    """The dead process's lease would expire within 30 s; break it instead of waiting."""
    # imported here: azure.storage.blob imports aiohttp, whose default SSL context is fixed at import time and
    # must see the twin's CA (SSL_CERT_FILE), which the `twin` fixture sets only when a test starts
    from azure.storage.blob import BlobLeaseClient, BlobServiceClient

    service = BlobServiceClient.from_connection_string(env["AzureWebJobsStorage"])
    blob = service.get_blob_client(env["STATE_CONTAINER"], f"rotation/{TARGET}.lock")
    try:
        if blob.get_blob_properties().lease.state == "leased":
            BlobLeaseClient(blob).break_lease(lease_break_period=0)
    except Exception as exc:  # no lock blob yet: the process died before taking the lease
        if "BlobNotFound" not in str(exc) and "ContainerNotFound" not in str(exc):
            raise


def _wait_logged(twin: Twin, seq: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r.seq == seq for r in twin.request_log):
            return
        time.sleep(0.02)


def _fresh_world(twin: Twin, world: World, cc_ca: str, azurite: str) -> dict[str, str]:
    twin.reset()
    return rotation_env(twin, world, cc_ca, azurite)


def _run_to_completion(twin: Twin, env: dict[str, str]) -> tuple[int, str]:
    proc = _start(_process_env(twin, env))
    out, err = proc.communicate(timeout=180)
    return proc.returncode, out + err


@pytest.mark.slow
def test_crash_at_every_request_boundary_keeps_every_invariant(twin: Twin, cc_ca: str, azurite: str) -> None:
    world = World(secret_end="now+10d")
    secrets = [CURRENT_SECRET, CC_PASSWORD]

    # the reference run: how many requests a full rotation makes
    env = _fresh_world(twin, world, cc_ca, azurite)
    code, output = _run_to_completion(twin, env)
    assert code == 0 and '"status": "rotated"' in output, output
    total = len(twin.request_log)
    assert_no_leak(output, *secrets, *snapshot(twin).all_values(), min_length=6)
    check_invariants(twin, settled=True, initial_key_ids=INITIAL, where="reference")

    started = time.monotonic()
    held_at: list[str] = []
    for k in range(1, total + 1):
        env = _fresh_world(twin, world, cc_ca, azurite)
        twin.faults.add(Fault(nth=k, hold=True))
        proc = _start(_process_env(twin, env))
        held = twin.faults.wait_held(HOLD_TIMEOUT)
        if not held:  # this run made fewer requests than the reference; it must have finished cleanly
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, f"k={k}: {out}{err}"
            check_invariants(twin, settled=True, initial_key_ids=INITIAL, where=f"k={k} (not reached)")
            continue
        held_at.append(f"{k}:{held[0].service}.{held[0].operation}")
        assert held[0].seq == k, f"k={k}: the twin held request {held[0].seq}, not the {k}-th"
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, f"k={k}: the process was not killed at the held request"
        twin.faults.release()
        _wait_logged(twin, held[0].seq)
        assert_no_leak([out, err], *secrets, *snapshot(twin).all_values(), min_length=6)
        check_invariants(twin, settled=False, initial_key_ids=INITIAL, where=f"crash at k={k} ({held_at[-1]})")

        twin.faults.clear()
        _break_lease(env)
        code, output = _run_to_completion(twin, env)
        assert code == 0, f"k={k} ({held_at[-1]}): recovery run failed: {output}"
        assert_no_leak(output, *secrets, *snapshot(twin).all_values(), min_length=6)
        snap = check_invariants(twin, settled=True, initial_key_ids=INITIAL, where=f"after recovery, k={k}")
        # the rotation finished: the person's credential (never the product's to remove) and the new one, which
        # Key Vault and CycleCloud hold; no orphan is left behind
        assert snap.credentials[0]["key_id"] == KEY_ID and len(snap.credentials) == 2, \
            f"k={k}: {snap.credentials}"
        assert snap.cyclecloud_secret != CURRENT_SECRET
    assert len(held_at) == total, f"only {len(held_at)} of {total} request boundaries were crashed at"
    elapsed = time.monotonic() - started
    print(f"\ncrash matrix: {total} request boundaries, {len(held_at)} crashes, {elapsed:.0f} s; "
          f"held: {', '.join(held_at)}")
