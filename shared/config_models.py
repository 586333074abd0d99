"""The configuration as pydantic models: what a target (`TARGETS`, `TARGETS_FILE`) and the app settings may hold,
each field with its type, default and description, and the rules between fields as validators. The same models
give the JSON Schema of `TARGETS_FILE` (docs/targets.schema.json: `python -m shared.config_models` prints it).

Imported by `shared.config.load_settings` only, never while the Function app is indexed. Every problem is listed at
once as `setting: what is wrong; how to fix it`: a validator raises its own sentence (`_problem`), pydantic's own
errors (a missing field, a wrong type) take theirs from the field's `Explain`. A value that may be a secret (a
client secret pasted where a Key Vault secret *name* belongs, a webhook URL) is described, never echoed; pydantic's
own rendering of an error, which quotes the input, is never shown.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AnyUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    TypeAdapter,
    UrlConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError, PydanticUseDefault

from .clouds import CLOUDS
from .config import (
    CONTRIBUTOR_ROLE_ID,
    DEFAULT_CONTINUATION_QUEUE,
    DEFAULT_CREDENTIAL_PATH,
    DEFAULT_HEALTH_SCHEDULE,
    DEFAULT_HTTP_BUDGET_SECONDS,
    DEFAULT_ROTATION_SCHEDULE,
    DEFAULT_STATE_CONTAINER,
    HOME_IDENTITY,
    OPERATE_ROLE,
    PRIVILEGED_BUILTIN_ROLES,
    TARGET_NAME_PATTERN,
    CycleCloudConnection,
    Mode,
    RotationPolicy,
    Settings,
    StorageSettings,
    Target,
    Transport,
    is_guid,
)
from .errors import ConfigError
from .redaction import register_secret

_SLUG = re.compile(TARGET_NAME_PATTERN)
_VAULT_SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
_VM_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Compute/virtualMachines/[^/]+$", re.IGNORECASE
)
_NCRONTAB_FIELDS = 6
# Entra client secrets carry `~` (e.g. `Abc8Q~...`) and are 34-40 characters long: pasted into a secret *name*
# setting they must be described, never echoed
_CLIENT_SECRET_SHAPE = re.compile(r"^[0-9A-Za-z._~-]{3}\dQ~[0-9A-Za-z._~-]{30,}$")
# a CycleCloud account name goes into a URL path and a CLI argument: no separators, traversal or options
_ACCOUNT_FORBIDDEN = re.compile(r"[/?#\\%]|\.\.|[\x00-\x1f\x7f]")
# keys a person may use to put a secret itself into a target: refused as such, not as unknown keys
_SECRET_LIKE_KEYS = {"secret", "client_secret", "password", "secret_value", "value"}
NOTIFY_FORMATS = ("teams", "slack")

_TRUE_WORDS = {"1", "true", "yes", "on"}
_FALSE_WORDS = {"0", "false", "no", "off"}
_GUID_FIX = {
    "tenant_id": "use the Directory (tenant) ID from the app registration's Overview page",
    "app_id": "use the Application (client) ID from the app registration's Overview page",
    "subscription_ids": "use the Subscription ID from the subscription's Overview page",
}
_BOOL_FIX = "use true or false"
_VM_FIX = "copy the Resource ID from the CycleCloud VM's Properties page"
_ACCOUNT_FIX = "use the account name shown under Configure > Cloud Provider Accounts in CycleCloud (often 'azure')"


# -- how problems read --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Explain:
    """How pydantic's own errors about a field read: `<value> is not <noun>; <fix>`, or `<missing>; <fix>` when
    it is absent, or `must be an object; <fix>` for a nested model given something else."""

    noun: str
    fix: str
    missing: str = "is missing"


def _problem(what: str, fix: str, *, setting: str | None = None, sibling: str | None = None) -> PydanticCustomError:
    """A problem in the product's own words. `sibling` names the field it is reported on when a rule between two
    fields is checked on the other one; `setting` replaces the whole location (problems between targets)."""
    context = {"what": what, "fix": fix}
    if setting:
        context["setting"] = setting
    if sibling:
        context["sibling"] = sibling
    return PydanticCustomError("config", "{what}; {fix}", context)


def _missing() -> PydanticCustomError:
    return PydanticCustomError("config_missing", "is missing")


def _invalid() -> PydanticCustomError:
    return PydanticCustomError("config_invalid", "is not valid")


def _fields_by_key(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return {info.alias or name: info for name, info in model.model_fields.items()}


def _locate(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[type[BaseModel], Explain | None]:
    """The model a location points into, and the `Explain` of the last field it names."""
    explain: Explain | None = None
    for part in loc:
        if isinstance(part, int):
            continue
        info = _fields_by_key(model).get(part)
        if info is None:
            break
        explain = next((m for m in info.metadata if isinstance(m, Explain)), None)
        nested = _nested_model(info.annotation)
        if nested is not None:
            model = nested
    return model, explain


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    candidates = [annotation, *getattr(annotation, "__args__", ())]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _path(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


def _message(model: type[BaseModel], error: ErrorDetails, where: str) -> str:
    """One pydantic error as `setting: what is wrong; how to fix it`, with any value that looks like a client secret
    (pasted into a GUID or a name, say) left out wherever the message would quote it."""
    text = _render(model, error, where)
    given = error.get("input")
    for value in given if isinstance(given, list) else [given]:
        if isinstance(value, str) and _looks_like_client_secret(value):
            register_secret(value)  # defence in depth: mask it should it reach a log line anyway
            for form in dict.fromkeys([value, value.strip(), value.strip().lower()]):  # as the messages quote it
                for shown in (form, form[:40], form[:20]):  # the longest first: some messages cut at 40 or 20
                    text = text.replace(repr(shown), "(a value that looks like a client secret, not shown)")
    return text


def _render(model: type[BaseModel], error: ErrorDetails, where: str) -> str:
    """`where` is the setting the model was read from ('' for the app settings, whose fields are named by their
    setting)."""
    loc, kind, context = tuple(error["loc"]), error["type"], error.get("ctx") or {}
    setting = f"{where}{_path(loc)}" if where else ".".join(str(part) for part in loc)
    if kind == "config":
        if "setting" in context:
            return f"{context['setting']}: {context['what']}; {context['fix']}"
        if "sibling" in context:
            setting = f"{where}{_path((*loc[:-1], context['sibling']))}"
        return f"{setting}: {context['what']}; {context['fix']}"
    owner, explain = _locate(model, loc)
    if kind == "extra_forbidden":
        key = str(loc[-1])
        if key in _SECRET_LIKE_KEYS and model is TargetModel and len(loc) == 1:
            return (f"{setting}: looks like a secret value in configuration; remove it: store the secret in Key Vault "
                    "and set secret_name to its name")
        known = ", ".join(sorted(_fields_by_key(_locate(model, loc[:-1])[0])))
        return f"{setting}: is not a known setting; remove it, or use one of: {known}"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        example = explain.fix if explain and loc else 'e.g. {"name": "hpc-prod", "tenant_id": "...", ...}'
        return f"{setting}: must be an object; {example}"
    if explain is None:  # not expected: every field pydantic checks by itself has an Explain
        return f"{setting}: {error['msg']} (a {owner.__name__} field); see docs/targets.schema.json"
    if kind in {"missing", "config_missing"}:
        return f"{setting}: {explain.missing}; {explain.fix}"
    return f"{setting}: {error['input']!r} is not {explain.noun}; {explain.fix}"


def _messages(model: type[BaseModel], exc: ValidationError, where: str) -> list[str]:
    return [_message(model, error, where) for error in exc.errors(include_url=False)]


# -- field types --------------------------------------------------------------------------------------------


def _guid(fix: str, *, optional: bool = False) -> Callable[[object], uuid.UUID | None]:
    """A GUID as Azure shows it (36 characters); anything else is a problem that says where to copy it from."""

    def check(raw: object) -> uuid.UUID | None:
        if raw is None and optional:
            return None
        if raw is None or raw == "":
            raise _problem("is missing", fix)
        if not is_guid(raw):
            raise _problem(f"{raw!r} is not a GUID", fix)
        return uuid.UUID(str(raw))

    return check


_HTTPS_URL = TypeAdapter(Annotated[AnyUrl, UrlConstraints(allowed_schemes=["https"], host_required=True)])


def _https_url(raw: object) -> str:
    """An https:// URL with a host, kept as written (less a trailing slash): it is shown back to people."""
    if not isinstance(raw, str) or not raw:
        raise _missing()
    try:
        _HTTPS_URL.validate_python(raw)
    except ValidationError:
        raise _invalid() from None
    return raw.rstrip("/")


HttpsUrl = Annotated[str, BeforeValidator(_https_url),
                     WithJsonSchema({"type": "string", "format": "uri", "pattern": "^https://"})]
VaultSecretName = Annotated[str, StringConstraints(pattern=_VAULT_SECRET_NAME.pattern)]
_GUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
Guid = Annotated[uuid.UUID, WithJsonSchema({"type": "string", "format": "uuid", "pattern": _GUID_PATTERN})]


def _looks_like_client_secret(value: str) -> bool:
    return bool(_CLIENT_SECRET_SHAPE.match(value.strip())) or ("~" in value and len(value.strip()) >= 30)


def _vault_secret_name(raw: object, holds: str) -> str:
    """A Key Vault secret name. The value is never echoed when it is not a valid name: a person may have pasted
    the secret itself (a client secret or a password) instead of its name."""
    if isinstance(raw, str) and _VAULT_SECRET_NAME.match(raw):
        return raw
    if isinstance(raw, str):
        register_secret(raw)  # defence in depth: mask it should it reach a log line anyway
        if _looks_like_client_secret(raw):
            what = "looks like a client secret value, not a Key Vault secret name (the value is not shown)"
        else:
            what = (f"is not a Key Vault secret name ({len(raw)} characters, not only letters, digits and dashes; "
                    "the value is not shown in case it is a secret)")
    else:
        what = f"is not a Key Vault secret name (a {type(raw).__name__}, not a string)"
    raise _problem(what, f"set it to the name (1-127 letters, digits and dashes) of the Key Vault secret that holds "
                         f"{holds}, and store the value itself only in Key Vault")


def _number(minimum: float, *, integer: bool) -> BeforeValidator:
    """A JSON number of at least `minimum` (a whole one for counts); null means the default."""
    kind = "a whole number" if integer else "a number"

    def check(raw: object) -> float:
        if raw is None:
            raise PydanticUseDefault()
        if isinstance(raw, bool) or not isinstance(raw, int | float) or (integer and not float(raw).is_integer()):
            raise _problem(f"{raw!r} is not {kind}", f"set it to {kind} of at least {minimum:g}")
        if raw < minimum:
            raise _problem(f"{raw!r} is too small", f"set it to at least {minimum:g}")
        return int(raw) if integer else float(raw)

    return BeforeValidator(check)


def _default_when_null(raw: object) -> object:
    if raw is None:
        raise PydanticUseDefault()
    return raw


Flag = Annotated[bool, Strict(), Explain("true or false", _BOOL_FIX)]  # true or false, not "yes" or 1
FlagOrNull = Annotated[bool, BeforeValidator(_default_when_null), Strict(), Explain("true or false", _BOOL_FIX)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- a target -----------------------------------------------------------------------------------------------


class RotationModel(_Model):
    """When a target's client secret is rotated, and how a new one is tested."""

    model_config = ConfigDict(title="Rotation")

    rotate_before_days: Annotated[int, _number(1, integer=True), Field(
        ge=1, description="rotate when the secret expires within this many days (at most half of a secret's "
                          "lifetime is used)")] = 30
    lifetime_days: Annotated[int, _number(1, integer=True), Field(
        ge=1, validate_default=True,
        description="lifetime of new secrets (clamped to an app management policy's maximum)")] = 180
    grace_hours: Annotated[float, _number(0, integer=False), Field(
        ge=0, description="how long the replaced secret stays valid before it is removed")] = 24.0
    test_successes: Annotated[int, _number(1, integer=True), Field(
        ge=1, description="consecutive successful probes a new secret needs")] = 3
    test_timeout_seconds: Annotated[float, _number(1, integer=False), Field(
        ge=1, description="the time limit of those probes")] = 300.0

    @field_validator("lifetime_days")
    @classmethod
    def _lead_below_lifetime(cls, lifetime: int, info: ValidationInfo) -> int:
        lead = info.data.get("rotate_before_days", RotationPolicy.rotate_before_days)  # its default when invalid
        if lead >= lifetime:
            raise _problem(f"{lead} is not less than lifetime_days ({lifetime})", "a new secret would be due for "
                           "rotation as soon as it is created; lower rotate_before_days", sibling="rotate_before_days")
        return lifetime

    def policy(self) -> RotationPolicy:
        return RotationPolicy(**dict(self))  # the same fields


def _account(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise _problem("is empty", _ACCOUNT_FIX)
    if _ACCOUNT_FORBIDDEN.search(raw) or raw.startswith("-") or raw != raw.strip():
        raise _problem(f"{raw!r} is not an account name (it may not contain '/', '?', '#', '\\', '%', '..' or "
                       "control characters, start with '-', or have surrounding spaces)", _ACCOUNT_FIX)
    return raw


def _ca_bundle(raw: object) -> object:
    if raw is not None and (not isinstance(raw, str) or not Path(raw).is_file()):
        raise _problem(f"{raw!r} is not a readable file", "point it at the PEM file of the CA that signed "
                       "CycleCloud's certificate, or use ca_bundle_secret to read the PEM from Key Vault")
    return raw


def _ca_bundle_secret(raw: object) -> object:
    return None if raw is None else _vault_secret_name(raw, "the PEM of CycleCloud's CA")


def _credential_method(raw: object) -> str:
    method = str(raw).upper()
    if method not in {"PUT", "POST", "PATCH"}:
        raise _problem(f"{method!r} is not an HTTP method that updates", "use PUT, POST or PATCH")
    return method


def _credential_path(raw: object) -> object:
    if not isinstance(raw, str) or not raw.startswith("/") or "{account}" not in raw:
        raise _problem(f"{raw!r} is not a path template with {{account}}", f"use e.g. {DEFAULT_CREDENTIAL_PATH!r}")
    return raw


class CycleCloudModel(_Model):
    """How the product reaches CycleCloud (docs/cyclecloud.md)."""

    model_config = ConfigDict(title="CycleCloud")

    url: Annotated[HttpsUrl, Explain(
        "an https:// URL", "use the address you open CycleCloud's web UI with, e.g. https://cyclecloud.contoso.com "
                           "(include the context path if CycleCloud has one)"),
        Field(description="CycleCloud base URL including any context path")]
    transport: Annotated[Transport, Explain("a transport", "use 'rest' or 'runcommand'"), Field(
        description="rest, or runcommand (ARM Run Command on the CycleCloud VM)")] = Transport.REST
    account: Annotated[str, BeforeValidator(_account), Field(
        description="the cloud provider account name in CycleCloud")] = "azure"
    user: Annotated[str, Field(validate_default=True, description="the CycleCloud user the product logs in as "
                                                                  "(rest; a Superuser)")] = ""
    password_secret: Annotated[str, Field(
        validate_default=True, description="the Key Vault secret holding that user's password (rest)")] = ""
    ca_bundle: Annotated[str | None, BeforeValidator(_ca_bundle), Field(
        description="PEM file of CycleCloud's CA (default: the system store)")] = None
    ca_bundle_secret: Annotated[VaultSecretName | None, BeforeValidator(_ca_bundle_secret), Field(
        description="Key Vault secret holding the PEM of CycleCloud's CA")] = None
    credential_method: Annotated[Literal["PUT", "POST", "PATCH"], BeforeValidator(_credential_method), Field(
        description="the REST credential endpoint's method")] = "PUT"
    credential_path: Annotated[str, BeforeValidator(_credential_path), Field(
        pattern=r"^/.*\{account\}", description="the REST credential endpoint, with {account}")
    ] = DEFAULT_CREDENTIAL_PATH
    timeout_seconds: Annotated[float, _number(1, integer=False), Field(
        ge=1, description="time limit of one CycleCloud call")] = 30.0
    supports_dry_run: Annotated[FlagOrNull, Field(
        description="the server honours ?dry_run=true / account edit --dry-run; only then does probe send the "
                    "update request (otherwise probe only reads)")] = False

    @field_validator("user", mode="before")
    @classmethod
    def _user_for_rest(cls, raw: object, info: ValidationInfo) -> str:
        if not raw and info.data.get("transport", Transport.REST) is Transport.REST:
            raise _problem("is missing", "name the CycleCloud user the product logs in as (a Superuser, so it may "
                                         "edit account credentials)")
        return str(raw) if raw else ""

    @field_validator("password_secret", mode="before")
    @classmethod
    def _password_for_rest(cls, raw: object, info: ValidationInfo) -> str:
        if raw:
            return _vault_secret_name(raw, "the CycleCloud user's password")
        if info.data.get("transport", Transport.REST) is Transport.REST:
            raise _problem("is missing", "name the Key Vault secret that holds the CycleCloud user's password")
        return ""

    def connection(self) -> CycleCloudConnection:
        return CycleCloudConnection(**dict(self))  # the same fields


def _roles(raw: object) -> list[str]:
    if not isinstance(raw, list) or not raw or not all(isinstance(r, str) and r for r in raw):
        raise _problem(f"{raw!r} is not a non-empty list of role names or ids",
                       f"use e.g. [\"{CONTRIBUTOR_ROLE_ID}\"] (Contributor) or the name of the CycleCloud custom role")
    return [r.lower() if is_guid(r) else r for r in raw]


def _subscription_ids(raw: object) -> object:
    if not isinstance(raw, list) or not raw:
        raise _problem("must be a non-empty list", "list the IDs of the subscriptions CycleCloud deploys into")
    return raw


def _usable_identity(raw: object) -> str | None:
    """`home` (default) or the client id of the product's multi-tenant app registration; None for anything else."""
    if raw is None or raw == HOME_IDENTITY:
        return HOME_IDENTITY
    return str(raw).lower() if is_guid(raw) else None


def _privileged(role: str) -> str | None:
    """The name of the privileged built-in role `role` is (by id, full id or name), if it is one."""
    by_id = PRIVILEGED_BUILTIN_ROLES.get(role.rstrip("/").rsplit("/", 1)[-1].lower())
    return by_id or next((n for n in PRIVILEGED_BUILTIN_ROLES.values() if n.lower() == role.strip().lower()), None)


@dataclass
class _Fleet:
    """What the targets validated so far hold (the validation context): the rules between targets."""

    names: set[str] = field(default_factory=set)
    by_secret: dict[str, str] = field(default_factory=dict)
    by_account: dict[tuple[str, str, str], str] = field(default_factory=dict)
    by_tenant: dict[str, tuple[str, str]] = field(default_factory=dict)  # tenant: (first target, its identity)


def _fleet(info: ValidationInfo) -> _Fleet:
    context = info.context
    return context if isinstance(context, _Fleet) else _Fleet()  # one target alone: no other to clash with


class TargetModel(_Model):
    """A target: one CycleCloud cloud-provider account whose credential the product looks after. No secret values
    in configuration: only Key Vault secret names."""

    model_config = ConfigDict(title="Target", json_schema_extra={"allOf": [  # for editors; the validators below rule
        {"if": {"required": ["mode"], "properties": {"mode": {"const": Mode.MANAGED_IDENTITY.value}}},
         "then": {"required": ["vm_resource_id"]}, "else": {"required": ["app_id", "secret_name"]}},
        {"if": {"required": ["cyclecloud"], "properties": {"cyclecloud": {
            "type": "object", "required": ["transport"],
            "properties": {"transport": {"const": Transport.RUNCOMMAND.value}}}}},
         "then": {"required": ["vm_resource_id"]}},
    ]})

    name: Annotated[str, StringConstraints(pattern=TARGET_NAME_PATTERN), Explain(
        "a slug", "use lowercase letters, digits and dashes, e.g. 'hpc-prod'", missing="None is not a slug"),
        Field(description="slug, e.g. hpc-prod; used in routes and the CLI")]
    mode: Annotated[Mode, Explain("a mode", "use 'service_principal' or 'managed_identity'"), Field(
        description="service_principal, or managed_identity (the CycleCloud VM's system-assigned identity)")
    ] = Mode.SERVICE_PRINCIPAL
    tenant_id: Annotated[Guid, BeforeValidator(_guid(_GUID_FIX["tenant_id"])), Explain("a GUID", _GUID_FIX[
        "tenant_id"]), Field(description="Directory (tenant) ID")]
    app_id: Annotated[Guid | None, BeforeValidator(_guid(_GUID_FIX["app_id"], optional=True)), Field(
        validate_default=True, description="Application (client) ID of the CycleCloud app registration (required "
                                           "for service_principal)")] = None
    subscription_ids: Annotated[list[Annotated[Guid, BeforeValidator(_guid(_GUID_FIX["subscription_ids"]))]],
                                BeforeValidator(_subscription_ids),
                                Explain("a non-empty list", "list the IDs of the subscriptions CycleCloud deploys "
                                        "into", missing="must be a non-empty list"),
                                Field(min_length=1, description="subscriptions CycleCloud deploys into")]
    allow_privileged_roles: Annotated[FlagOrNull, Field(
        description="allow Owner, User Access Administrator, RBAC Administrator or any role that can grant access "
                    "in roles (refused otherwise; see docs/roles.md)")] = False
    roles: Annotated[list[str], BeforeValidator(_roles), Field(
        min_length=1, description="role ids or names the principal must hold at each subscription (e.g. the "
                                  "CycleCloud custom role); default Contributor")] = [CONTRIBUTOR_ROLE_ID]
    secret_name: Annotated[VaultSecretName | None, Field(
        validate_default=True, description="Key Vault secret holding the client secret (required for "
                                           "service_principal)")] = None
    cyclecloud: Annotated[CycleCloudModel | None, Explain(
        "an object", 'e.g. {"url": "https://cyclecloud.contoso.com", "account": "azure"}')] = None
    vm_resource_id: Annotated[str | None, Field(
        validate_default=True, description="the CycleCloud VM's resource id (managed_identity mode and the "
                                           "runcommand transport)")] = None
    rotation: Annotated[RotationModel, BeforeValidator(_default_when_null), Explain(
        "an object", 'e.g. {"rotate_before_days": 30, "lifetime_days": 180}')] = RotationModel()
    prune_unmanaged_roles: Annotated[Flag, Field(
        description="allow removing role assignments the product did not create")] = False
    identity: Annotated[str, WithJsonSchema(
        {"anyOf": [{"const": HOME_IDENTITY}, {"type": "string", "format": "uuid", "pattern": _GUID_PATTERN}]}), Field(
        validate_default=True, description="home (the Function's managed identity), or the client id of the "
                                           "product's multi-tenant app for a target in another tenant "
                                           "(docs/tenants.md)")] = HOME_IDENTITY

    @field_validator("name")
    @classmethod
    def _unique_name(cls, name: str, info: ValidationInfo) -> str:
        names = _fleet(info).names
        if name in names:
            raise _problem(f"'{name}' is used by another target", "give each target a unique name")
        names.add(name)
        return name

    @field_validator("app_id")
    @classmethod
    def _app_for_service_principal(cls, app_id: uuid.UUID | None, info: ValidationInfo) -> uuid.UUID | None:
        if app_id is None and info.data.get("mode") is Mode.SERVICE_PRINCIPAL:
            raise _problem("is missing", _GUID_FIX["app_id"])
        return app_id

    @field_validator("roles")
    @classmethod
    def _no_privileged_role(cls, roles: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("allow_privileged_roles", False):
            return roles
        refused = [InitErrorDetails(type=_problem(
            f"'{role}' is {name}, a role that can grant any access to anyone; CycleCloud needs no such right",
            "use Contributor or the CycleCloud custom role (see docs/roles.md); if you really mean it, set "
            "allow_privileged_roles: true on the target"), loc=(), input=role)
            for role in roles if (name := _privileged(role))]
        if refused:
            raise ValidationError.from_exception_data("roles", refused)
        return roles

    @field_validator("secret_name", mode="before")
    @classmethod
    def _secret_for_service_principal(cls, raw: object, info: ValidationInfo) -> str | None:
        if info.data.get("mode") is not Mode.SERVICE_PRINCIPAL:
            return None  # nothing rotates: a name given anyway is not used
        if not raw:
            raise _problem("is missing", "name the Key Vault secret that holds (or will hold) the service "
                                         "principal's client secret")
        return _vault_secret_name(raw, "the service principal's client secret")

    @field_validator("vm_resource_id", mode="before")
    @classmethod
    def _vm_when_needed(cls, raw: object, info: ValidationInfo) -> str | None:
        if raw is not None:
            if not isinstance(raw, str) or not _VM_ID.match(raw):
                raise _problem(f"{raw!r} is not a virtual machine resource id", f"{_VM_FIX} (/subscriptions/<id>/"
                               "resourceGroups/<rg>/providers/Microsoft.Compute/virtualMachines/<name>)")
            return raw
        cyclecloud = info.data.get("cyclecloud")
        if info.data.get("mode") is Mode.MANAGED_IDENTITY:
            raise _problem("is missing but managed_identity mode needs the CycleCloud VM", _VM_FIX)
        if cyclecloud is not None and cyclecloud.transport is Transport.RUNCOMMAND:
            raise _problem("is missing but the runcommand transport needs the CycleCloud VM", _VM_FIX)
        return None

    # Rules between targets. Several targets may share one app registration (each keeps to its own credentials),
    # but two that share a Key Vault secret or a CycleCloud account would overwrite each other's secret, and one
    # tenant is reached through one identity. Each field is checked against the targets before it (`_Fleet`) as soon
    # as it is valid itself, so a target's other problems do not hide these.

    @field_validator("secret_name")
    @classmethod
    def _own_secret(cls, secret_name: str | None, info: ValidationInfo) -> str | None:
        name = info.data.get("name")
        if secret_name and name:
            other = _fleet(info).by_secret.setdefault(secret_name.lower(), name)
            if other != name:
                raise _problem(f"is also the secret_name of target '{other}'", "give each target its own Key Vault "
                               "secret: rotating one would replace the other's value (targets may share an app "
                               "registration, not a secret)", setting=f"targets[{name}].secret_name")
        return secret_name

    @field_validator("cyclecloud")
    @classmethod
    def _own_account(cls, cc: CycleCloudModel | None, info: ValidationInfo) -> CycleCloudModel | None:
        name = info.data.get("name")
        if cc is not None and name and info.data.get("mode") is Mode.SERVICE_PRINCIPAL:
            key = (cc.url.rstrip("/").lower(), cc.account.lower(), cc.transport.value)
            other = _fleet(info).by_account.setdefault(key, name)
            if other != name:
                raise _problem(f"is the same CycleCloud account as target '{other}'", "one CycleCloud account holds "
                               "one credential: configure it as one target", setting=f"targets[{name}].cyclecloud."
                                                                                     "account")
        return cc

    @field_validator("identity", mode="before")
    @classmethod
    def _one_identity_per_tenant(cls, raw: object, info: ValidationInfo) -> str:
        identity, name, tenant = _usable_identity(raw), info.data.get("name"), info.data.get("tenant_id")
        # for the targets after it, an unusable identity reads as the default
        first = _fleet(info).by_tenant.setdefault(str(tenant), (name, identity or HOME_IDENTITY)) if name and tenant \
            else None
        if identity is None:
            raise _problem(f"{str(raw)[:40]!r} is not 'home' or an application (client) id",
                           "use 'home' for the Function's own managed identity, or, for a target in another tenant, "
                           "the Application (client) ID of the product's multi-tenant app registration "
                           "(docs/tenants.md)")
        if first is not None and first[1] != identity:
            raise _problem(f"is {identity!r} but target '{first[0]}' in the same tenant {tenant} uses {first[1]!r}",
                           "the product reaches one tenant through one identity: give every target of a tenant the "
                           "same identity", setting=f"targets[{name}].identity")
        return identity

    def target(self) -> Target:
        service_principal = self.mode is Mode.SERVICE_PRINCIPAL
        return Target(
            name=self.name, mode=self.mode, tenant_id=str(self.tenant_id),
            subscription_ids=tuple(str(s) for s in self.subscription_ids),
            app_id=str(self.app_id) if self.app_id else None, roles=tuple(self.roles),
            secret_name=self.secret_name if service_principal else None,
            cyclecloud=self.cyclecloud.connection() if self.cyclecloud else None,
            vm_resource_id=self.vm_resource_id, rotation=self.rotation.policy(),
            prune_unmanaged_roles=self.prune_unmanaged_roles, allow_privileged_roles=self.allow_privileged_roles,
            identity=self.identity,
        )


class TargetsDocument(BaseModel):
    """TARGETS_FILE as an object, so an editor can be pointed at the schema; other top-level keys are ignored."""

    model_config = ConfigDict(title="TargetsDocument", frozen=True)

    schema_: Annotated[str | None, Field(alias="$schema", description="this schema's URL or path, for editors")
                       ] = None
    targets: list[TargetModel]


def targets_json_schema() -> dict[str, Any]:
    """The JSON Schema of TARGETS (a list of targets) and TARGETS_FILE (the list, or {"targets": [...]})."""
    schema = TypeAdapter(list[TargetModel] | TargetsDocument).json_schema()
    rules = ("Also checked when the settings are loaded (`python -m shared config check`), not by this schema: "
             "names are unique; two targets never share a Key Vault secret_name or a CycleCloud account; all targets "
             "of a tenant use the same identity; roles hold no role that can grant access unless "
             "allow_privileged_roles is true; rotate_before_days is less than lifetime_days; ca_bundle is a "
             "readable file.")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "TARGETS_FILE",
            "description": "The targets of the CycleCloud credential remediator (README, Configuration reference). "
                           + rules, **schema}


# -- the app settings ---------------------------------------------------------------------------------------


def _env_int(low: int, high: int | None, what: str, fix: str, at_most: int | None = None) -> BeforeValidator:
    def check(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = low - 1
        if value < low or (high is not None and value > high):
            raise _problem(f"{raw[:at_most]!r} {what}", fix)  # at most `at_most` characters (None: all)
        return value

    return BeforeValidator(check)


def _env_seconds(low: float, high: float, default: float) -> BeforeValidator:
    def check(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:
            raise _problem(f"{raw!r} is not a number of seconds from {low:g} to {high:g}", f"use e.g. {default:g}")
        return value

    return BeforeValidator(check)


def _schedule(raw: str) -> str:
    if len(raw.split()) != _NCRONTAB_FIELDS:
        raise _problem(f"{raw!r} is not a 6-field NCRONTAB expression",
                       "use seconds first, e.g. '0 0 3 * * *' for daily at 03:00 UTC")
    return raw


def _env_flag(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE_WORDS | _FALSE_WORDS:
        return lowered in _TRUE_WORDS
    raise _problem(f"{raw!r} is not true or false", _BOOL_FIX)


def _name_pattern(pattern: str, noun: str, fix: str) -> BeforeValidator:
    def check(raw: str) -> str:
        if not re.match(pattern, raw):
            raise _problem(f"{raw!r} is not {noun}", fix)
        return raw

    return BeforeValidator(check)


def _cloud(raw: str) -> str:
    if raw not in CLOUDS:
        raise _problem(f"{raw!r} is not a known cloud", f"use one of: {', '.join(CLOUDS)}")
    return raw


def _app_role(raw: str) -> str | None:
    role = raw.strip()
    if role.lower() in {"", *_FALSE_WORDS}:
        return None
    if role.lower() in _TRUE_WORDS:
        return OPERATE_ROLE
    if re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$", role):
        return role
    raise _problem(f"{role[:40]!r} is not true, false or an app role value",
                   f"use true (requires '{OPERATE_ROLE}'), false, or the app role's value")


def _notify_format(raw: str) -> str:
    fmt = raw.strip().lower()
    if fmt not in NOTIFY_FORMATS:
        raise _problem(f"{fmt[:20]!r} is not a notification format", "use teams or slack")
    return fmt


def _webhook(raw: str) -> str | None:
    """A Key Vault reference in Azure: the URL carries its own token, so it is registered as a secret and never
    echoed."""
    url = raw.strip()
    if not url:
        return None
    register_secret(url)
    if url.startswith("@Microsoft.KeyVault("):
        raise _problem("is a Key Vault reference the platform could not resolve",
                       "grant the Function's identity 'Key Vault Secrets User' on the secret and check its URI")
    try:
        _HTTPS_URL.validate_python(url)
    except ValidationError:
        raise _problem("is not an https:// URL (its value is not shown: it holds a token)", "use the Teams "
                       "workflow's or the Slack incoming webhook's https URL, or remove the setting") from None
    return url


_VAULT_FIX = "use the Vault URI from the Key Vault's Overview page, e.g. https://kv-name.vault.azure.net"


class AppSettingsModel(BaseModel):
    """The Function app's settings (environment variables), each field named by its setting. Other variables of
    the environment are not settings and are ignored; an empty value means the setting is not set."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    cloud: Annotated[str, BeforeValidator(_cloud), Field(alias="AZURE_CLOUD")] = "AzureCloud"
    key_vault_url: Annotated[HttpsUrl, Explain("an https:// URL", _VAULT_FIX), Field(alias="KEY_VAULT_URL")]
    managed_identity_client_id: Annotated[Guid | None, BeforeValidator(_guid(
        "use the Client ID of the Function's user-assigned managed identity, or remove the setting")),
        Field(alias="AZURE_CLIENT_ID")] = None
    home_tenant_id: Annotated[str | None, Field(alias="HOME_TENANT_ID")] = None
    max_concurrency: Annotated[int, _env_int(1, None, "is not a positive whole number", "use e.g. 4"),
                               Field(alias="MAX_CONCURRENCY")] = 4
    maximum_instance_count: Annotated[int, _env_int(
        1, 1000, "is not a whole number from 1 to 1000", "use the Function app's maximumInstanceCount (the Bicep "
                                                         "sets it)", at_most=20),
        Field(alias="MAXIMUM_INSTANCE_COUNT")] = 1
    state_container: Annotated[str, _name_pattern(
        r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$", "a blob container name",
        "use 3-63 lowercase letters, digits and single dashes"), Field(alias="STATE_CONTAINER")
    ] = DEFAULT_STATE_CONTAINER
    connection_string: Annotated[str | None, Field(alias="AzureWebJobsStorage", repr=False)] = None
    blob_service_uri: Annotated[str | None, Field(alias="AzureWebJobsStorage__blobServiceUri")] = None
    queue_service_uri: Annotated[str | None, Field(alias="AzureWebJobsStorage__queueServiceUri")] = None
    storage_account: Annotated[str | None, Field(alias="AzureWebJobsStorage__accountName")] = None
    rotation_schedule: Annotated[str, BeforeValidator(_schedule), Field(alias="ROTATION_SCHEDULE")
                                 ] = DEFAULT_ROTATION_SCHEDULE
    health_schedule: Annotated[str, BeforeValidator(_schedule), Field(alias="HEALTH_SCHEDULE")
                               ] = DEFAULT_HEALTH_SCHEDULE
    auto_remediate: Annotated[bool, BeforeValidator(_env_flag), Field(alias="AUTO_REMEDIATE")] = False
    # room for the host's "-poison" queue
    continuation_queue: Annotated[str, _name_pattern(
        r"^[a-z0-9](?!.*--)[a-z0-9-]{1,54}[a-z0-9]$", "a storage queue name",
        "use 3-56 lowercase letters, digits and single dashes (the host adds '-poison')"),
        Field(alias="CONTINUATION_QUEUE")] = DEFAULT_CONTINUATION_QUEUE
    require_app_role: Annotated[str | None, BeforeValidator(_app_role), Field(alias="REQUIRE_APP_ROLE")] = None
    http_budget_seconds: Annotated[float, _env_seconds(5, 200, DEFAULT_HTTP_BUDGET_SECONDS),
                                   Field(alias="HTTP_BUDGET_SECONDS")] = DEFAULT_HTTP_BUDGET_SECONDS
    continuation_backoff_seconds: Annotated[float, _env_seconds(1, 300, 30.0),
                                            Field(alias="CONTINUATION_BACKOFF_SECONDS")] = 30.0
    notify_format: Annotated[str, BeforeValidator(_notify_format), Field(alias="NOTIFY_FORMAT")] = "teams"
    notify_webhook_url: Annotated[str | None, BeforeValidator(_webhook), Field(alias="NOTIFY_WEBHOOK_URL",
                                                                               repr=False)] = None

    @field_validator("key_vault_url")
    @classmethod
    def _vault_in_the_cloud(cls, url: str, info: ValidationInfo) -> str:
        cloud = CLOUDS[info.data.get("cloud", "AzureCloud")]  # AzureCloud when AZURE_CLOUD is not a cloud
        if not (urlsplit(url).hostname or "").endswith(cloud.vault_suffix):
            raise _problem(f"{url!r} is not a Key Vault in {cloud.name}", f"use the Vault URI (ending in "
                           f"{cloud.vault_suffix}) or set AZURE_CLOUD to the vault's cloud")
        return url

    @field_validator("home_tenant_id", mode="before")
    @classmethod
    def _home_tenant(cls, raw: str) -> str:
        if not is_guid(raw):
            raise _problem(f"{raw[:40]!r} is not a GUID", "use the Directory (tenant) ID of the Function's managed "
                           "identity (az account show --query tenantId), or remove the setting")
        return raw.lower()

    def settings(self, targets: tuple[Target, ...]) -> Settings:
        account = self.storage_account
        blob_uri = self.blob_service_uri or (f"https://{account}.blob.core.windows.net" if account else None)
        queue_uri = self.queue_service_uri or (f"https://{account}.queue.core.windows.net" if account else None)
        return Settings(
            targets=targets, key_vault_url=self.key_vault_url, cloud=CLOUDS[self.cloud],
            storage=StorageSettings(connection_string=self.connection_string, blob_service_uri=blob_uri,
                                    container=self.state_container),
            managed_identity_client_id=str(self.managed_identity_client_id).lower()
            if self.managed_identity_client_id else None,
            rotation_schedule=self.rotation_schedule, health_schedule=self.health_schedule,
            auto_remediate=self.auto_remediate, max_concurrency=self.max_concurrency,
            maximum_instance_count=self.maximum_instance_count, http_budget_seconds=self.http_budget_seconds,
            continuation_queue=self.continuation_queue,
            continuation_backoff_seconds=self.continuation_backoff_seconds, require_app_role=self.require_app_role,
            queue_service_uri=queue_uri, notify_webhook_url=self.notify_webhook_url, notify_format=self.notify_format,
            home_tenant_id=self.home_tenant_id,
        )


# -- loading ------------------------------------------------------------------------------------------------


def _targets_json(env: Mapping[str, str], problems: list[str]) -> list[Any] | None:
    """The targets as JSON, from TARGETS or the file TARGETS_FILE names."""
    inline = env.get("TARGETS")
    path = env.get("TARGETS_FILE")
    if inline and path:
        problems.append("TARGETS_FILE: is set together with TARGETS; set only one of them")
    if path and not inline:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            problems.append(f"TARGETS_FILE: cannot read {path!r} ({exc.strerror}); point it at a readable JSON file, "
                            "or set TARGETS instead")
            return None
        source = "TARGETS_FILE"
    elif inline:
        source, text = "TARGETS", inline
    else:
        problems.append("TARGETS: is not set; set TARGETS to a JSON list of targets, or TARGETS_FILE to a JSON file")
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(f"{source}: is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); fix the "
                        "JSON syntax")
        return None
    if isinstance(data, dict) and "targets" in data:
        data = data["targets"]
    if not isinstance(data, list):
        problems.append(f'{source}: must be a JSON list of targets; e.g. [{{"name": "hpc-prod", ...}}]')
        return None
    return data


def _before_name(error: ErrorDetails) -> bool:
    """Problems with the name itself, or with the target's keys, are placed by index alone (`TARGETS[1].name`);
    the others by index and name (`TARGETS[1] (hpc-prod).tenant_id`)."""
    loc = error["loc"]
    return loc[:1] == ("name",) or (len(loc) == 1 and error["type"] == "extra_forbidden")


def _targets(raw_targets: list[Any], problems: list[str]) -> list[Target]:
    """Each target on its own, so one bad target does not hide another's problems; the rules between targets
    see the targets validated before them (the `_Fleet` context), as a person reads the list."""
    fleet, targets = _Fleet(), []
    for index, raw in enumerate(raw_targets):
        name = raw.get("name") if isinstance(raw, dict) else None
        plain = f"TARGETS[{index}]"
        where = plain + (f" ({name})" if isinstance(name, str) and _SLUG.match(name) else "")
        try:
            targets.append(TargetModel.model_validate(raw, context=fleet).target())
        except ValidationError as exc:
            problems.extend(_message(TargetModel, error, plain if _before_name(error) else where)
                            for error in exc.errors(include_url=False))
    return targets


def settings_from_environment(env: Mapping[str, str]) -> Settings:
    """Read and validate every setting; raise one ConfigError listing all problems."""
    problems: list[str] = []
    app: AppSettingsModel | None = None
    try:
        app = AppSettingsModel.model_validate({key: value for key, value in env.items() if value != ""})
    except ValidationError as exc:
        problems.extend(_messages(AppSettingsModel, exc, ""))
    raw_targets = _targets_json(env, problems)
    targets = _targets(raw_targets, problems) if raw_targets is not None else []
    if problems or app is None:
        raise ConfigError(problems)  # outside the handlers: no ValidationError (which quotes inputs) is chained
    return app.settings(tuple(targets))


if __name__ == "__main__":
    import sys

    # the schema is this command's output (docs/targets.schema.json is written from it), not a log record
    sys.stdout.write(json.dumps(targets_json_schema(), indent=2) + "\n")
