"""The first call of a cold process: `python -m shared validate` and `python -m shared rotate` (a due secret)
against the Azure twin, each in a fresh process, ROUNDS times: wall time, CPU, peak RSS and the requests the
twin saw. With BENCH_BASELINE=<git revision> the same commands also run from that revision's `shared/` (an
exported copy) in the same run, for a before/after ratio on this machine.

Requests per rotation are compared with the protocol's minimum for the benchmark's target (one subscription,
test_successes 2, the replaced credential retiring later), counted from docs/rotation.md's stages: the product
identity's tokens for Graph and Key Vault and Key Vault's 401 challenge (3); plan: read the application, list
and read the stored secret (3); create: add the password, store it as pending (2); test: a token and an ARM
permission check per success (4); push: the CycleCloud password, read, update, read back (4); commit: the new
version, the pending one marked done (2). 18 in all."""

from __future__ import annotations

import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BASELINE = os.environ.get("BENCH_BASELINE", "")
PROTOCOL_MINIMUM_REQUESTS = 18  # see the module docstring


def export_revision(revision: str) -> Path:
    """`shared/` and `function_app.py` of `revision` in a temporary directory (tests/ and bench/ stay current)."""
    where = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    git = shutil.which("git") or "git"
    archive = subprocess.run([git, "archive", revision, "shared", "function_app.py"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(where, filter="data")
    return where


def _measure(args: list[str], env: dict[str, str], code_root: Path) -> dict[str, float]:
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "shared", *args], cwd=code_root,
                            env={**env, "PYTHONPATH": str(code_root)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own CPU and peak RSS
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024,
            "ok": float(proc.returncode == 0)}


def _median(runs: list[dict[str, float]], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 3)


def run_first_calls(rounds: int, baseline: str = "") -> dict[str, Any]:
    from tests.azurite import start_azurite, stop_azurite
    from tests.rotation_support import rotation_env
    from tests.twin import Twin
    from tests.world import TARGET, World

    twin = Twin(Path(tempfile.mkdtemp(prefix="bench-first-"))).start()
    azurite, storage = start_azurite()
    trees = {"now": ROOT}
    if baseline:
        trees["baseline"] = export_revision(baseline)
    cc_ca = str(twin.cyclecloud_ca_path("cyclecloud.contoso.com"))
    results: dict[str, Any] = {"rounds": rounds, "baseline": baseline or None}
    try:
        for tree, code_root in trees.items():
            for command, world in (("validate", World()), ("rotate", World(secret_end="now+10d"))):
                runs = []
                for _ in range(rounds):
                    env = {**os.environ, **twin.environment(), **rotation_env(twin, world, cc_ca, storage)}
                    env["STATE_CONTAINER"] = f"first-{uuid.uuid4().hex[:12]}"
                    env.pop("TARGETS_FILE", None)
                    twin.request_log.clear()
                    run = _measure([command, TARGET], env, code_root)
                    run["requests"] = len(twin.request_log)
                    runs.append(run)
                entry = {"median_seconds": _median(runs, "seconds"), "median_cpu_seconds": _median(runs, "cpu"),
                         "median_rss_mb": round(_median(runs, "rss_mb"), 1),
                         "requests": int(statistics.median(r["requests"] for r in runs)),
                         "succeeded": all(r["ok"] for r in runs)}
                results[f"{command} ({tree})"] = entry
                print(f"  {command:9s} {tree:9s} {entry['median_seconds']:6.2f} s wall  "
                      f"{entry['median_cpu_seconds']:5.2f} s CPU  {entry['median_rss_mb']:6.1f} MB  "
                      f"{entry['requests']:3d} requests", flush=True)
        rotate = results["rotate (now)"]["requests"]
        results["rotation_requests_over_minimum"] = rotate - PROTOCOL_MINIMUM_REQUESTS
        if baseline:
            for command in ("validate", "rotate"):
                before, after = results[f"{command} (baseline)"], results[f"{command} (now)"]
                results[f"{command}_speedup"] = round(before["median_seconds"] / after["median_seconds"], 2)
                results[f"{command}_cpu_ratio"] = round(before["median_cpu_seconds"] / after["median_cpu_seconds"],
                                                        2)
    finally:
        twin.stop()
        stop_azurite(azurite)
    return results


def main() -> dict[str, Any]:
    return run_first_calls(ROUNDS, BASELINE)


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
