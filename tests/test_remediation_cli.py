"""`python -m shared remediate` and AUTO_REMEDIATE (the health timer remediating on its own), against the twin."""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from shared.cli import main as cli_main
from tests.fanout_support import deliver_in_process
from tests.leaks import assert_no_leak
from tests.scenarios.library import combine, cyclecloud_holds, without_contributor
from tests.test_remediation_twin import SECRETS
from tests.twin import Twin
from tests.world import CC_HOST, PREVIOUS_SECRET, SP_OBJECT_ID, TARGET, World


def test_cli_dry_run_then_remediate_then_validate(setup: Any, twin: Twin,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's steps 5-7: the plan (exit 2: still failing), one remediation (exit 0), a healthy report."""
    setup(World(secret_end="now-2d"), combine(without_contributor, cyclecloud_holds(PREVIOUS_SECRET)))

    assert cli_main(["remediate", TARGET, "--dry-run"]) == 2
    out = capsys.readouterr()
    assert "Dry run: the plan (nothing is changed)" in out.out
    assert "reconcile_roles [planned]" in out.out and "rotate [planned]" in out.out
    assert "secret.expired" in out.out and "role.missing" in out.out

    assert cli_main(["remediate", TARGET]) == 0
    fixed = capsys.readouterr()
    assert "Before: hpc-prod is FAILING" in fixed.out and "After: hpc-prod is HEALTHY" in fixed.out
    assert "reconcile_roles [applied]" in fixed.out and "rotate [applied]" in fixed.out

    assert cli_main(["validate", TARGET]) == 0
    with twin.state.lock:
        cc_secret = str(twin.state.cyclecloud_servers[CC_HOST].accounts["azure"]["AzureRMApplicationSecret"])
    everything = out.out + out.err + fixed.out + fixed.err + capsys.readouterr().out
    assert_no_leak(everything, *SECRETS, cc_secret)


def test_cli_json_is_the_http_body(setup: Any, capsys: pytest.CaptureFixture[str]) -> None:
    setup(World())
    assert cli_main(["remediate", TARGET, "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["result"] == "healthy" and body["actions"] == [] and body["status"] == "healthy"


def test_cli_unknown_target_is_exit_2_before_any_cloud_call(setup: Any, twin: Twin,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    setup(World())
    seen = len(twin.request_log)
    assert cli_main(["remediate", "no-such-target"]) == 2
    assert "No target named 'no-such-target'" in capsys.readouterr().err
    assert len(twin.request_log) == seen


# -- AUTO_REMEDIATE ----------------------------------------------------------------------------------------------


def _run_health_timer() -> None:
    import azure.functions as func

    import function_app

    function_app._context = None
    try:
        handler = function_app.check_credential_health.build().get_user_function()

        async def timer_then_queue() -> None:  # the timer fans out: its queued checks run as the trigger would
            await handler(func.TimerRequest(past_due=False))
            await deliver_in_process()

        asyncio.run(timer_then_queue())
    finally:
        function_app._context = None


def _contributor_present(twin: Twin) -> bool:
    with twin.state.lock:
        return any(ra.principal_id == SP_OBJECT_ID for ra in twin.state.role_assignments.values())


def test_health_timer_remediates_when_auto_remediate_is_on(setup: Any, twin: Twin,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="function_app")
    caplog.set_level(logging.INFO, logger="shared")
    setup(World(), without_contributor)
    monkeypatch.setenv("AUTO_REMEDIATE", "true")
    _run_health_timer()
    assert _contributor_present(twin)
    assert any("auto-remediation: hpc-prod=fixed->healthy" in r.getMessage() for r in caplog.records), \
        [r.getMessage() for r in caplog.records if "auto-remediation" in r.getMessage()]


def test_health_timer_leaves_targets_alone_by_default(setup: Any, twin: Twin,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    setup(World(), without_contributor)
    monkeypatch.delenv("AUTO_REMEDIATE", raising=False)
    _run_health_timer()
    assert not _contributor_present(twin)


def test_one_failing_target_never_stops_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    """remediate_targets: each target's outcome recorded; an error in one is logged and the rest still run."""
    import shared.remediation as remediation
    from shared.errors import ServiceError

    done: list[str] = []

    fine = SimpleNamespace(result=SimpleNamespace(value="fixed"), status=SimpleNamespace(value="healthy"),
                           actions=())

    async def fake(ctx: Any, name: str, *, dry_run: bool, deadline_seconds: float) -> Any:
        if name == "broken":
            raise ServiceError("ARM kept failing.", target=name)
        if name == "crashing":
            raise RuntimeError("bug")
        done.append(name)
        return fine

    ctx = SimpleNamespace(settings=SimpleNamespace(max_concurrency=2))
    monkeypatch.setattr(remediation, "remediate_target", fake)
    sweep = asyncio.run(remediation.remediate_targets(ctx, ["a", "broken", "crashing", "b"]))  # type: ignore[arg-type]
    assert sorted(done) == ["a", "b"]
    assert set(sweep.results) == {"a", "b"} and set(sweep.errors) == {"broken", "crashing"}
    assert sweep.errors["broken"]["code"] == "upstream_error"
    assert "a=fixed->healthy" in sweep.summary() and "broken=error(upstream_error)" in sweep.summary()
