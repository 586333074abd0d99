"""The finding catalog table of docs/diagnosis.md, generated from shared/findings.py so the two cannot drift.

    python -m tests.catalog_doc --write   # rewrite the table
    python -m tests.catalog_doc           # exit 1 and say so when the table differs from the code
"""

from __future__ import annotations

import sys
from pathlib import Path

from shared.findings import CATALOG

DOC = Path(__file__).resolve().parent.parent / "docs" / "diagnosis.md"
HEADER = "| code | severity | what it means | `remediate` fixes it |"


def table() -> str:
    rows = [HEADER, "|---|---|---|---|"]
    for spec in CATALOG.values():
        fixes = f"yes: `{spec.fix_action.value}`" if spec.fix_action else "no (steps in the report)"
        rows.append(f"| `{spec.code}` | {spec.severity.value} | {spec.summary} | {fixes} |")
    return "\n".join(rows) + "\n"


def split(text: str) -> tuple[str, str, str]:
    """(before the table, the table, after it)."""
    start = text.index(HEADER)
    end = text.find("\n\n", start)
    end = len(text) if end < 0 else end + 1
    return text[:start], text[start:end], text[end:]


def main(argv: list[str]) -> int:
    text = DOC.read_text(encoding="utf-8")
    before, current, after = split(text)
    wanted = table()
    if "--write" in argv:
        DOC.write_text(before + wanted + after, encoding="utf-8")
        return 0
    if current != wanted:
        sys.stdout.write("docs/diagnosis.md's finding catalog differs from shared/findings.py: run "
                         "`python -m tests.catalog_doc --write`\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
