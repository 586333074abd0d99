"""A slow or failing check never delays or hides the others: against the twin with injected faults, and with
the runner alone (pure)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shared.context import AppContext
from shared.diagnosis import Report, validate_target
from shared.diagnosis.facts import Facts
from shared.diagnosis.runner import Check, CheckSkipped, run_checks
from shared.errors import AccessDeniedError
from shared.findings import Finding, make_finding
from tests.twin import Fault, Twin
from tests.world import TARGET

LIMIT = 1.5


@pytest.fixture
def loaded(product_env: dict[str, str]) -> Iterator[None]:
    yield


async def validate(limit: float = LIMIT) -> Report:
    async with AppContext.from_environment() as ctx:
        return await validate_target(ctx, TARGET, timeout_seconds=limit)


def outcomes(report: Report) -> dict[str, str]:
    return {c.name: c.outcome.value for c in report.checks}


async def test_a_slow_cyclecloud_times_out_alone_and_delays_nothing(twin: Twin, loaded: None) -> None:
    warm = await validate(limit=60)  # a cold process first imports the SDKs (msgraph: seconds); not what we time
    assert warm.findings == ()
    twin.faults.add(Fault(service="cyclecloud", delay=4.0, times=None))
    started = time.perf_counter()
    report = await validate()
    elapsed = time.perf_counter() - started
    assert elapsed < LIMIT + 1.5, f"validate took {elapsed:.1f} s (report {report.duration_ms:.0f} ms)"
    result = outcomes(report)
    assert result["cyclecloud"] == "timed_out"
    assert [f.code for f in report.findings] == ["check.timed_out"]
    assert report.findings[0].subject == "cyclecloud"
    assert report.status.value == "degraded"
    for name in ("token", "credential", "roles", "permissions", "tenant", "product_rights"):
        assert result[name] == "passed", result
    fast = [c for c in report.checks if c.name != "cyclecloud"]
    assert all(c.duration_ms < LIMIT * 1000 for c in fast)


async def test_a_failing_graph_hides_no_other_check(twin: Twin, loaded: None) -> None:
    twin.faults.add(Fault(service="graph", status=500, times=None))
    report = await validate(limit=10)
    result = outcomes(report)
    assert result["credential"] == "failed"
    failed = report.finding("check.failed")
    assert failed is not None and failed.evidence["check"] == "credential"
    assert failed.evidence["error_code"] == "upstream_error"
    # what does not need Graph still ran and passed
    for name in ("token", "permissions", "tenant", "cyclecloud", "secret_in_vault"):
        assert result[name] == "passed", result
    assert result["roles"] == "skipped"  # needs the service principal, which Graph could not give
    assert report.status.value == "degraded"


async def test_a_throttled_key_vault_is_retried_with_retry_after_and_the_report_is_healthy(
        twin: Twin, loaded: None) -> None:
    twin.faults.add(Fault(service="keyvault", status=429, retry_after=0.2, times=2))
    report = await validate(limit=20)
    assert report.findings == (), [f.to_dict() for f in report.findings]


# -- the runner alone -------------------------------------------------------------------------------------------


class FakeFacts:
    def params(self) -> dict[str, object]:
        return {"target": "t"}


def finding(code: str, check: str) -> Finding:
    return make_finding(code, f"{code} from {check}", check=check, subject=check)


async def test_runner_runs_checks_concurrently_each_under_its_own_limit() -> None:
    async def slow(_: Any) -> list[Finding]:
        await asyncio.sleep(0.3)
        return [finding("secret.expired", "slow")]

    async def hangs(_: Any) -> list[Finding]:
        await asyncio.sleep(30)
        return []

    async def boom(_: Any) -> list[Finding]:
        raise RuntimeError("kaput")

    async def denied(_: Any) -> list[Finding]:
        raise AccessDeniedError("no", details={"action": "Microsoft.Authorization/roleAssignments/read",
                                               "scope": "/subscriptions/s"})

    async def skipped(_: Any) -> list[Finding]:
        raise CheckSkipped("not for this target")

    checks = [Check(name, name, fn) for name, fn in (("slow", slow), ("slow2", slow), ("slow3", slow), ("boom", boom),
                                                       ("denied", denied), ("skipped", skipped))]
    checks.append(Check("hangs", "hangs", hangs, timeout_seconds=0.5))
    started = time.perf_counter()
    findings, runs = await run_checks(checks, FakeFacts(), timeout_seconds=5)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    assert elapsed < 0.9  # the slowest check's limit (0.5 s), not the sum (0.9 s + 30 s)
    by_name = {r.name: r for r in runs}
    assert [r.name for r in runs] == [c.name for c in checks]  # report order is check order
    assert by_name["slow"].outcome.value == "problems" and by_name["slow"].findings == ("secret.expired",)
    assert by_name["boom"].outcome.value == "failed" and "kaput" in (by_name["boom"].note or "")
    assert by_name["hangs"].outcome.value == "timed_out"
    assert by_name["skipped"].outcome.value == "skipped" and by_name["skipped"].note == "not for this target"
    codes = [f.code for f in findings]
    assert codes.count("secret.expired") == 3
    assert "check.failed" in codes and "check.timed_out" in codes
    permission = next(f for f in findings if f.code == "function.permission_missing")
    assert permission.subject == "Microsoft.Authorization/roleAssignments/read on /subscriptions/s"


async def test_shared_lookups_run_once_and_survive_a_cancelled_caller() -> None:
    calls = 0

    async def lookup() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return "value"

    facts = Facts.__new__(Facts)
    facts._tasks = {}
    facts._credentials = []
    impatient = asyncio.ensure_future(facts.once("k", lookup))
    await asyncio.sleep(0.05)
    impatient.cancel()
    assert await facts.once("k", lookup) == "value"
    assert await facts.once("k", lookup) == "value"
    assert calls == 1
    await facts.close()
