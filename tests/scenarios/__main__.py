"""`python -m tests.scenarios [--write] [NAME ...]`: run the guide's scenarios against a private twin and
Azurite; print each page (default) or write docs/scenarios/ (--write), or report drift (--check, exit 1)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.scenarios", description=__doc__)
    parser.add_argument("names", nargs="*", help="scenario names (default: all)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write docs/scenarios/ from the CLI's output")
    mode.add_argument("--check", action="store_true", help="exit 1 when a page differs from the CLI's output")
    args = parser.parse_args(argv)

    from tests.twin import Twin

    twin = Twin(Path(tempfile.mkdtemp(prefix="scenarios-twin-")))
    # every HTTP stack must trust the twin's CA from its first import on (aiohttp fixes its context at import)
    for key in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ[key] = str(twin.ca_path)
    twin.start()
    from tests.azurite import start_azurite, stop_azurite
    from tests.scenarios.library import BY_NAME, SCENARIOS
    from tests.scenarios.runner import drift, page, run_scenario, write
    from tests.world import CC_HOST

    azurite, storage = start_azurite()
    try:
        os.environ.update(twin.environment())
        for key in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "HTTP_PROXY", "http_proxy"):
            os.environ.pop(key, None)
        cc_ca = str(twin.cyclecloud_ca_path(CC_HOST))
        chosen = [BY_NAME[n] for n in args.names] if args.names else list(SCENARIOS)
        runs = []
        for scenario in chosen:
            run = run_scenario(twin, scenario, cc_ca, storage)
            runs.append(run)
            sys.stderr.write(f"{scenario.name}: {[s.exit_code for s in run.steps]}\n")
        if args.write:
            for path in write(runs, SCENARIOS):
                sys.stderr.write(f"wrote {path}\n")
            return 0
        if args.check:
            drifted = [(r.scenario.name, d) for r in runs if (d := drift(r)) is not None]
            for name, difference in drifted:
                sys.stdout.write(f"== {name}\n{difference}\n")
            return 1 if drifted else 0
        for run in runs:
            sys.stdout.write(page(run) + "\n")
        return 0
    finally:
        twin.stop()
        stop_azurite(azurite)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
