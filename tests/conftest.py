"""Shared fixtures: real Postgres, Redis and S3 (moto server) on free ports, and store URLs."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import (
    PostgresServer,
    RedisServer,
    S3Server,
    postgres_server,
    redis_server,
    register_test_secret,
    s3_server,
)

# Fixtures of the HTTP-level fakes (fake_kube, fake_kube_factory, ...).
pytest_plugins = ["tests.fakes.kube"]

# Fake credentials for moto; no real AWS is ever contacted (AWS_ENDPOINT_URL points at moto).
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
)
register_test_secret(os.environ["AWS_SECRET_ACCESS_KEY"])


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """moto S3 server for the whole session; AWS_ENDPOINT_URL points at it."""
    with s3_server() as server:
        os.environ["AWS_ENDPOINT_URL"] = server.endpoint
        yield server
        os.environ.pop("AWS_ENDPOINT_URL", None)


@pytest.fixture
def bucket(s3: S3Server) -> str:
    """A fresh, empty bucket."""
    name = f"tdr-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["file", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL for each backend: ``file://`` and ``s3://`` (moto)."""
    if request.param == "file":
        return f"file://{tmp_path / 'store'}"
    name = request.getfixturevalue("bucket")
    return f"s3://{name}/backups"


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    """A real PostgreSQL server (one per test module)."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def redis_srv() -> Iterator[RedisServer]:
    """A real redis-server (one per test module)."""
    with redis_server() as server:
        yield server


@pytest.fixture
def outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A per-test STEP_OUTPUT_DIR."""
    out = tmp_path / "outputs"
    monkeypatch.setenv("STEP_OUTPUT_DIR", str(out))
    return out
