"""Elasticsearch: ``python -m steps.elasticsearch backup|restore`` wiring."""

from __future__ import annotations

from workflows.config import TenantConfig
from workflows.templates.common import Param, secret_env_from
from workflows.templates.component import ComponentWiring


def wiring(cfg: TenantConfig) -> ComponentWiring:
    """URL, repository and indices from the config; credentials (if any) from their Secret."""
    es = cfg.components.elasticsearch
    env = []
    if es.credentials is not None:
        if es.credentials.username_key:
            env.append(secret_env_from("ES_USERNAME", es.credentials.secret, es.credentials.username_key))
        env.append(secret_env_from("ES_PASSWORD", es.credentials.secret, es.credentials.password_key))
    return ComponentWiring(
        name="elasticsearch",
        title="Elasticsearch",
        backup_description=(
            f"A snapshot of `{es.indices}` on `{es.url}` into the S3 repository `{es.repository}` "
            f"(`{cfg.name}/es-repository/` of the store); PARTIAL snapshots fail the step."
        ),
        restore_description=(
            f"Registers the repository (read-only when this cluster is not the writer), deletes (or closes) the "
            f"target indices the snapshot contains, restores them on `{es.url}`, waits for green and compares "
            f"doc counts."
        ),
        connection=[("--url", es.url), ("--repository", es.repository)],
        env=env,
        backup_flags=[("--indices", es.indices)],
        restore_params=[
            Param(
                "mode",
                "What happens to target indices the snapshot contains: delete them, or close them (kept on disk).",
                "delete",
                ("delete", "close"),
            ),
        ],
        restore_flags=[("--mode", "{{inputs.parameters.mode}}"), ("--operation", "{{workflow.name}}")],
        backup_memory="512Mi",
        restore_memory="512Mi",
    )
