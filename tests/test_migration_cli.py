"""`python -m shared migrate` against the twin: plan, apply, rollback; readable output, no secret in it."""

from __future__ import annotations

import json

import pytest

from shared.cli import main
from shared.migration import runner
from tests.leaks import assert_no_leak
from tests.rotation_support import apply_env, rotation_env
from tests.test_migration import identity_off
from tests.twin import Twin
from tests.world import CC_HOST, CC_PASSWORD, CURRENT_SECRET, TARGET, World


@pytest.fixture(autouse=True)
def _no_propagation_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """New role assignments apply at once in these twins (see test_new_roles_get_time_to_apply_before_the_switch)."""
    monkeypatch.setattr(runner, "ROLE_PROPAGATION_SECONDS", 0.0)


def test_cli_plan_apply_rollback(twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    apply_env(monkeypatch, rotation_env(twin, World(transport="runcommand"), cc_ca, azurite, edit=identity_off))

    assert main(["migrate", TARGET]) == 0
    plan = capsys.readouterr().out
    assert "dry run (nothing is changed)" in plan and "→ identity" in plan
    assert "python -m shared migrate hpc-prod --apply" in plan
    assert twin.state.cyclecloud_servers[CC_HOST].accounts["azure"]["AzureRMUseManagedIdentity"] is False

    assert main(["migrate", TARGET, "--apply"]) == 0
    applied = capsys.readouterr().out
    assert "uses the VM's managed identity" in applied
    assert "set {'mode': 'managed_identity'}, remove ['secret_name']" in applied
    assert "Secret removal not offered yet" in applied

    assert main(["migrate", TARGET, "--rollback", "--json"]) == 0
    rolled = json.loads(capsys.readouterr().out)
    assert rolled["status"] == "rolled_back"
    assert twin.state.cyclecloud_servers[CC_HOST].accounts["azure"]["AzureRMUseManagedIdentity"] is False
    for text in (plan, applied, json.dumps(rolled)):
        assert_no_leak(text, CURRENT_SECRET, CC_PASSWORD)

    assert main(["migrate", TARGET, "--remove-secrets"]) == 2  # needs --apply
