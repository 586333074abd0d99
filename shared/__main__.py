"""Break-glass CLI: the same code as the Function, run with the operator's own identity (`az login`).

    python -m shared config check
    python -m shared token <target>
    python -m shared cyclecloud probe <target>
    python -m shared validate <target> [--json]
    python -m shared rotate <target> [--force] [--dry-run]
    python -m shared roles <target> [--apply]
    python -m shared remediate <target> [--dry-run]
"""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
