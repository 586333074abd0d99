"""`python -m tests.twin --scenario FILE` runs the twin on its own and prints the environment to use it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.world import World

ROOT = Path(__file__).resolve().parent.parent


def test_standalone_twin_prints_its_environment_and_serves(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(World().scenario()))
    env_file = tmp_path / "twin.env"
    proc = subprocess.Popen([sys.executable, "-m", "tests.twin", "--scenario", str(scenario), "--env-file",
                             str(env_file), "--workdir", str(tmp_path / "w")], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 20
        while not env_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        env = dict(line.removeprefix("export ").split("=", 1) for line in env_file.read_text().splitlines())
        for key in ("HTTPS_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "IDENTITY_ENDPOINT",
                    "IDENTITY_HEADER", "TWIN_CONTROL_URL"):
            assert key in env
        control = env["TWIN_CONTROL_URL"]
        state = requests.get(f"{control}/state", timeout=5).json()
        assert state["applications"][0]["password_credentials"][0]["hint"] == World().secret[:3]
        assert "secret" not in json.dumps(state["applications"]).lower().replace("secrettext", "")
        advanced = requests.post(f"{control}/clock/advance", json={"seconds": 86400}, timeout=5).json()
        assert advanced["now"] > state["now"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
