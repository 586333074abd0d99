"""Run the twin standalone: `python -m tests.twin --scenario FILE [--workdir DIR] [--env-file PATH]`.

Prints the environment a process needs to use it (as shell lines: the twin's variables and, when the scenario
has a `product` section, the product's app settings with the CycleCloud CA bundles written to the workdir),
then serves until interrupted. `source PATH` in another shell and `python -m shared validate <target>` works.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

from .product import ProductSectionError, product_environment
from .server import Twin

# set in an operator's shell they would send the product to real Azure or to another identity
CLEARED = ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_AUTHORITY_HOST", "MSI_ENDPOINT",
           "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "TARGETS_FILE")


def shell_lines(env: dict[str, str]) -> str:
    return f"unset {' '.join(CLEARED)}\n" + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())


def write_atomically(path: Path, text: str) -> None:
    """A reader polling for the file never sees half of it."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.twin", description=__doc__)
    parser.add_argument("--scenario", type=Path, help="JSON scenario to load")
    parser.add_argument("--workdir", type=Path, help="where to write the CA bundle (default: a temp dir)")
    parser.add_argument("--env-file", type=Path, help="also write the environment to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="twin: %(message)s")

    scenario = json.loads(args.scenario.read_text(encoding="utf-8")) if args.scenario else {}
    twin = Twin(args.workdir).start()
    try:
        twin.load(scenario)
        env = {**twin.environment(), **product_environment(twin, scenario)}
    except (ProductSectionError, ValueError, KeyError, TypeError) as exc:
        twin.stop()
        sys.stderr.write(f"python -m tests.twin: the scenario cannot be loaded: {exc!r}\n")
        return 2
    text = shell_lines(env)
    if args.env_file:
        write_atomically(args.env_file, text)
    sys.stdout.write(text)
    sys.stdout.flush()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    twin.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
