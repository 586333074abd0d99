"""The product's Run Command right is read where it is granted: on the CycleCloud VM itself (a grant the VM's
resource group never shows), so a correctly set-up runcommand target is not reported as missing it."""

from __future__ import annotations

from typing import Any

from shared.context import AppContext
from shared.diagnosis import validate_target
from tests.twin import Twin
from tests.world import TARGET, VM_ID, World


async def report(setup: Any, edit: Any = None) -> Any:
    setup(World(transport="runcommand"), edit)
    async with AppContext.from_environment() as ctx:
        return (await validate_target(ctx, TARGET, timeout_seconds=30)).to_dict()


def missing_run_command(result: Any) -> list[Any]:
    return [f for f in result["findings"] if f["code"] == "function.permission_missing"
            and "run commands" in f["detail"]]


async def test_a_grant_on_the_vm_is_seen(twin: Twin, setup: Any) -> None:
    result = await report(setup)
    assert not missing_run_command(result), result["findings"]
    assert any(r.path.startswith(VM_ID) and r.path.endswith("/permissions") for r in twin.request_log)


async def test_no_grant_is_reported_with_the_vm_as_scope(setup: Any) -> None:
    def revoke(scenario: dict[str, Any]) -> None:
        scenario["role_assignments"] = [ra for ra in scenario["role_assignments"] if ra["scope"] != VM_ID]

    [finding] = missing_run_command(await report(setup, revoke))
    assert finding["evidence"]["scope"] == VM_ID
