"""Fixtures shared by the integration tests of one kind of fault."""

from __future__ import annotations

import pytest

from tests.harness import PostgresServer, RedisServer
from tests.integration.fault_support import seed_pg, seed_redis


@pytest.fixture
def seeded_pg(pg: PostgresServer) -> PostgresServer:
    """The module's Postgres server with the fault tests' databases."""
    seed_pg(pg)
    return pg


@pytest.fixture
def seeded_redis(redis_srv: RedisServer) -> RedisServer:
    """The module's Redis server with the fault tests' keys."""
    seed_redis(redis_srv)
    return redis_srv
