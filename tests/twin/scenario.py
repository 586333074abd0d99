"""Load a JSON scenario into the twin. The format is documented in docs/twin.md.

Times are ISO 8601 or relative to the twin's clock: "now", "now+30d", "now-1h", "now+90s".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .faults import Fault
from .services.arm_versions import ACCEPTED
from .state import (
    ActivityLogEvent,
    Application,
    CycleCloudServer,
    CycleCloudUser,
    DenyAssignment,
    FederatedCredential,
    PasswordCredential,
    PolicyAssignment,
    Principal,
    RoleAssignment,
    RoleDefinition,
    SecretVersion,
    State,
    Subscription,
    Tenant,
    Vault,
    VaultSecret,
    VirtualMachine,
    hash_secret,
    new_guid,
    parse_time,
)

if TYPE_CHECKING:
    from .server import Twin


def load_scenario(twin: Twin, source: dict[str, Any] | str | Path) -> None:
    scenario: dict[str, Any] = (
        source if isinstance(source, dict) else json.loads(Path(source).read_text(encoding="utf-8"))
    )
    state = twin.state
    now = state.now()
    t = lambda v: parse_time(v, now)  # noqa: E731 - tiny local alias keeps the table below readable

    with state.lock:
        prop = scenario.get("propagation", {})
        state.propagation.new_secret_seconds = float(prop.get("new_secret_seconds", 0))
        state.propagation.role_assignment_seconds = float(prop.get("role_assignment_seconds", 0))
        state.propagation.principal_replication_seconds = float(prop.get("principal_replication_seconds", 0))
        state.propagation.principal_not_found_seconds = float(prop.get("principal_not_found_seconds", 0))
        state.propagation.graph_stale_read_seconds = float(prop.get("graph_stale_read_seconds", 0))
        load_switches(state, scenario)
        twin.throttle.configure(scenario.get("throttling", True))

        for raw in scenario.get("tenants", []):
            tenant = Tenant(raw["id"].lower(), raw.get("domain", f"{raw['id'][:8]}.onmicrosoft.com"))
            policy = raw.get("default_app_management_policy") or {}
            unknown = set(policy) - {"enabled", "max_password_lifetime_days", "password_addition_blocked"}
            if unknown:
                raise ValueError(f"scenario tenants[].default_app_management_policy: unknown fields {sorted(unknown)}")
            tenant.default_policy_enabled = bool(policy.get("enabled", False))
            tenant.default_max_password_lifetime_days = policy.get("max_password_lifetime_days")
            tenant.default_password_addition_blocked = bool(policy.get("password_addition_blocked", False))
            state.tenants[tenant.id] = tenant

        for raw in scenario.get("applications", []):
            app = Application(
                object_id=raw.get("object_id", new_guid()).lower(),
                app_id=raw["app_id"].lower(),
                tenant_id=raw["tenant_id"].lower(),
                display_name=raw.get("display_name", "cyclecloud"),
                owners={o.lower() for o in raw.get("owners", [])},
                max_password_lifetime_days=raw.get("max_password_lifetime_days"),
                password_addition_blocked=raw.get("password_addition_blocked", False),
                sign_in_audience=raw.get("sign_in_audience", "AzureADMyOrg"),
                federated_credentials=[FederatedCredential(f.get("name", "fic"), f["issuer"], f["subject"].lower(),
                                                           f.get("audiences", ["api://AzureADTokenExchange"]))
                                       for f in raw.get("federated_credentials", [])],
            )
            for cred in raw.get("password_credentials", []):
                secret = cred["secret"]
                start = t(cred.get("start", "now-30d"))
                assert start is not None
                app.password_credentials.append(PasswordCredential(
                    key_id=cred.get("key_id", new_guid()).lower(),
                    secret_hash=hash_secret(secret),
                    hint=secret[:3],
                    display_name=cred.get("display_name"),
                    start=start,
                    end=t(cred.get("end", "now+365d")),  # type: ignore[arg-type]
                    created_at=t(cred.get("created", cred.get("start", "now-30d"))),  # type: ignore[arg-type]
                ))
            state.applications[app.object_id] = app
            sp = raw.get("service_principal", {})
            if sp is not None:
                principal = Principal(
                    object_id=sp.get("object_id", new_guid()).lower(), tenant_id=app.tenant_id,
                    kind="ServicePrincipal", display_name=app.display_name, app_id=app.app_id,
                    created_at=t(sp["created"]) if "created" in sp else None,
                )
                state.principals[principal.object_id] = principal

        for raw in scenario.get("principals", []):
            principal = Principal(
                object_id=raw["object_id"].lower(), tenant_id=raw["tenant_id"].lower(),
                kind=raw.get("kind", "ServicePrincipal"), display_name=raw.get("display_name", "principal"),
                app_id=(raw.get("app_id") or new_guid()).lower(),
                graph_app_roles=set(raw.get("graph_app_roles", [])),
                created_at=t(raw["created"]) if "created" in raw else None,
            )
            state.principals[principal.object_id] = principal
            if raw.get("function_identity"):
                state.function_identity = principal.object_id
            if raw.get("user_assigned"):
                state.user_assigned_identities[principal.app_id] = principal.object_id  # type: ignore[index]

        for raw in scenario.get("subscriptions", []):
            sub = Subscription(raw["id"].lower(), raw["tenant_id"].lower(), raw.get("display_name", "HPC"),
                               raw.get("state", "Enabled"))
            state.subscriptions[sub.id] = sub

        for raw in scenario.get("role_definitions", []):
            role = RoleDefinition(
                id=raw.get("id", new_guid()).lower(), name=raw["name"], actions=raw.get("actions", []),
                not_actions=raw.get("not_actions", []), data_actions=raw.get("data_actions", []),
                not_data_actions=raw.get("not_data_actions", []), role_type="CustomRole",
                description=raw.get("description", ""), assignable_scopes=raw.get("assignable_scopes", ["/"]),
            )
            state.role_definitions[role.id] = role

        for raw in scenario.get("role_assignments", []):
            assigned = state.role_by_name_or_id(raw["role"])
            if assigned is None:
                raise ValueError(f"scenario role_assignments: unknown role {raw['role']!r}")
            ra = RoleAssignment(
                name=raw.get("name", new_guid()).lower(), scope=raw["scope"], role_definition_id=assigned.id,
                principal_id=raw["principal_id"].lower(), principal_type=raw.get("principal_type", "ServicePrincipal"),
                description=raw.get("description"), created_at=t(raw["created"]) if "created" in raw else None,
            )
            state.role_assignments[ra.name] = ra

        for raw in scenario.get("deny_assignments", []):
            state.deny_assignments.append(DenyAssignment(
                name=raw.get("name", new_guid()), scope=raw["scope"], actions=raw["actions"],
                not_actions=raw.get("not_actions", []), principal_ids=[p.lower() for p in raw.get("principal_ids", [])],
                exclude_principal_ids=[p.lower() for p in raw.get("exclude_principal_ids", [])],
            ))

        for raw in scenario.get("policy_assignments", []):
            roles = []
            for r in raw.get("denied_roles", []):
                denied = state.role_by_name_or_id(r)
                roles.append(denied.id if denied else r.lower())
            state.policy_assignments.append(PolicyAssignment(
                name=raw.get("name", "deny-role-assignments"), scope=raw["scope"],
                display_name=raw.get("display_name", "Deny role assignments"),
                definition_name=raw.get("definition_name", "deny-role-assignments"),
                denied_role_definition_ids=roles, denied_principal_types=raw.get("denied_principal_types", []),
            ))

        for raw in scenario.get("activity_log", []):
            state.activity_log.append(ActivityLogEvent(
                subscription_id=raw["subscription_id"].lower(), caller=raw["caller"].lower(),
                operation_name=raw["operation_name"], resource_id=raw["resource_id"],
                status=raw.get("status", "Failed"), message=raw.get("message", ""),
                timestamp=t(raw.get("timestamp", "now-1h")),  # type: ignore[arg-type]
            ))

        for raw in scenario.get("virtual_machines", []):
            identity = raw.get("identity")
            vm = VirtualMachine(
                id=raw["id"], location=raw.get("location", "eastus"),
                identity_principal_id=identity["principal_id"].lower() if identity else None,
                identity_tenant_id=identity["tenant_id"].lower() if identity else None,
                cyclecloud_host=raw.get("cyclecloud_host"),
                user_assigned_identities=list(raw.get("user_assigned_identities", [])),
            )
            state.virtual_machines[vm.id.lower()] = vm
            if identity and identity["principal_id"].lower() not in state.principals:
                state.principals[identity["principal_id"].lower()] = Principal(
                    object_id=identity["principal_id"].lower(), tenant_id=identity["tenant_id"].lower(),
                    kind="ServicePrincipal", display_name=vm.name, app_id=new_guid(),
                )

        for raw in scenario.get("vaults", []):
            vault = Vault(raw["name"], raw["tenant_id"].lower(), raw.get("resource_id", ""))
            for name, versions in raw.get("secrets", {}).items():
                secret = VaultSecret(name)
                for i, v in enumerate(versions):
                    created = t(v.get("created", f"now-{len(versions) - i}d"))
                    assert created is not None
                    secret.versions.append(SecretVersion(
                        version=v.get("version", new_guid().replace("-", "")), value=v["value"],
                        content_type=v.get("content_type"), tags=dict(v.get("tags", {})),
                        enabled=v.get("enabled", True), not_before=t(v.get("not_before")),
                        expires=t(v.get("expires")), created=created, updated=created,
                    ))
                if raw.get("deleted", {}).get(name):
                    secret.deleted_at = now
                vault.secrets[name] = secret
            for name in raw.get("deleted_secrets", []):
                vault.secrets.setdefault(name, VaultSecret(name)).deleted_at = now
            state.vaults[vault.host] = vault

        for raw in scenario.get("cyclecloud_servers", []):
            server = CycleCloudServer(
                host=raw["host"].lower(), port=raw.get("port", 443), context_path=raw.get("context_path", ""),
                validates_on_save=raw.get("validates_on_save", True),
                credential_path=raw.get("credential_path", "/cloud/accounts/{account}"),
                credential_method=raw.get("credential_method", "PUT"),
                ignores_dry_run=raw.get("ignores_dry_run", False),
                masks_secret_fully=raw.get("masks_secret_fully", False),
                ignores_updates=raw.get("ignores_updates", False),
            )
            for u in raw.get("users", []):
                server.users[u["name"]] = CycleCloudUser(u["name"], u["password"], u.get("superuser", True))
            for account in raw.get("accounts", []):
                server.accounts[account["Name"]] = dict(account)
            state.cyclecloud_servers[server.host] = server
            if raw.get("unreachable"):
                twin.unreachable_hosts.add(server.host)

    for raw in scenario.get("faults", []):
        twin.faults.add(Fault(**raw))
    twin.forget_certificates()


def load_switches(state: State, scenario: dict[str, Any]) -> None:
    """The realistic behaviours a scenario turns on (tests/twin/switches.py); a section present replaces it."""
    paging = scenario.get("paging", {})
    if "activity_log_page_size" in paging:
        size = int(paging["activity_log_page_size"])
        if size < 1:
            raise ValueError("scenario paging.activity_log_page_size must be at least 1")
        state.switches.activity_log_page_size = size
    if "arm_api_versions" in scenario:
        versions = scenario["arm_api_versions"]
        unknown = sorted(set(versions) - set(ACCEPTED))
        if unknown:
            raise ValueError(f"scenario arm_api_versions: unknown ARM operations {unknown}")
        state.switches.arm_api_versions = {op: [str(v) for v in vs] for op, vs in versions.items()}
    if "secret_delete_seconds" in scenario.get("propagation", {}):
        state.switches.secret_delete_seconds = float(scenario["propagation"]["secret_delete_seconds"])


def minimal_scenario() -> dict[str, Any]:
    """An empty tenant with the Function's identity, for tests that build the rest themselves."""
    return {"tenants": [], "principals": []}
