"""Configuration: one typed model; invalid settings fail fast with every problem listed, each with its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.config import CONTRIBUTOR_ROLE_ID, Mode, Transport, load_settings
from shared.errors import ConfigError
from tests.leaks import assert_no_leak
from tests.world import TARGET, World


def env_with(targets: object, **extra: str) -> dict[str, str]:
    env = {"TARGETS": json.dumps(targets), "KEY_VAULT_URL": "https://kv-remediator.vault.azure.net"}
    env.update(extra)
    return env


def test_the_world_configuration_loads_with_defaults() -> None:
    settings = load_settings(World().env())
    target = settings.target(TARGET)
    assert target.mode is Mode.SERVICE_PRINCIPAL
    assert target.roles == (CONTRIBUTOR_ROLE_ID,)
    assert target.cyclecloud is not None and target.cyclecloud.transport is Transport.REST
    assert target.rotation.rotate_before_days == 30 and target.rotation.lifetime_days == 180
    assert settings.cloud.arm == "https://management.azure.com"
    assert settings.rotation_schedule == "0 0 3 * * *" and settings.health_schedule == "0 0 * * * *"
    assert settings.auto_remediate is False


def test_every_problem_is_listed_at_once_with_its_fix() -> None:
    targets = [
        {"name": "ok-target", "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47", "app_id": "contoso-app",
         "subscription_ids": ["0b1f6471-1bf0-4dda-aec3-cb9272f09590"], "secret_name": "s"},
        {"name": "Bad Name", "tenant_id": "contoso", "subscription_ids": [], "secret": "hunter2",
         "rotation": {"rotate_before_days": 400, "lifetime_days": 90}},
    ]
    with pytest.raises(ConfigError) as raised:
        load_settings(env_with(targets, KEY_VAULT_URL="kv-remediator", AZURE_CLOUD="Mars", ROTATION_SCHEDULE="daily"))
    problems = raised.value.problems
    text = str(raised.value)
    expected = [
        "TARGETS[1].tenant_id: 'contoso' is not a GUID; use the Directory (tenant) ID from the app registration's "
        "Overview page",
        "TARGETS[0] (ok-target).app_id: 'contoso-app' is not a GUID",
        "TARGETS[1].name: 'Bad Name' is not a slug",
        "TARGETS[1].subscription_ids: must be a non-empty list",
        "TARGETS[1].secret: looks like a secret value in configuration",
        "TARGETS[1].rotation.rotate_before_days: 400 is not less than lifetime_days",
        "AZURE_CLOUD: 'Mars' is not a known cloud",
        "KEY_VAULT_URL: 'kv-remediator' is not an https:// URL",
        "ROTATION_SCHEDULE: 'daily' is not a 6-field NCRONTAB expression",
        "TARGETS[1].secret_name: is missing",
    ]
    for fragment in expected:
        assert any(fragment in p for p in problems), f"missing problem: {fragment}\n{text}"
    assert all(";" in p for p in problems), "every problem says how to fix it"
    assert_no_leak(text, "hunter2")  # a secret value in configuration is never echoed
    assert f"{len(problems)} problem(s)" in text


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"mode": "magic"}, "mode: 'magic' is not a mode"),
        ({"mode": "managed_identity", "vm_resource_id": None}, "vm_resource_id: is missing"),
        ({"cyclecloud": {"url": "http://cc"}}, "cyclecloud.url: 'http://cc' is not an https:// URL"),
        ({"cyclecloud": {"url": "https://cc", "transport": "ssh"}}, "transport: 'ssh' is not a transport"),
        ({"cyclecloud": {"url": "https://cc", "ca_bundle": "/nope.pem", "user": "u", "password_secret": "p"}},
         "ca_bundle: '/nope.pem' is not a readable file"),
        ({"roles": []}, "roles: [] is not a non-empty list"),
        ({"vm_resource_id": "/subscriptions/x/vm"}, "is not a virtual machine resource id"),
        ({"unknown_key": 1}, "unknown_key: is not a known setting"),
        ({"rotation": {"lifetime_days": "long"}}, "lifetime_days: 'long' is not a whole number"),
    ],
)
def test_each_target_problem_is_reported(change: dict[str, object], fragment: str) -> None:
    target = World().target()
    target.update(change)
    target = {k: v for k, v in target.items() if v is not None}
    with pytest.raises(ConfigError) as raised:
        load_settings(env_with([target]))
    assert any(fragment in p for p in raised.value.problems), raised.value.problems


def test_targets_file_and_missing_targets(tmp_path: Path) -> None:
    path = tmp_path / "targets.json"
    path.write_text(json.dumps({"targets": [World().target()]}))
    settings = load_settings({"TARGETS_FILE": str(path), "KEY_VAULT_URL": "https://kv.vault.azure.net"})
    assert [t.name for t in settings.targets] == [TARGET]

    with pytest.raises(ConfigError, match="TARGETS: is not set"):
        load_settings({"KEY_VAULT_URL": "https://kv.vault.azure.net"})
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_settings({"TARGETS": "[{", "KEY_VAULT_URL": "https://kv.vault.azure.net"})
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings({"TARGETS_FILE": str(tmp_path / "missing.json"), "KEY_VAULT_URL": "https://kv.vault.azure.net"})


def test_duplicate_names_and_vault_in_the_wrong_cloud() -> None:
    target = World().target()
    with pytest.raises(ConfigError) as raised:
        load_settings(env_with([target, target], AZURE_CLOUD="AzureUSGovernment"))
    assert any("is used by another target" in p for p in raised.value.problems)
    assert any("is not a Key Vault in AzureUSGovernment" in p for p in raised.value.problems)


def test_national_cloud_endpoints() -> None:
    settings = load_settings(env_with([World().target()], AZURE_CLOUD="AzureUSGovernment",
                                      KEY_VAULT_URL="https://kv.vault.usgovcloudapi.net"))
    assert settings.cloud.login == "https://login.microsoftonline.us"
    assert settings.cloud.graph_scope == "https://graph.microsoft.us/.default"


def test_unknown_target_names_the_configured_ones() -> None:
    from shared.errors import TargetNotFoundError

    with pytest.raises(TargetNotFoundError) as raised:
        load_settings(World().env()).target("nope")
    assert TARGET in raised.value.reason


# -- hardening: secret-looking values, account names, privileged roles, probe dry run --------------------------

PASTED_SECRET = "Abc8Q~pasted-client-secret-value-0123456789"
PASTED_PASSWORD = "Cc admin password 42!"


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("secret_name", PASTED_SECRET, "looks like a client secret value, not a Key Vault secret name"),
        ("password_secret", PASTED_SECRET, "looks like a client secret value, not a Key Vault secret name"),
        ("ca_bundle_secret", PASTED_SECRET, "looks like a client secret value, not a Key Vault secret name"),
        ("password_secret", PASTED_PASSWORD, "is not a Key Vault secret name (21 characters"),
        ("ca_bundle_secret", "my_ca.pem", "is not a Key Vault secret name (9 characters"),
    ],
)
def test_a_value_pasted_into_a_secret_name_setting_is_described_never_echoed(
        field: str, value: str, fragment: str, caplog: pytest.LogCaptureFixture) -> None:
    target = World().target()
    if field == "secret_name":
        target[field] = value
    else:
        target["cyclecloud"][field] = value
    with pytest.raises(ConfigError) as raised:
        load_settings(env_with([target]))
    problems = [p for p in raised.value.problems if f".{field}:" in p]
    assert problems and fragment in problems[0], raised.value.problems
    assert "Key Vault" in problems[0].split(";", 1)[1], "the fix says where the value belongs"
    text = "\n".join([str(raised.value), repr(raised.value), json.dumps(raised.value.to_dict()), caplog.text])
    assert_no_leak(text, value, value[:12])


def test_secret_names_that_are_valid_still_load() -> None:
    target = World().target()
    target["cyclecloud"]["ca_bundle_secret"] = "cyclecloud-ca"
    settings = load_settings(env_with([target]))
    cc = settings.target(TARGET).cyclecloud
    assert cc is not None and cc.ca_bundle_secret == "cyclecloud-ca" and cc.supports_dry_run is False


@pytest.mark.parametrize("account", ["azure/../x", "a?b", "a#b", "..", "-rf", "acc\nount", "acc\x00", "a\\b", "a%2fb",
                                     " azure"])
def test_cyclecloud_account_names_that_would_escape_a_path_or_a_command_are_refused(account: str) -> None:
    target = World().target()
    target["cyclecloud"]["account"] = account
    with pytest.raises(ConfigError) as raised:
        load_settings(env_with([target]))
    problems = [p for p in raised.value.problems if ".cyclecloud.account:" in p]
    assert problems and "is not an account name" in problems[0] and "Cloud Provider Accounts" in problems[0]
    assert "\n" not in problems[0] and "\x00" not in problems[0], "control characters are shown escaped"


def test_cyclecloud_account_names_with_spaces_and_dots_are_fine() -> None:
    target = World().target()
    target["cyclecloud"]["account"] = "HPC account v1.2"
    cc = load_settings(env_with([target])).target(TARGET).cyclecloud
    assert cc is not None and cc.account == "HPC account v1.2"


@pytest.mark.parametrize(
    ("role", "name"),
    [
        ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner"),
        ("18D7D88D-D35E-4FB5-A5C3-7773C20A72D9", "User Access Administrator"),
        ("f58310d9-a9f6-439a-9e8d-f62e7b41a168", "Role Based Access Control Administrator"),
        ("owner", "Owner"),
        ("/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/providers/Microsoft.Authorization/roleDefinitions/"
         "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner"),
        ("User Access Administrator", "User Access Administrator"),
    ],
)
def test_privileged_roles_are_refused_unless_explicitly_allowed(role: str, name: str) -> None:
    target = World().target()
    target["roles"] = [CONTRIBUTOR_ROLE_ID, role]
    with pytest.raises(ConfigError) as raised:
        load_settings(env_with([target]))
    problems = [p for p in raised.value.problems if ".roles:" in p]
    assert len(problems) == 1 and f"is {name}" in problems[0] and "allow_privileged_roles: true" in problems[0]
    target["allow_privileged_roles"] = True
    loaded = load_settings(env_with([target])).target(TARGET)
    assert loaded.allow_privileged_roles is True and len(loaded.roles) == 2


def test_boolean_switches_must_be_booleans() -> None:
    target = World().target()
    target["allow_privileged_roles"] = "yes"
    target["cyclecloud"]["supports_dry_run"] = 1
    with pytest.raises(ConfigError) as raised:
        load_settings(env_with([target]))
    assert any("allow_privileged_roles: 'yes' is not true or false" in p for p in raised.value.problems)
    assert any("supports_dry_run: 1 is not true or false" in p for p in raised.value.problems)
    target["allow_privileged_roles"] = False
    target["cyclecloud"]["supports_dry_run"] = True
    cc = load_settings(env_with([target])).target(TARGET).cyclecloud
    assert cc is not None and cc.supports_dry_run is True
