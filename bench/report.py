"""docs/performance.md from `python -m bench`'s results: the machine, the exact command and configuration, the
medians and ratios, and for each of issue 15's goals whether this run met it."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TIMING_FILE = Path(__file__).resolve().parent.parent / ".pytest-timing.json"  # written by tests/conftest.py


def _machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "?")
    except OSError:
        pass
    return (f"{platform.platform()}; {os.cpu_count()} CPUs ({cpu}); Python {sys.version.split()[0]}; "
            f"load average at the end {load}")


def _verdict(met: bool | None) -> str:
    return "not measured" if met is None else ("**met**" if met else "**not met**")


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def goals(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(goal, this run's number, verdict) for each of the issue's goals."""
    out: list[tuple[str, str, str]] = []
    ratio = _get(results, "cold_start", "function_app_over_azure_functions")
    out.append(("cold `import function_app` <= 1.5x `import azure.functions`", f"{ratio}x",
                _verdict(None if ratio is None else ratio <= 1.5)))
    speedup = _get(results, "first_call", "validate_speedup")
    out.append(("cold first `validate` >= 2x faster than before issue 15 (same run)", f"{speedup}x",
                _verdict(None if speedup is None else speedup >= 2)))
    over = _get(results, "first_call", "rotation_requests_over_minimum")
    out.append(("requests per rotation <= protocol minimum + 2", f"minimum + {over}",
                _verdict(None if over is None else over <= 2)))
    fleet = _get(results, "fleet", "fleets", "200") or {}
    fan, speed = fleet.get("fanout") or {}, fleet.get("speedup")
    if speed is None and fleet.get("speedup_extrapolated"):
        speed = fleet["speedup_extrapolated"]
        number = f"{speed}x (concurrency 1 extrapolated linearly from the largest fleet run at concurrency 1)"
    else:
        number = f"{speed}x" if speed else "no 200 run"
    out.append(("200 targets rotated >= 10x faster than concurrency 1", number,
                _verdict(None if speed is None else speed >= 10)))
    out.append(("zero 429s in the fan-out", str(fan.get("429s", "-")),
                _verdict(None if not fan else fan.get("429s") == 0)))
    out.append(("peak RSS under 250 MB per instance", f"{fan.get('peak_rss_mb', '-')} MB",
                _verdict(None if not fan else fan["peak_rss_mb"] < 250)))
    now = _get(results, "fleet", "health", "now", "cpu_seconds_per_target")
    before = _get(results, "fleet", "health", "baseline", "cpu_seconds_per_target")
    halved = None if now is None or before is None else before / now >= 2
    out.append(("CPU a health check costs per target at least halved", f"{before} s -> {now} s", _verdict(halved)))
    return out


def render(results: dict[str, Any], config: dict[str, str], command: str) -> str:
    lines = ["# Performance", "",
             f"Written by `{command}` (bench/, issue 15) on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.",
             f"Machine: {_machine()}.",
             "Configuration: " + ", ".join(f"`{k}={v}`" for k, v in sorted(config.items())) + ".",
             "Every benchmark runs in a fresh process; every measured command in a fresh process of its own "
             "(medians over BENCH_ROUNDS). The Azure twin (tests/twin) answers every request; Azurite holds the "
             "journals and the queue. \"Before\" is BENCH_BASELINE's `shared/` run in the same session.", "",
             "## Goals", "", "| goal | this run | verdict |", "|---|---|---|"]
    lines += [f"| {goal} | {number} | {verdict} |" for goal, number, verdict in goals(results)]
    cold = results.get("cold_start") or {}
    if cold:
        lines += ["", "## Cold imports", "", "| import | median s | RSS MB | modules |", "|---|---|---|---|"]
        lines += [f"| {name} | {v['median_seconds']} | {v['median_rss_mb']} | {v['modules']} |"
                  for name, v in cold.items() if isinstance(v, dict)]
        lines += ["", f"`import function_app` / `import azure.functions`: "
                      f"{cold.get('function_app_over_azure_functions')}x; the first msgraph `Application` parse "
                      f"costs {cold.get('application_parse_over_function_app_import')}x the app's import."]
    first = results.get("first_call") or {}
    if first:
        lines += ["", "## First call in a cold process", "",
                  "| command (tree) | wall s | CPU s | peak RSS MB | requests | succeeded |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {name} | {v['median_seconds']} | {v['median_cpu_seconds']} | {v['median_rss_mb']} | "
                  f"{v['requests']} | {v['succeeded']} |" for name, v in first.items() if isinstance(v, dict)]
        lines += ["", f"Requests per rotation over the protocol minimum (bench/first_call.py lists it): "
                      f"{first.get('rotation_requests_over_minimum')}. Speed-up over the baseline: validate "
                      f"{first.get('validate_speedup')}x, rotate {first.get('rotate_speedup')}x."]
    fleet = results.get("fleet") or {}
    if fleet:
        lines += ["", f"## Fleet ({fleet.get('delay_per_request_seconds')} s on every request, "
                      f"{fleet.get('subscriptions')} subscriptions, one tenant)", "",
                  f"Concurrency 1: the CLI's in-process sweep with MAX_CONCURRENCY=1. Fan-out: the timer queues one "
                  f"operation per target; fresh worker processes (instances: one per host.json batch the queue "
                  f"holds, as target-based scaling decides, at most {fleet.get('workers')}) drain the "
                  f"queue as the host does with host.json's batchSize and newBatchThreshold (at most "
                  f"{fleet.get('per_worker')} messages at once each).", "",
                  "| targets | concurrency 1 s | fan-out s | instances | speed-up | fan-out peak RSS MB | rotated "
                  "| 429s | CPU s (concurrency 1 / fan-out, all workers) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for size, entry in (fleet.get("fleets") or {}).items():
            seq, fan = entry.get("sequential") or {}, entry.get("fanout") or {}
            extrapolated = entry.get("sequential_extrapolated_seconds")
            speedup = entry.get("speedup") or entry.get("speedup_extrapolated", "-")
            lines.append(f"| {size} | {seq.get('seconds') or f'~{extrapolated} (extrapolated)'} | "
                         f"{fan.get('seconds')} | {fan.get('instances', '-')} | {speedup} | {fan.get('peak_rss_mb')} | "
                         f"{fan.get('rotated')} | "
                         f"{fan.get('429s')} | {seq.get('cpu_seconds', '-')} / {fan.get('cpu_seconds', '-')} |")
        largest = max((fleet.get("fleets") or {"0": {}}).items(), key=lambda item: int(item[0]))[1]
        fan = largest.get("fanout") or {}
        if fan.get("all_cpu_seconds"):
            cores = os.cpu_count() or 1
            lines.append(f"\nWhere the fan-out of {largest['targets']} targets spent this machine's CPU: "
                         f"{fan['product_cpu_seconds']} s in the product's processes (the timer and the "
                         f"{fan.get('instances')} workers, each paying a cold start), {fan['twin_cpu_seconds']} s "
                         f"in the twin and {fan['azurite_cpu_seconds']} s in Azurite, {fan['all_cpu_seconds']} s "
                         f"in all: on {cores} CPUs at least {fan['all_cpu_seconds'] / cores:.1f} s of the "
                         f"{fan['seconds']} s it took. The fan-out is bound by this machine's CPU, not by the "
                         "requests' latency: on the platform each instance has CPUs of its own, and Azure's "
                         "services run elsewhere.")
        for tree, health in (fleet.get("health") or {}).items():
            lines.append(f"\nHealth check ({tree}): {health['cpu_seconds_per_target']} s CPU and "
                         f"{health['wall_seconds_per_target']} s wall per target over {health['targets']} targets.")
    validate = _get(results, "validate_concurrency", "best")
    if validate:
        lines += ["", f"## Validate with {_get(results, 'validate_concurrency', 'delay_per_request_seconds')} s on "
                      "every request", "",
                  f"Wall {validate['wall_seconds']} s; slowest check {validate['slowest_check_seconds']} s "
                  f"({validate['slowest_check']}); wall / slowest {validate['wall_over_slowest']}; the checks "
                  f"one after another would take {validate['sum_over_wall']}x as long ({validate['twin_requests']} "
                  "requests)."]
    first_rotate = [_get(results, "first_call", f"rotate ({tree})", "median_cpu_seconds")
                    for tree in ("now", "baseline")]
    lines += ["", "## The test suite", "", *suite_lines(*first_rotate)]
    return "\n".join(lines)


def suite_lines(rotate_cpu: float | None, baseline_cpu: float | None, timing_file: Path = TIMING_FILE) -> list[str]:
    """The last whole `make test` on this machine (tests/conftest.py writes .pytest-timing.json)."""
    try:
        timing = json.loads(timing_file.read_text())
    except (OSError, ValueError):
        timing = None
    lines = []
    if timing:
        load = ", ".join(str(x) for x in timing.get("load_average", []))
        lines += [f"The last whole `make test` on this machine ({timing['finished']}, {timing['cpus']} CPUs, load "
                  f"average at its end {load}): **{timing['tests']} tests in {timing['seconds']} s** "
                  f"({timing['failed']} failed). Its slowest tests:", "", "| test | s |", "|---|---|"]
        lines += [f"| `{t['test']}` | {t['seconds']} |" for t in timing.get("slowest", [])]
        lines.append("")
    else:
        lines += ["No whole `make test` has run in this checkout yet (it writes .pytest-timing.json).", ""]
    lines += ["Every case is kept. The crash matrices (tests/test_rotation_crash.py and the migration's) start fresh "
              "`python -m shared` processes and kill each at one request; a case costs a cold start, and that got "
              f"cheaper for production's sake: a whole first rotation costs {rotate_cpu} s of CPU now and "
              f"{baseline_cpu} s before issue 15 (above), most of the difference imports and msgraph's "
              "`Application` model graph (the Graph adapter parses the small models of "
              "shared/adapters/graph_models.py; the CLI imports a command's modules only when it runs).", ""]
    return lines
