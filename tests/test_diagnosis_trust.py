"""Diagnosis you can trust (issue 10), through the HTTP routes and the CLI against the twin: never "healthy"
before CycleCloud works, never a no-op called a fix, each ARM code and product-side problem named as itself.
(The same failures through the CLI, as a new user meets them, are the scenario library: test_scenarios.py.)"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.cli import main as cli_main
from shared.remediation.schema import REMEDIATION_SCHEMA
from tests.leaks import assert_no_leak
from tests.scenarios.library import (
    TYPO_SUBSCRIPTION,
    TYPO_TENANT,
    combine,
    custom_role_target,
    custom_role_without,
    function_cannot_read_cyclecloud_password,
    policy_denied_vm,
    slow_role_propagation,
    storage_read_failure,
    without_contributor,
)
from tests.schema_check import validate_json
from tests.test_remediation_twin import SECRETS, call_function, state_fingerprint
from tests.twin import Twin
from tests.world import (
    APP_ID,
    FUNCTION_OBJECT_ID,
    SP_OBJECT_ID,
    SUBSCRIPTION,
    TARGET,
    VAULT_RESOURCE_ID,
    World,
)

ROOT = Path(__file__).resolve().parent.parent


def call(route: str, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """POST /api/targets/hpc-prod/<route> through the Function; the answer carries no secret."""
    response = call_function(route, body)
    text = response.get_body().decode()
    assert_no_leak(text, *SECRETS)
    return response.status_code, json.loads(text)


def codes(report: dict[str, Any]) -> list[str]:
    return sorted(f["code"] for f in report["findings"])


def retarget(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], **values: Any) -> None:
    targets = json.loads(env["TARGETS"])
    targets[0].update(values)
    monkeypatch.setenv("TARGETS", json.dumps(targets))


def age_role_assignments(twin: Twin, minutes: int = 10) -> None:
    with twin.state.lock:
        for ra in twin.state.role_assignments.values():
            if ra.created_at is not None:
                ra.created_at -= timedelta(minutes=minutes)


# -- 1. ground truth before "healthy": a role still propagating ---------------------------------------------------


def test_remediate_during_role_propagation_answers_202_in_progress_never_healthy(setup: Any, twin: Twin) -> None:
    setup(World(), combine(without_contributor, slow_role_propagation))

    status, body = call("remediate")

    assert status == 202, body
    validate_json(body, REMEDIATION_SCHEMA)
    assert body["result"] == "in_progress" and body["status"] == "failing"
    assert [(a["action"], a["outcome"]) for a in body["actions"]] == [("reconcile_roles", "applied")]
    assert [f["code"] for f in body["after"]["findings"]] == ["role.propagating"]
    evidence = body["after"]["findings"][0]["evidence"]
    assert evidence["check_again_at"] and evidence["source"].startswith("Microsoft.Authorization/permissions")
    assert "Microsoft.Storage/storageAccounts/read" in evidence["missing_actions"]

    age_role_assignments(twin)  # Azure has applied it
    status, report = call("validate")
    assert status == 200 and report["status"] == "healthy", codes(report)


def test_validate_names_a_role_assigned_a_minute_ago_as_propagating(setup: Any, twin: Twin,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    def just_assigned(scenario: dict[str, Any]) -> None:
        slow_role_propagation(scenario)
        for ra in scenario["role_assignments"]:
            if ra["principal_id"] == SP_OBJECT_ID:
                ra["created"] = "now-60s"

    setup(World(), just_assigned)
    assert cli_main(["validate", TARGET]) == 2
    out = capsys.readouterr().out
    assert "role.propagating" in out and "check again after" in out and "HEALTHY" not in out
    status, body = call("remediate")
    assert status == 202 and body["actions"] == [] and body["result"] == "in_progress"


# -- 2. only what changed is reported; a custom role lacking an action needs a person ----------------------------


def test_custom_role_missing_an_action_is_not_a_noop_fix(setup: Any, twin: Twin, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    env = setup(World(), custom_role_without("Microsoft.Network/virtualNetworks/read"))
    targets = json.loads(env["TARGETS"])
    custom_role_target(targets[0])
    monkeypatch.setenv("TARGETS", json.dumps(targets))
    before = state_fingerprint(twin)

    status, body = call("remediate")
    assert status == 200 and body["actions"] == [], body["actions"]
    assert body["result"] == "needs_attention"
    (finding,) = body["needs_attention"]
    assert finding["code"] == "role.custom_role_incomplete" and not finding["fixable_by_remediate"]
    assert finding["evidence"]["missing_actions"] == ["Microsoft.Network/virtualNetworks/read"]
    assert finding["evidence"]["role"] == "CycleCloud Orchestrator"
    first = finding["remediation"][0]
    assert "az role definition update --role-definition" in first["cli"]
    assert '["Microsoft.Network/virtualNetworks/read"]' in first["cli"] and first["portal"] != first["cli"]
    assert "Contributor" not in first["cli"]
    assert state_fingerprint(twin) == before

    assert cli_main(["remediate", TARGET, "--dry-run"]) == 2
    out = capsys.readouterr().out
    assert "[planned]" not in out and "would be taken" not in out and "Apply it" not in out


# -- 3. ARM codes with findings of their own --------------------------------------------------------------------


def test_a_mistyped_subscription_is_one_clear_error(setup: Any, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    env = setup(World())
    retarget(monkeypatch, env, subscription_ids=[TYPO_SUBSCRIPTION])

    status, report = call("validate")
    assert status == 200 and report["status"] == "failing"
    assert codes(report) == ["subscription.not_found"], codes(report)
    finding = report["findings"][0]
    assert finding["subject"] == TYPO_SUBSCRIPTION and finding["evidence"]["arm_code"] == "SubscriptionNotFound"
    assert "az account list --all" in finding["remediation"][0]["cli"] and "{{" not in finding["remediation"][0]["cli"]
    assert not [c for c in report["checks"] if c["outcome"] == "failed"]

    assert cli_main(["validate", TARGET]) == 2
    out = capsys.readouterr().out
    assert "subscription.not_found" in out and "check.failed" not in out and "Function's logs" not in out


def test_arm_codes_map_to_their_own_findings() -> None:
    from shared.adapters.arm_errors import ARM_CODE_FINDINGS
    from shared.findings import CATALOG

    assert ARM_CODE_FINDINGS["SubscriptionNotFound"] == "subscription.not_found"
    assert ARM_CODE_FINDINGS["InvalidAuthenticationTokenTenant"] == "tenant.mismatch"
    assert set(ARM_CODE_FINDINGS.values()) <= set(CATALOG)


# -- 4. Activity Log: only failures newer than the fix, filtered by the ids the events carry ---------------------


def test_activity_log_failures_older_than_the_role_are_history(setup: Any) -> None:
    def fixed_since(scenario: dict[str, Any]) -> None:
        storage_read_failure(72)(scenario)  # three days ago
        for ra in scenario["role_assignments"]:
            if ra["principal_id"] == SP_OBJECT_ID:
                ra["created"] = "now-1d"  # the role was granted yesterday

    setup(World(), fixed_since)
    _, report = call("validate")
    assert report["status"] == "healthy", codes(report)


def test_activity_log_failures_newer_than_the_role_count_and_the_filter_uses_the_client_id(setup: Any) -> None:
    def failing_since(scenario: dict[str, Any]) -> None:
        storage_read_failure(2)(scenario)
        for ra in scenario["role_assignments"]:
            if ra["principal_id"] == SP_OBJECT_ID:
                ra["created"] = "now-1d"

    setup(World(), failing_since)
    _, report = call("validate")
    (finding,) = [f for f in report["findings"] if f["code"] == "activity.failed_operations"]
    step = finding["remediation"][0]
    assert f"--caller {APP_ID}" in step["cli"] and SP_OBJECT_ID not in step["cli"]
    assert f"Event initiated by: {APP_ID}" in step["portal"]
    assert finding["evidence"]["ignored_as_history"] == 0 and finding["evidence"]["caller_filter"] == APP_ID


def test_activity_log_events_are_matched_by_the_object_id_in_their_claims(setup: Any) -> None:
    """A managed identity is named by its client id in `caller`; only the claims carry the object id."""
    def by_object_id_claim(scenario: dict[str, Any]) -> None:
        storage_read_failure(2, caller=APP_ID)(scenario)

    setup(World(), by_object_id_claim)
    _, report = call("validate")
    finding = next(f for f in report["findings"] if f["code"] == "activity.failed_operations")
    assert finding["evidence"]["events"][0]["caller"] == APP_ID


# -- 5. policy denying resource creation ------------------------------------------------------------------------


def test_policy_denying_vm_creation_names_the_assignment_the_action_and_both_options(setup: Any) -> None:
    setup(World(), policy_denied_vm)
    status, body = call("remediate")
    assert status == 200 and body["actions"] == []
    (finding,) = body["needs_attention"]
    assert finding["code"] == "policy.denied_resource"
    assert finding["evidence"]["policy_assignment_display_name"] == "Allowed VM sizes"
    assert finding["evidence"]["denied_actions"] == ["Microsoft.Compute/virtualMachines/write"]
    exemption, parameters = finding["remediation"]
    assert "az policy exemption create" in exemption["cli"] and "allowed-vm-skus" in exemption["cli"]
    assert f"--scope /subscriptions/{SUBSCRIPTION}/resourceGroups/" in exemption["cli"]
    assert "cluster" in parameters["action"] and "az policy assignment show" in parameters["cli"]
    assert "grant what they name" not in json.dumps(finding)


# -- 6. product-side problems are not CycleCloud's -------------------------------------------------------------


def test_unreadable_cyclecloud_password_is_the_products_problem_not_a_cyclecloud_login(setup: Any,
                                                                                       twin: Twin) -> None:
    setup(World(), function_cannot_read_cyclecloud_password)
    _, report = call("validate")
    assert codes(report) == ["function.cyclecloud_password_unreadable"], codes(report)
    finding = report["findings"][0]
    assert finding["evidence"]["cyclecloud_contacted"] is False
    assert "reset the CycleCloud user's password" not in json.dumps(finding).lower()
    assert not [r for r in twin.request_log if r.service == "cyclecloud" and r.status == 401]  # no refused login


def test_a_wrong_tenant_id_is_not_claimed_fixable(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    env = setup(World())
    retarget(monkeypatch, env, tenant_id=TYPO_TENANT)
    _, body = call("remediate")
    assert body["actions"] == [], body["actions"]
    left = {f["code"]: f for f in body["needs_attention"]}
    assert set(left) == {"tenant.not_found"}, set(left)
    assert "cyclecloud.out_of_sync" not in json.dumps(body) and "rotate --force" not in json.dumps(body)
    assert left["tenant.not_found"]["evidence"]["likely_tenant_id"] == "72f988bf-86f1-41af-91ab-2d7cd011db47"
    validate_json(body | {"requestedBy": "x"} if "requestedBy" not in body else body, REMEDIATION_SCHEMA)


def test_the_products_own_object_id_is_filled_in_not_left_as_a_placeholder(setup: Any) -> None:
    def no_vault_role(scenario: dict[str, Any]) -> None:
        scenario["role_assignments"] = [ra for ra in scenario["role_assignments"]
                                        if not (ra["principal_id"] == FUNCTION_OBJECT_ID
                                                and ra["scope"] == VAULT_RESOURCE_ID)]

    setup(World(), no_vault_role)
    _, report = call("validate")
    denied = [f for f in report["findings"] if f["code"] == "function.permission_missing"]
    assert denied, codes(report)
    for finding in denied:
        for step in finding["remediation"]:
            assert "<identity object id>" not in step["cli"] + step["portal"]
            assert "<vault resource id>" not in step["cli"]
            assert step["portal"] != step["cli"]


def test_an_object_id_azure_named_is_filled_into_the_grant() -> None:
    from shared.diagnosis.runner import grant_lines
    from shared.errors import AccessDeniedError

    exc = AccessDeniedError(
        "The product's identity is not allowed to read secret s in Key Vault kv-remediator.",
        reason=f"Caller: appid=bbbbbbbb-1111-4222-8333-444444444444;oid={FUNCTION_OBJECT_ID};iss=https://sts",
        fix="Assign the role 'Key Vault Secrets Officer' (az role assignment create --role \"Key Vault Secrets "
            "Officer\" --assignee <identity object id> --scope <vault resource id>).",
        details={"vault": "kv-remediator", "role": "Key Vault Secrets Officer"})
    lines = grant_lines(exc)
    assert f"--assignee {FUNCTION_OBJECT_ID}" in lines["grant_cli"]
    assert "$(az keyvault show --name kv-remediator --query id -o tsv)" in lines["grant_cli"]
    assert FUNCTION_OBJECT_ID in lines["grant_portal"] and lines["grant_portal"] != lines["grant_cli"]


# -- 7. the CLI's text ----------------------------------------------------------------------------------------


def test_a_long_finding_code_never_runs_into_its_title() -> None:
    from shared.cli.validate_cmd import render
    from shared.diagnosis.report import Report, overall_status
    from shared.findings import make_finding

    findings = (make_finding("function.cyclecloud_password_unreadable", "x"), make_finding("secret.expired", "y"))
    report = Report(target=TARGET, mode="service_principal", status=overall_status(findings),
                    generated_at="2026-01-01T00:00:00Z", duration_ms=1.0, findings=findings, advice=(), checks=())
    lines = [line for line in render(report) if "function.cyclecloud_password_unreadable" in line
             or " secret.expired " in line]
    for line in lines:
        code = line.split()[2]
        assert line[line.index(code) + len(code):].startswith("  "), line
    assert len({line.index(line.split()[3]) for line in lines}) == 1  # titles line up


def test_a_dry_run_whose_rotation_fails_does_not_say_apply_it(setup: Any, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    setup(World(secret_end="now-2d"))
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)  # rotation cannot journal: its dry run fails
    cli_main(["remediate", TARGET, "--dry-run"])
    out = capsys.readouterr().out
    if "rotate [failed]" in out:
        assert "Apply it" not in out and "Do not apply it yet" in out, out
    else:  # the rotation can plan without storage: then applying is what to do next
        assert "rotate [planned]" in out and "Apply it" in out, out
    status, body = call("remediate", b'{"dry_run": true}')
    assert status == 200 and body["result"] == "planned", body
    failed = [a for a in body["actions"] if a["outcome"] == "failed"]
    if failed:
        assert not any("applies the plan" in step for step in body["next"]), body["next"]
        assert any("Fix the failed step" in step for step in body["next"]), body["next"]


def test_the_cli_survives_a_reader_that_stops_reading(setup: Any, twin: Twin) -> None:
    env = setup(World(secret_end="now-2d"))
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "shared", "validate", TARGET], cwd=ROOT, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `| head -0`: the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert code == 141  # as a process killed by SIGPIPE: 128 + 13


def test_a_closed_pipe_mid_output_is_quiet(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import shared.__main__ as entry

    class ClosedAfterOneLine(io.StringIO):
        def write(self, text: str) -> int:
            if self.getvalue():
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

        def fileno(self) -> int:
            return os.open(os.devnull, os.O_WRONLY)

    def prints_a_report(argv: list[str]) -> int:
        from shared.cli.output import emit

        for n in range(50):
            emit(f"line {n}")
        return 0

    monkeypatch.setattr(sys, "stdout", ClosedAfterOneLine())
    monkeypatch.setattr(entry, "main", prints_a_report)
    assert entry.run(["validate", TARGET]) == 141
