"""Pure unit tests of remediation planning and orchestration (order, dependencies, time budget, dry run,
one failure never stopping independent fixes). The fixers are stand-ins for the product's modules; the twin
tests (test_remediation_twin.py) drive the real ones."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from shared.diagnosis.report import Report, overall_status
from shared.errors import LockedError, PolicyDeniedError, ServiceError
from shared.findings import FixAction, make_finding
from shared.remediation.engine import MIN_ACTION_SECONDS, run_remediation
from shared.remediation.model import FixResult, Outcome, Result
from shared.remediation.plan import plan_fixes
from tests.world import TARGET


def report(*codes: str) -> Report:
    findings = tuple(make_finding(code, f"{code} on {TARGET}") for code in codes)
    return Report(target=TARGET, mode="service_principal", status=overall_status(findings),
                  generated_at="2026-01-01T00:00:00Z", duration_ms=1.0, findings=findings, advice=(), checks=())


# -- planning -------------------------------------------------------------------------------------------------


def test_plan_puts_roles_first_and_one_rotation_settles_every_secret_finding() -> None:
    findings = report("cyclecloud.out_of_sync", "secret.expired", "role.missing", "secret.whitespace").findings
    plan = plan_fixes(findings)
    assert [p.action for p in plan] == [FixAction.RECONCILE_ROLES, FixAction.ROTATE]
    assert plan[0].addresses == ("role.missing",)
    assert set(plan[1].addresses) == {"secret.expired", "secret.whitespace", "cyclecloud.out_of_sync"}
    assert plan[1].depends_on == (FixAction.RECONCILE_ROLES,)


def test_plan_trims_when_only_whitespace_is_wrong_and_the_trim_covers_the_push() -> None:
    plan = plan_fixes(report("secret.whitespace", "cyclecloud.out_of_sync").findings)
    assert [p.action for p in plan] == [FixAction.STORE_TRIMMED_SECRET]
    assert set(plan[0].addresses) == {"secret.whitespace", "cyclecloud.out_of_sync"}
    assert plan[0].depends_on == ()


def test_plan_pushes_when_only_cyclecloud_is_out_of_sync() -> None:
    plan = plan_fixes(report("cyclecloud.out_of_sync").findings)
    assert [(p.action, p.addresses) for p in plan] == [(FixAction.PUSH_TO_CYCLECLOUD, ("cyclecloud.out_of_sync",))]


def test_plan_ignores_findings_that_need_a_person() -> None:
    assert plan_fixes(report("tenant.mismatch", "role.policy_denied", "app.disabled").findings) == []


def test_plan_rotation_without_role_findings_has_no_dependency() -> None:
    plan = plan_fixes(report("secret.expiring_soon").findings)
    assert [(p.action, p.depends_on) for p in plan] == [(FixAction.ROTATE, ())]


# -- orchestration --------------------------------------------------------------------------------------------


class FakeFixers:
    """Stand-in fixers: a sequence of reports for validate, and per-action behaviour."""

    def __init__(self, reports: list[Report], behaviour: dict[FixAction, Callable[..., Any]] | None = None) -> None:
        self.reports = list(reports)
        self.behaviour = behaviour or {}
        self.calls: list[tuple[str, Any]] = []

    async def validate(self, target: str) -> Report:
        self.calls.append(("validate", target))
        return self.reports.pop(0) if len(self.reports) > 1 else self.reports[0]

    async def apply(self, action: FixAction, _target: str, *, dry_run: bool, deadline_seconds: float) -> FixResult:
        self.calls.append((action.value, {"dry_run": dry_run, "deadline": deadline_seconds}))
        behave = self.behaviour.get(action)
        if behave is not None:
            result = behave(dry_run=dry_run, deadline_seconds=deadline_seconds)
            if asyncio.iscoroutine(result):
                result = await result
            assert isinstance(result, FixResult)
            return result
        return FixResult(Outcome.PLANNED if dry_run else Outcome.APPLIED, f"{action.value} done")

    def actions_called(self) -> list[str]:
        return [name for name, _ in self.calls if name != "validate"]


def run(fixers: FakeFixers, *, dry_run: bool = False, deadline: float = 200.0,
        clock: Callable[[], float] | None = None) -> Any:
    kwargs: dict[str, Any] = {"clock": clock} if clock else {}
    return asyncio.run(run_remediation(fixers, TARGET, dry_run=dry_run, deadline_seconds=deadline, **kwargs))


def test_all_fixes_applied_in_order_and_the_target_ends_healthy() -> None:
    fixers = FakeFixers([report("secret.expired", "role.missing", "cyclecloud.out_of_sync"), report()])
    result = run(fixers)
    assert fixers.actions_called() == ["reconcile_roles", "rotate"]
    assert [c[0] for c in fixers.calls] == ["validate", "reconcile_roles", "rotate", "validate"]
    assert result.result is Result.FIXED and result.http_status == 200 and result.exit_code == 0
    assert [a.outcome for a in result.actions] == [Outcome.APPLIED, Outcome.APPLIED]
    body = result.to_dict()
    assert body["before"]["status"] == "failing" and body["after"]["status"] == "healthy"
    assert body["needs_attention"] == [] and body["result"] == "fixed"


def test_failed_role_repair_skips_the_rotation_with_the_reason() -> None:
    def deny(**_: Any) -> FixResult:
        raise PolicyDeniedError("Azure Policy denied the role assignment.", reason="policy 'no-contributor'",
                                fix="Ask for an exemption.")

    fixers = FakeFixers([report("secret.expired", "role.missing"), report("secret.expired", "role.missing")],
                        {FixAction.RECONCILE_ROLES: deny})
    result = run(fixers)
    assert fixers.actions_called() == ["reconcile_roles"]  # the rotation never ran
    roles, rotate = result.actions
    assert roles.outcome is Outcome.FAILED and roles.details["code"] == "policy_denied"
    assert roles.reason == "policy 'no-contributor'" and roles.fix == "Ask for an exemption."
    assert rotate.outcome is Outcome.SKIPPED and "reconcile_roles" in rotate.message
    assert result.result is Result.NEEDS_ATTENTION and result.exit_code == 2
    assert {f.code for f in result.needs_attention} == {"secret.expired", "role.missing"}


def test_a_failed_independent_fix_does_not_stop_the_next_one() -> None:
    def boom(**_: Any) -> FixResult:
        raise RuntimeError("unexpected")

    fixers = FakeFixers([report("role.missing", "cyclecloud.out_of_sync"), report("role.missing")],
                        {FixAction.RECONCILE_ROLES: boom})
    result = run(fixers)
    assert fixers.actions_called() == ["reconcile_roles", "push_to_cyclecloud"]
    assert [a.outcome for a in result.actions] == [Outcome.FAILED, Outcome.APPLIED]
    assert "RuntimeError" in result.actions[0].message
    assert result.result is Result.PARTIALLY_FIXED


def test_dry_run_plans_without_a_second_validation_and_passes_dry_run_down() -> None:
    fixers = FakeFixers([report("secret.expired", "role.missing", "tenant.mismatch")])
    result = run(fixers, dry_run=True)
    assert [c[0] for c in fixers.calls] == ["validate", "reconcile_roles", "rotate"]
    assert all(call[1]["dry_run"] is True for call in fixers.calls[1:])
    assert result.result is Result.PLANNED and result.after is None
    assert [a.outcome for a in result.actions] == [Outcome.PLANNED, Outcome.PLANNED]
    assert [f.code for f in result.needs_attention] == ["tenant.mismatch"]
    assert result.exit_code == 2 and result.http_status == 200


def test_healthy_target_takes_no_action() -> None:
    fixers = FakeFixers([report()])
    result = run(fixers)
    assert fixers.actions_called() == [] and [c[0] for c in fixers.calls] == ["validate"]
    assert result.result is Result.HEALTHY and result.after is not None and result.exit_code == 0


def test_findings_that_need_a_person_stay_with_their_steps() -> None:
    fixers = FakeFixers([report("tenant.mismatch")])
    result = run(fixers)
    assert result.result is Result.NEEDS_ATTENTION
    (left,) = result.to_dict()["needs_attention"]
    assert left["code"] == "tenant.mismatch" and left["remediation"] and left["fixable_by_remediate"] is False


def test_rotation_waiting_for_propagation_answers_202_and_where_to_look() -> None:
    def waiting(**_: Any) -> FixResult:
        return FixResult(Outcome.IN_PROGRESS, "waiting for the new secret to propagate")

    fixers = FakeFixers([report("secret.expired"), report("secret.expired")], {FixAction.ROTATE: waiting})
    result = run(fixers)
    assert result.result is Result.IN_PROGRESS and result.http_status == 202
    body = result.to_dict()
    assert body["statusUrl"] == f"/api/targets/{TARGET}/rotation"
    assert any(f"/api/targets/{TARGET}/remediate" in step for step in body["next"])


def test_budget_is_passed_down_minus_the_final_validation_reserve() -> None:
    fixers = FakeFixers([report("secret.expired"), report()])
    run(fixers, deadline=200.0)
    (_, args), = [c for c in fixers.calls if c[0] == "rotate"]
    assert 160.0 <= args["deadline"] <= 170.0  # 200 minus a 30-s reserve, minus a little elapsed time


def test_no_action_starts_when_the_budget_is_spent() -> None:
    ticks = iter([0.0, 0.0, 100.0 - MIN_ACTION_SECONDS + 1, 100.0, 100.0, 100.0, 100.0, 100.0])
    fixers = FakeFixers([report("secret.expired"), report("secret.expired")])
    result = run(fixers, deadline=100.0, clock=lambda: next(ticks, 100.0))
    assert fixers.actions_called() == []
    assert result.actions[0].outcome is Outcome.DEFERRED
    assert result.result is Result.IN_PROGRESS and result.http_status == 202


def test_a_fixer_that_overruns_is_cut_off_and_the_call_still_returns() -> None:
    async def slow(**_: Any) -> FixResult:
        await asyncio.sleep(30)
        return FixResult(Outcome.APPLIED, "too late")

    fixers = FakeFixers([report("secret.expired"), report("secret.expired")], {FixAction.ROTATE: slow})
    import shared.remediation.engine as engine

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "BACKSTOP_GRACE_SECONDS", 0.0)
        mp.setattr(engine, "AFTER_RESERVE_SECONDS", 0.5)
        mp.setattr(engine, "MIN_ACTION_SECONDS", 0.1)
        result = run(fixers, deadline=2.0)
    assert result.actions[0].outcome is Outcome.IN_PROGRESS  # a rotation is resumable
    assert result.http_status == 202


def test_someone_elses_rotation_in_flight_is_in_progress_not_failure() -> None:
    def locked(**_: Any) -> FixResult:
        raise LockedError("A rotation of 'hpc-prod' is already in progress.", target=TARGET,
                          details={"statusUrl": f"/api/targets/{TARGET}/rotation"})

    fixers = FakeFixers([report("secret.expired"), report("secret.expired")], {FixAction.ROTATE: locked})
    result = run(fixers)
    assert result.actions[0].outcome is Outcome.IN_PROGRESS and result.http_status == 202


def test_a_failing_final_validation_keeps_the_actions_and_says_what_to_call() -> None:
    class FinalFails(FakeFixers):
        async def validate(self, target: str) -> Report:
            if any(name == "validate" for name, _ in self.calls):
                self.calls.append(("validate", target))
                raise ServiceError("ARM kept failing.", target=target)
            return await super().validate(target)

    fixers = FinalFails([report("cyclecloud.out_of_sync")])
    result = run(fixers)
    assert [a.outcome for a in result.actions] == [Outcome.APPLIED]
    assert result.after is None and result.result is Result.PARTIALLY_FIXED and result.http_status == 200
    assert "upstream_error" in result.next_steps[0] and f"/api/targets/{TARGET}/validate" in result.next_steps[0]


# -- trust: never healthy before it is, never a no-op called a fix (issue 10) -----------------------------------


def propagating_report() -> Report:
    finding = make_finding("role.propagating", "not applied yet",
                           evidence={"check_again_at": "2026-01-01T00:02:00Z", "retry_after_seconds": 90})
    return Report(target=TARGET, mode="service_principal", status=overall_status((finding,)),
                  generated_at="2026-01-01T00:00:00Z", duration_ms=1.0, findings=(finding,), advice=(), checks=())


def test_a_role_still_propagating_after_the_fix_is_in_progress_with_when_to_check_again() -> None:
    fixers = FakeFixers([report("role.missing"), propagating_report()])
    result = run(fixers)
    assert [a.outcome for a in result.actions] == [Outcome.APPLIED]
    assert result.result is Result.IN_PROGRESS and result.http_status == 202 and result.exit_code == 2
    body = result.to_dict()
    assert body["checkAgainAt"] == "2026-01-01T00:02:00Z" and body["retryAfterSeconds"] == 90
    assert body["statusUrl"] == f"/api/targets/{TARGET}/validate"
    assert "healthy" not in result.message.replace("not healthy yet", "")
    assert any("after 2026-01-01T00:02:00Z" in step for step in result.next_steps)


def test_nothing_but_propagation_is_in_progress_without_any_action() -> None:
    result = run(FakeFixers([propagating_report()]))
    assert result.actions == () and result.result is Result.IN_PROGRESS and result.http_status == 202
    assert "nothing needs to be changed" in result.message


def test_an_action_that_changes_nothing_is_nothing_to_do_not_a_fix() -> None:
    fixers = FakeFixers([report("role.missing"), report("role.missing")], {
        FixAction.RECONCILE_ROLES: lambda **_: FixResult(Outcome.NOTHING_TO_DO, "1 already present, 0 created.")})
    result = run(fixers)
    assert [a.outcome for a in result.actions] == [Outcome.NOTHING_TO_DO]
    assert result.result is Result.NEEDS_ATTENTION and "nothing to change" in result.message
    assert result.after is result.before  # nothing changed: no second validation pretending otherwise


def test_a_dry_run_with_a_failing_step_does_not_say_apply_it() -> None:
    fixers = FakeFixers([report("secret.expired")], {
        FixAction.ROTATE: lambda **_: (_ for _ in ()).throw(ServiceError("Storage is not configured."))})
    result = run(fixers, dry_run=True)
    assert [a.outcome for a in result.actions] == [Outcome.FAILED]
    assert not any("applies the plan" in step for step in result.next_steps), result.next_steps
    assert "fix them before applying" in result.message and "0 action(s) would be taken" in result.message


def test_activity_failures_settled_by_the_role_repair_are_addressed_by_it() -> None:
    roles = make_finding("role.missing", "missing")
    activity = make_finding("activity.failed_operations", "denied", evidence={"settled_by_roles": True})
    other = make_finding("activity.failed_operations", "quota", evidence={"settled_by_roles": False},
                         subject="other")
    plan = plan_fixes([roles, activity, other])
    assert plan[0].addresses == ("role.missing", "activity.failed_operations")
    assert plan_fixes([activity]) == []  # without a role to repair, nothing settles it


def test_a_role_reconciliation_that_creates_nothing_is_nothing_to_do() -> None:
    from shared.remediation.fixers import roles_fix_result
    from shared.roles import AssignmentOutcome, AssignmentState, PrincipalRef, RoleReconciliation

    present = AssignmentOutcome("sub", "/subscriptions/sub", "b24988ac-6180-42a0-ab88-20f7382dd24c", "Contributor",
                                "sp", AssignmentState.PRESENT, assignment_name="a")
    result = RoleReconciliation(TARGET, "service_principal", False, PrincipalRef("sp", "service_principal"),
                                (present,))
    fixed = roles_fix_result(result, dry_run=False)
    assert fixed.outcome is Outcome.NOTHING_TO_DO and "Nothing was changed" in fixed.message
    plan = roles_fix_result(RoleReconciliation(TARGET, "service_principal", True,
                                               PrincipalRef("sp", "service_principal"), (present,)), dry_run=True)
    assert plan.outcome is Outcome.NOTHING_TO_DO
    created = AssignmentOutcome("sub", "/subscriptions/sub", "b24988ac-6180-42a0-ab88-20f7382dd24c", "Contributor",
                                "sp", AssignmentState.CREATED, assignment_name="a", verified=True)
    applied = roles_fix_result(RoleReconciliation(TARGET, "service_principal", False,
                                                  PrincipalRef("sp", "service_principal"), (created,)), dry_run=False)
    assert applied.outcome is Outcome.APPLIED
