"""``python -m steps.postgres backup|restore|verify``: pg_dump/pg_restore streamed through the catalog.

Backup: ``pg_dumpall --globals-only`` plus one ``pg_dump -Fc -Z0`` per database, each streamed
through zstd into the store (no temp files). Row counts are taken inside the snapshot pg_dump
uses, so they describe exactly what was dumped. Restore: verify every object, then (with
``--confirm``) apply globals, drop/recreate each chosen database with ``pg_restore -C``, ANALYZE and
compare row counts with the manifest. By default (``--strategy swap``) each database is renamed aside
rather than dropped, and the old copies are dropped only once every restored database has matched
the manifest; any failure before that puts the old ones back. Passwords reach child processes only
through ``PGPASSWORD``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import click
import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from steps.runtime import (
    IntegrityError,
    Progress,
    StepError,
    Terminated,
    TransientError,
    UsageError,
    action,
    component,
    confirm_option,
    get_logger,
    read_secret,
    write_output,
)
from steps.storage.catalog import Catalog, new_run_id
from steps.storage.manifest import ComponentManifest, ObjectRecord, utcnow
from steps.storage.options import catalog_options
from steps.storage.stream import download_verified, ensure_space, iter_verified, verify

F = TypeVar("F", bound=Callable[..., Any])
COMPONENT = "postgres"
GLOBALS_NAME = "globals.sql"
ESTIMATE_TOLERANCE = 0.10  # relative tolerance for tables whose row count was estimated
_AUTH_MARKERS = (
    "password authentication failed",
    "no password supplied",
    "does not exist",
    "pg_hba.conf",
    "permission denied",
    "authentication failed",
)
_TABLES_SQL = """
SELECT n.nspname, c.relname, c.reltuples::bigint, pg_relation_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""
_ASIDE_RE = re.compile(r"^tdr_(prior|stale)_[0-9a-f]{8}_")
NAME_BYTES = 63  # NAMEDATALEN - 1
_NO_SPACE_MARKERS = ("No space left on device", "could not extend file", "could not write to file")
_ROLE_NAME = r'(?P<name>"(?:[^"]|"")+"|[^\s;"]+)'
_CREATE_ROLE_RE = re.compile(rf"^CREATE ROLE {_ROLE_NAME};$")
_CREATE_TABLESPACE_RE = re.compile(rf"^CREATE TABLESPACE {_ROLE_NAME} ")
_ALTER_ROLE_RE = re.compile(rf"^(?P<head>ALTER ROLE {_ROLE_NAME} WITH .*?)(?P<pw> PASSWORD '(?:[^']|'')*')?;$")

cli = component(COMPONENT, "PostgreSQL: pg_dump per database + globals, streamed to the catalog; verified restore.")


# ---- connection ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PgTarget:
    """Where and how to connect; ``None`` fields fall back to libpq's env vars and defaults."""

    host: str | None
    port: int | None
    user: str | None
    password: str | None
    maintenance_db: str

    def child_env(self, dbname: str | None = None) -> dict[str, str]:
        """Environment for pg_dump/pg_restore/psql: connection settings and the password, never argv."""
        env = dict(os.environ)
        for key, value in (("PGHOST", self.host), ("PGPORT", self.port), ("PGUSER", self.user)):
            if value is not None:
                env[key] = str(value)
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        env["PGDATABASE"] = dbname or self.maintenance_db
        env.setdefault("PGCONNECT_TIMEOUT", "15")
        env["PGAPPNAME"] = "tenant-dr"
        return env

    @property
    def where(self) -> str:
        """``host:port`` for messages."""
        return f"{self.host or os.environ.get('PGHOST', 'localhost')}:{self.port or os.environ.get('PGPORT', '5432')}"


class _Retryable(Exception):
    pass


def connect(target: PgTarget, dbname: str | None = None, *, autocommit: bool = True) -> Any:
    """A psycopg2 connection; auth/config problems are usage errors, network trouble is transient."""
    params: dict[str, Any] = {
        "dbname": dbname or target.maintenance_db,
        "connect_timeout": 15,
        "application_name": "tenant-dr",
    }
    for key, value in (("host", target.host), ("port", target.port), ("user", target.user)):
        if value is not None:
            params[key] = value
    if target.password is not None:
        params["password"] = target.password

    @retry(
        retry=retry_if_exception_type(_Retryable),
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.5, max=4),
        reraise=True,
    )
    def attempt() -> Any:
        try:
            return psycopg2.connect(**params)
        except psycopg2.OperationalError as exc:
            text = " ".join(str(exc).split())
            if any(m in text for m in _AUTH_MARKERS):
                raise UsageError(
                    f"cannot connect to PostgreSQL at {target.where} as {target.user or '(libpq default user)'}: "
                    f"{text}",
                    hint="check the user, the password (PGPASSWORD or --password-file) and the database",
                ) from exc
            raise _Retryable(text) from exc

    try:
        conn = attempt()
    except _Retryable as exc:
        raise TransientError(
            f"cannot reach PostgreSQL at {target.where}: {exc}",
            hint="check --host/--port and that the server is up",
        ) from exc
    conn.autocommit = autocommit
    return conn


@contextlib.contextmanager
def connection(target: PgTarget, dbname: str | None = None) -> Iterator[Any]:
    """``connect`` as a context manager that always closes."""
    conn = connect(target, dbname)
    try:
        yield conn
    finally:
        conn.close()


def query(conn: Any, statement: str | sql.Composable, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement and return its rows (empty for statements without a result).

    A refusal for lack of privilege is a usage error (exit 2); any other server or connection error
    is transient (exit 1), and the message names the statement and the server's reason.
    """
    with conn.cursor() as cur:
        try:
            cur.execute(statement, args or None)
            return list(cur.fetchall()) if cur.description else []
        except psycopg2.Error as exc:
            sent = (cur.query or b"").decode("utf-8", "replace")
            raise sql_error(conn, " ".join(sent.split())[:120] or "a statement", exc) from exc


def sql_error(conn: Any, statement: str, exc: psycopg2.Error) -> StepError:
    """``exc`` (from running ``statement``) as a step error with the server's reason and a hint."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    where = f"{conn.info.host}:{conn.info.port}"
    if isinstance(exc, psycopg2.errors.InsufficientPrivilege):
        return UsageError(
            f"PostgreSQL at {where} refused {statement!r}: {reason}",
            hint="connect as a superuser or as the owner of the objects involved",
        )
    if isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError):
        return TransientError(
            f"lost the connection to PostgreSQL at {where} during {statement!r}: {reason}",
            hint="check that the server is up and reachable; the step is retried",
        )
    return TransientError(
        f"PostgreSQL at {where} failed {statement!r}: {reason}", hint="see the server's log for the cause"
    )


def list_databases(conn: Any) -> list[str]:
    """Every database that accepts connections and is not a template (nor a restore's prior copy)."""
    rows = query(conn, "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname")
    return [r[0] for r in rows if not _ASIDE_RE.match(r[0])]


def database_exists(conn: Any, name: str) -> bool:
    """Whether ``name`` is in pg_database (whether or not it accepts connections)."""
    return bool(query(conn, "SELECT 1 FROM pg_database WHERE datname = %s", (name,)))


def aside_name(db: str, kind: str = "prior") -> str:
    """The name a swap restore keeps ``db``'s old copy under: one per database and kind, at most 63 bytes.

    ``prior``: the swap has not committed, so the copy is the database's real content and an
    interrupted restore puts it back. ``stale``: a checked restore replaced it; it is only dropped.
    """
    head = f"tdr_{kind}_{hashlib.sha256(db.encode()).hexdigest()[:8]}_"
    return head + db.encode()[: NAME_BYTES - len(head)].decode("utf-8", "ignore")


def databases_on_server(conn: Any) -> set[str]:
    """Every name in pg_database (templates, aside copies and databases refusing connections too)."""
    return {str(r[0]) for r in query(conn, "SELECT datname FROM pg_database")}


def aside_copies(names: list[str], on_server: set[str], kind: str = "prior") -> dict[str, str]:
    """Databases of ``names`` that have an aside copy of ``kind`` among ``on_server`` (name → that copy)."""
    return {d: aside_name(d, kind) for d in names if aside_name(d, kind) in on_server}


def interrupted_restores(conn: Any, names: list[str], where: str) -> dict[str, str]:
    """Databases of ``names`` whose old copy an interrupted swap restore left aside (name → that copy).

    Each is logged as a warning. If one of them is missing altogether (renamed aside, not yet
    recreated), exit 3: the old data is not gone, and the hint says how to get it back.
    """
    on_server = databases_on_server(conn)
    halfway = aside_copies(names, on_server)
    if not halfway:
        return halfway
    get_logger().warning(
        "an interrupted restore left these databases half-replaced; their old copies are kept aside "
        "(re-run that restore: it puts them back first)",
        databases=halfway,
    )
    gone = sorted(d for d in halfway if d not in on_server)
    if gone:
        raise IntegrityError(
            f"database(s) {', '.join(gone)} at {where} are missing because a restore was interrupted; the old "
            f"data is kept as {', '.join(halfway[d] for d in gone)}",
            hint="re-run that restore (it puts the old copies back before anything else), then try again",
        )
    return halfway


def choose_databases(requested: str | None, available: list[str], where: str) -> list[str]:
    """``--databases a,b`` checked against ``available``; all of them when not given."""
    if not requested:
        return available
    wanted = [d.strip() for d in requested.split(",") if d.strip()]
    missing = [d for d in wanted if d not in available]
    if missing:
        raise UsageError(
            f"database(s) {', '.join(missing)} not found in {where}",
            hint=f"available: {', '.join(available) or 'none'}",
        )
    return wanted


# ---- tools --------------------------------------------------------------------------------------


def tool_major(path: str) -> tuple[int, str]:
    """Major version and full version text of a PostgreSQL client binary."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        raise UsageError(f"cannot run {path}: {exc.strerror}", hint="install the PostgreSQL client tools") from exc
    match = re.search(r"\)\s+(\d+)(?:\.(\d+))?", out.stdout)
    if out.returncode != 0 or not match:
        raise UsageError(f"{path} --version did not report a version: {out.stdout.strip() or out.stderr.strip()}")
    return int(match.group(1)), out.stdout.strip()


def find_tool(name: str, bin_dir: str | None) -> tuple[str, int, str]:
    """The newest ``name`` from ``--pg-bin-dir``, or from PATH and /usr/lib/postgresql/*/bin."""
    if bin_dir:
        path = Path(bin_dir) / name
        if not path.exists():
            raise UsageError(f"{name} not found in --pg-bin-dir {bin_dir}")
        return (str(path), *tool_major(str(path)))
    candidates = [p for p in [shutil.which(name)] if p]
    candidates += [str(d / name) for d in sorted(Path("/usr/lib/postgresql").glob("*/bin")) if (d / name).exists()]
    if not candidates:
        raise UsageError(f"{name} not found", hint="install the PostgreSQL client tools or pass --pg-bin-dir")
    versions = [(p, *tool_major(p)) for p in candidates]
    return max(versions, key=lambda v: v[1])  # first (PATH) wins among equal majors


def server_version(conn: Any) -> tuple[int, str]:
    """``(server_version_num, server_version)``."""
    rows = query(conn, "SELECT current_setting('server_version_num')::int, current_setting('server_version')")
    return int(rows[0][0]), str(rows[0][1])


def database_locale(conn: Any) -> dict[str, str]:
    """Encoding, collation, ctype and locale provider of the connection's database (what CREATE DATABASE needs)."""
    version = server_version(conn)[0]
    provider = "datlocprovider" if version >= 150000 else "'c'"
    icu = "datlocale" if version >= 170000 else "daticulocale" if version >= 150000 else "NULL"
    row = query(
        conn,
        f"SELECT pg_encoding_to_char(encoding), datcollate, datctype, {provider}, coalesce({icu}, '')"
        " FROM pg_database WHERE datname = current_database()",
    )[0]
    return dict(zip(("encoding", "collate", "ctype", "provider", "provider_locale"), map(str, row), strict=True))


def can_create_like(conn: Any, locale: dict[str, str], version_num: int) -> str | None:
    """Create (and drop) a throwaway database with ``locale``; the server's refusal, or None if it worked."""
    probe = sql.Identifier(f"tenant_dr_probe_{secrets.token_hex(6)}")
    parts = [
        sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
            probe, sql.Literal(locale["encoding"]), sql.Literal(locale["collate"]), sql.Literal(locale["ctype"])
        )
    ]
    providers = {"c": "libc", "i": "icu", "b": "builtin"}
    provider = providers.get(locale.get("provider", "c"), "libc")
    if provider != "libc":
        if version_num < 150000:
            return f"PostgreSQL {version_num // 10000} has no {provider} locale provider"
        keyword = "ICU_LOCALE" if provider == "icu" else "BUILTIN_LOCALE"
        parts.append(
            sql.SQL("LOCALE_PROVIDER {} {} {}").format(
                sql.SQL(provider), sql.SQL(keyword), sql.Literal(locale.get("provider_locale", ""))
            )
        )
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL(" ").join(parts))
    except psycopg2.OperationalError as exc:  # the connection, not the locale
        raise sql_error(conn, "CREATE DATABASE (the locale probe)", exc) from exc
    except psycopg2.Error as exc:
        return str(exc).strip().splitlines()[0]
    query(conn, sql.SQL("DROP DATABASE {}").format(probe))
    return None


class Producer:
    """A child process whose stdout is streamed; stderr is drained in a thread (no pipe deadlock)."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        what: str,
        stdin: int | None = None,
        hint: str = "the backup of this run is incomplete; it is retried, or check the server",
    ) -> None:
        self.what = what
        self.hint = hint
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=stdin or subprocess.DEVNULL, env=env
        )
        self.stderr: deque[str] = deque(maxlen=20)
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.decode("utf-8", "replace").rstrip())

    @property
    def stdout(self) -> IO[bytes]:
        """The child's stdout pipe."""
        assert self.proc.stdout is not None
        return self.proc.stdout

    def kill(self) -> None:
        """Stop the child (after a failure on our side)."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()
        self._drain.join(timeout=5)

    def finish(self) -> None:
        """Wait for the child; a non-zero exit is an error carrying its last stderr lines."""
        code = self.proc.wait()
        self._drain.join(timeout=30)
        if code != 0:
            tail = " | ".join(line for line in self.stderr if line.strip())[-600:]
            raise TransientError(f"{self.what} failed (exit {code}): {tail or 'no error output'}", hint=self.hint)


# ---- row counts ---------------------------------------------------------------------------------


def table_counts(conn: Any, exact_max_bytes: int) -> dict[str, dict[str, Any]]:
    """Rows per table: exact ``count(*)``, or ``reltuples`` (marked) for tables above the size limit."""
    counts: dict[str, dict[str, Any]] = {}
    for schema, name, reltuples, size in query(conn, _TABLES_SQL):
        key = f"{schema}.{name}"
        if size > exact_max_bytes and reltuples >= 0:
            counts[key] = {"rows": int(reltuples), "exact": False}
            continue
        stmt = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        counts[key] = {"rows": int(query(conn, stmt)[0][0]), "exact": True}
    return counts


def database_fingerprint(conn: Any, exact_max_bytes: int) -> dict[str, Any]:
    """Row counts of every table plus the number of large objects."""
    tables = table_counts(conn, exact_max_bytes)
    large_objects = int(query(conn, "SELECT count(*) FROM pg_largeobject_metadata")[0][0])
    return {"tables": tables, "large_objects": large_objects}


def live_fingerprint(conn: Any, expected: dict[str, Any]) -> dict[str, Any]:
    """The target's counts for the tables in ``expected`` (exact where the backup counted exactly)."""
    live: dict[str, dict[str, Any]] = {}
    present = {f"{s}.{n}": (s, n, int(t)) for s, n, t, _ in query(conn, _TABLES_SQL)}
    for key, (schema, name, reltuples) in present.items():
        want = expected.get("tables", {}).get(key)
        if want is not None and not want.get("exact", True):
            live[key] = {"rows": max(reltuples, 0), "exact": False}
            continue
        stmt = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        live[key] = {"rows": int(query(conn, stmt)[0][0]), "exact": True}
    large_objects = int(query(conn, "SELECT count(*) FROM pg_largeobject_metadata")[0][0])
    return {"tables": live, "large_objects": large_objects}


def diff_fingerprint(db: str, expected: dict[str, Any], live: dict[str, Any]) -> tuple[list[str], list[str]]:
    """``(mismatches, extra tables)`` between the manifest and the live database."""
    problems: list[str] = []
    want, have = expected.get("tables", {}), live.get("tables", {})
    for table, rec in sorted(want.items()):
        got = have.get(table)
        if got is None:
            problems.append(f"{db}.{table}: missing (expected {rec['rows']} rows)")
        elif rec.get("exact", True):
            if got["rows"] != rec["rows"]:
                problems.append(f"{db}.{table}: {got['rows']} rows, expected {rec['rows']}")
        elif abs(got["rows"] - rec["rows"]) > max(ESTIMATE_TOLERANCE * rec["rows"], 1000):
            problems.append(f"{db}.{table}: about {got['rows']} rows, expected about {rec['rows']} (estimates)")
    if expected.get("large_objects", 0) != live.get("large_objects", 0):
        problems.append(f"{db}: {live.get('large_objects')} large objects, expected {expected.get('large_objects')}")
    extra = sorted(f"{db}.{t}" for t in set(have) - set(want))
    return problems, extra


# ---- options ------------------------------------------------------------------------------------


def connection_options(fn: F) -> F:
    """``--host --port --user --password-file --maintenance-db`` (libpq env vars as fallbacks)."""
    options = [
        click.option("--host", envvar="PGHOST", default=None, help="Server host (env PGHOST)."),
        click.option("--port", envvar="PGPORT", type=int, default=None, help="Server port (env PGPORT)."),
        click.option("--user", envvar="PGUSER", default=None, help="Superuser to connect as (env PGUSER)."),
        click.option(
            "--password-file",
            envvar="TENANT_DR_PG_PASSWORD_FILE",
            default=None,
            type=click.Path(dir_okay=False),
            help="File holding the password (else env PGPASSWORD, else .pgpass/trust).",
        ),
        click.option(
            "--maintenance-db",
            envvar="TENANT_DR_PG_MAINTENANCE_DB",
            default="postgres",
            show_default=True,
            help="Database to connect to for server-wide work.",
        ),
        click.option(
            "--databases",
            envvar="TENANT_DR_PG_DATABASES",
            default=None,
            help="Comma-separated databases (default: every non-template database / every one in the backup).",
        ),
        click.option(
            "--pg-bin-dir",
            envvar="TENANT_DR_PG_BIN_DIR",
            default=None,
            help="Directory of pg_dump/pg_restore/psql (default: newest of PATH and /usr/lib/postgresql/*/bin).",
        ),
        click.option(
            "--run-id",
            envvar="TENANT_DR_RUN_ID",
            default=None,
            help="Backup run id (backup: generated if absent; restore/verify: default latest).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def make_target(
    host: str | None, port: int | None, user: str | None, password_file: str | None, maintenance_db: str
) -> PgTarget:
    """Read the password (file or PGPASSWORD, registered for redaction) and build the target."""
    password = read_secret(what="PostgreSQL password", env="PGPASSWORD", file=password_file, required=False)
    return PgTarget(host=host, port=port, user=user, password=password, maintenance_db=maintenance_db)


# ---- backup -------------------------------------------------------------------------------------


def safe_name(db: str, taken: set[str]) -> str:
    """An object name for database ``db`` that is unique within the backup."""
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", db) or "db"
    name, i = f"db/{base}.dump", 1
    while name in taken:
        name, i = f"db/{base}-{i}.dump", i + 1
    taken.add(name)
    return name


def stream_producer(
    catalog: Catalog,
    run_id: str,
    attempt: str,
    name: str,
    producer: Producer,
    *,
    size_hint: int | None,
    meta: dict[str, object],
) -> ObjectRecord:
    """Stream a producer's stdout into the store and check its exit code; no object survives a failure."""
    key = catalog.component_prefix(run_id, COMPONENT) + f"{attempt}/{name}"
    try:
        with Progress(f"{COMPONENT} {name}", size_hint) as progress:
            record = catalog.put_object(
                run_id, COMPONENT, attempt, name, producer.stdout, size_hint=size_hint, progress=progress, meta=meta
            )
    except BaseException:
        producer.kill()
        raise
    try:
        producer.finish()
    except TransientError:
        with contextlib.suppress(Exception):
            catalog.store.delete([key])
        raise
    return record


def dump_database(
    catalog: Catalog,
    target: PgTarget,
    run_id: str,
    attempt: str,
    db: str,
    name: str,
    pg_dump: str,
    exact_max_bytes: int,
) -> tuple[ObjectRecord, dict[str, Any], dict[str, float]]:
    """``pg_dump -Fc -Z0`` of one database in an exported snapshot, counting rows in that snapshot."""
    conn = connect(target, db, autocommit=False)
    try:
        conn.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        snapshot = str(query(conn, "SELECT pg_export_snapshot()")[0][0])
        size = int(query(conn, "SELECT pg_database_size(current_database())")[0][0])
        extensions = {str(n): str(v) for n, v in query(conn, "SELECT extname, extversion FROM pg_extension ORDER BY 1")}
        locale = database_locale(conn)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-count") as pool:
            counting = pool.submit(database_fingerprint, conn, exact_max_bytes)
            producer = Producer(
                [pg_dump, "-Fc", "-Z0", "-w", f"--snapshot={snapshot}"],
                target.child_env(db),
                f"pg_dump of database {db!r}",
            )
            try:
                record = stream_producer(
                    catalog,
                    run_id,
                    attempt,
                    name,
                    producer,
                    size_hint=size,
                    meta={
                        "kind": "database",
                        "database": db,
                        "database_size": size,
                        "extensions": extensions,
                        "locale": locale,
                    },
                )
            finally:
                dumped = time.monotonic()
                fingerprint = counting.result()
        timings = {"dump_s": round(dumped - started, 3), "total_s": round(time.monotonic() - started, 3)}
        return record, fingerprint, timings
    finally:
        with contextlib.suppress(Exception):
            conn.rollback()
        conn.close()


@action(cli, help_text="Dump globals and every (or each --databases) database into the catalog.")
@catalog_options
@connection_options
@click.option(
    "--exact-count-max-mib",
    envvar="TENANT_DR_PG_EXACT_COUNT_MAX_MIB",
    type=int,
    default=1024,
    show_default=True,
    help="Tables larger than this get an estimated row count (pg_class.reltuples), marked as such.",
)
def backup(
    catalog: Catalog,
    tenant: str,
    host: str | None,
    port: int | None,
    user: str | None,
    password_file: str | None,
    maintenance_db: str,
    databases: str | None,
    pg_bin_dir: str | None,
    run_id: str | None,
    exact_count_max_mib: int,
) -> dict[str, Any]:
    """Back up PostgreSQL: globals + one custom-format dump per database, streamed to the store."""
    log = get_logger()
    run_id = run_id or new_run_id()
    write_output("run-id", run_id)
    if catalog.has_manifest(run_id, COMPONENT):
        log.info("postgres backup of this run already complete; nothing to do", run_id=run_id)
        return {"run_id": run_id, "skipped": "already complete"}
    if exact_count_max_mib < 0:
        raise UsageError("--exact-count-max-mib must be >= 0")
    target = make_target(host, port, user, password_file, maintenance_db)
    started_at = utcnow()
    with connection(target) as conn:
        version_num, version = server_version(conn)
        available = list_databases(conn)
        wanted = [d.strip() for d in databases.split(",") if d.strip()] if databases else available
        halfway = interrupted_restores(conn, wanted, target.where)
        names = choose_databases(databases, available, target.where)
    pg_dump, dump_major, dump_version = find_tool("pg_dump", pg_bin_dir)
    pg_dumpall, dumpall_major, _ = find_tool("pg_dumpall", pg_bin_dir)
    server_major = version_num // 10000
    for tool, major in (("pg_dump", dump_major), ("pg_dumpall", dumpall_major)):
        if major < server_major:
            raise UsageError(
                f"{tool} {major} is older than the PostgreSQL {server_major} server at {target.where}",
                hint="pg_dump must be the same major version as the server or newer; "
                "install it or point --pg-bin-dir at it",
            )
    attempt = catalog.new_attempt()
    log.info("backing up", databases=names, server=version, pg_dump=dump_version, attempt=attempt)
    t0 = time.monotonic()
    globals_producer = Producer([pg_dumpall, "--globals-only", "-w"], target.child_env(), "pg_dumpall --globals-only")
    objects = [
        stream_producer(
            catalog, run_id, attempt, GLOBALS_NAME, globals_producer, size_hint=None, meta={"kind": "globals"}
        )
    ]
    timings: dict[str, Any] = {"globals_s": round(time.monotonic() - t0, 3), "databases": {}}
    fingerprints: dict[str, Any] = {"databases": {}}
    taken: set[str] = set()
    for db in names:
        record, fingerprint, db_timings = dump_database(
            catalog, target, run_id, attempt, db, safe_name(db, taken), pg_dump, exact_count_max_mib * 2**20
        )
        if db in halfway:  # dumped as it is, but marked: it may be an unfinished restore's partial copy
            record = record.model_copy(update={"meta": {**record.meta, "interrupted_restore": halfway[db]}})
        objects.append(record)
        fingerprints["databases"][db] = fingerprint
        timings["databases"][db] = db_timings
        log.info("database dumped", database=db, raw_bytes=record.raw_size, stored_bytes=record.size, **db_timings)
    timings["total_s"] = round(time.monotonic() - t0, 3)
    manifest = ComponentManifest(
        tenant=catalog.tenant,
        run_id=run_id,
        component=COMPONENT,
        started_at=started_at,
        finished_at=utcnow(),
        objects=objects,
        source={
            "endpoint": target.where,
            "server_version": version,
            "server_version_num": version_num,
            "pg_dump_version": dump_version,
            "pg_dump_major": dump_major,
        },
        fingerprints=fingerprints,
        details={"databases": names, "timings": timings, "exact_count_max_mib": exact_count_max_mib},
    )
    written = catalog.write_manifest(manifest)
    return {
        "run_id": run_id,
        "databases": names,
        **({"interrupted_restores": halfway} if halfway else {}),
        "objects": len(objects),
        "bytes": manifest.total_bytes,
        "raw_bytes": sum(o.raw_size or 0 for o in objects),
        "manifest_written": written,
        "timings": timings,
    }


# ---- restore ------------------------------------------------------------------------------------


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


@dataclass(frozen=True)
class GlobalsPlan:
    """``pg_dumpall -g`` output split for a target that has some of it already.

    ``script`` runs before any database changes; ``passwords`` (the backup's passwords of roles that
    already exist on the target) runs in one transaction only once every restored database has
    checked out, so a failed restore leaves the apps' current credentials working.
    """

    script: str
    passwords: str
    roles: dict[str, list[str]]
    tablespaces: dict[str, list[str]]


def plan_globals(sql_text: str, existing: set[str], keep: set[str], tablespaces: set[str]) -> GlobalsPlan:
    """Rewrite ``pg_dumpall -g`` output: skip what exists, keep ``keep``'s passwords, defer the others.

    CREATE ROLE and CREATE TABLESPACE are skipped for roles and tablespaces that exist (their
    ALTER/GRANT lines still apply). New roles get their password at once; existing roles get theirs
    in :attr:`GlobalsPlan.passwords`, except the roles in ``keep``, whose passwords are left as they are.
    """
    out: list[str] = []
    later: list[str] = []
    roles: dict[str, list[str]] = {"create": [], "update": [], "password_kept": [], "password_from_backup": []}
    spaces: dict[str, list[str]] = {"create": [], "exist": []}
    for line in sql_text.splitlines():
        space = _CREATE_TABLESPACE_RE.match(line)
        if space:
            name = _unquote(space.group("name"))
            spaces["exist" if name in tablespaces else "create"].append(name)
            if name in tablespaces:
                continue
        create = _CREATE_ROLE_RE.match(line)
        if create:
            name = _unquote(create.group("name"))
            roles["update" if name in existing else "create"].append(name)
            if name in existing:
                continue
        alter = _ALTER_ROLE_RE.match(line)
        if alter and alter.group("pw") and _unquote(alter.group("name")) in existing:
            name = _unquote(alter.group("name"))
            if name in keep:
                roles["password_kept"].append(name)
            else:
                roles["password_from_backup"].append(name)
                later.append(f"ALTER ROLE {alter.group('name')} WITH{alter.group('pw')};")
            line = alter.group("head") + ";"
        out.append(line)
    return GlobalsPlan("\n".join(out) + "\n", "\n".join(later) + "\n" if later else "", roles, spaces)


def run_psql(psql: str, target: PgTarget, script: bytes, what: str, *, atomic: bool = False) -> None:
    """``psql -f -`` of ``script`` with ON_ERROR_STOP, in one transaction if ``atomic`` (password via env only)."""
    proc = subprocess.run(
        [psql, "-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", *(["--single-transaction"] if atomic else []), "-f", "-"],
        input=script,
        env=target.child_env(),
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.decode("utf-8", "replace").strip().splitlines()[-5:])
        error_cls = IntegrityError if proc.returncode == 3 else TransientError
        raise error_cls(f"{what} failed (psql exit {proc.returncode}): {tail}", hint="see the psql error above")


def other_database(target: PgTarget, *names: str) -> str:
    """A database to connect to while ``names`` are dropped, created or renamed."""
    return "template1" if target.maintenance_db in names else target.maintenance_db


def _end_sessions(conn: Any, db: str) -> None:
    """Stop new connections to ``db`` and terminate the ones it has."""
    query(conn, sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(db)))
    query(
        conn,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (db,),
    )


def drop_database(target: PgTarget, db: str, version_num: int) -> None:
    """Terminate sessions and drop ``db`` if it exists (from another database)."""
    with connection(target, other_database(target, db)) as conn:
        if not database_exists(conn, db):
            return
        _end_sessions(conn, db)
        force = sql.SQL(" WITH (FORCE)") if version_num >= 130000 else sql.SQL("")
        query(conn, sql.SQL("DROP DATABASE {}{}").format(sql.Identifier(db), force))


def rename_database(target: PgTarget, old: str, new: str) -> None:
    """Terminate ``old``'s sessions and rename it to ``new``; whether it accepts connections is kept.

    PostgreSQL waits up to 5 s for terminated sessions to exit before it refuses the rename.
    """
    with connection(target, other_database(target, old, new)) as conn:
        allowed = bool(query(conn, "SELECT datallowconn FROM pg_database WHERE datname = %s", (old,))[0][0])
        _end_sessions(conn, old)
        query(conn, sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new)))
        if allowed:
            query(conn, sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(new)))


def put_back(target: PgTarget, db: str, version_num: int) -> bool:
    """If ``db`` has a prior copy aside: drop ``db`` (its unfinished replacement) and rename the copy back.

    Returns whether there was a prior copy; without one nothing is changed.
    """
    with connection(target, other_database(target, db)) as conn:
        if not database_exists(conn, aside_name(db)):
            return False
    drop_database(target, db, version_num)
    rename_database(target, aside_name(db), db)
    return True


def restore_database(
    catalog: Catalog,
    manifest: ComponentManifest,
    record: ObjectRecord,
    target: PgTarget,
    db: str,
    pg_restore: str,
    jobs: int,
    local: Path | None,
    vacuumdb: str | None,
) -> None:
    """``pg_restore -C`` one database (from ``local`` with ``-j``, or streamed for one job), then ANALYZE.

    With ``vacuumdb`` (``--jobs`` > 1) ANALYZE runs as ``vacuumdb --analyze-only -j``, tables in parallel.
    """
    maint = other_database(target, db)
    argv = [pg_restore, "-w", "-C", "--exit-on-error", "-d", maint]
    what = f"pg_restore of database {db!r}"
    hint = "see pg_restore's error; check the target server"
    if local is not None:
        producer = Producer([*argv, "-j", str(jobs), str(local)], target.child_env(maint), what, hint=hint)
        producer.finish()
    else:
        producer = Producer(argv, target.child_env(maint), what, stdin=subprocess.PIPE, hint=hint)
        stdin = producer.proc.stdin
        assert stdin is not None
        try:
            with Progress(f"restore {db}", record.raw_size) as progress:
                for chunk in iter_verified(
                    catalog.store, catalog.object_key(manifest, record), record, progress=progress
                ):
                    stdin.write(chunk)
        except BrokenPipeError:
            pass  # pg_restore stopped reading: its exit code says why
        except BaseException:
            producer.kill()
            raise
        finally:
            with contextlib.suppress(BrokenPipeError):
                stdin.close()
        producer.finish()
    if vacuumdb is None:
        with connection(target, db) as conn:
            query(conn, "ANALYZE")
        return
    analyzed = subprocess.run(
        [vacuumdb, "-w", "-q", "--analyze-only", "--jobs", str(jobs)],
        env=target.child_env(db),  # PGDATABASE: a database name is never parsed as a connection string
        capture_output=True,
        check=False,
    )
    if analyzed.returncode != 0:
        tail = " | ".join(analyzed.stderr.decode("utf-8", "replace").strip().splitlines()[-3:])
        raise TransientError(
            f"vacuumdb --analyze-only of database {db!r} failed (exit {analyzed.returncode}): {tail}",
            hint="see vacuumdb's error; check the target server",
        )


def preflight(
    conn: Any,
    target: PgTarget,
    manifest: ComponentManifest,
    records: dict[str, ObjectRecord],
    version_num: int,
    *,
    probe: bool,
) -> None:
    """Refuse, before anything is dropped, a restore that would fail after the drop.

    pg_restore creates each database after the old one is gone, so a server that is older than the
    backed-up one, a user who cannot create databases, a locale or an extension the server does not
    have would otherwise leave the tenant without that database. The locale check creates and drops
    a throwaway database, so it runs only when ``probe`` (with ``--confirm``; a plan changes nothing).
    """
    source_num = int(manifest.source.get("server_version_num", 0))
    if version_num // 10000 < source_num // 10000:
        raise IntegrityError(
            f"the target {target.where} runs PostgreSQL {version_num // 10000}, older than the backed-up "
            f"server ({manifest.source.get('server_version')}); its dumps are not guaranteed to load there",
            hint=f"restore into PostgreSQL {source_num // 10000} or newer",
        )
    user, can_create = query(
        conn, "SELECT rolname, rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user"
    )[0]
    if not can_create:
        raise UsageError(
            f"user {user!r} at {target.where} cannot create databases, "
            "and each restored database is dropped and created again",
            hint="connect as a superuser or a role with CREATEDB (and CREATEROLE for the roles)",
        )
    touched = [n for d in records for n in (d, aside_name(d), aside_name(d, "stale"))]
    not_owned = query(
        conn,
        "SELECT datname FROM pg_database WHERE datname = ANY(%s) AND NOT pg_has_role(current_user, datdba, 'MEMBER') "
        "ORDER BY datname",
        (touched,),
    )
    if not_owned:
        raise UsageError(
            f"user {user!r} at {target.where} does not own database(s) {', '.join(r[0] for r in not_owned)}, "
            "and only the owner (or a superuser) can rename or drop a database",
            hint="connect as a superuser or as the owner of those databases",
        )
    for db, record in sorted(records.items()):
        locale = record.meta.get("locale")
        if not probe or not locale:
            continue  # a plan, or a backup from before locales were recorded
        refusal = can_create_like(conn, locale, version_num)
        if refusal:
            raise IntegrityError(
                f"the target {target.where} cannot create database {db!r} as it was backed up "
                f"(encoding {locale['encoding']}, collation {locale['collate']}): {refusal}",
                hint="install that locale on the target server's OS (or use a server image that has it)",
            )
    available = {str(r[0]) for r in query(conn, "SELECT name FROM pg_available_extensions")}
    missing = {
        db: sorted(set(record.meta.get("extensions", {})) - available)
        for db, record in records.items()
        if set(record.meta.get("extensions", {})) - available
    }
    if missing:
        listed = "; ".join(f"{db}: {', '.join(names)}" for db, names in sorted(missing.items()))
        raise IntegrityError(
            f"the target {target.where} lacks extensions the backed-up databases use ({listed})",
            hint="install their packages on the target server (see pg_available_extensions) and restore again",
        )


def database_records(manifest: ComponentManifest) -> dict[str, ObjectRecord]:
    """Database name → its dump object in ``manifest``."""
    return {str(o.meta["database"]): o for o in manifest.objects if o.meta.get("kind") == "database"}


@action(cli, help_text="Restore databases (and globals) of a run; without --confirm only the plan.")
@catalog_options
@connection_options
@click.option(
    "--jobs", envvar="TENANT_DR_PG_JOBS", type=int, default=2, show_default=True, help="pg_restore -j (1 = stream)."
)
@click.option(
    "--work-dir",
    envvar="TENANT_DR_WORK_DIR",
    default=None,
    help="Where verified dumps are downloaded for --jobs > 1 (default: the system temp dir).",
)
@click.option(
    "--keep-target-passwords",
    is_flag=True,
    default=False,
    help="Keep existing roles' passwords on the target (default: the backup's, except the connecting user's).",
)
@click.option(
    "--strategy",
    envvar="TENANT_DR_PG_STRATEGY",
    type=click.Choice(["swap", "drop-first"]),
    default="swap",
    show_default=True,
    help="swap: rename each database aside and drop it only once every replacement matches the backup (a failure "
    "puts them all back; needs room for both copies). drop-first: drop each database before restoring it.",
)
@click.option("--operation", envvar="TENANT_DR_OPERATION", default=None, help="Operation id to record prior state.")
@confirm_option
def restore(
    catalog: Catalog,
    tenant: str,
    host: str | None,
    port: int | None,
    user: str | None,
    password_file: str | None,
    maintenance_db: str,
    databases: str | None,
    pg_bin_dir: str | None,
    run_id: str | None,
    jobs: int,
    work_dir: str | None,
    keep_target_passwords: bool,
    strategy: str,
    operation: str | None,
    confirm: bool,
) -> dict[str, Any]:
    """Verify the backup, then replace each chosen database from it and check row counts."""
    log = get_logger()
    if jobs < 1:
        raise UsageError("--jobs must be >= 1")
    resolved = catalog.resolve(run_id or "latest", COMPONENT)
    manifest = catalog.read_manifest(resolved, COMPONENT)
    records = database_records(manifest)
    names = choose_databases(databases, sorted(records), f"backup {resolved}")
    globals_record = next((o for o in manifest.objects if o.meta.get("kind") == "globals"), None)
    if globals_record is None:
        raise IntegrityError(f"postgres manifest of run {resolved} names no globals object", hint="use another run")
    target = make_target(host, port, user, password_file, maintenance_db)
    pg_restore, restore_major, _ = find_tool("pg_restore", pg_bin_dir)
    psql, _, _ = find_tool("psql", pg_bin_dir)
    vacuumdb = find_tool("vacuumdb", pg_bin_dir)[0] if jobs > 1 else None
    if restore_major < int(manifest.source.get("pg_dump_major", 0)):
        raise UsageError(
            f"pg_restore {restore_major} cannot read dumps of pg_dump {manifest.source.get('pg_dump_major')}",
            hint="use a pg_restore of the same major version or newer (--pg-bin-dir)",
        )
    with connection(target) as conn:
        version_num, version = server_version(conn)
        present = set(list_databases(conn))
        on_server = databases_on_server(conn)
        leftovers = aside_copies(names, on_server)
        stale = aside_copies(names, on_server, "stale")
        strays = sorted(n for n in on_server - set(leftovers.values()) - set(stale.values()) if _ASIDE_RE.match(n))
        existing_roles = {r[0] for r in query(conn, "SELECT rolname FROM pg_roles")}
        tablespaces = {str(r[0]) for r in query(conn, "SELECT spcname FROM pg_tablespace")}
        current_user = str(query(conn, "SELECT current_user")[0][0])
        sizes = {d: int(query(conn, "SELECT pg_database_size(%s)", (d,))[0][0]) for d in names if d in present}
        preflight(conn, target, manifest, {d: records[d] for d in names}, version_num, probe=confirm)
    # Verify before destroy: the globals now, the dumps below (all of them before any change).
    globals_sql = b"".join(iter_verified(catalog.store, catalog.object_key(manifest, globals_record), globals_record))
    keep = (existing_roles if keep_target_passwords else set()) | {current_user}
    globals_plan = plan_globals(globals_sql.decode("utf-8"), existing_roles, keep, tablespaces)
    plan = {
        "run_id": resolved,
        "target": target.where,
        "target_version": version,
        "strategy": strategy,
        "drop_and_recreate": [d for d in names if d in present or d in leftovers],
        "create": [d for d in names if d not in present and d not in leftovers],
        "untouched": sorted(present - set(names)),
        "put_back_first": leftovers,
        "drop_replaced_copies": sorted(stale.values()),
        "roles": globals_plan.roles,
        "tablespaces": globals_plan.tablespaces,
        "jobs": jobs,
        "prior_sizes": sizes,
    }
    if strategy == "swap":  # the server holds both until the commit: what to check its free disk against
        plan["swap_disk"] = {
            "old_copies_bytes": sum(sizes.values()),
            "new_dumps_raw_bytes": sum(records[d].raw_size or 0 for d in names),
        }
    if strays:
        log.warning(
            "copies left aside by an earlier restore of other databases (restore those databases to deal with them)",
            databases=strays,
        )
    flagged = [d for d in names if records[d].meta.get("interrupted_restore")]
    if flagged:
        plan["backed_up_while_half_replaced"] = flagged
        log.warning(
            "this run backed up these databases while an interrupted restore had left them half-replaced; "
            "check that they hold what you expect, or restore an older run",
            databases=flagged,
        )
    if not confirm:
        catalog.check_objects(manifest)
        log.info("plan only (pass --confirm to restore)", **plan)
        return {"dry_run": True, "plan": plan}
    work = Path(tempfile.mkdtemp(prefix="tdr-pg-", dir=work_dir))
    try:
        local: dict[str, Path | None] = {}
        if jobs > 1:
            need = sum(records[d].raw_size or 0 for d in names)
            hint = "use --jobs 1 (streams, no local copy) or a larger --work-dir"
            ensure_space(work, need, "verified dumps", hint)
        for d in names:
            key = catalog.object_key(manifest, records[d])
            with Progress(f"verify {d}", records[d].raw_size) as progress:
                if jobs > 1:
                    local[d] = download_verified(
                        catalog.store, key, records[d], work / f"{len(local)}.dump", progress=progress
                    )
                else:
                    verify(catalog.store, key, records[d], progress=progress)
                    local[d] = None
        log.info("backup verified", databases=names)
        if operation:
            catalog.record_once(operation, "postgres-prior", {"target": target.where, **plan})
        for d, old in stale.items():
            drop_database(target, old, version_num)
            log.info("dropped a copy an earlier restore replaced", database=d, copy=old)
        for d, prior in leftovers.items():
            put_back(target, d, version_num)
            log.warning("put back the prior copy an interrupted restore left", database=d, prior_copy=prior)
        run_psql(psql, target, globals_plan.script.encode("utf-8"), "restoring globals (roles)")

        def passwords() -> None:
            if globals_plan.passwords:
                what = "setting the backup's passwords of existing roles"
                run_psql(psql, target, globals_plan.passwords.encode("utf-8"), what, atomic=True)

        def one(d: str) -> float:
            t0 = time.monotonic()
            restore_database(catalog, manifest, records[d], target, d, pg_restore, jobs, local[d], vacuumdb)
            if local[d] is not None:
                local[d].unlink(missing_ok=True)  # type: ignore[union-attr]
            return round(time.monotonic() - t0, 3)

        if strategy == "swap":
            timings, checked = swap_in(target, manifest, names, one, version_num, before_commit=passwords)
        else:
            timings = drop_first(target, names, one, version_num)
            checked = check_target(target, manifest, names)
            passwords()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"dry_run": False, "plan": plan, "restored": names, "timings": timings, **checked}


def drop_first(
    target: PgTarget, names: list[str], restore_one: Callable[[str], float], version_num: int
) -> dict[str, float]:
    """Drop each database, then restore it; a failure leaves that one dropped or partial (and says so)."""
    timings: dict[str, float] = {}
    for i, d in enumerate(names):
        try:
            drop_database(target, d, version_num)
            timings[d] = restore_one(d)
        except (Exception, Terminated) as exc:
            raise stopped_part_way(exc, target, names[:i], d, names[i + 1 :]) from exc
        get_logger().info("database restored", database=d, seconds=timings[d])
    return timings


def swap_in(
    target: PgTarget,
    manifest: ComponentManifest,
    names: list[str],
    restore_one: Callable[[str], float],
    version_num: int,
    *,
    before_commit: Callable[[], None],
) -> tuple[dict[str, float], dict[str, Any]]:
    """Restore ``names`` all-or-nothing: each old database waits renamed aside until all new ones check out.

    Then ``before_commit`` runs, and only then are the old copies dropped. Any failure before that
    (pg_restore, ANALYZE, a row-count mismatch, ``before_commit``) drops the new databases and renames
    the old ones back, so the target's databases are left as they were.
    """
    log = get_logger()
    timings: dict[str, float] = {}
    created: set[str] = set()  # did not exist before: undone by a drop
    attempted: list[str] = []
    current: str | None = None
    try:
        for d in names:
            current = d
            attempted.append(d)
            with connection(target, other_database(target, d)) as conn:
                if not database_exists(conn, d):
                    created.add(d)
            if d not in created:
                rename_database(target, d, aside_name(d))
            timings[d] = restore_one(d)
            aside = None if d in created else aside_name(d)
            log.info("database restored", database=d, seconds=timings[d], old_copy_kept_as=aside)
        current = None
        checked = check_target(target, manifest, names)
        before_commit()
    except BaseException as exc:  # Ctrl-C too: the old databases go back
        raise rolled_back(exc, target, attempted, created, current, version_num) from exc
    kept = [d for d in names if d not in created]
    for d in kept:  # the commit: a "stale" copy is never put back, only dropped
        try:
            rename_database(target, aside_name(d), aside_name(d, "stale"))
        except Exception as exc:
            raise TransientError(
                f"every database was restored and matches the backup, but marking the old copy of {d!r} as "
                f"replaced failed: {' '.join(str(exc).split())}; it is still kept as {aside_name(d)}",
                hint="re-run the restore: it puts that old copy back and restores again",
            ) from exc
    left: list[str] = []
    for d in kept:
        try:
            drop_database(target, aside_name(d, "stale"), version_num)
        except Exception as exc:
            left.append(aside_name(d, "stale"))
            log.warning(
                "could not drop a replaced copy (the next restore of this database drops it, or drop it by hand)",
                database=aside_name(d, "stale"),
                error=" ".join(str(exc).split()),
            )
    return timings, {**checked, "replaced_copies_left": left} if left else checked


def rolled_back(
    exc: BaseException, target: PgTarget, attempted: list[str], created: set[str], current: str | None, version_num: int
) -> StepError:
    """Undo a swap restore (newest first) and say what the target holds now, keeping ``exc``'s exit code.

    A database whose old copy is aside gets it back; one that did not exist before is dropped; one
    whose rename never happened is left alone. If undoing fails, the old copies stay renamed aside
    and the error is transient: the re-run puts them back before it does anything else.
    """
    cause = exc.message if isinstance(exc, StepError) else f"{type(exc).__name__}: {exc}"
    where = f"at database {current!r}" if current else "after every database was restored"
    back: list[str] = []
    stuck: list[str] = []
    for d in reversed(attempted):
        try:
            if not put_back(target, d, version_num):
                if d not in created:
                    continue  # its rename never happened: untouched
                drop_database(target, d, version_num)
            back.append(d)
        except Exception as undo:
            stuck.append(f"{d} (old copy kept as {aside_name(d)}: {undo})")
    get_logger().error("restore failed; old databases put back", put_back=back, not_put_back=stuck)
    if stuck:
        return TransientError(
            f"restore into {target.where} failed {where}: {cause}; putting the old databases back also failed "
            f"for {'; '.join(stuck)}",
            hint="re-run the restore: it puts every old copy back before it starts",
        )
    if any(m in cause for m in _NO_SPACE_MARKERS):
        hint = (
            "the server's disk cannot hold the new databases beside the old ones: free space, or re-run with "
            "--strategy drop-first (which frees each old database first but leaves it dropped if that restore fails)"
        )
    else:
        hint = (
            f"{exc.hint}; then re-run the restore" if isinstance(exc, StepError) and exc.hint else "re-run the restore"
        )
    error_cls = type(exc) if isinstance(exc, StepError) else TransientError
    return error_cls(
        f"restore into {target.where} failed {where}: {cause}; nothing was replaced: "
        f"{', '.join(sorted(back)) or 'no database'} back as before the restore "
        "(roles the target lacked were created from the backup and existing ones got its attributes; "
        "their passwords are unchanged)",
        hint=hint,
    )


def stopped_part_way(
    exc: Exception | Terminated, target: PgTarget, restored: list[str], current: str, untouched: list[str]
) -> StepError:
    """``exc`` (same exit code) restated with what the target now holds, database by database."""
    cause = exc.message if isinstance(exc, StepError) else f"{type(exc).__name__}: {exc}"
    error_cls = type(exc) if isinstance(exc, StepError) else TransientError
    get_logger().error("restore stopped part-way", restored=restored, dropped_or_partial=current, not_touched=untouched)
    return error_cls(
        f"restore into {target.where} stopped at database {current!r}: {cause}; target now: "
        f"restored {', '.join(restored) or 'none'}; {current} interrupted (may be dropped or partly restored); "
        f"not touched {', '.join(untouched) or 'none'}",
        hint="re-run the restore: it drops and restores each chosen database again",
    )


def check_target(target: PgTarget, manifest: ComponentManifest, names: list[str]) -> dict[str, Any]:
    """Compare live row counts of ``names`` with the manifest; exit 3 with a per-table diff on mismatch."""
    problems: list[str] = []
    extras: list[str] = []
    tables = 0
    for db in names:
        expected = manifest.fingerprints.get("databases", {}).get(db, {})
        with connection(target, db) as conn:
            live = live_fingerprint(conn, expected)
        bad, extra = diff_fingerprint(db, expected, live)
        problems += bad
        extras += extra
        tables += len(expected.get("tables", {}))
    if problems:
        shown = "; ".join(problems[:20]) + (f"; ... {len(problems) - 20} more" if len(problems) > 20 else "")
        raise IntegrityError(
            f"{len(problems)} difference(s) against backup {manifest.run_id}: {shown}",
            hint="the target does not hold what was backed up; restore again or investigate",
        )
    return {"tables_checked": tables, "extra_tables": extras}


@action(cli, "verify", help_text="Compare live row counts with a run's manifest (exit 3 with a per-table diff).")
@catalog_options
@connection_options
def verify_counts(
    catalog: Catalog,
    tenant: str,
    host: str | None,
    port: int | None,
    user: str | None,
    password_file: str | None,
    maintenance_db: str,
    databases: str | None,
    pg_bin_dir: str | None,
    run_id: str | None,
) -> dict[str, Any]:
    """Row counts per table (and large objects) of the target against the manifest."""
    resolved = catalog.resolve(run_id or "latest", COMPONENT)
    manifest = catalog.read_manifest(resolved, COMPONENT)
    names = choose_databases(databases, sorted(database_records(manifest)), f"backup {resolved}")
    target = make_target(host, port, user, password_file, maintenance_db)
    with connection(target) as conn:
        interrupted_restores(conn, names, target.where)
        missing = [d for d in names if d not in set(list_databases(conn))]
    if missing:
        raise IntegrityError(
            f"database(s) {', '.join(missing)} of backup {resolved} do not exist on {target.where}",
            hint="restore them first",
        )
    return {"run_id": resolved, "databases": names, **check_target(target, manifest, names)}


if __name__ == "__main__":
    from steps.runtime import run

    run(cli)
