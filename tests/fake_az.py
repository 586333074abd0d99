"""A stand-in `az` for the tests of infra/scripts: the test's own Python program answers each call and keeps its
state in a JSON file, so a script's second run sees what its first one did."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# What every stand-in starts with: its state (`state`, saved back to `state_path` by the program), the call's
# arguments recorded in state["calls"], `opt(name)` for an option's value and `query` for --query.
PRELUDE = r'''
import json, os, sys
state_path = os.environ["FAKE_AZ_STATE"]
state = json.load(open(state_path))
args = sys.argv[1:]
state["calls"].append(args)
def opt(name, default=""):
    return args[args.index(name) + 1] if name in args else default
query = opt("--query")
'''


def install_fake_az(tmp_path: Path, program: str, initial_state: dict[str, Any]) -> tuple[dict[str, str], Path]:
    """Put PRELUDE + `program` on PATH as `az` under `tmp_path` (its state file is written once, so a second call
    keeps what the first run left). Returns the environment a script runs in and the state file's path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    az = bin_dir / "az"
    az.write_text(f"#!{sys.executable}\n{PRELUDE}{program}")
    az.chmod(0o755)
    state_path = tmp_path / "state.json"
    if not state_path.exists():
        state_path.write_text(json.dumps(initial_state))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_AZ_STATE": str(state_path), "HOME": str(tmp_path)}
    return env, state_path
