"""Redis: ``python -m steps.redis backup|restore`` wiring."""

from __future__ import annotations

from workflows.config import TenantConfig
from workflows.templates.common import Param, secret_env
from workflows.templates.component import ComponentWiring


def wiring(cfg: TenantConfig) -> ComponentWiring:
    """URL from the config; the password from its Secret (``REDIS_PASSWORD``).

    A restore makes the target equal to the backup (no stray keys survive): ``flush`` empties it first,
    ``swap`` fills spare databases and swaps them in (the ``mode`` parameter; default from the config).
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
            f"Loads the RDB into an ephemeral redis-server inside the step and copies every key (DUMP/RESTORE with "
            f"TTLs) into `{rd.url}`, then compares key counts. Mode flush empties the target first; mode swap fills "
            "spare databases, checks them and SWAPDBs them into place, so a failure changes nothing clients see."
        ),
        connection=[("--url", rd.url)],
        env=[secret_env("REDIS_PASSWORD", rd.password)] if rd.password else [],
        backup_flags=[] if rd.bgsave else [("--no-bgsave", None)],
        restore_params=[
            Param(
                "mode",
                "flush: FLUSHALL the target, then copy. swap: copy into spare empty databases, check, then SWAPDB "
                "(atomic for clients; needs a spare database per backed-up one and memory for both copies).",
                rd.restore_mode,
                ("flush", "swap"),
            )
        ],
        restore_flags=[("--mode", "{{inputs.parameters.mode}}"), ("--operation", "{{workflow.name}}")],
        restore_memory="4Gi",
    )
