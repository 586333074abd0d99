"""`python -m shared config check`: validate every setting, including what only a running product needs (the
Functions storage account), and show what the product will do."""

from __future__ import annotations

import argparse

from ..config import HOME_IDENTITY, load_settings, runtime_problems
from ..errors import ConfigError
from ..rotation.policy import effective_lead_days
from .output import OK, WARN, emit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["check"], help="check: validate the settings and list the targets")
    parser.add_argument("--before-deploy", action="store_true",
                        help="check targets and settings before a deployment, which then provides the Functions "
                             "storage account (AzureWebJobsStorage); without it, a missing storage account is a "
                             "problem, as `rotate` and the timers need it")


async def run(args: argparse.Namespace) -> int:
    settings = load_settings()  # raises ConfigError listing every problem
    problems = [] if args.before_deploy else runtime_problems(settings)
    if problems:
        raise ConfigError(problems)
    emit(f"{OK} configuration is valid")
    emit(f"  cloud          {settings.cloud.name}")
    emit(f"  key vault      {settings.key_vault_url}")
    storage = settings.storage
    where = ("the AzureWebJobsStorage connection string" if storage.connection_string  # a secret: never shown
             else storage.blob_service_uri or "not checked (--before-deploy)")
    emit(f"  storage        {where}, container '{storage.container}'")
    emit(f"  schedules      rotation '{settings.rotation_schedule}', health '{settings.health_schedule}'")
    emit(f"  auto-remediate {'on' if settings.auto_remediate else 'off'}")
    emit(f"  targets        {len(settings.targets)}")
    for t in settings.targets:
        emit(f"  - {t.name}: {t.mode.value}, tenant {t.tenant_id}, app {t.app_id or '-'}, "
             f"subscriptions {', '.join(t.subscription_ids)}")
        reached = ("the product's managed identity (home tenant)" if t.identity == HOME_IDENTITY
                   else f"the product's multi-tenant app {t.identity} (docs/tenants.md)")
        emit(f"      reached as {reached}")
        if t.secret_name:
            lead = effective_lead_days(t.rotation, t.rotation.lifetime_days)
            emit(f"      secret in Key Vault: {t.secret_name}; rotate {lead} days before expiry; new secrets live "
                 f"{t.rotation.lifetime_days} days")
            if lead != t.rotation.rotate_before_days:
                emit(f"      {WARN} rotate_before_days={t.rotation.rotate_before_days} is more than half of "
                     f"lifetime_days={t.rotation.lifetime_days}: a secret is rotated {lead} days before expiry "
                     "instead, so it is not due again at once (an app management policy's maximum lifetime "
                     "shortens it the same way; `rotate --dry-run` shows leadDays)")
        if t.cyclecloud:
            emit(f"      CycleCloud: {t.cyclecloud.url} account '{t.cyclecloud.account}' via {t.cyclecloud.transport}")
    return 0
