"""Reconcile a target's role assignments: plan (dry run) or apply, one subscription at a time in parallel.

Desired state: the target's principal (its service principal, resolved from the app id through Graph; or in
managed-identity mode the CycleCloud VM's system-assigned identity) holds every configured role at every
configured subscription. Only configured principals, roles and scopes are ever touched; the HTTP body can only
say `dry_run`. Each subscription's outcome is recorded and one failure never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from .. import telemetry
from ..adapters.compute import ComputeAdapter
from ..adapters.rbac import PolicyAssignmentInfo, RbacAdapter, RoleDefinitionInfo, scope_covers
from ..config import Mode, Target
from ..context import AppContext
from ..errors import BadRequestError, ConflictError, PrincipalNotFoundError, RemediatorError
from .model import (
    AssignmentOutcome,
    AssignmentState,
    PrincipalRef,
    RoleReconciliation,
    description_for,
)
from .plan import plan_roles
from .privilege import privileged_role_refusal

logger = logging.getLogger(__name__)

# While a new principal replicates ARM answers PrincipalNotFound; back off this long between attempts (~60 s).
PRINCIPAL_RETRY_DELAYS: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0, 30.0)


async def resolve_principal(ctx: AppContext, target: Target) -> PrincipalRef:
    """The principal that must hold the roles. Raises `identity.disabled` (409) when the VM's identity is off."""
    if target.mode is Mode.MANAGED_IDENTITY:
        if not target.vm_resource_id:
            raise BadRequestError(f"Target '{target.name}' is in managed_identity mode but has no vm_resource_id.",
                                  fix="Set vm_resource_id to the CycleCloud VM's resource id.", target=target.name)
        vm = await ComputeAdapter(ctx.clients).get_vm(target.vm_resource_id)
        if vm.identity_principal_id is None:
            from ..findings import make_finding

            finding = make_finding(
                "identity.disabled", f"The system-assigned identity of VM {vm.name} is off.",
                evidence={"vm_id": vm.id}, params={"vm_name": vm.name, "vm_id": vm.id, "role": target.roles[0],
                                                   "subscription_id": target.subscription_ids[0]},
                check="roles", subject=vm.id)
            raise ConflictError(
                f"The CycleCloud VM {vm.name} has no system-assigned managed identity, so there is no principal to "
                "give the roles to.",
                reason=finding.summary,
                fix=" ".join(f"{step.action} Portal: {step.portal}. CLI: {step.cli}" for step in finding.steps),
                target=target.name, code="identity.disabled", details={"finding": finding.to_dict()})
        return PrincipalRef(vm.identity_principal_id, "vm_identity", vm.name)
    if not target.app_id:
        raise BadRequestError(f"Target '{target.name}' has no app_id.", fix="Set the target's app_id.",
                              target=target.name)
    from ..adapters.graph import GraphAdapter

    sp = await GraphAdapter(ctx.clients).get_service_principal(target.app_id)
    return PrincipalRef(sp.object_id, "service_principal", sp.display_name)


def _failed(principal: PrincipalRef, subscription_id: str, role: str, exc: RemediatorError,
            role_id: str = "") -> AssignmentOutcome:
    return AssignmentOutcome(
        subscription_id, f"/subscriptions/{subscription_id}", role_id or role, role, principal.object_id,
        AssignmentState.FAILED, reason=exc.message + (f" {exc.reason}" if exc.reason else ""), fix=exc.fix,
        error_code=exc.code, details={k: v for k, v in exc.details.items() if k not in ("reason", "fix")},
    )


class _Subscription:
    """Plan or apply one subscription. Never raises: every problem becomes a failed outcome."""

    def __init__(self, rbac: RbacAdapter, target: Target, principal: PrincipalRef, subscription_id: str) -> None:
        self.rbac = rbac
        self.target = target
        self.principal = principal
        self.sub = subscription_id
        self.scope = f"/subscriptions/{subscription_id}"

    async def run(self, *, dry_run: bool) -> list[AssignmentOutcome]:
        try:
            planned = await self._plan()
        except RemediatorError as exc:
            logger.warning("roles of %s at %s could not be checked: %s", self.target.name, self.scope, exc.code)
            return [_failed(self.principal, self.sub, role, exc) for role in self.target.roles]
        if dry_run:
            return planned
        return await self._apply(planned)

    async def _plan(self) -> list[AssignmentOutcome]:
        info = await self.rbac.get_subscription(self.sub)
        if info.tenant_id and info.tenant_id != self.target.tenant_id.lower():
            from ..errors import TenantMismatchError

            raise TenantMismatchError(
                f"Subscription {self.sub} belongs to tenant {info.tenant_id}, but target '{self.target.name}' is "
                f"configured for tenant {self.target.tenant_id}.",
                fix="Set the target's tenant_id to the subscription's tenant, or remove the subscription from it.",
                details={"owning_tenant": info.tenant_id, "configured_tenant": self.target.tenant_id})
        roles: list[RoleDefinitionInfo] = []
        failed: list[AssignmentOutcome] = []
        for configured in self.target.roles:
            try:
                role = await self.rbac.resolve_role(self.sub, configured)
            except RemediatorError as exc:  # one unknown role must not hide the others
                failed.append(_failed(self.principal, self.sub, configured, exc))
                continue
            # checked on the definition ARM returns: a custom role or a name config could not judge
            refusal = privileged_role_refusal(self.target, role)
            if refusal is not None:
                logger.warning("refusing privileged role %s for target %s", role.name, self.target.name)
                failed.append(_failed(self.principal, self.sub, role.name, refusal, role.id))
                continue
            roles.append(role)
        held = await self.rbac.list_assignments(self.scope, self.principal.object_id)
        policies: list[PolicyAssignmentInfo] = []
        try:
            policies = await self.rbac.policy_assignments(self.sub)
        except RemediatorError as exc:  # only used to predict a denial; ARM's own answer on apply is authoritative
            logger.info("policy assignments of %s not readable (%s); no denial prediction", self.scope, exc.code)
        names = {}
        for extra_id in {a.role_definition_id for a in held} - {r.id for r in roles}:
            try:
                names[extra_id] = (await self.rbac.resolve_role(self.sub, extra_id)).name
            except RemediatorError:
                names[extra_id] = extra_id
        planned = plan_roles(self.target.name, self.principal, self.sub, roles, held, policies, role_names=names,
                             prune_unmanaged=self.target.prune_unmanaged_roles)
        return planned + failed

    async def _create(self, outcome: AssignmentOutcome) -> AssignmentOutcome:
        assert outcome.assignment_name is not None
        delays = list(PRINCIPAL_RETRY_DELAYS)
        while True:
            try:
                created = await self.rbac.create_assignment(
                    self.scope, outcome.role_id, self.principal.object_id, name=outcome.assignment_name,
                    principal_type=self.principal.principal_type, description=description_for(self.target.name))
            except PrincipalNotFoundError as exc:
                if not delays:
                    return replace(outcome, state=AssignmentState.FAILED, error_code=exc.code,
                                   reason=f"{exc.message} It stayed invisible for "
                                          f"{sum(PRINCIPAL_RETRY_DELAYS):g} s.", fix=exc.fix)
                delay = delays.pop(0)
                logger.info("principal %s not visible to ARM yet; retrying in %gs", self.principal.object_id, delay)
                await asyncio.sleep(delay)
                continue
            except RemediatorError as exc:
                logger.warning("could not assign %s at %s: %s", outcome.role_name, self.scope, exc.code)
                return replace(outcome, state=AssignmentState.FAILED, error_code=exc.code,
                               reason=exc.message + (f" {exc.reason}" if exc.reason else ""), fix=exc.fix,
                               details={**outcome.details, **{k: v for k, v in exc.details.items()
                                                              if k not in ("reason", "fix")}})
            return replace(outcome, state=AssignmentState.CREATED, assignment_name=created.name,
                           assignment_id=created.id, managed_by_product=created.name == outcome.assignment_name,
                           reason="" if created.name == outcome.assignment_name else
                           f"Already present under the name {created.name}.", fix="")

    async def _remove(self, outcome: AssignmentOutcome) -> AssignmentOutcome:
        removable = outcome.managed_by_product or self.target.prune_unmanaged_roles
        if not removable or outcome.assignment_id is None:
            return outcome
        try:
            await self.rbac.delete_assignment(outcome.assignment_id)
        except RemediatorError as exc:
            return replace(outcome, state=AssignmentState.FAILED, error_code=exc.code,
                           reason=exc.message + (f" {exc.reason}" if exc.reason else ""), fix=exc.fix)
        logger.info("removed role assignment %s (%s) at %s", outcome.assignment_name, outcome.role_name, self.scope)
        return replace(outcome, state=AssignmentState.REMOVED)

    async def _apply(self, planned: list[AssignmentOutcome]) -> list[AssignmentOutcome]:
        done: list[AssignmentOutcome] = []
        for outcome in planned:
            if outcome.state is AssignmentState.MISSING:
                done.append(await self._create(outcome))
            elif outcome.state is AssignmentState.EXTRA:
                done.append(await self._remove(outcome))
            else:
                done.append(outcome)
        if any(o.state is AssignmentState.CREATED for o in done):
            done = await self._verify(done)
        return done

    async def _verify(self, done: list[AssignmentOutcome]) -> list[AssignmentOutcome]:
        """List again: what we created must now be there (ARM can lag; say so rather than fail)."""
        try:
            listed = await self.rbac.list_assignments(self.scope, self.principal.object_id)
        except RemediatorError as exc:
            logger.warning("could not verify role assignments at %s: %s", self.scope, exc.code)
            return [replace(o, verified=False) if o.state is AssignmentState.CREATED else o for o in done]
        verified = []
        for outcome in done:
            if outcome.state is AssignmentState.CREATED:
                seen = any(a.role_definition_id == outcome.role_id and scope_covers(a.scope, self.scope)
                           and a.principal_id == self.principal.object_id for a in listed)
                outcome = replace(outcome, verified=seen, reason=outcome.reason or (
                    "" if seen else "Created, but not listed yet (ARM replication); run the plan again to confirm."))
            verified.append(outcome)
        return verified


@telemetry.traced("reconcile", record=telemetry.record_reconcile)  # span; RoleAssignmentCreated events
async def reconcile_target_roles(ctx: AppContext, target_name: str, *, dry_run: bool) -> RoleReconciliation:
    """Plan (dry_run) or apply the target's role assignments on every configured subscription."""
    target = ctx.settings.target(target_name)
    principal = await resolve_principal(ctx, target)
    rbac = RbacAdapter(ctx.clients)
    limit = asyncio.Semaphore(max(1, ctx.settings.max_concurrency))

    async def one(sub: str) -> list[AssignmentOutcome]:
        async with limit:
            return await _Subscription(rbac, target, principal, sub).run(dry_run=dry_run)

    per_subscription = await asyncio.gather(*(one(sub) for sub in target.subscription_ids))
    outcomes = tuple(o for group in per_subscription for o in group)
    result = RoleReconciliation(target.name, target.mode.value, dry_run, principal, outcomes)
    logger.info("%s", result.message)
    return result

