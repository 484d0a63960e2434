"""A local stand-in for a Cassandra StatefulSet, for ``steps.podexec.LocalExecutor``.

Layout (``root`` is what ``--executor local:<root>`` points at)::

    root/<namespace>/_cluster/state.json        cluster-wide state: version, auth, keyspaces, tables + ids
    root/<namespace>/_cluster/cql.log            every CQL statement cqlsh ran (one JSON line each)
    root/<namespace>/_cluster/cqlsh.log          argv and statements of every cqlsh run (one JSON line each)
    root/<namespace>/<pod>/labels.json           pod labels (the executor selects pods by them)
    root/<namespace>/<pod>/node.json             host id, tokens, ring status (``UN`` unless changed)
    root/<namespace>/<pod>/sstables.json         what the node has loaded: per table (and index) dir the
                                                 last generation and the loaded SSTable descriptors
    root/<namespace>/<pod>/bin/{nodetool,cqlsh}  stand-in tools (Python scripts calling into this module)
    root/<namespace>/<pod>/data/<ks>/<table>-<uuid>/  SSTables, .<index>/ (legacy 2i), snapshots/<tag>/ ...
    root/<namespace>/<pod>/nodetool.log          every nodetool argv (one JSON line each)

The step runs with ``--data-dir data`` (relative: commands run in the pod directory). The tools keep
state like the server would:
- a node tracks the SSTables it has loaded and a generation counter per table; flushes (``write_sstables``)
  take the next generation; files merely present in a table dir are not loaded;
- ``snapshot`` hard-links the loaded SSTables into ``snapshots/<tag>/`` and a legacy secondary index's
  into ``snapshots/<tag>/.<index>/``, with a ``manifest.json`` and ``schema.cql``;
- ``refresh`` (loadNewSSTables) skips descriptors already loaded and renames each new SSTable to the
  next free generation before loading it; ``import`` (4.x) moves the SSTables at the top level of its
  directory in under new generations (index dirs below it are ignored); both rebuild the indexes from
  the loaded base SSTables;
- ``TRUNCATE`` removes the table's and its indexes' SSTables on every pod (generations go on); it can be
  made to outlast cqlsh's ``--request-timeout`` (default 10 s) and to be followed by an app write;
- ``status`` prints every node of the ring with its host id; ``listsnapshots`` every snapshot;
- ``CREATE TABLE`` creates a fresh table id and directory on every pod; cqlsh checks the credentials of
  its ``--cqlshrc`` file.
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import hashlib
import json
import os
import random
import re
import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = ("Data.db", "Index.db", "Summary.db", "Filter.db", "Statistics.db", "Digest.crc32", "TOC.txt")
SYSTEM_KEYSPACES = ("system", "system_auth", "system_distributed", "system_schema", "system_traces")
DEFAULT_REPLICATION = "{'class': 'SimpleStrategy', 'replication_factor': '3'}"
DESCRIPTOR_RE = re.compile(r"^([a-z]{2})-(\d+)-big-(.+)$")
INDEX_MARK = "2i-of:"  # an index SSTable's Data.db names the digest of the base Data.db it indexes
CQLSH_DEFAULT_REQUEST_TIMEOUT = 10.0


# ---- shared state helpers (used by the tools and by tests) --------------------------------------


def _load(cluster_dir: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((cluster_dir / "state.json").read_text())
    return state


def _save(cluster_dir: Path, state: dict[str, Any]) -> None:
    tmp = cluster_dir / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(cluster_dir / "state.json")


def _log(path: Path, entry: Any) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")


def describe_keyspace(state: dict[str, Any], ks: str) -> str:
    """What ``DESCRIBE KEYSPACE ks`` prints (no table ids, like real cqlsh)."""
    spec = state["keyspaces"][ks]
    out = [f"\nCREATE KEYSPACE {ks} WITH replication = {spec['replication']}  AND durable_writes = true;\n"]
    for table in sorted(spec["tables"]):
        cols = spec["tables"][table]["columns"]
        out.append(f"CREATE TABLE {ks}.{table} (\n    {cols}\n) WITH comment = '';\n")
        for index, column in sorted(spec["tables"][table].get("indexes", {}).items()):
            out.append(f"CREATE INDEX {index} ON {ks}.{table} ({column});\n")
    return "\n".join(out)


def table_dir_name(table: str, table_id: str) -> str:
    """``<table>-<id without dashes>`` as Cassandra names table directories."""
    return f"{table}-{table_id.replace('-', '')}"


def _descriptors(directory: Path) -> dict[str, list[Path]]:
    """SSTables directly in ``directory``: descriptor (``mc-3-big``) -> its component files."""
    groups: dict[str, list[Path]] = {}
    if directory.is_dir():
        for f in sorted(directory.iterdir()):
            m = DESCRIPTOR_RE.match(f.name)
            if f.is_file() and m:
                groups.setdefault(f"{m.group(1)}-{m.group(2)}-big", []).append(f)
    return groups


def _generation(descriptor: str) -> int:
    return int(descriptor.split("-")[1])


def _prefix(version: str) -> str:
    """SSTable format version of new files: ``nb`` on 4.x, ``mc`` before."""
    return "nb" if int(version.split(".", 1)[0]) >= 4 else "mc"


def _index_dirs(live: Path) -> list[Path]:
    """The ``.<index>`` directories of a table directory (legacy secondary indexes)."""
    return sorted(d for d in live.iterdir() if d.is_dir() and d.name.startswith("."))


@contextlib.contextmanager
def _node(pod_dir: Path) -> Iterator[dict[str, Any]]:
    """The node's loaded-SSTable state (``sstables.json``), locked while in use and saved after."""
    with open(pod_dir / "sstables.lock", "a+", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = pod_dir / "sstables.json"
        node: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        yield node
        tmp = pod_dir / "sstables.json.tmp"
        tmp.write_text(json.dumps(node, indent=1, sort_keys=True))
        tmp.replace(path)


def _store(node: dict[str, Any], data: Path, cfs_dir: Path) -> dict[str, Any]:
    """State of one table or index directory; the first look loads what is on disk (like a node start)."""
    key = cfs_dir.relative_to(data).as_posix()
    if key not in node:
        on_disk = _descriptors(cfs_dir)
        node[key] = {"generation": max((_generation(d) for d in on_disk), default=0), "loaded": sorted(on_disk)}
    entry: dict[str, Any] = node[key]
    return entry


def _next_descriptor(entry: dict[str, Any], directory: Path, prefix: str) -> str:
    """The next generation's descriptor, skipping names taken on disk (as loadNewSSTables does)."""
    while True:
        entry["generation"] += 1
        name = f"{prefix}-{entry['generation']}-big"
        if not (directory / f"{name}-Data.db").exists():
            return name


def _build_indexes(node: dict[str, Any], data: Path, live: Path, prefix: str, descriptors: list[str]) -> None:
    """Index the given loaded base SSTables in every ``.<index>`` dir of the table."""
    for idx in _index_dirs(live):
        _build_indexes_in(node, data, live, idx, prefix, descriptors)


def _build_indexes_in(
    node: dict[str, Any], data: Path, live: Path, idx: Path, prefix: str, descriptors: list[str]
) -> None:
    """One index SSTable per base SSTable in ``idx``; its Data.db names the digest of the base Data.db."""
    entry = _store(node, data, idx)
    for desc in descriptors:
        digest = hashlib.sha256((live / f"{desc}-Data.db").read_bytes()).hexdigest()
        name = _next_descriptor(entry, idx, prefix)
        for comp in COMPONENTS:
            (idx / f"{name}-{comp}").write_bytes(f"{INDEX_MARK}{digest}:{comp}".encode())
        entry["loaded"].append(name)


def _flush(node: dict[str, Any], data: Path, live: Path, prefix: str, rng: random.Random, size: int) -> str:
    """A memtable flush: one new loaded SSTable in ``live`` (random content), indexed."""
    entry = _store(node, data, live)
    name = _next_descriptor(entry, live, prefix)
    for comp in COMPONENTS:
        n = size if comp == "Data.db" else max(16, size // 20)
        (live / f"{name}-{comp}").write_bytes(rng.randbytes(n + rng.randint(0, 999)))
    entry["loaded"].append(name)
    _build_indexes(node, data, live, prefix, [name])
    return name


def _load_new(node: dict[str, Any], data: Path, live: Path, prefix: str, sources: dict[str, list[Path]]) -> None:
    """Rename each SSTable of ``sources`` to the next free generation in ``live``, load and index it."""
    entry = _store(node, data, live)
    loaded: list[str] = []
    for desc, files in sorted(sources.items(), key=lambda kv: _generation(kv[0])):
        name = _next_descriptor(entry, live, desc.split("-")[0])
        for f in files:
            shutil.move(str(f), live / (name + f.name[len(desc) :]))
        entry["loaded"].append(name)
        loaded.append(name)
    _build_indexes(node, data, live, prefix, loaded)


# ---- nodetool -----------------------------------------------------------------------------------


def nodetool_main(cluster_dir: Path, argv: list[str]) -> int:
    """The stand-in ``nodetool``."""
    pod = os.environ["POD_NAME"]
    pod_dir = cluster_dir.parent / pod
    _log(pod_dir / "nodetool.log", argv)
    state = _load(cluster_dir)
    node = json.loads((pod_dir / "node.json").read_text())
    data = pod_dir / "data"
    if not argv:
        print("usage: nodetool <command>", file=sys.stderr)
        return 1
    cmd, args = argv[0], [a for a in argv[1:] if a != "--"]
    if cmd == "version":
        print(f"ReleaseVersion: {state['version']}")
        return 0
    if cmd == "describecluster":
        print(f"Cluster Information:\n\tName: {state['cluster_name']}\n\tSnitch: SimpleSnitch")
        print("\tPartitioner: org.apache.cassandra.dht.Murmur3Partitioner")
        return 0
    if cmd == "status":
        print("Datacenter: dc1\n===============\nStatus=Up/Down\n|/ State=Normal/Leaving/Joining/Moving")
        print("--  Address    Load       Tokens  Owns (effective)  Host ID                               Rack")
        for i, name in enumerate(state["pods"]):
            peer = json.loads((cluster_dir.parent / name / "node.json").read_text())
            status = peer.get("status", "UN")
            load = "?" if status.startswith("D") else "100.5 KiB"
            tokens = len(peer["tokens"])
            print(f"{status}  10.0.0.{i + 1}   {load:<9}  {tokens:<6}  {'?':<16}  {peer['host_id']}  rack1")
        return 0
    if cmd == "info" and ("--tokens" in args or "-T" in args):
        print(f"ID                     : {node['host_id']}\nGossip active          : true")
        print("Data Center            : dc1\nRack                   : rack1")
        for token in node["tokens"]:
            print(f"Token                  : {token}")
        return 0
    if cmd == "listsnapshots":
        return _list_snapshots(data)
    if cmd in ("snapshot", "clearsnapshot"):
        tag = args[args.index("-t") + 1] if "-t" in args else None
        keyspaces = [a for i, a in enumerate(args) if a != "-t" and (i == 0 or args[i - 1] != "-t")]
        keyspaces = keyspaces or sorted(state["keyspaces"])
        if cmd == "snapshot":
            return _snapshot(state, pod_dir, tag or "auto", keyspaces)
        for ks in keyspaces:
            for snaps in (data / ks).glob("*/snapshots"):
                for snap in list(snaps.iterdir()):
                    if tag is None or snap.name == tag:
                        shutil.rmtree(snap)
        return 0
    if cmd in ("refresh", "import"):
        if cmd == "import" and int(state["version"].split(".")[0]) < 4:
            print("nodetool: Found unexpected parameters: [import]", file=sys.stderr)
            return 1
        ks, table = args[0], args[1]
        spec = state["keyspaces"].get(ks, {}).get("tables", {}).get(table)
        if spec is None:
            print(f"nodetool: Unknown keyspace/cf pair ({ks}.{table})", file=sys.stderr)
            return 1
        live = data / ks / table_dir_name(table, spec["id"])
        with _node(pod_dir) as loaded:
            if cmd == "refresh":  # loadNewSSTables: what is in the table dir and not loaded yet
                done = set(_store(loaded, data, live)["loaded"])
                new = {d: files for d, files in _descriptors(live).items() if d not in done}
            else:  # import: the SSTables directly in the given dir (subdirectories are not looked at)
                src = Path(args[2])
                if not src.is_dir():
                    print(f"nodetool: Directory {src} does not exist", file=sys.stderr)
                    return 1
                new = _descriptors(src)
            _load_new(loaded, data, live, _prefix(state["version"]), new)
        return 0
    print(f"nodetool: unknown command {cmd}", file=sys.stderr)
    return 1


def _snapshot(state: dict[str, Any], pod_dir: Path, tag: str, keyspaces: list[str]) -> int:
    print(f"Requested creating snapshot(s) for [{', '.join(keyspaces)}] with snapshot name [{tag}]")
    data = pod_dir / "data"
    with _node(pod_dir) as node:
        for ks in keyspaces:
            if ks not in state["keyspaces"]:
                print(f"error: Keyspace {ks} does not exist", file=sys.stderr)
                return 2
            for table, spec in state["keyspaces"][ks]["tables"].items():
                live = data / ks / table_dir_name(table, spec["id"])
                snap = live / "snapshots" / tag
                if snap.exists():
                    print(f"error: Snapshot {tag} already exists.", file=sys.stderr)
                    return 2
                snap.mkdir(parents=True)
                # the loaded SSTables of the table, and of each index under snapshots/<tag>/.<index>/
                for store_dir, target in [(live, snap), *((idx, snap / idx.name) for idx in _index_dirs(live))]:
                    on_disk = _descriptors(store_dir)
                    for desc in _store(node, data, store_dir)["loaded"]:
                        for f in on_disk.get(desc, []):
                            target.mkdir(exist_ok=True)
                            os.link(f, target / f.name)
                files = sorted(f.name for f in snap.iterdir() if f.is_file())
                (snap / "manifest.json").write_text(json.dumps({"files": files}))
                (snap / "schema.cql").write_text(f"CREATE TABLE IF NOT EXISTS {ks}.{table} ({spec['columns']});\n")
    print("Snapshot directory: " + tag)
    return 0


def _list_snapshots(data: Path) -> int:
    """``nodetool listsnapshots`` as 3.11/4.x print it."""
    snaps = sorted(data.glob("*/*/snapshots/*"))
    print("Snapshot Details: ")
    if not snaps:
        print("There are no snapshots")
        return 0
    print(f"{'Snapshot name':<40} {'Keyspace name':<14} {'Column family name':<19} {'True size':<10} Size on disk")
    for snap in snaps:
        size = sum(f.stat().st_size for f in snap.rglob("*") if f.is_file())
        table = snap.parents[1].name.rsplit("-", 1)[0]
        print(f"{snap.name:<40} {snap.parents[2].name:<14} {table:<19} {'0 bytes':<10} {size} bytes")
    print("\nTotal TrueDiskSpaceUsed: 0 bytes\n")
    return 0


# ---- cqlsh --------------------------------------------------------------------------------------


def cqlsh_main(cluster_dir: Path, argv: list[str]) -> int:
    """The stand-in ``cqlsh`` (``--cqlshrc FILE -f FILE`` or ``-e STATEMENTS``)."""
    state = _load(cluster_dir)
    rc_file = argv[argv.index("--cqlshrc") + 1] if "--cqlshrc" in argv else None
    if "-u" in argv or "-p" in argv or "--password" in argv:
        print("tenant-dr must not put credentials in argv", file=sys.stderr)
        return 99
    auth = state.get("auth")
    if auth:
        parser = configparser.RawConfigParser()
        if rc_file:
            parser.read(rc_file)
        user = parser.get("authentication", "username", fallback=None)
        password = parser.get("authentication", "password", fallback=None)
        if (user, password) != (auth["username"], auth["password"]):
            print(
                "Connection error: ('Unable to connect to any servers', {'127.0.0.1:9042': "
                "AuthenticationFailed('Failed to authenticate: Provided username and/or password are incorrect')})",
                file=sys.stderr,
            )
            return 1
    timeout = CQLSH_DEFAULT_REQUEST_TIMEOUT
    for i, arg in enumerate(argv):
        if arg == "--request-timeout" or arg.startswith("--request-timeout="):
            value = arg.partition("=")[2] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            try:
                timeout = float(value)
            except ValueError:
                print(f"cqlsh: error: bad request timeout {value!r}", file=sys.stderr)
                return 2
    if "-f" in argv:
        text = Path(argv[argv.index("-f") + 1]).read_text()
    elif "-e" in argv:
        text = argv[argv.index("-e") + 1]
    else:
        print("interactive cqlsh is not supported here", file=sys.stderr)
        return 1
    statements = [" ".join(raw.split()) for raw in text.split(";") if raw.strip()]
    _log(cluster_dir / "cqlsh.log", {"argv": argv, "statements": statements})
    for stmt in statements:
        _log(cluster_dir / "cql.log", stmt)
        code = _statement(cluster_dir, state, stmt, timeout)
        if code:
            _save(cluster_dir, state)
            return code
    _save(cluster_dir, state)
    return 0


def _statement(cluster_dir: Path, state: dict[str, Any], stmt: str, timeout: float) -> int:
    upper = stmt.upper()
    if upper in ("DESCRIBE KEYSPACES", "DESC KEYSPACES"):
        print("\n" + "  ".join([*SYSTEM_KEYSPACES, *sorted(state["keyspaces"])]) + "\n")
        return 0
    m = re.match(r"^DESC(?:RIBE)? KEYSPACE (\w+)$", stmt, re.IGNORECASE)
    if m:
        if m.group(1) not in state["keyspaces"]:
            print(f"'{m.group(1)}' not found in keyspaces", file=sys.stderr)
            return 2
        print(describe_keyspace(state, m.group(1)))
        return 0
    m = re.match(r"^SELECT table_name, id FROM system_schema.tables WHERE keyspace_name = '(\w+)'$", stmt)
    if m:
        tables = state["keyspaces"].get(m.group(1), {}).get("tables", {})
        print("\n table_name | id\n------------+--------------------------------------")
        for name, spec in sorted(tables.items()):
            print(f" {name} | {spec['id']}")
        print(f"\n({len(tables)} rows)")
        return 0
    m = re.match(r"^TRUNCATE (?:TABLE )?(\w+)\.(\w+)$", stmt, re.IGNORECASE)
    if m:
        ks, table = m.groups()
        spec = state["keyspaces"].get(ks, {}).get("tables", {}).get(table)
        if spec is None:
            print(f"InvalidRequest: unconfigured table {table}", file=sys.stderr)
            return 2
        for pod in state["pods"]:
            pod_dir = cluster_dir.parent / pod
            data = pod_dir / "data"
            live = data / ks / table_dir_name(table, spec["id"])
            with _node(pod_dir) as node:
                for store_dir in [live, *_index_dirs(live)]:
                    for f in store_dir.iterdir():
                        if f.is_file():
                            f.unlink()
                    _store(node, data, store_dir)["loaded"] = []
                seed = state.get("after_truncate", {}).get(f"{ks}.{table}")
                if seed is not None:  # the apps keep writing, and the node flushes that memtable
                    _flush(node, data, live, _prefix(state["version"]), random.Random(f"{seed}-{pod}"), 3_000)
        took = state.get("truncate_seconds", {}).get(f"{ks}.{table}", 0)
        if took > timeout:  # the server finishes the truncate; the client gave up waiting
            print(
                "<stdin>:1:OperationTimedOut: errors={'127.0.0.1:9042': 'Client request timeout. See "
                "Session.execute[_async](timeout)'}, last_host=127.0.0.1:9042",
                file=sys.stderr,
            )
            return 2
        return 0
    m = re.match(r"^CREATE KEYSPACE (?:IF NOT EXISTS )?(\w+) WITH replication = (\{[^}]*\})", stmt, re.IGNORECASE)
    if m:
        state["keyspaces"].setdefault(m.group(1), {"replication": m.group(2), "tables": {}})
        return 0
    m = re.match(r"^CREATE TABLE (?:IF NOT EXISTS )?(\w+)\.(\w+) \((.*)\) WITH .*$", stmt, re.IGNORECASE)
    if m:
        ks, table, cols = m.groups()
        if ks not in state["keyspaces"]:
            print(f"InvalidRequest: Keyspace {ks} does not exist", file=sys.stderr)
            return 2
        if table not in state["keyspaces"][ks]["tables"]:
            table_id = str(uuid.uuid4())
            state["keyspaces"][ks]["tables"][table] = {"id": table_id, "columns": cols.strip()}
            for pod in state["pods"]:
                _new_store(cluster_dir.parent / pod, Path(ks, table_dir_name(table, table_id)))
        return 0
    m = re.match(r"^CREATE INDEX (?:IF NOT EXISTS )?(\w+) ON (\w+)\.(\w+) \((\w+)\)$", stmt, re.IGNORECASE)
    if m:
        index, ks, table, column = m.groups()
        spec = state["keyspaces"].get(ks, {}).get("tables", {}).get(table)
        if spec is None:
            print(f"InvalidRequest: unconfigured table {table}", file=sys.stderr)
            return 2
        _create_index(cluster_dir, state, ks, table, index, column)
        return 0
    print(f"SyntaxException: line 1:0 no viable alternative at input '{stmt[:40]}'", file=sys.stderr)
    return 2


def _new_store(pod_dir: Path, rel: Path) -> None:
    """Create a table or index directory (``rel`` below ``data/``) on a node, with nothing loaded."""
    (pod_dir / "data" / rel).mkdir(parents=True, exist_ok=True)
    with _node(pod_dir) as node:
        _store(node, pod_dir / "data", pod_dir / "data" / rel)


def _create_index(cluster_dir: Path, state: dict[str, Any], ks: str, table: str, index: str, column: str) -> None:
    """``CREATE INDEX``: a ``.<index>`` dir on every pod, built from the table's loaded SSTables."""
    spec = state["keyspaces"][ks]["tables"][table]
    spec.setdefault("indexes", {})[index] = column
    for pod in state["pods"]:
        pod_dir = cluster_dir.parent / pod
        live = pod_dir / "data" / ks / table_dir_name(table, spec["id"])
        _new_store(pod_dir, Path(ks, live.name, f".{index}"))
        with _node(pod_dir) as node:
            loaded = list(_store(node, pod_dir / "data", live)["loaded"])
            for idx in _index_dirs(live):
                if idx.name == f".{index}":
                    _build_indexes_in(node, pod_dir / "data", live, idx, _prefix(state["version"]), loaded)


# ---- building a cluster (test side) --------------------------------------------------------------


# ``sh`` and ``tar`` wrappers that record argv and environment of every call, then run the real tool.
_RECORDER = """#!/bin/sh
{{ printf 'ARGV'; printf ' %s' "$0" "$@"; printf '\\nENV\\n'; env; }} >> "$HOME/exec.log"
exec {real} "$@"
"""

_TOOL = """#!{python} -S
import sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from tests.fakes.cassandra import {fn}
sys.exit({fn}(Path({cluster!r}), sys.argv[1:]))
"""


@dataclass
class FakeCassandra:
    """A 'StatefulSet' of Cassandra pods as directories, with state the stand-in tools keep."""

    root: Path
    namespace: str = "atlas"
    pods: int = 3
    version: str = "3.11.16"
    username: str | None = "cassandra-admin"
    password: str | None = "cql-Secret-5e6f7a"
    cluster_name: str = "atlas-cluster"
    token_seed: int = 1

    def __post_init__(self) -> None:
        self.cluster_dir.mkdir(parents=True, exist_ok=True)
        names = [f"cassandra-{i}" for i in range(self.pods)]
        auth = {"username": self.username, "password": self.password} if self.username else None
        state = {
            "version": self.version,
            "cluster_name": self.cluster_name,
            "auth": auth,
            "pods": names,
            "keyspaces": {},
        }
        _save(self.cluster_dir, state)
        rng = random.Random(self.token_seed)
        for name in names:
            self.add_pod(name, rng)

    # ---- layout ---------------------------------------------------------------------------------

    @property
    def executor(self) -> str:
        """The step's ``--executor`` value."""
        return f"local:{self.root}"

    @property
    def cluster_dir(self) -> Path:
        """Cluster-wide state directory."""
        return self.root / self.namespace / "_cluster"

    @property
    def pod_names(self) -> list[str]:
        """Pod names in order."""
        return list(self.state()["pods"])

    def pod_dir(self, pod: str) -> Path:
        """The directory standing in for ``pod``."""
        return self.root / self.namespace / pod

    def state(self) -> dict[str, Any]:
        """The cluster state as the tools see it."""
        return _load(self.cluster_dir)

    def add_pod(self, name: str, rng: random.Random | None = None) -> None:
        """Create a pod directory with labels, tokens and the stand-in tools."""
        rng = rng or random.Random(name)
        pod = self.pod_dir(name)
        (pod / "bin").mkdir(parents=True, exist_ok=True)
        (pod / "data").mkdir(exist_ok=True)
        (pod / "labels.json").write_text(json.dumps({"app": "cassandra", "statefulset": "cassandra"}))
        tokens = sorted(rng.randint(-(2**63), 2**63 - 1) for _ in range(4))
        (pod / "node.json").write_text(
            json.dumps({"host_id": str(uuid.UUID(int=rng.getrandbits(128))), "tokens": tokens})
        )
        for tool, fn in (("nodetool", "nodetool_main"), ("cqlsh", "cqlsh_main")):
            path = pod / "bin" / tool
            path.write_text(_TOOL.format(python=sys.executable, repo=str(REPO), fn=fn, cluster=str(self.cluster_dir)))
            path.chmod(0o755)
        for tool in ("sh", "tar"):
            real = shutil.which(tool, path="/usr/bin:/bin")
            assert real, f"{tool} not found"
            path = pod / "bin" / tool
            path.write_text(_RECORDER.format(real=real))
            path.chmod(0o755)
        state = self.state()
        if name not in state["pods"]:
            state["pods"].append(name)
            _save(self.cluster_dir, state)
        for ks, spec in state["keyspaces"].items():
            for table, tspec in spec["tables"].items():
                _new_store(pod, Path(ks, table_dir_name(table, tspec["id"])))
                for index in tspec.get("indexes", {}):
                    _new_store(pod, Path(ks, table_dir_name(table, tspec["id"]), f".{index}"))

    def remove_pod(self, name: str) -> None:
        """Delete a pod (scale down)."""
        shutil.rmtree(self.pod_dir(name))
        state = self.state()
        state["pods"].remove(name)
        _save(self.cluster_dir, state)

    def create_keyspace(self, ks: str, tables: dict[str, str], replication: str = DEFAULT_REPLICATION) -> None:
        """Create ``ks`` with ``tables`` (name -> column definitions) and a directory per table on every pod."""
        state = self.state()
        state["keyspaces"][ks] = {"replication": replication, "tables": {}}
        for table, cols in tables.items():
            table_id = str(uuid.uuid4())
            state["keyspaces"][ks]["tables"][table] = {"id": table_id, "columns": cols}
            for pod in state["pods"]:
                _new_store(self.pod_dir(pod), Path(ks, table_dir_name(table, table_id)))
        _save(self.cluster_dir, state)

    def create_index(self, ks: str, table: str, index: str, column: str) -> None:
        """``CREATE INDEX index ON ks.table (column)``: a legacy secondary index in ``.<index>/`` on every pod."""
        state = self.state()
        _create_index(self.cluster_dir, state, ks, table, index, column)
        _save(self.cluster_dir, state)

    def alter_columns(self, ks: str, table: str, cols: str) -> None:
        """Change a table's definition (makes the schema hash differ)."""
        state = self.state()
        state["keyspaces"][ks]["tables"][table]["columns"] = cols
        _save(self.cluster_dir, state)

    def table_dir(self, pod: str, ks: str, table: str) -> Path:
        """The current (live) directory of ``ks.table`` on ``pod``."""
        spec = self.state()["keyspaces"][ks]["tables"][table]
        return self.pod_dir(pod) / "data" / ks / table_dir_name(table, spec["id"])

    def write_sstables(self, ks: str, table: str, *, generations: int = 2, size: int = 20_000, seed: int = 0) -> None:
        """Flush ``generations`` new SSTables (all components, indexed) into ``ks.table`` on every pod."""
        for pod in self.pod_names:
            live = self.table_dir(pod, ks, table)
            with _node(self.pod_dir(pod)) as node:
                for g in range(generations):
                    rng = random.Random(f"{seed}-{pod}-{ks}-{table}-{g}")
                    _flush(node, self.pod_dir(pod) / "data", live, _prefix(self.version), rng, size)

    def files(self, pod: str, ks: str, table: str) -> dict[str, bytes]:
        """SSTable files directly in the live dir of ``ks.table`` on ``pod``: name -> bytes."""
        live = self.table_dir(pod, ks, table)
        return {f.name: f.read_bytes() for f in sorted(live.iterdir()) if f.is_file()}

    def loaded(self, pod: str, ks: str, table: str) -> dict[str, bytes]:
        """The files of the SSTables of ``ks.table`` that the node on ``pod`` has loaded: name -> bytes."""
        live = self.table_dir(pod, ks, table)
        with _node(self.pod_dir(pod)) as node:
            names = _store(node, self.pod_dir(pod) / "data", live)["loaded"]
        on_disk = _descriptors(live)
        return {f.name: f.read_bytes() for desc in names for f in on_disk.get(desc, [])}

    def index_sources(self, pod: str, ks: str, table: str, index: str) -> list[str]:
        """Digests of the base Data.db files that the loaded SSTables of ``.<index>`` index (sorted)."""
        idx = self.table_dir(pod, ks, table) / f".{index}"
        with _node(self.pod_dir(pod)) as node:
            names = _store(node, self.pod_dir(pod) / "data", idx)["loaded"]
        texts = [(idx / f"{desc}-Data.db").read_text() for desc in names]
        return sorted(t.removeprefix(INDEX_MARK).rsplit(":", 1)[0] for t in texts)

    def data_digests(self, pod: str, ks: str, table: str) -> list[str]:
        """sha256 of every loaded Data.db of ``ks.table`` on ``pod`` (sorted)."""
        loaded = self.loaded(pod, ks, table)
        return sorted(hashlib.sha256(d).hexdigest() for n, d in loaded.items() if n.endswith("-Data.db"))

    def take_snapshot(self, tag: str, pods: list[str] | None = None) -> None:
        """``nodetool snapshot -t tag`` of every keyspace on ``pods`` (default: all), as an operator would."""
        state = self.state()
        for pod in pods or self.pod_names:
            assert _snapshot(state, self.pod_dir(pod), tag, sorted(state["keyspaces"])) == 0

    def set_node_status(self, pod: str, status: str) -> None:
        """The ring status ``nodetool status`` shows for ``pod``'s node (``UN``, ``DN``, ``UJ``...)."""
        path = self.pod_dir(pod) / "node.json"
        node = json.loads(path.read_text())
        node["status"] = status
        path.write_text(json.dumps(node))

    def write_after_truncate(self, ks: str, table: str, seed: int = 99) -> None:
        """Apps keep writing: right after each ``TRUNCATE ks.table`` every node flushes a new SSTable."""
        state = self.state()
        state.setdefault("after_truncate", {})[f"{ks}.{table}"] = seed
        _save(self.cluster_dir, state)

    def slow_truncate(self, ks: str, table: str, seconds: float) -> None:
        """``TRUNCATE ks.table`` takes ``seconds``: cqlsh fails if its request timeout is shorter."""
        state = self.state()
        state.setdefault("truncate_seconds", {})[f"{ks}.{table}"] = seconds
        _save(self.cluster_dir, state)

    def snapshot_dirs(self) -> list[Path]:
        """Every ``snapshots/<tag>`` directory on every pod."""
        return sorted(self.root.glob(f"{self.namespace}/*/data/*/*/snapshots/*"))

    def nodetool_calls(self, pod: str) -> list[list[str]]:
        """Every nodetool argv run on ``pod``."""
        log = self.pod_dir(pod) / "nodetool.log"
        return [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []

    def cql_statements(self) -> list[str]:
        """Every CQL statement run in the cluster."""
        log = self.cluster_dir / "cql.log"
        return [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []

    def cqlsh_calls(self) -> list[dict[str, Any]]:
        """Every cqlsh run: ``{"argv": [...], "statements": [...]}``."""
        log = self.cluster_dir / "cqlsh.log"
        return [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []

    def exec_log(self, pod: str) -> str:
        """argv and environment of every ``sh``/``tar`` the step ran in ``pod`` (raw text)."""
        log = self.pod_dir(pod) / "exec.log"
        return log.read_text() if log.exists() else ""

    def replace_tool(self, pod: str, name: str, script: str) -> None:
        """Put a shell script called ``name`` first on ``pod``'s PATH (fault injection, e.g. a failing tar)."""
        path = self.pod_dir(pod) / "bin" / name
        path.write_text(script)
        path.chmod(0o755)

    def wrap_tool(self, pod: str, name: str, before: str) -> None:
        """Run the shell snippet ``before`` (it sees the argv as ``$@``) ahead of ``pod``'s ``name`` tool."""
        real = self.pod_dir(pod) / "bin" / f"{name}.real"
        if not real.exists():
            (self.pod_dir(pod) / "bin" / name).rename(real)
        self.replace_tool(pod, name, f'#!/bin/sh\n{before}\nexec "{real}" "$@"\n')
