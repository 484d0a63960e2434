"""Network faults between the steps and PostgreSQL/Redis: resets and stalls mid-backup and mid-restore.

The step's ``--port``/``--url`` points at a fault-injecting TCP proxy (tests/faults.py) in front of a
real server. Every outcome is one of: the step finishes and the data round-trips identically, or it
exits 1 and leaves no manifest (the run never becomes complete) and says what the target holds.
``proxy.injected`` counts the faults each test injected (and, where the step finished, survived).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from steps.storage.catalog import new_run_id
from tests.faults import FaultPlan, FaultProxy
from tests.harness import PostgresServer, RedisServer
from tests.integration.fault_support import (
    BULK_ROWS,
    assert_incomplete,
    catalog_step,
    pg_backup_then_change,
    pg_content,
    pg_step,
    prior_copies,
    redis_content,
    redis_step,
)

pytestmark = pytest.mark.timeout(120)
KIB = 1024


# ---- PostgreSQL ---------------------------------------------------------------------------------


def test_pg_backup_reset_mid_dump_exits_1_without_manifest_then_converges(
    seeded_pg: PostgresServer, tmp_path: Path
) -> None:
    pg, store, run_id = seeded_pg, f"file://{tmp_path / 'store'}", new_run_id()
    # every connection that has carried 2 MiB towards the step is reset: only beta's pg_dump does
    with FaultProxy(pg.port, FaultPlan(reset_down_after=2048 * KIB)) as proxy:
        broken = pg_step(pg, store, "backup", "--run-id", run_id, "--databases", "alpha,beta", port=proxy.port)
    assert proxy.injected == 1
    assert broken.code == 1, broken.stdout
    assert "pg_dump of database 'beta' failed" in broken.error and "\n" not in broken.error
    assert_incomplete(store, run_id, "postgres")
    assert not list((tmp_path / "store").rglob("beta.dump"))  # the truncated dump was removed

    again = pg_step(pg, store, "backup", "--run-id", run_id, "--databases", "alpha,beta")  # Argo's retry
    assert again.code == 0 and again.result["manifest_written"] is True, again.stdout
    assert catalog_step(store, "verify", "--run-id", run_id).code == 0
    assert pg_step(pg, store, "verify", "--run-id", run_id).code == 0


def test_pg_backup_survives_a_stall_mid_dump_and_restores_identically(
    seeded_pg: PostgresServer, tmp_path: Path
) -> None:
    pg, store = seeded_pg, f"file://{tmp_path / 'store'}"
    before = pg_content(pg)
    plan = FaultPlan(stall_after=2048 * KIB, stall_seconds=3, max_injected=1)
    with FaultProxy(pg.port, plan) as proxy:
        t0 = time.monotonic()
        backup = pg_step(pg, store, "backup", "--databases", "alpha,beta", port=proxy.port)
        took = time.monotonic() - t0
    assert backup.code == 0, backup.stdout
    assert proxy.injected == 1 and took >= 3  # one 3 s stall inside beta's data, survived
    run_id = backup.result["run_id"]
    assert catalog_step(store, "verify", "--run-id", run_id).code == 0

    pg.psql("DELETE FROM bulk WHERE id % 3 = 0", "beta")
    pg.psql("UPDATE notes SET body = 'changed'", "alpha")
    restored = pg_step(pg, store, "restore", "--run-id", run_id, "--confirm")
    assert restored.code == 0, restored.stdout
    assert pg_content(pg) == before
    assert before["beta"].startswith(f"{BULK_ROWS}:")


def test_pg_restore_reset_mid_restore_puts_every_old_database_back(seeded_pg: PostgresServer, tmp_path: Path) -> None:
    pg, store = seeded_pg, f"file://{tmp_path / 'store'}"
    expected = pg_backup_then_change(pg, store)
    before = pg_content(pg)

    # pg_restore's connection is reset once it has sent 512 KiB: in beta's COPY, after alpha is done
    with FaultProxy(pg.port, FaultPlan(reset_after=512 * KIB)) as proxy:
        broken = pg_step(pg, store, "restore", "--confirm", "--jobs", "1", port=proxy.port)
    assert proxy.injected >= 1
    assert broken.code == 1, broken.stdout
    error = broken.error
    assert "\n" not in error and "pg_restore of database 'beta' failed" in error
    assert "failed at database 'beta'" in error
    assert "nothing was replaced: alpha, beta back as before the restore" in error
    assert "re-run the restore" in error
    assert pg_content(pg) == before  # what the error says: alpha's finished restore is undone too
    assert prior_copies(pg) == []

    again = pg_step(pg, store, "restore", "--confirm")  # the retry converges
    assert again.code == 0, again.stdout
    assert pg_content(pg) == expected
    assert prior_copies(pg) == []


def test_pg_restore_reset_mid_restore_with_drop_first_says_which_databases_it_left_how(
    seeded_pg: PostgresServer, tmp_path: Path
) -> None:
    pg, store = seeded_pg, f"file://{tmp_path / 'store'}"
    expected = pg_backup_then_change(pg, store)

    with FaultProxy(pg.port, FaultPlan(reset_after=512 * KIB)) as proxy:
        broken = pg_step(pg, store, "restore", "--confirm", "--jobs", "1", "--strategy", "drop-first", port=proxy.port)
    assert proxy.injected >= 1
    assert broken.code == 1, broken.stdout
    error = broken.error
    assert "\n" not in error and "pg_restore of database 'beta' failed" in error
    assert "stopped at database 'beta'" in error
    assert "restored alpha;" in error and "beta interrupted (may be dropped or partly restored)" in error
    assert "not touched none" in error and "re-run the restore" in error
    now = pg_content(pg)
    assert now["alpha"] == expected["alpha"]  # what the error says: alpha restored ...
    assert now["beta"] != expected["beta"]  # ... beta not

    again = pg_step(pg, store, "restore", "--confirm", "--strategy", "drop-first")  # the retry converges
    assert again.code == 0, again.stdout
    assert pg_content(pg) == expected


# ---- Redis --------------------------------------------------------------------------------------


def proxy_url(proxy: FaultProxy) -> str:
    return f"redis://127.0.0.1:{proxy.port}"


def test_redis_backup_reset_mid_rdb_exits_1_without_manifest_then_converges(
    seeded_redis: RedisServer, tmp_path: Path
) -> None:
    srv, store, run_id = seeded_redis, f"file://{tmp_path / 'store'}", new_run_id()
    with FaultProxy(srv.port, FaultPlan(reset_down_after=256 * KIB)) as proxy:
        broken = redis_step(srv, store, "backup", "--run-id", run_id, url=proxy_url(proxy))
    assert proxy.injected == 1
    assert broken.code == 1, broken.stdout
    assert "RDB" in broken.error and "\n" not in broken.error
    assert_incomplete(store, run_id, "redis")
    assert not list((tmp_path / "store").rglob("dump.rdb"))

    again = redis_step(srv, store, "backup", "--run-id", run_id)
    assert again.code == 0 and again.result["manifest_written"] is True, again.stdout
    assert catalog_step(store, "verify", "--run-id", run_id).code == 0
    assert redis_step(srv, store, "verify", "--run-id", run_id).code == 0


def test_redis_backup_survives_a_short_stall_and_fails_cleanly_on_a_long_one(
    seeded_redis: RedisServer, tmp_path: Path
) -> None:
    srv, store = seeded_redis, f"file://{tmp_path / 'store'}"
    before = redis_content(srv)
    short = FaultPlan(stall_after=256 * KIB, stall_seconds=2, max_injected=1)
    with FaultProxy(srv.port, short) as proxy:
        backup = redis_step(srv, store, "backup", "--timeout", "20", url=proxy_url(proxy))
    assert backup.code == 0, backup.stdout
    assert proxy.injected == 1  # one 2 s stall inside the RDB, survived
    run_id = backup.result["run_id"]

    long_stall = FaultPlan(stall_after=256 * KIB, stall_seconds=4, max_injected=1)
    late = new_run_id()
    with FaultProxy(srv.port, long_stall) as proxy:
        stalled = redis_step(srv, store, "backup", "--run-id", late, "--timeout", "1", url=proxy_url(proxy))
    assert proxy.injected == 1
    assert stalled.code == 1 and "timed out" in stalled.error, stalled.stdout
    assert_incomplete(store, late, "redis")

    srv.client().flushall()
    restored = redis_step(srv, store, "restore", "--run-id", run_id, "--confirm", "--flush")
    assert restored.code == 0, restored.stdout
    assert redis_content(srv) == before


def test_redis_restore_survives_one_reset_mid_copy(seeded_redis: RedisServer, tmp_path: Path) -> None:
    srv, store = seeded_redis, f"file://{tmp_path / 'store'}"
    before = redis_content(srv)
    assert redis_step(srv, store, "backup").code == 0
    srv.client().flushall()
    # the connection that carries the RESTORE pipeline is reset after 256 KiB, once
    with FaultProxy(srv.port, FaultPlan(reset_after=256 * KIB, max_injected=1)) as proxy:
        restored = redis_step(srv, store, "restore", "--confirm", "--flush", url=proxy_url(proxy))
    assert proxy.injected == 1
    assert restored.code == 0, restored.stdout  # the batch was re-sent (RESTORE REPLACE is idempotent)
    assert "connection to the target lost; re-sending the batch" in restored.stderr
    assert redis_content(srv) == before


def test_redis_restore_that_keeps_being_reset_exits_1_and_says_the_target_is_partial(
    seeded_redis: RedisServer, tmp_path: Path
) -> None:
    srv, store = seeded_redis, f"file://{tmp_path / 'store'}"
    before = redis_content(srv)
    assert redis_step(srv, store, "backup").code == 0
    with FaultProxy(srv.port, FaultPlan(reset_after=256 * KIB)) as proxy:
        broken = redis_step(srv, store, "restore", "--confirm", "--flush", url=proxy_url(proxy))
    assert proxy.injected >= 2
    assert broken.code == 1, broken.stdout
    assert "\n" not in broken.error
    assert "flushed" in broken.error and "partial" in broken.error
    assert len(redis_content(srv)) < len(before)

    again = redis_step(srv, store, "restore", "--confirm", "--flush")
    assert again.code == 0, again.stdout
    assert redis_content(srv) == before
