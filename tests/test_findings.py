"""The finding catalog and the AADSTS catalog (pure): stable codes, complete entries, evidence parsing."""

from __future__ import annotations

import re

import pytest

from shared.aadsts import CATALOG as AADSTS
from shared.aadsts import parse_entra_error
from shared.diagnosis.checks import CHECK_NAMES
from shared.diagnosis.checks.token import finding_code_for
from shared.diagnosis.report import overall_status
from shared.diagnosis.validate import merge_findings
from shared.findings import CATALOG, FixAction, Severity, make_finding

ISSUE_CODES = {
    "secret.expired", "secret.expiring_soon", "secret.invalid", "secret.whitespace", "secret.looks_like_secret_id",
    "secret.unknown_credential", "secret.missing_in_vault", "app.not_found_in_tenant", "tenant.not_found",
    "tenant.mismatch", "role.missing", "role.insufficient", "role.policy_denied", "identity.disabled",
    "identity.role_missing", "cyclecloud.unreachable", "cyclecloud.login_failed", "cyclecloud.account_missing",
    "cyclecloud.out_of_sync", "function.permission_missing", "function.identity_unavailable",
    "advice.use_managed_identity", "entra.unknown_error",
}
REQUIRED_AADSTS = {7000222, 7000215, 700016, 90002, 700027, 7000112, 700024, 53003, 50034, 7000229, 500011}
SEED_ERROR = ("Error: ClientSecretCredential authentication failed. AADSTS7000215: Invalid client secret provided. "
              "Ensure the secret being sent in the request is the client secret value, not the client secret ID, "
              "for a secret added to app '<client ID>'. Trace ID: d05377ee-e3ab-4d37-bab7-d46f530b7401 Correlation "
              "ID: 1ef06246-3841-470a-860f-ab1b78f325a5 Timestamp: 2025-06-03 16:13:57Z")


def test_every_code_the_issue_names_is_in_the_catalog() -> None:
    assert ISSUE_CODES <= set(CATALOG)


@pytest.mark.parametrize("code", sorted(CATALOG))
def test_each_entry_is_complete(code: str) -> None:
    spec = CATALOG[code]
    assert re.fullmatch(r"[a-z]+\.[a-z_]+", code)
    assert spec.code == code and spec.severity in Severity and spec.title
    # one sentence a newcomer understands: a capital start, one full stop at the end, no second sentence
    assert spec.summary[0].isupper() and spec.summary.endswith(".")
    assert ". " not in spec.summary[:-1], spec.summary
    assert spec.steps, "every finding says how to fix it"
    for step in spec.steps:
        assert step.action and step.portal and step.cli
    assert (spec.fix_action is None) == (spec.remediate_how is None)
    if code.startswith("advice."):
        assert spec.severity is Severity.INFO


def test_remediate_fixes_exactly_the_findings_it_can_fix_safely() -> None:
    fixable = {c: s.fix_action for c, s in CATALOG.items() if s.fix_action}
    assert fixable == {
        "secret.expired": FixAction.ROTATE, "secret.expiring_soon": FixAction.ROTATE,
        "secret.invalid": FixAction.ROTATE, "secret.looks_like_secret_id": FixAction.ROTATE,
        "secret.unknown_credential": FixAction.ROTATE, "secret.missing_in_vault": FixAction.ROTATE,
        "secret.whitespace": FixAction.STORE_TRIMMED_SECRET, "role.missing": FixAction.RECONCILE_ROLES,
        "identity.role_missing": FixAction.RECONCILE_ROLES,
        "cyclecloud.out_of_sync": FixAction.PUSH_TO_CYCLECLOUD,
    }


def test_steps_are_filled_with_the_targets_ids_and_unknown_placeholders_stay_readable() -> None:
    finding = make_finding("role.missing", "x", params={"principal_id": "p-1", "subscription_id": "s-1",
                                                        "role": "Contributor"})
    cli = finding.steps[0].cli
    assert "--assignee-object-id p-1" in cli and "--scope /subscriptions/s-1" in cli and '"Contributor"' in cli
    partial = make_finding("secret.expired", "x", params={})
    assert "--id <app_id>" in partial.steps[0].cli
    with pytest.raises(KeyError, match="unknown finding code"):
        make_finding("no.such_code", "x")


def test_aadsts_catalog_covers_the_seeds_and_the_common_failures() -> None:
    assert REQUIRED_AADSTS <= set(AADSTS)
    for entry in AADSTS.values():
        assert entry.finding in CATALOG, entry
        assert entry.summary and entry.fix


def test_the_seed_error_text_yields_code_trace_correlation_and_timestamp() -> None:
    evidence = parse_entra_error(SEED_ERROR)
    assert evidence.code == 7000215
    assert evidence.trace_id == "d05377ee-e3ab-4d37-bab7-d46f530b7401"
    assert evidence.correlation_id == "1ef06246-3841-470a-860f-ab1b78f325a5"
    assert evidence.timestamp == "2025-06-03 16:13:57Z"
    assert evidence.description.startswith("Invalid client secret provided.")
    assert finding_code_for(evidence) == "secret.invalid"


@pytest.mark.parametrize(("code", "finding"), [
    (7000222, "secret.expired"), (700016, "app.not_found_in_tenant"), (90002, "tenant.not_found"),
    (7000112, "app.disabled"), (53003, "entra.sign_in_refused"), (7000229, "app.not_found_in_tenant"),
])
def test_aadsts_codes_map_to_findings(code: int, finding: str) -> None:
    assert finding_code_for(parse_entra_error(f"AADSTS{code}: something. Trace ID: "
                                              "d05377ee-e3ab-4d37-bab7-d46f530b7401")) == finding


def test_an_unknown_code_passes_through_with_its_description_and_the_lookup_link() -> None:
    evidence = parse_entra_error("AADSTS9999999: A brand new failure.\r\nTrace ID: d05377ee-e3ab-4d37-bab7-"
                                 "d46f530b7401\r\nCorrelation ID: 1ef06246-3841-470a-860f-ab1b78f325a5")
    assert finding_code_for(evidence) == "entra.unknown_error"
    assert evidence.description == "A brand new failure."
    assert evidence.link == "https://login.microsoftonline.com/error?code=9999999"


def test_the_same_problem_seen_by_two_checks_is_one_finding_with_both_evidences() -> None:
    graph = make_finding("secret.expired", "Graph says", evidence={"key_id": "k"}, check="credential", subject="s")
    entra = make_finding("secret.expired", "Entra says", evidence={"aadsts": "AADSTS7000222"}, check="token",
                         subject="s")
    other = make_finding("cyclecloud.unreachable", "down", check="cyclecloud", subject="u")
    merged = merge_findings([other, graph, entra])
    assert [f.code for f in merged] == ["secret.expired", "cyclecloud.unreachable"]  # errors first
    assert merged[0].evidence == {"key_id": "k", "aadsts": "AADSTS7000222", "seen_by": ["credential", "token"]}
    assert merged[0].detail == "Graph says"


def test_status_follows_the_worst_severity() -> None:
    assert overall_status([]).value == "healthy"
    assert overall_status([make_finding("cyclecloud.unreachable", "x")]).value == "degraded"
    assert overall_status([make_finding("cyclecloud.unreachable", "x"),
                           make_finding("secret.expired", "x")]).value == "failing"


def test_check_names_are_unique() -> None:
    assert len(set(CHECK_NAMES)) == len(CHECK_NAMES)
