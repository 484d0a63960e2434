"""``python -m steps.cassandra backup|restore|verify``: per-pod SSTable snapshots streamed as tar.zst.

Backup: check that the pods found are the whole ring, clear ``tdr-*`` snapshots left by earlier
backups, ``nodetool snapshot`` on every pod, one ``tar`` per pod and keyspace streamed out of the pod
through zstd into the store, the schema (``cqlsh DESCRIBE KEYSPACE``) and token map recorded,
``nodetool clearsnapshot`` always. Restore: verify, apply the schema when the keyspace is missing,
stage each pod's tar in the pod, truncate, then per table copy into the current table directory under
new generations and ``nodetool refresh`` (or ``nodetool import`` from the staging dir on 4.x), checking
that Cassandra loaded every SSTable. Pod exec goes through :mod:`steps.podexec`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import posixpath
import queue
import re
import tarfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from steps.kubeapi import kube_options
from steps.podexec import ExecResult, Pod, PodExecutor, open_executor
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
    read_setting,
    run_id_option,
    write_output,
)
from steps.storage.catalog import Catalog, new_run_id, run_id_time
from steps.storage.manifest import ComponentManifest, ObjectRecord, utcnow
from steps.storage.options import catalog_options
from steps.storage.stream import iter_verified, verify

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
R = TypeVar("R")

COMPONENT = "cassandra"
DEFAULT_KEYSPACES = "atlas"
DEFAULT_DATA_DIR = "/var/lib/cassandra/data"
NON_SSTABLE_FILES = frozenset({"manifest.json", "schema.cql"})
QUEUE_CHUNKS = 8  # exec-reader -> uploader buffer (chunks of at most ~1 MiB)
NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,48}$")
TABLE_DIR_RE = re.compile(r"^([A-Za-z0-9_]+)-([0-9a-f]{32})$")
SNAPSHOT_PREFIX = "tdr-"  # reserved: every snapshot tag with it belongs to this step
SNAPSHOT_TAG_RE = re.compile(r"^tdr-(\d{8}t\d{6}z)-[0-9a-f]{6}-a[0-9a-f]+$")
SSTABLE_RE = re.compile(r"^([a-z]{2})-(\d+)-([a-z]+)-([A-Za-z0-9_.]+)$")  # <version>-<generation>-<format>-<component>
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
RING_LINE_RE = re.compile(r"^([UD][NLJM])\s+(\S+)\s")
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Refresh copies a backed-up SSTable under a generation this far above the highest live one, clear of
# the generations the node allocates (flushes, compactions) before ``nodetool refresh`` renames it.
GENERATION_GAP = 1_000_000
COPY_CONFLICT = 5  # exit code of COPY_NEW_SCRIPT when a target name exists
DEFAULT_TRUNCATE_TIMEOUT = 3600

cli = component("cassandra", "Cassandra: per-pod nodetool snapshots streamed to the catalog, and restore.")

# ---- scripts run in the pod (fixed text; data goes in as positional args, secrets only on stdin) --

# stdin: username line, password line, then exactly $1 bytes of CQL. The credentials land in a
# private cqlshrc in a temp dir (never in argv or env of any process) and are deleted on exit.
CQLSH_SCRIPT = r"""set -eu
umask 077
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
IFS= read -r user || true
IFS= read -r pass || true
if [ -n "$user" ]; then
  printf '[authentication]\nusername = %s\npassword = %s\n' "$user" "$pass" > "$d/cqlshrc"
else
  : > "$d/cqlshrc"
fi
head -c "$1" > "$d/input.cql"
if [ -n "${2:-}" ]; then
  cqlsh --cqlshrc "$d/cqlshrc" --request-timeout "$2" -f "$d/input.cql"
else
  cqlsh --cqlshrc "$d/cqlshrc" -f "$d/input.cql"
fi
"""

# $1 = keyspace dir, $2 = snapshot tag: print the <table-dir>/snapshots/<tag> directories.
LIST_SNAPSHOTS_SCRIPT = r"""cd "$1" || exit 3
for d in */snapshots/"$2"; do
  if [ -d "$d" ]; then printf '%s\n' "$d"; fi
done
"""

# $1 = base dir, then paths below it: print "<size>\t<path>" for every regular file under them.
LIST_FILES_SCRIPT = r"""cd "$1" || exit 3
shift
find "$@" -type f | while IFS= read -r f; do
  printf '%s\t%s\n' "$(wc -c < "$f" | tr -d ' ')" "$f"
done
"""

# $@ = dirs: print "<size>\t<dir>/<name>" for every regular file directly in them (not below).
LIST_TOP_SCRIPT = r"""for d in "$@"; do
  for f in "$d"/*; do
    if [ -f "$f" ]; then printf '%s\t%s\n' "$(wc -c < "$f" | tr -d ' ')" "$f"; fi
  done
done
"""

# $1 = staged snapshot dir, $2 = live table dir, then "<staged name>=<live name>" per file. Never
# overwrites: each live name is first claimed by an exclusive create (noclobber); if one exists (exit 5)
# or a copy fails, the names this run claimed are removed again.
COPY_NEW_SCRIPT = r"""set -u
src=$1; dst=$2; shift 2
if [ ! -d "$dst" ]; then echo "table directory $dst does not exist" >&2; exit 4; fi
claimed=0; rc=0; conflict=""
set -C
for pair in "$@"; do
  if ! true 2>/dev/null > "$dst/${pair#*=}"; then rc=5; conflict=${pair#*=}; break; fi
  claimed=$((claimed + 1))
done
set +C
if [ "$rc" -eq 0 ]; then
  for pair in "$@"; do
    if ! cat "$src/${pair%%=*}" >| "$dst/${pair#*=}"; then rc=1; break; fi
  done
fi
if [ "$rc" -ne 0 ]; then
  n=0
  for pair in "$@"; do
    if [ "$n" -ge "$claimed" ]; then break; fi
    rm -f "$dst/${pair#*=}"
    n=$((n + 1))
  done
fi
if [ "$rc" -eq 5 ]; then echo "$conflict" >&2; fi
exit "$rc"
"""

# staged snapshot dirs: drop the non-SSTable files and the legacy secondary index dirs (.<index>/)
# before ``nodetool import``, which only looks at the top level and rebuilds indexes from the data.
PREPARE_IMPORT_SCRIPT = r"""for d in "$@"; do
  rm -f "$d/manifest.json" "$d/schema.cql"
  rm -rf "$d"/.[!.]* "$d"/..?*
done
"""


# ---- small helpers ------------------------------------------------------------------------------


def schema_hash(text: str) -> str:
    """sha256 of a ``DESCRIBE KEYSPACE`` text with blank lines and surrounding whitespace ignored."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def parse_version(text: str) -> str:
    """``ReleaseVersion: 4.1.3`` -> ``4.1.3``."""
    match = re.search(r"ReleaseVersion:\s*(\S+)", text)
    if not match:
        raise TransientError(f"cannot read the Cassandra version from 'nodetool version': {text.strip()[:200]!r}")
    return match.group(1)


def major_version(version: str) -> int:
    """``4.1.3`` -> 4."""
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def parse_cluster_name(text: str) -> str:
    """Cluster name from ``nodetool describecluster``."""
    match = re.search(r"^\s*Name:\s*(.+?)\s*$", text, re.MULTILINE)
    return match.group(1) if match else ""


def parse_node_info(text: str) -> dict[str, Any]:
    """Host id, data center, rack and sorted tokens from ``nodetool info --tokens``."""

    def field(name: str) -> str:
        match = re.search(rf"^{name}\s*:\s*(.+?)\s*$", text, re.MULTILINE)
        return match.group(1) if match else ""

    tokens = sorted(int(t) for t in re.findall(r"^Token\s*:\s*(-?\d+)\s*$", text, re.MULTILINE))
    if not tokens:
        raise TransientError("'nodetool info --tokens' printed no tokens; is the node up and joined?")
    return {
        "host_id": field("ID"),
        "dc": field("Data Center"),
        "rack": field("Rack"),
        "tokens": [str(t) for t in tokens],
    }


_REPLICATION_RE = re.compile(
    r"CREATE\s+KEYSPACE\s+(?:IF\s+NOT\s+EXISTS\s+)?\S+\s+WITH\s+replication\s*=\s*(\{[^}]*\})", re.IGNORECASE
)


def replication_of(cql: str) -> dict[str, str]:
    """The replication map of the ``CREATE KEYSPACE`` in ``cql`` (``{}`` if there is none)."""
    match = _REPLICATION_RE.search(cql)
    return dict(re.findall(r"'([^']+)'\s*:\s*'([^']*)'", match.group(1))) if match else {}


def partial_replicas(replication: dict[str, str], nodes_per_dc: Counter[str]) -> str:
    """Why not every node holds all of a keyspace's data (``""`` when each does: replication >= node count).

    Only then is a pod's snapshot whole on a node with other tokens than the backed-up pod's.
    """
    strategy = replication.get("class", "").rsplit(".", 1)[-1]

    def factor(value: str | None) -> int:
        return int((value or "0").split("/")[0] or 0)  # '3/1': 3 replicas, 1 of them transient

    if strategy == "SimpleStrategy":
        rf, nodes = factor(replication.get("replication_factor")), sum(nodes_per_dc.values())
        return "" if rf >= nodes else f"replication_factor {rf} < {nodes} nodes"
    if strategy == "NetworkTopologyStrategy":
        short = {dc: (factor(replication.get(dc)), n) for dc, n in sorted(nodes_per_dc.items())}
        return ", ".join(f"{dc}: {rf} < {n} nodes" for dc, (rf, n) in short.items() if rf < n)
    return f"replication class {strategy or 'unknown'}"


def tokens_digest(tokens: list[str]) -> str:
    """Short stable digest of a node's token list."""
    return hashlib.sha256(",".join(tokens).encode()).hexdigest()[:16]


def parse_table_ids(text: str) -> dict[str, str]:
    """``table_name | id`` rows of cqlsh output -> ``{table: uuid-without-dashes}``."""
    ids: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"^\s*(\w+)\s*\|\s*([0-9a-fA-F-]{36})\s*$", line)
        if match:
            ids[match.group(1)] = match.group(2).replace("-", "").lower()
    return ids


def parse_keyspaces(text: str) -> set[str]:
    """Names printed by ``DESCRIBE KEYSPACES``."""
    return set(re.findall(r"[A-Za-z0-9_]+", text))


def parse_listing(text: str) -> list[tuple[str, int]]:
    """Lines of ``<size><TAB><path>`` -> ``[(path, size)]``."""
    rows: list[tuple[str, int]] = []
    for line in text.splitlines():
        size, _, path = line.partition("\t")
        if path and size.strip().isdigit():
            rows.append((path.removeprefix("./"), int(size)))
    return rows


def component_of(filename: str) -> str:
    """SSTable component of a file name (``nb-12-big-Data.db`` -> ``Data.db``)."""
    return filename.rsplit("-", 1)[-1]


def parse_ring(text: str) -> list[dict[str, str]]:
    """Nodes of ``nodetool status`` (every data center): ``[{state, address, host_id}]``."""
    nodes: list[dict[str, str]] = []
    for line in text.splitlines():
        match = RING_LINE_RE.match(line.strip())
        if match:
            host = UUID_RE.search(line)
            nodes.append(
                {"state": match.group(1), "address": match.group(2), "host_id": host.group(0).lower() if host else ""}
            )
    return nodes


def parse_snapshot_tags(text: str) -> set[str]:
    """Snapshot names printed by ``nodetool listsnapshots`` (3.x and 4.x layouts)."""
    tags: set[str] = set()
    in_table = False
    for line in text.splitlines():
        fields = line.split()
        if line.strip().startswith("Snapshot name"):
            in_table = True
        elif in_table and fields and not line.strip().startswith("Total"):
            tags.add(fields[0])
        elif in_table and fields:
            in_table = False
    return tags


def is_stale_snapshot(tag: str, run_id: str, own_tag: str) -> bool:
    """Whether ``tag`` is a ``tdr-*`` snapshot left behind by an earlier backup than ``run_id``.

    That is one from an older run, an earlier attempt of this run, or one whose tag carries no run
    time. Backups of a tenant never overlap (Argo mutex), so no live backup owns such a snapshot.
    """
    if not tag.startswith(SNAPSHOT_PREFIX) or tag == own_tag:
        return False
    match = SNAPSHOT_TAG_RE.match(tag)
    return match is None or match.group(1) <= run_id.split("-", 1)[0].lower()


def refresh_names(backed_up: list[str], live: list[str]) -> dict[str, str]:
    """Backed-up SSTable file -> the name to copy it under into a live table dir, never a name in use.

    Cassandra's refresh skips an SSTable whose descriptor it has loaded already, so a backed-up
    ``mc-1-big-*`` copied over an ``mc-1-big-*`` flushed after TRUNCATE would never be loaded. Each
    backed-up SSTable (all its components alike) therefore gets a generation ``GENERATION_GAP`` above the
    highest live one; refresh then renames it to the node's next generation. A name without a numeric
    generation keeps its name (the copy refuses to overwrite it).
    """
    bad = [n for n in backed_up if not FILE_NAME_RE.match(n)]
    if bad:
        raise IntegrityError(f"backed-up SSTable file name(s) {', '.join(map(repr, bad[:3]))} are not supported")
    top = max((int(m.group(2)) for n in live if (m := SSTABLE_RE.match(n))), default=0)
    descriptors = sorted(
        {(m.group(1), int(m.group(2)), m.group(3)) for n in backed_up if (m := SSTABLE_RE.match(n))},
        key=lambda d: (d[1], d[0], d[2]),
    )
    generation = {d: top + GENERATION_GAP + i for i, d in enumerate(descriptors)}
    names: dict[str, str] = {}
    for name in backed_up:
        match = SSTABLE_RE.match(name)
        if match:
            version, gen, fmt, comp = match.group(1), int(match.group(2)), match.group(3), match.group(4)
            names[name] = f"{version}-{generation[version, gen, fmt]}-{fmt}-{comp}"
        else:
            names[name] = name
    return names


def _names(value: str | None, what: str) -> list[str]:
    names = [n.strip() for n in (value or "").split(",") if n.strip()]
    for name in names:
        if not NAME_RE.match(name):
            raise UsageError(f"{what} {name!r} is not a valid Cassandra name")
    return names


def parallel(fn: Callable[[T], R], items: Iterable[T], workers: int) -> list[R]:
    """``fn`` over ``items`` in threads; waits for all, then raises the first error (in item order)."""
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
        futures = [pool.submit(fn, item) for item in items]
        errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error
    return [f.result() for f in futures]


# ---- tar stream listing -------------------------------------------------------------------------


class TarLister:
    """Follows a tar byte stream as it passes by and records every member (path, size, type).

    Understands ustar/GNU headers, GNU long names and pax ``path`` records; enough for GNU and
    busybox ``tar cf``. ``finished`` is true once the end-of-archive blocks were seen.
    """

    def __init__(self) -> None:
        self.members: list[tuple[str, int, bytes]] = []
        self.finished = False
        self._buf = bytearray()
        self._skip = 0  # payload bytes (incl. padding) still to skip
        self._collect: tuple[bytes, int] | None = None  # (type, size) of a long-name / pax payload
        self._data = bytearray()
        self._next_name: str | None = None

    def feed(self, data: bytes) -> None:
        """Account for the next bytes of the stream."""
        if self.finished:
            return
        self._buf += data
        while not self.finished:
            if self._skip:
                take = min(self._skip, len(self._buf))
                if self._collect is not None:
                    self._data += self._buf[:take]
                del self._buf[:take]
                self._skip -= take
                if self._skip:
                    return
                if self._collect is not None:
                    self._finish_meta()
                continue
            if len(self._buf) < 512:
                return
            block = bytes(self._buf[:512])
            del self._buf[:512]
            if block == b"\0" * 512:
                self.finished = True
                return
            self._header(block)

    def _header(self, block: bytes) -> None:
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise IntegrityError(f"tar stream is malformed: {exc}") from exc
        kind = info.type
        padded = (info.size + 511) // 512 * 512
        if kind in (tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE):
            self._collect = (kind, info.size)
            self._data = bytearray()
            self._skip = padded
            if not padded:
                self._finish_meta()
            return
        if kind in (tarfile.GNUTYPE_LONGLINK, tarfile.XGLTYPE):
            self._skip = padded
            return
        name = self._next_name if self._next_name is not None else info.name
        self._next_name = None
        self.members.append((name.rstrip("/"), info.size, kind))
        self._skip = padded if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0

    def _finish_meta(self) -> None:
        assert self._collect is not None
        kind, size = self._collect
        payload = bytes(self._data[:size])
        self._collect = None
        if kind == tarfile.GNUTYPE_LONGNAME:
            self._next_name = payload.rstrip(b"\0").decode("utf-8", "surrogateescape")
            return
        for record in _pax_records(payload):
            key, _, value = record.partition(b"=")
            if key == b"path":
                self._next_name = value.decode("utf-8", "surrogateescape")

    def files(self) -> list[tuple[str, int]]:
        """Regular files as ``(path, size)``."""
        return [(n, s) for n, s, k in self.members if k in (tarfile.REGTYPE, tarfile.AREGTYPE)]


def _pax_records(payload: bytes) -> Iterator[bytes]:
    pos = 0
    while pos < len(payload):
        space = payload.find(b" ", pos)
        if space < 0:
            return
        length = int(payload[pos:space] or b"0")
        if length <= 0:
            return
        yield payload[space + 1 : pos + length].rstrip(b"\n")
        pos += length


def group_snapshot_files(files: list[tuple[str, int]], tag: str) -> dict[str, dict[str, Any]]:
    """Tar member files ``<table-dir>/snapshots/<tag>/<rel>`` -> ``{table: {dir, files: [[rel, size]]}}``."""
    tables: dict[str, dict[str, Any]] = {}
    marker = f"/snapshots/{tag}/"
    for path, size in files:
        table_dir, found, rel = path.partition(marker)
        match = TABLE_DIR_RE.match(table_dir)
        if not found or not match or not rel:
            raise IntegrityError(f"unexpected path {path!r} in a snapshot tar", hint="is --data-dir right?")
        entry = tables.setdefault(match.group(1), {"dir": table_dir, "files": []})
        if entry["dir"] != table_dir:
            raise IntegrityError(f"table {match.group(1)} has two directories ({entry['dir']}, {table_dir})")
        entry["files"].append([rel, size])
    for entry in tables.values():
        entry["files"].sort()
    return tables


# ---- streaming between an exec and the store ----------------------------------------------------


class _Cancelled(Exception):
    """The consumer went away; the producing exec must stop."""


class ExecPipe:
    """A bounded pipe: an exec thread puts stdout chunks, the uploader reads them.

    At the end the reader raises if the command failed, so the upload is aborted and nothing
    partial becomes visible in the store.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._q: queue.Queue[bytes | ExecResult | BaseException] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._buf = b""
        self._closed = threading.Event()
        self._done = False

    def put(self, item: bytes | ExecResult | BaseException) -> None:
        """Producer side; raises :class:`_Cancelled` once the reader has closed."""
        while not self._closed.is_set():
            try:
                self._q.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise _Cancelled(self.what)

    def close(self) -> None:
        """Reader side: stop accepting data (unblocks the producer)."""
        self._closed.set()

    def read(self, n: int = -1, /) -> bytes:
        """Blocking read of up to ``n`` bytes; ``b""`` only after the command ended successfully."""
        while not self._buf and not self._done:
            item = self._q.get()
            if isinstance(item, ExecResult):
                self._done = True
                item.check(self.what)
            elif isinstance(item, BaseException):
                self._done = True
                raise item
            else:
                self._buf = item
        if n is None or n < 0 or n >= len(self._buf):
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


# ---- the target cluster -------------------------------------------------------------------------


@dataclass
class Cluster:
    """How this step reaches the Cassandra pods of one tenant (the executor is opened on first use)."""

    open_executor: Callable[[], PodExecutor]
    namespace: str
    selector: str
    container: str | None
    data_dir: str
    keyspaces: list[str]
    username: str | None
    password: str | None
    parallel: int
    exec_timeout: float

    @functools.cached_property
    def executor(self) -> PodExecutor:
        """The pod executor (Kubernetes API or local), opened when a command first needs the pods."""
        return self.open_executor()

    def pods(self) -> list[Pod]:
        """The pods behind ``--selector``; none is a usage error, one not running is transient."""
        pods = self.executor.list_pods(self.namespace, self.selector)
        if not pods:
            raise UsageError(
                f"no pods match {self.selector!r} in namespace {self.namespace}",
                hint="check --namespace and --selector",
            )
        down = [f"{p.name} ({p.phase})" for p in pods if p.phase != "Running"]
        if down:
            raise TransientError(f"Cassandra pods are not running: {', '.join(down)}", hint="wait for the pods")
        return pods

    def nodetool(self, pod: Pod, *args: str) -> str:
        """Run ``nodetool args`` in ``pod`` and return its output."""
        return self.executor.capture(
            pod, self.container, ["nodetool", *args], what=f"nodetool {args[0]}", timeout=self.exec_timeout
        )

    def sh(self, pod: Pod, script: str, *args: str, what: str) -> str:
        """Run a fixed ``sh -c`` script with positional ``args`` in ``pod``."""
        return self.executor.capture(
            pod, self.container, ["sh", "-c", script, "tenant-dr", *args], what=what, timeout=self.exec_timeout
        )

    def cql(self, pod: Pod, statements: str, *, request_timeout: int | None = None) -> tuple[ExecResult, str]:
        """Run CQL through ``cqlsh -f`` in ``pod``; credentials only ever travel on stdin.

        ``request_timeout`` (seconds) replaces cqlsh's default of 10 s (``--request-timeout``).
        """
        data = statements.encode()
        head = f"{self.username or ''}\n{self.password or ''}\n".encode()
        chunks: list[bytes] = []
        timeout_arg = [str(request_timeout)] if request_timeout else []
        result = self.executor.exec(
            pod,
            self.container,
            ["sh", "-c", CQLSH_SCRIPT, "tenant-dr-cqlsh", str(len(data)), *timeout_arg],
            stdout=chunks.append,
            stdin=[head + data],
            timeout=self.exec_timeout,
        )
        if result.returncode != 0 and ("AuthenticationFailed" in result.stderr or "Bad credentials" in result.stderr):
            raise UsageError(
                f"cqlsh in pod {pod.name} was refused: authentication failed",
                hint="check CASSANDRA_USERNAME / CASSANDRA_PASSWORD (or --username-file / --password-file)",
            )
        return result, b"".join(chunks).decode("utf-8", "replace")

    def cql_output(self, pod: Pod, statements: str, *, what: str, request_timeout: int | None = None) -> str:
        """Like :meth:`cql` but fail on a non-zero exit; returns stdout."""
        result, out = self.cql(pod, statements, request_timeout=request_timeout)
        result.check(f"cqlsh ({what}) in pod {pod.name}")
        return out

    def keyspaces_present(self, pod: Pod) -> set[str]:
        """Keyspaces the cluster knows."""
        return parse_keyspaces(self.cql_output(pod, "DESCRIBE KEYSPACES;\n", what="describe keyspaces"))

    def describe(self, pod: Pod, keyspace: str) -> str:
        """``DESCRIBE KEYSPACE`` text; usage error if the keyspace does not exist."""
        result, out = self.cql(pod, f"DESCRIBE KEYSPACE {keyspace};\n")
        if result.returncode != 0 and "not found" in result.stderr:
            raise UsageError(
                f"keyspace {keyspace} does not exist in the Cassandra cluster ({self.namespace})",
                hint="check --keyspaces",
            )
        result.check(f"cqlsh DESCRIBE KEYSPACE {keyspace} in pod {pod.name}")
        if not out.strip():
            raise TransientError(f"cqlsh DESCRIBE KEYSPACE {keyspace} in pod {pod.name} printed nothing")
        return out.strip() + "\n"

    def table_ids(self, pod: Pod, keyspace: str) -> dict[str, str]:
        """``{table: id}`` of ``keyspace`` from ``system_schema.tables``."""
        text = self.cql_output(
            pod,
            f"SELECT table_name, id FROM system_schema.tables WHERE keyspace_name = '{keyspace}';\n",
            what=f"table ids of {keyspace}",
        )
        return parse_table_ids(text)


def cluster_options(fn: F) -> F:
    """Add the pod/executor/credential flags and pass ``cluster: Cluster``."""

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        spec, kubeconfig, context = kwargs.pop("executor"), kwargs.pop("kubeconfig"), kwargs.pop("kube_context")
        username = read_setting(
            what="the Cassandra username", env="CASSANDRA_USERNAME", file=kwargs.pop("username_file")
        )
        password = read_secret(
            what="Cassandra password", env="CASSANDRA_PASSWORD", file=kwargs.pop("password_file"), required=False
        )
        if username and not password:
            raise UsageError(
                "a Cassandra username is set but no password",
                hint="set CASSANDRA_PASSWORD (secretKeyRef) or pass --password-file",
            )
        parallel_pods = kwargs.pop("parallel")
        if parallel_pods < 1:
            raise UsageError("--parallel must be >= 1")
        kwargs["cluster"] = Cluster(
            open_executor=lambda: open_executor(spec, kubeconfig, context),
            namespace=kwargs.pop("namespace"),
            selector=kwargs.pop("selector"),
            container=kwargs.pop("container") or None,
            data_dir=kwargs.pop("data_dir").rstrip("/") or "/",
            keyspaces=_names(kwargs.pop("keyspaces"), "keyspace"),
            username=username,
            password=password,
            parallel=parallel_pods,
            exec_timeout=float(kwargs.pop("exec_timeout")),
        )
        return fn(**kwargs)

    options = [
        click.option("--namespace", envvar="TENANT_DR_CASSANDRA_NAMESPACE", default="atlas", show_default=True),
        click.option(
            "--selector",
            envvar="TENANT_DR_CASSANDRA_SELECTOR",
            default="app=cassandra",
            show_default=True,
            help="Label selector of the Cassandra pods.",
        ),
        click.option(
            "--keyspaces",
            envvar="TENANT_DR_CASSANDRA_KEYSPACES",
            default=None,
            help=f"Comma-separated keyspaces (backup default: {DEFAULT_KEYSPACES}; restore: all in the backup).",
        ),
        click.option("--container", envvar="TENANT_DR_CASSANDRA_CONTAINER", default="cassandra", show_default=True),
        click.option(
            "--data-dir",
            envvar="TENANT_DR_CASSANDRA_DATA_DIR",
            default=DEFAULT_DATA_DIR,
            show_default=True,
            help="Cassandra data directory inside the pod.",
        ),
        click.option(
            "--executor",
            envvar="TENANT_DR_EXECUTOR",
            default="kubernetes",
            show_default=True,
            help="'kubernetes' (pods/exec) or 'local:/path' (pods are directories; tests and drills).",
        ),
        click.option("--username-file", default=None, help="File with the CQL username (else env CASSANDRA_USERNAME)."),
        click.option("--password-file", default=None, help="File with the CQL password (else env CASSANDRA_PASSWORD)."),
        click.option("--parallel", type=int, default=4, show_default=True, help="Pods worked on at the same time."),
        click.option(
            "--exec-timeout",
            type=int,
            default=6 * 3600,
            show_default=True,
            help="Seconds one command in a pod (snapshot, tar) may take.",
        ),
    ]
    wrapped: Any = kube_options(wrapper)
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[no-any-return]


# ---- backup -------------------------------------------------------------------------------------


@dataclass
class PodKeyspace:
    """What one pod contributed for one keyspace."""

    pod: str
    keyspace: str
    record: ObjectRecord
    tables: dict[str, dict[str, Any]]


def _stream_keyspace(
    cluster: Cluster, catalog: Catalog, run_id: str, attempt: str, pod: Pod, keyspace: str, tag: str
) -> PodKeyspace:
    ks_dir = posixpath.join(cluster.data_dir, keyspace)
    listing = cluster.sh(pod, LIST_SNAPSHOTS_SCRIPT, ks_dir, tag, what=f"list snapshots of {keyspace}")
    dirs = sorted(line.strip() for line in listing.splitlines() if line.strip())
    if not dirs:
        raise UsageError(
            f"no snapshot directories for keyspace {keyspace} under {ks_dir} in pod {pod.name}",
            hint="check --data-dir (the Cassandra data directory in the pod) and that the keyspace has tables",
        )
    what = f"tar of {keyspace} in pod {pod.name}"
    pipe = ExecPipe(what)
    lister = TarLister()

    def consume(chunk: bytes) -> None:
        lister.feed(chunk)
        pipe.put(chunk)

    def produce() -> None:
        try:
            result = cluster.executor.exec(
                pod,
                cluster.container,
                ["tar", "cf", "-", "-C", ks_dir, *dirs],
                stdout=consume,
                timeout=cluster.exec_timeout,
            )
        except _Cancelled:
            return
        except BaseException as exc:
            result_or_error: ExecResult | BaseException = exc
        else:
            result_or_error = result
        try:
            pipe.put(result_or_error)
        except _Cancelled:
            return

    thread = threading.Thread(target=produce, name=f"tar-{pod.name}-{keyspace}", daemon=True)
    thread.start()
    try:
        with Progress(f"{pod.name}/{keyspace}") as progress:
            record = catalog.put_object(
                run_id,
                COMPONENT,
                attempt,
                f"{pod.name}/{keyspace}.tar.zst",
                pipe,
                progress=progress,
                meta={"kind": "sstables", "pod": pod.name, "keyspace": keyspace, "tag": tag},
            )
    finally:
        pipe.close()
        thread.join()
    if not lister.finished:
        raise IntegrityError(f"{what}: the stream ended before the end-of-archive marker")
    tables = group_snapshot_files(lister.files(), tag)
    get_logger().info(
        "pod keyspace stored",
        pod=pod.name,
        keyspace=keyspace,
        tables=len(tables),
        files=sum(len(t["files"]) for t in tables.values()),
        bytes=record.size,
    )
    return PodKeyspace(pod.name, keyspace, record, tables)


def _clear_snapshots(cluster: Cluster, pods: list[Pod], tag: str) -> list[str]:
    """``nodetool clearsnapshot -t tag`` on every pod; returns the pods where it failed."""

    def clear(pod: Pod) -> str | None:
        try:
            cluster.nodetool(pod, "clearsnapshot", "-t", tag, "--", *cluster.keyspaces)
        except StepError as exc:
            get_logger().error(
                "clearsnapshot failed; the snapshot stays on disk", pod=pod.name, tag=tag, error=str(exc)
            )
            return pod.name
        return None

    with ThreadPoolExecutor(max_workers=max(1, min(cluster.parallel, len(pods)))) as pool:
        return [name for name in pool.map(clear, pods) if name]


def _check_ring(cluster: Cluster, pods: list[Pod], infos: list[dict[str, Any]]) -> None:
    """The pods found are the whole ring: every node of ``nodetool status`` is UN and has one of them.

    A pod that is restarting (or Terminating, which the pod list leaves out) is missing from ``pods``;
    a backup without it would be incomplete, so that is a transient error and the retry waits for it.
    """
    ring = parse_ring(cluster.nodetool(pods[0], "status"))
    by_host = {str(info["host_id"]).lower(): pod.name for pod, info in zip(pods, infos, strict=True)}
    problems: list[str] = [] if ring else ["'nodetool status' listed no nodes"]
    for node in ring:
        name = by_host.get(node["host_id"])
        if name is None:
            host = node["host_id"] or "?"
            problems.append(f"node {node['address']} (host id {host}, {node['state']}) has no pod among those found")
        elif node["state"] != "UN":
            problems.append(f"node {node['address']} of pod {name} is {node['state']}, not UN")
    in_ring = {node["host_id"] for node in ring}
    problems += [
        f"pod {name} (host id {host}) is not in the ring" for host, name in by_host.items() if host not in in_ring
    ]
    if problems:
        raise TransientError(
            f"the Cassandra ring ({len(ring)} node(s)) does not match the {len(pods)} pod(s) found "
            f"({', '.join(p.name for p in pods)}): {'; '.join(problems)}",
            hint="a pod is restarting (the retry waits for it) or --selector does not select every node's pod; "
            "every node must be UN and have a pod",
        )


def _clear_stale_snapshots(cluster: Cluster, pods: list[Pod], run_id: str, tag: str) -> dict[str, list[str]]:
    """Clear the ``tdr-*`` snapshots earlier backups left on each pod (e.g. killed by SIGTERM); returns them."""

    def clear(pod: Pod) -> list[str]:
        tags = parse_snapshot_tags(cluster.nodetool(pod, "listsnapshots"))
        stale = sorted(t for t in tags if is_stale_snapshot(t, run_id, tag))
        if stale:
            get_logger().warning("clearing snapshots left by earlier backups", pod=pod.name, tags=stale)
        for old in stale:
            cluster.nodetool(pod, "clearsnapshot", "-t", old)
        return stale

    cleared = parallel(clear, pods, cluster.parallel)
    return {pod.name: tags for pod, tags in zip(pods, cleared, strict=True) if tags}


@action(cli)
@catalog_options
@run_id_option(help_text="Run id of this backup (YYYYMMDDTHHMMSSZ-xxxxxx); a new one if omitted.")
@cluster_options
def backup(catalog: Catalog, tenant: str, run_id: str | None, cluster: Cluster) -> dict[str, Any]:
    """Snapshot every pod, stream each pod's keyspace snapshot as tar.zst, record schema and tokens."""
    run_id = run_id or new_run_id()
    run_id_time(run_id)
    write_output("run-id", run_id)
    if catalog.has_manifest(run_id, COMPONENT):
        get_logger().info("cassandra backup of this run is already complete", run_id=run_id)
        return {"tenant": tenant, "run_id": run_id, "skipped": "already complete"}
    if not cluster.keyspaces:
        cluster.keyspaces = _names(DEFAULT_KEYSPACES, "keyspace")
    started = utcnow()
    log = get_logger()
    pods = cluster.pods()
    first = pods[0]
    version = parse_version(cluster.nodetool(first, "version"))
    cluster_name = parse_cluster_name(cluster.nodetool(first, "describecluster"))
    attempt = catalog.new_attempt()
    tag = f"{SNAPSHOT_PREFIX}{run_id.lower()}-{attempt}"
    infos = parallel(lambda p: parse_node_info(cluster.nodetool(p, "info", "--tokens")), pods, cluster.parallel)
    nodes = {p.name: info for p, info in zip(pods, infos, strict=True)}
    _check_ring(cluster, pods, infos)
    stale = _clear_stale_snapshots(cluster, pods, run_id, tag)

    objects: list[ObjectRecord] = []
    schema: dict[str, dict[str, str]] = {}
    for keyspace in cluster.keyspaces:
        text = cluster.describe(first, keyspace)
        record = catalog.put_small(
            run_id,
            COMPONENT,
            attempt,
            f"schema/{keyspace}.cql",
            text.encode(),
            {"kind": "schema", "keyspace": keyspace},
        )
        objects.append(record)
        schema[keyspace] = {"object": record.name, "hash": schema_hash(text)}

    log.info("snapshot", tag=tag, pods=[p.name for p in pods], keyspaces=cluster.keyspaces)
    uncleared: list[str] = []
    try:
        parallel(lambda p: cluster.nodetool(p, "snapshot", "-t", tag, "--", *cluster.keyspaces), pods, cluster.parallel)

        def stream_pod(pod: Pod) -> list[PodKeyspace]:
            return [_stream_keyspace(cluster, catalog, run_id, attempt, pod, ks, tag) for ks in cluster.keyspaces]

        per_pod = parallel(stream_pod, pods, cluster.parallel)
    finally:
        uncleared = _clear_snapshots(cluster, pods, tag)

    files: dict[str, dict[str, Any]] = {}
    tables_per_keyspace: dict[str, set[str]] = {ks: set() for ks in cluster.keyspaces}
    for parts in per_pod:
        for part in parts:
            objects.append(part.record)
            files.setdefault(part.pod, {})[part.keyspace] = part.tables
            tables_per_keyspace[part.keyspace].update(part.tables)
    token_record = catalog.put_small(
        run_id,
        COMPONENT,
        attempt,
        "tokenmap.json",
        (json.dumps(nodes, indent=2, sort_keys=True) + "\n").encode(),
        {"kind": "tokenmap"},
    )
    objects.append(token_record)
    file_count = sum(len(t["files"]) for pod in files.values() for ks in pod.values() for t in ks.values())
    raw_bytes = sum(s for pod in files.values() for ks in pod.values() for t in ks.values() for _, s in t["files"])
    manifest = ComponentManifest(
        tenant=tenant,
        run_id=run_id,
        component=COMPONENT,
        started_at=started,
        finished_at=utcnow(),
        objects=objects,
        source={"cassandra_version": version, "cluster_name": cluster_name, "namespace": cluster.namespace},
        fingerprints={
            "tables_per_keyspace": {ks: sorted(t) for ks, t in tables_per_keyspace.items()},
            "pods": len(pods),
            "files": file_count,
            "sstable_bytes": raw_bytes,
        },
        details={
            "tag": tag,
            "keyspaces": cluster.keyspaces,
            "pods": [p.name for p in pods],
            "data_dir": cluster.data_dir,
            "selector": cluster.selector,
            "schema": schema,
            "token_map": {
                name: {
                    "host_id": n["host_id"],
                    "dc": n["dc"],
                    "rack": n["rack"],
                    "tokens": len(n["tokens"]),
                    "tokens_sha256": tokens_digest(n["tokens"]),
                }
                for name, n in nodes.items()
            },
            "token_map_object": token_record.name,
            "files": files,
        },
    )
    written = catalog.write_manifest(manifest)
    result: dict[str, Any] = {
        "tenant": tenant,
        "run_id": run_id,
        "pods": [p.name for p in pods],
        "keyspaces": cluster.keyspaces,
        "tables": {ks: sorted(t) for ks, t in tables_per_keyspace.items()},
        "files": file_count,
        "bytes": manifest.total_bytes,
        "manifest_written": written,
    }
    if uncleared:
        result["snapshots_not_cleared"] = {"tag": tag, "pods": uncleared}
    if stale:
        result["stale_snapshots_cleared"] = stale
    return result


# ---- verify -------------------------------------------------------------------------------------


def _details(manifest: ComponentManifest) -> dict[str, Any]:
    details = manifest.details
    for key in ("tag", "keyspaces", "pods", "schema", "token_map", "files"):
        if key not in details:
            raise IntegrityError(f"cassandra manifest of run {manifest.run_id} lacks {key!r}", hint="use another run")
    return details


def _sstable_records(manifest: ComponentManifest, keyspaces: list[str]) -> list[ObjectRecord]:
    return [o for o in manifest.objects if o.meta.get("kind") == "sstables" and o.meta.get("keyspace") in keyspaces]


def _check_tar_listing(catalog: Catalog, manifest: ComponentManifest, record: ObjectRecord, tag: str) -> int:
    """Read one tar object (verifying checksums) and compare its members with the manifest's file lists."""
    lister = TarLister()
    for chunk in iter_verified(catalog.store, catalog.object_key(manifest, record), record):
        lister.feed(chunk)
    got = group_snapshot_files(lister.files(), tag)
    want = manifest.details["files"].get(record.meta["pod"], {}).get(record.meta["keyspace"])
    if not lister.finished or want is None or got != want:
        raise IntegrityError(
            f"{record.name}: the tar content does not match the manifest's file list",
            hint="the backup is damaged; use another run",
        )
    return sum(len(t["files"]) for t in got.values())


@action(cli, "verify")
@catalog_options
@run_id_option(default="latest")
@cluster_options
@click.option(
    "--live/--no-live",
    default=False,
    show_default=True,
    help="Also check the cluster: every backed-up table exists in its schema and holds data on every pod.",
)
def verify_backup(catalog: Catalog, tenant: str, run_id: str, cluster: Cluster, live: bool) -> dict[str, Any]:
    """Check every object of a backup (sha256, tar file lists); with --live also the restored cluster."""
    resolved = catalog.resolve(run_id, COMPONENT)
    manifest = catalog.read_manifest(resolved, COMPONENT)
    details = _details(manifest)
    wanted = cluster.keyspaces or list(details["keyspaces"])
    missing = sorted(set(wanted) - set(details["keyspaces"]))
    if missing:
        raise IntegrityError(f"run {resolved} has no backup of keyspace(s) {', '.join(missing)}")
    catalog.check_objects(manifest)
    files = 0
    for record in manifest.objects:
        if record.meta.get("kind") == "sstables":
            if record.meta.get("keyspace") in wanted:
                files += _check_tar_listing(catalog, manifest, record, details["tag"])
        elif record.meta.get("keyspace") in wanted or record.meta.get("kind") == "tokenmap":
            verify(catalog.store, catalog.object_key(manifest, record), record)
    write_output("run-id", resolved)
    result: dict[str, Any] = {
        "tenant": tenant,
        "run_id": resolved,
        "keyspaces": wanted,
        "files": files,
        "bytes": manifest.total_bytes,
    }
    if live:
        result["live"] = _live_check(cluster, details, wanted)
    return result


def _live_check(cluster: Cluster, details: dict[str, Any], keyspaces: list[str]) -> dict[str, int]:
    """Every backed-up table is in the cluster's schema and has data files on the matching pod.

    Cassandra compacts and renames files after loading, so a table passes when its files are exactly
    the backed-up ones or were rewritten; it fails when it has no data files though the backup had some.
    Returns the number of tables per outcome (``exact``, ``rewritten``).
    """
    pods = cluster.pods()
    mapping = _pod_mapping(list(details["pods"]), pods)
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    for ks in keyspaces:
        ids = cluster.table_ids(pods[0], ks)
        backed_up = sorted({t for bp in mapping for t in details["files"].get(bp, {}).get(ks, {})})
        problems += [f"{ks}.{t} is not in the schema" for t in backed_up if t not in ids]
        for backup_pod, pod in mapping.items():
            want: dict[str, dict[str, Any]] = details["files"].get(backup_pod, {}).get(ks, {})
            current = {t: f"{t}-{ids[t]}" for t in want if t in ids}
            if not current:
                continue
            listing = parse_listing(
                cluster.sh(
                    pod,
                    LIST_FILES_SCRIPT,
                    posixpath.join(cluster.data_dir, ks),
                    *current.values(),
                    what=f"list table files of {ks}",
                )
            )
            for table, directory in current.items():
                outcome = _post_load_check(pod, listing, directory, want[table])
                outcomes[outcome] += 1
                if outcome == "missing":
                    problems.append(f"{ks}.{table} has no data on pod {pod.name}")
    if problems:
        raise IntegrityError(
            f"the cluster does not hold the backed-up data: {'; '.join(problems[:8])}"
            + (f" and {len(problems) - 8} more" if len(problems) > 8 else ""),
            hint="restore Cassandra from this run (or check --namespace/--selector point at the target)",
        )
    return dict(sorted(outcomes.items()))


# ---- restore ------------------------------------------------------------------------------------


def _pod_mapping(backup_pods: list[str], pods: list[Pod]) -> dict[str, Pod]:
    """Backup pod name -> target pod (same names when possible, else by sorted order)."""
    if len(backup_pods) != len(pods):
        raise IntegrityError(
            f"the backup has {len(backup_pods)} Cassandra pods ({', '.join(backup_pods)}) but the target has "
            f"{len(pods)} ({', '.join(p.name for p in pods)})",
            hint="per-pod SSTable restore needs the same number of pods; scale the StatefulSet to match",
        )
    by_name = {p.name: p for p in pods}
    if set(by_name) == set(backup_pods):
        return {name: by_name[name] for name in backup_pods}
    return dict(zip(sorted(backup_pods), sorted(pods, key=lambda p: p.name), strict=True))


def _staging_root(cluster: Cluster, staging_dir: str | None, run_id: str) -> str:
    base = staging_dir or posixpath.join(posixpath.dirname(cluster.data_dir) or ".", "tenant-dr-restore")
    return posixpath.join(base.rstrip("/"), run_id)


@action(cli)
@catalog_options
@run_id_option(default="latest")
@cluster_options
@click.option("--force-schema", is_flag=True, default=False, help="Restore even if the target schema differs.")
@click.option(
    "--allow-token-change",
    is_flag=True,
    default=False,
    help="Restore even if a pod's tokens differ from the backup (safe only if every node holds all data).",
)
@click.option(
    "--load",
    "load_mode",
    type=click.Choice(["auto", "refresh", "import"]),
    default="auto",
    show_default=True,
    help="How SSTables are loaded: auto = import on Cassandra 4+, refresh before.",
)
@click.option("--staging-dir", default=None, help="Staging directory in the pod (default: next to --data-dir).")
@click.option(
    "--truncate-timeout",
    type=click.IntRange(min=1),
    default=DEFAULT_TRUNCATE_TIMEOUT,
    show_default=True,
    help="cqlsh --request-timeout (seconds) of each TRUNCATE; the server's truncate_request_timeout also applies.",
)
@confirm_option
def restore(
    catalog: Catalog,
    tenant: str,
    run_id: str,
    cluster: Cluster,
    force_schema: bool,
    allow_token_change: bool,
    load_mode: str,
    staging_dir: str | None,
    truncate_timeout: int,
    confirm: bool,
) -> dict[str, Any]:
    """Verify the backup, then (with --confirm) truncate and load each pod's SSTables back."""
    log = get_logger()
    resolved = catalog.resolve(run_id, COMPONENT)
    write_output("run-id", resolved)
    manifest = catalog.read_manifest(resolved, COMPONENT)
    details = _details(manifest)
    keyspaces = cluster.keyspaces or list(details["keyspaces"])
    missing = sorted(set(keyspaces) - set(details["keyspaces"]))
    if missing:
        raise IntegrityError(f"run {resolved} has no backup of keyspace(s) {', '.join(missing)}")
    tag = details["tag"]

    # 1. verify every object this restore uses, before touching anything
    catalog.check_objects(manifest)
    for record in manifest.objects:
        if record.meta.get("kind") == "sstables" and record.meta.get("keyspace") in keyspaces:
            _check_tar_listing(catalog, manifest, record, tag)
        elif record.meta.get("keyspace") in keyspaces:
            verify(catalog.store, catalog.object_key(manifest, record), record)
    log.info("backup verified", run_id=resolved, objects=len(manifest.objects))

    # 2. read the target and plan
    pods = cluster.pods()
    first = pods[0]
    infos = parallel(lambda p: parse_node_info(cluster.nodetool(p, "info", "--tokens")), pods, cluster.parallel)
    _check_ring(cluster, pods, infos)
    mapping = _pod_mapping(list(details["pods"]), pods)
    version = parse_version(cluster.nodetool(first, "version"))
    mode = load_mode if load_mode != "auto" else ("import" if major_version(version) >= 4 else "refresh")
    if mode == "import" and major_version(version) < 4:
        raise UsageError(f"nodetool import needs Cassandra 4.0+, the target runs {version}", hint="use --load refresh")
    digests = {p.name: tokens_digest(i["tokens"]) for p, i in zip(pods, infos, strict=True)}
    token_changes = sorted(
        f"{src}->{dst.name}"
        for src, dst in mapping.items()
        if details["token_map"].get(src, {}).get("tokens_sha256") != digests[dst.name]
    )
    present = cluster.keyspaces_present(first)
    schema_plan: dict[str, str] = {}
    schema_texts: dict[str, str] = {}
    replication: dict[str, dict[str, str]] = {}  # what each keyspace will have on the target
    for ks in keyspaces:
        record = manifest.object(details["schema"][ks]["object"])
        schema_texts[ks] = b"".join(iter_verified(catalog.store, catalog.object_key(manifest, record), record)).decode()
        if ks not in present:
            schema_plan[ks] = "create"
            replication[ks] = replication_of(schema_texts[ks])
            continue
        live = cluster.describe(first, ks)
        replication[ks] = replication_of(live)
        schema_plan[ks] = "same" if schema_hash(live) == details["schema"][ks]["hash"] else "different"
    nodes_per_dc = Counter(i["dc"] for i in infos)
    partial = {ks: why for ks in keyspaces if (why := partial_replicas(replication[ks], nodes_per_dc))}
    tables = {ks: sorted({t for pod in details["files"].values() for t in pod.get(ks, {})}) for ks in keyspaces}
    plan: dict[str, Any] = {
        "run_id": resolved,
        "keyspaces": keyspaces,
        "schema": schema_plan,
        "truncate": {ks: [f"{ks}.{t}" for t in names] for ks, names in tables.items()},
        "pods": {src: dst.name for src, dst in mapping.items()},
        "load": mode,
        "cassandra_version": version,
        "token_changes": token_changes,
        "every_node_holds_all_data": not partial,
    }
    result: dict[str, Any] = {"tenant": tenant, "run_id": resolved, "plan": plan, "dry_run": not confirm}
    different = [ks for ks, state in schema_plan.items() if state == "different"]
    if different and not force_schema:
        raise IntegrityError(
            f"the target schema of keyspace(s) {', '.join(different)} differs from the backup's",
            hint="restore needs the same schema; compare with the backup's schema/<ks>.cql or pass --force-schema",
        )
    if token_changes and partial and not allow_token_change:
        raise IntegrityError(
            f"pod tokens differ from the backup for {', '.join(token_changes)}, and not every node holds all data "
            f"of {'; '.join(f'{ks} ({why})' for ks, why in sorted(partial.items()))}: each pod's SSTables would "
            "land on a node that does not own all of their token ranges",
            hint="restore onto nodes started with the backup's tokens (initial_token from its tokenmap.json), or "
            "raise the replication to the node count; --allow-token-change forces it",
        )
    if token_changes:
        log.info(
            "pod tokens differ from the backup; every node holds all data, so each pod's SSTables are whole there",
            token_changes=token_changes,
            forced=bool(partial),
        )
    if not confirm:
        log.info("plan only (pass --confirm to truncate and load)", plan=plan)
        return result

    # 3. schema for missing keyspaces, then the current table directories
    for ks, state in schema_plan.items():
        if state == "create":
            log.info("applying schema", keyspace=ks)
            cluster.cql_output(first, schema_texts[ks], what=f"create keyspace {ks}")
            if schema_hash(cluster.describe(first, ks)) != details["schema"][ks]["hash"] and not force_schema:
                raise IntegrityError(
                    f"keyspace {ks} was created from the backup's schema but now describes differently",
                    hint="the target Cassandra version formats the schema differently; check it and use --force-schema",
                )
    current: dict[str, dict[str, str]] = {}
    for ks in keyspaces:
        ids = cluster.table_ids(first, ks)
        absent = [t for t in tables[ks] if t not in ids]
        if absent:
            raise IntegrityError(
                f"table(s) {', '.join(f'{ks}.{t}' for t in absent)} do not exist in the target",
                hint="the schema differs from the backup's; create them or restore the schema first",
            )
        current[ks] = {t: f"{t}-{ids[t]}" for t in tables[ks]}

    # 4. stage every pod's tar in the pod and check what landed
    staging = _staging_root(cluster, staging_dir, resolved)
    by_key = {(r.meta["pod"], r.meta["keyspace"]): r for r in _sstable_records(manifest, keyspaces)}

    def stage(src: str) -> int:
        pod = mapping[src]
        ks_stages = [posixpath.join(staging, ks) for ks in keyspaces]
        cluster.sh(pod, 'rm -rf "$1" && mkdir -p "$@"', staging, *ks_stages, what="prepare staging dir")
        count = 0
        for ks, ks_stage in zip(keyspaces, ks_stages, strict=True):
            record = by_key.get((src, ks))
            want = details["files"].get(src, {}).get(ks, {})
            if record is None:
                raise IntegrityError(f"the backup has no {ks} object for pod {src}")
            chunks = iter_verified(catalog.store, catalog.object_key(manifest, record), record)
            cluster.executor.exec(
                pod, cluster.container, ["tar", "xf", "-", "-C", ks_stage], stdin=chunks, timeout=cluster.exec_timeout
            ).check(f"tar xf of {ks} in pod {pod.name}")
            dirs = [f"{t['dir']}/snapshots/{tag}" for t in want.values()]
            if not dirs:
                continue
            listing = parse_listing(cluster.sh(pod, LIST_FILES_SCRIPT, ks_stage, *dirs, what="list staged files"))
            if group_snapshot_files(listing, tag) != want:
                raise IntegrityError(
                    f"staged files of {ks} in pod {pod.name} differ from the backup's file list",
                    hint="the pod's disk may be full; check the staging dir " + ks_stage,
                )
            if mode == "import":
                staged_dirs = [posixpath.join(ks_stage, d) for d in dirs]
                cluster.sh(pod, PREPARE_IMPORT_SCRIPT, *staged_dirs, what="prepare import")
            count += sum(len(t["files"]) for t in want.values())
        return count

    try:
        staged = parallel(stage, list(mapping), cluster.parallel)
        log.info("staged", files=sum(staged))

        # 5. truncate (cluster-wide, once) then load every table on every pod, whatever fails on the way
        for ks in keyspaces:
            for table in tables[ks]:
                log.info("truncate", table=f"{ks}.{table}")
                cluster.cql_output(
                    first,
                    f"TRUNCATE {ks}.{table};\n",
                    what=f"truncate {ks}.{table}",
                    request_timeout=truncate_timeout,
                )

        def load(src: str) -> tuple[dict[str, str], dict[str, StepError]]:
            pod = mapping[src]
            checks: dict[str, str] = {}
            failures: dict[str, StepError] = {}
            for ks in keyspaces:
                want = details["files"].get(src, {}).get(ks, {})
                for table in sorted(want):
                    name = f"{pod.name}:{ks}.{table}"
                    live_dir = posixpath.join(cluster.data_dir, ks, current[ks][table])
                    snap = posixpath.join(staging, ks, want[table]["dir"], "snapshots", tag)
                    try:
                        checks[name] = _load_table(cluster, pod, ks, table, want[table], live_dir, snap, mode)
                    except StepError as exc:
                        log.error("loading a table failed; going on with the others", table=name, error=str(exc))
                        failures[name] = exc
            return checks, failures

        loaded = parallel(load, list(mapping), cluster.parallel)
    finally:
        _remove_staging(cluster, list(mapping.values()), staging)
    checks = {k: v for c, _ in loaded for k, v in c.items()}
    failed = {k: e for _, f in loaded for k, e in f.items()}
    failed.update(
        {
            k: IntegrityError("it holds no SSTables after loading although the backup had some")
            for k, v in checks.items()
            if v == "missing"
        }
    )
    if failed:
        raise _load_failure(failed, total=len(set(checks) | set(failed)))
    result.update(
        {
            "staged_files": sum(staged),
            "post_load": checks,
            "tables": {ks: len(names) for ks, names in tables.items()},
        }
    )
    return result


def _remove_staging(cluster: Cluster, pods: list[Pod], staging: str) -> None:
    """Best effort: delete the staging dir on every pod (a failure is logged, never masks the real error)."""

    def remove(pod: Pod) -> None:
        try:
            cluster.sh(pod, 'rm -rf "$1"', staging, what="remove staging dir")
        except StepError as exc:
            get_logger().warning("could not remove the staging dir", pod=pod.name, dir=staging, error=str(exc))

    parallel(remove, pods, cluster.parallel)


def _load_failure(failed: dict[str, StepError], total: int) -> StepError:
    """One error naming every table that failed to load (``pod:ks.table``); its class is the worst exit code."""
    worst = max(e.exit_code for e in failed.values())
    cls: type[StepError] = {3: IntegrityError, 2: UsageError}.get(int(worst), TransientError)
    items = [f"{name}: {failed[name].message}" for name in sorted(failed)]
    more = f"; and {len(items) - 8} more" if len(items) > 8 else ""
    return cls(
        f"loading failed for {len(failed)} of {total} table(s) (the others were loaded): {'; '.join(items[:8])}{more}",
        hint="every backed-up table was truncated; see the Cassandra log of those pods, fix the cause and run the "
        "restore again (it stages, truncates and loads everything again)",
    )


def _list_top(cluster: Cluster, pod: Pod, *dirs: str) -> list[tuple[str, int]]:
    """``(path, size)`` of the files directly in ``dirs`` on ``pod``."""
    return parse_listing(cluster.sh(pod, LIST_TOP_SCRIPT, *dirs, what="list SSTables"))


def _load_table(
    cluster: Cluster, pod: Pod, ks: str, table: str, entry: dict[str, Any], live_dir: str, snap: str, mode: str
) -> str:
    """Load one table's staged SSTables on ``pod`` and check Cassandra took every one; the post-load outcome.

    ``refresh``: copy the SSTables (not the index dirs: refresh rebuilds indexes) into ``live_dir`` under
    unused generations, ``nodetool refresh``, then none of the copied names may remain (Cassandra renames
    each SSTable it loads; one it skipped or could not read stays). ``import``: ``nodetool import`` of the
    staged dir, after which no ``-Data.db`` may remain directly in it.
    """
    what = f"{ks}.{table} on pod {pod.name}"
    if mode == "refresh":
        backed_up = [rel for rel, _ in entry["files"] if "/" not in rel and rel not in NON_SSTABLE_FILES]
        names = refresh_names(backed_up, [posixpath.basename(p) for p, _ in _list_top(cluster, pod, live_dir)])
        if names:
            pairs = [f"{src}={dst}" for src, dst in sorted(names.items())]
            result = cluster.executor.exec(
                pod,
                cluster.container,
                ["sh", "-c", COPY_NEW_SCRIPT, "tenant-dr", snap, live_dir, *pairs],
                timeout=cluster.exec_timeout,
            )
            if result.returncode == COPY_CONFLICT:
                raise IntegrityError(
                    f"{what}: {posixpath.join(live_dir, result.stderr.strip().splitlines()[-1])} appeared while "
                    "copying; not overwriting it",
                    hint="something writes SSTables into the table during the restore; stop the writers",
                )
            result.check(f"copy of {what}")
        cluster.nodetool(pod, "refresh", "--", ks, table)
        listing = _list_top(cluster, pod, live_dir)
        left = sorted(set(names.values()) & {posixpath.basename(p) for p, _ in listing})
        if left:
            raise IntegrityError(
                f"{what}: nodetool refresh did not load {len(left)} copied file(s) ({', '.join(left[:4])})",
                hint="Cassandra skips SSTables it has loaded already or cannot read; see the Cassandra log of that pod",
            )
    else:
        cluster.nodetool(pod, "import", "--", ks, table, snap)
        listing = _list_top(cluster, pod, snap, live_dir)
        left = sorted(
            posixpath.basename(p) for p, _ in listing if posixpath.dirname(p) == snap and p.endswith("-Data.db")
        )
        if left:
            raise IntegrityError(
                f"{what}: nodetool import left {len(left)} SSTable(s) unimported ({', '.join(left[:4])})",
                hint="see the Cassandra log of that pod (token ownership? a corrupt SSTable?)",
            )
    return _post_load_check(pod, listing, live_dir, entry)


def _post_load_check(pod: Pod, listing: list[tuple[str, int]], table_dir: str, entry: dict[str, Any]) -> str:
    """Compare a live table dir with the backup: ``exact``, ``rewritten`` (compaction/renames) or ``missing``."""
    live = Counter(
        (component_of(posixpath.basename(p)), size)
        for p, size in listing
        if posixpath.dirname(p) == table_dir and posixpath.basename(p) not in NON_SSTABLE_FILES
    )
    backed_up = Counter(
        (component_of(rel), size) for rel, size in entry["files"] if "/" not in rel and rel not in NON_SSTABLE_FILES
    )
    if not (backed_up - live):
        return "exact"
    if not any(c == "Data.db" for c, _ in live) and any(c == "Data.db" for c, _ in backed_up):
        return "missing"
    get_logger().warning("table files differ from the backup after loading", pod=pod.name, table=table_dir)
    return "rewritten"


if __name__ == "__main__":
    from steps.runtime import run

    run(cli)
