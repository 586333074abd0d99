"""The CLI's dispatcher. Each command is a module in this package with `add_arguments(parser)` and
`async run(args) -> int`; the module is imported only when its command runs."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys

from .. import telemetry
from ..errors import ConfigError, RemediatorError
from ..redaction import install_filter

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("shared.cli.config_cmd", "check the configuration and print it (no secrets)"),
    "token": ("shared.cli.token_cmd", "try the target's stored secret against Entra ID and explain the answer"),
    "cyclecloud": ("shared.cli.cyclecloud_cmd", "check the CycleCloud connection (probe)"),
    "validate": ("shared.cli.validate_cmd", "diagnose a target: everything wrong, in plain English"),
    "rotate": ("shared.cli.rotate_cmd", "rotate a target's client secret (crash-safe)"),
    "roles": ("shared.cli.roles_cmd", "plan or apply the target's role assignments"),
    "remediate": ("shared.cli.remediate_cmd", "validate, fix what can be fixed, validate again"),
    "targets": ("shared.cli.targets_cmd", "every target at a glance: status, expiry, rotations, open operations"),
    "migrate": ("shared.cli.migrate_cmd", "move a target from its client secret to the VM's managed identity"),
}


def command_named(argv: list[str]) -> str | None:
    """The command `argv` asks for: its first word that is not one of the top-level options (`-v`, `-h`, which
    take no value), or None (`--help` alone, or no command)."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every command's name and help come from COMMANDS; only `command`'s module is imported and adds its
    arguments, so `--help` and a mistyped command cost no SDK import."""
    parser = argparse.ArgumentParser(prog="python -m shared", description="CycleCloud Credential Remediator")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(command_parser)
            command_parser.set_defaults(_module=module)
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser(command_named(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    # azure-identity logs every refused token request at WARNING; the commands explain those refusals
    # themselves, in plain English, so the raw text would only repeat them
    logging.getLogger("azure.identity").setLevel(logging.ERROR)
    install_filter()
    telemetry.configure()  # only when the operator's environment asks for it (docs/operations.md)
    try:
        return int(asyncio.run(args._module.run(args)))
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    except RemediatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the next run resumes where this one stopped", file=sys.stderr)
        return 130
    finally:
        telemetry.flush()  # a short-lived process: export what it recorded before exiting
