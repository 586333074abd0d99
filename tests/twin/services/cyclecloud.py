"""Azure CycleCloud servers: HTTP Basic auth with CycleCloud's lockout rule, account records in the installer
JSON shape, and the account credential endpoint the product assumes (CycleCloud publishes none; see
docs/cyclecloud.md for the contract). Also the CycleCloud VM's side of ARM Run Command: the twin's ARM calls
`run_command_executor`, which applies `cyclecloud account show/edit` semantics to the same server state.

REST contract (all paths below the server's context path):
- `GET /`                                     unauthenticated landing page (reachability and TLS only)
- `GET {credential_path}`                     the account record, the secret masked to its 3-character hint
- `{credential_method} {credential_path}`     replace the account record; validates the credential against
                                              Entra ID first when the server validates on save
- `{credential_method} {credential_path}?dry_run=true`   validate only, change nothing (`account edit --dry-run`)
Errors answer `{"code": ..., "message": ...}`.

Misbehaving servers (switches on `CycleCloudServer`, loadable from the scenario): `ignores_dry_run` does not
know `?dry_run=true` (nor `--dry-run`) and applies the request as a real update, replacing the record with the
body as sent (PUT semantics: a body without the secret clears it); `masks_secret_fully` shows the secret as all
`*` (no hint); `ignores_updates` answers an update 200 with the masked record but applies nothing.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ..http import HttpError, Request, Response, Route, Router, json_response
from ..server import Service
from ..state import CycleCloudServer, CycleCloudUser, State, VirtualMachine
from .entra import client_secret_problem

if TYPE_CHECKING:
    from ..server import Twin

LOCKOUT_FAILURES = 5
LOCKOUT_WINDOW = timedelta(seconds=60)
LOCKOUT_DURATION = timedelta(minutes=5)
SECRET_FIELD = "AzureRMApplicationSecret"
MASK_TAIL = "*" * 8
FULL_MASK = "*" * 11
STORAGE_READ = "Microsoft.Storage/storageAccounts/read"
AUTH_MODES = ("managed_identity", "service_principal")


def masked(record: dict[str, Any], *, fully: bool = False) -> dict[str, Any]:
    """The record as the server shows it: the secret reduced to its 3-character hint plus a mask, or (a server
    that masks fully) to `*` only."""
    out = copy.deepcopy(record)
    secret = str(out.get(SECRET_FIELD) or "")
    if not secret.strip():
        out[SECRET_FIELD] = ""
    else:
        out[SECRET_FIELD] = FULL_MASK if fully else secret[:3] + MASK_TAIL
    return out


def validation_error(state: State, record: dict[str, Any], vm: VirtualMachine | None = None) -> str | None:
    """What CycleCloud's "Validate" says about the record's credential, or None when it is good.

    Mirrors the messages of the support articles: `Invalid Azure credentials provided: AADSTS...` for a token
    refusal, and the authorization error when the principal cannot read storage accounts. Never echoes the secret.
    A managed-identity account is validated against `vm` (the CycleCloud VM): its system-assigned identity must
    be on and hold its roles effectively (role propagation included); without a VM the twin cannot tell.
    """
    if record.get("AzureRMUseManagedIdentity") is True:
        return managed_identity_error(state, record, vm)
    tenant_id = str(record.get("AzureRMTenantId") or "").lower()
    app_id = str(record.get("AzureRMApplicationId") or "").lower()
    secret = str(record.get(SECRET_FIELD) or "")
    prefix = "Invalid Azure credentials provided: "
    with state.lock:
        tenant = state.tenants.get(tenant_id)
        if tenant is None:
            return (f"{prefix}AADSTS90002: Tenant '{tenant_id}' not found. Check to make sure you have the correct "
                    "tenant ID and are signing into the correct cloud.")
        app = state.app_by_app_id(app_id, tenant_id)
        if app is None:
            return (f"{prefix}AADSTS700016: Application with identifier '{app_id}' was not found in the directory "
                    f"'{tenant.domain}'.")
        problem = client_secret_problem(state, app, secret)
        if problem is not None:
            return f"{prefix}AADSTS{problem[0]}: {problem[1]}"
        sp = state.service_principal_of(app_id, tenant_id)
        subscription = str(record.get("AzureRMSubscriptionId") or "").lower()
        scope = f"/subscriptions/{subscription}"
        if sp is None or not state.is_allowed(sp.object_id, STORAGE_READ, scope):
            object_id = sp.object_id if sp else "unknown"
            return (f"{prefix}The client '{app_id}' with object id '{object_id}' does not have authorization to "
                    f"perform action '{STORAGE_READ}' over scope '{scope}' or the scope is invalid. If access was "
                    "recently granted, please refresh your credentials.")
    return None


def managed_identity_error(state: State, record: dict[str, Any], vm: VirtualMachine | None) -> str | None:
    if vm is None:
        return None
    prefix = "Invalid Azure credentials provided: "
    subscription = str(record.get("AzureRMSubscriptionId") or "").lower()
    scope = f"/subscriptions/{subscription}"
    with state.lock:
        principal = vm.identity_principal_id
        if principal is None:
            return (f"{prefix}ManagedIdentityCredential authentication unavailable. No identity has been assigned "
                    "to this resource.")
        if not state.is_allowed(principal, STORAGE_READ, scope):
            return (f"{prefix}The client '{principal}' with object id '{principal}' does not have authorization to "
                    f"perform action '{STORAGE_READ}' over scope '{scope}' or the scope is invalid. If access was "
                    "recently granted, please refresh your credentials.")
    return None


def definition_error(record: Any, account: str, *, secret_required: bool) -> str | None:
    """Shape checks on an account definition (what `account edit -f` rejects before validating)."""
    if not isinstance(record, dict):
        return "The account definition must be a JSON object."
    if record.get("Name", account) != account:
        return f"The definition names account '{record.get('Name')}', not '{account}'."
    for key in ("AzureRMTenantId", "AzureRMSubscriptionId"):
        if not record.get(key):
            return f"The definition has no {key}."
    if record.get("AzureRMUseManagedIdentity") is not True:
        if not record.get("AzureRMApplicationId"):
            return "The definition has no AzureRMApplicationId."
        secret = record.get(SECRET_FIELD)
        if secret_required and not secret:
            return f"The definition has no {SECRET_FIELD}."
        if isinstance(secret, str) and secret.endswith(MASK_TAIL):
            return f"{SECRET_FIELD} is the masked value the server shows, not a secret."
    return None


class _CycleCloudRouter(Router):
    """Routes depend on each server's context path and configured credential endpoint, so they are matched
    per request rather than registered up front."""

    def __init__(self, service: CycleCloudService) -> None:
        super().__init__()
        self.service = service

    def match(self, request: Request) -> tuple[Route, dict[str, str]] | None:
        server = self.service.state.cyclecloud_servers.get(request.host)
        if server is None:
            return None
        context = server.context_path.rstrip("/")
        if context and not (request.path == context or request.path.startswith(context + "/")):
            return None
        path = request.path[len(context):] or "/"
        s = self.service
        if path == "/" and request.method == "GET":
            return Route("GET", re.compile(""), "home", s.home), {}
        # the account segment is matched still quoted (as a servlet container does), so `%2F` stays inside it
        raw = re.sub(r"/{2,}", "/", urlsplit(request.raw_path).path).rstrip("/")[len(context):]
        template = re.escape(server.credential_path).replace(re.escape("{account}"), "(?P<account>[^/]+)")
        m = re.fullmatch(template, raw, re.IGNORECASE)
        if m is None:
            return None
        params = {"account": unquote(m.group("account"))}
        if request.method == "GET":
            return Route("GET", re.compile(""), "getAccount", s.get_account), params
        if request.method == server.credential_method.upper():
            if request.query.get("dry_run", "").lower() == "true" and not server.ignores_dry_run:
                return Route(request.method, re.compile(""), "validateAccount", s.validate_account), params
            return Route(request.method, re.compile(""), "updateAccount", s.update_account), params
        return Route(request.method, re.compile(""), "methodNotAllowed", s.method_not_allowed), params


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> HttpError:
    return HttpError(json_response(status, {"code": code, "message": message}, headers))


class CycleCloudService(Service):
    name = "cyclecloud"

    def __init__(self, twin: Twin) -> None:
        super().__init__(twin)
        self.router = _CycleCloudRouter(self)
        twin.run_command_executor = self.run_command

    def serves(self, host: str) -> bool:
        return host in self.state.cyclecloud_servers

    def register(self, router: Router) -> None:
        pass  # see _CycleCloudRouter

    # -- helpers --------------------------------------------------------------------------------------------

    def _server(self, request: Request) -> CycleCloudServer:
        return self.state.cyclecloud_servers[request.host]

    def _authenticate(self, server: CycleCloudServer, request: Request) -> CycleCloudUser:
        """HTTP Basic, with CycleCloud's rule: 5 failed logins within 60 s lock the user for 5 minutes."""
        challenge = {"WWW-Authenticate": 'Basic realm="CycleCloud"'}
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("basic "):
            raise _error(401, "Unauthorized", "Authentication required.", challenge)
        try:
            name, _, password = base64.b64decode(auth[6:].strip()).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise _error(401, "Unauthorized", "Authentication required.", challenge) from None
        now = self.state.now()
        with self.state.lock:
            user = server.users.get(name)
            if user is not None and user.locked_until is not None and now < user.locked_until:
                minutes = max(1, round((user.locked_until - now).total_seconds() / 60))
                raise _error(403, "UserLocked", f"The user '{name}' is locked because of too many failed login "
                                                f"attempts. Try again in {minutes} minute(s).")
            if user is None or user.password != password:
                if user is not None:
                    user.failures = [t for t in user.failures if now - t < LOCKOUT_WINDOW] + [now]
                    if len(user.failures) >= LOCKOUT_FAILURES:
                        user.locked_until = now + LOCKOUT_DURATION
                        user.failures = []
                raise _error(401, "Unauthorized", "Invalid username or password.", challenge)
            return user

    def _vm_of(self, server: CycleCloudServer) -> VirtualMachine | None:
        with self.state.lock:
            return next((vm for vm in self.state.virtual_machines.values()
                         if (vm.cyclecloud_host or "").lower() == server.host.lower()), None)

    def _account(self, server: CycleCloudServer, request: Request) -> dict[str, Any]:
        name = request.params["account"]
        record = server.accounts.get(name)
        if record is None:
            raise _error(404, "NotFound", f"Account not found: {name}")
        return record

    # -- routes ---------------------------------------------------------------------------------------------

    def home(self, request: Request) -> Response:
        return Response(200, b"<html><title>Azure CycleCloud</title></html>", {"Content-Type": "text/html"})

    def get_account(self, request: Request) -> Response:
        server = self._server(request)
        self._authenticate(server, request)
        with self.state.lock:
            return json_response(200, masked(self._account(server, request), fully=server.masks_secret_fully))

    def method_not_allowed(self, request: Request) -> Response:
        server = self._server(request)
        self._authenticate(server, request)
        raise _error(405, "MethodNotAllowed", f"{request.method} is not supported here.")

    def _checked_update(self, request: Request, *, dry_run: bool) -> tuple[CycleCloudServer, dict[str, Any]]:
        server = self._server(request)
        user = self._authenticate(server, request)
        if not user.superuser:
            raise _error(403, "Forbidden", f"The user '{user.name}' may not edit accounts (Superuser required).")
        with self.state.lock:
            current = self._account(server, request)
            account = request.params["account"]
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            raise _error(400, "BadRequest", "The request body is not valid JSON.") from None
        problem = definition_error(body, account, secret_required=not dry_run)
        if problem:
            raise _error(400, "BadRequest", problem)
        merged = {**current, **body}
        if SECRET_FIELD not in body:  # a dry run without a secret checks the path and shape only
            return server, merged
        if server.validates_on_save:
            message = validation_error(self.state, merged, self._vm_of(server))
            if message:
                raise _error(400, "InvalidCredentials", message)
        return server, merged

    def validate_account(self, request: Request) -> Response:
        self._checked_update(request, dry_run=True)
        return json_response(200, {"dryRun": True, "valid": True, "message": "Validation succeeded; nothing changed."})

    def update_account(self, request: Request) -> Response:
        server = self._server(request)
        if server.ignores_dry_run and request.query.get("dry_run", "").lower() == "true":
            return self._replace_account(request)
        server, merged = self._checked_update(request, dry_run=False)
        with self.state.lock:
            if not server.ignores_updates:
                server.accounts[request.params["account"]] = merged
            return json_response(200, masked(merged, fully=server.masks_secret_fully))

    def _replace_account(self, request: Request) -> Response:
        """A server that ignores `?dry_run=true`: the body replaces the record as sent, secret or not."""
        server, _ = self._checked_update(request, dry_run=True)
        body = request.json()
        replaced = {**body, "Name": request.params["account"]}
        replaced.setdefault(SECRET_FIELD, "")
        with self.state.lock:
            if not server.ignores_updates:
                server.accounts[request.params["account"]] = replaced
            return json_response(200, masked(replaced, fully=server.masks_secret_fully))

    # -- ARM Run Command on the CycleCloud VM ----------------------------------------------------------------

    def run_command(self, vm: VirtualMachine, script: list[str], parameters: Any,
                    protected_parameters: Any) -> tuple[int, str, str]:
        """Interpret the product's Run Command script with `cyclecloud account show/edit` semantics.

        The script contract (shared/adapters/cyclecloud/runcommand.py): `CC_ACCOUNT` names the account, the new
        secret arrives only in the protected parameter `CC_NEW_SECRET`; the script prints `CCR-ACCOUNT <json>`
        (the allow-listed fields, secret masked) and `CCR-RESULT <word>`; exit 3 = account missing, 5 = edit
        rejected. The twin also checks the hygiene the script promises (see `script_hygiene_problem`) and
        fails loudly (exit 90) when it is broken.
        """
        plain, protected = _as_dict(parameters), _as_dict(protected_parameters)
        text = "\n".join(script)
        for value in protected.values():
            if value and (value in text or any(value in v for v in plain.values())):
                return 90, "", "twin: a protected parameter value appears in the script or a plain parameter"
        show = re.search(r'cyclecloud account show "\$CC_ACCOUNT" -o "\$work/account\.json"', text)
        dry_run = re.search(r'cyclecloud account edit "\$CC_ACCOUNT" --dry-run -f "\$work/account\.json"', text)
        edit = re.search(r'cyclecloud account edit "\$CC_ACCOUNT" -f "\$work/account\.json"', text)
        if not show:
            return 91, "", "twin: the script does not run `cyclecloud account show` the way the contract says"
        problem = script_hygiene_problem(text)
        if problem:
            return 90, "", f"twin: {problem}"
        allowed = _allowed_fields(text) or []
        # an authentication-mode switch (migration to the VM's managed identity, or its rollback): CC_AUTH_MODE
        mode = plain.get("CC_AUTH_MODE")
        if mode is not None and (mode not in AUTH_MODES or "CC_AUTH_MODE" not in text):
            return 90, "", "twin: CC_AUTH_MODE must be managed_identity or service_principal and used by the script"
        needs_secret = mode != "managed_identity"
        if edit and needs_secret and ("CC_NEW_SECRET" not in text or "CC_NEW_SECRET" not in protected):
            return 90, "", "twin: the new secret must come from the protected parameter CC_NEW_SECRET"
        if mode == "service_principal" and not plain.get("CC_APP_ID"):
            return 90, "", "twin: a switch back to a service principal needs CC_APP_ID"
        host = (vm.cyclecloud_host or "").lower()
        server = self.state.cyclecloud_servers.get(host)
        if server is None:
            return 127, "", "/bin/bash: line 7: cyclecloud: command not found"
        account = plain.get("CC_ACCOUNT", "")
        with self.state.lock:
            current = server.accounts.get(account)
            if current is None:
                return 3, "CCR-RESULT account-missing\n", f"Account not found: {account}\n"
            record = dict(current)
        if dry_run or edit:
            if edit and mode == "managed_identity":
                record.update({"AzureRMUseManagedIdentity": True, "AzureRMApplicationId": "", SECRET_FIELD: ""})
            elif edit:
                record["AzureRMApplicationSecret"] = protected["CC_NEW_SECRET"]
                if mode == "service_principal":
                    record.update({"AzureRMUseManagedIdentity": False, "AzureRMApplicationId": plain["CC_APP_ID"]})
            message = validation_error(self.state, record, vm) if server.validates_on_save else None
            if message:
                return 5, "CCR-RESULT edit-rejected\n", f"Error: {message}\n"
            if dry_run and not server.ignores_dry_run:
                return 0, "CCR-RESULT dry-run-ok\n", ""
            if not server.ignores_updates:
                with self.state.lock:
                    server.accounts[account] = record
        result = "edited" if edit else "shown"
        full = masked(record, fully=server.masks_secret_fully)
        shown = {key: full[key] for key in allowed if key in full} | {SECRET_FIELD: full.get(SECRET_FIELD, "")}
        return 0, f"CCR-ACCOUNT {json.dumps(shown)}\nCCR-RESULT {result}\n", ""


_CLI_CALL = re.compile(r"^(?!\s*#).*\bcyclecloud account\b.*$", re.MULTILINE)
_BOUNDED_CLI_CALL = re.compile(r"\btimeout (?:--kill-after=\d+ )?\d+ cyclecloud account\b")
_STALE_CLEANUP = re.compile(r"""find "\$base" -maxdepth 1 -type d -name '(?P<prefix>[^'*]+)\*' -mmin \+\d+""")
_COPIES_CLI_OUTPUT = re.compile(r"\b(?:cat|head|tail|tee|less|more)\b[^\n]*\$work/\w+\.txt")
_ALLOW_LIST = re.compile(r"^allowed = (\[.*\])$", re.MULTILINE)


def script_hygiene_problem(text: str) -> str | None:
    """What the Run Command script promises about the secret file, the CLI and the output; None when kept."""
    if not ("umask 077" in text and "shred -u" in text):
        return "the script writes the account file without umask 077 / shred -u"
    if "base=/dev/shm" not in text or 'mktemp -d "$base/' not in text:
        return "the account file is not kept in memory-backed storage (/dev/shm)"
    cleanup = _STALE_CLEANUP.search(text)
    if cleanup is None or f'mktemp -d "$base/{cleanup.group("prefix")}' not in text:
        return "the script does not clean up stale work directories of killed runs (its own prefix, by age)"
    unbounded = [line.strip() for line in _CLI_CALL.findall(text) if not _BOUNDED_CLI_CALL.search(line)]
    if unbounded:
        return f"a CLI call is not bounded by `timeout`: {unbounded[0][:80]}"
    if _COPIES_CLI_OUTPUT.search(text):
        return "the script copies the CLI's output (which may hold the secret) into the instance view"
    if "CCR-ACCOUNT" in text and _allowed_fields(text) is None:
        return "the account is not printed through an allow-list of fields"
    return None


def _allowed_fields(text: str) -> list[str] | None:
    found = _ALLOW_LIST.search(text)
    if found is None:
        return None
    try:
        fields = json.loads(found.group(1))
    except ValueError:
        return None
    if not isinstance(fields, list) or SECRET_FIELD in fields:
        return None
    return [str(f) for f in fields]


def _as_dict(value: Any) -> dict[str, str]:
    """Run Command parameters arrive as a dict or as ARM's list of {name, value}."""
    if not value:
        return {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    return {str(item["name"]): str(item.get("value", "")) for item in value}
