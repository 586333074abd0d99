"""README.md's map of the repository ("How it is built") is checked against the tree, so it cannot go stale: every
entry it lists exists with the kind it shows (a name ending in `/` is a folder, a package where its parent is
one; any other name is a file), every path its descriptions mention exists, and everything a newcomer needs to
find is listed: each module and package of shared/, each package of tests/, each top-level file and folder.

When this fails after a move, fix the map in README.md (the message says which line or which path)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# top-level entries the map leaves out on purpose, and why
NOT_IN_MAP = {
    "README.md": "the map is in it",
    ".gitignore": "git's own file",
    "package-lock.json": "npm's lock of package.json, which is listed",
}
# paths a description mentions that are not in the tree on purpose
NOT_IN_TREE = {
    "local.settings.json": "the operator's own copy of local.settings.sample.json, gitignored",
}
# how a description mentions a path: `name.ext`, `folder/name.ext`, `app/*.bicep` or `folder/` (not a URL's path)
PATH_MENTION = re.compile(
    r"(?<![\w/.@:-])((?:[\w*.-]+/)*[\w*-]+\.(?:py|json|md|bicep|sh|txt|lock|yaml|toml)|(?:[\w.-]+/)+)(?![\w/])")
INDENT = 2  # each level of the map is indented by two spaces; deeper lines continue the previous description


@dataclass(frozen=True)
class Entry:
    line: int  # in README.md
    path: str  # relative to the repository, a folder ending in "/"
    description: str


def map_block() -> tuple[int, list[str]]:
    """The first fenced block after the "How it is built" heading: (README line of its first line, its lines)."""
    lines = README.read_text(encoding="utf-8").splitlines()
    heading = lines.index("## How it is built")
    start = next(i for i in range(heading, len(lines)) if lines[i].startswith("```")) + 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("```"))
    return start + 1, lines[start:end]


def entries() -> list[Entry]:
    first, lines = map_block()
    parsed: list[Entry] = []
    parents: list[str] = []  # the folder entries enclosing the current line, by depth
    for number, text in enumerate(lines, start=first):
        indent = len(text) - len(text.lstrip(" "))
        if not text.strip():
            continue
        if indent > INDENT * len(parents) or indent % INDENT:  # a description's next line
            assert parsed, f"README.md:{number}: the map starts with a continuation line"
            last = parsed[-1]
            parsed[-1] = Entry(last.line, last.path, f"{last.description} {text.strip()}")
            continue
        name, _, description = text.strip().partition(" ")
        depth = indent // INDENT
        parents = parents[:depth]
        path = "".join(parents) + name
        parsed.append(Entry(number, path, description.strip()))
        if name.endswith("/"):
            parents.append(name)
    return parsed


def tree() -> set[str]:
    """The repository's files as git sees them: tracked, or new and not ignored (another change in progress)."""
    git = shutil.which("git")
    assert git, "git lists the tree; install it"
    listed = subprocess.run([git, "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True, timeout=60).stdout.splitlines()
    return {p for p in listed if (ROOT / p).is_file()}


def folders(files: set[str]) -> set[str]:
    return {str(Path(p).parents[i]) + "/" for p in files for i in range(len(Path(p).parents) - 1)}


def is_package(folder: str, files: set[str]) -> bool:
    return f"{folder}__init__.py" in files


def test_every_listed_path_exists_with_the_kind_it_shows() -> None:
    files = tree()
    dirs = folders(files)
    problems = []
    for entry in entries():
        if entry.path.endswith("/"):
            parent = str(Path(entry.path).parent) + "/"
            if entry.path not in dirs:
                problems.append(f"README.md:{entry.line}: {entry.path} is not a folder"
                                + (" (it is a file)" if entry.path.rstrip("/") in files else ""))
            elif is_package(parent, files) and not is_package(entry.path, files):
                problems.append(f"README.md:{entry.line}: {entry.path} is in a package but is not one")
        elif entry.path not in files:
            problems.append(f"README.md:{entry.line}: {entry.path} is not a file"
                            + (" (it is a folder: end it with /)" if entry.path + "/" in dirs else ""))
    assert not problems, "README.md's map does not match the tree:\n" + "\n".join(problems)


def resolves(mention: str, entry: Entry, files: set[str], dirs: set[str]) -> bool:
    """A description's path is relative to its entry (a folder) or the entry's folder (a file); a path with a
    folder in it, or one mentioned on a top-level line, may also be relative to the repository."""
    own = entry.path if entry.path.endswith("/") else str(Path(entry.path).parent) + "/"
    bases = ["" if own == "./" else own]
    if "/" in mention.rstrip("/") or entry.path.rstrip("/").count("/") == 0:
        bases.append("")
    for base in bases:
        candidate = base + mention
        if candidate.endswith("/") and candidate in dirs:
            return True
        if any(Path(f).match(candidate) and f.count("/") == candidate.count("/") for f in files):
            return True
    return False


def test_every_path_a_description_mentions_exists() -> None:
    files = tree()
    dirs = folders(files)
    problems = [f"README.md:{entry.line}: {entry.path} mentions {mention}, which is not there"
                for entry in entries() for mention in PATH_MENTION.findall(entry.description)
                if mention not in NOT_IN_TREE and not resolves(mention, entry, files, dirs)]
    assert not problems, "README.md's map mentions paths that are not in the tree:\n" + "\n".join(problems)


def test_the_map_lists_every_module_of_shared_every_test_package_and_every_top_level_entry() -> None:
    files = tree()
    dirs = folders(files)
    listed = {e.path for e in entries()}
    wanted = set()
    for path in files | dirs:
        parts = path.rstrip("/").split("/")
        top_level = len(parts) == 1
        in_shared = len(parts) == 2 and parts[0] == "shared" and (path.endswith(".py") or is_package(path, files))
        test_package = len(parts) == 2 and parts[0] == "tests" and path.endswith("/") and is_package(path, files)
        if (top_level and parts[0] not in NOT_IN_MAP) or test_package or (
                in_shared and parts[1] not in ("__init__.py", "__main__.py")):
            wanted.add(path)
    missing = sorted(wanted - listed)
    assert not missing, ("README.md's map (How it is built) does not list: " + ", ".join(missing)
                         + "; add a line for each saying what it is")


def test_the_checks_see_a_stale_map() -> None:
    """The parser and the path rules catch what went stale before: a package listed as a file, a module listed
    under the wrong package, a folder without its slash."""
    files = tree()
    dirs = folders(files)
    fake = Entry(0, "shared/diagnosis/", "checks/ -> findings.py + aadsts.py are the catalogs")
    assert PATH_MENTION.findall(fake.description) == ["checks/", "findings.py", "aadsts.py"]
    assert resolves("checks/", fake, files, dirs)
    assert not resolves("findings.py", fake, files, dirs)  # shared/findings.py: it lives elsewhere
    assert resolves("findings.py", Entry(0, "shared/", ""), files, dirs)
    assert "shared/cli/" in dirs and "shared/cli" not in files
    assert PATH_MENTION.findall("served at /api/openapi.json, see docs/operations.md") == ["docs/operations.md"]
