"""The CycleCloud login guard: one unverified login in flight per (server, user), the others wait for its
outcome; a refused login pauses that user for a minute. First the guard alone, then the product's concurrent
probe / validate / health sweep against the twin's CycleCloud, which locks a user after 5 failed logins in 60 s,
and a server that ignores `?dry_run=true` (validate, probe and health must never change the account)."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from shared.adapters.cyclecloud import CheckStatus, CycleCloudLoginError, login_guard, open_cyclecloud
from shared.adapters.cyclecloud.login_guard import PAUSE_SECONDS, Admission, LoginGuard, LoginPaused
from shared.context import AppContext
from shared.diagnosis import validate_target
from shared.diagnosis.health import check_all_targets
from tests.cyclecloud_helpers import cc_requests, cc_server, set_vault_password
from tests.twin import Twin
from tests.world import CC_HOST, CC_PASSWORD, CC_USER, TARGET, World

URL = "https://cc.example"
SWEEPS = 2  # each sweep: 16 concurrent callers; the old guard let each send a failing login


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the guard alone ---------------------------------------------------------------------------------------------


async def _contenders(guard: LoginGuard, n: int, password: str = "pw") -> list[asyncio.Task[Admission]]:
    tasks = [asyncio.create_task(guard.admit(URL, "u", password)) for _ in range(n)]
    await asyncio.sleep(0.01)  # let every task reach the guard
    return tasks


async def test_one_unverified_login_in_flight_and_a_failure_pauses_every_waiter() -> None:
    guard = LoginGuard(FakeClock())
    tasks = await _contenders(guard, 20)
    admitted = [t for t in tasks if t.done()]
    assert len(admitted) == 1 and admitted[0].result().unverified
    admitted[0].result().failed()
    await asyncio.gather(*tasks, return_exceptions=True)
    waiting = [t for t in tasks if t is not admitted[0]]
    assert all(isinstance(t.exception(), LoginPaused) for t in waiting)
    assert guard.seconds_to_wait(URL, "u") == PAUSE_SECONDS


async def test_after_a_verified_login_the_waiters_proceed_concurrently() -> None:
    guard = LoginGuard(FakeClock())
    tasks = await _contenders(guard, 10)
    first = next(t for t in tasks if t.done()).result()
    first.succeeded()
    rest = await asyncio.gather(*tasks)
    assert sum(a.unverified for a in rest) == 1  # only the first carried the unverified login
    assert not (await guard.admit(URL, "u", "pw")).unverified
    # another password (the Key Vault secret changed) is unverified again, whatever the first one proved
    assert (await guard.admit(URL, "u", "new-password")).unverified


async def test_a_login_without_an_answer_hands_over_to_the_next_caller_one_at_a_time() -> None:
    guard = LoginGuard(FakeClock())
    tasks = await _contenders(guard, 3)
    for _ in range(3):
        owners = [t for t in tasks if t.done() and not getattr(t, "_seen", False)]
        assert len(owners) == 1 and owners[0].result().unverified
        owners[0]._seen = True  # type: ignore[attr-defined]
        owners[0].result().release()  # connection error: no verdict on the password
        owners[0].result().failed()  # ignored: an admission has exactly one outcome
        await asyncio.sleep(0.01)
    assert guard.seconds_to_wait(URL, "u") == 0


async def test_the_pause_lasts_a_minute_per_server_and_user() -> None:
    clock = FakeClock()
    guard = LoginGuard(clock)
    (await guard.admit(URL, "u", "pw")).failed()
    with pytest.raises(LoginPaused):
        await guard.admit(URL + "/", "u", "pw")  # the same server
    assert (await guard.admit(URL, "other-user", "pw")).unverified
    assert (await guard.admit("https://other.example", "u", "pw")).unverified
    clock.now += PAUSE_SECONDS
    assert (await guard.admit(URL, "u", "pw")).unverified


def test_callers_on_different_event_loops_wait_for_the_same_login() -> None:
    guard = LoginGuard(FakeClock())
    outcome: dict[str, Any] = {}

    async def owner_then_fail(started: threading.Event, release: threading.Event) -> None:
        admission = await guard.admit(URL, "u", "pw")
        started.set()
        await asyncio.to_thread(release.wait, 5)
        admission.failed()

    async def waiter() -> None:
        try:
            await guard.admit(URL, "u", "pw")
            outcome["waiter"] = "admitted"
        except LoginPaused:
            outcome["waiter"] = "paused"

    started, release = threading.Event(), threading.Event()
    owner = threading.Thread(target=lambda: asyncio.run(owner_then_fail(started, release)))
    owner.start()
    assert started.wait(5)
    other = threading.Thread(target=lambda: asyncio.run(waiter()))
    other.start()
    other.join(0.2)
    assert other.is_alive(), "the second caller must wait for the first login's outcome"
    release.set()
    owner.join(5)
    other.join(5)
    assert outcome == {"waiter": "paused"}


# -- the product against the twin's CycleCloud ------------------------------------------------------------------


def _many_targets(world: World, n: int, cc_ca: str) -> World:
    """n targets on one app registration, each with its own CycleCloud account and Key Vault secret (two targets
    may not share either) on the same CycleCloud server and user."""
    world.extra_targets = []
    for i in range(1, n):
        target = world.target(ca_bundle=cc_ca)
        target["name"] = f"hpc-{i}"
        target["secret_name"] = f"{target['secret_name']}-{i}"
        target["cyclecloud"] = {**target["cyclecloud"], "account": f"azure-{i}"}
        world.extra_targets.append(target)
    return world


def _many_accounts_scenario(world: World) -> dict[str, Any]:
    scenario = world.scenario()
    server, vault = scenario["cyclecloud_servers"][0], scenario["vaults"][0]
    main = server["accounts"][0]
    for target in world.extra_targets:
        server["accounts"].append({**main, "Name": target["cyclecloud"]["account"]})
        vault["secrets"][target["secret_name"]] = vault["secrets"][main_secret_name(world)]
    return scenario


def main_secret_name(world: World) -> str:
    return str(world.target()["secret_name"])


@pytest.fixture
def shared_server_env(twin: Twin, world: World, cc_ca: str, azurite: str,
                      monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Five targets on one CycleCloud server and user (as in a site with several clusters), Azurite storage."""
    _many_targets(world, 5, cc_ca)
    twin.load(_many_accounts_scenario(world))
    env = world.env(ca_bundle=cc_ca, storage=azurite)
    env["MAX_CONCURRENCY"] = "5"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TARGETS_FILE", raising=False)
    return env


def _logins(twin: Twin) -> list[int]:
    """Status of every CycleCloud request that carried credentials."""
    return [status for op, status in cc_requests(twin) if op != "home"]


async def _probe(ctx: AppContext, name: str) -> Any:
    client = await open_cyclecloud(ctx, ctx.settings.target(name))
    try:
        return await client.probe()
    finally:
        await client.close()


async def _read(ctx: AppContext, name: str) -> Any:
    client = await open_cyclecloud(ctx, ctx.settings.target(name))
    try:
        return await client.read_account()
    except CycleCloudLoginError as exc:
        return exc
    finally:
        await client.close()


async def test_with_a_wrong_password_the_hourly_sweep_never_locks_the_cyclecloud_user(
        twin: Twin, shared_server_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    set_vault_password(twin, "not-the-password")
    clock = FakeClock()
    monkeypatch.setattr(login_guard, "clock", clock)
    user = cc_server(twin).users[CC_USER]
    for sweep in range(SWEEPS):  # hourly sweeps, each with many concurrent checks of the same user
        async with AppContext.from_environment() as ctx:  # a new invocation: fresh tokens after the hour
            names = [t.name for t in ctx.settings.targets]
            twin.request_log.clear()
            health = check_all_targets(ctx)
            extra = [_probe(ctx, n) for n in names] + [_read(ctx, n) for n in names] + [
                validate_target(ctx, TARGET, timeout_seconds=30)]
            results = await asyncio.gather(health, *extra)
        assert _logins(twin) == [401], f"sweep {sweep}: one failed login, every other caller paused"
        assert user.locked_until is None and len(user.failures) == 1
        assert all(r.check("login").status is CheckStatus.FAILED for r in results[1:1 + len(names)])
        clock.now += 3600
        twin.clock.advance(3600)

    async with AppContext.from_environment() as ctx:  # a burst within the same minute sends one login at most
        twin.request_log.clear()
        (await _probe(ctx, TARGET))
        await asyncio.gather(*(_read(ctx, n) for n in names))
        assert _logins(twin) == [401]
        twin.request_log.clear()
        await asyncio.gather(*(_read(ctx, n) for n in names))
        assert _logins(twin) == []
    assert user.locked_until is None


async def test_with_the_right_password_concurrent_callers_wait_for_one_login_then_run_together(
        twin: Twin, shared_server_env: dict[str, str]) -> None:
    set_vault_password(twin, CC_PASSWORD)
    async with AppContext.from_environment() as ctx:
        names = [t.name for t in ctx.settings.targets]
        results = await asyncio.gather(*(_read(ctx, n) for n in names), *(_probe(ctx, n) for n in names))
    assert all(not isinstance(r, Exception) for r in results)
    assert _logins(twin) == [200] * (2 * len(names))
    assert cc_server(twin).users[CC_USER].failures == []


async def test_validate_probe_and_health_never_change_an_account_on_a_server_that_ignores_dry_run(
        twin: Twin, shared_server_env: dict[str, str]) -> None:
    server = cc_server(twin)
    server.ignores_dry_run = True
    before = json.dumps(server.accounts, sort_keys=True)
    async with AppContext.from_environment() as ctx:
        report = await validate_target(ctx, TARGET, timeout_seconds=30)
        sweep = await check_all_targets(ctx)
        probe = await _probe(ctx, TARGET)
    assert report.status.value == "healthy", [f.code for f in report.findings]
    assert all(r.status == "healthy" for r in sweep.results), sweep.to_dict()
    assert probe.ok and probe.check("update_path").status is CheckStatus.SKIPPED
    assert json.dumps(server.accounts, sort_keys=True) == before
    methods = {r.method for r in twin.request_log if r.service == "cyclecloud" and r.host == CC_HOST}
    assert methods == {"GET"}, "nothing but reads reaches CycleCloud"
