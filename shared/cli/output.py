"""Small helpers for readable CLI output (the CLI is the only place that prints)."""

from __future__ import annotations

import json
import sys
from typing import Any

OK, FAIL, WARN, SKIP = "✔", "✘", "!", "-"


class OutputClosed(Exception):
    """stdout was closed by its reader (`... | head`): stop printing, quietly (see shared/__main__.py)."""


def emit(text: str = "") -> None:
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        raise OutputClosed from None


def emit_json(payload: Any) -> None:
    emit(json.dumps(payload, indent=2, default=str))


def progress(text: str) -> None:
    """Progress on long waits goes to stderr so stdout stays parseable."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
