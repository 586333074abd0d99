"""Run the twin standalone: `python -m tests.twin --scenario FILE [--env-file PATH]`.

Prints the environment a process needs to use it (as `export` lines), then serves until interrupted.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
import threading
from pathlib import Path

from .server import Twin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.twin", description=__doc__)
    parser.add_argument("--scenario", type=Path, help="JSON scenario to load")
    parser.add_argument("--workdir", type=Path, help="where to write the CA bundle (default: a temp dir)")
    parser.add_argument("--env-file", type=Path, help="also write the environment to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="twin: %(message)s")

    twin = Twin(args.workdir).start()
    if args.scenario:
        twin.load(args.scenario)
    env = twin.environment()
    text = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    if args.env_file:
        args.env_file.write_text(text, encoding="utf-8")
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
