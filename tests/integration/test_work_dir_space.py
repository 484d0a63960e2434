"""Running out of space: the step's work dir, and the target PostgreSQL server's disk.

A restore whose work dir cannot hold the verified copy refuses before touching the target (exit 3).
A swap restore whose new database does not fit beside the old one puts the old one back. Both use
real tmpfs mounts (mounting needs root, as on CI; skipped where it is not allowed).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from steps.runtime.errors import IntegrityError
from steps.storage import open_store
from steps.storage.stream import download_verified, put_compressed
from tests.harness import PostgresServer, RedisServer
from tests.integration import test_postgres as pgt
from tests.integration import test_redis as rdt


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (the test is skipped if mounting is not allowed)."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs under ``tmp_path``."""
    with tmpfs(tmp_path / "tiny", "1m") as tiny:
        yield tiny


def test_postgres_restore_refuses_a_work_dir_too_small_for_its_dumps(
    pg: PostgresServer, tmp_path: Path, tiny_dir: Path
) -> None:
    pgt.seed(pg)
    pg.psql(
        "CREATE TABLE blob AS SELECT g AS id, repeat(md5(g::text), 10) AS body FROM generate_series(1, 10000) g", "aux"
    )
    store = f"file://{tmp_path / 'store'}"
    assert pgt.step(pg, store, "backup", "--databases", "app,aux").code == 0
    pg.psql("DELETE FROM blob WHERE id > 10", "aux")
    before = {db: pgt.table_checksums(pg, db) for db in ("app", "aux")}

    refused = pgt.step(pg, store, "restore", "--confirm", "--jobs", "2", "--work-dir", str(tiny_dir))
    assert refused.code == 3, refused.stdout
    assert "verified dumps need" in refused.error and "are free" in refused.error and "--jobs 1" in refused.error
    assert {db: pgt.table_checksums(pg, db) for db in ("app", "aux")} == before  # nothing dropped
    assert not list(tiny_dir.iterdir())

    streamed = pgt.step(pg, store, "restore", "--confirm", "--jobs", "1", "--work-dir", str(tiny_dir))
    assert streamed.code == 0, streamed.stdout  # what the hint says: -j1 needs no local copy
    assert pg.psql("SELECT count(*) FROM blob", "aux") == "10000"


def test_redis_restore_refuses_a_work_dir_too_small_for_the_rdb(
    redis_srv: RedisServer, tmp_path: Path, tiny_dir: Path
) -> None:
    store = f"file://{tmp_path / 'store'}"
    redis_srv.client(1).flushall()
    for i in range(8):
        redis_srv.client(1).set(f"value:{i}", os.urandom(256 << 10))  # 2 MiB that LZF cannot shrink
    assert rdt.step(redis_srv, store, "backup").code == 0
    redis_srv.client(1).delete("value:0")
    redis_srv.client(2).set("precious", "still here")

    refused = rdt.step(redis_srv, store, "restore", "--flush", "--confirm", "--work-dir", str(tiny_dir))
    assert refused.code == 3, refused.stdout
    assert "the verified RDB need" in refused.error and "--work-dir" in refused.error
    assert redis_srv.client(2).get("precious") == b"still here"  # not flushed
    assert redis_srv.client(1).dbsize() == 7
    assert not [p for p in tiny_dir.rglob("*") if p.is_file()]


def test_running_out_of_space_mid_download_is_a_clear_error_and_leaves_no_partial_file(
    tmp_path: Path, tiny_dir: Path
) -> None:
    store = open_store(f"file://{tmp_path / 'store'}")
    record = put_compressed(store, "t/obj.bin", "obj.bin", io.BytesIO(os.urandom(3 << 20)))
    with pytest.raises(IntegrityError) as caught:
        download_verified(store, "t/obj.bin", record, tiny_dir / "obj.bin")
    assert "no space left in" in caught.value.message and str(3 << 20) in caught.value.message
    assert "--work-dir" in (caught.value.hint or "")
    assert not list(tiny_dir.iterdir())


def test_postgres_swap_restore_that_fills_the_target_disk_puts_the_old_database_back(
    pg: PostgresServer, tmp_path: Path
) -> None:
    # "roomy" lives in a tablespace on a 48 MiB disk: one copy (≈ 32 MiB) fits, two do not. The
    # mount point is right under /tmp: the server's OS user cannot enter pytest's private tmp_path.
    parent = Path(tempfile.mkdtemp(prefix="tdr-disk-"))
    parent.chmod(0o755)
    with tmpfs(parent / "disk", "48m") as disk:
        shutil.chown(disk, "postgres", "postgres")
        pg.psql(f"CREATE TABLESPACE tdr_small LOCATION '{disk}'")
        try:
            pg.psql("CREATE DATABASE roomy TABLESPACE tdr_small")
            pg.psql(
                "CREATE TABLE fill AS SELECT g AS id, repeat(md5(g::text), 4) AS body "
                "FROM generate_series(1, 150000) g",
                "roomy",
            )
            store = f"file://{tmp_path / 'store'}"
            assert pgt.step(pg, store, "backup", "--databases", "roomy").code == 0
            pg.psql("DELETE FROM fill WHERE id > 149000", "roomy")

            full = pgt.step(pg, store, "restore", "--confirm", "--jobs", "1")
            assert full.code == 1, full.stdout
            assert "No space left on device" in full.error and "\n" not in full.error
            assert "nothing was replaced: roomy back as before the restore" in full.error
            assert "--strategy drop-first" in full.error
            assert pg.psql("SELECT count(*) FROM fill", "roomy") == "149000"  # the old database, whole
            assert not pg.psql("SELECT datname FROM pg_database WHERE datname ~ '^tdr_(prior|stale)_'")

            freed = pgt.step(pg, store, "restore", "--confirm", "--jobs", "1", "--strategy", "drop-first")
            assert freed.code == 0, freed.stdout  # what the hint says: the old copy's room is freed first
            assert freed.result["plan"]["tablespaces"] == {"create": [], "exist": ["tdr_small"]}
            assert pg.psql("SELECT count(*) FROM fill", "roomy") == "150000"
        finally:
            for db in pg.psql("SELECT datname FROM pg_database WHERE dattablespace <> 1663").split():
                pg.psql(f'DROP DATABASE "{db}" WITH (FORCE)')
            pg.psql("DROP TABLESPACE tdr_small")
    shutil.rmtree(parent, ignore_errors=True)
