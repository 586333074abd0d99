"""Configuration as pydantic models (shared/config_models.py): the published JSON Schema of TARGETS_FILE is the one
the models give, loading settings stays out of the Function app's indexing, what pydantic rejects reads like every
other problem and never quotes a secret, and `config check` asks for what a running product needs (storage)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from shared.config import load_settings
from shared.config_models import targets_json_schema
from shared.errors import ConfigError
from tests.leaks import assert_no_leak
from tests.world import TARGET, World

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DOC = ROOT / "docs" / "targets.schema.json"
WRITE = "run `.venv/bin/python -m shared.config_models > docs/targets.schema.json` and commit it"


def _env(targets: object, **extra: str) -> dict[str, str]:
    return {"TARGETS": json.dumps(targets), "KEY_VAULT_URL": "https://kv-remediator.vault.azure.net", **extra}


def _problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    return raised.value.problems


# -- the published schema -----------------------------------------------------------------------------------


def test_the_published_schema_is_the_models_schema() -> None:
    published = json.loads(SCHEMA_DOC.read_text(encoding="utf-8"))
    assert published == targets_json_schema(), WRITE
    Draft202012Validator.check_schema(published)


def test_the_examples_the_docs_give_are_valid_for_editors_too() -> None:
    validator = Draft202012Validator(targets_json_schema())
    sample = json.loads((ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))["Values"]["TARGETS"]
    for document in (json.loads(sample), [World().target()],
                     {"$schema": "./targets.schema.json", "targets": [World().target()]}):
        assert not [e.message for e in validator.iter_errors(document)], document
        load_settings(_env(document))  # and the product accepts them


@pytest.mark.parametrize(("change", "fragment"), [
    ({"secret_name": None}, "secret_name: is missing"),
    ({"mode": "managed_identity", "vm_resource_id": None}, "vm_resource_id: is missing but managed_identity mode"),
    ({"tenant_id": "contoso"}, "tenant_id: 'contoso' is not a GUID"),
    ({"roles": []}, "roles: [] is not a non-empty list"),
    ({"prune_unmanaged_roles": "yes"}, "prune_unmanaged_roles: 'yes' is not true or false"),
    ({"cyclecloud": {"url": "http://cc", "user": "u", "password_secret": "p"}}, "is not an https:// URL"),
    ({"unknown_key": 1}, "unknown_key: is not a known setting"),
])
def test_what_the_schema_refuses_the_product_refuses(change: dict[str, Any], fragment: str) -> None:
    target = {k: v for k, v in {**World().target(), **change}.items() if v is not None}
    assert list(Draft202012Validator(targets_json_schema()).iter_errors([target])), "an editor flags it"
    assert any(fragment in p for p in _problems(_env([target]))), fragment


# -- lazy loading -------------------------------------------------------------------------------------------


def test_indexing_the_function_app_does_not_import_pydantic() -> None:
    """pydantic is loaded with the settings, on a function's first call, never while the host indexes."""
    probe = "import sys, function_app; print(sorted(m for m in sys.modules if m.split('.')[0].startswith('pydantic')))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=dict(os.environ), capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout


# -- problems read the same, and never quote a secret ---------------------------------------------------------

PASTED_SECRET = "Zq8Q~never-shown-client-secret-0123456789ab"
WEBHOOK = "http://contoso.webhook.office.com/webhookb2/never-shown-token-0123456789"
CONNECTION = "DefaultEndpointsProtocol=https;AccountName=st;AccountKey=never-shown-key-0123456789=="


@pytest.mark.parametrize(("where", "value"), [
    ("secret_name", PASTED_SECRET), ("client_secret", PASTED_SECRET), ("password", PASTED_SECRET),
    ("cyclecloud.password_secret", PASTED_SECRET), ("NOTIFY_WEBHOOK_URL", WEBHOOK),
])
def test_a_secret_in_the_wrong_place_is_described_never_quoted(where: str, value: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    target = World().target()
    extra: dict[str, str] = {"AzureWebJobsStorage": CONNECTION, "MAX_CONCURRENCY": "many"}
    if where.startswith("cyclecloud."):
        target["cyclecloud"][where.split(".", 1)[1]] = value
    elif where.isupper():
        extra[where] = value
    else:
        target[where] = value
    with pytest.raises(ConfigError) as raised:
        load_settings(_env([target], **extra))
    exc = raised.value
    assert any(p.startswith((f"TARGETS[0] ({TARGET}).{where}:", f"TARGETS[0].{where}:", f"{where}:"))
               for p in exc.problems), exc.problems
    assert exc.__cause__ is None and exc.__context__ is None, "pydantic's error, which quotes inputs, is not chained"
    text = "\n".join([str(exc), repr(exc), json.dumps(exc.to_dict()), caplog.text])
    assert_no_leak(text, *(form for secret in (value, CONNECTION) for form in (secret, secret[12:40])))


@pytest.mark.parametrize("where", ["AZURE_CLIENT_ID", "HOME_TENANT_ID", "NOTIFY_FORMAT", "MAXIMUM_INSTANCE_COUNT",
                                   "tenant_id", "app_id", "identity", "roles", "cyclecloud.account"])
def test_a_client_secret_pasted_into_any_setting_is_not_quoted(where: str) -> None:
    """A GUID, a name or a number quotes the value it refuses; not one that looks like a client secret (someone
    pasted the secret instead of the app's client id, say)."""
    target, extra = World().target(), {}
    if where.isupper():
        extra[where] = f" {PASTED_SECRET}"
    elif where == "roles":
        target["roles"] = [PASTED_SECRET, ""]
    elif where.startswith("cyclecloud."):
        target["cyclecloud"]["account"] = f"{PASTED_SECRET}/.."
    else:
        target[where] = PASTED_SECRET
    problems = _problems(_env([target], **extra))
    [problem] = [p for p in problems if p.startswith((f"{where}:", f"TARGETS[0] ({TARGET}).{where}:"))]
    assert "(a value that looks like a client secret, not shown)" in problem
    text = "\n".join(problems).lower()
    assert_no_leak(text, PASTED_SECRET[:12].lower(), PASTED_SECRET[5:17].lower())


def test_a_problem_pydantic_finds_reads_like_the_others() -> None:
    """Types, unknown keys and nested objects: the setting's path, what is wrong and the fix, as before."""
    target = World().target()
    target["cyclecloud"]["extra"] = 1
    target["rotation"] = {"lifetime_days": 20}
    target["allow_privileged_roles"] = "yes"
    target["roles"] = ["owner", "User Access Administrator"]
    problems = _problems(_env([target, 5]))
    where = f"TARGETS[0] ({TARGET})"
    assert f"{where}.cyclecloud.extra: is not a known setting; remove it, or use one of: account, ca_bundle, " \
           "ca_bundle_secret, credential_method, credential_path, password_secret, supports_dry_run, " \
           "timeout_seconds, transport, url, user" in problems
    assert f"{where}.rotation.rotate_before_days: 30 is not less than lifetime_days (20); a new secret would be " \
           "due for rotation as soon as it is created; lower rotate_before_days" in problems
    assert f"{where}.allow_privileged_roles: 'yes' is not true or false; use true or false" in problems
    assert len([p for p in problems if p.startswith(f"{where}.roles: ")]) == 2, "one problem per privileged role"
    assert 'TARGETS[1]: must be an object; e.g. {"name": "hpc-prod", "tenant_id": "...", ...}' in problems


def test_rules_between_targets_see_the_targets_before_them() -> None:
    prod = World().target()
    dev = {**copy.deepcopy(prod), "name": "hpc-dev", "secret_name": "dev-secret",
           "identity": "2d4e6f80-1a2b-4c3d-9e8f-a1b2c3d4e5f6"}
    dev["cyclecloud"]["account"] = "azure-dev"
    problems = _problems(_env([prod, dev]))
    assert problems == [f"targets[hpc-dev].identity: is '{dev['identity']}' but target '{TARGET}' in the same tenant "
                        f"{prod['tenant_id']} uses 'home'; the product reaches one tenant through one identity: give "
                        "every target of a tenant the same identity"]


# -- config check: what a running product needs --------------------------------------------------------------


def _check(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *argv: str) -> int:
    from shared.cli import main

    for key in ("TARGETS_FILE", "AzureWebJobsStorage", "AzureWebJobsStorage__blobServiceUri",
                "AzureWebJobsStorage__queueServiceUri", "AzureWebJobsStorage__accountName"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return main(["config", "check", *argv])


def test_config_check_asks_for_the_storage_account_rotation_needs(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert _check(monkeypatch, World().env()) == 2
    err = capsys.readouterr().err
    assert "AzureWebJobsStorage: is not set, so rotation has nowhere to keep its journal and lease; set it to" in err
    assert "AzureWebJobsStorage__blobServiceUri" in err, "the fix names the identity-based settings too"

    assert _check(monkeypatch, World().env(), "--before-deploy") == 0, "before a deployment, which provides it"
    assert "not checked (--before-deploy)" in capsys.readouterr().out

    identity_based = {**World().env(), "AzureWebJobsStorage__blobServiceUri": "https://st.blob.core.windows.net"}
    assert _check(monkeypatch, identity_based) == 2
    assert "AzureWebJobsStorage__queueServiceUri: is not set" in capsys.readouterr().err

    for storage in ({"AzureWebJobsStorage": CONNECTION}, {"AzureWebJobsStorage__accountName": "st"},
                    {"AzureWebJobsStorage__blobServiceUri": "https://st.blob.core.windows.net",
                     "AzureWebJobsStorage__queueServiceUri": "https://st.queue.core.windows.net"}):
        assert _check(monkeypatch, {**World().env(), **storage}) == 0, storage
        out = capsys.readouterr().out
        assert "configuration is valid" in out and CONNECTION not in out


def test_the_openapi_target_parameter_is_the_configured_name() -> None:
    from shared.openapi import openapi_document

    parameter = openapi_document()["components"]["parameters"]["target"]["schema"]
    assert parameter["pattern"] == targets_json_schema()["$defs"]["TargetModel"]["properties"]["name"]["pattern"]
