"""``tenant-dr``: build, lint and run the Argo packages of a tenant."""

from __future__ import annotations

import sys
from pathlib import Path
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


@cli.command()
@config_option
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("dist"),
    show_default=True,
    help="Output directory: <out>/<package>/... and <out>/kustomization.yaml.",
)
def build(config_path: str | None, out_dir: Path) -> None:
    """Compile the tenant's packages (argopm layout) and a kustomization over them."""
    from rich.console import Console
    from rich.table import Table

    from workflows.build import build as build_packages
    from workflows.images import ImagesError

    cfg = load_or_fail(config_path)
    try:
        written = build_packages(cfg, out_dir)
    except ImagesError as exc:
        fail(str(exc))
    table = Table(title=f"tenant-dr build: tenant {cfg.name} -> {out_dir}", title_justify="left")
    for column in ("package", "kind", "name", "file"):
        table.add_column(column)
    for w in written:
        table.add_row(w.package or "-", w.kind, w.name, str(w.path.relative_to(out_dir)))
    Console(width=140).print(table)
    click.echo(f"wrote {len(written)} files; next: tenant-dr lint {out_dir}")


@cli.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--images-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Directory with images.yaml and <key>/Dockerfile (default: the repository's images/).",
)
def lint(directory: Path, images_dir: Path | None) -> None:
    """Check built packages offline: strict schema, Argo's semantic rules, step wiring and images."""
    from workflows.lint import lint_bundle

    findings = lint_bundle(directory, images_dir=images_dir)
    for finding in findings:
        click.echo(str(finding))
    if findings:
        click.echo(f"{len(findings)} finding(s) in {directory}", err=True)
        sys.exit(1)
    click.echo(f"ok: {directory} passes the schema, semantic and wiring checks")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="tenant-dr")
