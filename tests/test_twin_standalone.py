"""`python -m tests.twin --scenario FILE` runs the twin on its own and prints the environment to use it; the
workflow docs/twin.md documents (`source twin.env && python -m shared validate <target>`) works as written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.leaks import assert_no_leak
from tests.world import TARGET, World

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "tests" / "twin" / "examples" / "healthy.json"


def healthy_with_product() -> dict:
    world = World()
    scenario = world.scenario()
    scenario["product"] = {"settings": {k: v for k, v in world.env().items() if k != "TARGETS"},
                           "targets": [world.target()]}
    return scenario


def read_env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("export ")]
    return dict(line.removeprefix("export ").split("=", 1) for line in lines)


@contextmanager
def standalone_twin(scenario: Path, workdir: Path, env_file: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.twin", "--scenario", str(scenario), "--env-file",
                             str(env_file), "--workdir", str(workdir)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not env_file.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert env_file.exists(), f"the twin wrote no env file (exit {proc.poll()})"
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_standalone_twin_prints_its_environment_and_serves(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(World().scenario()))
    env_file = tmp_path / "twin.env"
    with standalone_twin(scenario, tmp_path / "w", env_file):
        env = read_env_file(env_file)
        for key in ("HTTPS_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "IDENTITY_ENDPOINT",
                    "IDENTITY_HEADER", "TWIN_CONTROL_URL"):
            assert key in env
        assert "TARGETS" not in env  # no product section, no product settings
        control = env["TWIN_CONTROL_URL"]
        state = requests.get(f"{control}/state", timeout=5).json()
        assert state["applications"][0]["password_credentials"][0]["hint"] == World().secret[:3]
        assert "secret" not in json.dumps(state["applications"]).lower().replace("secrettext", "")
        advanced = requests.post(f"{control}/clock/advance", json={"seconds": 86400}, timeout=5).json()
        assert advanced["now"] > state["now"]


def test_documented_workflow_source_env_then_validate(tmp_path: Path) -> None:
    """docs/twin.md: start the twin with the example scenario, `source twin.env`, `python -m shared validate`."""
    env_file = tmp_path / "twin.env"
    workdir = tmp_path / "w"
    with standalone_twin(EXAMPLE, workdir, env_file):
        settings = read_env_file(env_file)
        targets = json.loads(settings["TARGETS"].strip("'"))
        bundle = Path(targets[0]["cyclecloud"]["ca_bundle"])
        assert bundle.parent == workdir and bundle.read_text().startswith("-----BEGIN CERTIFICATE-----")
        assert bundle.read_text() != Path(settings["REQUESTS_CA_BUNDLE"]).read_text()  # CycleCloud's own CA
        # a shell as an operator has it: their own Azure variables set, which twin.env must clear
        shell_env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHON": sys.executable,
                     "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
                     "AZURE_CLIENT_SECRET": "not-a-twin-secret", "AZURE_TENANT_ID": "common"}
        command = f"source {env_file} && \"$PYTHON\" -m shared validate {TARGET}"
        done = subprocess.run([shutil.which("bash") or "/bin/bash", "-c", command], cwd=ROOT, env=shell_env,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "healthy" in done.stdout.lower(), done.stdout
    assert_no_leak([done.stdout, done.stderr], World().secret)


def test_example_scenario_is_the_canonical_world() -> None:
    """The documented example is tests/world.py's healthy world (regenerate it when the world changes)."""
    assert json.loads(EXAMPLE.read_text()) == healthy_with_product()


def test_bad_product_section_is_refused_with_a_message(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({**World().scenario(), "product": {"target": []}}))
    done = subprocess.run([sys.executable, "-m", "tests.twin", "--scenario", str(scenario), "--workdir",
                           str(tmp_path / "w")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "unknown fields ['target']" in done.stderr


def test_control_api_answers_bad_requests_with_400(twin) -> None:  # type: ignore[no-untyped-def]
    control = twin.environment()["TWIN_CONTROL_URL"]
    unknown = requests.post(f"{control}/faults", json={"service": "graph", "stauts": 500}, timeout=5)
    assert unknown.status_code == 400
    assert "stauts" in unknown.json()["error"]
    not_json = requests.post(f"{control}/faults", data=b"{nope", headers={"Content-Type": "application/json"},
                             timeout=5)
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
    bad_status = requests.post(f"{control}/faults", json={"status": "500"}, timeout=5)
    assert bad_status.status_code == 400
    bad_scenario = requests.post(f"{control}/scenario", json={"role_assignments": [{"scope": "/", "role": "Nope",
                                                                                      "principal_id": "x"}]},
                                 timeout=5)
    assert bad_scenario.status_code == 400 and "Nope" in bad_scenario.json()["error"]
    bad_clock = requests.post(f"{control}/clock/advance", json={"seconds": "soon"}, timeout=5)
    assert bad_clock.status_code == 400
    assert twin.faults.rules() == []  # nothing half-added
    good = requests.post(f"{control}/faults", json={"service": "graph", "status": 503}, timeout=5)
    assert good.status_code == 200 and good.json()["id"] > 0
