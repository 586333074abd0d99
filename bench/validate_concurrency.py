"""`validate` runs its checks concurrently: with the same delay injected on every request to the Azure twin,
a validation takes about as long as its slowest check, not the sum of all checks.

Prints: wall time of the validation, the slowest check, the sum of all checks' durations, and the ratios
wall/slowest (about 1 when concurrent) and sum/wall (the speed-up over running the checks one after another).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

DELAY_SECONDS = float(os.environ.get("BENCH_VALIDATE_DELAY_SECONDS", "0.1"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


async def _validate(timeout: float) -> Any:
    from shared.context import AppContext
    from shared.diagnosis import validate_target
    from tests.world import TARGET

    async with AppContext.from_environment() as ctx:
        return await validate_target(ctx, TARGET, timeout_seconds=timeout)


def main() -> dict[str, Any]:
    from tests.twin import Fault, Twin
    from tests.world import World

    twin = Twin(Path(tempfile.mkdtemp(prefix="bench-twin-"))).start()
    try:
        world = World()
        twin.load(world.scenario())
        env = {**twin.environment(), **world.env(ca_bundle=str(twin.cyclecloud_ca_path("cyclecloud.contoso.com")))}
        os.environ.update(env)
        os.environ.pop("TARGETS_FILE", None)
        warm = asyncio.run(_validate(120))  # cold imports (msgraph: seconds) are not what this measures
        assert warm.status.value == "healthy", json.dumps(warm.to_dict(), indent=1)[:2000]

        twin.faults.add(Fault(service="*", delay=DELAY_SECONDS, times=None))
        rounds = []
        for _ in range(ROUNDS):
            twin.request_log.clear()
            started = time.perf_counter()
            report = asyncio.run(_validate(120))
            wall = time.perf_counter() - started
            ran = [c for c in report.checks if c.outcome.value != "skipped"]
            slowest = max(ran, key=lambda c: c.duration_ms)
            total = sum(c.duration_ms for c in ran) / 1000
            rounds.append({
                "status": report.status.value,
                "wall_seconds": round(wall, 3),
                "slowest_check": slowest.name,
                "slowest_check_seconds": round(slowest.duration_ms / 1000, 3),
                "sum_of_checks_seconds": round(total, 3),
                "checks_run": len(ran),
                "twin_requests": len(twin.request_log),
                "wall_over_slowest": round(wall / (slowest.duration_ms / 1000), 2),
                "sum_over_wall": round(total / wall, 2),
            })
        best = min(rounds, key=lambda r: r["wall_seconds"])
        result = {"delay_per_request_seconds": DELAY_SECONDS, "rounds": rounds, "best": best}
        print(f"delay {DELAY_SECONDS:g} s on every twin request, {best['checks_run']} checks, "
              f"{best['twin_requests']} requests")
        print(f"  validate (wall)        {best['wall_seconds']:.2f} s")
        print(f"  slowest check          {best['slowest_check_seconds']:.2f} s ({best['slowest_check']})")
        print(f"  sum of all checks      {best['sum_of_checks_seconds']:.2f} s")
        print(f"  wall / slowest         {best['wall_over_slowest']:.2f}  (1.0 = as long as the slowest check)")
        print(f"  sum / wall             {best['sum_over_wall']:.2f}x  (speed-up over one check after another)")
        return result
    finally:
        twin.stop()


if __name__ == "__main__":
    main()
