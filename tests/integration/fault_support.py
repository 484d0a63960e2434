"""Helpers of the Postgres/Redis network- and process-fault tests: seed data, run or SIGKILL steps."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from steps.storage import open_store
from steps.storage.catalog import Catalog
from tests.harness import REPO, PostgresServer, RedisServer, StepRun, assert_no_secret, parsed_run, run_step

TENANT = "acme"
PG_DATABASES = ("alpha", "beta")  # restored in this order (sorted): small first, then the large one
BULK_ROWS = 40_000  # beta.bulk: ~4 MiB of pg_dump output, so faults at 512 KiB land in its data
REDIS_KEYS = 3_000  # 512 random bytes each: a ~1.6 MiB RDB that zstd cannot shrink


def seed_pg(pg: PostgresServer) -> None:
    """``alpha`` (300 small rows) and ``beta`` (``BULK_ROWS`` rows of md5 text); no restore leftovers."""
    for db in [*prior_copies(pg), *PG_DATABASES]:
        pg.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    for db in PG_DATABASES:
        pg.psql(f"CREATE DATABASE {db}")
    pg.psql(
        "CREATE TABLE notes (id int PRIMARY KEY, body text);"
        "INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 300) g",
        "alpha",
    )
    pg.psql(
        "CREATE TABLE bulk (id int PRIMARY KEY, a text, b text, c text);"
        "INSERT INTO bulk SELECT g, md5(g::text), md5((2 * g)::text), md5((3 * g)::text) "
        f"FROM generate_series(1, {BULK_ROWS}) g",
        "beta",
    )


def prior_copies(pg: PostgresServer) -> list[str]:
    """Databases a swap restore renamed aside (``tdr_prior_*``, ``tdr_stale_*``) that are still there."""
    return pg.psql("SELECT datname FROM pg_database WHERE datname ~ '^tdr_(prior|stale)_' ORDER BY 1").split()


def pg_backup_then_change(pg: PostgresServer, store: str) -> dict[str, str]:
    """Back up ``alpha`` and ``beta``, then change both; returns their content as backed up."""
    backup = pg_step(pg, store, "backup", "--databases", "alpha,beta")
    assert backup.code == 0, backup.stdout
    expected = pg_content(pg)
    pg.psql("UPDATE notes SET body = 'changed'", "alpha")
    pg.psql("DELETE FROM bulk WHERE id > 100", "beta")
    return expected


def pg_content(pg: PostgresServer) -> dict[str, str]:
    """Row count and an ordered md5 of every row, per database (``absent`` when it does not exist)."""
    present = set(pg.psql("SELECT datname FROM pg_database").split())
    out = {}
    for db, table in zip(PG_DATABASES, ("notes", "bulk"), strict=True):
        if db not in present:
            out[db] = "absent"
            continue
        out[db] = pg.psql(
            f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY id)), '') FROM {table} t", db
        )
    return out


def pg_args(pg: PostgresServer, store: str, action: str, *extra: str, port: int | None = None) -> list[str]:
    """Arguments of ``steps.postgres <action>``; ``port`` points the step at a proxy instead."""
    common = ["--tenant", TENANT, "--store", store, "--host", "127.0.0.1", "--port", str(port or pg.port)]
    return [action, *common, "--user", "postgres", *extra]


def pg_step(pg: PostgresServer, store: str, action: str, *extra: str, port: int | None = None) -> StepRun:
    """Run ``steps.postgres`` to completion (60 s at most)."""
    args = pg_args(pg, store, action, *extra, port=port)
    return run_step("postgres", args, env={"PGPASSWORD": pg.password}, timeout=60)


def seed_redis(srv: RedisServer) -> None:
    """``REDIS_KEYS`` random 512-byte strings in db0, a hash with a TTL in db3."""
    client = srv.client()
    client.flushall()
    client.config_set("repl-diskless-sync-delay", 0)
    pipe = client.pipeline(transaction=False)
    for i in range(REDIS_KEYS):
        pipe.set(f"k:{i}", os.urandom(512))
    pipe.execute()
    other = srv.client(3)
    other.hset("h", mapping={"a": "1", "b": "2"})
    other.expire("h", 3600)


def redis_content(srv: RedisServer) -> dict[tuple[int, bytes], bytes]:
    """Every key's DUMP payload in db0 and db3."""
    out = {}
    for db in (0, 3):
        client = srv.client(db)
        for key in client.scan_iter(count=1000):
            out[(db, key)] = client.dump(key)
    return out


def redis_args(url: str, store: str, action: str, *extra: str) -> list[str]:
    """Arguments of ``steps.redis <action>`` against ``url`` (the server or a proxy)."""
    return [action, "--tenant", TENANT, "--store", store, "--url", url, *extra]


def redis_step(srv: RedisServer, store: str, action: str, *extra: str, url: str | None = None) -> StepRun:
    """Run ``steps.redis`` to completion (60 s at most)."""
    args = redis_args(url or srv.url, store, action, *extra)
    return run_step("redis", args, env={"REDIS_PASSWORD": srv.password or ""}, timeout=60)


def catalog_step(store: str, action: str, *extra: str) -> StepRun:
    """Run ``steps.catalog`` (seal, verify, ...)."""
    return run_step("catalog", [action, "--tenant", TENANT, "--store", store, *extra], timeout=60)


def catalog_of(store: str) -> Catalog:
    """The tenant's catalog in ``store``."""
    return Catalog(open_store(store), TENANT)


class KilledStep:
    """A step started in its own process group, to be SIGKILLed with its children (like a pod kill)."""

    def __init__(self, module: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.stderr_path, self.stdout_path = workdir / "stderr", workdir / "stdout"
        full_env = {**os.environ, **env, "PYTHONPATH": str(REPO), "STEP_OUTPUT_DIR": str(workdir / "outputs")}
        with open(workdir / "stdout", "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"steps.{module}", *args],
                env=full_env,
                cwd=REPO,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.secrets = {v for k, v in env.items() if "PASSWORD" in k and len(v) >= 6}

    def kill_when(self, reached: Callable[[], Any], timeout: float = 30.0) -> None:
        """Poll ``reached`` every 5 ms; SIGKILL the whole process group once it holds (step still running)."""
        self.signal_when(reached, signal.SIGKILL, timeout)
        assert self.proc.returncode == -signal.SIGKILL

    def terminate_when(self, reached: Callable[[], Any], timeout: float = 30.0) -> StepRun:
        """SIGTERM the process group once ``reached`` holds, as Argo's executor does before the grace
        period's SIGKILL; the step's exit and its one-line result."""
        self.signal_when(reached, signal.SIGTERM, timeout)
        return parsed_run(self.proc.returncode, self.stdout_path.read_text(), self.stderr_path.read_text())

    def signal_when(self, reached: Callable[[], Any], sig: signal.Signals, timeout: float) -> None:
        """Send ``sig`` to the step's process group once ``reached`` holds, then wait for it to exit."""
        deadline = time.monotonic() + timeout
        try:
            while not reached():
                if self.proc.poll() is not None:
                    raise AssertionError(f"the step exited ({self.proc.returncode}) before the kill point")
                if time.monotonic() > deadline:
                    raise AssertionError(f"kill point not reached within {timeout}s")
                time.sleep(0.005)
            assert self.proc.poll() is None, "the step finished before it could be killed"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        assert_no_secret("a killed step's log", self.stderr_path.read_text(errors="replace"), self.secrets)


def assert_incomplete(store: str, run_id: str, component: str) -> None:
    """No manifest, the run cannot be sealed, and no run of the store claims to be complete."""
    assert not catalog_of(store).has_manifest(run_id, component)
    seal = catalog_step(store, "seal", "--run-id", run_id, "--components", component)
    assert seal.code == 3 and f"no manifest for {component}" in seal.error, seal.stdout
    assert not any(run.complete for run in catalog_of(store).list_runs())
