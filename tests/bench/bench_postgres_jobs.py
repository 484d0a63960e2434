"""PostgreSQL restore with ``--jobs 1`` (streamed) vs ``--jobs 2`` (local file, parallel) on a many-table schema.

Run: ``uv run python tests/bench/bench_postgres_jobs.py [--tables 24] [--rows 250000] [--reps 2]``.
pgbench keeps almost all its rows in one table, so ``pg_restore -j`` has nothing to run side by side
there. This dataset is the other shape: many mid-size tables, each with a primary key and two
secondary indexes, with md5 text that compresses about 2:1. ``psql -f`` of a plain dump is the
baseline, as in ``bench_postgres.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from _common import median, report, shell, timed  # type: ignore[import-not-found]
from bench_postgres import ours, servers  # type: ignore[import-not-found]

from tests.harness import PostgresServer, pg_bin

DB = "wide"


def build(pg: PostgresServer, tables: int, rows: int) -> None:
    """``tables`` tables of ``rows`` rows, each with a primary key and two secondary indexes."""
    shell(f"{pg_bin('dropdb')} --if-exists {DB} && {pg_bin('createdb')} {DB}", pg.env())
    for t in range(tables):
        pg.psql(
            f"CREATE TABLE t{t} (id bigint PRIMARY KEY, account int NOT NULL, note text NOT NULL,"
            " created timestamptz NOT NULL);"
            f" INSERT INTO t{t} SELECT i, (random() * 100000)::int, md5(random()::text) || md5(i::text),"
            f" now() - random() * interval '365 days' FROM generate_series(1, {rows}) i;"
            f" CREATE INDEX ON t{t} (account); CREATE INDEX ON t{t} (created);",
            DB,
        )
    pg.psql("VACUUM ANALYZE", DB)


def measure(pg: PostgresServer, s3: Any, tables: int, rows: int, reps: int, work: Path) -> dict[str, Any]:
    env = pg.env()
    t_build, _ = timed(lambda: build(pg, tables, rows))
    size = int(pg.psql(f"SELECT pg_database_size('{DB}')"))
    s3.client().create_bucket(Bucket="bench-jobs")
    store = "s3://bench-jobs/ours"
    run_id = "20260101T000000Z-0b0b0b"
    backup_s, _ = ours(pg, store, "backup", "--run-id", run_id, "--databases", DB)
    plain = work / "plain.sql"
    shell(f"{pg_bin('pg_dump')} -Fp -d {DB} > {plain}", env)
    rows_s: dict[str, list[float]] = {"ours_jobs1": [], "ours_jobs2": [], "psql_plain_restore": []}
    rss: list[float] = []
    for _ in range(reps):
        for jobs in (1, 2):
            s, r = ours(pg, store, "restore", "--run-id", run_id, "--databases", DB, "--confirm", "--jobs", str(jobs))
            rows_s[f"ours_jobs{jobs}"].append(s)
            rss.append(r)

        def psql_restore() -> None:
            shell(f"{pg_bin('dropdb')} --force {DB} && {pg_bin('createdb')} {DB}", env)
            shell(f"{pg_bin('psql')} -X -q -v ON_ERROR_STOP=1 -d {DB} -f {plain} > /dev/null", env)

        rows_s["psql_plain_restore"].append(round(timed(psql_restore)[0], 2))
    plain.unlink()
    med = {k: median(v) for k, v in rows_s.items()}
    return {
        "tables": tables,
        "rows_per_table": rows,
        "db_bytes": size,
        "build_s": round(t_build, 1),
        "backup_s": backup_s,
        "runs_s": rows_s,
        "median_s": med,
        "ratios": {
            "jobs2/jobs1": round(med["ours_jobs2"] / med["ours_jobs1"], 2),
            "jobs1/psql -f": round(med["ours_jobs1"] / med["psql_plain_restore"], 2),
            "jobs2/psql -f": round(med["ours_jobs2"] / med["psql_plain_restore"], 2),
        },
        "peak_rss_mb": max(rss),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tables", type=int, default=24)
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    with servers() as (tmp, pg, s3):
        result = measure(pg, s3, args.tables, args.rows, args.reps, tmp)
    report("postgres_jobs", {"reps": args.reps, **result})


if __name__ == "__main__":
    main()
