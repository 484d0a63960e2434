"""Hera definitions: one module per component (its step wiring) plus the templates built over them."""

from __future__ import annotations

from collections.abc import Callable

from workflows.config import TenantConfig
from workflows.templates import argo, cassandra, elasticsearch, postgres, redis
from workflows.templates.component import ComponentWiring

WIRINGS: dict[str, Callable[[TenantConfig], ComponentWiring]] = {
    "elasticsearch": elasticsearch.wiring,
    "cassandra": cassandra.wiring,
    "postgres": postgres.wiring,
    "redis": redis.wiring,
    "argo": argo.wiring,
}


def enabled_wirings(cfg: TenantConfig) -> list[ComponentWiring]:
    """The wiring of every enabled component, in the config's fixed order."""
    return [WIRINGS[name](cfg) for name in cfg.components.enabled()]
