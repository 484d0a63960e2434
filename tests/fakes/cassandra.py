"""A local stand-in for a Cassandra StatefulSet, for ``steps.podexec.LocalExecutor``.

Layout (``root`` is what ``--executor local:<root>`` points at)::

    root/<namespace>/_cluster/state.json        cluster-wide state: version, auth, keyspaces, tables + ids
    root/<namespace>/_cluster/cql.log            every CQL statement cqlsh ran (one JSON line each)
    root/<namespace>/<pod>/labels.json           pod labels (the executor selects pods by them)
    root/<namespace>/<pod>/node.json             host id, dc, rack, tokens
    root/<namespace>/<pod>/bin/{nodetool,cqlsh}  stand-in tools (Python scripts calling into this module)
    root/<namespace>/<pod>/data/<ks>/<table>-<uuid>/  SSTable-like files, snapshots/<tag>/ ...
    root/<namespace>/<pod>/nodetool.log          every nodetool argv (one JSON line each)

The step runs with ``--data-dir data`` (relative: commands run in the pod directory). The tools keep
state like the server would: ``snapshot`` hard-links live files into ``snapshots/<tag>/`` with a
``manifest.json`` and ``schema.cql``; ``TRUNCATE`` removes the live files on every pod; ``CREATE
TABLE`` creates a fresh table id and directory on every pod; ``import`` (4.x) moves files in with new
generation numbers; cqlsh checks the credentials of its ``--cqlshrc`` file.
"""

from __future__ import annotations

import configparser
import json
import os
import random
import re
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = ("Data.db", "Index.db", "Summary.db", "Filter.db", "Statistics.db", "Digest.crc32", "TOC.txt")
SYSTEM_KEYSPACES = ("system", "system_auth", "system_distributed", "system_schema", "system_traces")
DEFAULT_REPLICATION = "{'class': 'SimpleStrategy', 'replication_factor': '3'}"


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
    return "\n".join(out)


def table_dir_name(table: str, table_id: str) -> str:
    """``<table>-<id without dashes>`` as Cassandra names table directories."""
    return f"{table}-{table_id.replace('-', '')}"


def _sstable_groups(directory: Path) -> dict[int, list[Path]]:
    groups: dict[int, list[Path]] = {}
    for f in directory.iterdir():
        m = re.match(r"^[a-z]{2}-(\d+)-big-", f.name)
        if f.is_file() and m:
            groups.setdefault(int(m.group(1)), []).append(f)
    return groups


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
        for i, name in enumerate(state["pods"]):
            print(f"UN  10.0.0.{i + 1}  100 KiB  {len(node['tokens'])}  ?  {name}  rack1")
        return 0
    if cmd == "info" and ("--tokens" in args or "-T" in args):
        print(f"ID                     : {node['host_id']}\nGossip active          : true")
        print("Data Center            : dc1\nRack                   : rack1")
        for token in node["tokens"]:
            print(f"Token                  : {token}")
        return 0
    if cmd in ("snapshot", "clearsnapshot"):
        tag = args[args.index("-t") + 1] if "-t" in args else None
        keyspaces = [a for i, a in enumerate(args) if a != "-t" and (i == 0 or args[i - 1] != "-t")]
        keyspaces = keyspaces or sorted(state["keyspaces"])
        if cmd == "snapshot":
            return _snapshot(state, data, tag or "auto", keyspaces)
        for ks in keyspaces:
            for snaps in (data / ks).glob("*/snapshots"):
                for snap in list(snaps.iterdir()):
                    if tag is None or snap.name == tag:
                        shutil.rmtree(snap)
        return 0
    if cmd == "refresh":
        ks, table = args[0], args[1]
        if not list((data / ks).glob(f"{table}-*")):
            print(f"nodetool: Unknown keyspace/cf pair ({ks}.{table})", file=sys.stderr)
            return 1
        return 0
    if cmd == "import":
        if int(state["version"].split(".")[0]) < 4:
            print("nodetool: Found unexpected parameters: [import]", file=sys.stderr)
            return 1
        ks, table, src = args[0], args[1], Path(args[2])
        spec = state["keyspaces"][ks]["tables"][table]
        dest = data / ks / table_dir_name(table, spec["id"])
        nxt = max(_sstable_groups(dest) or {0: []}) + 1
        for _gen, files in sorted(_sstable_groups(src).items()):
            for f in files:
                new = re.sub(r"^([a-z]{2})-\d+-", rf"\g<1>-{nxt}-", f.name)
                shutil.move(str(f), dest / new)
            nxt += 1
        return 0
    print(f"nodetool: unknown command {cmd}", file=sys.stderr)
    return 1


def _snapshot(state: dict[str, Any], data: Path, tag: str, keyspaces: list[str]) -> int:
    print(f"Requested creating snapshot(s) for [{', '.join(keyspaces)}] with snapshot name [{tag}]")
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
            files = sorted(f.name for f in live.iterdir() if f.is_file())
            for name in files:
                os.link(live / name, snap / name)
            (snap / "manifest.json").write_text(json.dumps({"files": files}))
            (snap / "schema.cql").write_text(f"CREATE TABLE IF NOT EXISTS {ks}.{table} ({spec['columns']});\n")
    print("Snapshot directory: " + tag)
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
    if "-f" in argv:
        text = Path(argv[argv.index("-f") + 1]).read_text()
    elif "-e" in argv:
        text = argv[argv.index("-e") + 1]
    else:
        print("interactive cqlsh is not supported here", file=sys.stderr)
        return 1
    for raw in text.split(";"):
        stmt = " ".join(raw.split())
        if not stmt:
            continue
        _log(cluster_dir / "cql.log", stmt)
        code = _statement(cluster_dir, state, stmt)
        if code:
            return code
    _save(cluster_dir, state)
    return 0


def _statement(cluster_dir: Path, state: dict[str, Any], stmt: str) -> int:
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
            live = cluster_dir.parent / pod / "data" / ks / table_dir_name(table, spec["id"])
            for f in live.iterdir():
                if f.is_file():
                    f.unlink()
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
                (cluster_dir.parent / pod / "data" / ks / table_dir_name(table, table_id)).mkdir(parents=True)
        return 0
    print(f"SyntaxException: line 1:0 no viable alternative at input '{stmt[:40]}'", file=sys.stderr)
    return 2


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
                (pod / "data" / ks / table_dir_name(table, tspec["id"])).mkdir(parents=True, exist_ok=True)

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
                (self.pod_dir(pod) / "data" / ks / table_dir_name(table, table_id)).mkdir(parents=True)
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
        """Write ``generations`` SSTables (all components) into the live dir of ``ks.table`` on every pod."""
        for p, pod in enumerate(self.pod_names):
            live = self.table_dir(pod, ks, table)
            start = max(_sstable_groups(live) or {0: []}) + 1
            prefix = "nb" if self.version.startswith("4") else "mc"
            for g in range(start, start + generations):
                rng = random.Random(f"{seed}-{pod}-{ks}-{table}-{g}-{p}")
                for comp in COMPONENTS:
                    n = size if comp == "Data.db" else max(16, size // 20)
                    (live / f"{prefix}-{g}-big-{comp}").write_bytes(rng.randbytes(n + rng.randint(0, 999)))

    def files(self, pod: str, ks: str, table: str) -> dict[str, bytes]:
        """Live SSTable files of ``ks.table`` on ``pod``: name -> bytes."""
        live = self.table_dir(pod, ks, table)
        return {f.name: f.read_bytes() for f in sorted(live.iterdir()) if f.is_file()}

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

    def exec_log(self, pod: str) -> str:
        """argv and environment of every ``sh``/``tar`` the step ran in ``pod`` (raw text)."""
        log = self.pod_dir(pod) / "exec.log"
        return log.read_text() if log.exists() else ""

    def replace_tool(self, pod: str, name: str, script: str) -> None:
        """Put a shell script called ``name`` first on ``pod``'s PATH (fault injection, e.g. a failing tar)."""
        path = self.pod_dir(pod) / "bin" / name
        path.write_text(script)
        path.chmod(0o755)
