"""docs/diagnosis.md lists every finding of the catalog, as the code defines it."""

from __future__ import annotations

from shared.findings import CATALOG
from tests.catalog_doc import DOC, split, table


def test_the_documented_catalog_is_the_code_s_catalog() -> None:
    _, documented, _ = split(DOC.read_text(encoding="utf-8"))
    assert documented == table(), "run `python -m tests.catalog_doc --write` and commit docs/diagnosis.md"
    assert all(f"`{code}`" in documented for code in CATALOG)
