"""``tenant-dr``: build, lint, document and run the Argo packages of a tenant."""

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


@cli.command()
@config_option
@click.option(
    "--bundle",
    "bundle_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Read already built packages from this directory instead of building the config.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("docs/reference"),
    show_default=True,
    help="Where the pages go: <out>/README.md and <out>/<package>.md.",
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if the pages under --out are not current.")
def docs(config_path: str | None, bundle_dir: Path | None, out_dir: Path, check: bool) -> None:
    """Generate the template reference (one Markdown page per package) from the compiled packages."""
    from workflows.docs import BundleError, reference_for_config, render_reference, stale_pages, write_reference
    from workflows.images import ImagesError

    if bundle_dir is not None and config_path is not None:
        fail("--config and --bundle are exclusive: --bundle documents packages that are already built")
    try:
        pages = render_reference(bundle_dir) if bundle_dir else reference_for_config(load_or_fail(config_path))
    except (BundleError, ImagesError) as exc:
        fail(str(exc))
    if check:
        stale = stale_pages(pages, out_dir)
        if stale:
            click.echo(f"stale: {', '.join(stale)} under {out_dir}; run: tenant-dr docs --out {out_dir}", err=True)
            sys.exit(1)
        click.echo(f"ok: {out_dir} is current ({len(pages)} pages)")
        return
    written = write_reference(pages, out_dir)
    click.echo(f"wrote {len(written)} pages to {out_dir}: {', '.join(p.name for p in written)}")


@cli.command("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-p", "--parameter", "parameters", multiple=True, metavar="NAME=VALUE", help="Workflow parameter.")
@click.option(
    "--secrets",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML {secret-name: {key: value}} for secretKeyRef and secret volumes "
    "(else env TENANT_DR_SECRET_<NAME>__<KEY>).",
)
@click.option(
    "--configmaps",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML {configmap-name: {key: value}}, added to the ConfigMaps found in the bundle.",
)
@click.option(
    "--env",
    "env_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="KEY=VALUE lines added to every step's environment (e.g. TENANT_DR_EXECUTOR, AWS_ENDPOINT_URL).",
)
@click.option("--approve", is_flag=True, help="Resume suspend nodes (approval gates) instead of stopping there.")
@click.option(
    "--backoff-scale",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Multiply retry backoff waits by this (0.01 turns 30s into 0.3s).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="TENANT_DR_RUNNER_STATE_DIR",
    default=Path("~/.local/state/tenant-dr/runner"),
    show_default=True,
    help="Run logs and reports (runs/<name>/) and mutex lock files (locks/); share it between concurrent runs.",
)
@click.option(
    "--bundle",
    "bundle_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Directory of built packages for templateRef (default: the nearest parent with kustomization.yaml).",
)
@click.option("--name", default=None, help="Workflow name (default: <template>-<5 random chars>).")
@click.option("--namespace", default="argo", show_default=True, help="{{workflow.namespace}} and the mutex namespace.")
@click.option("--plain", is_flag=True, help="One line per node change even on a terminal (no live tree).")
@click.option(
    "--retry",
    is_flag=True,
    help="Continue the failed run --name like `argo retry`: its Succeeded nodes and their outputs are kept, "
    "failed ones (and their parents) run again, then onExit.",
)
@click.option(
    "--steps-path",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Directory holding the `steps` package to run (default: the installed one, e.g. another checkout).",
)
def run_cmd(
    file: Path,
    parameters: tuple[str, ...],
    secrets: Path | None,
    configmaps: Path | None,
    env_file: Path | None,
    approve: bool,
    backoff_scale: float,
    state_dir: Path,
    bundle_dir: Path | None,
    name: str | None,
    namespace: str,
    plain: bool,
    retry: bool,
    steps_path: Path | None,
) -> None:
    """Run a compiled WorkflowTemplate locally; its steps run with this Python (see docs/runner.md).

    Exit code: 0 Succeeded, 1 Failed, 2 refused (unsupported construct or bad input), 3 Error.
    """
    from rich.console import Console

    from workflows.runner import EXIT_REFUSED, RefusedError, Runner, RunOptions, load_options_files
    from workflows.runner_view import LiveView, PlainView, summary

    params: dict[str, str] = {}
    for item in parameters:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"-p {item}: expected NAME=VALUE", EXIT_REFUSED)
        params[key] = value
    try:
        secret_maps, config_maps, extra_env = load_options_files(secrets, configmaps, env_file)
        options = RunOptions(
            parameters=params,
            secrets=secret_maps,
            configmaps=config_maps,
            env=extra_env,
            approve=approve,
            backoff_scale=backoff_scale,
            state_dir=state_dir,
            name=name,
            namespace=namespace,
            bundle_dir=bundle_dir,
            steps_path=steps_path,
            retry=retry,
        )
        runner = Runner(file, options)
    except RefusedError as exc:
        fail(f"refused: {exc}", EXIT_REFUSED)
        return
    console = Console(width=max(Console().width, 140))
    click.echo(f"running {runner.target.name} as {runner.name} (logs: {runner.run_dir / 'logs'})")
    try:
        if plain or not sys.stdout.isatty():
            runner.listener = PlainView(sys.stdout, runner.name)
            result = runner.run()
        else:
            with LiveView(console, runner) as view:
                runner.listener = view
                result = runner.run()
    except KeyboardInterrupt:
        runner.stop.set()
        fail("interrupted", 1)
        return
    summary(console, runner, result)
    sys.exit(result.exit_code)


@cli.command(
    "catalog",
    context_settings={"ignore_unknown_options": True},
)
@config_option
@click.argument("action")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def catalog_cmd(ctx: click.Context, config_path: str | None, action: str, args: tuple[str, ...]) -> None:
    """Run ``python -m steps.catalog ACTION`` on the tenant's store (tenant, store and SSE from the config).

    Examples: ``tenant-dr catalog list``, ``tenant-dr catalog latest``, ``tenant-dr catalog verify --run-id latest``.
    Credentials come from the environment as for any AWS client (``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID`` ...).
    """
    import os
    import subprocess

    from workflows.templates.common import store_flags

    cfg = load_or_fail(config_path)
    argv = [sys.executable, "-m", "steps.catalog", action]
    for flag, value in store_flags(cfg):
        argv += [flag] if value is None else [flag, value]
    env = dict(os.environ)
    if cfg.store.endpoint:
        env.setdefault("AWS_ENDPOINT_URL", cfg.store.endpoint)
    ctx.exit(subprocess.run([*argv, *args], env=env, check=False).returncode)


@cli.command("submit")
@click.argument("template")
@click.option("-p", "--parameter", "parameters", multiple=True, metavar="NAME=VALUE", help="Workflow parameter.")
@click.option("--server", envvar="ARGO_SERVER", default="", help="Argo Server URL or host:port (env ARGO_SERVER).")
@click.option("--namespace", "-n", envvar="ARGO_NAMESPACE", default="argo", show_default=True)
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="File holding the bearer token (else env ARGO_TOKEN; `argo auth token` prints one).",
)
@click.option("--ui-url", envvar="ARGO_UI_URL", default=None, help="Argo UI base URL for the link (default: --server).")
@click.option("--insecure", "-k", is_flag=True, envvar="ARGO_INSECURE_SKIP_VERIFY", help="Skip TLS verification.")
def submit_cmd(
    template: str,
    parameters: tuple[str, ...],
    server: str,
    namespace: str,
    token_file: Path | None,
    ui_url: str | None,
    insecure: bool,
) -> None:
    """Submit a WorkflowTemplate via the Argo Server REST API; print the workflow name and its UI link.

    Example: tenant-dr submit tenant-recreate -p run-id=latest -p drill=true
    """
    import os

    from workflows.submit import SubmitError, submit_template

    params: dict[str, str] = {}
    for item in parameters:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"-p {item}: expected NAME=VALUE")
        params[key] = value
    token = token_file.read_text(encoding="utf-8") if token_file else os.environ.get("ARGO_TOKEN", "")
    try:
        created = submit_template(server, namespace, template, params, token, ui_url=ui_url, insecure=insecure)
    except SubmitError as exc:
        fail(str(exc), exc.code)
        return
    click.echo(f"submitted {created.name} in {created.namespace}")
    click.echo(created.link)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="tenant-dr")
