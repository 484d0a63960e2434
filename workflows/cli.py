"""``tenant-dr``: build, lint and run the Argo packages of a tenant."""

from __future__ import annotations

import sys
from typing import Any

import click

from workflows import __version__
from workflows.config import ConfigError, TenantConfig, dump_config, load_config

CONFIG_ENV = "TENANT_DR_CONFIG"


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit (only CLI entry points call this)."""
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(code)


def config_option(fn: Any) -> Any:
    """``--config FILE`` (env ``TENANT_DR_CONFIG``); the embedded default tenant when omitted."""
    return click.option(
        "--config",
        "config_path",
        envvar=CONFIG_ENV,
        type=click.Path(dir_okay=False),
        default=None,
        help="Tenant config YAML (default: the embedded default tenant).",
    )(fn)


def load_or_fail(path: str | None) -> TenantConfig:
    """Load the config or exit 2 with one line naming the field."""
    try:
        return load_config(path)
    except ConfigError as exc:
        fail(str(exc))
        raise AssertionError("unreachable") from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="tenant-dr")
def cli() -> None:
    """Back up, restore and recreate a single-tenant SaaS stack with Argo Workflows."""


@cli.group()
def config() -> None:
    """Inspect the tenant config."""


@config.command("show")
@config_option
def config_show(config_path: str | None) -> None:
    """Print the effective tenant config (defaults filled in) as YAML."""
    click.echo(dump_config(load_or_fail(config_path)), nl=False)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="tenant-dr")
