"""`python -m shared roles`: not available yet (in progress)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="*")


async def run(args: argparse.Namespace) -> int:
    raise SystemExit("this command is not available yet")
