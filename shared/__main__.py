"""Break-glass CLI: the same code as the Function, run with the operator's own identity (`az login`).

    python -m shared config check
    python -m shared token <target>
    python -m shared cyclecloud probe <target>
    python -m shared validate <target> [--json]
    python -m shared rotate <target> [--force] [--dry-run] [--status]
    python -m shared roles <target> [--apply]
    python -m shared remediate <target> [--dry-run]
    python -m shared targets [--json]
    python -m shared migrate <target> [--apply | --rollback] [--remove-secrets]

`python -m shared --help` lists them (shared/cli/__init__.py's COMMANDS); README.md documents each.
"""

from __future__ import annotations

import os
import sys

from .cli import main
from .cli.output import OutputClosed


def run(argv: list[str]) -> int:
    """The CLI, surviving a reader that stops reading (`python -m shared validate t | head`): no traceback, and
    the exit code of a process killed by SIGPIPE (128 + 13), as other command-line tools behave."""
    try:
        code = main(argv)
        sys.stdout.flush()
        return code
    except (BrokenPipeError, OutputClosed):
        # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail a second time
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
