"""The short configuration of the simulated year (tests/chaos): two weeks of the product's timers on 6 targets with
mixed policies, under transient faults, hard crashes and human interference, every invariant of docs/rotation.md
checked every simulated hour. The full year is `make chaos` (docs/reliability.md).

CHAOS_SEED, CHAOS_DAYS and CHAOS_TARGETS choose another run; a failure prints the events that led to it.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
import time_machine

from tests.chaos.people import People
from tests.chaos.report import render
from tests.chaos.sim import START, Options, Simulation, travelling_login_guard
from tests.chaos.world import MASKED_CC_HOST
from tests.twin import Twin

SEED = int(os.environ.get("CHAOS_SEED", "20261201"))
DAYS = int(os.environ.get("CHAOS_DAYS", "14"))
TARGETS = int(os.environ.get("CHAOS_TARGETS", "6"))


async def test_two_weeks_under_chaos_keep_every_invariant(twin: Twin, azurite: str) -> None:
    # HEALTH_SCHEDULE daily here (the default is hourly): a sweep is the expensive part of a simulated day on this
    # 2-core machine; "within one health interval" is measured against the interval configured
    options = Options(seed=SEED, days=DAYS, targets=TARGETS, health_hours=24, fault_rate=0.02, crash_rate=0.3,
                      interference_per_day=1.5, stale_read_rate=0.03)
    sim = Simulation(twin, azurite, options)
    await sim.run()
    story = render(sim, f"CHAOS_SEED={SEED} CHAOS_DAYS={DAYS} CHAOS_TARGETS={TARGETS} pytest tests/test_chaos.py")
    print(story)
    assert not sim.violations, story
    # the run really exercised what it claims to (otherwise it proves nothing)
    assert sim.stats.rotations >= 2, story
    assert sum(sim.stats.faults_hit.values()) >= 10, story
    assert sim.stats.crashes >= 1 and sim.stats.crashes_recovered >= 1, story
    assert sum(sim.stats.interference_kinds.values()) >= 10, story
    assert sum(sim.stats.interference.values()) >= 5, story  # accounted for: repaired, reported or harmless


# -- the checks themselves can fail -----------------------------------------------------------------------------


def _loaded(twin: Twin, azurite: str) -> Simulation:
    sim = Simulation(twin, azurite, Options(seed=7, days=1, targets=4))
    twin.load(sim.estate.scenario)
    return sim


def test_removing_a_credential_the_product_did_not_create_is_a_violation(twin: Twin, azurite: str) -> None:
    with time_machine.travel(START, tick=True):
        sim = _loaded(twin, azurite)
        before = {c.key_id: c for c in sim.all_credentials()}
        target = sim.estate.targets[0]
        with twin.state.lock:  # what a faulty run would do: remove the credential a person created
            app = twin.state.applications[target.app_object_id]
            app.password_credentials = [c for c in app.password_credentials if c.key_id != target.initial_key_id]
        sim.check_removals(before, "rotation")
    broken = {v.invariant for v in sim.violations}
    assert broken == {"nothing the product did not create is removed", "nothing CycleCloud holds is removed"}


def test_an_outage_nobody_caused_is_a_violation_and_one_a_person_caused_is_counted(twin: Twin, azurite: str) -> None:
    with time_machine.travel(START, tick=True) as traveller:
        sim = _loaded(twin, azurite)
        sim.check_hourly()
        assert not sim.violations, [v.detail for v in sim.violations]
        target = sim.estate.targets[0]
        with twin.state.lock:  # the secret CycleCloud holds expires: the product should have rotated it
            credential = next(c for c in twin.state.applications[target.app_object_id].password_credentials
                              if c.key_id == target.initial_key_id)
        traveller.shift(credential.end - START + timedelta(hours=1))
        sim.check_hourly()
        assert "CycleCloud never holds an expired or deleted credential" in {v.invariant for v in sim.violations}
        assert sim.stats.outage_minutes_product >= 60

        sim.violations.clear()
        traveller.move_to(START)
        people = People(twin, sim.estate, sim.rng)
        with twin.state.lock:
            item = people.change_cyclecloud_secret(sim.estate.targets[1])
        assert item is not None
        sim.open.append(item)
        sim.check_hourly()
        assert sim.stats.outage_minutes_interference == 60
        assert not [v for v in sim.violations if v.target == item.target]


def test_an_interference_the_sweep_neither_repaired_nor_reported_is_a_violation(twin: Twin, azurite: str) -> None:
    with time_machine.travel(START, tick=True):
        sim = _loaded(twin, azurite)
        people = People(twin, sim.estate, sim.rng)
        with twin.state.lock:
            item = people.remove_contributor(sim.estate.targets[0])
        assert item is not None
        item.broken_at_start = True
        sim.open.append(item)
        sim.last_health = {item.target: {"status": "healthy", "findings": []}}  # a sweep that saw nothing
        sim.account_interference()
    assert [v.invariant for v in sim.violations] == ["every interference is repaired or reported"]


# -- what the simulation found ------------------------------------------------------------------------------


@pytest.mark.xfail(strict=True, reason=(
    "product gap found by the chaos simulation (seed 3, 10 days, 8 targets): on a CycleCloud server whose read-back "
    "masks the whole secret (no hint), a wrong secret pasted into the account by hand is invisible to the health "
    "sweep: shared/diagnosis reports the target healthy while CycleCloud's credential fails (AADSTS7000215). "
    "The simulation leaves this interference out on that server until the diagnosis reports it."))
async def test_a_wrong_secret_on_a_fully_masking_cyclecloud_is_reported(twin: Twin, azurite: str) -> None:
    from shared.context import AppContext
    from shared.diagnosis import check_all_targets

    with time_machine.travel(START, tick=True):
        sim = _loaded(twin, azurite)
        masked = next(t for t in sim.estate.targets if t.cc_host == MASKED_CC_HOST)
        with twin.state.lock:
            account = twin.state.cyclecloud_servers[MASKED_CC_HOST].accounts[masked.account]
            account["AzureRMApplicationSecret"] = "Typ8Q~" + "0" * 32  # a person pastes a wrong value
            assert sim.broken(masked)
        env = sim.environment()
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            async with AppContext.from_environment() as ctx:
                sweep = await check_all_targets(ctx)
    result = next(r for r in sweep.results if r.target == masked.name)
    assert result.status in ("failing", "degraded"), result.to_dict()


async def test_a_warm_worker_logs_in_to_cyclecloud_after_its_password_is_changed_and_stored(
        twin: Twin, azurite: str) -> None:
    from shared.adapters.cyclecloud import login_guard
    from shared.context import AppContext
    from shared.diagnosis import check_all_targets

    with time_machine.travel(START, tick=True) as traveller, travelling_login_guard(login_guard):
        sim = _loaded(twin, azurite)
        people = People(twin, sim.estate, sim.rng)
        rest = next(t for t in sim.estate.targets if t.transport == "rest" and t.cc_host != MASKED_CC_HOST)
        with pytest.MonkeyPatch.context() as patch:
            for key, value in sim.environment().items():
                patch.setenv(key, value)
            async with AppContext.from_environment() as ctx:  # one worker process throughout
                before = await check_all_targets(ctx)
                with twin.state.lock:
                    item = people.change_cyclecloud_password(rest)
                assert item is not None and item.undo is not None
                during = await check_all_targets(ctx)  # the sweep reports it ...
                with twin.state.lock:
                    item.undo()  # ... and the person's whole fix: the new password is in Key Vault
                    assert not sim.broken(rest)
                traveller.shift(timedelta(hours=1))  # the next sweep (the login guard's minute has passed)
                after = await check_all_targets(ctx)
    status = {r.target: (r.status, r.findings) for r in after.results}
    assert {r.target: r.status for r in before.results}[rest.name] == "healthy"
    assert "cyclecloud.login_failed" in {r.target: r.findings for r in during.results}[rest.name]
    assert status[rest.name] == ("healthy", []), status
