"""PostgreSQL: ``python -m steps.postgres backup|restore`` wiring."""

from __future__ import annotations

from workflows.config import TenantConfig
from workflows.templates.common import Param, secret_env
from workflows.templates.component import ComponentWiring


def wiring(cfg: TenantConfig) -> ComponentWiring:
    """Host, user and databases from the config; the password from its Secret (``PGPASSWORD``)."""
    pg = cfg.components.postgres
    databases = ",".join(pg.databases)
    return ComponentWiring(
        name="postgres",
        title="PostgreSQL",
        backup_description=(
            f"`pg_dumpall --globals-only` and one `pg_dump -Fc` per database ({databases}) on "
            f"`{pg.host}:{pg.port}`, streamed through zstd into the backup store."
        ),
        restore_description=(
            f"Replaces the chosen databases on `{pg.host}:{pg.port}`: restores globals (role passwords from the "
            f"backup), runs `pg_restore -j {pg.restore_jobs}` per database and compares row counts. With the swap "
            "strategy each old database is kept renamed aside until every new one checks out, and put back if "
            "anything fails."
        ),
        connection=[("--host", pg.host), ("--port", str(pg.port)), ("--user", pg.user)],
        env=[secret_env("PGPASSWORD", pg.password)],
        backup_flags=[("--databases", databases)],
        restore_params=[
            Param(
                "databases",
                "Comma-separated databases to restore (the others are left untouched).",
                databases,
            ),
            Param(
                "strategy",
                "swap: keep each old database aside until every restored one matches the backup, put them back on "
                "failure (needs disk for both copies). drop-first: drop each database before restoring it.",
                pg.restore_strategy,
                ("swap", "drop-first"),
            ),
        ],
        restore_flags=[
            ("--databases", "{{inputs.parameters.databases}}"),
            ("--strategy", "{{inputs.parameters.strategy}}"),
            ("--jobs", str(pg.restore_jobs)),
            ("--operation", "{{workflow.name}}"),
        ],
        restore_memory="2Gi",
    )
