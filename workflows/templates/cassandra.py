"""Cassandra: ``python -m steps.cassandra backup|restore`` wiring (pod exec on the tenant's cluster)."""

from __future__ import annotations

from workflows.config import TenantConfig
from workflows.templates.common import Param, kube_flags, secret_env_from
from workflows.templates.component import ComponentWiring, Rule


def wiring(cfg: TenantConfig) -> ComponentWiring:
    """Pods, keyspaces and data dir from the config; CQL credentials (if any) from their Secret."""
    cs = cfg.components.cassandra
    env = []
    if cs.credentials is not None:
        if cs.credentials.username_key:
            env.append(secret_env_from("CASSANDRA_USERNAME", cs.credentials.secret, cs.credentials.username_key))
        env.append(secret_env_from("CASSANDRA_PASSWORD", cs.credentials.secret, cs.credentials.password_key))
    keyspaces = ",".join(cs.keyspaces)
    pods = (
        Rule(cs.namespace, ("",), ("pods",), ("list",)),
        Rule(cs.namespace, ("",), ("pods/exec",), ("create", "get")),
    )
    return ComponentWiring(
        name="cassandra",
        title="Cassandra",
        backup_description=(
            f"`nodetool snapshot` on every pod `{cs.selector}` in `{cs.namespace}`, each pod's keyspace "
            f"({keyspaces}) snapshot streamed as tar.zst into the backup store, schema and token map recorded, "
            f"snapshots cleared."
        ),
        restore_description=(
            f"Applies the schema if missing, truncates the tables and copies each pod's SSTables back into the "
            f"pods `{cs.selector}` in `{cs.namespace}`, loads them and verifies. Needs the same pod count."
        ),
        connection=[
            ("--namespace", cs.namespace),
            ("--selector", cs.selector),
            ("--container", cs.container),
            ("--data-dir", cs.data_dir),
            *kube_flags(cfg),
        ],
        env=env,
        backup_flags=[("--keyspaces", keyspaces)],
        restore_params=[Param("keyspaces", "Comma-separated keyspaces to restore.", keyspaces)],
        restore_flags=[("--keyspaces", "{{inputs.parameters.keyspaces}}")],
        kube=True,
        backup_rules=pods,
        restore_rules=pods,
    )
