"""`make bench`: every benchmark module of this package (each exposes `main() -> dict`) in its own fresh
process, then docs/performance.md written from the results (bench/report.py).

  python -m bench                     # the full configuration; writes docs/performance.md
  python -m bench --tiny              # each benchmark on a tiny configuration; writes nothing (make test)
  python -m bench fleet first_call    # only these; writes nothing
  python -m bench --output FILE       # write the report elsewhere
"""

from __future__ import annotations

import argparse
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MARKER = "@@bench-result@@"
# the tree before issue 15 (fan-out, limits, fast first call): the "before" of every before/after ratio
BASELINE_REVISION = "64a410b65e907764e04ac2de0cb800ae2a4ec6f6"

FULL: dict[str, str] = {"BENCH_ROUNDS": "3", "BENCH_FLEET_SIZES": "10,50,200", "BENCH_FLEET_WORKERS": "10",
                        "BENCH_DELAY_SECONDS": "0.05", "BENCH_VALIDATE_DELAY_SECONDS": "0.1",
                        "BENCH_BASELINE": BASELINE_REVISION}
TINY: dict[str, str] = {"BENCH_ROUNDS": "1", "BENCH_FLEET_SIZES": "2", "BENCH_FLEET_WORKERS": "1",
                        "BENCH_DELAY_SECONDS": "0.01", "BENCH_VALIDATE_DELAY_SECONDS": "0.01",
                        "BENCH_BASELINE": ""}


def benchmarks() -> list[str]:
    here = Path(__file__).resolve().parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)])
                  if not m.name.startswith("_") and m.name != "report")


def run_one(name: str, config: dict[str, str]) -> dict[str, Any]:
    """One benchmark in a fresh interpreter; its progress lines pass through, its result comes back as JSON."""
    code = f"import json, bench.{name} as b; print({MARKER!r} + json.dumps(b.main()))"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **config},
                            stdout=subprocess.PIPE, text=True)
    result: dict[str, Any] | None = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(MARKER):
            result = json.loads(line[len(MARKER):])
        else:
            print(line, end="", flush=True)
    if proc.wait() != 0 or result is None:
        raise SystemExit(f"benchmark {name} failed (exit {proc.returncode})")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("only", nargs="*", help="benchmark modules to run (default: all)")
    parser.add_argument("--tiny", action="store_true", help="tiny configurations; write no report")
    parser.add_argument("--output", type=Path, help="where to write the report (default: docs/performance.md)")
    args = parser.parse_args(argv)
    config = {**(TINY if args.tiny else FULL), **{k: v for k, v in os.environ.items() if k.startswith("BENCH_")}}
    names = [n for n in benchmarks() if not args.only or n in args.only]
    results: dict[str, Any] = {}
    for name in names:
        print(f"== {name}", flush=True)
        results[name] = run_one(name, config)
    output = args.output or (None if args.tiny or args.only else ROOT / "docs" / "performance.md")
    if output is not None:
        from bench.report import render

        command = "make bench" if not argv and not sys.argv[1:] else "python -m bench " + " ".join(sys.argv[1:])
        output.write_text(render(results, config, command))
        print(f"wrote {output}")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
