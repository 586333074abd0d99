"""The scenario library (tests/scenarios, docs/scenarios): every failure of the CycleCloud guide, run through the
product's CLI against the twin. Each scenario must name the guide's cause (its finding codes), exit as the guide's
situation deserves, never call a target healthy before it is, and its page in docs/scenarios/ must say what the
CLI prints today (`python -m tests.scenarios --write` regenerates the pages)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.leaks import assert_no_leak
from tests.scenarios.library import MISTYPED_SECRET, PREVIOUS_SECRET, SCENARIOS, GuideScenario
from tests.scenarios.runner import DOCS, drift, index, run_scenario
from tests.twin import Twin
from tests.world import CC_PASSWORD, CURRENT_SECRET


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, twin: Twin) -> Twin:
    """The runner sets and restores the product's settings itself; the twin fixture points this process at it."""
    return twin


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario_names_the_guides_cause_and_its_page_matches(scenario: GuideScenario, clean_env: Twin,
                                                              cc_ca: str, azurite: str) -> None:
    run = run_scenario(clean_env, scenario, cc_ca, azurite)
    validate, dry_run, remediate = run.steps[:3]
    everything = "\n".join(s.output for s in run.steps)
    assert_no_leak(everything, CURRENT_SECRET, CC_PASSWORD, PREVIOUS_SECRET, MISTYPED_SECRET)

    assert validate.exit_code == scenario.validate_exit, validate.output
    for code in scenario.expect:
        assert f" {code} " in validate.output or f" {code}\n" in validate.output, (code, validate.output)
    if not scenario.expect:
        assert "No problems found." in validate.output
    # a dry run changes nothing, so the target's status (its exit code) is the same as validate's
    assert dry_run.exit_code == validate.exit_code, dry_run.output
    assert "Apply it" not in dry_run.output or "[failed]" not in dry_run.output, dry_run.output
    if scenario.remediate_exit is not None:
        assert remediate.exit_code == scenario.remediate_exit, remediate.output
    # healthy is said only when validate agrees, never while something is still settling
    if "After: hpc-prod is HEALTHY" in remediate.output or "is healthy" in remediate.output:
        assert remediate.exit_code == 0
    if scenario.remediate_result == "in_progress":
        assert "not healthy yet" in remediate.output or "Work continues" in remediate.output, remediate.output
    # a no-op is never reported as applied
    for line in remediate.output.splitlines():
        if "[applied]" in line:
            assert "0 created" not in line
    if scenario.follow_up is not None:
        assert run.steps[3].exit_code == 0, run.steps[3].output
    if "role.propagating" in scenario.expect:  # the guide's case: CycleCloud's own Validate still fails
        assert "does not have authorization" in str(validate.cyclecloud_says)
    # the judge: "healthy" (exit 0) only when CycleCloud's own Validate passes at that moment
    for step in run.steps:
        if step.exit_code == 0:
            assert step.cyclecloud_says is None, (step.command, step.cyclecloud_says)

    difference = drift(run)
    assert difference is None, (f"docs/scenarios/{scenario.name}.md no longer matches the CLI; run `python -m "
                                f"tests.scenarios --write`:\n{difference}")


def test_the_index_lists_every_scenario() -> None:
    readme = (DOCS / "README.md").read_text(encoding="utf-8")
    assert readme == index(SCENARIOS), "run `python -m tests.scenarios --write`"
    pages = {p.stem for p in DOCS.glob("*.md")} - {"README"}
    assert pages == {s.name for s in SCENARIOS}


def test_every_guide_failure_has_a_scenario() -> None:
    """The guide's failures (seeds): expired, invalid, whitespace, secret id, CycleCloud not updated, role
    missing/Reader/wrong scope/propagating, managed identity off/without role, policy, tenant mismatch, custom
    role, Activity Log, AADSTS90002, AADSTS700016, wrong subscription."""
    covered: set[Any] = {c for s in SCENARIOS for c in s.expect}
    assert {"secret.expired", "secret.invalid", "secret.whitespace", "secret.looks_like_secret_id",
            "cyclecloud.out_of_sync", "role.missing", "role.propagating", "identity.disabled",
            "identity.role_missing", "role.policy_denied", "policy.denied_resource", "tenant.mismatch",
            "role.custom_role_incomplete", "tenant.not_found", "app.not_found_in_tenant",
            "subscription.not_found"} <= covered
