"""Redis backup benchmark: ours vs ``redis-cli --rdb`` + gzip + boto3 upload, on the same data.

Run: ``uv run python tests/bench/bench_redis.py [--keys 1000000] [--small-keys 200000] [--reps 3]``.
The dataset is built with ``DEBUG POPULATE`` (strings) plus hashes, lists and sets. Peak RSS of
backup, restore (into a second server, with --flush, then with --mode swap over that data) and
verify at two dataset sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from _common import median, report, shell, timed  # type: ignore[import-not-found]

from tests.harness import free_port, run_step, s3_server, wait_port

PASSWORD = "bench-Redis-pw-4411"


@contextlib.contextmanager
def server(tmp: Path, name: str) -> Iterator[int]:
    """A redis-server with DEBUG enabled (for POPULATE), password in its config file only."""
    port = free_port()
    d = tmp / name
    d.mkdir()
    conf = d / "redis.conf"
    conf.write_text(
        f'port {port}\nbind 127.0.0.1\ndir {d}\nsave ""\nappendonly no\nrequirepass {PASSWORD}\n'
        "enable-debug-command yes\nrepl-diskless-sync-delay 0\n"
    )
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", str(conf)], stdout=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield port
    finally:
        proc.kill()
        proc.wait()


def populate(port: int, keys: int) -> None:
    r = redis.Redis(port=port, password=PASSWORD)
    r.flushall()
    r.execute_command("DEBUG", "POPULATE", int(keys * 0.9), "str", 64)  # type: ignore[no-untyped-call]
    pipe = r.pipeline(transaction=False)
    for i in range(keys // 10):
        kind = i % 3
        if kind == 0:
            pipe.hset(f"h:{i}", mapping={"a": i, "b": "x" * 20})
        elif kind == 1:
            pipe.rpush(f"l:{i}", i, i + 1, i + 2)
        else:
            pipe.sadd(f"s:{i}", i, "m")
        if i % 5000 == 0:
            pipe.execute()
    pipe.execute()


def ours(port: int, store: str, action: str, *extra: str) -> tuple[float, float]:
    args = [action, "--tenant", "bench", "--store", store, "--url", f"redis://127.0.0.1:{port}", *extra]
    seconds, run = timed(lambda: run_step("redis", args, env={"REDIS_PASSWORD": PASSWORD}, timeout=3600))
    if run.code != 0:
        raise SystemExit(f"{action} failed: {run.stdout} {run.stderr[-2000:]}")
    return round(seconds, 2), round(run.peak_rss_mb, 1)


def measure(tmp: Path, s3: Any, keys: int, reps: int) -> dict[str, Any]:
    client = s3.client()
    bucket = f"bench-redis-{keys}"
    client.create_bucket(Bucket=bucket)
    store = f"s3://{bucket}/ours"
    with server(tmp, f"src{keys}") as src, server(tmp, f"dst{keys}") as dst:
        t_pop, _ = timed(lambda: populate(src, keys))
        res: dict[str, Any] = {"keys": keys, "populate_s": round(t_pop, 1)}
        rows: dict[str, list[float]] = {"ours_backup": [], "ours_backup_no_bgsave": [], "rediscli_gzip_upload": []}
        rss: dict[str, list[float]] = {"backup": [], "restore": [], "verify": []}
        rdb = tmp / "cli.rdb"
        for i in range(reps):
            run_id = f"20260101T0000{i:02d}Z-{keys % 0xFFFFFF:06x}"
            s, r = ours(src, store, "backup", "--run-id", run_id)
            rows["ours_backup"].append(s)
            rss["backup"].append(r)
            s, r = ours(src, store, "backup", "--run-id", run_id.replace("T0000", "T0001"), "--no-bgsave")
            rows["ours_backup_no_bgsave"].append(s)
            rss["backup"].append(r)

            def runbook(i: int = i) -> None:
                shell(
                    f"redis-cli -p {src} --rdb {rdb} > /dev/null && gzip -f {rdb}",
                    {"REDISCLI_AUTH": PASSWORD},
                )
                client.upload_file(f"{rdb}.gz", bucket, f"runbook/{i}/dump.rdb.gz")

            rows["rediscli_gzip_upload"].append(round(timed(runbook)[0], 2))
        res["rdb_gz_bytes"] = Path(f"{rdb}.gz").stat().st_size
        s, r = ours(dst, store, "restore", "--run-id", run_id, "--flush", "--confirm")
        res["ours_restore_s"] = s
        rss["restore"].append(r)
        # the same again with --mode swap: the target now holds all the data, which the swap replaces
        s, r = ours(dst, store, "restore", "--run-id", run_id, "--mode", "swap", "--confirm")
        res["ours_restore_swap_s"] = s
        rss["restore"].append(r)
        s, r = ours(dst, store, "verify", "--run-id", run_id)
        rss["verify"].append(r)
        res["verify_s"] = s
    med = {k: median(v) for k, v in rows.items()}
    res["runs_s"] = rows
    res["median_s"] = med
    res["ratios"] = {
        "ours/redis-cli --rdb+gzip+upload (target <= 0.6)": round(med["ours_backup"] / med["rediscli_gzip_upload"], 2),
        "ours --no-bgsave/redis-cli --rdb+gzip+upload": round(
            med["ours_backup_no_bgsave"] / med["rediscli_gzip_upload"], 2
        ),
    }
    res["peak_rss_mb"] = {k: max(v) for k, v in rss.items()}
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--small-keys", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tdr-bench-") as tmp, s3_server() as s3:
        os.environ["AWS_ENDPOINT_URL"] = s3.endpoint
        small = measure(Path(tmp), s3, args.small_keys, 1)
        big = measure(Path(tmp), s3, args.keys, args.reps)
    report("redis", {"reps": args.reps, "small": small, "large": big})


if __name__ == "__main__":
    main()
