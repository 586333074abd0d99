"""`python -m tests.chaos --seed N --days D --targets T`: the simulated year (see tests/chaos/sim.py).

Starts its own Azure twin and Azurite, runs the simulation, prints the summary, and exits 1 with the events that
led to each broken invariant when one breaks.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--health-hours", type=int, default=1, help="HEALTH_SCHEDULE interval in hours")
    parser.add_argument("--fault-rate", type=float, default=0.03)
    parser.add_argument("--crash-rate", type=float, default=0.15)
    parser.add_argument("--interference-per-day", type=float, default=1.0)
    parser.add_argument("--events", type=Path, help="write every simulated event to this file")
    parser.add_argument("--markdown", type=Path, help="also write the summary as Markdown to this file")
    parser.add_argument("--stop-at-first-violation", action="store_true",
                        help="end the run at the first broken invariant and report it")
    parser.add_argument("--verbose", action="store_true", help="show the product's log records (WARNING and up)")
    args = parser.parse_args(argv)
    # the product logs every failing target at ERROR (that is its alarm); the summary is what this run reports
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.CRITICAL + 1)
    logging.getLogger("tests.chaos.sim").setLevel(logging.WARNING)  # its weekly progress line
    if not args.verbose:
        logging.getLogger().handlers[0].addFilter(lambda record: record.name == "tests.chaos.sim")
        logging.getLogger().setLevel(logging.WARNING)

    # the twin (and its CA) must exist before anything imports aiohttp: its default SSL context is built at
    # import time from SSL_CERT_FILE
    from tests.twin import Twin

    twin = Twin(Path(tempfile.mkdtemp(prefix="azure-twin-chaos-")))
    twin.start()
    os.environ.update(twin.environment())
    for key in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "TARGETS_FILE"):
        os.environ.pop(key, None)

    from tests.azurite import start_azurite, stop_azurite

    from .report import render, render_markdown
    from .sim import Options, Simulation

    azurite, storage = start_azurite()
    options = Options(seed=args.seed, days=args.days, targets=args.targets, health_hours=args.health_hours,
                      fault_rate=args.fault_rate, crash_rate=args.crash_rate,
                      interference_per_day=args.interference_per_day,
                      stop_at_first_violation=args.stop_at_first_violation)
    try:
        sim = Simulation(twin, storage, options)
        asyncio.run(sim.run())
    finally:
        stop_azurite(azurite)
        twin.stop()
    command = " ".join(["python -m tests.chaos", *(argv if argv is not None else sys.argv[1:])])
    print(render(sim, command))
    if args.events:
        args.events.write_text("".join(f"{at:%Y-%m-%d %H:%M} {who:>12} {what}\n" for at, who, what in sim.events),
                               encoding="utf-8")
    if args.markdown:
        args.markdown.write_text(render_markdown(sim, command), encoding="utf-8")
    return 1 if sim.violations else 0


if __name__ == "__main__":
    sys.exit(main())
