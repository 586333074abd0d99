"""The simulated year: the product's timers on their schedules, under transient faults, hard crashes and human
interference, with the invariants of docs/rotation.md checked every simulated hour.

Time: `time-machine` travels the whole process (the product's datetime.now / time.time, MSAL's and
azure-identity's token caches, and the in-process twin, whose clock is real time plus an offset). asyncio's
monotonic clock is left alone, so timeouts, Retry-After waits and blob-lease renewals run in real time, and
Azurite (its own process) keeps real time: a lease a crashed run left behind is broken before the next run, as
the 30-second expiry would have done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import time_machine

from shared.context import AppContext
from shared.rotation.model import operation_of
from tests.twin import Fault, Twin
from tests.twin.services.entra import client_secret_problem
from tests.twin.state import hash_secret

from .people import Interference, People
from .world import PASSWORD_SECRETS, VAULT_HOST, Estate, SimTarget, build_estate

logger = logging.getLogger(__name__)

START = datetime(2027, 1, 4, 0, 0, tzinfo=UTC)  # a Monday; the estate's secrets are placed relative to it
ROTATION_HOUR = 3  # ROTATION_SCHEDULE "0 0 3 * * *" (the default)
STATUS_FAILING = ("failing", "degraded", "error")
TRANSIENT = ("429", "500", "503", "drop", "delay")
DRAIN_SECONDS = 120.0  # real seconds one run works off the queue; what is left is the next run's


@dataclass
class Options:
    seed: int = 1
    days: int = 30
    targets: int = 8
    health_hours: int = 1  # HEALTH_SCHEDULE: every hour (the product's default)
    fault_rate: float = 0.03  # share of requests answered with a transient fault
    crash_rate: float = 0.15  # share of timer runs killed at a random request
    interference_per_day: float = 1.0
    stale_read_rate: float = 0.05  # share of runs during which Graph answers from a stale replica
    fix_delay_hours: int = 3  # how long a person takes to act on a reported finding
    stop_at_first_violation: bool = False  # end the run at the first broken invariant (to study it sooner)


@dataclass
class Violation:
    at: datetime
    target: str
    invariant: str
    detail: str


@dataclass
class Stats:
    rotations: int = 0
    rotation_runs: int = 0
    health_runs: int = 0
    faults_hit: Counter[str] = field(default_factory=Counter)
    crashes: int = 0
    crashes_recovered: int = 0
    interference: Counter[str] = field(default_factory=Counter)  # outcome -> count
    interference_kinds: Counter[str] = field(default_factory=Counter)
    outage_minutes_interference: int = 0
    outage_minutes_product: int = 0
    outage_by_cause: Counter[str] = field(default_factory=Counter)  # interference kind (or crash) -> minutes
    rotation_requests: int = 0
    requests: int = 0
    unconfirmed_pushes: int = 0
    wall_seconds: float = 0.0
    run_seconds: dict[str, float] = field(default_factory=lambda: {"rotation": 0.0, "health": 0.0})


@contextlib.contextmanager
def travelling_login_guard(guard: Any) -> Iterator[None]:
    """The CycleCloud login guard pauses a user for a minute after a refused login, on the monotonic clock, which
    time-machine leaves alone; in a simulated day of a few real seconds that minute would last for days. Its
    clock is injectable: give it the travelled wall clock while the simulation runs."""
    saved = guard.clock
    guard.clock = lambda: time.time()
    try:
        yield
    finally:
        guard.clock = saved


class Simulation:
    def __init__(self, twin: Twin, storage: str, options: Options) -> None:
        self.twin, self.storage, self.opt = twin, storage, options
        self.rng = random.Random(f"chaos-{options.seed}")
        self.estate: Estate = build_estate(options.seed, options.targets)
        self.people = People(twin, self.estate, self.rng)
        self.stats = Stats()
        self.events: list[tuple[datetime, str, str]] = []  # (when, target or "*", what)
        self.violations: list[Violation] = []
        self.open: list[Interference] = []
        self.closed: list[Interference] = []
        self.ctx: AppContext | None = None
        self.dirty = False  # a crashed run has not been followed by a completed one yet
        self.request_estimate = {"rotation": 200, "health": 200}
        self.last_health: dict[str, dict[str, Any]] = {}
        self.unconfirmed: dict[str, set[str]] = {}  # target -> key ids an unconfirmed push replaced
        self.people_removed: set[str] = set()
        self.product_created: set[str] = set()
        self.in_outage: set[str] = set()
        self.seen_operations: set[str] = set()
        self.t0 = time.monotonic()
        self.inflight: list[Any] = []  # queue messages the worker holds (a crash leaves them invisible)

    # -- recording ---------------------------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.now(UTC)

    def event(self, target: str, what: str) -> None:
        self.events.append((self.now(), target, what))
        logger.debug("%s %s %s", self.now().isoformat(timespec="minutes"), target, what)

    def violate(self, target: str, invariant: str, detail: str) -> None:
        if not any(v.invariant == invariant and v.target == target for v in self.violations):
            # said at once: a long run's summary comes hours later
            logger.warning("chaos: %s: invariant broken on %s: %s: %s", self.now().isoformat(timespec="minutes"),
                           target, invariant, detail)
        self.violations.append(Violation(self.now(), target, invariant, detail))
        self.event(target, f"INVARIANT BROKEN: {invariant}: {detail}")

    # -- set-up ------------------------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        cas = {s: str(self.twin.cyclecloud_ca_path(s)) for s in self.twin.state.cyclecloud_servers}
        suffix = f"{self.opt.seed}-{random.Random().getrandbits(32):08x}"
        env = self.estate.settings(cas, self.storage, f"chaos-{suffix}", f"chaos-{suffix}")
        env["HEALTH_SCHEDULE"] = f"0 0 */{self.opt.health_hours} * * *" if self.opt.health_hours > 1 \
            else "0 0 * * * *"
        return env

    async def run(self) -> Stats:
        """Travel from START through `days` days, one simulated hour at a time."""
        import os

        from shared.adapters.cyclecloud import login_guard

        started = self.t0 = time.monotonic()
        with time_machine.travel(START, tick=True) as traveller, travelling_login_guard(login_guard):
            self.twin.clock.reset()
            self.twin.load(self.estate.scenario)
            self.env = self.environment()
            saved = {k: os.environ.get(k) for k in self.env}
            os.environ.update(self.env)
            try:
                await self._loop(traveller)
            finally:
                if self.ctx is not None:
                    await self.ctx.clients.close()
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
        self.stats.wall_seconds = time.monotonic() - started
        return self.stats

    async def _loop(self, traveller: Any) -> None:
        self.snapshot_credentials()
        for hour in range(self.opt.days * 24):
            traveller.move_to(START + timedelta(hours=hour))
            if self.dirty:  # the restarted host runs what the crash interrupted
                await self.rotation_sweep(recovery=True)
            if hour % 24 == ROTATION_HOUR:
                await self.rotation_sweep()
            if hour % self.opt.health_hours == 0:
                await self.health_sweep()
            self.check_hourly()
            self.people_act()
            if hour % (24 * 7) == 24 * 7 - 1:  # a line a simulated week, so a long run shows it is alive
                logger.warning("chaos: day %d of %d, %d rotations, %d violations, %.0f s", hour // 24 + 1,
                               self.opt.days, self.stats.rotations, len(self.violations), time.monotonic() - self.t0)
            self.twin.request_log.clear()  # counted already; a year of requests would not fit in memory
            if self.violations and self.opt.stop_at_first_violation:
                break
        self.finish()

    # -- the product's runs ------------------------------------------------------------------------------

    def context(self) -> AppContext:
        if self.ctx is None:  # a (re)started worker process builds its settings and clients once
            self.ctx = AppContext.from_environment()
        return self.ctx

    async def rotation_sweep(self, *, recovery: bool = False) -> None:
        """function_app.rotate_due_secrets: one operation per secret target, queued; then the queue trigger
        (resume_operation) runs each. After a crash the restarted host only works off the queue."""
        from shared.fanout import enqueue_due_rotations

        async def timer(ctx: AppContext) -> bool:
            if not recovery:
                fanout = await enqueue_due_rotations(ctx)
                for name, code in fanout.errors.items():
                    self.event(name, f"rotation not queued: {code}")
            await self.drain(ctx)
            return True

        self.stats.rotation_runs += 1
        if await self._run("rotation", timer) is None:
            return
        if recovery:
            self.stats.crashes_recovered += 1
            self.event("*", "the restarted host worked off the queue")
        await self.read_journals()

    async def health_sweep(self) -> None:
        """function_app.check_credential_health: one health-check message per target; the queue trigger checks,
        records, alerts and (AUTO_REMEDIATE) remediates each one."""
        from shared.diagnosis.health import load_health
        from shared.fanout import enqueue_health_checks

        async def timer(ctx: AppContext) -> dict[str, dict[str, Any]]:
            checked_from = self.now() - timedelta(minutes=1)
            fanout = await enqueue_health_checks(ctx)
            for name, code in fanout.errors.items():
                self.event(name, f"health check not queued: {code}")
            await self.drain(ctx)
            records = {}
            for t in self.estate.targets:
                record = await load_health(ctx, t.name) or {}
                checked = record.get("checked_at")
                fresh = bool(checked) and datetime.fromisoformat(str(checked).replace("Z", "+00:00")) >= checked_from
                records[t.name] = record if fresh else {"status": "not checked"}
            return records

        self.stats.health_runs += 1
        records = await self._run("health", timer)
        if records is None:
            return
        self.last_health = records
        for name, record in records.items():
            if record.get("status") != "healthy":
                self.event(name, f"health: {record.get('status')} {','.join(record.get('findings') or [])}")
        await self.read_journals()
        self.account_interference()

    async def drain(self, ctx: AppContext) -> None:
        """The Functions host's queue trigger, in this process: deliver every message that is or becomes visible
        (continuations come due after their back-off) to what function_app.resume_operation calls; delete it when
        the function returns; after five failed deliveries move it to the poison queue (host.json)."""
        from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
        from azure.storage.queue.aio import QueueClient

        from shared.fanout import is_health_check, record_poisoned_health_check, run_health_check
        from shared.operations import record_poisoned
        from shared.operations import resume_operation as resume

        codec: dict[str, Any] = {"message_encode_policy": TextBase64EncodePolicy(),
                                 "message_decode_policy": TextBase64DecodePolicy()}
        name = self.env["CONTINUATION_QUEUE"]
        gate = asyncio.Semaphore(ctx.settings.max_concurrency)
        async with QueueClient.from_connection_string(self.storage, name, **codec) as queue, \
                QueueClient.from_connection_string(self.storage, name + "-poison", **codec) as poison:
            deadline = time.monotonic() + DRAIN_SECONDS

            async def deliver(message: Any) -> None:
                async with gate:
                    text = message.content
                    try:
                        if is_health_check(text):
                            await run_health_check(ctx, text)
                        else:
                            await resume(ctx, text, dequeue_count=message.dequeue_count or 1, message_id=message.id)
                    except Exception as exc:
                        self.event("*", f"queue delivery {message.dequeue_count} failed: {type(exc).__name__}")
                        if (message.dequeue_count or 1) >= 5:
                            with contextlib.suppress(Exception):
                                await poison.create_queue()
                            await poison.send_message(text)
                            await queue.delete_message(message)
                            if is_health_check(text):
                                await record_poisoned_health_check(ctx, text, message_id=message.id)
                            else:
                                await record_poisoned(ctx, text, message_id=message.id)
                            self.event("*", "a message went to the poison queue")
                        else:  # visible again at once (the host's visibility timeout, shortened)
                            await queue.update_message(message, visibility_timeout=0)
                        return
                    await queue.delete_message(message)

            while time.monotonic() < deadline:
                try:
                    properties = await queue.get_queue_properties()
                except Exception:  # the queue does not exist yet: nothing was ever queued
                    return
                if not properties.approximate_message_count:
                    return
                batch = [m async for m in queue.receive_messages(max_messages=16, visibility_timeout=120)]
                if not batch:
                    await asyncio.sleep(0.5)  # only continuations waiting for their back-off
                    continue
                self.inflight = batch
                await asyncio.gather(*(deliver(m) for m in batch))
                self.inflight = []
            self.event("*", "queue not empty after the drain budget; the next run continues it")

    async def read_journals(self) -> None:
        """Each committed rotation once: KV newest == CycleCloud after it; an unconfirmed push is remembered."""
        from shared.rotation import rotation_status

        ctx = self.context()
        for t in self.estate.targets:
            if not t.uses_secret:
                continue
            try:
                journal = (await rotation_status(ctx, t.name)).journal
            except Exception as exc:  # a transient fault on the read: the next run reads it
                self.event(t.name, f"journal not read: {type(exc).__name__}")
                continue
            for entry in reversed(journal.history):
                op_id = str(entry.get("id"))
                if op_id in self.seen_operations:
                    continue
                self.seen_operations.add(op_id)
                self.event(t.name, f"operation {op_id[:8]}: {entry.get('result')} ({entry.get('reason')})")
                if entry.get("result") != "committed":
                    continue
                self.stats.rotations += 1
                if entry is journal.history[0] and t.name not in self.interfered():
                    self.check_vault_matches_cyclecloud(t, f"after operation {op_id[:8]} committed")
                if entry.get("push_confirmed") is False:
                    self.stats.unconfirmed_pushes += 1
                    if entry.get("previous_key_id"):
                        self.unconfirmed.setdefault(t.name, set()).add(str(entry["previous_key_id"]))
                elif entry.get("push_confirmed"):
                    self.unconfirmed.pop(t.name, None)

    def interfered(self) -> set[str]:
        return {name for i in self.open for name in self.affected(i)}

    async def _run(self, kind: str, work: Any) -> Any:
        """One timer invocation under transient faults; sometimes killed at a random request (then None)."""
        before = {c.key_id: c for c in self.all_credentials()}
        first_seq = self._last_seq() + 1
        estimate = self.request_estimate[kind]
        faults = self._plan_faults(first_seq, estimate)
        crash = self.rng.random() < self.opt.crash_rate
        hold = self.twin.faults.add(Fault(hold=True, nth=first_seq + self.rng.randrange(estimate))) if crash else None
        stale = self.rng.random() < self.opt.stale_read_rate
        if stale:
            self.twin.state.propagation.graph_stale_read_seconds = 3.0
        started = time.monotonic()
        task = asyncio.ensure_future(work(self.context()))
        result = None
        try:
            while not task.done():
                if hold is not None and hold.hits:
                    await self._crash(task, hold, kind)
                    break
                await asyncio.wait({task}, timeout=0.05)
            else:
                result = task.result()
                self.dirty = False
        finally:
            self.twin.state.propagation.graph_stale_read_seconds = 0.0
            for fault_kind, fault in faults:
                if fault.hits:
                    self.stats.faults_hit[fault_kind] += 1
            self.twin.faults.clear()
        self.stats.run_seconds[kind] += time.monotonic() - started
        last = self._last_seq()
        self.stats.requests += last - first_seq + 1
        if result is not None:
            self.request_estimate[kind] = max(20, last - first_seq + 1)
            if kind == "rotation":
                self.stats.rotation_requests += last - first_seq + 1
        self.check_removals(before, kind)
        return result

    def _plan_faults(self, first_seq: int, estimate: int) -> list[tuple[str, Fault]]:
        faults = []
        for offset in range(estimate):
            if self.rng.random() >= self.opt.fault_rate:
                continue
            kind = self.rng.choice(TRANSIENT)
            spec: dict[str, Any] = {"nth": first_seq + offset}
            if kind == "429":
                spec.update(status=429, retry_after=self.rng.choice([0.2, 0.5, 1]))
            elif kind in ("500", "503"):
                spec.update(status=int(kind))
            elif kind == "drop":
                spec.update(drop=True)
            else:
                spec.update(delay=self.rng.choice([0.2, 0.5]))
            faults.append((kind, self.twin.faults.add(Fault(**spec))))
        return faults

    async def _crash(self, task: asyncio.Future[Any], hold: Fault, kind: str) -> None:
        """The process dies at the held request: cancel everything it was doing, let the held request reach
        Azure (its effect happens, its answer is lost), drop the worker's clients, break its leases."""
        self.stats.crashes += 1
        held = list(self.twin.faults.held.values())
        what = f"{held[0].service}.{held[0].operation}" if held else "?"
        self.event("*", f"CRASH during the {kind} run at request #{hold.nth} ({what})")
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await self._expire_visibility()
        self.twin.faults.release()
        await asyncio.sleep(0.2)  # the released request finishes in the twin's thread
        if self.ctx is not None:
            with contextlib.suppress(Exception):
                await self.ctx.clients.close()
            self.ctx = None
        from shared.adapters.cyclecloud import login_guard

        login_guard.reset()  # per-process state: the restarted worker starts without it
        await self._break_leases()
        self.dirty = True

    async def _expire_visibility(self) -> None:
        """The messages the dead worker held reappear once their visibility timeout passes; let it pass now."""
        from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
        from azure.storage.queue.aio import QueueClient

        codec: dict[str, Any] = {"message_encode_policy": TextBase64EncodePolicy(),
                                 "message_decode_policy": TextBase64DecodePolicy()}
        async with QueueClient.from_connection_string(self.storage, self.env["CONTINUATION_QUEUE"], **codec) as queue:
            for message in self.inflight:
                with contextlib.suppress(Exception):  # already deleted: that delivery had finished
                    await queue.update_message(message, visibility_timeout=0)
        self.inflight = []

    async def _break_leases(self) -> None:
        """The dead worker's locks would expire 30 s (real time) later; break them instead of waiting."""
        from azure.storage.blob.aio import BlobLeaseClient, BlobServiceClient

        async with BlobServiceClient.from_connection_string(self.storage) as service:
            container = service.get_container_client(self.env["STATE_CONTAINER"])
            async for blob in container.list_blobs(name_starts_with="rotation/"):
                if blob.name.endswith(".lock") and blob.lease.state == "leased":
                    await BlobLeaseClient(container.get_blob_client(blob.name)).break_lease(lease_break_period=0)
                    self.event("*", f"broke the dead worker's lease on {blob.name}")

    def _last_seq(self) -> int:
        """The twin's newest request number (taking one number leaves a harmless gap in the sequence)."""
        return self.twin.next_seq()

    # -- people ------------------------------------------------------------------------------------------

    def people_act(self) -> None:
        state = self.twin.state
        now = self.now()
        with state.lock:
            for reported in list(self.open):  # a person acts on what the product reported
                if reported.undo and reported.reported_at and not reported.undone_at and \
                        now - reported.reported_at >= timedelta(hours=self.opt.fix_delay_hours):
                    reported.undone_at = now
                    self.event(reported.target, f"PERSON fixes: {reported.undo()}")
            if self.rng.random() >= self.opt.interference_per_day / 24:
                return
            busy = {name for i in self.open for name in self.affected(i)}
            candidates = [t for t in self.estate.targets if t.name not in busy]
            if not candidates:
                return
            target = self.rng.choice(candidates)
            kinds = list(self.people.actions)
            self.rng.shuffle(kinds)
            item: Interference | None = None
            for kind in kinds:
                item = self.people.actions[kind](target)
                if item is not None:
                    break
            if item is None:
                return
            self.people_removed |= item.removed_key_ids
            self.stats.interference_kinds[kind] += 1
            item.broken_at_start = bool(self.broken(target))
            self.open.append(item)
            self.event(target.name, f"PERSON: {item.description}")

    def account_interference(self) -> None:
        """After a health sweep (and its auto-remediation): each open interference is repaired (or was
        harmless), or the sweep reported its target as failing or degraded; otherwise it went unnoticed."""
        with self.twin.state.lock:
            for item in list(self.open):
                target = self.estate.target(item.target)
                problems = self.broken(target)
                health = self.last_health.get(item.target, {})
                if not problems:
                    if item.outcome is None:
                        item.outcome = "repaired" if item.broken_at_start else "harmless"
                    item.closed_at = self.now()
                    self.open.remove(item)
                    self.closed.append(item)
                    self.stats.interference[item.outcome] += 1
                    self.event(item.target, f"interference {item.kind}: {item.outcome}")
                elif health.get("status") in STATUS_FAILING:
                    if item.outcome is None:
                        item.outcome, item.reported_at = "reported", self.now()
                        self.event(item.target, f"interference {item.kind} reported: {health.get('findings')}")
                elif item.outcome is None:
                    item.outcome = "UNACCOUNTED"
                    self.violate(item.target, "every interference is repaired or reported",
                                 f"{item.description}: still {problems} and the health sweep says "
                                 f"{health.get('status')}")

    # -- invariants --------------------------------------------------------------------------------------

    def all_credentials(self) -> list[Any]:
        with self.twin.state.lock:
            return [c for app in self.twin.state.applications.values() for c in app.password_credentials]

    def snapshot_credentials(self) -> None:
        self.product_created |= {c.key_id for c in self.all_credentials() if operation_of(c.display_name)}

    def cyclecloud_secret(self, t: SimTarget) -> str:
        return str(self.twin.state.cyclecloud_servers[t.cc_host].accounts[t.account]["AzureRMApplicationSecret"])

    def held_hashes(self) -> set[str]:
        return {hash_secret(str(a.get("AzureRMApplicationSecret") or ""))
                for s in self.twin.state.cyclecloud_servers.values() for a in s.accounts.values()}

    def broken(self, t: SimTarget) -> list[str]:
        """What is wrong with a target now (empty: healthy). The caller holds the twin's lock."""
        state = self.twin.state
        problems = []
        if t.uses_secret:
            app = state.applications[t.app_object_id]
            problem = client_secret_problem(state, app, self.cyclecloud_secret(t))
            if problem:
                problems.append(f"CycleCloud's secret fails (AADSTS{problem[0]})")
            secret = state.vaults[VAULT_HOST].secrets.get(t.secret_name)
            enabled = [v for v in secret.versions if v.enabled] if secret and secret.deleted_at is None else []
            if not enabled:
                problems.append("the main secret is deleted or has no enabled version")
            elif enabled[-1].value != self.cyclecloud_secret(t):
                problems.append("Key Vault's newest enabled version is not CycleCloud's secret")
        else:
            vm = state.vm(t.vm_id)
            if vm is None or vm.identity_principal_id is None:
                problems.append("the VM identity is off")
        if not any(ra.principal_id == t.principal and ra.role_definition_id == "b24988ac-6180-42a0-ab88-20f7382dd24c"
                   for ra in state.role_assignments.values()):
            problems.append("the Contributor assignment is missing")
        from tests.world import CC_USER

        server = state.cyclecloud_servers[t.cc_host]
        password = state.vaults[VAULT_HOST].secrets[PASSWORD_SECRETS[t.cc_host]].versions[-1].value
        if t.transport == "rest" and server.users[CC_USER].password != password:
            problems.append("Key Vault's CycleCloud password is not the user's")
        return problems

    def check_vault_matches_cyclecloud(self, t: SimTarget, when: str) -> None:
        with self.twin.state.lock:
            secret = self.twin.state.vaults[VAULT_HOST].secrets.get(t.secret_name)
            enabled = [v for v in secret.versions if v.enabled] if secret else []
            if not enabled or enabled[-1].value != self.cyclecloud_secret(t):
                self.violate(t.name, "Key Vault's newest version == CycleCloud's secret", when)

    def check_removals(self, before: dict[str, Any], kind: str) -> None:
        """Only the product acted during a run: what it removed must be its own and held by no CycleCloud."""
        with self.twin.state.lock:
            after = {c.key_id for c in self.all_credentials()}
            held = self.held_hashes()
            for key_id, cred in before.items():
                if key_id in after:
                    continue
                owner = next((t.name for t in self.estate.targets if t.uses_secret and any(
                    c.key_id == key_id for c in [cred])), "*")
                if not operation_of(cred.display_name):
                    self.violate(owner, "nothing the product did not create is removed",
                                 f"the {kind} run removed {key_id} ({cred.display_name})")
                if cred.secret_hash in held:
                    self.violate(owner, "nothing CycleCloud holds is removed",
                                 f"the {kind} run removed {key_id}, which a CycleCloud account holds")
                # an expired credential signs nobody in: removing it retires nothing CycleCloud could still use
                # (shared/rotation/removal.py; else a fully masking server gathers a dead credential a rotation)
                expired = cred.end <= self.twin.state.now()
                for target, keys in self.unconfirmed.items():
                    if key_id in keys and not expired:
                        self.violate(target, "no retirement after an unconfirmed push",
                                     f"the {kind} run removed {key_id} replaced by an unconfirmed push")
                self.event(owner, f"the {kind} run removed credential {key_id[:8]} ({cred.display_name})")
        self.snapshot_credentials()

    def check_hourly(self) -> None:
        state = self.twin.state
        with state.lock:
            interfered = self.interfered()
            vault_hashes = {hash_secret(v.value) for s in state.vaults[VAULT_HOST].secrets.values()
                            for v in s.versions}
            held = self.held_hashes()
            for t in self.estate.targets:
                problems = self.broken(t)
                outage = [p for p in problems if p.startswith(("CycleCloud's secret fails", "the VM identity"))]
                if bool(outage) != (t.name in self.in_outage):
                    self.in_outage ^= {t.name}
                    self.event(t.name, f"OUTAGE begins: {'; '.join(outage)}" if outage else "outage ends")
                if outage:
                    if t.name in interfered or self.dirty:
                        self.stats.outage_minutes_interference += 60
                        cause = next((i.kind for i in self.open if t.name in self.affected(i)), "crash")
                        self.stats.outage_by_cause[cause] += 60
                    else:
                        self.stats.outage_minutes_product += 60
                        self.violate(t.name, "CycleCloud never holds an expired or deleted credential",
                                     "; ".join(outage))
                elif problems and t.name not in interfered and not self.dirty:
                    self.violate(t.name, "settled state matches the rule", "; ".join(problems))
            apps: dict[str, int] = Counter(t.app_object_id for t in self.estate.targets if t.uses_secret)
            for object_id, sharing in apps.items():
                app = state.applications[object_id]
                marker = [c for c in app.password_credentials if operation_of(c.display_name)]
                if len(marker) > 3 * sharing:
                    self.violate(app.display_name, "at most 3 credentials per target",
                                 f"{len(marker)} product credentials for {sharing} target(s)")
                if not self.dirty:
                    lost = [c.key_id[:8] for c in marker if c.secret_hash not in vault_hashes | held]
                    if lost:
                        self.violate(app.display_name, "no lost secret", f"credentials whose value is nowhere: {lost}")

    def affected(self, item: Interference) -> set[str]:
        """The targets an interference touches: a CycleCloud password is the whole server's, a policy the whole
        subscription's."""
        if item.kind == "change_cyclecloud_password":
            host = self.estate.target(item.target).cc_host
            return {t.name for t in self.estate.targets if t.cc_host == host and t.transport == "rest"}
        if item.kind in ("remove_contributor", "deny_role_assignments"):  # targets on one app share the principal
            principal = self.estate.target(item.target).principal
            return {t.name for t in self.estate.targets if t.principal == principal}
        return {item.target}

    def finish(self) -> None:
        for item in self.open:
            self.event(item.target, f"still open at the end: {item.kind} ({item.outcome or 'not yet swept'})")

    # -- report ------------------------------------------------------------------------------------------

    def failure_story(self, violation: Violation, hours: int = 72) -> list[str]:
        """The events that led to a broken invariant: that target's, and the crashes, in the hours before."""
        since = violation.at - timedelta(hours=hours)
        return [f"{at:%Y-%m-%d %H:%M} {who:>12} {what}" for at, who, what in self.events
                if since <= at <= violation.at and who in (violation.target, "*")]
