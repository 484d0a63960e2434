"""PostgreSQL backup/restore benchmark: ours vs the manual runbook, side by side on the same data.

Run: ``uv run python tests/bench/bench_postgres.py [--scale 50] [--small-scale 10] [--reps 3]``.
Backup: ``steps.postgres backup`` to moto S3 vs ``pg_dumpall | gzip > file`` + boto3 ``upload_file`` to
the same endpoint, and vs ``pg_dump -Fc -Z0 > /dev/null`` (the producer bound). Restore:
``steps.postgres restore --confirm`` vs ``psql -f`` of a plain dump. Peak RSS of every step at two scales.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import median, report, shell, timed  # type: ignore[import-not-found]

from tests.harness import PostgresServer, pg_bin, postgres_server, run_step, s3_server

DB = "pgbench"


def ours(pg: PostgresServer, store: str, action: str, *extra: str) -> tuple[float, float]:
    args = [action, "--tenant", "bench", "--store", store, "--host", pg.host, "--port", str(pg.port)]
    args += ["--user", "postgres", *extra]
    seconds, run = timed(lambda: run_step("postgres", args, env={"PGPASSWORD": pg.password}, timeout=3600))
    if run.code != 0:
        raise SystemExit(f"{action} failed: {run.stdout} {run.stderr[-2000:]}")
    return round(seconds, 2), round(run.peak_rss_mb, 1)


def measure(pg: PostgresServer, s3: Any, scale: int, reps: int, work: Path) -> dict[str, Any]:
    env = pg.env()
    shell(f"{pg_bin('dropdb')} --if-exists {DB} && {pg_bin('createdb')} {DB}", env)
    t_init, _ = timed(lambda: shell(f"{pg_bin('pgbench')} -i -q -s {scale} {DB} 2>/dev/null", env))
    size = int(pg.psql(f"SELECT pg_database_size('{DB}')"))
    client = s3.client()
    bucket = f"bench-{scale}"
    client.create_bucket(Bucket=bucket)
    store = f"s3://{bucket}/ours"
    res: dict[str, Any] = {"scale": scale, "db_bytes": size, "init_s": round(t_init, 1)}
    rows: dict[str, list[float]] = {"ours_backup": [], "runbook_backup": [], "pg_dump_devnull": []}
    rss: dict[str, list[float]] = {"backup": [], "restore": [], "verify": []}
    run_ids: list[str] = []
    gz = work / "all.sql.gz"
    for i in range(reps):
        s, r = ours(pg, store, "backup", "--run-id", f"20260101T0000{i:02d}Z-{scale:06x}")
        rows["ours_backup"].append(s)
        rss["backup"].append(r)
        run_ids.append(f"20260101T0000{i:02d}Z-{scale:06x}")

        def runbook(i: int = i) -> None:
            shell(f"{pg_bin('pg_dumpall')} | gzip > {gz}", env)
            client.upload_file(str(gz), bucket, f"runbook/{i}/all.sql.gz")

        rows["runbook_backup"].append(round(timed(runbook)[0], 2))
        rows["pg_dump_devnull"].append(
            round(timed(lambda: shell(f"{pg_bin('pg_dump')} -Fc -Z0 -d {DB} > /dev/null", env))[0], 2)
        )
    res["gzip_bytes"] = gz.stat().st_size
    plain = work / "plain.sql"
    shell(f"{pg_bin('pg_dump')} -Fp -d {DB} > {plain}", env)
    restore_rows: dict[str, list[float]] = {"ours_restore": [], "ours_restore_jobs1": [], "psql_plain_restore": []}
    for _ in range(max(1, reps - 1)):
        s, r = ours(pg, store, "restore", "--run-id", run_ids[-1], "--databases", DB, "--confirm")
        restore_rows["ours_restore"].append(s)
        rss["restore"].append(r)
        s, r = ours(pg, store, "restore", "--run-id", run_ids[-1], "--databases", DB, "--confirm", "--jobs", "1")
        restore_rows["ours_restore_jobs1"].append(s)
        rss["restore"].append(r)

        def psql_restore() -> None:
            shell(f"{pg_bin('dropdb')} --force {DB} && {pg_bin('createdb')} {DB}", env)
            shell(f"{pg_bin('psql')} -X -q -v ON_ERROR_STOP=1 -d {DB} -f {plain} > /dev/null", env)

        restore_rows["psql_plain_restore"].append(round(timed(psql_restore)[0], 2))
    s, r = ours(pg, store, "verify", "--run-id", run_ids[-1], "--databases", DB)
    rss["verify"].append(r)
    res["verify_s"] = s
    res["runs_s"] = {**rows, **restore_rows}
    med = {k: median(v) for k, v in {**rows, **restore_rows}.items()}
    res["median_s"] = med
    res["ratios"] = {
        "ours/runbook backup (target <= 0.5)": round(med["ours_backup"] / med["runbook_backup"], 2),
        "ours/pg_dump -Fc -Z0 >/dev/null (target <= 1.2)": round(med["ours_backup"] / med["pg_dump_devnull"], 2),
        "ours/psql -f restore (target <= 0.7)": round(med["ours_restore"] / med["psql_plain_restore"], 2),
        "ours --jobs 1/psql -f restore": round(med["ours_restore_jobs1"] / med["psql_plain_restore"], 2),
    }
    res["peak_rss_mb"] = {k: max(v) for k, v in rss.items()}
    plain.unlink()
    gz.unlink()
    return res


@contextlib.contextmanager
def servers() -> Iterator[tuple[Path, PostgresServer, Any]]:
    """A scratch dir, a PostgreSQL server and moto S3 (as ``AWS_ENDPOINT_URL``) for one benchmark run."""
    with tempfile.TemporaryDirectory(prefix="tdr-bench-") as tmp, postgres_server() as pg, s3_server() as s3:
        os.environ["AWS_ENDPOINT_URL"] = s3.endpoint
        yield Path(tmp), pg, s3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=50)
    parser.add_argument("--small-scale", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with servers() as (tmp, pg, s3):
        small = measure(pg, s3, args.small_scale, 1, tmp)
        big = measure(pg, s3, args.scale, args.reps, tmp)
    report("postgres", {"reps": args.reps, "small": small, "large": big})


if __name__ == "__main__":
    main()
