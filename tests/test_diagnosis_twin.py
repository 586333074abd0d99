"""`validate` against the Azure twin: every failure mode of the seed documents, reproduced in the twin, yields
the right finding code with the right evidence; the healthy world yields none; no report contains a secret."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from shared.context import AppContext
from shared.diagnosis import REPORT_SCHEMA, Report, validate_target
from tests.conftest import assert_no_secrets
from tests.schema_check import validate_json
from tests.twin import Twin
from tests.world import (
    APP_ID,
    CC_HOST,
    CC_PASSWORD,
    CONTRIBUTOR,
    CURRENT_SECRET,
    FUNCTION_OBJECT_ID,
    KEY_ID,
    OTHER_TENANT,
    SECRET_NAME,
    SP_OBJECT_ID,
    SUBSCRIPTION,
    TARGET,
    TENANT,
    VAULT_URL,
    VM_ID,
    VM_PRINCIPAL_ID,
    World,
    account_record,
)

Scenario = dict[str, Any]


@pytest.fixture(autouse=True)
def _logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


@pytest.fixture
async def run(twin: Twin, world: World, cc_ca: str, monkeypatch: pytest.MonkeyPatch,
              caplog: pytest.LogCaptureFixture) -> AsyncIterator[Callable[..., Any]]:
    """Load a (modified) world into the twin, validate the target, and check the report against the schema and
    for leaked secrets (in the report and in every log line)."""

    async def go(scenario: Scenario | None = None, *, target: dict[str, Any] | None = None,
                 secrets: tuple[str, ...] = ()) -> Report:
        twin.load(scenario if scenario is not None else world.scenario())
        env = world.env(ca_bundle=cc_ca)
        if target is not None:
            env["TARGETS"] = json.dumps([target])
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("TARGETS_FILE", raising=False)
        async with AppContext.from_environment() as ctx:
            report = await validate_target(ctx, TARGET, timeout_seconds=30)
        body = report.to_dict()
        validate_json(body, REPORT_SCHEMA)
        text = json.dumps(body) + "\n".join(r.getMessage() for r in caplog.records)
        assert_no_secrets(text, [CURRENT_SECRET, CC_PASSWORD, *secrets])
        return report

    yield go


def codes(report: Report) -> list[str]:
    return sorted(f.code for f in report.findings)


def the(report: Report, code: str) -> dict[str, Any]:
    finding = report.finding(code)
    assert finding is not None, f"{code} not in {codes(report)}"
    return finding.to_dict()


async def test_the_healthy_world_has_no_findings(run: Callable[..., Any]) -> None:
    report = await run()
    assert report.findings == (), [f.to_dict() for f in report.findings]
    assert report.status.value == "healthy"
    outcomes = {c.name: c.outcome.value for c in report.checks}
    assert outcomes["token"] == "passed" and outcomes["roles"] == "passed" and outcomes["cyclecloud"] == "passed"
    assert outcomes["permissions"] == "passed" and outcomes["tenant"] == "passed"
    assert outcomes["vm_identity"] == "skipped"
    assert report.observations["secret_key_id"] == KEY_ID
    assert 199 <= report.observations["days_to_expiry"] <= 200
    # a single-subscription service principal gets advice, which does not change the status
    assert [a.code for a in report.advice] == ["advice.use_managed_identity"]
