"""Fleet: the rotation sweep over 10, 50 and 200 due targets (spread over 20 subscriptions) against the Azure
twin with a fixed delay on every request, two ways, each in fresh processes:
- concurrency 1: one process runs the CLI's in-process sweep (`rotate_all_due`, MAX_CONCURRENCY=1);
- fan-out: the timer's `enqueue_due_rotations` queues one operation per target, then fresh processes (instances:
  as many as the queue holds host.json batches, as target-based scaling decides, at most WORKERS) each drain the
  queue as the Functions host would with host.json's batchSize and newBatchThreshold (bench/_fleet_worker.py),
  every one with its own share of the per-service limits (shared/limits.py) for WORKERS instances.
Every measured run gets a new Azurite (what earlier runs left in its memory would slow a later one down).
Reports wall time, the speed-up, peak RSS per process, the requests and the 429s the twin answered, the CPU the
product, the twin and Azurite used during the fan-out, and (for
the health check) the CPU one target's check costs (also from BENCH_BASELINE's `shared/`, when set).

The twin has one tenant (the product's home identity reaches one tenant without the cross-tenant set-up), so
every target shares one Graph gate: the strictest case for the per-tenant Graph limit."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DELAY_SECONDS = float(os.environ.get("BENCH_DELAY_SECONDS", "0.05"))
SIZES = [int(n) for n in os.environ.get("BENCH_FLEET_SIZES", "10,50,200").split(",") if n]
WORKERS = int(os.environ.get("BENCH_FLEET_WORKERS", "10"))
SEQUENTIAL_LIMIT = int(os.environ.get("BENCH_SEQUENTIAL_MAX", "200"))  # larger fleets: extrapolated
SUBSCRIPTIONS = 20


def _guid(n: int, kind: int) -> str:
    return str(uuid.UUID(int=(kind << 96) | n, version=4))


def fleet_scenario(count: int) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """The twin's scenario, the TARGETS entries, and the CycleCloud hosts (one server per 10 targets)."""
    from tests.world import (
        CC_PASSWORD,
        CC_PASSWORD_SECRET,
        CC_USER,
        FUNCTION_CLIENT_ID,
        FUNCTION_OBJECT_ID,
        TENANT,
        VAULT_NAME,
        VAULT_RESOURCE_ID,
        account_record,
    )

    subscriptions = [_guid(i, 1) for i in range(SUBSCRIPTIONS)]
    hosts = [f"cc{i:02d}.contoso.com" for i in range((count + 9) // 10)]
    scenario: dict[str, Any] = {
        "tenants": [{"id": TENANT, "domain": "contoso.onmicrosoft.com"}],
        "applications": [],
        "principals": [{"object_id": FUNCTION_OBJECT_ID, "tenant_id": TENANT, "app_id": FUNCTION_CLIENT_ID,
                        "display_name": "func-remediator", "function_identity": True,
                        "graph_app_roles": ["Application.ReadWrite.OwnedBy"]}],
        "subscriptions": [{"id": s, "tenant_id": TENANT, "display_name": f"HPC {i}"}
                          for i, s in enumerate(subscriptions)],
        "role_assignments": [{"scope": VAULT_RESOURCE_ID, "role": "Key Vault Secrets Officer",
                              "principal_id": FUNCTION_OBJECT_ID}],
        "virtual_machines": [],
        "vaults": [{"name": VAULT_NAME, "tenant_id": TENANT, "resource_id": VAULT_RESOURCE_ID,
                    "secrets": {CC_PASSWORD_SECRET: [{"value": CC_PASSWORD}]}}],
        "cyclecloud_servers": [{"host": h, "users": [{"name": CC_USER, "password": CC_PASSWORD}], "accounts": []}
                               for h in hosts],
    }
    for s in subscriptions:
        scenario["role_assignments"] += [
            {"scope": f"/subscriptions/{s}", "role": "Reader", "principal_id": FUNCTION_OBJECT_ID},
            {"scope": f"/subscriptions/{s}", "role": "Role Based Access Control Administrator",
             "principal_id": FUNCTION_OBJECT_ID}]
    targets = []
    for i in range(count):
        name, sub, host = f"fleet-{i:03d}", subscriptions[i % SUBSCRIPTIONS], hosts[i // 10]
        app_id, sp = _guid(i, 2), _guid(i, 3)
        secret, key_id = f"Fl{i:03d}8Q~" + _guid(i, 4), _guid(i, 5)
        credential = {"key_id": key_id, "secret": secret, "display_name": f"initial {name}", "start": "now-25d",
                      "end": "now+5d"}  # due: inside every target's lead time
        scenario["applications"].append({
            "object_id": _guid(i, 6), "app_id": app_id, "tenant_id": TENANT, "display_name": f"cyclecloud-{name}",
            "owners": [FUNCTION_OBJECT_ID], "password_credentials": [credential],
            "service_principal": {"object_id": sp}})
        scenario["role_assignments"].append({"scope": f"/subscriptions/{sub}", "role": "Contributor",
                                             "principal_id": sp})
        secret_name = f"cyclecloud-{name}-secret"
        scenario["vaults"][0]["secrets"][secret_name] = [
            {"value": secret, "tags": {"keyId": key_id, "appId": app_id}, "expires": "now+5d"}]
        record = account_record(secret, app_id=app_id, subscription_id=sub)
        record["Name"] = f"acct-{i:03d}"
        next(s for s in scenario["cyclecloud_servers"] if s["host"] == host)["accounts"].append(record)
        targets.append({"name": name, "mode": "service_principal", "tenant_id": TENANT, "subscription_ids": [sub],
                        "app_id": app_id, "secret_name": secret_name,
                        "rotation": {"lifetime_days": 30, "rotate_before_days": 7, "grace_hours": 24,
                                     "test_successes": 1, "test_timeout_seconds": 30},
                        "cyclecloud": {"url": f"https://{host}", "account": f"acct-{i:03d}", "user": CC_USER,
                                       "password_secret": CC_PASSWORD_SECRET, "transport": "rest"}})
    return scenario, targets, hosts


_SWEEP = """
import asyncio, json, os, resource, time
from shared.context import AppContext
from shared.rotation import rotate_all_due
async def run():
    async with AppContext.from_environment() as ctx:
        return await rotate_all_due(ctx, deadline_seconds=600)
t = time.perf_counter()
sweep = asyncio.run(run())
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": time.perf_counter() - t, "cpu": usage.ru_utime + usage.ru_stime,
                  "rss_mb": usage.ru_maxrss / 1024, "outcomes": {n: o["status"] for n, o in sweep.outcomes.items()},
                  "errors": {n: e.get("code") for n, e in sweep.errors.items()}}), flush=True)
os._exit(0)  # as the fan-out's processes: the interpreter's teardown is not the sweep's time
"""

_ENQUEUE = """
import asyncio, json, os
from shared.context import AppContext
from shared.fanout import enqueue_due_rotations
async def run():
    async with AppContext.from_environment() as ctx:
        return await enqueue_due_rotations(ctx)
print(json.dumps({"summary": asyncio.run(run()).summary()}), flush=True)
os._exit(0)  # the timer's instance goes on running: its interpreter's teardown is not the fleet's time
"""

_HEALTH = """
import asyncio, json, resource, time
from shared.context import AppContext
try:
    from shared.diagnosis.health import check_target_health
except ImportError:  # a baseline from before the fan-out: the sweep's own per-target function
    from shared.diagnosis.health import _check_one
    async def check_target_health(ctx, target):
        return await _check_one(ctx, target, asyncio.Semaphore(1))
async def run():
    async with AppContext.from_environment() as ctx:
        first = ctx.settings.targets[0]
        await check_target_health(ctx, first)  # warm: imports and the first tokens are not per target
        before = resource.getrusage(resource.RUSAGE_SELF)
        t = time.perf_counter()
        results = [await check_target_health(ctx, t) for t in ctx.settings.targets[1:]]
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return {"targets": len(results), "cpu_per_target": cpu / max(1, len(results)),
                "wall_per_target": (time.perf_counter() - t) / max(1, len(results)),
                "statuses": sorted({r.status for r in results})}
print(json.dumps(asyncio.run(run())))
"""


def _python(code: str, env: dict[str, str], timeout: float = 3600, cwd: Path = ROOT) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark process failed ({out.returncode}): {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _fan_out(env: dict[str, str], count: int) -> list[dict[str, Any]]:
    """The timer's enqueue, then `count` workers (instances) that drain the queue and stop when it is empty."""
    _python(_ENQUEUE, env)
    where = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    logs = [open(where / f"worker-{n}.log", "w+") for n in range(count)]  # closed once each worker ended
    procs = [subprocess.Popen([sys.executable, "-m", "bench._fleet_worker"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=log, text=True) for log in logs]
    results = []
    for proc, log in zip(procs, logs, strict=True):
        out, _ = proc.communicate(timeout=3600)
        log.seek(0)
        err = log.read()
        log.close()
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed ({proc.returncode}): {err[-2000:]}")
        results.append(dict(json.loads(out.strip().splitlines()[-1])))
    return results


def _cpu_of(pids: list[int]) -> float:
    """CPU seconds the running processes `pids` used so far (Linux /proc; 0 elsewhere)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            continue
    return total


class CpuMeter:
    """The CPU of everything a fan-out runs on this machine: the timer and the workers (this process's children),
    the twin (threads of this process) and Azurite (its node processes)."""

    def __init__(self, azurite_pids: list[int]) -> None:
        self._pids = azurite_pids
        self._start = self._now()

    def _now(self) -> tuple[float, float, float]:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return (children.ru_utime + children.ru_stime, own.ru_utime + own.ru_stime, _cpu_of(self._pids))

    def used(self) -> dict[str, float]:
        end = self._now()
        product, twin, azurite = (round(b - a, 1) for a, b in zip(self._start, end, strict=True))
        return {"product_cpu_seconds": product, "twin_cpu_seconds": twin, "azurite_cpu_seconds": azurite,
                "all_cpu_seconds": round(product + twin + azurite, 1)}


def _operations(storage: str, container: str) -> dict[str, int]:
    """How the queued operations ended (their records in the state container)."""
    from azure.storage.blob import BlobServiceClient

    client = BlobServiceClient.from_connection_string(storage).get_container_client(container)
    counts = {"rotated": 0, "unfinished": 0, "failed": 0}
    for blob in client.list_blobs(name_starts_with="operations/"):
        if blob.name.count("/") != 1:
            continue  # active pointers and poison markers
        record = json.loads(client.download_blob(blob.name).readall())
        if record["state"] == "running":
            counts["unfinished"] += 1
        elif (record.get("outcome") or {}).get("status") == "rotated":
            counts["rotated"] += 1
        else:
            counts["failed"] += 1
    return counts


def _statuses(twin: Any) -> dict[str, int]:
    return {"requests": len(twin.request_log), "429s": sum(1 for r in twin.request_log if r.status == 429)}


class FreshStorage:
    """A new Azurite for every measured run: what the earlier runs left in its memory does not slow a later one."""

    def __init__(self) -> None:
        self._azurite: Any = None
        self.connection = ""

    def renew(self) -> str:
        from tests.azurite import start_azurite

        self.stop()
        self._azurite, self.connection = start_azurite()
        return self.connection

    def pids(self) -> list[int]:
        return [proc.pid for proc in self._azurite.processes] if self._azurite else []

    def stop(self) -> None:
        from tests.azurite import stop_azurite

        if self._azurite is not None:
            stop_azurite(self._azurite)
            self._azurite = None


def run_fleet(sizes: list[int], workers: int, delay: float, sequential_max: int = SEQUENTIAL_LIMIT,
              health_targets: int = 11, baseline: str = "") -> dict[str, Any]:
    from tests.twin import Fault, Twin

    twin = Twin(Path(tempfile.mkdtemp(prefix="bench-fleet-"))).start()
    storage = FreshStorage()
    from bench._fleet_worker import queue_settings

    batch_size, new_batch_threshold = queue_settings()
    results: dict[str, Any] = {"delay_per_request_seconds": delay, "workers": workers,
                               "per_worker": batch_size + new_batch_threshold,
                               "subscriptions": SUBSCRIPTIONS, "fleets": {}}
    try:
        per_target = 0.0
        for size in sizes:
            scenario, targets, hosts = fleet_scenario(size)
            for host in hosts:
                for t in targets:
                    if t["cyclecloud"]["url"].endswith(host):
                        t["cyclecloud"]["ca_bundle"] = str(twin.cyclecloud_ca_path(host))

            def fresh(suffix: str, scenario: dict[str, Any] = scenario,
                      targets: list[dict[str, Any]] = targets) -> dict[str, str]:
                twin.load(scenario)
                twin.faults.add(Fault(service="*", delay=delay, times=None))
                twin.request_log.clear()
                run = uuid.uuid4().hex[:10]
                env = {**os.environ, **twin.environment(), "TARGETS": json.dumps(targets),
                       "KEY_VAULT_URL": "https://kv-remediator.vault.azure.net", "AZURE_CLOUD": "AzureCloud",
                       "AzureWebJobsStorage": storage.renew(), "STATE_CONTAINER": f"fleet-{suffix}-{run}",
                       "CONTINUATION_QUEUE": f"fleet-{suffix}-{run}", "CONTINUATION_BACKOFF_SECONDS": "1"}
                env.pop("TARGETS_FILE", None)
                return env

            entry: dict[str, Any] = {"targets": size}
            if size <= sequential_max:
                env = fresh("seq")
                env["MAX_CONCURRENCY"] = "1"
                started = time.perf_counter()
                sweep = _python(_SWEEP, env)
                entry["sequential"] = {"seconds": round(time.perf_counter() - started, 2),
                                       "rss_mb": round(sweep["rss_mb"], 1),
                                       "cpu_seconds": round(sweep["cpu"], 1),
                                       "rotated": sum(1 for s in sweep["outcomes"].values() if s == "rotated"),
                                       "errors": len(sweep["errors"]), **_statuses(twin)}
            env = fresh("fan")
            env["MAXIMUM_INSTANCE_COUNT"] = str(workers)  # each worker takes its share of the service limits
            # target-based scaling: as many instances as the queue holds batches, at most the deployment's bound
            instances = min(workers, -(-size // batch_size))
            meter = CpuMeter(storage.pids())
            started = time.perf_counter()
            done = _fan_out(env, instances)
            seconds = time.perf_counter() - started
            cpu = meter.used()
            entry["fanout"] = {"seconds": round(seconds, 2), "instances": instances, **cpu,
                               "peak_rss_mb": round(max(w["rss_mb"] for w in done), 1),
                               "messages": sum(w["messages"] for w in done),
                               "cpu_seconds": round(sum(w["cpu"] for w in done), 1),  # all workers together
                               **_operations(storage.connection, env["STATE_CONTAINER"]), **_statuses(twin)}
            if "sequential" in entry:
                entry["speedup"] = round(entry["sequential"]["seconds"] / entry["fanout"]["seconds"], 1)
                per_target = entry["sequential"]["seconds"] / size
            elif per_target:  # concurrency 1 is linear in the targets: extrapolated from the largest one run
                entry["sequential_extrapolated_seconds"] = round(per_target * size, 1)
                entry["speedup_extrapolated"] = round(per_target * size / entry["fanout"]["seconds"], 1)
            results["fleets"][str(size)] = entry
            print(f"  {size:4d} targets: " + json.dumps(entry), flush=True)
        scenario, targets, hosts = fleet_scenario(health_targets)
        for t in targets:
            t["cyclecloud"]["ca_bundle"] = str(twin.cyclecloud_ca_path(t["cyclecloud"]["url"].split("//")[1]))
        twin.load(scenario)
        twin.request_log.clear()
        env = {**os.environ, **twin.environment(), "TARGETS": json.dumps(targets),
               "KEY_VAULT_URL": "https://kv-remediator.vault.azure.net", "AZURE_CLOUD": "AzureCloud",
               "AzureWebJobsStorage": storage.renew(),
               "STATE_CONTAINER": f"fleet-health-{uuid.uuid4().hex[:10]}"}
        env.pop("TARGETS_FILE", None)
        trees = {"now": ROOT}
        if baseline:
            from bench.first_call import export_revision

            trees["baseline"] = export_revision(baseline)
        results["health"] = {}
        for tree, code_root in trees.items():
            twin.request_log.clear()
            health = _python(_HEALTH, {**env, "PYTHONPATH": str(code_root)}, cwd=code_root)
            results["health"][tree] = {"cpu_seconds_per_target": round(health["cpu_per_target"], 3),
                                       "wall_seconds_per_target": round(health["wall_per_target"], 3),
                                       "targets": health["targets"], "statuses": health["statuses"]}
            print(f"  health check ({tree}): " + json.dumps(results["health"][tree]), flush=True)
    finally:
        twin.stop()
        storage.stop()
    return results


def main() -> dict[str, Any]:
    return run_fleet(SIZES, WORKERS, DELAY_SECONDS, baseline=os.environ.get("BENCH_BASELINE", ""))


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
