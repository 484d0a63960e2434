"""``steps.rdb``: key counts read from RDBs that a real redis-server wrote, checked against the live server."""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steps.rdb import RdbCounter, Unsupported
from steps.redis import parse_url, type_counts
from steps.storage import open_store
from steps.storage.catalog import Catalog
from tests.harness import RedisServer, redis_server, run_step
from tests.integration.test_redis import TENANT, seed, step


def saved_rdb(srv: RedisServer) -> bytes:
    """``SAVE`` and the bytes of the server's ``dump.rdb``."""
    srv.client().save()
    return (srv.dir / "dump.rdb").read_bytes()


def count(data: bytes, chunks: Iterator[int] | None = None, max_buffer: int = 32 << 20) -> dict[str, Any]:
    """Feed ``data`` to a counter in chunks of the given sizes (default 1 MiB) and return its result."""
    counter = RdbCounter(max_buffer=max_buffer)
    pos = 0
    while pos < len(data):
        size = next(chunks) if chunks is not None else 1 << 20
        counter.feed(data[pos : pos + size])
        pos += size
    return counter.result()


def live_counts(srv: RedisServer) -> dict[str, dict[str, Any]]:
    """What the server shows, counted independently of the step code: SCAN, TYPE and PTTL per key."""
    out: dict[str, dict[str, Any]] = {}
    for db in range(16):
        r = srv.client(db)
        types: Counter[str] = Counter()
        expires = 0
        for key in r.scan_iter(count=500):
            types[r.type(key).decode()] += 1
            expires += r.pttl(key) > 0
        if types:
            out[str(db)] = {"keys": sum(types.values()), "types": dict(types), "expires": expires}
    return out


def seed_more(srv: RedisServer) -> None:
    """Encodings and opcodes beyond ``seed``: LZF strings, integers, big values, a function library."""
    r = srv.client(2)
    r.set("lzf", "abcdefgh" * 5000)  # compressible: stored LZF-compressed
    r.set("neg", -7)
    r.set("big-int", 2**40)
    r.set("raw-64k", os.urandom(70_000))  # 32-bit length prefix
    r.rpush("quicklist", *[os.urandom(200) for _ in range(3000)])
    r.hset("hash:huge", mapping={f"f{i}": os.urandom(40) for i in range(2000)})
    r.zadd("zset:skiplist", {os.urandom(100): i for i in range(300)})
    r.xadd("stream:many", {"k": "v"})
    for i in range(300):
        r.xadd("stream:many", {f"f{i}": os.urandom(30)})
    r.xgroup_create("stream:many", "g1", id="0")
    r.xgroup_create("stream:many", "g2", id="$")
    r.xreadgroup("g1", "bob", {"stream:many": ">"}, count=50)
    r.xreadgroup("g1", "carol", {"stream:many": ">"}, count=5)
    r.function_load(
        "#!lua name=tdrlib\nredis.register_function('tdr_echo', function(keys, args) return args[1] end)", replace=True
    )


@pytest.mark.parametrize("policy", ["noeviction", "allkeys-lru", "allkeys-lfu"])
def test_counts_equal_the_live_servers_for_every_type_database_and_eviction_policy(
    redis_srv: RedisServer, policy: str
) -> None:
    # LRU and LFU policies make the RDB carry IDLE and FREQ opcodes before each key
    redis_srv.client().config_set("maxmemory-policy", policy)
    try:
        seed(redis_srv)
        seed_more(redis_srv)
        counted = count(saved_rdb(redis_srv))
    finally:
        redis_srv.client().config_set("maxmemory-policy", "noeviction")
    live = live_counts(redis_srv)
    assert {db: {k: v[k] for k in ("keys", "types", "expires")} for db, v in counted.items()} == live
    assert all(v["expired_at_save"] == 0 for v in counted.values())
    assert counted["2"]["types"]["stream"] == 2 and counted["2"]["types"]["string"] == 47


def test_keys_already_expired_when_saved_are_counted_apart() -> None:
    with redis_server(config="enable-debug-command yes\n") as srv:
        r = srv.client(4)
        r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
        for i in range(5):
            r.set(f"gone:{i}", "x", px=100)
        r.set("kept", "y", ex=3600)
        r.set("plain", "z")
        time.sleep(1.3)  # past the TTLs, and ctime (whole seconds) is past them too
        counted = count(saved_rdb(srv))
        assert counted == {
            "4": {"keys": 2, "types": {"string": 2}, "expires": 1, "expired_at_save": 5},
        }
        assert live_counts(srv) == {"4": {"keys": 2, "types": {"string": 2}, "expires": 1}}


def test_any_chunking_gives_the_same_counts(redis_srv: RedisServer) -> None:
    seed(redis_srv)
    seed_more(redis_srv)
    data = saved_rdb(redis_srv)
    whole = count(data, iter([len(data)]))
    rng = random.Random(7)
    for low, high in ((1, 64), (100, 5000), (60_000, 200_000)):
        sizes = (rng.randint(low, high) for _ in itertools.count())
        assert count(data, sizes) == whole, (low, high)


def test_what_it_cannot_read_is_reported_not_guessed(redis_srv: RedisServer) -> None:
    seed(redis_srv)
    seed_more(redis_srv)
    data = saved_rdb(redis_srv)
    with pytest.raises(Unsupported, match="ended before its EOF"):
        count(data[: len(data) // 2])
    with pytest.raises(Unsupported, match="not an RDB"):
        count(b"HELLO0010" + data[9:])
    with pytest.raises(Unsupported, match="RDB version 13 is newer than this reader knows"):
        count(b"REDIS0013" + data[9:])
    with pytest.raises(Unsupported, match="larger than 0 MiB"):
        count(data, iter(lambda: 4096, -1), max_buffer=1000)  # the 70 kB string does not fit

    def rdb(*entries: bytes) -> bytes:
        return b"REDIS0010" + b"".join(entries) + b"\xff" + bytes(8)

    one_string = b"\x00\x01k\x01v"
    assert count(rdb(b"\xfe\x00\xfb\x01\x00", one_string))["0"]["keys"] == 1
    with pytest.raises(Unsupported, match="read 1 keys, the RDB says 2"):
        count(rdb(b"\xfe\x00\xfb\x02\x00", one_string))
    with pytest.raises(Unsupported, match="read 0 TTLs, the RDB says 1"):
        count(rdb(b"\xfe\x00\xfb\x01\x01", one_string))
    with pytest.raises(Unsupported, match="value type 7 is not read"):
        count(rdb(b"\xfe\x00", b"\x07\x01k", bytes(20)))
    with pytest.raises(Unsupported, match="unknown RDB opcode 0xf3"):
        count(rdb(b"\xfe\x00\xf3"))
    with pytest.raises(Unsupported, match="database 0 appears twice"):
        count(rdb(b"\xfe\x00", one_string, b"\xfe\x00", one_string))


def test_backup_counts_from_the_rdb_and_falls_back_to_scan_when_it_cannot(tmp_path: Path) -> None:
    with redis_server(password="rdb-Count-pw-55") as srv:
        srv.client().config_set("repl-diskless-sync-delay", 0)
        seed(srv)
        store = f"file://{tmp_path / 'store'}"
        catalog = Catalog(open_store(store), TENANT)

        plain = step(srv, store, "backup", "--no-bgsave")
        assert plain.code == 0, plain.stdout + plain.stderr
        assert plain.result["counted_from"] == "rdb" and plain.result["timings"]["bgsave_s"] is None
        assert not (srv.dir / "dump.rdb").exists()  # no BGSAVE, and the diskless SYNC writes no file
        manifest = catalog.read_manifest(plain.result["run_id"], "redis")
        live = live_counts(srv)
        assert {
            db: {k: v[k] for k in ("keys", "types", "expires")} for db, v in manifest.fingerprints["databases"].items()
        } == live

        # one value larger than the counter's 32 MiB buffer: it gives up and the step counts with SCAN
        srv.client(9).set("huge", os.urandom(33 << 20))
        big = step(srv, store, "backup")
        assert big.code == 0, big.stdout + big.stderr
        assert big.result["counted_from"] == "scan" and (srv.dir / "dump.rdb").exists()
        warnings = [json.loads(line) for line in big.stderr.splitlines() if "counting with SCAN" in line]
        assert warnings and "larger than 32 MiB" in warnings[0]["reason"]
        databases = catalog.read_manifest(big.result["run_id"], "redis").fingerprints["databases"]
        assert databases["9"]["types"]["string"] == live["9"]["types"]["string"] + 1
        assert databases["9"]["keys"] == live["9"]["keys"] + 1

        # the restore counts what its ephemeral server loaded the same way, with the same fallback
        with redis_server(password="rdb-Target-pw-56") as target:
            restored = step(target, store, "restore", "--run-id", big.result["run_id"], "--flush", "--confirm")
            assert restored.code == 0, restored.stdout + restored.stderr
            assert any(
                "counting with SCAN" in line and "larger than 32 MiB" in line for line in restored.stderr.splitlines()
            )
            assert len(target.client(9).get("huge") or b"") == 33 << 20
            first = step(target, store, "restore", "--run-id", plain.result["run_id"], "--flush", "--confirm")
            assert first.code == 0 and "counting with SCAN" not in first.stderr  # read from the RDB file
            assert target.client(9).get("huge") is None and live_counts(target) == live


def test_live_counts_by_script_and_by_pipeline_agree_and_scripts_refused_fall_back(
    redis_srv: RedisServer, tmp_path: Path
) -> None:
    seed(redis_srv)
    seed_more(redis_srv)
    target = parse_url(redis_srv.url, redis_srv.password, 30.0)
    dbs = [str(db) for db in range(16)]
    by_script = type_counts(target, dbs)
    assert by_script == type_counts(target, dbs, script=False)
    live = live_counts(redis_srv)
    assert {db: {"keys": v["keys"], "types": v["types"]} for db, v in by_script.items()} == {
        db: {"keys": v["keys"], "types": v["types"]} for db, v in live.items()
    }

    # a user that may not run scripts: verify still works, by pipelined TYPE, and says so
    store = f"file://{tmp_path / 'store'}"
    assert step(redis_srv, store, "backup", "--no-bgsave").code == 0
    redis_srv.client().acl_setuser(
        "noscripts",
        enabled=True,
        passwords=["+noscripts-Pw-31"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-@scripting"],
    )
    limited = run_step(
        "redis",
        ["verify", "--tenant", TENANT, "--store", store, "--url", f"redis://noscripts@127.0.0.1:{redis_srv.port}"],
        env={"REDIS_PASSWORD": "noscripts-Pw-31"},
    )
    assert limited.code == 0, limited.stdout + limited.stderr
    assert "Lua scripts refused; counting keys with pipelined TYPE" in limited.stderr
    assert "Lua scripts refused" not in step(redis_srv, store, "verify").stderr
