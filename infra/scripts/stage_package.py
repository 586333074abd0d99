"""Stage the Function app package for azd (the `prepackage` hook of azure.yaml's `api` service).

Copies the repository into `.deploy/api/` minus everything `.funcignore` excludes (tests, docs, infra, caches,
dev files), and writes `requirements.lock` there as `requirements.txt`: the remote build on Flex Consumption
installs from `requirements.txt`, so the deployed app gets exactly the locked versions, hash-checked.

Usage: python infra/scripts/stage_package.py [--root DIR] [--out DIR]
Standard library only: it runs with whatever Python azd finds.
"""

from __future__ import annotations

import argparse
import fnmatch
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def ignore_rules(root: Path) -> list[str]:
    lines = (root / ".funcignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def is_ignored(relative: Path, rules: list[str]) -> bool:
    """gitignore-style, as far as .funcignore needs: `dir/` matches a directory of that name at any depth,
    other patterns match any path component (so `*.md` and `.git*` apply everywhere)."""
    parts = relative.parts
    for rule in rules:
        if rule.endswith("/"):
            pattern = rule.rstrip("/")
            if any(fnmatch.fnmatch(part, pattern) for part in parts[:-1]):
                return True
            continue
        if any(fnmatch.fnmatch(part, rule) for part in parts):
            return True
    return False


def package_files(root: Path) -> list[Path]:
    rules = ignore_rules(root)
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and not is_ignored(relative, rules):
            files.append(relative)
    return files


def stage(root: Path, out: Path) -> list[Path]:
    lock = root / "requirements.lock"
    if not lock.is_file():
        raise SystemExit("requirements.lock is missing: run `make lock` and commit it")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    files = package_files(root)
    for relative in files:
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / relative, target)
    shutil.copyfile(lock, out / "requirements.txt")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stage the Function app package for azd.")
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or args.root / ".deploy" / "api"
    files = stage(args.root, out)
    print(f"staged {len(files)} files in {out} (requirements.txt = requirements.lock)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
