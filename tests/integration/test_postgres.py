"""``python -m steps.postgres`` against real PostgreSQL servers, through the CLI (subprocesses)."""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path

import psycopg2
import pytest

from steps.postgres import PgTarget, aside_name, connection, query
from steps.runtime.errors import TransientError, UsageError
from steps.storage import open_store
from steps.storage.catalog import Catalog
from tests.harness import PostgresServer, StepRun, free_port, pg_bin, postgres_server, run_step
from tests.integration.postgres_redis_support import CmdlineWatch, corrupt_middle

TENANT = "acme"
APP_ROLE_PASSWORD = "app-Role-pw-5e1d"

SCHEMA = f"""
CREATE EXTENSION pgcrypto;
CREATE EXTENSION hstore;
CREATE ROLE app_owner LOGIN PASSWORD '{APP_ROLE_PASSWORD}';
CREATE SCHEMA shop AUTHORIZATION app_owner;
CREATE TYPE shop.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE shop.items (
    id bigserial PRIMARY KEY,
    doc json, docb jsonb, blob bytea, tags text[], nums int[][],
    price numeric(20, 6), ratio double precision, at timestamptz, d date, span interval,
    flag boolean, u uuid DEFAULT gen_random_uuid(), h hstore, m shop.mood, r int4range, ip inet
);
INSERT INTO shop.items (doc, docb, blob, tags, nums, price, ratio, at, d, span, flag, h, m, r, ip)
SELECT json_build_object('i', g, 's', repeat('x', g % 17)),
       jsonb_build_object('k', g, 'arr', jsonb_build_array(g, g * 2)),
       digest(g::text, 'sha256'), ARRAY['a' || g, 'b', NULL], ARRAY[[g, g + 1], [g + 2, g + 3]],
       g * 1.123456, g / 7.0, '2024-01-01 00:00:00+00'::timestamptz + g * interval '37 minutes',
       DATE '2020-02-29' + g, g * interval '1 second', g % 2 = 0, ('a=>' || g)::hstore,
       (ARRAY['sad', 'ok', 'happy'])[1 + g % 3]::shop.mood, int4range(g, g + 10), ('10.0.' || (g % 255) || '.1')::inet
FROM generate_series(1, 3000) g;
ALTER TABLE shop.items OWNER TO app_owner;
CREATE TABLE public.events (id serial PRIMARY KEY, item_id bigint REFERENCES shop.items(id), note text);
INSERT INTO public.events (item_id, note) SELECT g, md5(g::text) FROM generate_series(1, 500) g;
CREATE SEQUENCE public.ticket START 1000 INCREMENT 7;
SELECT nextval('public.ticket') FROM generate_series(1, 5);
CREATE VIEW shop.cheap AS SELECT id, price FROM shop.items WHERE price < 100;
CREATE FUNCTION shop.total() RETURNS numeric LANGUAGE sql AS 'SELECT sum(price) FROM shop.items';
CREATE TABLE public.docs (id int PRIMARY KEY, lo oid);
INSERT INTO public.docs SELECT g, lo_from_bytea(0, convert_to(repeat('large object ' || g, 500), 'UTF8'))
FROM generate_series(1, 5) g;
CREATE TABLE public.empty_table (x int);
"""


def table_checksums(pg: PostgresServer, db: str) -> dict[str, str]:
    """Ordered checksum of every user table, plus large objects, sequences, view and function results."""
    tables = pg.psql(
        "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        db,
    ).split()
    sums = {
        t: pg.psql(
            f"SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM {t} x", db
        )
        for t in tables
    }
    sums["large_objects"] = pg.psql(
        "SELECT coalesce(md5(string_agg(oid::text || md5(lo_get(oid)), ',' ORDER BY oid)), '') "
        "FROM pg_largeobject_metadata",
        db,
    )
    sums["sequences"] = pg.psql(
        "SELECT string_agg(schemaname || '.' || sequencename || '=' || coalesce(last_value, 0), ','"
        " ORDER BY schemaname, sequencename) "
        "FROM pg_sequences",
        db,
    )
    return sums


def seed(pg: PostgresServer) -> None:
    for db in ("app", "aux"):
        pg.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    pg.psql("DROP ROLE IF EXISTS app_owner")
    pg.psql("CREATE DATABASE app")
    pg.psql("CREATE DATABASE aux")
    pg.psql(SCHEMA, "app")
    pg.psql(
        "CREATE TABLE notes (id int PRIMARY KEY, body text);"
        "INSERT INTO notes SELECT g, 'n' || g FROM generate_series(1, 200) g",
        "aux",
    )


def step(pg: PostgresServer, store: str, *args: str, env: dict[str, str] | None = None, **kw: object) -> StepRun:
    common = ["--tenant", TENANT, "--store", store, "--host", pg.host, "--port", str(pg.port), "--user", "postgres"]
    return run_step("postgres", [args[0], *common, *args[1:]], env={"PGPASSWORD": pg.password, **(env or {})})


def catalog_of(store: str) -> Catalog:
    return Catalog(open_store(store), TENANT)


def can_login(pg: PostgresServer, user: str, password: str) -> bool:
    try:
        psycopg2.connect(host=pg.host, port=pg.port, user=user, password=password, dbname="app").close()
    except psycopg2.OperationalError:
        return False
    return True


@pytest.fixture
def seeded(pg: PostgresServer) -> PostgresServer:
    seed(pg)
    return pg


def test_round_trip_identical_content(seeded: PostgresServer, store_url: str) -> None:
    pg = seeded
    before = {db: table_checksums(pg, db) for db in ("app", "aux")}
    backup = step(pg, store_url, "backup", "--databases", "app,aux")
    assert backup.code == 0, backup.stdout + backup.stderr
    run_id = backup.result["run_id"]
    manifest = catalog_of(store_url).read_manifest(run_id, "postgres")
    assert manifest.source["server_version_num"] >= 150000 and manifest.source["pg_dump_major"] >= 15
    tables = manifest.fingerprints["databases"]["app"]["tables"]
    assert tables["shop.items"] == {"rows": 3000, "exact": True}
    assert manifest.fingerprints["databases"]["app"]["large_objects"] == 5
    assert all(o.sha256 and o.size > 0 for o in manifest.objects)

    # wipe: databases and the role are gone
    pg.psql("DROP DATABASE app WITH (FORCE)")
    pg.psql("DROP DATABASE aux WITH (FORCE)")
    pg.psql("DROP ROLE app_owner")

    plan = step(pg, store_url, "restore", "--run-id", run_id)
    assert plan.code == 0 and plan.result["dry_run"] is True
    assert plan.result["plan"]["create"] == ["app", "aux"] and "app_owner" in plan.result["plan"]["roles"]["create"]
    assert "app" not in pg.psql("SELECT string_agg(datname, ',') FROM pg_database")

    restored = step(pg, store_url, "restore", "--run-id", run_id, "--confirm")
    assert restored.code == 0, restored.stdout + restored.stderr
    after = {db: table_checksums(pg, db) for db in ("app", "aux")}
    assert {(db, k, v) for db in after for k, v in after[db].items()} == {
        (db, k, v) for db in before for k, v in before[db].items()
    }
    assert pg.psql("SELECT nextval('public.ticket')", "app") == str(1000 + 5 * 7)
    assert pg.psql("SELECT nextval('shop.items_id_seq')", "app") == "3001"
    assert pg.psql("SELECT count(*) FROM shop.cheap", "app") == pg.psql(
        "SELECT count(*) FROM shop.items WHERE price < 100", "app"
    )
    assert pg.psql("SELECT shop.total() = (SELECT sum(price) FROM shop.items)", "app") == "t"
    assert pg.psql("SELECT extname FROM pg_extension WHERE extname = 'hstore'", "app") == "hstore"
    assert pg.psql("SELECT tableowner FROM pg_tables WHERE tablename = 'items'", "app") == "app_owner"
    assert can_login(pg, "app_owner", APP_ROLE_PASSWORD)  # the backup's role password
    assert can_login(pg, "postgres", pg.password)  # the connecting superuser keeps the target's
    for db in ("app", "aux"):  # analysed (by vacuumdb -j 2): the planner has statistics at once
        assert pg.psql("SELECT count(*) FROM pg_stat_user_tables WHERE last_analyze IS NULL", db) == "0"

    verify = step(pg, store_url, "verify", "--run-id", run_id)
    assert verify.code == 0 and verify.result["tables_checked"] == 5


def test_restore_one_database_leaves_others_untouched(seeded: PostgresServer, tmp_path: Path) -> None:
    pg, store = seeded, f"file://{tmp_path / 'store'}"
    assert step(pg, store, "backup").code == 0
    pg.psql("INSERT INTO notes VALUES (9999, 'written after the backup')", "aux")
    pg.psql("DELETE FROM shop.items WHERE id > 2900", "app")
    pg.psql("ALTER ROLE app_owner PASSWORD 'changed-on-target'")
    aux_before = table_checksums(pg, "aux")

    kept = step(pg, store, "restore", "--databases", "app", "--confirm", "--keep-target-passwords", "--jobs", "1")
    assert kept.code == 0, kept.stdout + kept.stderr
    assert pg.psql("SELECT count(*) FROM shop.items", "app") == "3000"
    assert table_checksums(pg, "aux") == aux_before
    assert can_login(pg, "app_owner", "changed-on-target")

    default = step(pg, store, "restore", "--databases", "app", "--confirm")
    assert default.code == 0
    assert can_login(pg, "app_owner", APP_ROLE_PASSWORD) and not can_login(pg, "app_owner", "changed-on-target")
    assert table_checksums(pg, "aux") == aux_before


def test_verify_reports_per_table_diff_and_estimates(seeded: PostgresServer, tmp_path: Path) -> None:
    pg, store = seeded, f"file://{tmp_path / 'store'}"
    pg.psql("ANALYZE", "app")
    backup = step(pg, store, "backup", "--databases", "app", "--exact-count-max-mib", "0")
    assert backup.code == 0
    tables = catalog_of(store).read_manifest(backup.result["run_id"], "postgres").fingerprints["databases"]["app"]
    assert tables["tables"]["shop.items"]["exact"] is False  # above the (zero) size limit: estimated
    assert tables["tables"]["public.empty_table"] == {"rows": 0, "exact": True}  # zero bytes: counted

    pg.psql("INSERT INTO empty_table VALUES (1); SELECT lo_unlink(lo) FROM public.docs WHERE id = 2", "app")
    verify = step(pg, store, "verify")
    assert verify.code == 3
    assert "app.public.empty_table: 1 rows, expected 0" in verify.error
    assert "app: 4 large objects, expected 5" in verify.error
    assert "\n" not in verify.error


def _shim(tmp_path: Path, body: str) -> Path:
    shim = tmp_path / "shim"
    shim.mkdir()
    for tool in ("pg_dumpall", "pg_restore", "psql"):
        (shim / tool).symlink_to(pg_bin(tool))
    script = shim / "pg_dump"
    script.write_text(f"#!/bin/bash\nREAL={pg_bin('pg_dump')}\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return shim


def test_pg_dump_killed_mid_stream_leaves_no_manifest(seeded: PostgresServer, tmp_path: Path) -> None:
    pg, store = seeded, f"file://{tmp_path / 'store'}"
    # The external producer dies after 20 kB of output (SIGKILL), like an OOM-killed pg_dump.
    shim = _shim(
        tmp_path, 'if [ "$1" = --version ]; then exec $REAL --version; fi\n"$REAL" "$@" | head -c 20000\nkill -9 $$'
    )
    result = step(pg, store, "backup", "--pg-bin-dir", str(shim))
    assert result.code == 1
    assert "pg_dump of database" in result.error and "exit -9" in result.error
    runs = catalog_of(store).list_runs()
    assert len(runs) <= 1 and not any(r.complete or "postgres" in r.components for r in runs)
    assert not list((tmp_path / "store").rglob("manifest.json"))
    assert not list((tmp_path / "store").rglob("*.dump"))  # the truncated dump was not left behind


def test_old_pg_dump_is_refused(seeded: PostgresServer, tmp_path: Path) -> None:
    shim = _shim(tmp_path, 'echo "pg_dump (PostgreSQL) 11.22"')
    result = step(seeded, f"file://{tmp_path / 'store'}", "backup", "--pg-bin-dir", str(shim))
    assert result.code == 2
    assert "pg_dump 11 is older than the PostgreSQL 15 server" in result.error


def test_corrupted_object_fails_before_touching_the_target(seeded: PostgresServer, store_url: str) -> None:
    pg = seeded
    backup = step(pg, store_url, "backup", "--databases", "app,aux")
    assert backup.code == 0
    catalog = catalog_of(store_url)
    manifest = catalog.read_manifest(backup.result["run_id"], "postgres")
    record = next(o for o in manifest.objects if o.meta.get("database") == "aux")
    key = catalog.object_key(manifest, record)
    if store_url.startswith("file://"):
        corrupt_middle(Path(store_url.removeprefix("file://")) / key)
    else:
        import boto3

        bucket, prefix = store_url.removeprefix("s3://").split("/", 1)
        s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
        body = bytearray(s3.get_object(Bucket=bucket, Key=f"{prefix}/{key}")["Body"].read())
        body[len(body) // 2] ^= 0xFF
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=bytes(body))
    pg.psql("INSERT INTO notes VALUES (4242, 'after backup')", "aux")
    pg.psql("UPDATE shop.items SET price = 0 WHERE id = 1", "app")
    before = {db: table_checksums(pg, db) for db in ("app", "aux")}

    jobs = "2" if store_url.startswith("file://") else "1"  # downloaded for -j2, streamed-verify for -j1
    result = step(pg, store_url, "restore", "--confirm", "--jobs", jobs)
    assert result.code == 3, result.stdout
    assert "does not match its manifest" in result.error or "corrupt" in result.error
    assert {db: table_checksums(pg, db) for db in ("app", "aux")} == before  # nothing was dropped or restored


def test_wrong_password_and_unreachable_host(seeded: PostgresServer, tmp_path: Path) -> None:
    store = f"file://{tmp_path / 'store'}"
    wrong = step(seeded, store, "backup", env={"PGPASSWORD": "not-the-password"})
    assert wrong.code == 2
    assert "password authentication failed" in wrong.error and "\n" not in wrong.error
    assert "not-the-password" not in wrong.stdout + wrong.stderr

    args = ["--tenant", TENANT, "--store", store, "--host", "127.0.0.1", "--port", str(free_port()), "--user", "x"]
    unreachable = run_step("postgres", ["backup", *args], env={"PGPASSWORD": "whatever-pw"})
    assert unreachable.code == 1
    assert "cannot reach PostgreSQL" in unreachable.error and "\n" not in unreachable.error


def test_restores_that_would_fail_after_the_drop_are_refused_before_it(seeded: PostgresServer, tmp_path: Path) -> None:
    pg, store = seeded, f"file://{tmp_path / 'store'}"
    backup = step(pg, store, "backup", "--databases", "app,aux")
    assert backup.code == 0
    catalog = catalog_of(store)
    manifest = catalog.read_manifest(backup.result["run_id"], "postgres")
    app = next(o for o in manifest.objects if o.meta.get("database") == "app")
    assert {"hstore", "plpgsql"} <= set(app.meta["extensions"])  # recorded at backup time
    pg.psql("UPDATE notes SET body = 'changed' WHERE id = 1", "aux")
    before = {db: table_checksums(pg, db) for db in ("app", "aux")}

    # a role that owns the database but cannot create databases: exit 2 before aux is dropped
    pg.psql("CREATE ROLE restorer LOGIN CREATEROLE PASSWORD 'restorer-Pw-77'; ALTER DATABASE aux OWNER TO restorer")
    try:
        args = ["--tenant", TENANT, "--store", store, "--host", pg.host, "--port", str(pg.port), "--user", "restorer"]
        limited = run_step(
            "postgres", ["restore", *args, "--databases", "aux", "--confirm"], env={"PGPASSWORD": "restorer-Pw-77"}
        )
        assert limited.code == 2, limited.stdout
        assert "user 'restorer'" in limited.error and "cannot create databases" in limited.error
        assert "CREATEDB" in limited.error and "\n" not in limited.error
        # ... and one that can create databases but does not own aux: exit 2, not a rename that fails
        pg.psql("ALTER ROLE restorer CREATEDB; ALTER DATABASE aux OWNER TO postgres")
        for strategy in ("swap", "drop-first"):
            other = run_step(
                "postgres",
                ["restore", *args, "--databases", "aux", "--confirm", "--strategy", strategy],
                env={"PGPASSWORD": "restorer-Pw-77"},
            )
            assert other.code == 2, other.stdout
            assert "user 'restorer'" in other.error and "does not own database(s) aux" in other.error
    finally:
        pg.psql("ALTER DATABASE aux OWNER TO postgres; DROP ROLE restorer")
    assert {db: table_checksums(pg, db) for db in ("app", "aux")} == before

    # an extension the target server lacks, or an older target server: exit 3, with or without --confirm
    path = Path(store.removeprefix("file://")) / catalog.manifest_key(backup.result["run_id"], "postgres")
    original = path.read_text()
    doc = json.loads(original)
    next(o for o in doc["objects"] if o["meta"].get("database") == "app")["meta"]["extensions"]["tdr_nowhere"] = "1.0"
    path.write_text(json.dumps(doc))
    for args in (["restore"], ["restore", "--confirm"]):
        lacking = step(pg, store, *args)
        assert lacking.code == 3, lacking.stdout
        assert "lacks extensions the backed-up databases use (app: tdr_nowhere)" in lacking.error
    doc = json.loads(original)
    doc["source"]["server_version_num"], doc["source"]["server_version"] = 990000, "99.0"
    path.write_text(json.dumps(doc))
    newer = step(pg, store, "restore", "--confirm")
    assert newer.code == 3 and "runs PostgreSQL 15, older than the backed-up server (99.0)" in newer.error

    # a collation the target's OS lacks: a throwaway CREATE DATABASE finds out, before the drop
    assert app.meta["locale"]["encoding"] == "UTF8" and app.meta["locale"]["collate"]  # recorded at backup
    doc = json.loads(original)
    next(o for o in doc["objects"] if o["meta"].get("database") == "aux")["meta"]["locale"]["collate"] = "xx_NOWHERE"
    path.write_text(json.dumps(doc))
    plan = step(pg, store, "restore", "--databases", "aux")  # a plan creates nothing, not even the probe
    assert plan.code == 0 and plan.result["dry_run"] is True, plan.stdout
    lost = step(pg, store, "restore", "--databases", "aux", "--confirm")
    assert lost.code == 3, lost.stdout
    assert "cannot create database 'aux' as it was backed up (encoding UTF8, collation xx_NOWHERE)" in lost.error
    assert "install that locale" in lost.error and "\n" not in lost.error
    assert {db: table_checksums(pg, db) for db in ("app", "aux")} == before
    assert not pg.psql("SELECT datname FROM pg_database WHERE datname LIKE 'tenant_dr_probe_%'")

    path.write_text(original)  # the probe passes for the real locale, and leaves nothing behind
    assert step(pg, store, "restore", "--databases", "aux", "--confirm").code == 0
    assert not pg.psql("SELECT datname FROM pg_database WHERE datname LIKE 'tenant_dr_probe_%'")


def test_a_restore_that_does_not_match_the_backup_puts_the_old_databases_back(
    seeded: PostgresServer, tmp_path: Path
) -> None:
    pg, store = seeded, f"file://{tmp_path / 'store'}"
    backup = step(pg, store, "backup", "--databases", "app,aux")
    assert backup.code == 0
    pg.psql("UPDATE notes SET body = 'changed' WHERE id = 1", "aux")
    pg.psql("ALTER ROLE app_owner PASSWORD 'changed-on-target'")  # what the apps use now
    before = {db: table_checksums(pg, db) for db in ("app", "aux")}
    oids = pg.psql("SELECT string_agg(datname || '=' || oid, ',' ORDER BY datname) FROM pg_database")

    # the manifest says aux.notes held one row more than its dump does: the check after pg_restore fails
    path = Path(store.removeprefix("file://")) / catalog_of(store).manifest_key(backup.result["run_id"], "postgres")
    original = path.read_text()
    doc = json.loads(original)
    doc["fingerprints"]["databases"]["aux"]["tables"]["public.notes"]["rows"] += 1
    path.write_text(json.dumps(doc))
    idle = psycopg2.connect(host=pg.host, port=pg.port, user="postgres", password=pg.password, dbname="aux")
    try:
        mismatch = step(pg, store, "restore", "--confirm")
        assert mismatch.code == 3, mismatch.stdout
        error = mismatch.error
        assert "failed after every database was restored" in error
        assert "aux.public.notes: 200 rows, expected 201" in error and "passwords are unchanged" in error
        assert "nothing was replaced: app, aux back as before the restore" in error and "\n" not in error
        with pytest.raises(psycopg2.OperationalError):  # the old aux's sessions were ended for the swap
            idle.cursor().execute("SELECT 1")
    finally:
        idle.close()
    assert {db: table_checksums(pg, db) for db in ("app", "aux")} == before
    assert pg.psql("SELECT string_agg(datname || '=' || oid, ',' ORDER BY datname) FROM pg_database") == oids
    assert can_login(pg, "app_owner", "changed-on-target")  # the failed restore did not lock the apps out

    # a copy an earlier restore replaced but could not drop, and one of a database not being restored
    replaced, other = aside_name("aux", "stale"), aside_name("gone")
    for name in (replaced, other):
        pg.psql(f'CREATE DATABASE "{name}"')
    try:
        path.write_text(original)
        plan = step(pg, store, "restore")
        assert plan.code == 0 and plan.result["plan"]["drop_replaced_copies"] == [replaced]
        held = plan.result["plan"]["swap_disk"]  # what the server must have room for beside the old copies
        assert held["old_copies_bytes"] == int(
            pg.psql("SELECT sum(pg_database_size(datname)) FROM pg_database WHERE datname IN ('app', 'aux')")
        )
        assert held["new_dumps_raw_bytes"] > 0
        assert "copies left aside by an earlier restore" in plan.stderr and other in plan.stderr
        assert replaced in pg.psql("SELECT datname FROM pg_database")  # a plan drops nothing
        done = step(pg, store, "restore", "--confirm")
        assert done.code == 0, done.stdout
        assert pg.psql("SELECT body FROM notes WHERE id = 1", "aux") == "n1"
        assert done.result["plan"]["roles"]["password_from_backup"] == ["app_owner"]
        assert can_login(pg, "app_owner", APP_ROLE_PASSWORD)  # a restore that checks out sets the backup's
        aside = pg.psql("SELECT string_agg(datname, ',') FROM pg_database WHERE datname ~ '^tdr_(prior|stale)_'")
        assert aside == other  # the replaced copy is gone; the other database's is not this restore's to drop
    finally:
        pg.psql(f'DROP DATABASE IF EXISTS "{other}"')


def test_the_maintenance_database_itself_is_swapped_from_template1(seeded: PostgresServer, tmp_path: Path) -> None:
    pg, store = seeded, f"file://{tmp_path / 'store'}"
    pg.psql("DROP TABLE IF EXISTS marker; CREATE TABLE marker (x int); INSERT INTO marker VALUES (1)")
    backup = step(pg, store, "backup")  # every database, the maintenance database (postgres) too
    assert backup.code == 0 and "postgres" in backup.result["databases"], backup.stdout
    pg.psql("INSERT INTO marker VALUES (2)")
    restored = step(pg, store, "restore", "--databases", "postgres", "--confirm")
    assert restored.code == 0, restored.stdout
    assert pg.psql("SELECT string_agg(x::text, ',') FROM marker") == "1"
    assert not pg.psql("SELECT datname FROM pg_database WHERE datname ~ '^tdr_(prior|stale)_'")
    pg.psql("DROP TABLE marker")


def test_backup_and_verify_flag_a_database_an_interrupted_restore_left_half_replaced(
    seeded: PostgresServer, tmp_path: Path
) -> None:
    """The state a killed swap restore leaves (test_process_faults kills one): the old copy aside."""
    pg, store = seeded, f"file://{tmp_path / 'store'}"
    prior = aside_name("aux")
    pg.psql(f'CREATE DATABASE "{prior}" TEMPLATE aux')  # the old aux, kept aside; aux is the new, partial one
    try:
        marked = step(pg, store, "backup", "--databases", "app,aux")
        assert marked.code == 0, marked.stdout
        assert marked.result["interrupted_restores"] == {"aux": prior}
        assert "an interrupted restore left these databases half-replaced" in marked.stderr
        manifest = catalog_of(store).read_manifest(marked.result["run_id"], "postgres")
        aux = next(o for o in manifest.objects if o.meta.get("database") == "aux")
        assert aux.meta["interrupted_restore"] == prior  # whoever restores this run can see it
        plan = step(pg, store, "restore", "--run-id", marked.result["run_id"])
        assert plan.code == 0 and plan.result["plan"]["backed_up_while_half_replaced"] == ["aux"], plan.stdout

        pg.psql("DROP DATABASE aux")  # killed after the rename, before pg_restore created the new aux
        for action in ("backup", "verify"):
            gone = step(pg, store, action, "--databases", "app,aux")
            assert gone.code == 3, gone.stdout
            assert f"aux at {pg.host}:{pg.port} are missing because a restore was interrupted" in gone.error
            assert prior in gone.error and "re-run that restore" in gone.error
    finally:
        pg.psql(f'DROP DATABASE IF EXISTS "{prior}"')
        seed(pg)


def test_server_errors_become_one_line_step_errors_with_the_statement_and_reason(pg: PostgresServer) -> None:
    target = PgTarget(pg.host, pg.port, "postgres", pg.password, "postgres")
    pg.psql("DROP ROLE IF EXISTS peeker; CREATE ROLE peeker LOGIN PASSWORD 'peeker-Pw-31'")
    try:
        peeker = PgTarget(pg.host, pg.port, "peeker", "peeker-Pw-31", "postgres")
        with connection(peeker) as conn, pytest.raises(UsageError) as refused:  # exit 2: retrying cannot help
            query(conn, "SELECT rolpassword FROM pg_authid")
        assert "refused 'SELECT rolpassword FROM pg_authid'" in refused.value.message
        assert "permission denied" in refused.value.message and "superuser" in (refused.value.hint or "")
    finally:
        pg.psql("DROP ROLE peeker")
    with connection(target) as conn, pytest.raises(TransientError) as lost:  # exit 1: Argo retries the step
        query(conn, "SELECT pg_terminate_backend(pg_backend_pid())")
    assert lost.value.message.startswith(f"lost the connection to PostgreSQL at {pg.host}:{pg.port} during")
    assert "terminat" in lost.value.message and "\n" not in lost.value.one_line()


def test_restore_of_missing_run_names_available_runs(seeded: PostgresServer, tmp_path: Path) -> None:
    store = f"file://{tmp_path / 'store'}"
    backup = step(seeded, store, "backup", "--databases", "aux")
    assert backup.code == 0
    missing = step(seeded, store, "restore", "--run-id", "20200101T000000Z-abcdef", "--confirm")
    assert missing.code == 3
    assert "run 20200101T000000Z-abcdef not found" in missing.error and backup.result["run_id"] in missing.error


def test_no_password_in_logs_or_process_arguments(seeded: PostgresServer, tmp_path: Path) -> None:
    pg, store = seeded, f"file://{tmp_path / 'store'}"
    pwfile = tmp_path / "pw"
    pwfile.write_text(pg.password + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    common = ["--tenant", TENANT, "--store", store, "--host", pg.host, "--port", str(pg.port), "--user", "postgres"]
    with CmdlineWatch() as watch:
        backup = run_step("postgres", ["backup", *common, "--password-file", str(pwfile)], env=env)
        restore = run_step(
            "postgres", ["restore", *common, "--password-file", str(pwfile), "--confirm", "--databases", "app"], env=env
        )
    assert backup.code == 0 and restore.code == 0, restore.stdout
    assert watch.matching("pg_dump") and watch.matching("pg_restore")  # the sampler saw the children
    assert not watch.matching(pg.password) and not watch.matching(APP_ROLE_PASSWORD)
    for run in (backup, restore):
        assert pg.password not in run.stdout + run.stderr
        assert all(pg.password not in json.dumps(line) for line in run.logs)


def test_backup_is_idempotent_and_restores_into_another_server(seeded: PostgresServer, s3: object, bucket: str) -> None:
    store = f"s3://{bucket}/pg"
    run_id = f"20260101T030000Z-{uuid.uuid4().hex[:6]}"
    first = step(seeded, store, "backup", "--run-id", run_id, "--databases", "app")
    again = step(seeded, store, "backup", "--run-id", run_id, "--databases", "app")
    assert first.code == 0 and again.code == 0 and again.result["skipped"] == "already complete"
    before = table_checksums(seeded, "app")
    with postgres_server(password="other-Target-pw-31") as other:
        result = step(other, store, "restore", "--run-id", run_id, "--confirm")
        assert result.code == 0, result.stdout + result.stderr
        assert table_checksums(other, "app") == before
        assert can_login(other, "postgres", "other-Target-pw-31")
