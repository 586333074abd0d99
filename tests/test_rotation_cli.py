"""`python -m shared rotate`: readable output, dry run, status, exit codes, progress on stderr, no secrets."""

from __future__ import annotations

import pytest

from shared.cli import main
from tests.leaks import assert_no_leak
from tests.rotation_invariants import check_invariants, snapshot
from tests.rotation_support import apply_env, rotation_env
from tests.twin import Twin
from tests.world import CC_PASSWORD, CURRENT_SECRET, KEY_ID, TARGET, World


def test_cli_dry_run_then_rotate_then_status(twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    apply_env(monkeypatch, rotation_env(twin, World(secret_end="now+10d"), cc_ca, azurite))

    assert main(["rotate", TARGET, "--dry-run"]) == 0
    dry = capsys.readouterr()
    assert "planned" in dry.out and "create: add a client secret" in dry.out and "(dry run)" in dry.err
    assert len(snapshot(twin).credentials) == 1

    assert main(["rotate", TARGET]) == 0
    done = capsys.readouterr()
    assert "✔ hpc-prod: rotated" in done.out and "new credential:" in done.out
    assert "push: CycleCloud holds the new secret" in done.err  # progress goes to stderr
    check_invariants(twin, settled=True, initial_key_ids={KEY_ID})

    assert main(["rotate", TARGET, "--status"]) == 0
    status = capsys.readouterr()
    assert "no rotation in progress" in status.out and "committed operation" in status.out

    assert main(["rotate", TARGET]) == 0
    assert "not due" in capsys.readouterr().out
    assert_no_leak([dry.out, dry.err, done.out, done.err, status.out],
                   CURRENT_SECRET, CC_PASSWORD, *snapshot(twin).all_values(), min_length=6)


def test_cli_reports_a_resumable_stop_with_exit_code_3(twin: Twin, cc_ca: str, azurite: str,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    def slow(scenario: dict[str, object]) -> None:
        scenario["propagation"] = {"new_secret_seconds": 60}

    apply_env(monkeypatch, rotation_env(twin, World(secret_end="now+10d"), cc_ca, azurite, edit=slow,
                                        rotation={"test_timeout_seconds": 2}))
    assert main(["rotate", TARGET]) == 3
    out = capsys.readouterr()
    assert "in progress" in out.out and "again to resume" in out.out and "not ready" in out.err
