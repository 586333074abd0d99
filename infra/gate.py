"""The infrastructure gate of `make test` (`make infra-check`): no Bicep compiler runs on the build machines, so

1. every `.bicep` file under infra/ must parse with pycep-parser (a syntax error fails the run), and
2. checkov's Bicep policies run on infra/ and must report no failed check except the skips in
   infra/.checkov.yaml (each with its reason). checkov exits 0 on a file it cannot parse, so its parse
   failures are compared with CHECKOV_UNPARSED below instead of trusted.

checkov runs from its own virtual environment (`.venv-checkov`, made by the Makefile: its pinned dependencies
clash with the product's) with every network feature off, so the gate works offline.

Usage: python -m infra.gate [--checkov PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

INFRA = Path(__file__).resolve().parent
ROOT = INFRA.parent
DEFAULT_CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
CHECKOV_TIMEOUT_SECONDS = 120

# Files checkov (which pins an older pycep-parser, 0.5.1) cannot parse, and why that loses no policy check.
# tests/test_infra.py proves the second half: these files declare no resource type checkov has a policy for.
CHECKOV_UNPARSED: dict[str, str] = {
    "main.bicep": "lambdas (map/filter), `.?` and `??` postdate checkov's pycep 0.5.1; main.bicep declares only "
                  "the resource group, everything else is in modules that checkov parses",
    "app/graph.bicep": "the `extension` keyword and lambdas postdate checkov's pycep 0.5.1; it declares only "
                       "Microsoft Graph resources, for which checkov has no policies",
}

# checkov must not phone home: no Prisma Cloud mapping download, no version check, no SCA, no telemetry.
CHECKOV_OFFLINE_ENV: dict[str, str] = {
    "BC_SKIP_MAPPING": "TRUE",
    "CHECKOV_SKIP_DOWNLOAD": "TRUE",
    "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
    "ENABLE_DEFINITION_KEY": "false",
    "SKIP_PARSING_DEPRECATED_CHECKS": "TRUE",
    "PRISMA_API_URL": "",
    "BC_API_KEY": "",
}


def bicep_files(root: Path = INFRA) -> list[Path]:
    return sorted(p for p in root.rglob("*.bicep") if ".venv" not in p.parts)


def syntax_errors(files: Iterable[Path]) -> dict[str, str]:
    """{file: pycep's error} for every file that does not parse (empty when all do)."""
    from pycep import BicepParser

    errors: dict[str, str] = {}
    for path in files:
        try:
            BicepParser().parse(text=path.read_text(encoding="utf-8"))
        except Exception as exc:  # pycep raises lark's exception types; any of them is a syntax failure
            name = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
            errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return errors


def run_checkov(checkov: Path = DEFAULT_CHECKOV, directory: Path = INFRA) -> dict[str, Any]:
    """checkov's JSON report for `directory` (skips from infra/.checkov.yaml), run offline."""
    if not checkov.is_file():
        raise SystemExit(f"{checkov} is missing: run `make infra-check`, which creates .venv-checkov")
    env = {**os.environ, **CHECKOV_OFFLINE_ENV}
    command = [str(checkov), "--config-file", str(INFRA / ".checkov.yaml"), "--directory", str(directory),
               "--framework", "bicep", "--skip-download", "--output", "json", "--quiet", "--compact"]
    # the command is fixed here; only our own paths go into it
    done = subprocess.run(command, capture_output=True, text=True, env=env,  # noqa: S603
                          timeout=CHECKOV_TIMEOUT_SECONDS, check=False)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"checkov produced no JSON report (exit {done.returncode}): {done.stderr[-2000:]}") from None
    if isinstance(report, list):  # one entry per framework; we ask for bicep only
        report = next((r for r in report if r.get("check_type") == "bicep"), {})
    return report if isinstance(report, dict) else {}


def configured_skips() -> list[str]:
    """The check ids infra/.checkov.yaml skips (a flat YAML list; read without a YAML library)."""
    skips: list[str] = []
    for line in (INFRA / ".checkov.yaml").read_text(encoding="utf-8").splitlines():
        item = line.split("#", 1)[0].strip()
        if item.startswith("- "):
            skips.append(item[2:].strip())
    return skips


def checkov_problems(report: Mapping[str, Any], directory: Path = INFRA) -> list[str]:
    """Every reason to fail the gate in a checkov JSON report: failed checks, unexpected parse failures, and
    a run that checked nothing."""
    problems: list[str] = []
    results = report.get("results") or {}
    for check in results.get("failed_checks") or []:
        problems.append(f"{check.get('check_id')} {check.get('check_name')}: {check.get('resource')} in "
                        f"{check.get('file_path')}")
    unparsed: set[str] = set()
    for raw in results.get("parsing_errors") or []:
        path = Path(raw)
        unparsed.add(str(path.relative_to(directory)) if path.is_absolute() else str(path).lstrip("/"))
    for name in sorted(unparsed - set(CHECKOV_UNPARSED)):
        problems.append(f"checkov could not parse {name} (it exits 0 on parse errors; fix the file or add it to "
                        "CHECKOV_UNPARSED with the reason no policy is lost)")
    summary = report.get("summary") or {}
    if not summary.get("passed"):
        problems.append("checkov passed no check at all: it did not really look at the templates")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--checkov", type=Path, default=DEFAULT_CHECKOV)
    args = parser.parse_args(argv)

    files = bicep_files()
    errors = syntax_errors(files)
    for name, error in errors.items():
        print(f"infra-check: {name} does not parse: {error}", file=sys.stderr)
    print(f"infra-check: {len(files) - len(errors)}/{len(files)} Bicep files parse (pycep-parser)")

    report = run_checkov(args.checkov)
    problems = checkov_problems(report)
    summary = report.get("summary") or {}
    print(f"infra-check: checkov passed {summary.get('passed', 0)}, failed {summary.get('failed', 0)}; "
          f"{len(configured_skips())} check(s) skipped with reasons in infra/.checkov.yaml; "
          f"{summary.get('parsing_errors', 0)} file(s) checkov cannot parse, reasons in infra/gate.py")
    for problem in problems:
        print(f"infra-check: {problem}", file=sys.stderr)
    return 1 if errors or problems else 0


if __name__ == "__main__":
    sys.exit(main())
