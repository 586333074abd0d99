"""Pure rotation rules: which credential CycleCloud uses, when it is due, what is an orphan, lifetime clamping,
and the journal's JSON round trip. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.adapters.graph import AppCredential
from shared.config import RotationPolicy
from shared.rotation.model import (
    HISTORY_LIMIT,
    Journal,
    Operation,
    Retirement,
    RotationOutcome,
    RotationStage,
    RotationStatus,
    StepError,
    credential_display_name,
    operation_of,
)
from shared.rotation.policy import StoredSecretFacts, clamp_lifetime, decide, find_orphans, identify_current

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
POLICY = RotationPolicy(rotate_before_days=30, lifetime_days=180)


def cred(key: str, hint: str, days_left: float, name: str | None = None) -> AppCredential:
    return AppCredential(key, name, hint, NOW - timedelta(days=100), NOW + timedelta(days=days_left))


def facts(hint: str = "Abc", key: str | None = None, ws: bool = False) -> StoredSecretFacts:
    return StoredSecretFacts(key_id_tag=key, hint=hint, has_whitespace=ws)


def test_stored_secret_is_identified_by_its_keyid_tag_before_its_hint() -> None:
    creds = [cred("k1", "Abc", 100), cred("k2", "Abc", 10)]
    assert identify_current(creds, facts(key="k2")).credential == creds[1]
    assert identify_current(creds, facts(key="K2")).how == "keyId tag"


def test_adoption_by_hint_needs_exactly_one_match() -> None:
    one = [cred("k1", "Abc", 100), cred("k2", "Xyz", 100)]
    assert identify_current(one, facts("Abc")).credential == one[0]
    assert identify_current(one, facts("Abc")).how == "hint"
    two = [cred("k1", "Abc", 100), cred("k2", "Abc", 100)]
    assert identify_current(two, facts("Abc")).credential is None
    assert identify_current(two, facts("Abc")).how == "ambiguous hint"
    assert identify_current(one, facts("Qqq")).how == "no match"


def test_keyid_tag_with_a_different_hint_is_not_trusted() -> None:
    creds = [cred("k1", "Abc", 100)]
    assert identify_current(creds, facts("Zzz", key="k1")).credential is None


def test_not_due_far_from_expiry_and_due_within_the_window() -> None:
    creds = [cred("k1", "Abc", 100)]
    decision = decide(NOW, POLICY, creds, facts(key="k1"), force=False)
    assert not decision.due and decision.rotate_on == NOW + timedelta(days=70)
    soon = [cred("k1", "Abc", 29)]
    decision = decide(NOW, POLICY, soon, facts(key="k1"), force=False)
    assert decision.due and "within 30 days" in decision.reason


def test_expired_missing_invalid_and_forced_are_due_without_needing_the_old_secret() -> None:
    assert decide(NOW, POLICY, [cred("k1", "Abc", -1)], facts(key="k1"), force=False).reason.startswith(
        "the current credential expired")
    assert decide(NOW, POLICY, [cred("k1", "Abc", 100)], None, force=False).due
    assert decide(NOW, POLICY, [cred("k1", "Abc", 100)], facts("Abc", ws=True), force=False).due
    gone = decide(NOW, POLICY, [cred("k1", "Abc", 100)], facts(key="deleted"), force=False)
    assert gone.due and "no longer has" in gone.reason
    forced = decide(NOW, POLICY, [cred("k1", "Abc", 100)], facts(key="k1"), force=True)
    assert forced.due and forced.reason == "forced" and forced.current.credential is not None


def test_orphans_are_only_marker_credentials_whose_key_id_is_in_no_vault_secret() -> None:
    creds = [
        cred("user-made", "Abc", 100, "initial"),
        cred("orphan", "Def", 100, credential_display_name("op-1")),
        cred("stored", "Ghi", 100, credential_display_name("op-2")),
        cred("retiring", "Jkl", 100, credential_display_name("op-0")),
        cred("no-name", "Mno", 100, None),
    ]
    # op-1 and op-2 are this target's operations; op-0 is another target's (same marker, not ours)
    orphans = find_orphans(creds, frozenset({"op-1", "op-2"}), {"stored"})
    assert [o.key_id for o in orphans] == ["orphan"]
    assert find_orphans(creds, frozenset({"op-1", "op-2"}), {"stored"}, in_flight_key_id="orphan") == []
    assert find_orphans(creds, frozenset(), set()) == []  # no journal: nothing is this target's


def test_marker_parsing_only_accepts_the_product_prefix() -> None:
    assert operation_of(credential_display_name("abc")) == "abc"
    assert operation_of("ccremediatorX abc") is None
    assert operation_of("initial") is None
    assert operation_of(None) is None


def test_lifetime_is_clamped_to_the_policy_maximum_or_reported_unknown() -> None:
    # a day in hand: Entra measures the lifetime from its own clock, which may run behind ours
    assert clamp_lifetime(180, 90) == 89
    assert clamp_lifetime(60, 90) == 60
    assert clamp_lifetime(90, 90) == 89
    assert clamp_lifetime(180, None) is None
    assert clamp_lifetime(180, 0) is None


def test_journal_round_trips_through_json_and_bounds_its_history() -> None:
    op = Operation("op", RotationStage.TEST, "2025-01-01T00:00:00Z", "2025-01-01T00:00:00Z", "forced",
                   previous_key_id="k0", new_key_id="k1", last_error=StepError("test", "not_ready", "x", "t"))
    journal = Journal("hpc", current=op, retirements=(Retirement("k0", "2025-01-02T00:00:00Z", "op"),))
    again = Journal.from_dict(journal.to_dict())
    assert again == journal
    for i in range(HISTORY_LIMIT + 5):
        journal = journal.finish(Operation(f"op{i}", RotationStage.COMMIT, "a", "b", "r"), "committed")
    assert len(journal.history) == HISTORY_LIMIT and journal.history[0]["id"] == f"op{HISTORY_LIMIT + 4}"
    assert journal.current is None


def test_outcome_status_codes_and_where_to_look() -> None:
    waiting = RotationOutcome("hpc", RotationStatus.IN_PROGRESS, "waiting", stage=RotationStage.TEST, operation_id="op")
    assert waiting.http_status == 202
    body = waiting.to_dict()
    assert body["statusUrl"] == "/api/targets/hpc/rotation" and body["stage"] == "test" and body["operationId"] == "op"
    assert RotationOutcome("hpc", RotationStatus.ROTATED, "done").http_status == 200
    assert RotationOutcome("hpc", RotationStatus.FAILED, "no").http_status == 200


def test_lead_time_is_at_most_half_a_secrets_lifetime() -> None:
    from shared.rotation.policy import effective_lead_days, effective_lifetime_days, lead_days_for

    assert effective_lifetime_days(POLICY, None) == 180 and effective_lifetime_days(POLICY, 60) == 59
    assert effective_lead_days(POLICY, 180) == 30 and effective_lead_days(POLICY, 19) == 9
    assert effective_lead_days(POLICY, 1) == 1
    # a credential's own (shorter) lifetime counts: 20 days from start to end -> due 10 days before expiry
    short = AppCredential("k1", None, "Abc", NOW - timedelta(days=5), NOW + timedelta(days=15))
    assert lead_days_for(POLICY, short) == 10
    assert not decide(NOW, POLICY, [short], facts(key="k1"), force=False).due  # 15 days left, lead 10
    assert lead_days_for(POLICY, None, policy_max_days=20) == 9
