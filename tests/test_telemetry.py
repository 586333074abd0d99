"""Telemetry that arrives: spans, custom events and the expiry metric captured by in-memory OpenTelemetry
exporters, read as an on-call engineer would read Application Insights (names and flat dimensions only, never
free text), and scanned for secret values."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from shared.context import AppContext
from shared.redaction import install_filter, register_secret
from shared.rotation import RotationStatus, rotate_target
from tests.rotation_invariants import assert_no_values, snapshot
from tests.rotation_support import apply_env, rotation_env
from tests.telemetry_capture import Captured, capture
from tests.twin import Fault, Twin
from tests.world import CC_PASSWORD, CURRENT_SECRET, TARGET, World

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def telemetry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Captured]:
    yield from capture(monkeypatch)


async def _rotate(**kwargs: Any) -> Any:
    async with AppContext.from_environment() as ctx:
        return await rotate_target(ctx, TARGET, deadline_seconds=120, **kwargs)


def last_run(captured: Captured, target: str) -> dict[str, Any]:
    """'What happened to target X in the last run, at which stage, and why', from exported telemetry alone: the
    newest `rotate` span of the target and the events of its operation (the Kusto query in docs/operations.md)."""
    runs = sorted((s for s in captured.spans("rotate") if s.attributes.get("target") == target),
                  key=lambda s: s.end_time)
    assert runs, f"no rotate span for {target}"
    span = runs[-1]
    attributes = dict(span.attributes)
    events = [e for e in captured.events(target=target) if e.get("operationId") == attributes.get("operationId")]
    failed = next((e for e in events if e["name"] == "RotationFailed"), None)
    return {"outcome": attributes.get("outcome"), "stage": attributes.get("stage"),
            "operationId": attributes.get("operationId"), "code": attributes.get("code"),
            "why": failed.get("reason") if failed else None, "events": [e["name"] for e in events]}


async def test_a_failed_push_and_its_recovery_are_told_by_telemetry_alone(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch, telemetry: Captured) -> None:
    apply_env(monkeypatch, rotation_env(twin, World(secret_end="now+10d"), cc_ca, azurite))
    twin.faults.add(Fault(service="cyclecloud", operation="updateAccount", status=400, times=None,
                          body={"code": "InvalidCredentials", "message": "Invalid Azure credentials provided."}))
    failed = await _rotate()
    assert failed.status is RotationStatus.FAILED

    run = last_run(telemetry, TARGET)
    assert run["outcome"] == "failed" and run["stage"] == "push", run
    assert run["operationId"] == failed.operation_id and run["events"] == ["RotationFailed"], run
    assert run["code"] == failed.error["code"] and run["code"], run  # type: ignore[index]
    assert run["why"] and "CycleCloud" in run["why"], run
    [event] = telemetry.events("RotationFailed", TARGET)
    assert {"target", "operationId", "stage", "code", "reason", "status"} <= set(event)
    assert all(isinstance(v, (str, int, float, bool)) for v in event.values())  # flat dimensions

    twin.faults.clear()
    rotated = await _rotate()
    assert rotated.status is RotationStatus.ROTATED
    run = last_run(telemetry, TARGET)
    assert run["outcome"] == "rotated" and run["operationId"] == failed.operation_id, run
    assert "SecretRotated" in run["events"], run
    [done] = telemetry.events("SecretRotated", TARGET)
    assert done["newKeyId"] == rotated.new_key_id and done["stage"]
    days = telemetry.gauge("credential.days_to_expiry")[TARGET]
    assert 170 < days <= 180, days  # the new secret's lifetime (180 days by default)

    assert_no_values(telemetry.everything_text(), [CURRENT_SECRET, CC_PASSWORD, *snapshot(twin).all_values()])


async def test_the_health_sweep_emits_health_checked_finding_raised_and_the_metric(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch, telemetry: Captured) -> None:
    from shared.diagnosis import check_all_targets

    apply_env(monkeypatch, rotation_env(twin, World(secret_end="now-2d"), cc_ca, azurite))
    async with AppContext.from_environment() as ctx:
        sweep = await check_all_targets(ctx)
    [result] = sweep.results
    assert result.status == "failing"
    [checked] = telemetry.events("HealthChecked", TARGET)
    assert checked["status"] == "failing" and checked["findingCodes"] == ",".join(result.findings)
    raised = telemetry.events("FindingRaised", TARGET)
    assert {e["code"] for e in raised} == set(result.findings)
    assert all(e["severity"] in {"critical", "error", "warning", "info"} for e in raised), raised
    [span] = [s for s in telemetry.spans("validate") if s.attributes.get("target") == TARGET]
    assert span.attributes["outcome"] == "failing"
    assert telemetry.gauge("credential.days_to_expiry")[TARGET] < 0  # expired two days ago
    assert_no_values(telemetry.everything_text(), [CURRENT_SECRET, CC_PASSWORD])


def test_redaction_covers_late_handlers_exporters_chained_causes_and_extras(telemetry: Captured) -> None:
    secret = "Zq8Q~late-handler-secret-0123456789abcdef"
    register_secret(secret)
    install_filter()
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record) + repr(vars(record)))

    late = Collect()  # attached after start-up: no SecretFilter on it
    late.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("shared.test_redaction")
    log.addHandler(late)
    try:
        try:
            try:
                raise ValueError(f"inner failure with {secret}")
            except ValueError as inner:
                raise RuntimeError("outer failure, no secret here") from inner
        except RuntimeError:
            log.exception("call failed for %s", secret, extra={"detail": f"x {secret} y", "items": [secret]})
    finally:
        log.removeHandler(late)
    text = "\n".join(lines)
    assert "inner failure with ***" in text and "outer failure" in text  # the chained cause, masked
    assert secret not in text
    exported = telemetry.everything_text()
    assert "call failed for ***" in exported and "x *** y" in exported
    assert secret not in exported


def test_importing_the_function_app_loads_no_telemetry_sdk_unless_configured() -> None:
    """Indexing pays nothing for telemetry that is off (no connection string, no worker route)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("APPLICATIONINSIGHTS_CONNECTION_STRING", "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY")}
    probe = ("import sys, function_app; "
             "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'azure.monitor'))))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout
