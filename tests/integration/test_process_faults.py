"""Process faults: PostgreSQL/Redis backup and restore steps SIGKILLed part-way, then re-run.

The step runs in its own process group and is killed with its children (pg_dump, pg_restore, the
ephemeral redis-server), like a pod killed by the node. Kill points are made deterministic by
polling the store or the server, or by freezing the step inside a transfer with a proxy stall
(tests/faults.py). After each kill: the run is not complete (no manifest, seal refused); the
re-run with the same run id converges and its manifest names only whole, verified objects.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest

from steps.storage.catalog import new_run_id
from tests.faults import FaultPlan, FaultProxy
from tests.harness import PostgresServer, RedisServer, pg_bin
from tests.integration.fault_support import (
    REDIS_KEYS,
    KilledStep,
    assert_incomplete,
    catalog_of,
    catalog_step,
    pg_args,
    pg_backup_then_change,
    pg_content,
    pg_step,
    prior_copies,
    redis_args,
    redis_content,
    redis_step,
)

pytestmark = pytest.mark.timeout(120)
KIB = 1024


def attempts(store_root: Path, run_id: str, component: str) -> set[str]:
    """Attempt directories that hold anything (finished objects or temp files)."""
    base = next(store_root.rglob(f"runs/{run_id}/{component}"), None)
    return {p.name for p in base.iterdir() if p.is_dir()} if base else set()


def converges(store: str, store_root: Path, run_id: str, component: str, killed: set[str]) -> None:
    """After the kill the run is incomplete; after the re-run (done by the caller) it is whole."""
    manifest = catalog_of(store).read_manifest(run_id, component)
    used = {o.name.split("/", 1)[0] for o in manifest.objects}
    assert len(used) == 1 and not used & killed, (used, killed)  # nothing of the killed attempt is used
    assert catalog_step(store, "verify", "--run-id", run_id).code == 0  # sizes and sha256 of every object
    seal = catalog_step(store, "seal", "--run-id", run_id, "--components", component)
    assert seal.code == 0, seal.stdout


# ---- backups ------------------------------------------------------------------------------------


def test_pg_backup_killed_after_its_first_object_then_rerun_converges(
    seeded_pg: PostgresServer, tmp_path: Path
) -> None:
    pg, root, run_id = seeded_pg, tmp_path / "store", new_run_id()
    store = f"file://{root}"
    args = pg_args(pg, store, "backup", "--run-id", run_id, "--databases", "alpha,beta")
    step = KilledStep("postgres", args, {"PGPASSWORD": pg.password}, tmp_path / "killed")
    step.kill_when(lambda: list(root.rglob("globals.sql")))  # the first object is in the store
    killed = attempts(root, run_id, "postgres")
    assert len(killed) == 1
    assert_incomplete(store, run_id, "postgres")

    again = pg_step(pg, store, "backup", "--run-id", run_id, "--databases", "alpha,beta")
    assert again.code == 0 and again.result["manifest_written"] is True, again.stdout
    converges(store, root, run_id, "postgres", killed)
    assert pg_step(pg, store, "verify", "--run-id", run_id).code == 0


def test_pg_backup_killed_mid_upload_then_rerun_converges(seeded_pg: PostgresServer, tmp_path: Path) -> None:
    pg, root, run_id = seeded_pg, tmp_path / "store", new_run_id()
    store = f"file://{root}"
    # beta's pg_dump is frozen after 2 MiB of output (its catalog queries alone are ~0.7 MiB);
    # the step is killed while that dump is half-written
    with FaultProxy(pg.port, FaultPlan(stall_after=2048 * KIB, stall_seconds=5, max_injected=1)) as proxy:
        args = pg_args(pg, store, "backup", "--run-id", run_id, "--databases", "alpha,beta", port=proxy.port)
        step = KilledStep("postgres", args, {"PGPASSWORD": pg.password}, tmp_path / "killed")
        step.kill_when(lambda: proxy.injected == 1 and list(root.rglob("beta.dump.tmp-*")))
    assert not list(root.rglob("beta.dump"))  # never published: only the temp file of the dead writer
    killed = attempts(root, run_id, "postgres")
    assert_incomplete(store, run_id, "postgres")

    again = pg_step(pg, store, "backup", "--run-id", run_id, "--databases", "alpha,beta")
    assert again.code == 0 and again.result["manifest_written"] is True, again.stdout
    converges(store, root, run_id, "postgres", killed)
    before = pg_content(pg)
    pg.psql("TRUNCATE bulk", "beta")
    restored = pg_step(pg, store, "restore", "--run-id", run_id, "--databases", "beta", "--confirm")
    assert restored.code == 0, restored.stdout
    assert pg_content(pg) == before


def test_redis_backup_killed_mid_upload_then_rerun_converges(seeded_redis: RedisServer, tmp_path: Path) -> None:
    srv, root, run_id = seeded_redis, tmp_path / "store", new_run_id()
    store = f"file://{root}"
    bulk = srv.client(5).pipeline(transaction=False)  # an RDB larger than the socket buffers on the way
    for i in range(16_000):
        bulk.set(f"bulk:{i}", os.urandom(KIB))
    bulk.execute()
    with FaultProxy(srv.port, FaultPlan(stall_after=256 * KIB, stall_seconds=5, max_injected=1)) as proxy:
        args = redis_args(f"redis://127.0.0.1:{proxy.port}", store, "backup", "--run-id", run_id)
        step = KilledStep("redis", args, {"REDIS_PASSWORD": srv.password or ""}, tmp_path / "killed")
        step.kill_when(lambda: proxy.injected == 1 and list(root.rglob("dump.rdb.tmp-*")))
    assert not list(root.rglob("dump.rdb"))
    killed = attempts(root, run_id, "redis")
    assert_incomplete(store, run_id, "redis")
    # the dead attempt's transfer still holds the server's RDB child (no RST reached it, as after a
    # node failure); the re-run's BGSAVE joins that child and must start its own save once it ends
    assert srv.client().info("persistence")["rdb_bgsave_in_progress"] == 1

    again = redis_step(srv, store, "backup", "--run-id", run_id, "--bgsave-timeout", "30")
    assert again.code == 0 and again.result["manifest_written"] is True, again.stdout
    converges(store, root, run_id, "redis", killed)
    assert redis_step(srv, store, "verify", "--run-id", run_id).code == 0


# ---- restores -----------------------------------------------------------------------------------


@contextlib.contextmanager
def restoring_until_alpha_is_replaced(
    pg: PostgresServer, store: str, tmp_path: Path, *extra: str
) -> Iterator[tuple[KilledStep, Callable[[], bool]]]:
    """A running ``restore --confirm``, and a check that ``alpha`` is no longer the database it was."""
    watch = psycopg2.connect(pg.dsn())
    watch.autocommit = True

    def oid() -> int | None:
        with watch.cursor() as cur:
            cur.execute("SELECT oid FROM pg_database WHERE datname = 'alpha'")
            row = cur.fetchone()
        return int(row[0]) if row else None

    alpha = oid()
    args = pg_args(pg, store, "restore", "--confirm", *extra, "--work-dir", str(tmp_path))
    try:
        yield KilledStep("postgres", args, {"PGPASSWORD": pg.password}, tmp_path / "killed"), lambda: oid() != alpha
    finally:
        watch.close()


def kill_once_alpha_is_replaced(pg: PostgresServer, store: str, tmp_path: Path, *extra: str) -> None:
    """Run ``restore --confirm`` and SIGKILL it once ``alpha`` is no longer the database it was."""
    with restoring_until_alpha_is_replaced(pg, store, tmp_path, *extra) as (step, replaced):
        step.kill_when(replaced)


def test_pg_restore_killed_after_renaming_the_first_database_aside_then_rerun_puts_it_back_and_converges(
    seeded_pg: PostgresServer, tmp_path: Path
) -> None:
    pg, store = seeded_pg, f"file://{tmp_path / 'store'}"
    expected = pg_backup_then_change(pg, store)
    before = pg_content(pg)

    kill_once_alpha_is_replaced(pg, store, tmp_path)  # renamed aside (maybe recreated), beta not yet done
    aside = prior_copies(pg)
    assert len(aside) == 1 and aside[0].endswith("_alpha")  # the old alpha, kept whole under another name
    assert pg.psql("SELECT count(*) FROM notes WHERE body = 'changed'", aside[0]) == "300"

    plan = pg_step(pg, store, "restore")  # a plan says what the re-run will do first, and changes nothing
    assert plan.code == 0, plan.stdout
    assert plan.result["plan"]["put_back_first"] == {"alpha": aside[0]}
    assert plan.result["plan"]["drop_and_recreate"] == ["alpha", "beta"]
    assert prior_copies(pg) == aside

    again = pg_step(pg, store, "restore", "--confirm")
    assert again.code == 0, again.stdout
    assert "put back the prior copy an interrupted restore left" in again.stderr
    assert pg_content(pg) == expected != before
    assert prior_copies(pg) == []


def test_pg_restore_sigtermed_after_renaming_the_first_database_aside_puts_it_back_before_it_exits(
    seeded_pg: PostgresServer, tmp_path: Path
) -> None:
    """Argo's stop and deadlines send SIGTERM first (SIGKILL after the grace period): the step undoes the swap."""
    pg, store = seeded_pg, f"file://{tmp_path / 'store'}"
    expected = pg_backup_then_change(pg, store)
    before = pg_content(pg)

    with restoring_until_alpha_is_replaced(pg, store, tmp_path) as (step, replaced):
        stopped = step.terminate_when(replaced)
    assert stopped.code == 1, stopped.stdout
    assert "terminated by SIGTERM" in stopped.error and "nothing was replaced: alpha back as before" in stopped.error
    assert pg_content(pg) == before and prior_copies(pg) == []  # put back by the step itself, not left to a re-run

    again = pg_step(pg, store, "restore", "--confirm")
    assert again.code == 0, again.stdout
    assert pg_content(pg) == expected != before


def test_pg_restore_with_drop_first_killed_after_dropping_the_first_database_then_rerun_converges(
    seeded_pg: PostgresServer, tmp_path: Path
) -> None:
    pg, store = seeded_pg, f"file://{tmp_path / 'store'}"
    expected = pg_backup_then_change(pg, store)

    kill_once_alpha_is_replaced(pg, store, tmp_path, "--strategy", "drop-first")  # dropped, beta not yet done
    assert pg_content(pg) != expected  # the kill left the target half-way
    assert prior_copies(pg) == []

    again = pg_step(pg, store, "restore", "--confirm", "--strategy", "drop-first")
    assert again.code == 0, again.stdout
    assert pg_content(pg) == expected


def test_redis_restore_killed_mid_copy_then_rerun_converges(seeded_redis: RedisServer, tmp_path: Path) -> None:
    srv, store = seeded_redis, f"file://{tmp_path / 'store'}"
    expected = redis_content(srv)
    assert redis_step(srv, store, "backup").code == 0
    srv.client().flushall()
    # the first RESTORE pipeline runs on the server, then its replies stall: the step is killed there
    with FaultProxy(srv.port, FaultPlan(stall_after=4 * KIB, stall_seconds=5, max_injected=1)) as proxy:
        args = redis_args(f"redis://127.0.0.1:{proxy.port}", store, "restore", "--confirm", "--flush")
        step = KilledStep("redis", args, {"REDIS_PASSWORD": srv.password or ""}, tmp_path / "killed")
        probe = srv.client()
        step.kill_when(lambda: proxy.injected == 1 and probe.dbsize() > 0)
    assert 0 < probe.dbsize() < REDIS_KEYS  # a partial restore

    again = redis_step(srv, store, "restore", "--confirm", "--flush")
    assert again.code == 0, again.stdout
    assert redis_content(srv) == expected


def test_redis_swap_restore_killed_mid_copy_leaves_the_clients_data_then_rerun_converges(
    seeded_redis: RedisServer, tmp_path: Path
) -> None:
    srv, store = seeded_redis, f"file://{tmp_path / 'store'}"
    expected = redis_content(srv)
    assert redis_step(srv, store, "backup").code == 0
    srv.client().delete(*[f"k:{i}" for i in range(0, REDIS_KEYS, 2)])
    srv.client().set("written:after-the-backup", "still the clients' data")
    before = redis_content(srv)
    # the staging databases fill while the clients' db0 and db3 stay as they are; killed mid-copy
    with FaultProxy(srv.port, FaultPlan(stall_after=4 * KIB, stall_seconds=5, max_injected=1)) as proxy:
        args = redis_args(f"redis://127.0.0.1:{proxy.port}", store, "restore", "--confirm", "--mode", "swap")
        step = KilledStep("redis", args, {"REDIS_PASSWORD": srv.password or ""}, tmp_path / "killed")
        staging = srv.client(15)
        step.kill_when(lambda: proxy.injected == 1 and staging.dbsize() > 1)
    assert redis_content(srv) == before  # nothing the clients see changed
    assert 1 < staging.dbsize() < REDIS_KEYS and staging.exists("tenant-dr:staging")

    again = redis_step(srv, store, "restore", "--confirm", "--mode", "swap")
    assert again.code == 0, again.stdout
    assert "emptied what a killed --swap restore left" in again.stderr
    assert again.result["plan"]["empty_first"] == [15]
    assert redis_content(srv) == expected
    assert all(srv.client(db).dbsize() == 0 for db in range(4, 16))  # staging emptied, old data freed


def test_redis_swap_restore_sigtermed_mid_copy_empties_its_spare_database_before_it_exits(
    seeded_redis: RedisServer, tmp_path: Path
) -> None:
    srv, store = seeded_redis, f"file://{tmp_path / 'store'}"
    assert redis_step(srv, store, "backup").code == 0
    srv.client().set("written:after-the-backup", "still the clients' data")
    before = redis_content(srv)
    with FaultProxy(srv.port, FaultPlan(stall_after=4 * KIB, stall_seconds=5, max_injected=1)) as proxy:
        args = redis_args(f"redis://127.0.0.1:{proxy.port}", store, "restore", "--confirm", "--mode", "swap")
        step = KilledStep("redis", args, {"REDIS_PASSWORD": srv.password or ""}, tmp_path / "stopped")
        staging = srv.client(15)
        stopped = step.terminate_when(lambda: proxy.injected == 1 and staging.dbsize() > 1)
    assert stopped.code == 1, stopped.stdout
    assert "terminated by SIGTERM" in stopped.error and "nothing was replaced" in stopped.error
    assert redis_content(srv) == before  # nothing the clients see changed
    assert staging.dbsize() == 0  # and the step emptied its spare database itself


def failing_second_pg_restore(tmp_path: Path) -> Path:
    """A ``--pg-bin-dir`` whose pg_restore fails at once on its second run (the real tools otherwise)."""
    shim = tmp_path / "bin"
    shim.mkdir()
    for tool in ("pg_dump", "pg_dumpall", "psql", "vacuumdb"):
        (shim / tool).symlink_to(pg_bin(tool))
    counter = tmp_path / "pg_restore.calls"
    script = shim / "pg_restore"
    script.write_text(
        f'#!/bin/bash\nif [ "$1" = --version ]; then exec {pg_bin("pg_restore")} --version; fi\n'
        f"echo x >> {counter}\n"
        f'if [ "$(wc -l < {counter})" -ge 2 ]; then echo "pg_restore: error: injected failure" >&2; exit 1; fi\n'
        f'exec {pg_bin("pg_restore")} "$@"\n'
    )
    script.chmod(0o755)
    return shim


def test_pg_restore_whose_second_pg_restore_fails_puts_both_databases_back(
    seeded_pg: PostgresServer, tmp_path: Path
) -> None:
    pg, store = seeded_pg, f"file://{tmp_path / 'store'}"
    expected = pg_backup_then_change(pg, store)
    before = pg_content(pg)
    broken = pg_step(pg, store, "restore", "--confirm", "--pg-bin-dir", str(failing_second_pg_restore(tmp_path)))
    assert broken.code == 1, broken.stdout
    assert "injected failure" in broken.error and "\n" not in broken.error
    assert "failed at database 'beta'" in broken.error
    assert "nothing was replaced: alpha, beta back as before the restore" in broken.error
    assert pg_content(pg) == before  # exactly what the error says
    assert prior_copies(pg) == []

    again = pg_step(pg, store, "restore", "--confirm")
    assert again.code == 0, again.stdout
    assert pg_content(pg) == expected


def test_pg_restore_with_drop_first_whose_second_pg_restore_fails_says_beta_is_dropped(
    seeded_pg: PostgresServer, tmp_path: Path
) -> None:
    pg, store = seeded_pg, f"file://{tmp_path / 'store'}"
    expected = pg_backup_then_change(pg, store)
    shim = failing_second_pg_restore(tmp_path)
    broken = pg_step(pg, store, "restore", "--confirm", "--strategy", "drop-first", "--pg-bin-dir", str(shim))
    assert broken.code == 1, broken.stdout
    assert "injected failure" in broken.error and "\n" not in broken.error
    assert "restored alpha; beta interrupted (may be dropped or partly restored); not touched none" in broken.error
    assert pg_content(pg) == {"alpha": expected["alpha"], "beta": "absent"}  # exactly what the error says

    again = pg_step(pg, store, "restore", "--confirm")
    assert again.code == 0, again.stdout
    assert pg_content(pg) == expected
