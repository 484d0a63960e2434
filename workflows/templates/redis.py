"""Redis: ``python -m steps.redis backup|restore`` wiring."""

from __future__ import annotations

from workflows.config import TenantConfig
from workflows.templates.common import secret_env
from workflows.templates.component import ComponentWiring


def wiring(cfg: TenantConfig) -> ComponentWiring:
    """URL from the config; the password from its Secret (``REDIS_PASSWORD``).

    A restore always passes ``--flush``: the target ends up equal to the backup (no stray keys survive).
    """
    rd = cfg.components.redis
    return ComponentWiring(
        name="redis",
        title="Redis",
        backup_description=(
            f"{'BGSAVE on' if rd.bgsave else 'From'} `{rd.url}`, the RDB fetched over the replication protocol "
            "and streamed through zstd into the backup store, key counts by type read from it on the way."
        ),
        restore_description=(
            f"Loads the RDB into an ephemeral redis-server inside the step, flushes `{rd.url}` and copies every key "
            f"(DUMP/RESTORE with TTLs), then compares key counts."
        ),
        connection=[("--url", rd.url)],
        env=[secret_env("REDIS_PASSWORD", rd.password)] if rd.password else [],
        backup_flags=[] if rd.bgsave else [("--no-bgsave", None)],
        restore_flags=[("--flush", None), ("--operation", "{{workflow.name}}")],
        restore_memory="4Gi",
    )
