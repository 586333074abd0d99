"""The deployment, checked without a Bicep compiler or Azure: the Bicep parses (pycep-parser), the policy gate
fails when it should, every setting the code reads and every permission it needs is deployed, no grant is
broader than docs/deploy.md says, and the package and the lock hold what they must."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from infra import gate
from infra.scripts import stage_package
from tests.fake_az import install_fake_az

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
RBAC_ADMINISTRATOR = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
BUILT_IN_ROLES = {  # id -> name, as in Azure's built-in roles reference
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    READER: "Reader",
    RBAC_ADMINISTRATOR: "Role Based Access Control Administrator",
}
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


# -- parsing helpers -------------------------------------------------------------------------------------


@cache
def parsed(relative: str) -> dict[str, Any]:
    from pycep import BicepParser

    return dict(BicepParser().parse(text=(INFRA / relative).read_text(encoding="utf-8")))


def body(declaration: dict[str, Any]) -> dict[str, Any]:
    """The properties of a resource or module, through pycep's wrappers for `if (...)` and `for ... in`."""
    config: dict[str, Any] = declaration["config"]
    while "config" in config and ("condition" in config or "loop_type" in config):
        config = config["config"]
    return config


def resources(kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(file, symbolic name, body) of every declared (not `existing`) resource of a type, in every file."""
    for path in gate.bicep_files():
        relative = str(path.relative_to(INFRA))
        for name, declaration in (parsed(relative).get("resources") or {}).items():
            if declaration["type"].lower() == kind.lower() and not declaration.get("existing"):
                yield relative, name, body(declaration)


def variable(relative: str, name: str) -> Any:
    return parsed(relative)["variables"][name]["value"]


def app_settings() -> set[str]:
    """Every app setting the deployment gives the Function app: main.bicep's appSettings for the api module,
    and the host settings api.bicep adds."""
    api_params = body(parsed("main.bicep")["modules"]["api"])["params"]
    return set(api_params["appSettings"]) | set(variable("app/api.bicep", "hostSettings"))


# -- what the code reads (the settings scanner) ----------------------------------------------------------

SETTING_NAME = re.compile(r"^(?:[A-Z][A-Z0-9_]*[A-Z0-9]|AzureWebJobs\w+)$")
_ENV_NAMES = {"env", "environ", "environment"}


def _is_env(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id in _ENV_NAMES
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def settings_read_by(source: str) -> set[str]:
    """Setting names a module reads: `env.get("X")`, `env["X"]`, `os.getenv("X")`, a helper called with the
    environment and a literal name (`_flag(problems, env, "AUTO_REMEDIATE", ...)`), a pydantic field named by
    its setting (`Field(alias="KEY_VAULT_URL")`, shared/config_models.py), and `%X%` binding expressions (timer
    schedules)."""
    found: set[str] = set()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        literals: list[str] = []
        if isinstance(node, ast.Call):
            func = node.func
            args = [*node.args, *(k.value for k in node.keywords)]
            reads_env = (isinstance(func, ast.Attribute) and func.attr in {"get", "pop"} and _is_env(func.value)) \
                or (isinstance(func, ast.Attribute) and func.attr == "getenv") \
                or any(_is_env(a) for a in args)
            if reads_env:
                literals = [a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            elif isinstance(func, ast.Name) and func.id == "Field":
                literals = [k.value.value for k in node.keywords if k.arg == "alias"
                            and isinstance(k.value, ast.Constant) and isinstance(k.value.value, str)]
        elif isinstance(node, ast.Subscript) and _is_env(node.value):
            key = node.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                literals = [key.value]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            literals = re.findall(r"^%([A-Za-z_][A-Za-z0-9_]*)%$", node.value)
        found.update(s for s in literals if SETTING_NAME.match(s))
    return found


def settings_the_code_reads() -> set[str]:
    names: set[str] = set()
    for path in [ROOT / "function_app.py", *sorted((ROOT / "shared").rglob("*.py"))]:
        names |= settings_read_by(path.read_text(encoding="utf-8"))
    return names


# Read by the code but not set by the Bicep, each with the reason.
NOT_DEPLOYED = {
    "IDENTITY_ENDPOINT": "set by the platform for the managed identity",
    "IDENTITY_HEADER": "set by the platform for the managed identity",
    "TARGETS_FILE": "an alternative to TARGETS for the CLI; the deployment sets TARGETS",
    "AzureWebJobsStorage": "the connection-string form; the deployment uses identity-based "
                           "AzureWebJobsStorage__blobServiceUri (shared keys are off)",
    "AzureWebJobsStorage__accountName": "an alternative to AzureWebJobsStorage__blobServiceUri",
}
# Flex Consumption rejects or ignores these (the runtime comes from functionAppConfig).
FLEX_FORBIDDEN = {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE",
                  "SCM_DO_BUILD_DURING_DEPLOYMENT", "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
                  "WEBSITE_CONTENTSHARE", "WEBSITE_TIME_ZONE", "AzureWebJobsFeatureFlags"}


# -- 1. syntax and policy gate ---------------------------------------------------------------------------


def test_every_bicep_file_parses() -> None:
    files = gate.bicep_files()
    assert {str(p.relative_to(INFRA)) for p in files} >= {
        "main.bicep", "app/api.bicep", "app/rbac.bicep", "app/target-access.bicep", "app/vault.bicep",
        "app/vm-access.bicep", "app/graph.bicep", "app/alerts.bicep"}
    assert gate.syntax_errors(files) == {}


def test_the_syntax_gate_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.bicep"
    broken.write_text("param name string\nresource x 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: \n")
    good = tmp_path / "good.bicep"
    good.write_text("param name string\noutput n string = name\n")
    assert list(gate.syntax_errors([broken, good])) == ["broken.bicep"]


def _report(failed: list[dict[str, str]] | None = None, parsing: list[str] | None = None,
            passed: int = 5) -> dict[str, Any]:
    return {"results": {"failed_checks": failed or [], "parsing_errors": parsing or []},
            "summary": {"passed": passed, "failed": len(failed or []), "parsing_errors": len(parsing or [])}}


def test_the_policy_gate_fails_on_a_failed_check_an_unexpected_parse_error_or_no_checks() -> None:
    expected_unparsed = [str(INFRA / name) for name in gate.CHECKOV_UNPARSED]
    assert gate.checkov_problems(_report(parsing=expected_unparsed)) == []
    failed = gate.checkov_problems(_report(failed=[{"check_id": "CKV_AZURE_33", "check_name": "queue logging",
                                                    "resource": "x", "file_path": "/app/x.bicep"}]))
    assert len(failed) == 1 and "CKV_AZURE_33" in failed[0]
    unparsed = gate.checkov_problems(_report(parsing=[*expected_unparsed, str(INFRA / "app/rbac.bicep")]))
    assert len(unparsed) == 1 and "app/rbac.bicep" in unparsed[0]
    assert gate.checkov_problems(_report(passed=0)) != []


def test_files_checkov_cannot_parse_declare_nothing_it_has_policies_for() -> None:
    for relative in gate.CHECKOV_UNPARSED:
        kinds = {d["type"] for d in (parsed(relative).get("resources") or {}).values()}
        assert all(k == "Microsoft.Resources/resourceGroups" or k.startswith("Microsoft.Graph/") for k in kinds), \
            (relative, kinds)


def test_every_checkov_skip_has_a_reason() -> None:
    lines = (INFRA / ".checkov.yaml").read_text().splitlines()
    skips = gate.configured_skips()
    assert 0 < len(skips) <= 5, "keep the skip list short"
    for index, line in enumerate(lines):
        if line.strip().startswith("- "):
            reason = [ln for ln in lines[max(0, index - 6):index] if ln.strip().startswith("#")]
            assert "#" in line and reason, f"skip without a reason: {line.strip()}"


def test_checkov_runs_offline() -> None:
    assert gate.CHECKOV_OFFLINE_ENV["BC_SKIP_MAPPING"] == "TRUE"
    # `--skip-download` is what stops the policy download; the gate always passes it
    import inspect

    assert "--skip-download" in inspect.getsource(gate.run_checkov)


# -- 2. settings -----------------------------------------------------------------------------------------


def test_the_settings_scanner_finds_what_config_reads() -> None:
    found = settings_the_code_reads()
    assert {"TARGETS", "TARGETS_FILE", "KEY_VAULT_URL", "AZURE_CLOUD", "AZURE_CLIENT_ID", "ROTATION_SCHEDULE",
            "HEALTH_SCHEDULE", "AUTO_REMEDIATE", "MAX_CONCURRENCY", "STATE_CONTAINER",
            "AzureWebJobsStorage__blobServiceUri", "IDENTITY_ENDPOINT"} <= found
    sample = ('def f(env):\n    a = env.get("NEW_SETTING")\n    b = os.environ["OTHER"]\n'
              '    c = _flag(p, env, "THIRD", 1)\n'
              'class M(BaseModel):\n    d: int = Field(alias="FOURTH")\n    e: int = Field(description="FIFTH")\n')
    assert settings_read_by(sample) == {"NEW_SETTING", "OTHER", "THIRD", "FOURTH"}


def test_every_setting_the_code_reads_is_set_by_the_bicep() -> None:
    missing = settings_the_code_reads() - app_settings() - set(NOT_DEPLOYED)
    assert not missing, f"add these to the api module's appSettings in infra/main.bicep: {sorted(missing)}"


def test_the_settings_issues_11_and_14_need_are_deployed_already() -> None:
    assert {"CONTINUATION_QUEUE", "REQUIRE_APP_ROLE", "NOTIFY_WEBHOOK_URL", "NOTIFY_FORMAT",
            "APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
            "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"} <= app_settings()


def test_flex_consumption_settings_and_identity_based_storage() -> None:
    settings = app_settings()
    assert not settings & FLEX_FORBIDDEN
    host = variable("app/api.bicep", "hostSettings")
    assert host["AzureWebJobsStorage__credential"] == "managedidentity"
    assert host["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert "Authorization=AAD" in host["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    site = body(parsed("app/api.bicep")["modules"]["site"])["params"]
    assert site["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.13"}
    assert site["functionAppConfig"]["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert site["managedIdentities"]["userAssignedResourceIds"] == ["identityId"]
    assert site["managedIdentities"]["systemAssigned"] is False
    assert site["tags"]  # carries azd-service-name: api (azure.yaml's service)
    assert "azd-service-name': 'api'" in (INFRA / "app/api.bicep").read_text()


def test_the_parameters_file_maps_every_parameter_without_a_default() -> None:
    main = parsed("main.bicep")["parameters"]
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(mapped) <= set(main), f"unknown parameters: {set(mapped) - set(main)}"
    required = {name for name, p in main.items() if p.get("default") is None}
    assert required <= set(mapped)
    for name, entry in mapped.items():
        assert re.fullmatch(r"\$\{[A-Z_]+(=[^}]*)?\}", entry["value"]), (name, entry)


# -- 3. storage, monitoring and the vault are locked down ------------------------------------------------


def test_storage_monitoring_and_vault_have_local_auth_off() -> None:
    modules = parsed("main.bicep")["modules"]
    storage = body(modules["storage"])["params"]
    assert storage["allowSharedKeyAccess"] is False
    assert storage["allowBlobPublicAccess"] is False
    assert storage["minimumTlsVersion"] == "TLS1_2"
    assert {"name": "stateContainerName"} in storage["blobServices"]["containers"]
    assert storage["queueServices"]["queues"] == [{"name": "continuationQueueName"}]
    assert body(modules["appInsights"])["params"]["disableLocalAuth"] is True
    main = parsed("main.bicep")["parameters"]
    assert main["stateContainerName"]["default"] == "remediator"
    assert main["continuationQueueName"]["default"] == "remediator-continuations"
    (_, _, vault), = resources("Microsoft.KeyVault/vaults")
    props = vault["properties"]
    assert props["enableRbacAuthorization"] is True
    assert props["enableSoftDelete"] is True and props["enablePurgeProtection"] is True


def test_registry_modules_are_pinned_verified_modules() -> None:
    for path in gate.bicep_files():
        for name, module in (parsed(str(path.relative_to(INFRA))).get("modules") or {}).items():
            if module["type"] != "local":
                detail = module["detail"]
                assert detail["path"].startswith("avm/res/") and re.fullmatch(r"\d+\.\d+\.\d+", detail["tag"]), name


# -- 4. permissions: what the code needs is granted, and nothing broader ---------------------------------


def _role_of(relative: str, assignment: dict[str, Any]) -> str:
    """The role definition id an assignment grants, resolved through the file's variables; `custom:<expr>`
    for a custom role defined in the templates."""
    definition = assignment["properties"]["roleDefinitionId"]
    if isinstance(definition, dict) and "function" in definition:
        name = definition["function"]["parameters"]["resource_name_1"]
        if isinstance(name, dict):  # roles.storageBlobDataOwner
            operands = name["operator"]["operands"]
            return str(variable(relative, operands["operand_1"])[operands["operand_2"]])
        return str(variable(relative, name))
    return f"custom:{json.dumps(definition)}"


def role_assignments() -> list[tuple[str, str, str, dict[str, Any]]]:
    return [(f, n, _role_of(f, b), b) for f, n, b in resources("Microsoft.Authorization/roleAssignments")]


def test_no_assignment_grants_owner_user_access_administrator_or_unconditioned_rbac_administrator() -> None:
    assignments = role_assignments()
    assert len(assignments) >= 7
    for relative, name, role, assignment in assignments:
        props = assignment["properties"]
        assert role not in {OWNER, USER_ACCESS_ADMINISTRATOR}, (relative, name)
        assert props["principalType"] in {"ServicePrincipal", "operatorPrincipalType"}, (relative, name)
        assert assignment["name"]["function"]["type"] == "guid", (relative, name)
        if role == RBAC_ADMINISTRATOR:
            assert props.get("conditionVersion") == "2.0", (relative, name)
            condition = variable(relative, props["condition"])
            assert "roleAssignments/write" in condition and "roleAssignments/delete" in condition
            assert "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals" \
                in condition
            assert "@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId]" in condition
            assert "PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {\\'ServicePrincipal\\'}" in condition
        if role.startswith("custom:"):
            assert relative in {"app/vm-access.bicep", "app/vm-role-assignment.bicep"}, (relative, name)


def test_owner_and_user_access_administrator_ids_appear_only_in_the_exclusion_list() -> None:
    for path in [*gate.bicep_files(), INFRA / "main.parameters.json"]:
        text = path.read_text().lower()
        if path.name == "main.bicep":
            excluded = variable("main.bicep", "privilegedRoleIds")
            assert {OWNER, USER_ACCESS_ADMINISTRATOR, RBAC_ADMINISTRATOR} == set(excluded)
            text = text.replace(text[text.index("var privilegedroleids"):text.index("var allowedroleids")], "")
        assert OWNER not in text and USER_ACCESS_ADMINISTRATOR not in text, path.name
    # and the allowlist handed to the constrained grant is filtered through it
    assert "!contains(privilegedRoleIds, r)" in (INFRA / "main.bicep").read_text()


def test_custom_roles_carry_only_run_command_and_operation_status() -> None:
    actions: set[str] = set()
    for _, _, definition in resources("Microsoft.Authorization/roleDefinitions"):
        for permission in definition["properties"]["permissions"]:
            actions |= set(permission["actions"])
        assert definition["properties"]["assignableScopes"]
    from shared.diagnosis.required_actions import PRODUCT_ACTIONS_RUNCOMMAND

    assert set(PRODUCT_ACTIONS_RUNCOMMAND) <= actions
    assert actions == {"Microsoft.Compute/virtualMachines/read", "Microsoft.Compute/virtualMachines/runCommands/read",
                       "Microsoft.Compute/virtualMachines/runCommands/write",
                       "Microsoft.Compute/virtualMachines/runCommands/delete",
                       "Microsoft.Compute/locations/operations/read"}
    (_, _, on_vm), = [r for r in resources("Microsoft.Authorization/roleAssignments")
                      if r[0] == "app/vm-role-assignment.bicep"]
    assert on_vm["scope"] == "vm"  # the VM itself, not its resource group


def test_run_command_goes_only_to_the_vms_of_runcommand_targets() -> None:
    main = (INFRA / "main.bicep").read_text()
    assert "var runCommandTargets = filter(targets, t => (t.?cyclecloud.?transport ?? 'rest') == 'runcommand')" in main
    loop = body(parsed("main.bicep")["modules"]["vmAccess"])
    assert parsed("main.bicep")["modules"]["vmAccess"]["config"]["loop_type"]["detail"]["array_name"] == \
        "runCommandVmIds"
    assert loop["params"]["vmName"]  # one module per VM, assigning on that VM (see vm-role-assignment.bicep)


def _grants_table() -> str:
    text = DEPLOY_DOC.read_text()
    start = text.index("## What the identity may do")
    return text[start:text.index("\n## ", start + 5)]


def test_every_permission_the_code_needs_is_granted_and_in_the_table() -> None:
    from shared.adapters.graph import POLICY_READ_PERMISSION, WRITE_PERMISSION
    from shared.diagnosis.required_actions import PRODUCT_ACTION_ASSIGN, PRODUCT_ACTIONS_READ

    granted = {role for _, _, role, _ in role_assignments()}
    # what each adapter needs -> the built-in role that carries it
    needed = {
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "leases, journals, timer state, the deployment package (blob)",
        "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "continuations (queue)",
        "3913510d-42f4-4e42-8a64-420c390055eb": "telemetry with Entra auth",
        "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "read and write the rotated secrets",
        READER: ", ".join(PRODUCT_ACTIONS_READ),
        RBAC_ADMINISTRATOR: PRODUCT_ACTION_ASSIGN,
    }
    assert set(needed) <= granted
    table = _grants_table()
    for role_id in needed:
        assert BUILT_IN_ROLES[role_id] in table and role_id in table, BUILT_IN_ROLES[role_id]
    for action in [*PRODUCT_ACTIONS_READ, PRODUCT_ACTION_ASSIGN, "Microsoft.Compute/virtualMachines/runCommands/write"]:
        assert action in table, action
    for permission in (WRITE_PERMISSION, POLICY_READ_PERMISSION):
        assert permission in table
        assert permission in (INFRA / "app/graph.bicep").read_text()
        assert permission in (INFRA / "scripts/grant-graph-permissions.sh").read_text()
    assert "Application.ReadWrite.All" not in (INFRA / "app/graph.bicep").read_text()


def test_the_graph_grant_is_off_by_default() -> None:
    main = parsed("main.bicep")
    assert main["parameters"]["grantGraphPermissions"]["default"] is False
    assert main["modules"]["graph"]["config"]["condition"] == "grantGraphPermissions"
    assert '"microsoftGraphV1"' in (INFRA / "bicepconfig.json").read_text()


def test_alerts_cover_rotation_failures_failing_health_and_poison_continuations() -> None:
    rules = {r["name"]: r for r in variable("app/alerts.bicep", "rules")}
    assert set(rules) == {"rotation-failed", "health-failing", "continuation-poison"}
    assert "RotationFailed" in rules["rotation-failed"]["query"]
    assert '"failing"' in rules["health-failing"]["query"]
    assert "-poison" in rules["continuation-poison"]["query"]
    (_, _, group), = resources("Microsoft.Insights/actionGroups")
    assert group["properties"]["emailReceivers"][0]["emailAddress"] == "alertEmail"


# -- 5. packaging hygiene --------------------------------------------------------------------------------


def _requirements(path: Path) -> dict[str, Requirement]:
    out: dict[str, Requirement] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip().rstrip("\\").strip()
        if line and not line.startswith(("-", "--")):
            req = Requirement(line)
            out[req.name.lower().replace("_", "-")] = req
    return out


def test_the_worker_runtime_is_pinned_to_the_version_the_tests_use() -> None:
    pinned = _requirements(ROOT / "requirements.txt")["azure-functions-runtime"]
    assert re.fullmatch(r"==\d+\.\d+\.\d+", str(pinned.specifier))
    assert str(pinned.specifier) == f"=={importlib.metadata.version('azure-functions-runtime')}"


def _top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_third_party_import_of_the_product_is_declared() -> None:
    declared = set(_requirements(ROOT / "requirements.txt"))
    providers = importlib.metadata.packages_distributions()
    imports: set[str] = set()
    for path in [ROOT / "function_app.py", *(ROOT / "shared").rglob("*.py")]:
        imports |= _top_level_imports(path)
    undeclared = {}
    for module in sorted(imports - set(sys.stdlib_module_names) - {"shared", "__future__"}):
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [])}
        assert dists, f"{module} is imported but not installed"
        if not dists & declared:
            undeclared[module] = sorted(dists)
    assert not undeclared, f"declare in requirements.txt: {undeclared}"


def test_the_lock_pins_every_requirement_with_hashes() -> None:
    lock_text = (ROOT / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", lock_text, re.MULTILINE))
    pins = {k.lower().replace("_", "-"): v for k, v in pins.items()}
    for name, req in _requirements(ROOT / "requirements.txt").items():
        assert name in pins, f"{name} is not in requirements.lock: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} violates {req}: make lock"
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock_text.split("\n\n", 1)[-1].strip())
    for entry in entries:
        if "==" in entry.splitlines()[0]:
            assert "--hash=sha256:" in entry, entry.splitlines()[0]


def test_the_staged_package_holds_the_app_and_the_lock_and_nothing_for_development(tmp_path: Path) -> None:
    out = tmp_path / "api"
    stage_package.stage(ROOT, out)
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert {"function_app.py", "host.json", "requirements.txt", "shared/config.py", "shared/__init__.py"} <= files
    assert (out / "requirements.txt").read_text() == (ROOT / "requirements.lock").read_text()
    forbidden = re.compile(r"(^|/)(tests|bench|docs|infra|node_modules|\.venv[^/]*|\.git|\.mypy_cache|"
                           r"\.ruff_cache|\.pytest_cache|__pycache__)/|\.md$|\.pyc$|^package(-lock)?\.json$|"
                           r"^requirements-dev\.txt$|^local\.settings.*\.json$|^Makefile$|^pyproject\.toml$")
    assert not [f for f in files if forbidden.search(f)]


@pytest.mark.parametrize("path", ["tests/test_x.py", ".mypy_cache/3.13/x.json", "shared/__pycache__/a.pyc",
                                  "node_modules/a/b.js", "package.json", "package-lock.json",
                                  "requirements-dev.txt", "bench/x.py", "docs/deploy.md", "README.md",
                                  ".ruff_cache/x", "infra/main.bicep", "local.settings.json", ".venv-checkov/x"])
def test_funcignore_excludes_what_a_dev_checkout_adds(path: str) -> None:
    assert stage_package.is_ignored(Path(path), stage_package.ignore_rules(ROOT))


def test_azure_yaml_deploys_the_staged_package_as_the_api_service() -> None:
    text = (ROOT / "azure.yaml").read_text()
    assert re.search(r"^  api:\n    project: \.\n    language: python\n    host: function\n", text, re.MULTILINE)
    assert "dist: .deploy/api" in text and "infra/scripts/stage_package.py" in text


def test_the_local_settings_sample_shows_every_setting_and_is_valid() -> None:
    from shared.config import load_settings

    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert "AzureWebJobsFeatureFlags" not in values
    local_only_exceptions = set(NOT_DEPLOYED) | {
        "AZURE_CLIENT_ID",  # no managed identity on a laptop: the developer credential chain signs in
        "AzureWebJobsStorage__blobServiceUri",  # Azurite's connection string (AzureWebJobsStorage) stands in
        "AzureWebJobsStorage__queueServiceUri",
    } - {"AzureWebJobsStorage"}
    missing = settings_the_code_reads() - set(values) - local_only_exceptions
    assert not missing, f"add to local.settings.sample.json: {sorted(missing)}"
    settings = load_settings(values)  # the example is a configuration the product accepts
    assert len(settings.targets) >= 2
    assert {t.mode.value for t in settings.targets} == {"service_principal", "managed_identity"}


# -- 6. the Entra admin's Graph script is idempotent (run against a stand-in `az` that keeps state) -------

FAKE_AZ = r'''
import re
out = ""
GRAPH_SP = "9a1b2c3d-0000-4000-8000-00000000000a"
ROLES = {"Application.ReadWrite.OwnedBy": "18a4783c-866b-4cc7-a460-3d5e5662c884",
         "Policy.Read.ApplicationConfiguration": "37730810-e9ba-4e46-b07e-8ca78d182097"}
if args[:2] == ["cloud", "show"]:
    out = "https://graph.microsoft.com/"
elif args[:3] == ["ad", "sp", "show"] and query == "id":
    out = GRAPH_SP if opt("--id") == "00000003-0000-0000-c000-000000000000" else "sp-of-" + opt("--id")
elif args[:1] == ["rest"] and "/owners" in opt("--uri"):
    sp = re.search(r"/servicePrincipals/([^/]+)/owners", opt("--uri")).group(1)
    owners = state["owners"].setdefault(sp, [])
    if opt("--method") == "GET":
        out = str(sum(1 for o in owners if o == re.search(r"id=='([^']+)'", query).group(1)))
    else:
        owners.append(json.loads(opt("--body"))["@odata.id"].rsplit("/", 1)[1])
elif args[:3] == ["ad", "sp", "show"]:
    out = ROLES.get(re.search(r"value=='([^']+)'", query).group(1), "")
elif args[:1] == ["rest"] and opt("--method") == "GET":
    role = re.search(r"appRoleId=='([^']+)'", query).group(1)
    out = str(sum(1 for a in state["assignments"] if a["appRoleId"] == role and a["resourceId"] == GRAPH_SP))
elif args[:1] == ["rest"] and opt("--method") == "POST":
    state["assignments"].append(json.loads(opt("--body")))
elif args[:4] == ["ad", "app", "owner", "list"]:
    owner = re.search(r"id=='([^']+)'", query).group(1)
    out = str(sum(1 for o in state["owners"].get(opt("--id"), []) if o == owner))
elif args[:4] == ["ad", "app", "owner", "add"]:
    state["owners"].setdefault(opt("--id"), []).append(opt("--owner-object-id"))
else:
    sys.exit("fake az: unexpected call " + " ".join(args))
json.dump(state, open(state_path, "w"))
print(out)
'''


def _run_grant_script(tmp_path: Path, *extra: str) -> tuple[str, dict[str, Any]]:
    env, state_path = install_fake_az(tmp_path, FAKE_AZ, {"calls": [], "assignments": [], "owners": {}})
    script = INFRA / "scripts/grant-graph-permissions.sh"
    done = subprocess.run([shutil.which("bash") or "/bin/bash", str(script), *extra],
                          capture_output=True, text=True, env={**env, "LANG": os.environ.get("LANG", "C")},
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(state_path.read_text())


def test_the_graph_grant_script_grants_once_and_then_changes_nothing(tmp_path: Path) -> None:
    identity, app = "4f0e2d1c-1111-4222-8333-944455556666", "2d4e6f80-1a3b-4c5d-8e9f-0a1b2c3d4e5f"
    args = ("--identity-object-id", identity, "--app-id", app)
    out, state = _run_grant_script(tmp_path, "--dry-run", *args)
    assert state["assignments"] == [] and all(not o for o in state["owners"].values()) and out.count("+ az") == 4
    out, state = _run_grant_script(tmp_path, *args)
    assert {a["appRoleId"] for a in state["assignments"]} == {"18a4783c-866b-4cc7-a460-3d5e5662c884",
                                                              "37730810-e9ba-4e46-b07e-8ca78d182097"}
    assert all(a["principalId"] == identity for a in state["assignments"])
    owners = {app: [identity], f"sp-of-{app}": [identity]}
    assert state["owners"] == owners
    calls_before = len(state["calls"])
    out, state = _run_grant_script(tmp_path, *args)
    assert "+ az" not in out and out.count("already") == 4
    assert len(state["assignments"]) == 2 and state["owners"] == owners
    writes = [c for c in state["calls"][calls_before:] if "POST" in c or c[:4] == ["ad", "app", "owner", "add"]]
    assert writes == []


# -- 7. README's map of the repository matches the tree --------------------------------------------------


def _readme_map() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## How it is built"):]
    block = section[section.index("```\n") + 4:]
    block = block[:block.index("```")]
    paths: list[str] = []
    top = ""
    for line in block.splitlines():
        match = re.match(r"^( *)(\S+)", line)
        if not match or len(match.group(1)) > 2:
            continue  # a continuation of the previous entry's description
        name = match.group(2)
        if match.group(1):
            paths.append(top + name)
        else:
            top = name if name.endswith("/") else ""
            paths.append(name)
    return paths


def test_every_entry_of_the_readme_map_exists() -> None:
    paths = _readme_map()
    assert len(paths) > 20
    missing = [p for p in paths if not (ROOT / p.rstrip("/")).exists()]
    assert not missing, f"README's map names what does not exist: {missing}"


def test_the_readme_map_lists_every_package_of_shared() -> None:
    listed = set(_readme_map())
    packages = {f"shared/{p.name}/" for p in (ROOT / "shared").iterdir() if (p / "__init__.py").is_file()}
    assert packages <= listed, f"add to README's map: {sorted(packages - listed)}"


# -- 8. what a Bicep compiler would catch first: module parameters and outputs ---------------------------


def _local_modules() -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(file, module name, module file relative to infra/, params) of every local module call."""
    for path in gate.bicep_files():
        relative = str(path.relative_to(INFRA))
        for name, module in (parsed(relative).get("modules") or {}).items():
            if module["type"] == "local":
                target = (path.parent / module["detail"]["path"]).resolve().relative_to(INFRA)
                yield relative, name, str(target), body(module).get("params") or {}


def test_local_modules_get_exactly_the_parameters_they_declare() -> None:
    calls = list(_local_modules())
    assert len(calls) >= 8
    for caller, name, target, params in calls:
        declared = parsed(target).get("parameters") or {}
        unknown = set(params) - set(declared)
        required = {p for p, d in declared.items() if d.get("default") is None}
        assert not unknown, f"{caller}: module {name} passes {sorted(unknown)}, which {target} does not declare"
        assert required <= set(params), f"{caller}: module {name} misses {sorted(required - set(params))}"


def test_outputs_read_from_local_modules_exist() -> None:
    for caller, name, target, _ in _local_modules():
        used = set(re.findall(rf"\b{name}(?:\[[^\]]*\])?\.outputs\.(\w+)", (INFRA / caller).read_text()))
        declared = set(parsed(target).get("outputs") or {})
        assert used <= declared, f"{caller}: {name}.outputs.{sorted(used - declared)} not declared in {target}"


# -- 9. the deploy guide: its shell is valid and every value it sets is one the templates read -----------


def _code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DEPLOY_DOC.read_text(), re.DOTALL)


def test_the_guides_bash_blocks_are_valid_shell() -> None:
    blocks = _code_blocks("bash")
    assert len(blocks) >= 6
    for block in blocks:
        # dedent the blocks nested in list items; `bash -n` parses without running anything
        text = "\n".join(line[3:] if line.startswith("   ") else line for line in block.splitlines())
        done = subprocess.run([shutil.which("bash") or "/bin/bash", "-n"], input=text, capture_output=True,
                              text=True, timeout=30, check=False)
        assert done.returncode == 0, (done.stderr, text[:200])


def test_every_value_the_guide_sets_is_read_by_the_templates() -> None:
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    read = {re.match(r"\$\{([A-Z_]+)", entry["value"]).group(1)  # type: ignore[union-attr]
            for entry in mapped.values()}
    azd_own = {"AZURE_LOCATION", "AZURE_SUBSCRIPTION_ID"}
    set_in_guide = set(re.findall(r"azd env set ([A-Z_]+)", DEPLOY_DOC.read_text()))
    assert set_in_guide and set_in_guide <= read | azd_own, set_in_guide - read - azd_own
    table = DEPLOY_DOC.read_text().split("## Settings", 1)[1]
    for name in read - {"AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_PRINCIPAL_ID", "AZURE_PRINCIPAL_TYPE",
                        "AZURE_RESOURCE_GROUP_NAME"}:
        assert f"`{name}`" in table, f"document {name} in docs/deploy.md 'Settings'"


# -- 10. the guide's bash runbook follows a 202 to the end (against a local stand-in of the API) ---------


class _StandInApi:
    """Answers like the Function: validate 200, reconcile 200, remediate 200, rotate 202 + Location, and the
    operation route `running` once, then `succeeded`. Every call needs the function key."""

    KEY = "stand-in-function-key"

    def __init__(self) -> None:
        import http.server
        import threading

        self.requests: list[str] = []
        self.polls = 0
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                api.requests.append(f"{self.command} {self.path}")
                if self.headers.get("x-functions-key") != api.KEY:
                    self._answer(401, {})
                elif self.path.endswith("/validate"):
                    self._answer(200, {"status": "failing", "findings": [{"code": "secret.expired"}]})
                elif self.path.endswith("/rotate"):
                    self._answer(202, {"operation": {"id": "op-1", "status": "running"}},
                                 {"Location": "/api/operations/op-1", "Retry-After": "0"})
                elif self.path == "/api/operations/op-1":
                    api.polls += 1
                    status = "running" if api.polls < 2 else "succeeded"
                    self._answer(200, {"id": "op-1", "status": status}, {"Retry-After": "0"})
                else:
                    self._answer(200, {"status": "done", "actions": []})

            do_GET = _route
            do_POST = _route

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.skipif(shutil.which("jq") is None or shutil.which("curl") is None, reason="the runbook uses curl and jq")
def test_the_guides_bash_runbook_follows_a_202_until_the_operation_is_done(tmp_path: Path) -> None:
    (runbook,) = [b for b in _code_blocks("bash") if "call()" in b]
    api = _StandInApi()
    try:
        assert 'base="https://func-remediator-xxxx.azurewebsites.net"' in runbook
        script = runbook.replace("https://func-remediator-xxxx.azurewebsites.net", api.url)
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        az = bin_dir / "az"
        az.write_text(f"#!/bin/sh\necho {api.KEY}\n")  # `az keyvault secret show ... -o tsv`
        az.chmod(0o755)
        env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(tmp_path),
               "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
        done = subprocess.run([shutil.which("bash") or "/bin/bash", "-c", script], capture_output=True, text=True,
                              env=env, timeout=60, check=False)
    finally:
        api.close()
    assert done.returncode == 0, done.stderr
    assert api.requests == ["POST /api/targets/hpc-prod/validate", "POST /api/targets/hpc-prod/roles/reconcile",
                            "POST /api/targets/hpc-prod/remediate", "POST /api/targets/hpc-prod/rotate",
                            "GET /api/operations/op-1", "GET /api/operations/op-1"]
    assert '"succeeded"' in done.stdout and '"secret.expired"' in done.stdout


FAKE_AZ_APPS = r'''
import re, uuid
apps, sps = state["apps"], state["sps"]
def app(app_id):
    return next(a for a in apps if a["appId"] == app_id)
out = ""
if args[:2] == ["cloud", "show"]:
    out = "https://graph.microsoft.com/"
elif args[:3] == ["ad", "app", "list"]:
    found = [a for a in apps if a["displayName"] == opt("--display-name")]
    out = found[0]["appId"] if found else ""
elif args[:3] == ["ad", "app", "create"]:
    apps.append({"appId": str(uuid.uuid4()), "id": str(uuid.uuid4()), "displayName": opt("--display-name"),
                 "identifierUris": [], "appRoles": []})
elif args[:3] == ["ad", "app", "show"]:
    a = app(opt("--id"))
    if query == "id":
        out = a["id"]
    elif query == "appRoles":
        out = json.dumps(a["appRoles"])
    elif query.startswith("identifierUris"):
        wanted = re.search(r"@=='([^']+)'", query).group(1)
        out = wanted if wanted in a["identifierUris"] else ""
    else:
        value = re.search(r"value=='([^']+)'", query).group(1)
        out = next((r["id"] for r in a["appRoles"] if r["value"] == value), "")
elif args[:3] == ["ad", "app", "update"]:
    app(opt("--id"))["identifierUris"] = [opt("--identifier-uris")]
elif args[:1] == ["rest"] and opt("--method") == "PATCH":
    target = next(a for a in apps if opt("--uri").endswith("/applications/" + a["id"]))
    target["appRoles"] = json.loads(opt("--body"))["appRoles"]
elif args[:3] == ["ad", "sp", "list"]:
    app_id = re.search(r"appId eq '([^']+)'", opt("--filter")).group(1)
    out = next((s["id"] for s in sps if s["appId"] == app_id), "")
elif args[:3] == ["ad", "sp", "create"]:
    sps.append({"id": str(uuid.uuid4()), "appId": opt("--id"), "required": False, "assigned": []})
elif args[:3] == ["ad", "sp", "show"]:
    out = "true" if next(s for s in sps if s["id"] == opt("--id"))["required"] else "false"
elif args[:3] == ["ad", "sp", "update"]:
    next(s for s in sps if s["id"] == opt("--id"))["required"] = True
elif args[:1] == ["rest"]:
    sp = next(s for s in sps if "/servicePrincipals/" + s["id"] + "/" in opt("--uri"))
    if opt("--method") == "GET":
        principal = re.search(r"principalId=='([^']+)'", query).group(1)
        role = re.search(r"appRoleId=='([^']+)'", query).group(1)
        out = str(sum(1 for a in sp["assigned"] if a["principalId"] == principal and a["appRoleId"] == role))
    else:
        sp["assigned"].append(json.loads(opt("--body")))
else:
    sys.exit("fake az: unexpected call " + " ".join(args))
json.dump(state, open(state_path, "w"))
print(out)
'''


def test_the_operator_app_script_creates_the_app_role_once(tmp_path: Path) -> None:
    env, state_path = install_fake_az(tmp_path, FAKE_AZ_APPS, {"calls": [], "apps": [], "sps": []})
    runbook_identity = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"

    def run() -> tuple[str, dict[str, Any]]:
        done = subprocess.run([shutil.which("bash") or "/bin/bash", str(INFRA / "scripts/create-operator-app.sh"),
                               "--operator", runbook_identity], capture_output=True, text=True, env=env,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout, json.loads(state_path.read_text())

    out, state = run()
    (app,) = state["apps"]
    (role,) = app["appRoles"]
    assert role["value"] == "CredentialRemediator.Operate"
    assert set(role["allowedMemberTypes"]) == {"Application", "User"}
    assert app["identifierUris"] == [f"api://{app['appId']}"]
    (sp,) = state["sps"]
    assert sp["required"] is True
    assert sp["assigned"] == [{"principalId": runbook_identity, "resourceId": sp["id"], "appRoleId": role["id"]}]
    assert f"AUTH_CLIENT_ID={app['appId']}" in out
    out, again = run()
    assert "+ az" not in out
    assert again["apps"] == state["apps"] and again["sps"] == state["sps"]
