"""The break-glass CLI: `python -m shared validate <target> [--json]` (readable table, exit 0/1/2) and
`python -m shared token <target>` (Entra's answer in plain English), against the twin."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.cli import main
from tests.leaks import assert_no_leak
from tests.twin import Twin
from tests.world import CC_PASSWORD, CURRENT_SECRET, KEY_ID, SECRET_NAME, TARGET, World

ROOT = Path(__file__).resolve().parent.parent
GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def load(twin: Twin, scenario: dict[str, Any], world: World, cc_ca: str, monkeypatch: pytest.MonkeyPatch) -> None:
    twin.load(scenario)
    for key, value in world.env(ca_bundle=cc_ca).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TARGETS_FILE", raising=False)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    text = out + err
    assert_no_leak(text, CURRENT_SECRET, CC_PASSWORD)
    return code, out


def test_validate_healthy_target_exits_0_with_a_table(twin: Twin, world: World, cc_ca: str,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    load(twin, world.scenario(), world, cc_ca, monkeypatch)
    code, out = cli(capsys, "validate", TARGET)
    assert code == 0
    assert f"Target {TARGET} (service_principal): HEALTHY" in out
    assert "No problems found." in out
    assert re.search(r"✔ token\s+passed\s+\d+ ms", out)
    assert "advice.use_managed_identity" in out  # advice is shown, but does not change the exit code


def test_validate_expired_secret_exits_2_with_evidence_and_fix(twin: Twin, world: World, cc_ca: str,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    load(twin, World(secret_end="now-1d").scenario(), world, cc_ca, monkeypatch)
    code, out = cli(capsys, "validate", TARGET)
    assert code == 2
    assert "FAILING" in out and "secret.expired" in out
    assert re.search(rf"aadsts=AADSTS7000222; .*trace_id={GUID}; correlation_id={GUID}", out)
    assert f"key_id={KEY_ID}" in out
    assert "Portal: Microsoft Entra ID > App registrations" in out
    assert f"`python -m shared remediate {TARGET}` fixes this (rotate)." in out


def test_validate_degraded_target_exits_1_and_json_matches_the_api(twin: Twin, world: World, cc_ca: str,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    load(twin, World(secret_end="now+5d").scenario(), world, cc_ca, monkeypatch)
    code, out = cli(capsys, "validate", TARGET, "--json")
    assert code == 1
    report = json.loads(out)
    assert report["status"] == "degraded"
    assert [f["code"] for f in report["findings"]] == ["secret.expiring_soon"]


def test_validate_unknown_target_exits_2_naming_the_known_ones(twin: Twin, world: World, cc_ca: str,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    load(twin, world.scenario(), world, cc_ca, monkeypatch)
    code = main(["validate", "no-such-target"])
    _, err = capsys.readouterr()
    assert code == 2 and "No target named 'no-such-target'" in err and TARGET in err


def test_token_explains_an_expired_secret_in_plain_english(twin: Twin, world: World, cc_ca: str,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    load(twin, World(secret_end="now-1d").scenario(), world, cc_ca, monkeypatch)
    code, out = cli(capsys, "token", TARGET)
    assert code == 1
    assert "Entra ID refused the secret: AADSTS7000222 - Client secret expired" in out
    assert "What it means: The client secret CycleCloud uses has passed its expiry date" in out
    assert "How to fix it:" in out and "az ad app credential reset" in out
    assert re.search(rf"Trace ID:\s+{GUID}", out) and re.search(rf"Correlation ID:\s+{GUID}", out)
    assert re.search(r"Timestamp:\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", out)
    assert "https://login.microsoftonline.com/error?code=7000222" in out


def test_token_names_whitespace_around_the_secret(twin: Twin, world: World, cc_ca: str,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    scenario = world.scenario()
    scenario["vaults"][0]["secrets"][SECRET_NAME][0]["value"] = " " + CURRENT_SECRET
    load(twin, scenario, world, cc_ca, monkeypatch)
    code, out = cli(capsys, "token", TARGET)
    assert code == 1
    assert "AADSTS7000215 - Invalid client secret" in out
    assert "spaces or line breaks around it" in out


def test_token_for_a_working_secret_exits_0(twin: Twin, world: World, cc_ca: str, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    load(twin, world.scenario(), world, cc_ca, monkeypatch)
    code, out = cli(capsys, "token", TARGET)
    assert code == 0 and "the secret works" in out


def test_token_for_a_secret_missing_in_key_vault_exits_1(twin: Twin, world: World, cc_ca: str,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    scenario = world.scenario()
    del scenario["vaults"][0]["secrets"][SECRET_NAME]
    load(twin, scenario, world, cc_ca, monkeypatch)
    code, out = cli(capsys, "token", TARGET)
    assert code == 1 and f"The secret '{SECRET_NAME}' could not be read from Key Vault" in out


def test_validate_runs_as_a_real_process(twin: Twin, world: World, cc_ca: str) -> None:
    twin.load(World(secret_end="now-1d").scenario())
    env = {**os.environ, **twin.environment(), **world.env(ca_bundle=cc_ca)}
    env.pop("TARGETS_FILE", None)
    done = subprocess.run([sys.executable, "-m", "shared", "validate", TARGET, "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert_no_leak([done.stdout, done.stderr], CURRENT_SECRET, CC_PASSWORD)
    assert json.loads(done.stdout)["findings"][0]["code"] == "secret.expired"
