"""``python -m steps.redis`` against real redis-server processes, through the CLI (subprocesses)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from steps.redis import ephemeral_server
from steps.runtime import IntegrityError
from steps.storage import open_store
from steps.storage.catalog import Catalog
from tests.harness import RedisServer, StepRun, free_port, redis_server, run_step
from tests.integration.postgres_redis_support import CmdlineWatch, corrupt_middle

TENANT = "acme"


def step(srv: RedisServer, store: str, *args: str, env: dict[str, str] | None = None) -> StepRun:
    common = ["--tenant", TENANT, "--store", store, "--url", srv.url]
    return run_step("redis", [args[0], *common, *args[1:]], env={"REDIS_PASSWORD": srv.password or "", **(env or {})})


def seed(srv: RedisServer) -> None:
    """Every type in every one of the 16 databases, some keys with TTLs."""
    for db in range(16):
        r = srv.client(db)
        r.flushdb()
        pipe = r.pipeline(transaction=False)
        for i in range(40):
            pipe.set(f"str:{i}", f"value-{db}-{i}" * (i % 5 + 1))
        pipe.set("int", 12345)
        pipe.set(b"bin\x00\xff", bytes(range(256)))
        pipe.hset("hash:small", mapping={"a": 1, "b": "two"})
        pipe.hset("hash:big", mapping={f"f{i}": "x" * 80 for i in range(300)})
        pipe.rpush("list:small", *range(10))
        pipe.rpush("list:big", *[f"item-{i}" * 10 for i in range(1000)])
        pipe.sadd("set:int", *range(50))
        pipe.sadd("set:str", *[f"m{i}" for i in range(200)])
        pipe.zadd("zset:small", {"a": 1.5, "b": -2})
        pipe.zadd("zset:big", {f"m{i}": i / 3 for i in range(500)})
        pipe.xadd("stream", {"field": "v1"})
        pipe.xadd("stream", {"field": "v2", "other": "x"})
        pipe.set("ttl:long", "expires later", ex=3600)
        pipe.hset("ttl:hash", mapping={"k": "v"})
        pipe.expire("ttl:hash", 7200)
        pipe.execute()
        r.xgroup_create("stream", "workers", id="0")
        r.xreadgroup("workers", "alice", {"stream": ">"}, count=1)


def content(r: Any, key: bytes) -> Any:
    """Order-independent logical content of a key."""
    kind = r.type(key).decode()
    if kind == "hash":
        return sorted(r.hgetall(key).items())
    if kind == "set":
        return sorted(r.smembers(key))
    if kind == "stream":
        return r.xrange(key), [(g["name"], g["pending"], g["last-delivered-id"]) for g in r.xinfo_groups(key)]
    return None  # string, list, zset: DUMP is canonical


def snapshot(srv: RedisServer) -> dict[tuple[int, bytes], tuple[bytes, int, str, Any]]:
    """Every key's DUMP payload, PTTL, encoding and logical content, all databases."""
    out: dict[tuple[int, bytes], tuple[bytes, int, str, Any]] = {}
    for db in range(16):
        r = srv.client(db)
        for key in r.scan_iter(count=1000):
            out[(db, key)] = (r.dump(key), r.pttl(key), r.object("encoding", key).decode(), content(r, key))
    return out


def assert_same(expected: dict[Any, tuple[bytes, int, str, Any]], got: dict[Any, tuple[bytes, int, str, Any]]) -> None:
    assert set(got) == set(expected)
    for key, (payload, ttl, encoding, logical) in expected.items():
        assert got[key][2:] == (encoding, logical), key
        if encoding != "hashtable":
            # hashtable-encoded hashes/sets serialise in dict iteration order, which differs between
            # servers; their content is compared above instead
            assert got[key][0] == payload, key
        if ttl < 0:
            assert got[key][1] == ttl, key
        else:
            assert 0 < got[key][1] <= ttl and ttl - got[key][1] < 60_000, key  # TTL kept, within a minute


@pytest.fixture
def source(redis_srv: RedisServer) -> RedisServer:
    redis_srv.client().config_set("repl-diskless-sync-delay", 0)
    seed(redis_srv)
    return redis_srv


@pytest.fixture(scope="module")
def target() -> Any:
    with redis_server(password="target-Redis-pw-0b") as srv:
        yield srv


@pytest.mark.parametrize(("backend", "transfer"), [("file", "diskless"), ("s3", "disk")])
def test_round_trip_every_key_identical(
    source: RedisServer,
    target: RedisServer,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    backend: str,
    transfer: str,
) -> None:
    store_url = f"file://{tmp_path / 'store'}" if backend == "file" else f"s3://{request.getfixturevalue('bucket')}/rd"
    source.client().config_set("repl-diskless-sync", "yes" if transfer == "diskless" else "no")
    expected = snapshot(source)
    backup = step(source, store_url, "backup")
    assert backup.code == 0, backup.stdout + backup.stderr
    assert backup.result["transfer"] == transfer and backup.result["rdb_version"] >= 9
    manifest = Catalog(open_store(store_url), TENANT).read_manifest(backup.result["run_id"], "redis")
    dbs = manifest.fingerprints["databases"]
    assert sorted(dbs, key=int) == [str(i) for i in range(16)]
    assert dbs["7"]["types"] == {"hash": 3, "list": 2, "set": 2, "stream": 1, "string": 43, "zset": 2}
    assert dbs["7"]["keys"] == 53 and dbs["7"]["expires"] == 2
    assert manifest.fingerprints["counted_from"] == "rdb"  # read from the RDB as it streamed, not by SCAN
    assert manifest.objects[0].sha256 and manifest.source["rdb_version"] == backup.result["rdb_version"]

    target.client(3).set("stale", "removed by --flush")
    restored = step(target, store_url, "restore", "--flush", "--confirm")
    assert restored.code == 0, restored.stdout + restored.stderr
    assert_same(expected, snapshot(target))
    verify = step(target, store_url, "verify")
    assert verify.code == 0, verify.stdout


def test_restore_without_flush_keeps_other_keys_and_plan_changes_nothing(
    source: RedisServer, target: RedisServer, tmp_path: Path
) -> None:
    store = f"file://{tmp_path / 'store'}"
    assert step(source, store, "backup").code == 0
    for db in range(16):
        target.client(db).flushdb()
    target.client(5).set("mine", "keep me")
    target.client(5).set("str:1", "overwritten by the restore")

    plan = step(target, store, "restore", "--flush")
    assert plan.code == 0 and plan.result["dry_run"] is True and plan.result["plan"]["flush"] is True
    assert target.client(5).dbsize() == 2  # nothing happened without --confirm

    merged = step(target, store, "restore", "--confirm")
    assert merged.code == 0, merged.stdout
    assert target.client(5).get("mine") == b"keep me"
    assert target.client(5).get("str:1") == source.client(5).get("str:1")
    assert target.client(5).dbsize() == source.client(5).dbsize() + 1

    drift = step(target, store, "verify")  # the extra key is a difference against the manifest
    assert drift.code == 3 and "db5 keys: 54, expected 53" in drift.error


def restore_over_a_precious_key(target: RedisServer, store: str) -> StepRun:
    """``restore --flush --confirm`` into a target that holds one key that must survive a refused restore."""
    for db in range(16):
        target.client(db).flushdb()
    target.client(0).set("precious", "still here")
    return step(target, store, "restore", "--flush", "--confirm")


def assert_untouched(target: RedisServer) -> None:
    assert target.client(0).get("precious") == b"still here" and target.client(0).dbsize() == 1


def test_corrupted_rdb_exits_3_and_leaves_target_untouched(
    source: RedisServer, target: RedisServer, tmp_path: Path
) -> None:
    store = f"file://{tmp_path / 'store'}"
    backup = step(source, store, "backup")
    assert backup.code == 0
    catalog = Catalog(open_store(store), TENANT)
    manifest = catalog.read_manifest(backup.result["run_id"], "redis")
    corrupt_middle(tmp_path / "store" / catalog.object_key(manifest, manifest.objects[0]))
    result = restore_over_a_precious_key(target, store)
    assert result.code == 3
    assert "corrupt" in result.error or "does not match its manifest" in result.error
    assert_untouched(target)


def test_manifest_that_disagrees_with_its_rdb_stops_the_restore_before_the_target(
    source: RedisServer, target: RedisServer, tmp_path: Path
) -> None:
    store = f"file://{tmp_path / 'store'}"
    backup = step(source, store, "backup")
    assert backup.code == 0
    catalog = Catalog(open_store(store), TENANT)
    path = tmp_path / "store" / catalog.manifest_key(backup.result["run_id"], "redis")
    doc = json.loads(path.read_text())
    doc["fingerprints"]["databases"]["7"]["keys"] += 5  # the RDB holds 5 keys fewer than counted
    doc["fingerprints"]["stable"] = False  # counts read from the RDB are exact whatever happened meanwhile
    path.write_text(json.dumps(doc))
    result = restore_over_a_precious_key(target, store)
    assert result.code == 3 and "does not hold what its manifest counted" in result.error
    assert "db7 keys: 53, expected 58" in result.error
    assert_untouched(target)


def test_auth_errors_unreachable_and_missing_run(source: RedisServer, tmp_path: Path) -> None:
    store = f"file://{tmp_path / 'store'}"
    wrong = step(source, store, "backup", env={"REDIS_PASSWORD": "wrong-password-1"})
    assert wrong.code == 2 and "\n" not in wrong.error
    assert "wrong-password-1" not in wrong.stdout + wrong.stderr
    args = ["--tenant", TENANT, "--store", store, "--url", f"redis://127.0.0.1:{free_port()}"]
    down = run_step("redis", ["backup", *args])
    assert down.code == 1 and "cannot reach Redis" in down.error and "\n" not in down.error

    backup = step(source, store, "backup")
    assert backup.code == 0
    missing = step(source, store, "restore", "--run-id", "20200101T000000Z-abcdef", "--confirm")
    assert missing.code == 3
    assert "not found" in missing.error and backup.result["run_id"] in missing.error


def test_no_password_in_logs_or_process_arguments(source: RedisServer, target: RedisServer, tmp_path: Path) -> None:
    store = f"file://{tmp_path / 'store'}"
    pwfile = tmp_path / "pw"
    pwfile.write_text(str(source.password))
    env = {k: v for k, v in os.environ.items() if k != "REDIS_PASSWORD"}
    with CmdlineWatch() as watch:
        backup = run_step(
            "redis",
            ["backup", "--tenant", TENANT, "--store", store, "--url", source.url, "--password-file", str(pwfile)],
            env=env,
        )
        restore = step(target, store, "restore", "--confirm", "--flush")
    assert backup.code == 0 and restore.code == 0, restore.stdout
    known = {f"127.0.0.1:{source.port}", f"127.0.0.1:{target.port}"}
    ephemeral = [c for c in watch.matching("redis-server") if not any(k in c for k in known)]
    assert ephemeral  # the step's own redis-server was seen (its argv is a config file path)
    for secret in (str(source.password), str(target.password)):
        assert not watch.matching(secret)
        for run in (backup, restore):
            assert secret not in run.stdout + run.stderr
            assert all(secret not in json.dumps(line) for line in run.logs)


def test_refused_restores_name_the_reason_and_the_fix(source: RedisServer, tmp_path: Path) -> None:
    store = f"file://{tmp_path / 'store'}"
    assert step(source, store, "backup").code == 0
    config = "maxmemory 1200kb\nmaxmemory-policy noeviction\n"
    with redis_server(password="small-Redis-pw-5e", config=config) as small:
        # the backup's data cannot fit under the target's maxmemory: exit 3 before --flush empties it
        small.client(5).set("precious", "still here")
        too_small = step(small, store, "restore", "--flush", "--confirm")
        assert too_small.code == 3, too_small.stdout
        assert "more than the" in too_small.error and "under its maxmemory (1228800) after --flush" in too_small.error
        assert (
            "nothing was flushed or restored" in too_small.error and "raise the target's maxmemory" in too_small.error
        )
        assert small.client(5).get("precious") == b"still here"

        # already at its maxmemory: the probe key is refused with OOM, before the flush
        small.client().config_set("maxmemory", "1")
        at_limit = step(small, store, "restore", "--flush", "--confirm")
        assert at_limit.code == 3, at_limit.stdout
        assert "RESTORE of a probe key" in at_limit.error and "used memory > 'maxmemory'" in at_limit.error
        assert small.client(5).get("precious") == b"still here"

        # a user without RESTORE permission: exit 2 (not retried), the ACL named, and --flush has not run:
        # a probe key is restored before anything is flushed
        small.client().config_set("maxmemory", "0")
        small.client().flushall()
        small.client(5).set("precious", "still here")
        small.client().acl_setuser(
            "reader", enabled=True, passwords=["+reader-Pw-8c"], keys=["*"], commands=["+@all", "-restore"]
        )
        url = f"redis://reader@127.0.0.1:{small.port}"
        denied = run_step(
            "redis",
            ["restore", "--tenant", TENANT, "--store", store, "--url", url, "--flush", "--confirm"],
            env={"REDIS_PASSWORD": "reader-Pw-8c"},
        )
        assert denied.code == 2, denied.stdout
        assert "RESTORE of a probe key into db0" in denied.error and "nothing flushed or restored" in denied.error
        assert "no permissions to run the 'restore' command" in denied.error and "ACL +restore" in denied.error
        assert "\n" not in denied.error
        assert small.client(5).get("precious") == b"still here"
        assert sum(small.client(db).dbsize() for db in range(16)) == 1

    # a read-only replica: exit 2 naming the fix, not flushed (FLUSHALL there was a retried exit 1)
    config = f"replicaof 127.0.0.1 {source.port}\nmasterauth {source.password}\n"
    with redis_server(password="replica-Redis-pw-4a", config=config) as replica:
        deadline = time.monotonic() + 30
        while replica.client().info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, "the replica did not sync"
            time.sleep(0.1)
        synced = [replica.client(db).dbsize() for db in range(16)]
        on_replica = step(replica, store, "restore", "--flush", "--confirm")
        assert on_replica.code == 2, on_replica.stdout
        assert "read only replica" in on_replica.error and "point it at the primary" in on_replica.error
        assert [replica.client(db).dbsize() for db in range(16)] == synced and sum(synced) > 0


@pytest.fixture
def store_of_200k_keys(tmp_path: Path) -> str:
    """A store holding a backup of 200 k small keys in db0 (made with DEBUG POPULATE)."""
    store = f"file://{tmp_path / 'store'}"
    with redis_server(password="big-src-Redis-pw-6", config="enable-debug-command yes\n") as big:
        big.client().execute_command("DEBUG", "POPULATE", 200_000, "k", 64)
        assert step(big, store, "backup", "--no-bgsave").code == 0
    return store


def restore_while_maxmemory_drops(target: RedisServer, watched_db: int, store: str, *args: str) -> StepRun:
    """``restore *args`` into ``target``; once ``watched_db`` holds 1000 keys, maxmemory drops to what is used."""
    watched = target.client(watched_db)

    def lower_the_limit_once_copying() -> None:
        deadline = time.monotonic() + 60
        while watched.dbsize() < 1000 and time.monotonic() < deadline:
            time.sleep(0.005)
        watched.config_set("maxmemory", int(watched.info("memory")["used_memory"]) + 65536)

    with ThreadPoolExecutor(max_workers=1) as pool:
        lowering = pool.submit(lower_the_limit_once_copying)
        run = step(target, store, "restore", *args)
        lowering.result()
    return run


def test_target_filling_up_mid_copy_stops_with_what_it_holds(store_of_200k_keys: str) -> None:
    """OOM during the copy (the limit lowered once the copy has started): exit 3 naming the partial target."""
    with redis_server(password="shrinking-Redis-pw-7") as shrinking:
        broken = restore_while_maxmemory_drops(shrinking, 0, store_of_200k_keys, "--flush", "--confirm")
        assert broken.code == 3, broken.stdout
        assert "RESTORE into db0" in broken.error and "used memory > 'maxmemory'" in broken.error
        assert "was flushed and holds a partial restore" in broken.error and "raise maxmemory" in broken.error
        assert 1000 <= shrinking.client().dbsize() < 200_000


def test_restore_of_large_keys_keeps_memory_bounded(tmp_path: Path) -> None:
    """320 MiB in one SCAN batch: payloads are fetched about 16 MiB at a time, not the whole batch at once."""
    store = f"file://{tmp_path / 'store'}"
    digests: dict[bytes, str] = {}
    with redis_server(password="large-Redis-pw-2d") as large, redis_server(password="large-target-pw-9a") as dst:
        r = large.client(2)
        for i in range(40):
            value = os.urandom(8 << 20)  # incompressible: the DUMP payload is as large as the value
            r.set(f"blob:{i}", value, px=3_600_000 if i % 2 else None)
            digests[f"blob:{i}".encode()] = hashlib.sha256(value).hexdigest()
        r.set("small", "after the blobs")
        backup = step(large, store, "backup", "--no-bgsave")
        assert backup.code == 0, backup.stdout
        restored = step(dst, store, "restore", "--confirm")
        assert restored.code == 0, restored.stdout
        assert restored.result["copied"] == {"2": 41}
        assert restored.peak_rss_mb < 200, restored.peak_rss_mb
        t = dst.client(2)
        assert {key: hashlib.sha256(t.get(key) or b"").hexdigest() for key in digests} == digests
        assert t.get("small") == b"after the blobs"
        assert t.pttl("blob:1") > 3_500_000 and t.pttl("blob:2") == -1


def test_database_count_is_checked_before_the_target_is_touched(source: RedisServer, tmp_path: Path) -> None:
    store = f"file://{tmp_path / 'store'}"
    assert step(source, store, "backup").code == 0  # keys in all 16 databases
    with redis_server(password="four-dbs-Redis-pw-1", config="databases 4\n") as four:
        four.client(1).set("precious", "still here")
        for args in (["restore"], ["restore", "--flush", "--confirm"], ["verify"]):
            refused = step(four, store, *args)
            assert refused.code == 3, refused.stdout
            assert "cannot select db15, which the backup holds keys in" in refused.error
            assert "set 'databases 16'" in refused.error and "\n" not in refused.error
        assert four.client(1).get("precious") == b"still here"  # not flushed
        assert [four.client(db).dbsize() for db in range(4)] == [0, 1, 0, 0]  # nothing restored

    # more than 16 databases: the step's own server is started with enough of them
    with (
        redis_server(password="many-dbs-Redis-pw-2", config="databases 32\n") as many,
        redis_server(password="many-dbs-target-pw-3", config="databases 32\n") as many_target,
    ):
        many.client(20).set("in-db20", "twenty", ex=3600)
        many.client(0).set("in-db0", "zero")
        store = f"file://{tmp_path / 'many'}"
        assert step(many, store, "backup").code == 0
        restored = step(many_target, store, "restore", "--confirm")
        assert restored.code == 0, restored.stdout
        assert many_target.client(20).get("in-db20") == b"twenty" and many_target.client(20).ttl("in-db20") > 3500
        assert many_target.client(0).get("in-db0") == b"zero"
        assert step(many_target, store, "verify").code == 0


def small_tenant(srv: RedisServer) -> None:
    """Keys of every kind in db0 and db2 only (a tenant that leaves most databases free)."""
    for db in (0, 2):
        r = srv.client(db)
        r.flushdb()
        r.set("str", f"value-{db}")
        r.set("ttl", "expires later", ex=3600)
        r.hset("hash", mapping={f"f{i}": "x" * 40 for i in range(200)})
        r.rpush("list", *range(100))
        r.zadd("zset", {f"m{i}": i for i in range(100)})
        r.sadd("set", *range(30))
        r.xadd("stream", {"f": "v"})
        for i in range(2000):
            r.set(f"bulk:{i}", os.urandom(64))


def test_swap_restore_replaces_the_backups_databases_whole_and_leaves_the_others(tmp_path: Path) -> None:
    store = f"file://{tmp_path / 'store'}"
    with redis_server(password="swap-src-Redis-pw-1") as src, redis_server(password="swap-dst-Redis-pw-2") as dst:
        small_tenant(src)
        expected = {k: v for k, v in snapshot(src).items() if k[0] in (0, 2)}
        assert step(src, store, "backup").code == 0
        dst.client(0).set("stale", "not in the backup: gone after the swap")
        dst.client(0).set("str", "older value")
        dst.client(5).set("other-db", "the app's own, not in the backup")

        plan = step(dst, store, "restore", "--mode", "swap")
        assert plan.code == 0 and plan.result["plan"]["swap_into"] == {"0": 15, "2": 14}, plan.stdout
        assert dst.client(0).get("str") == b"older value"  # a plan changes nothing

        done = step(dst, store, "restore", "--mode", "swap", "--confirm")
        assert done.code == 0, done.stdout
        got = snapshot(dst)
        assert_same(expected, {k: v for k, v in got.items() if k[0] in (0, 2)})
        assert {k for k in got if k[0] not in (0, 2)} == {(5, b"other-db")}  # staging freed, db5 untouched
        assert "database swapped in; its old data is being freed" in done.stderr

        flush_too = step(dst, store, "restore", "--flush", "--mode", "swap", "--confirm")
        assert flush_too.code == 2 and "exclude each other" in flush_too.error

        dst.client().execute_command("ACL", "SETUSER", "noswap", "on", ">noswap-Pw-5", "~*", "+@all", "-swapdb")
        dst.client(0).set("str", "changed again")
        args = ["--tenant", TENANT, "--store", store, "--url", f"redis://noswap@127.0.0.1:{dst.port}"]
        no_swapdb = run_step(
            "redis", ["restore", *args, "--mode", "swap", "--confirm"], env={"REDIS_PASSWORD": "noswap-Pw-5"}
        )
        assert no_swapdb.code == 2, no_swapdb.stdout
        assert "refused SWAPDB, which --mode swap needs" in no_swapdb.error and "+swapdb" in no_swapdb.error
        assert dst.client(0).get("str") == b"changed again" and dst.client(15).dbsize() == 0


def test_swap_restore_that_fails_before_the_swap_changes_nothing_clients_see(store_of_200k_keys: str) -> None:
    """OOM while the staging database fills: exit 3, the target's db0 as it was, staging emptied."""
    with redis_server(password="swap-full-Redis-pw-4") as full:
        for i in range(500):
            full.client().set(f"k:{i}", f"the clients' value {i}")
        broken = restore_while_maxmemory_drops(full, 15, store_of_200k_keys, "--mode", "swap", "--confirm")
        assert broken.code == 3, broken.stdout
        assert "failed before the swap" in broken.error and "used memory > 'maxmemory'" in broken.error
        assert "nothing was replaced: db0 as before the restore" in broken.error and "\n" not in broken.error
        assert full.client().dbsize() == 500 and full.client().get("k:7") == b"the clients' value 7"
        assert full.client(15).dbsize() == 0


def test_swap_restore_needs_spare_databases_and_says_so_before_anything(
    source: RedisServer, target: RedisServer, tmp_path: Path
) -> None:
    store = f"file://{tmp_path / 'store'}"
    assert step(source, store, "backup").code == 0  # keys in all 16 databases
    target.client(0).set("precious", "kept")
    for args in (["restore", "--mode", "swap"], ["restore", "--mode", "swap", "--confirm"]):
        refused = step(target, store, *args)
        assert refused.code == 3, refused.stdout
        assert "--swap restores each of the backup's 16 database(s) into an empty database" in refused.error
        assert "--flush instead" in refused.error and "\n" not in refused.error
    assert target.client(0).get("precious") == b"kept"


def test_a_slow_rdb_load_is_waited_for_while_it_makes_progress(tmp_path: Path) -> None:
    """The load limit is on progress, not on the whole load: an RDB that loads for longer than
    ``timeout`` is still waited for, and a corrupt one still fails at once with exit 3."""
    with redis_server(password="slow-load-Redis-pw-4e", config="enable-debug-command yes\n") as big:
        r = big.client()
        r.execute_command("DEBUG", "POPULATE", 2_000_000, "key", 16)
        r.save()
        rdb = tmp_path / "dump.rdb"
        rdb.write_bytes((big.dir / "dump.rdb").read_bytes())
    started = time.monotonic()
    with ephemeral_server(rdb, "redis-server", 0.4, 16) as loaded:
        took = time.monotonic() - started
        assert loaded.client().dbsize() == 2_000_000
    assert took > 0.8, f"the load took {took:.2f}s: too fast to show that the whole load may outlast the limit"
    truncated = tmp_path / "broken" / "dump.rdb"
    truncated.parent.mkdir()
    truncated.write_bytes(rdb.read_bytes()[: rdb.stat().st_size // 2])
    with (
        pytest.raises(IntegrityError, match="could not load the backup RDB"),
        ephemeral_server(truncated, "redis-server", 0.4, 16),
    ):
        pass
