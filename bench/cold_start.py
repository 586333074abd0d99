"""Cold start: what a fresh Functions worker pays before it can answer.

Each measurement runs in a new interpreter (as a cold worker would), `ROUNDS` times, and reports the median
wall time and peak RSS:
- `import azure.functions`: what any Python Functions app pays (the goal: `import function_app` within 1.5x);
- `import function_app`: what indexing costs (feature modules are imported lazily inside the handlers);
- `import msgraph` and the first `Application` entity parsed (msgraph loads ~1,200 model modules on first
  use: the dominant cost of the first Graph read in a process);
- a baseline interpreter start, to subtract.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))

_MEASURE = """
import json, resource, sys, time
t = time.perf_counter()
{body}
elapsed = time.perf_counter() - t
print(json.dumps({{"seconds": elapsed, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "modules": len(sys.modules)}}))
"""

_APPLICATION_JSON = json.dumps({
    "id": "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a", "appId": "2d4e6f80-1a2b-4c3d-9e8f-a1b2c3d4e5f6",
    "displayName": "cyclecloud-sp",
    "passwordCredentials": [{"keyId": "e1d2c3b4-a596-4788-9a0b-1c2d3e4f5a6b", "hint": "Abc",
                             "displayName": "initial", "endDateTime": "2027-01-01T00:00:00Z"}],
})

CASES: dict[str, str] = {
    "interpreter": "pass",
    "import azure.functions": "import azure.functions",
    "import function_app": "import function_app",
    "import msgraph": "import msgraph.graph_service_client",
    "first Application parse": (
        "from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory\n"
        "from msgraph.generated.models.application import Application\n"
        f"node = JsonParseNodeFactory().get_root_parse_node('application/json', {_APPLICATION_JSON!r}.encode())\n"
        "app = node.get_object_value(Application)\n"
        "assert app.app_id"
    ),
}


def _run(body: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _MEASURE.format(body=body)], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=120)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, body in CASES.items():
        runs = [_run(body) for _ in range(ROUNDS)]
        results[name] = {
            "median_seconds": round(statistics.median(r["seconds"] for r in runs), 3),
            "median_rss_mb": round(statistics.median(r["rss_mb"] for r in runs), 1),
            "modules": int(statistics.median(r["modules"] for r in runs)),
            "rounds": ROUNDS,
        }
        print(f"  {name:26s} {results[name]['median_seconds']:6.3f} s  {results[name]['median_rss_mb']:6.1f} MB  "
              f"{results[name]['modules']:5d} modules", flush=True)
    functions = results["import azure.functions"]["median_seconds"]
    results["function_app_over_azure_functions"] = round(
        results["import function_app"]["median_seconds"] / functions, 2) if functions else None
    base = results["import function_app"]["median_seconds"]
    results["application_parse_over_function_app_import"] = round(
        results["first Application parse"]["median_seconds"] / base, 2) if base else None
    return results


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
