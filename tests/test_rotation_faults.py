"""Transient faults at every call of a rotation: for each request k of a full rotation, the twin answers that one
request with 429 (Retry-After), 500, 503 or a dropped connection (the kind cycles with k). The rotation must still
finish (bounded retries in the clients, then whole-run resumption from the journal) and keep every invariant; no
secret may appear in the outcome or the logs."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from shared.context import AppContext
from shared.rotation import RotationStatus, rotate_target
from tests.leaks import assert_no_leak
from tests.rotation_invariants import check_invariants, snapshot
from tests.rotation_support import apply_env, rotation_env
from tests.twin import Fault, Twin
from tests.world import CC_PASSWORD, CURRENT_SECRET, KEY_ID, TARGET, World

KINDS: list[dict[str, Any]] = [
    {"status": 429, "retry_after": 1, "body": {"error": {"code": "TooManyRequests", "message": "Throttled."}}},
    {"status": 500},
    {"status": 503, "retry_after": 1},
    {"drop": True},
]


async def _rotate_until_settled(calls: int = 3) -> list[Any]:
    outcomes = []
    for _ in range(calls):
        async with AppContext.from_environment() as ctx:
            outcome = await rotate_target(ctx, TARGET, deadline_seconds=120)
        outcomes.append(outcome)
        if outcome.status in (RotationStatus.ROTATED, RotationStatus.NOT_DUE):
            break
    return outcomes


@pytest.mark.slow
async def test_a_transient_fault_at_any_request_does_not_break_the_rotation(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    world = World(secret_end="now+10d")
    apply_env(monkeypatch, rotation_env(twin, world, cc_ca, azurite))
    reference = await _rotate_until_settled(1)
    assert reference[0].status is RotationStatus.ROTATED
    total = len(twin.request_log)

    caplog.set_level(logging.INFO)
    started = time.monotonic()
    texts: list[str] = []
    missed = 0
    for k in range(1, total + 1):
        twin.reset()
        apply_env(monkeypatch, rotation_env(twin, world, cc_ca, azurite))
        kind = KINDS[(k - 1) % len(KINDS)]
        fault = twin.faults.add(Fault(nth=k, **kind))
        outcomes = await _rotate_until_settled()
        where = f"k={k} {kind} hit={fault.hits}"
        # the fault was hit whenever the run reached its k-th request (a warm process may make a request or two
        # fewer than the cold reference run: cached identity tokens); a miss is counted, never silently passed
        assert fault.hits == 1 or len(twin.request_log) < k, f"{where}: the fault was never hit"
        missed += fault.hits == 0
        statuses = [o.status.value for o in outcomes]
        assert outcomes[-1].status is RotationStatus.ROTATED or (
            outcomes[-1].status is RotationStatus.NOT_DUE and RotationStatus.ROTATED.value in statuses), \
            f"{where}: {[o.to_dict() for o in outcomes]}"
        assert len(outcomes) <= 2, f"{where}: needed {statuses}"
        snap = check_invariants(twin, settled=True, initial_key_ids={KEY_ID}, where=where)
        assert snap.credentials[0]["key_id"] == KEY_ID and len(snap.credentials) == 2, where
        texts += [json.dumps(o.to_dict()) for o in outcomes]
        assert_no_leak([*texts, caplog], CURRENT_SECRET, CC_PASSWORD, *snapshot(twin).all_values(), min_length=6)
    assert missed <= 2, f"{missed} of {total} faults were never hit"
    print(f"\nfault sweep: {total} requests, {total - missed} faults hit, {time.monotonic() - started:.0f} s")
