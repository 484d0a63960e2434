"""``python -m steps.redis backup|restore|verify``: RDB over the replication protocol, online restore.

Backup: BGSAVE and wait for it, then fetch an RDB the way ``redis-cli --rdb`` does (``SYNC`` on a
plain socket, both the ``$<len>`` and the diskless ``$EOF:<mark>`` payload forms) and stream it
through zstd into the store. Restore (online): verify the RDB, load it into an ephemeral local
``redis-server`` started by the step, then SCAN + DUMP/PTTL → RESTORE REPLACE (pipelined) into the
target, every database, TTLs kept: over what it holds, after ``FLUSHALL``, or (``--mode swap``) into
spare databases that ``SWAPDB`` moves into place once checked. The password comes from
``REDIS_PASSWORD`` or ``--password-file`` and never appears in an argument or a log line.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import click
import redis
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from steps.rdb import RdbCounter, Unsupported
from steps.runtime import (
    IntegrityError,
    Progress,
    StepError,
    TransientError,
    UsageError,
    action,
    component,
    confirm_option,
    get_logger,
    read_secret,
    write_output,
)
from steps.runtime.log import register_secret
from steps.storage.catalog import Catalog, new_run_id
from steps.storage.manifest import ComponentManifest, utcnow
from steps.storage.options import catalog_options
from steps.storage.stream import download_verified, ensure_space, verify

F = TypeVar("F", bound=Callable[..., Any])
COMPONENT = "redis"
RDB_NAME = "dump.rdb"
MARK_LEN = 40
RECV_SIZE = 1 << 20
SCAN_BATCH = 1000
COPY_BUDGET = 16 << 20  # bytes of DUMP payloads fetched per batch
STAGING_MARKER = b"tenant-dr:staging"  # marks a database a --swap restore is filling
_AUTH_MARKERS = ("NOAUTH", "WRONGPASS", "invalid password", "AUTH", "NOPERM", "invalid username")

cli = component(COMPONENT, "Redis: RDB fetched over the replication protocol to the catalog; online restore.")


# ---- connection ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisTarget:
    """A Redis endpoint; the password is kept out of URLs, argv and logs."""

    host: str
    port: int
    username: str | None
    password: str | None
    timeout: float = 60.0

    @property
    def where(self) -> str:
        """``host:port`` for messages."""
        return f"{self.host}:{self.port}"

    def client(self, db: int = 0) -> redis.Redis:
        """A redis-py client on database ``db``."""
        return redis.Redis(
            host=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            db=db,
            socket_timeout=self.timeout,
            socket_connect_timeout=10,
        )


def parse_url(url: str, password: str | None, timeout: float) -> RedisTarget:
    """``redis://[user@]host:port``; a password in the URL is refused (it would be a flag value)."""
    parsed = urlparse(url)
    if parsed.scheme != "redis":
        raise UsageError(f"Redis URL {url!r} is not redis://host:port", hint="TLS (rediss://) is not supported yet")
    if parsed.password:
        raise UsageError("the Redis URL must not contain a password", hint="use REDIS_PASSWORD or --password-file")
    try:
        port = parsed.port or 6379
    except ValueError as exc:
        raise UsageError(f"Redis URL {url!r} has an invalid port") from exc
    if not parsed.hostname:
        raise UsageError(f"Redis URL {url!r} has no host", hint="use redis://host:port")
    return RedisTarget(parsed.hostname, port, parsed.username or None, password, timeout)


@contextlib.contextmanager
def translated(target: RedisTarget, what: str) -> Iterator[None]:
    """Turn redis-py errors into the contract's errors (auth → 2, network → 1)."""
    try:
        yield
    except redis.AuthenticationError as exc:
        raise UsageError(
            f"{what}: authentication to Redis at {target.where} failed: {exc}",
            hint="check REDIS_PASSWORD or --password-file",
        ) from exc
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise TransientError(
            f"{what}: cannot reach Redis at {target.where}: {exc}", hint="check --url and that Redis is up"
        ) from exc
    except redis.ResponseError as exc:
        text = str(exc)
        if any(m in text for m in _AUTH_MARKERS):
            raise UsageError(
                f"{what}: Redis at {target.where} refused: {text}", hint="check REDIS_PASSWORD or --password-file"
            ) from exc
        raise TransientError(f"{what}: Redis at {target.where} answered: {text}") from exc


def keyspace(client: redis.Redis) -> dict[str, dict[str, int]]:
    """``INFO keyspace`` as ``{"0": {"keys": n, "expires": m}}``."""
    info = client.info("keyspace")
    return {
        name[2:]: {"keys": int(v["keys"]), "expires": int(v["expires"])}
        for name, v in info.items()
        if name.startswith("db") and isinstance(v, dict)
    }


# One SCAN batch counted by type inside the server: no key crosses the network. Each call blocks
# the server for about 2 ms per 1000 keys, like any short script. ``no-writes`` (Redis >= 7) lets it
# run on replicas and above maxmemory; older servers reject the shebang and get the pipeline.
_COUNT_BATCH_LUA = """#!lua flags=no-writes
local res = redis.call('SCAN', ARGV[1], 'COUNT', ARGV[2])
local counts = {}
for _, key in ipairs(res[2]) do
  local kind = redis.call('TYPE', key)['ok']
  counts[kind] = (counts[kind] or 0) + 1
end
local out = {res[1]}
for kind, n in pairs(counts) do
  out[#out + 1] = kind
  out[#out + 1] = n
end
return out
"""


def _count_by_script(client: redis.Redis) -> Counter[str]:
    """Key counts by type of the client's database, one server-side script call per SCAN batch."""
    script = client.register_script(_COUNT_BATCH_LUA)
    types: Counter[str] = Counter()
    cursor = b"0"
    while True:
        reply = script(keys=[], args=[cursor, SCAN_BATCH])
        cursor = reply[0]
        for i in range(1, len(reply), 2):
            types[reply[i].decode()] += int(reply[i + 1])
        if cursor in (b"0", 0):
            return types


def scan_batches(client: redis.Redis) -> Iterator[list[bytes | str]]:
    """The keys of the client's database, one non-empty ``SCAN`` batch at a time."""
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor, count=SCAN_BATCH)
        if keys:
            yield keys
        if cursor == 0:
            return


def _count_by_pipeline(client: redis.Redis) -> Counter[str]:
    """Key counts by type of the client's database: SCAN, then a pipelined TYPE per key."""
    types: Counter[str] = Counter()
    for keys in scan_batches(client):
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.type(key)
        types.update(t.decode() if isinstance(t, bytes) else str(t) for t in pipe.execute())
    return types


def type_counts(target: RedisTarget, dbs: list[str], *, script: bool = True) -> dict[str, dict[str, Any]]:
    """Per database: DBSIZE and key counts by type, from one SCAN pass over the live server.

    Counted inside the server by a short Lua script per batch (5x faster than sending every key name
    back for a TYPE); where scripts are not allowed (ACL, managed services) with pipelined TYPE.
    """
    out: dict[str, dict[str, Any]] = {}
    for db in dbs:
        client = target.client(int(db))
        types: Counter[str] | None = None
        if script:
            try:
                types = _count_by_script(client)
            except redis.ResponseError as exc:
                script = False
                get_logger().warning("Lua scripts refused; counting keys with pipelined TYPE", reason=str(exc))
        if types is None:
            types = _count_by_pipeline(client)
        types.pop("none", None)  # expired between SCAN and TYPE
        out[db] = {"keys": int(client.dbsize()), "types": dict(sorted(types.items()))}
        client.close()
    return out


def snapshot_counts(
    counter: RdbCounter, target: RedisTarget, before: dict[str, dict[str, int]]
) -> tuple[dict[str, dict[str, Any]], str]:
    """Per-type counts read from the RDB as it streamed (``"rdb"``), else one ``SCAN`` pass (``"scan"``).

    ``before`` is ``INFO keyspace`` from before the snapshot (databases to scan, their TTL counts).
    """
    try:
        return counter.result(), "rdb"
    except Unsupported as exc:
        get_logger().warning("cannot count keys from the RDB stream; counting with SCAN instead", reason=str(exc))
    counts = type_counts(target, sorted(before, key=int))
    for db, info in before.items():
        counts.setdefault(db, {"keys": 0, "types": {}})["expires"] = info["expires"]
    return counts, "scan"


def loaded_counts(rdb: Path, source: RedisTarget) -> dict[str, dict[str, Any]]:
    """DBSIZE and per-type counts of what the ephemeral server loaded from ``rdb``.

    Read from the file (keys past their TTL now are the ones the server dropped while loading) and
    checked against the server's DBSIZEs; when the reader gives up, or a key expired in between, one
    ``SCAN`` pass on the server instead.
    """
    counter = RdbCounter(now_ms=int(time.time() * 1000))
    with rdb.open("rb") as fh:
        for chunk in iter(lambda: fh.read(RECV_SIZE), b""):
            counter.feed(chunk)
    live = keyspace(source.client())
    try:
        counts = {db: {"keys": v["keys"], "types": v["types"]} for db, v in counter.result().items()}
        if {db: v["keys"] for db, v in counts.items()} == {db: v["keys"] for db, v in live.items()}:
            return counts
        reason = "the loaded DBSIZEs differ from the RDB's (keys expired meanwhile)"
    except Unsupported as exc:
        reason = str(exc)
    get_logger().warning("cannot count the loaded keys from the RDB; counting with SCAN instead", reason=reason)
    return type_counts(source, sorted(live, key=int))


def highest_db(expected: dict[str, Any]) -> int:
    """The highest database index that holds keys in a manifest's per-database counts."""
    return max((int(db) for db, v in expected.items() if v.get("keys")), default=0)


def check_databases(target: RedisTarget, expected: dict[str, Any]) -> None:
    """Refuse (exit 3) a target that cannot ``SELECT`` every database the backup holds keys in.

    Probed with ``SELECT`` rather than ``CONFIG GET databases``, which managed services often refuse.
    """
    highest = highest_db(expected)
    probe = target.client(highest)
    try:
        probe.ping()
    except redis.ResponseError as exc:
        if "out of range" not in str(exc):
            raise
        raise IntegrityError(
            f"Redis at {target.where} cannot select db{highest}, which the backup holds keys in: {exc}",
            hint=f"set 'databases {highest + 1}' (or more) in the target's configuration; Redis Cluster has only db0",
        ) from exc
    finally:
        probe.close()


def diff_counts(expected: dict[str, Any], live: dict[str, Any], *, at_least: bool = False) -> list[str]:
    """Differences in DBSIZE and per-type counts (``at_least``: live may hold more)."""
    problems: list[str] = []
    for db in sorted(set(expected) | set(live), key=int):
        want = expected.get(db, {"keys": 0, "types": {}})
        got = live.get(db, {"keys": 0, "types": {}})
        pairs = [("keys", want["keys"], got["keys"])]
        pairs += [
            (f"type {t}", want["types"].get(t, 0), got["types"].get(t, 0))
            for t in sorted(set(want["types"]) | set(got["types"]))
        ]
        for label, w, g in pairs:
            if (g < w) if at_least else (g != w):
                problems.append(f"db{db} {label}: {g}, expected {w}")
    return problems


def unexplained(expected: dict[str, Any], loaded: dict[str, Any]) -> bool:
    """Whether the loaded RDB's DBSIZEs differ from the manifest beyond keys that may have expired since."""
    for db in set(expected) | set(loaded):
        want = expected.get(db, {"keys": 0, "expires": 0})
        got = loaded.get(db, {"keys": 0})["keys"]
        if not want["keys"] - want.get("expires", 0) <= got <= want["keys"]:
            return True
    return False


# ---- BGSAVE + replication fetch -----------------------------------------------------------------


def _start_bgsave(client: redis.Redis) -> bool:
    """BGSAVE; ``False`` when an RDB child is already running (a BGSAVE, or a diskless sync to a replica)."""
    try:
        client.bgsave()
    except redis.ResponseError as exc:
        if "in progress" not in str(exc):
            raise
        return False
    return True


def run_bgsave(client: redis.Redis, timeout: float) -> float:
    """Run BGSAVE (or join one in progress) and wait for it to succeed; return seconds waited."""
    started = time.monotonic()
    before = client.info("persistence")
    saves0, last0 = int(before.get("rdb_saves", -1)), int(client.lastsave().timestamp())
    ours = _start_bgsave(client)
    while True:
        info = client.info("persistence")
        done_count = int(info.get("rdb_saves", -1)) > saves0 if saves0 >= 0 else False
        done_time = int(client.lastsave().timestamp()) > last0
        if not info.get("rdb_bgsave_in_progress") and (done_count or done_time):
            if info.get("rdb_last_bgsave_status") != "ok":
                raise TransientError("BGSAVE failed on the Redis server", hint="check the server's log and disk space")
            return round(time.monotonic() - started, 3)
        if not info.get("rdb_bgsave_in_progress") and not ours:
            # the child we joined ended without saving to disk (a diskless sync to a replica): start ours
            ours = _start_bgsave(client)
        if time.monotonic() - started > timeout:
            raise TransientError(f"BGSAVE did not finish within {timeout:.0f}s", hint="raise --bgsave-timeout")
        time.sleep(0.1)


def _command(*parts: str | bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class SyncReader:
    """The RDB payload of a ``SYNC`` as a readable: ``$<len>`` or diskless ``$EOF:<40-byte mark>``."""

    def __init__(self, target: RedisTarget) -> None:
        self.target = target
        self.buf = bytearray()
        self.head = b""
        self.length: int | None = None
        self.mark: bytes | None = None
        self.remaining = 0
        self.ended = False
        self.counter = RdbCounter()
        try:
            self.sock = socket.create_connection((target.host, target.port), timeout=10)
        except OSError as exc:
            raise TransientError(
                f"cannot reach Redis at {target.where}: {exc}", hint="check --url and that Redis is up"
            ) from exc
        self.sock.settimeout(target.timeout)
        try:
            self._handshake()
        except BaseException:
            self.close()
            raise

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(RECV_SIZE)
        except OSError as exc:
            raise TransientError(f"reading the RDB from {self.target.where} failed: {exc}") from exc

    def _line(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = self._recv()
            if not chunk:
                raise TransientError(f"Redis at {self.target.where} closed the connection during SYNC")
            self.buf += chunk
        idx = self.buf.index(b"\n")
        line = bytes(self.buf[:idx]).rstrip(b"\r")
        del self.buf[: idx + 1]
        return line

    def _ask(self, *parts: str) -> bytes:
        self.sock.sendall(_command(*parts))
        return self._line()

    def _handshake(self) -> None:
        t = self.target
        if t.password is not None:
            reply = self._ask("AUTH", *([t.username] if t.username else []), t.password)
            if not reply.startswith(b"+"):
                raise UsageError(
                    f"authentication to Redis at {t.where} failed: {reply.decode(errors='replace')[1:]}",
                    hint="check REDIS_PASSWORD or --password-file",
                )
        self._ask("REPLCONF", "rdb-only", "1")  # Redis >= 7: close after the RDB (older: -ERR, harmless)
        self._ask("REPLCONF", "capa", "eof")  # accept diskless transfers
        self.sock.sendall(_command("SYNC"))
        while True:
            line = self._line()
            if not line:
                continue  # keep-alive newlines while the server prepares the RDB
            if line.startswith(b"-"):
                text = line[1:].decode(errors="replace")
                error = UsageError if any(m in text for m in _AUTH_MARKERS) else TransientError
                raise error(f"Redis at {t.where} refused SYNC: {text}", hint="the user needs replication rights")
            if line.startswith(b"$EOF:"):
                self.mark = line[5:]
                if len(self.mark) != MARK_LEN:
                    raise TransientError(f"Redis at {t.where} sent a malformed EOF mark")
                return
            if line.startswith(b"$"):
                self.length = self.remaining = int(line[1:])
                return
            raise TransientError(f"unexpected SYNC reply from {t.where}: {line[:60]!r}")

    @property
    def form(self) -> str:
        """``disk`` (``$<len>``) or ``diskless`` (``$EOF:``)."""
        return "diskless" if self.mark else "disk"

    def read(self, n: int = -1, /) -> bytes:
        """Up to ``n`` payload bytes; ``b""`` at the end; raises if the connection drops early."""
        n = RECV_SIZE if n is None or n < 0 else n
        data = self._read_length(n) if self.mark is None else self._read_eof(n)
        if len(self.head) < 9:
            self.head += data[: 9 - len(self.head)]
        self.counter.feed(data)
        return data

    def _read_length(self, n: int) -> bytes:
        if self.remaining <= 0:
            return b""
        if not self.buf:
            chunk = self._recv()
            if not chunk:
                raise TransientError(
                    f"Redis at {self.target.where} closed the connection after "
                    f"{(self.length or 0) - self.remaining} of {self.length} RDB bytes"
                )
            self.buf += chunk
        take = min(n, self.remaining, len(self.buf))
        out = bytes(self.buf[:take])
        del self.buf[:take]
        self.remaining -= take
        return out

    def _read_eof(self, n: int) -> bytes:
        assert self.mark is not None
        start = 0
        while not self.ended:
            idx = self.buf.find(self.mark, start)
            if idx >= 0:
                del self.buf[idx:]  # anything after the mark is replication stream, not RDB
                self.ended = True
                break
            if len(self.buf) >= n + MARK_LEN:
                break
            chunk = self._recv()
            if not chunk:
                raise TransientError(f"Redis at {self.target.where} closed the connection before the RDB ended")
            start = max(0, len(self.buf) - MARK_LEN)
            self.buf += chunk
        take = min(n, len(self.buf) if self.ended else len(self.buf) - MARK_LEN)
        out = bytes(self.buf[:take])
        del self.buf[:take]
        return out

    @property
    def rdb_version(self) -> int | None:
        """RDB format version from the ``REDIS00NN`` header."""
        if self.head[:5] == b"REDIS" and self.head[5:9].isdigit():
            return int(self.head[5:9])
        return None

    def close(self) -> None:
        """Close the replication connection."""
        with contextlib.suppress(OSError):
            self.sock.close()


# ---- options ------------------------------------------------------------------------------------


def redis_options(fn: F) -> F:
    """``--url --password-file --timeout --run-id``."""
    options = [
        click.option(
            "--url", envvar="TENANT_DR_REDIS_URL", required=True, help="redis://[user@]host:port (no password)."
        ),
        click.option(
            "--password-file",
            envvar="TENANT_DR_REDIS_PASSWORD_FILE",
            default=None,
            type=click.Path(dir_okay=False),
            help="File holding the password (else env REDIS_PASSWORD; none if neither).",
        ),
        click.option("--timeout", type=float, default=120.0, show_default=True, help="Socket timeout in seconds."),
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


def make_target(url: str, password_file: str | None, timeout: float) -> RedisTarget:
    """Read the password (registered for redaction) and parse the URL."""
    password = read_secret(what="Redis password", env="REDIS_PASSWORD", file=password_file, required=False)
    return parse_url(url, password, timeout)


# ---- backup -------------------------------------------------------------------------------------


@action(cli, help_text="BGSAVE, fetch the RDB over the replication protocol and stream it to the catalog.")
@catalog_options
@redis_options
@click.option("--bgsave-timeout", type=float, default=3600.0, show_default=True, help="Seconds to wait for BGSAVE.")
@click.option(
    "--bgsave/--no-bgsave",
    envvar="TENANT_DR_REDIS_BGSAVE",
    default=True,
    show_default=True,
    help="BGSAVE before the fetch, so the server's own dump.rdb is fresh too. The backup is the SYNC snapshot "
    "either way; --no-bgsave saves the server one fork and one full write of the dataset.",
)
def backup(
    catalog: Catalog,
    tenant: str,
    url: str,
    password_file: str | None,
    timeout: float,
    run_id: str | None,
    bgsave_timeout: float,
    bgsave: bool,
) -> dict[str, Any]:
    """Back up Redis: one RDB (all databases) plus DBSIZE and per-type key counts."""
    log = get_logger()
    run_id = run_id or new_run_id()
    write_output("run-id", run_id)
    if catalog.has_manifest(run_id, COMPONENT):
        log.info("redis backup of this run already complete; nothing to do", run_id=run_id)
        return {"run_id": run_id, "skipped": "already complete"}
    target = make_target(url, password_file, timeout)
    started_at = utcnow()
    client = target.client()
    with translated(target, "backup"):
        client.ping()
        server = client.info("server")
        memory = client.info("memory")
        before = keyspace(client)
        bgsave_s = run_bgsave(client, bgsave_timeout) if bgsave else None
    attempt = catalog.new_attempt()
    t0 = time.monotonic()
    reader = SyncReader(target)
    try:
        with Progress(f"{COMPONENT} {RDB_NAME}", reader.length) as progress:
            record = catalog.put_object(
                run_id,
                COMPONENT,
                attempt,
                RDB_NAME,
                reader,
                size_hint=reader.length or int(memory.get("used_memory", 0)) or None,
                progress=progress,
                meta={"kind": "rdb", "transfer": reader.form},
            )
    finally:
        reader.close()
    fetch_s = round(time.monotonic() - t0, 3)
    if reader.rdb_version is None:
        raise IntegrityError(f"the payload from {target.where} is not an RDB (header {reader.head!r})")
    t1 = time.monotonic()
    with translated(target, "counting keys"):
        counts, counted_from = snapshot_counts(reader.counter, target, before)
        after = keyspace(client)
    stable = {db: v["keys"] for db, v in before.items()} == {db: v["keys"] for db, v in after.items()}
    timings = {"bgsave_s": bgsave_s, "fetch_s": fetch_s, "count_s": round(time.monotonic() - t1, 3)}
    manifest = ComponentManifest(
        tenant=catalog.tenant,
        run_id=run_id,
        component=COMPONENT,
        started_at=started_at,
        finished_at=utcnow(),
        objects=[record],
        source={
            "endpoint": target.where,
            "redis_version": server.get("redis_version"),
            "rdb_version": reader.rdb_version,
            "transfer": reader.form,
        },
        fingerprints={"databases": counts, "stable": stable, "counted_from": counted_from},
        details={"timings": timings, "keyspace_before": before, "keyspace_after": after},
    )
    written = catalog.write_manifest(manifest)
    log.info(
        "redis backup done",
        bytes=record.size,
        raw_bytes=record.raw_size,
        stable=stable,
        counted_from=counted_from,
        **timings,
    )
    return {
        "run_id": run_id,
        "bytes": record.size,
        "raw_bytes": record.raw_size,
        "rdb_version": reader.rdb_version,
        "transfer": reader.form,
        "databases": {db: v["keys"] for db, v in counts.items()},
        "stable": stable,
        "counted_from": counted_from,
        "manifest_written": written,
        "timings": timings,
    }


# ---- restore ------------------------------------------------------------------------------------


@contextlib.contextmanager
def ephemeral_server(rdb: Path, binary: str, timeout: float, databases: int) -> Iterator[RedisTarget]:
    """A local ``redis-server`` with ``databases`` (at least 16) that loads ``rdb``; password only in its config."""
    found = shutil.which(binary)
    if not found:
        raise UsageError(f"{binary} not found", hint="the step image needs redis-server (or pass --redis-server)")
    workdir = rdb.parent
    password = secrets.token_hex(16)
    register_secret(password)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    conf = workdir / "ephemeral.conf"
    conf.write_text(
        "\n".join(
            [
                f"port {port}",
                "bind 127.0.0.1",
                f'dir "{workdir}"',
                f'dbfilename "{rdb.name}"',
                f'logfile "{workdir / "ephemeral.log"}"',
                "appendonly no",
                'save ""',
                "daemonize no",
                "protected-mode yes",
                f"databases {max(16, databases)}",
                f"requirepass {password}",
            ]
        )
        + "\n"
    )
    conf.chmod(0o600)
    proc = subprocess.Popen([found, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = RedisTarget("127.0.0.1", port, None, password, timeout)
    try:
        wait_until_loaded(proc, target, workdir / "ephemeral.log", timeout)
        yield target
    finally:
        proc.kill()
        proc.wait()


def exited(proc: subprocess.Popen[bytes], within: float) -> bool:
    """Whether ``proc`` exits within ``within`` seconds (a server that fails a load can take a moment to exit)."""
    try:
        proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        return False
    return True


def wait_until_loaded(proc: subprocess.Popen[bytes], server: RedisTarget, log: Path, stall: float) -> None:
    """Wait for the ephemeral server to load its RDB, however long that takes while it makes progress.

    A large RDB can take minutes to load, so the limit is on progress, not on the whole load: the
    step gives up only when ``loading_loaded_bytes`` has not grown for ``stall`` seconds.
    """
    client = server.client()
    deadline, loaded, total = time.monotonic() + stall, -1, 0
    try:
        while True:
            if proc.poll() is not None:
                log_tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                raise IntegrityError(
                    f"the ephemeral redis-server could not load the backup RDB: {' | '.join(log_tail)}",
                    hint="the step's redis-server must be at least as new as the backed-up server",
                )
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                info = client.info("persistence")
                if not int(info.get("loading", 0)):
                    return
                now_loaded, total = int(info.get("loading_loaded_bytes", 0)), int(info.get("loading_total_bytes", 0))
                if now_loaded > loaded:
                    deadline, loaded = time.monotonic() + stall, now_loaded
            if time.monotonic() > deadline and not exited(proc, min(stall, 5.0)):
                raise TransientError(
                    f"the ephemeral redis-server stopped making progress loading the RDB "
                    f"({max(loaded, 0)} of {total} bytes, then nothing for {stall:g}s)",
                    hint="the step's pod may be short of CPU or memory; raise its resources or --timeout",
                )
            time.sleep(0.05)
    finally:
        client.close()


# One call per SCAN batch on the ephemeral server (ours, so scripts are always allowed): key names,
# PTTLs and DUMP payloads come back together. Once a batch holds COPY_BUDGET bytes of payloads the
# rest of its keys come back as names only and are copied one at a time, so memory stays bounded
# whatever the key sizes. Expired keys (DUMP is nil) are left out.
_COPY_BATCH_LUA = """
local res = redis.call('SCAN', ARGV[1], 'COUNT', ARGV[2])
local budget = tonumber(ARGV[3])
local used = 0
local fetched = {}
local deferred = {}
for _, key in ipairs(res[2]) do
  if used < budget then
    local payload = redis.call('DUMP', key)
    if payload then
      fetched[#fetched + 1] = key
      fetched[#fetched + 1] = redis.call('PTTL', key)
      fetched[#fetched + 1] = payload
      used = used + #payload
    end
  else
    deferred[#deferred + 1] = key
  end
end
return {res[1], fetched, deferred}
"""

RestoreArgs = tuple[str, bytes, int, bytes, str]


def _restore_args(key: bytes, pttl: int, payload: bytes) -> RestoreArgs:
    return ("RESTORE", key, max(int(pttl), 0), payload, "REPLACE")


def restore_refused(message: str, reply: redis.ResponseError) -> StepError:
    """The contract's error for a target that refused a RESTORE, with the fix for the usual reasons."""
    if isinstance(reply, redis.exceptions.NoPermissionError):
        return UsageError(
            message,
            hint="the Redis user needs the restore and flushall commands (ACL +restore +flushall; "
            "--mode swap also +swapdb +flushdb +set +del)",
        )
    if isinstance(reply, redis.exceptions.ReadOnlyError):
        return UsageError(message, hint="--url points at a read-only replica; point it at the primary")
    if isinstance(reply, redis.exceptions.OutOfMemoryError):
        return IntegrityError(
            message,
            hint="the target reached its maxmemory: raise maxmemory or free memory, then restore with --flush",
        )
    return IntegrityError(message, hint="the target Redis must be at least as new as the backed-up one")


def _lost_connection(exc: BaseException) -> bool:
    return isinstance(exc, redis.ConnectionError | redis.TimeoutError) and not isinstance(
        exc, redis.AuthenticationError
    )


class _Restorer:
    """``RESTORE ... REPLACE`` into one target database: packed batches on one connection, replies read later.

    Skips redis-py's per-command pipeline bookkeeping, which cost more than the servers' work. A batch is
    kept until its replies are in: a lost connection is re-opened and the batch re-sent (RESTORE REPLACE
    is idempotent), a few times with backoff.
    """

    RETRY_ATTEMPTS = 4

    def __init__(self, client: redis.Redis, db: int, where: str) -> None:
        self.pool = client.connection_pool
        self.conn: Any = self.pool.get_connection()
        self.db, self.where = db, where
        self.batch: list[RestoreArgs] = []
        self.unsent = False

    def _transmit(self) -> None:
        self.unsent = True
        self.conn.send_packed_command(self.conn.pack_commands(self.batch))
        self.unsent = False

    def send(self, commands: list[RestoreArgs]) -> None:
        """Send a batch without waiting for its replies (a failed send is retried by :meth:`collect`)."""
        self.batch = commands
        if commands:
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                self._transmit()

    def _replies(self) -> int:
        if self.unsent:
            self._transmit()
        refused: redis.ResponseError | None = None
        for _ in self.batch:
            try:
                self.conn.read_response()
            except redis.ResponseError as exc:
                refused = refused or exc
        if refused is not None:
            raise restore_refused(f"RESTORE into db{self.db} of {self.where} failed: {refused}", refused)
        done, self.batch = len(self.batch), []
        return done

    def collect(self) -> int:
        """Read the batch's replies; the first refusal becomes a step error once all are read."""
        retrying = Retrying(
            retry=retry_if_exception(_lost_connection),
            stop=stop_after_attempt(self.RETRY_ATTEMPTS),
            wait=wait_exponential(multiplier=0.2, max=5),
            before_sleep=self._lost,
            reraise=True,
        )
        return retrying(self._replies)

    def _lost(self, state: RetryCallState) -> None:
        self.conn.disconnect()
        self.unsent = True
        error = state.outcome.exception() if state.outcome else None
        get_logger().warning("connection to the target lost; re-sending the batch", db=self.db, error=str(error))

    def close(self) -> None:
        """Return the connection to the pool (dropped if replies are still unread)."""
        if self.batch:
            self.conn.disconnect()
        self.pool.release(self.conn)


def probe_restore(source: RedisTarget, target: RedisTarget, loaded: dict[str, Any], into: dict[int, int]) -> None:
    """RESTORE one small key of the backup into the target under a throwaway name, before any flush.

    The key goes to the database it will be restored into: its own, or its spare one (``into``, for
    ``--mode swap``, so nothing clients see is written before the swap).

    What would otherwise stop the copy after ``--flush`` has emptied the target is refused here with
    nothing changed: an older target (payload version), a user without ``restore``, a read-only
    replica, a target already at its ``maxmemory``. The probe key (the sampled key's name plus
    ``:tenant-dr-restore-probe:<hex>``, so key-pattern ACLs treat it alike) expires after 60 s if its
    ``DEL`` is lost.
    """
    db = next((int(d) for d, v in loaded.items() if v.get("keys")), None)
    if db is None:
        return
    src, dst = source.client(db), target.client(into.get(db, db))
    try:
        keys = next(scan_batches(src), [])
        pipe = src.pipeline(transaction=False)
        for key in keys:
            pipe.memory_usage(key)
        sizes = {key: size for key, size in zip(keys, pipe.execute(), strict=True) if size is not None}
        if not sizes:
            return  # expired since loading
        key = min(sizes, key=sizes.__getitem__)
        payload = src.dump(key)
        if payload is None:
            return  # expired since loading
        name = key if isinstance(key, bytes) else key.encode()
        probe = name + b":tenant-dr-restore-probe:" + secrets.token_hex(8).encode()
        try:
            dst.restore(probe, 60_000, payload)
        except redis.ResponseError as exc:
            raise restore_refused(
                f"RESTORE of a probe key into db{into.get(db, db)} of {target.where} failed, nothing flushed or "
                f"restored: {exc}",
                exc,
            ) from exc
        dst.delete(probe)
    finally:
        src.close()
        dst.close()


def check_room(source: RedisTarget, target: RedisTarget, *, flush: bool) -> None:
    """Refuse (exit 3), before anything changes, a restore whose data cannot fit under the target's ``maxmemory``.

    The need is the ephemeral server's ``used_memory_dataset``; the room is ``maxmemory`` minus what
    the target uses, apart from its own dataset if ``flush`` frees it (``--flush``), all of it if not
    (``--swap`` holds the old and the new data until the swap). Otherwise the copy would stop part-way
    on OOM, or, under an eviction policy, evict keys.
    """
    src, dst = source.client(), target.client()
    try:
        theirs = dst.info("memory")
        limit = int(theirs.get("maxmemory", 0))
        if not limit:
            return
        needed = int(src.info("memory")["used_memory_dataset"])
        used = int(theirs["used_memory"]) - (int(theirs["used_memory_dataset"]) if flush else 0)
        room = limit - used
        if needed > room:
            after = "after --flush" if flush else "beside its current data (--swap keeps both until the swap)"
            raise IntegrityError(
                f"the backup's data takes about {needed} bytes in Redis, more than the {max(room, 0)} bytes the "
                f"target {target.where} would have under its maxmemory ({limit}) {after}; "
                "nothing was flushed or restored",
                hint="raise the target's maxmemory or use a larger instance, then restore again"
                + ("" if flush else "; or restore with --flush instead of --swap"),
            )
    finally:
        src.close()
        dst.close()


def copy_database(src: RedisTarget, dst: RedisTarget, db: int, progress: Progress, into: int | None = None) -> int:
    """Copy every key of ``db`` from ``src`` (the ephemeral server) into ``dst``: DUMP → RESTORE REPLACE, TTLs kept.

    The keys land in the target's ``into`` database (default: ``db``). Batch n+1 is fetched from the
    source while the target is still restoring batch n. Returns keys copied.
    """
    into = db if into is None else into
    source, target = src.client(db), dst.client(into)
    script = source.register_script(_COPY_BATCH_LUA)
    restorer = _Restorer(target, into, dst.where)
    copied = 0

    def fetch(cursor: bytes) -> tuple[bytes, list[RestoreArgs], list[bytes]]:
        next_cursor, fetched, deferred = script(keys=[], args=[cursor, SCAN_BATCH, COPY_BUDGET])
        batch = [_restore_args(*fetched[i : i + 3]) for i in range(0, len(fetched), 3)]
        return next_cursor, batch, deferred

    try:
        cursor, batch, deferred = fetch(b"0")
        while True:
            restorer.send(batch)
            following = None if cursor in (b"0", 0) else fetch(cursor)
            done = restorer.collect()
            for key in deferred:  # past the batch's byte budget: one key at a time
                pipe = source.pipeline(transaction=False)
                pipe.pttl(key)
                pipe.dump(key)
                pttl, payload = pipe.execute()
                if payload is not None:
                    restorer.send([_restore_args(key, pttl, payload)])
                    done += restorer.collect()
            progress.update(done)
            copied += done
            if following is None:
                return copied
            cursor, batch, deferred = following
    finally:
        restorer.close()
        source.close()
        target.close()


def on_db(target: RedisTarget, db: int, *command: str | bytes | int) -> Any:
    """Run one command on database ``db`` of ``target`` over a connection of its own."""
    client = target.client(db)
    try:
        return client.execute_command(*command)  # type: ignore[no-untyped-call]
    finally:
        client.close()


def staging_databases(target: RedisTarget, wanted: list[int]) -> tuple[dict[int, int], list[int]]:
    """For each database of ``wanted``, an empty database of the target to fill before ``SWAPDB``.

    A database that holds :data:`STAGING_MARKER` is a killed ``--swap`` restore's leftover: it is used
    first and returned in the second list, to be emptied before the copy. Then empty databases, highest
    first. Refuses (exit 3) a target without enough of them (Redis Cluster has only db0).
    """
    client = target.client()
    try:
        count = int(str(client.config_get("databases").get("databases") or 16))
    except redis.ResponseError:
        count = 16  # CONFIG refused (managed services): SELECT below tells which databases exist
    finally:
        client.close()
    empty: list[int] = []
    leftovers: list[int] = []
    for db in reversed(range(count)):
        if db in wanted:
            continue
        probe = target.client(db)
        try:
            size = int(probe.dbsize())
            if size and probe.exists(STAGING_MARKER):
                leftovers.append(db)
            elif not size:
                empty.append(db)
        except redis.ResponseError as exc:
            if "out of range" not in str(exc):
                raise
        finally:
            probe.close()
    free = leftovers + empty
    if free:
        try:  # a no-op that the ACL and Redis Cluster refuse like the real one
            on_db(target, 0, "SWAPDB", free[0], free[0])
        except redis.ResponseError as exc:
            raise UsageError(
                f"Redis at {target.where} refused SWAPDB, which --mode swap needs: {exc}; nothing was changed",
                hint="allow +swapdb for the user (Redis Cluster has no SWAPDB), or restore with --flush",
            ) from exc
    if len(free) < len(wanted):
        raise IntegrityError(
            f"--swap restores each of the backup's {len(wanted)} database(s) into an empty database of "
            f"{target.where} first, and it has {len(free)} besides the backup's own; nothing was changed",
            hint="restore with --flush instead (not atomic), or raise 'databases' in the target's configuration",
        )
    return dict(zip(wanted, free, strict=False)), leftovers


def staged_problems(want: dict[str, Any], got: dict[str, Any], expires: int) -> list[str]:
    """How a staged database differs from what was loaded, allowing keys with a TTL that expired meanwhile."""
    problems = diff_counts({"0": want}, {"0": got})
    short = want["keys"] - got["keys"]
    fewer = all(got["types"].get(t, 0) <= n for t, n in want["types"].items()) and set(got["types"]) <= set(
        want["types"]
    )
    return [] if not problems or (0 < short <= expires and fewer) else problems


def swap_in(
    source: RedisTarget,
    target: RedisTarget,
    loaded: dict[str, Any],
    staging: dict[int, int],
    leftovers: list[int],
    run_id: str,
    progress: Progress,
) -> dict[str, int]:
    """Fill the staging databases, check them against ``loaded``, then ``SWAPDB`` each into place.

    Until the swaps nothing the target's clients see changes: a failure empties the staging databases
    and says the target is as it was. After each swap the old data (now in the staging database) is
    dropped with ``FLUSHDB ASYNC``. Returns keys copied per database.
    """
    log = get_logger()
    expires = {db: v["expires"] for db, v in keyspace(source.client()).items()}
    copied: dict[str, int] = {}
    try:
        for db in leftovers:
            on_db(target, db, "FLUSHDB")
            log.warning("emptied what a killed --swap restore left", db=db)
        for db, into in staging.items():
            on_db(target, into, "SET", STAGING_MARKER, run_id)
            copied[str(db)] = copy_database(source, target, db, progress, into=into)
        staged = type_counts(target, [str(s) for s in staging.values()])
        problems: list[str] = []
        for db, into in staging.items():
            want = dict(loaded[str(db)])
            types: Counter[str] = Counter(want["types"])
            types["string"] += 1  # the marker
            want = {"keys": want["keys"] + 1, "types": dict(types)}
            problems += [
                f"db{db} (staged in db{into}) {p.split(' ', 1)[1]}"
                for p in staged_problems(want, staged[str(into)], expires.get(str(db), 0))
            ]
        if problems:
            raise IntegrityError(
                f"the staged copy differs from the loaded backup: {'; '.join(problems[:20])}",
                hint="keys may have been written into the staging database meanwhile; restore again",
            )
        for into in staging.values():
            on_db(target, into, "DEL", STAGING_MARKER)
    except BaseException as exc:
        raise nothing_swapped(exc, target, staging) from exc
    swapped: list[int] = []
    for db, into in staging.items():
        try:
            on_db(target, 0, "SWAPDB", db, into)
        except (redis.RedisError, OSError) as exc:
            for spare in list(staging.values())[len(swapped) :]:
                with contextlib.suppress(redis.RedisError, OSError):
                    on_db(target, spare, "FLUSHDB")
            done = ", ".join(f"db{d}" for d in swapped) or "none"
            raise TransientError(
                f"SWAPDB {db} {into} on {target.where} failed: {exc}; swapped in so far: {done}; db{db} and the "
                f"ones after it were not replaced (their copies in the spare databases are emptied if possible)",
                hint="re-run the restore",
            ) from exc
        swapped.append(db)
        on_db(target, into, "FLUSHDB", "ASYNC")
        log.info("database swapped in; its old data is being freed", db=db, staged_in=into)
    return copied


def nothing_swapped(exc: BaseException, target: RedisTarget, staging: dict[int, int]) -> StepError:
    """``exc`` (same exit code) restated: the target's databases are as they were; the staging ones emptied."""
    emptied: list[int] = []
    for into in staging.values():
        with contextlib.suppress(redis.RedisError, OSError):
            on_db(target, into, "FLUSHDB")
            emptied.append(into)
    stuck = [db for db in staging.values() if db not in emptied]
    cause = exc.message if isinstance(exc, StepError) else f"{type(exc).__name__}: {exc}"
    get_logger().error("restore failed before the swap; target databases untouched", emptied=emptied, not_emptied=stuck)
    left = (
        f"; db{', db'.join(map(str, stuck))} still hold part of the copy, marked with the key "
        f"{STAGING_MARKER.decode()} (the next --swap restore empties them)"
        if stuck
        else ""
    )
    hint = exc.hint if isinstance(exc, StepError) and exc.hint else None
    again = "re-run the restore"
    return (type(exc) if isinstance(exc, StepError) else TransientError)(
        f"restore into {target.where} failed before the swap: {cause}; nothing was replaced: "
        f"db{', db'.join(map(str, staging))} as before the restore{left}",
        hint=f"{hint}; then {again}" if hint else again,
    )


def stopped_part_way(
    exc: StepError, target: RedisTarget, flushed: bool, done: list[str], current: str, rest: list[str]
) -> StepError:
    """``exc`` (same exit code) restated with what the target now holds, database by database."""
    get_logger().error("restore stopped part-way", flushed=flushed, copied=done, partly=current, not_started=rest)
    again = "re-run the restore (with --flush for an exact copy)"
    return type(exc)(
        f"restore into {target.where} stopped in db{current}: {exc.message}; the target "
        f"{'was flushed and ' if flushed else ''}holds a partial restore: copied "
        f"{', '.join(f'db{d}' for d in done) or 'none'}; db{current} partly copied; not started "
        f"{', '.join(f'db{d}' for d in rest) or 'none'}",
        hint=f"{exc.hint}; then {again}" if exc.hint else again,
    )


@action(cli, help_text="Restore a run's RDB into the target online (DUMP/RESTORE); without --confirm only the plan.")
@catalog_options
@redis_options
@click.option("--flush", is_flag=True, default=False, help="FLUSHALL the target first (the same as --mode flush).")
@click.option(
    "--mode",
    envvar="TENANT_DR_REDIS_MODE",
    type=click.Choice(["merge", "flush", "swap"]),
    default="merge",
    show_default=True,
    help="merge: RESTORE REPLACE over what the target holds. flush: FLUSHALL first. swap: fill empty databases of "
    "the target, check them, then SWAPDB each into place (a failure changes nothing clients see; needs spare "
    "databases and memory for both copies).",
)
@click.option(
    "--redis-server",
    "redis_server_bin",
    envvar="TENANT_DR_REDIS_SERVER",
    default="redis-server",
    show_default=True,
    help="redis-server binary for the ephemeral server.",
)
@click.option(
    "--work-dir",
    envvar="TENANT_DR_WORK_DIR",
    default=None,
    help="Where the verified RDB is written (default: the system temp dir).",
)
@click.option("--operation", envvar="TENANT_DR_OPERATION", default=None, help="Operation id to record prior state.")
@confirm_option
def restore(
    catalog: Catalog,
    tenant: str,
    url: str,
    password_file: str | None,
    timeout: float,
    run_id: str | None,
    flush: bool,
    mode: str,
    redis_server_bin: str,
    work_dir: str | None,
    operation: str | None,
    confirm: bool,
) -> dict[str, Any]:
    """Verify the RDB, load it into an ephemeral redis-server and copy every key into the target."""
    log = get_logger()
    if flush and mode not in ("merge", "flush"):
        raise UsageError(f"--flush and --mode {mode} exclude each other", hint="pass one of them")
    mode = "flush" if flush else mode
    flush, swap = mode == "flush", mode == "swap"
    resolved = catalog.resolve(run_id or "latest", COMPONENT)
    manifest = catalog.read_manifest(resolved, COMPONENT)
    record = next((o for o in manifest.objects if o.meta.get("kind") == "rdb"), None)
    if record is None:
        raise IntegrityError(f"redis manifest of run {resolved} names no RDB", hint="use another run")
    target = make_target(url, password_file, timeout)
    expected = manifest.fingerprints.get("databases", {})
    with translated(target, "restore"):
        client = target.client()
        client.ping()
        prior = keyspace(client)
        check_databases(target, expected)
        if swap:
            staging, leftovers = staging_databases(target, [int(d) for d, v in expected.items() if v.get("keys")])
    plan = {
        "run_id": resolved,
        "target": target.where,
        "mode": mode,
        "flush": flush,
        "target_keys_before": {db: v["keys"] for db, v in prior.items()},
        "keys_to_restore": {db: v["keys"] for db, v in expected.items()},
    }
    if swap:
        plan["swap_into"] = {str(db): into for db, into in staging.items()}
        plan["empty_first"] = leftovers
    key = catalog.object_key(manifest, record)
    if not confirm:
        with Progress("verify rdb", record.raw_size) as progress:
            verify(catalog.store, key, record, progress=progress)
        log.info("plan only (pass --confirm to restore)", **plan)
        return {"dry_run": True, "plan": plan}
    work = Path(tempfile.mkdtemp(prefix="tdr-redis-", dir=work_dir))
    try:
        ensure_space(work, record.raw_size or 0, "the verified RDB", "point --work-dir at a larger volume")
        with Progress("download rdb", record.raw_size) as progress:
            rdb = download_verified(catalog.store, key, record, work / RDB_NAME, progress=progress)
        with ephemeral_server(rdb, redis_server_bin, timeout, highest_db(expected) + 1) as source:
            loaded = loaded_counts(rdb, source)
            mismatch = diff_counts(expected, loaded)
            # counts read from the RDB describe it exactly; SCAN counts only when no key changed meanwhile
            exact = manifest.fingerprints.get("counted_from") == "rdb" or manifest.fingerprints.get("stable")
            if exact and unexplained(expected, loaded):
                raise IntegrityError(
                    f"the RDB of run {resolved} does not hold what its manifest counted: {'; '.join(mismatch[:10])}",
                    hint="the backup is inconsistent; restore from another run",
                )
            if operation:
                catalog.record_once(operation, "redis-prior", plan)
            t0 = time.monotonic()
            with translated(target, "restore"):
                if swap:  # chosen again: a spare may have gained keys during the download
                    staging, leftovers = staging_databases(target, [int(d) for d, v in loaded.items() if v["keys"]])
                    check_room(source, target, flush=False)
                probe_restore(source, target, loaded, staging if swap else {})
                if flush:
                    check_room(source, target, flush=True)
                    client.flushall()
                    log.info("target flushed", target=target.where)
                total = sum(v["keys"] for v in loaded.values())
                copied: dict[str, int] = {}
                with Progress("restore keys", total) as progress:
                    if swap:
                        copied = swap_in(source, target, loaded, staging, leftovers, resolved, progress)
                    for i, db in enumerate(loaded if not swap else []):
                        try:
                            with translated(target, f"restoring db{db}"):
                                copied[db] = copy_database(source, target, int(db), progress)
                        except StepError as exc:
                            raise stopped_part_way(exc, target, flush, list(copied), db, list(loaded)[i + 1 :]) from exc
                copy_s = round(time.monotonic() - t0, 3)
                # --swap replaces the backup's databases only; the others are the target's own
                dbs = set(loaded) if swap else set(loaded) | set(keyspace(client))
                after = type_counts(target, sorted(dbs, key=int))
                problems = diff_counts(loaded, after, at_least=mode == "merge")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if problems:
        raise IntegrityError(
            f"target {target.where} differs from backup {resolved} after restore: {'; '.join(problems[:20])}",
            hint="keys may have been written or expired meanwhile; restore again with --flush",
        )
    return {
        "dry_run": False,
        "plan": plan,
        "copied": copied,
        "copy_s": copy_s,
        "manifest_differences": mismatch,
        "target_keys_after": {db: v["keys"] for db, v in after.items()},
    }


@action(cli, "verify", help_text="Compare the target's DBSIZE and per-type key counts with a run's manifest.")
@catalog_options
@redis_options
def verify_counts(
    catalog: Catalog, tenant: str, url: str, password_file: str | None, timeout: float, run_id: str | None
) -> dict[str, Any]:
    """DBSIZE and key counts by type per database against the manifest (exit 3 on difference)."""
    resolved = catalog.resolve(run_id or "latest", COMPONENT)
    manifest = catalog.read_manifest(resolved, COMPONENT)
    expected = manifest.fingerprints.get("databases", {})
    expected = {db: {"keys": v["keys"], "types": v["types"]} for db, v in expected.items()}
    target = make_target(url, password_file, timeout)
    with translated(target, "verify"):
        check_databases(target, expected)
        live = type_counts(target, sorted(set(expected) | set(keyspace(target.client())), key=int))
    problems = diff_counts(expected, live)
    if problems:
        raise IntegrityError(
            f"Redis at {target.where} differs from backup {resolved}: {'; '.join(problems[:20])}",
            hint="restore again (with --flush) or investigate writes since the restore",
        )
    return {"run_id": resolved, "databases": {db: v["keys"] for db, v in live.items()}}


if __name__ == "__main__":
    from steps.runtime import run

    run(cli)
