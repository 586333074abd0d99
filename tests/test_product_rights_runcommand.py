"""The product's Run Command right is read where it is granted: on the CycleCloud VM itself (a grant the VM's
resource group never shows), so a correctly set-up runcommand target is not reported as missing it."""

from __future__ import annotations

from typing import Any

import pytest

from shared.context import AppContext
from shared.diagnosis import validate_target
from tests.rotation_support import apply_env, rotation_env
from tests.twin import Twin
from tests.world import TARGET, VM_ID, World


async def report(twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch, edit: Any = None) -> Any:
    apply_env(monkeypatch, rotation_env(twin, World(transport="runcommand"), cc_ca, azurite, edit=edit))
    async with AppContext.from_environment() as ctx:
        return (await validate_target(ctx, TARGET, timeout_seconds=30)).to_dict()


def missing_run_command(result: Any) -> list[Any]:
    return [f for f in result["findings"] if f["code"] == "function.permission_missing"
            and "run commands" in f["detail"]]


async def test_a_grant_on_the_vm_is_seen(twin: Twin, cc_ca: str, azurite: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    result = await report(twin, cc_ca, azurite, monkeypatch)
    assert not missing_run_command(result), result["findings"]
    assert any(r.path.startswith(VM_ID) and r.path.endswith("/permissions") for r in twin.request_log)


async def test_no_grant_is_reported_with_the_vm_as_scope(twin: Twin, cc_ca: str, azurite: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def revoke(scenario: dict[str, Any]) -> None:
        scenario["role_assignments"] = [ra for ra in scenario["role_assignments"] if ra["scope"] != VM_ID]

    [finding] = missing_run_command(await report(twin, cc_ca, azurite, monkeypatch, revoke))
    assert finding["evidence"]["scope"] == VM_ID
