"""`make bench` stays runnable: every benchmark runs on a tiny configuration (fresh processes, the twin, Azurite)
and the report renders from its results with a verdict per goal. The real numbers come from `make bench`
(docs/performance.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.__main__ import MARKER, benchmarks
from bench.report import goals, render

ROOT = Path(__file__).resolve().parent.parent


def test_every_benchmark_runs_on_a_tiny_configuration(tmp_path: Path) -> None:
    report = tmp_path / "performance.md"
    out = subprocess.run([sys.executable, "-m", "bench", "--tiny", "--output", str(report)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout[out.stdout.rindex("\n{") + 1:])
    assert set(results) == set(benchmarks()) == {"cold_start", "first_call", "fleet", "validate_concurrency"}
    assert results["first_call"]["validate (now)"]["succeeded"] and results["first_call"]["rotate (now)"]["succeeded"]
    fleet = results["fleet"]["fleets"]["2"]
    assert fleet["sequential"]["rotated"] == fleet["fanout"]["rotated"] == 2 and fleet["fanout"]["unfinished"] == 0
    assert results["validate_concurrency"]["best"]["status"] == "healthy"
    text = report.read_text()
    assert "## Goals" in text and "| cold `import function_app` <= 1.5x `import azure.functions` |" in text
    assert MARKER not in text


def test_the_report_says_which_goal_is_met() -> None:
    results = {"cold_start": {"function_app_over_azure_functions": 1.2},
               "first_call": {"validate_speedup": 1.1, "rotation_requests_over_minimum": 5},
               "fleet": {"fleets": {"200": {"speedup": 12.0, "fanout": {"429s": 0, "peak_rss_mb": 120.0}}},
                         "health": {tree: {"cpu_seconds_per_target": cpu, "wall_seconds_per_target": 0.3,
                                           "targets": 10} for tree, cpu in (("now", 0.05), ("baseline", 0.06))}}}
    verdicts = [verdict for _, _, verdict in goals(results)]
    assert verdicts == ["**met**", "**not met**", "**not met**", "**met**", "**met**", "**met**", "**not met**"]
    assert "| 200 targets rotated >= 10x faster than concurrency 1 | 12.0x | **met** |" in render(results, {}, "x")


def test_the_report_gives_the_suites_time_from_the_last_whole_run(tmp_path: Path) -> None:
    from bench.report import suite_lines

    timing = tmp_path / "timing.json"
    assert "No whole `make test`" in "\n".join(suite_lines(0.8, 2.3, timing))
    timing.write_text(json.dumps({"finished": "2026-12-01 12:00 UTC", "seconds": 612, "tests": 820, "failed": 0,
                                  "exit_status": 0, "cpus": 2, "load_average": [1.5, 1.2, 1.0],
                                  "slowest": [{"test": "tests/test_rotation_crash.py::test_matrix", "seconds": 71.0}]}))
    text = "\n".join(suite_lines(0.8, 2.3, timing))
    assert "**820 tests in 612 s** (0 failed)" in text
    assert "| `tests/test_rotation_crash.py::test_matrix` | 71.0 |" in text
    assert "costs 0.8 s of CPU now and 2.3 s before issue 15" in text
