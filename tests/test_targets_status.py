"""Status at a glance: `python -m shared targets` and GET /api/targets show per target the health status and when it
was checked, days to expiry, the last rotation and its outcome, the open operation and its stage, and unconfirmed
pushes; read from the state container only."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from shared.cli import main
from shared.context import AppContext
from shared.diagnosis import TARGET_LIST_SCHEMA, check_all_targets
from shared.rotation import RotationStatus, rotate_target
from tests.leaks import assert_no_leak
from tests.rotation_invariants import snapshot
from tests.rotation_support import apply_env, rotation_env
from tests.schema_check import validate_json
from tests.twin import Fault, Twin
from tests.world import CC_HOST, CC_PASSWORD, CURRENT_SECRET, TARGET, World


async def _rotate() -> Any:
    async with AppContext.from_environment() as ctx:
        return await rotate_target(ctx, TARGET, deadline_seconds=120)


async def _sweep() -> None:
    async with AppContext.from_environment() as ctx:
        await check_all_targets(ctx)


def _targets(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    code = main(["targets", "--json"])
    body = json.loads(capsys.readouterr().out)
    validate_json(body, TARGET_LIST_SCHEMA)
    assert main(["targets"]) == code
    return code, {t["name"]: t for t in body["targets"]}[TARGET], capsys.readouterr().out


def test_targets_show_the_stopped_operation_then_the_finished_rotation(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    apply_env(monkeypatch, rotation_env(twin, World(secret_end="now+10d"), cc_ca, azurite))
    code, row, text = _targets(capsys)
    assert code == 0 and row["status"] is None and row["open_operation"] is None and row["last_rotation"] is None
    assert 9 < row["days_to_expiry"] <= 10  # from Key Vault before any health check
    assert "unchecked" in text and "never" in text

    twin.faults.add(Fault(service="cyclecloud", operation="updateAccount", status=400, times=None,
                          body={"code": "InvalidCredentials", "message": "Invalid Azure credentials provided."}))
    failed = asyncio.run(_rotate())
    assert failed.status is RotationStatus.FAILED
    asyncio.run(_sweep())
    code, row, text = _targets(capsys)
    assert code == 1  # a rotation stopped by an error needs a person
    op = row["open_operation"]
    assert op["id"] == failed.operation_id and op["stage"] == "push", row
    assert op["last_error"]["code"] == failed.error["code"], row  # type: ignore[index]
    assert row["status"] in ("healthy", "degraded") and row["checked_at"]
    assert f"{failed.operation_id[:8]} at push (stopped: {failed.error['code']})" in text  # type: ignore[index]

    twin.faults.clear()
    rotated = asyncio.run(_rotate())
    assert rotated.status is RotationStatus.ROTATED
    code, row, text = _targets(capsys)
    assert row["open_operation"] is None and row["unconfirmed_pushes"] == []
    assert row["last_rotation"]["result"] == "committed" and row["last_rotation"]["id"] == rotated.operation_id
    assert row["last_rotation"]["push_confirmed"] is True and "committed" in text
    assert_no_leak([text, json.dumps(row)], CURRENT_SECRET, CC_PASSWORD, *snapshot(twin).all_values(), min_length=6)


def test_targets_list_unconfirmed_pushes(twin: Twin, cc_ca: str, azurite: str,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    apply_env(monkeypatch, rotation_env(twin, World(secret_end="now+10d"), cc_ca, azurite))
    twin.state.cyclecloud_servers[CC_HOST].masks_secret_fully = True
    outcome = asyncio.run(_rotate())
    assert outcome.push_confirmed is False
    code, row, text = _targets(capsys)
    assert code == 1 and row["unconfirmed_pushes"] == [outcome.operation_id]
    assert "unconfirmed push" in text and str(outcome.operation_id) in text
