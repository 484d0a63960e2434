"""A stateful HTTP-level fake of Elasticsearch 7.x/8.x/9.x for the snapshot/restore APIs.

The real ``elasticsearch`` (8.x) and ``elasticsearch7`` clients talk to it over HTTP. It keeps state
(indices with doc and primary-shard counts, repositories, snapshots, shard allocation) and answers
like the server: status codes, ES-shaped error bodies, the ``X-Elastic-Product`` header, REST
compatibility media types, 408 on a health wait that times out, basic-auth 401s.

Snapshots live in a :class:`FakeBlobStore` keyed by (bucket, base_path), which several fake clusters
can share, so a snapshot written by one cluster can be restored on another (as with a real S3 bucket).

Tests script behaviour through :class:`Scenario` (PARTIAL/FAILED snapshots, snapshots that never
finish, restored shards that never get allocated, lost documents, failing repository verification,
an application that re-creates deleted indices, a master too busy to open indices) and through state
(aliases, data streams, snapshot deletions in progress).
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from werkzeug.wrappers import Request, Response

from tests.fakes._served import ServedFake

HEALTH_ORDER = {"green": 0, "yellow": 1, "red": 2}
MAX_HEALTH_WAIT_S = 10.0  # a health wait never blocks a test longer than this


class EsError(Exception):
    """An error answered in Elasticsearch's JSON shape."""

    def __init__(self, status: int, etype: str, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.etype, self.reason, self.headers = status, etype, reason, headers or {}

    def body(self) -> dict[str, Any]:
        cause: dict[str, Any] = {"type": self.etype, "reason": self.reason}
        if self.headers:
            cause["header"] = {k: [v] for k, v in self.headers.items()}
        return {"error": {"root_cause": [cause], **cause}, "status": self.status}


@dataclass
class FakeIndex:
    """One index as the cluster sees it."""

    name: str
    docs: int
    primaries: int = 1
    replicas: int = 0
    status: str = "open"  # open | close
    unassigned_reason: str | None = None  # primaries stay UNASSIGNED with this reason (index red)
    ready_at: float = 0.0  # shards are INITIALIZING until this monotonic time
    uuid: str = field(default_factory=lambda: uuid.uuid4().hex[:22])
    aliases: dict[str, bool] = field(default_factory=dict)  # alias name -> is_write_index

    def saved(self) -> FakeIndex:
        """The copy a snapshot keeps: counts, shape and alias metadata."""
        return FakeIndex(self.name, self.docs, self.primaries, self.replicas, aliases=dict(self.aliases))


@dataclass
class FakeSnapshot:
    """A snapshot in a repository; ``contents`` is what a restore gets back."""

    name: str
    uuid: str
    version: str
    indices: list[str]
    contents: dict[str, FakeIndex]
    include_global_state: bool
    metadata: dict[str, Any]
    start_ms: int
    outcome: str  # final state: SUCCESS | PARTIAL | FAILED
    failed_index: str | None
    polls_left: int | None  # GETs answered IN_PROGRESS before the outcome; None = never finishes
    state: str = "IN_PROGRESS"
    end_ms: int = 0

    def info(self, repository: str, major: int) -> dict[str, Any]:
        """The snapshot as ``GET _snapshot/<repo>/<name>`` shows it."""
        total = sum(i.primaries for i in self.contents.values())
        failures: list[dict[str, Any]] = []
        failed = 0
        if self.state in ("PARTIAL", "FAILED"):
            bad = [self.failed_index] if self.failed_index else list(self.contents)
            for name in bad:
                idx = self.contents.get(name)
                for shard in range(idx.primaries if idx else 1):
                    failed += 1
                    failures.append(
                        {
                            "index": name,
                            "index_uuid": idx.uuid if idx else name,
                            "shard_id": shard,
                            "reason": "IndexShardSnapshotFailedException[Failed to snapshot]; nested: "
                            "IOException[Unable to upload object [indices/x/0/__blob] using a single upload]",
                            "node_id": "fake-node-1",
                            "status": "INTERNAL_SERVER_ERROR",
                        }
                    )
            if self.state == "FAILED":
                failed = total
        done = self.state != "IN_PROGRESS"
        info: dict[str, Any] = {
            "snapshot": self.name,
            "uuid": self.uuid,
            "version_id": _version_id(self.version),
            "version": self.version,
            "indices": list(self.indices),
            "data_streams": [],
            "include_global_state": self.include_global_state,
            "metadata": self.metadata,
            "state": self.state,
            "start_time": _iso(self.start_ms),
            "start_time_in_millis": self.start_ms,
            "end_time": _iso(self.end_ms) if done else None,
            "end_time_in_millis": self.end_ms if done else 0,
            "duration_in_millis": (self.end_ms - self.start_ms) if done else 0,
            "failures": failures,
            "shards": {"total": total if done else 0, "failed": failed, "successful": total - failed if done else 0},
            "feature_states": [],
        }
        if self.state == "FAILED":
            info["reason"] = "Snapshot failed: repository write error"
        if major >= 8:
            info["repository"] = repository
        return info


class FakeBlobStore:
    """The contents of S3 as far as repositories are concerned: snapshots per (bucket, base_path)."""

    def __init__(self) -> None:
        self.locations: dict[tuple[str, str], dict[str, FakeSnapshot]] = {}

    def at(self, settings: dict[str, Any]) -> dict[str, FakeSnapshot]:
        """The snapshots stored at the repository location ``settings`` names."""
        key = (str(settings.get("bucket", "")), str(settings.get("base_path", "")))
        return self.locations.setdefault(key, {})


@dataclass
class Scenario:
    """Failure injection, set by tests before (or while) the step runs."""

    snapshot_outcome: str = "SUCCESS"  # SUCCESS | PARTIAL | FAILED
    failed_index: str | None = None  # for PARTIAL: the index whose shards fail (default: the first)
    snapshot_polls: int | None = 2  # IN_PROGRESS answers before the outcome; None = never finishes
    restore_unassigned: str | None = None  # restored primaries stay UNASSIGNED with this reason
    restore_recovery_s: float = 0.2  # restored shards are INITIALIZING this long
    restore_doc_loss: dict[str, int] = field(default_factory=dict)  # docs missing after restoring an index
    docs_written_during_snapshot: dict[str, int] = field(default_factory=dict)  # live writes after the start
    verify_error: str | None = None  # repository verification fails with this reason
    s3_plugin: bool = True  # 7.x without the repository-s3 plugin: type [s3] does not exist
    recreate_after_delete: int | None = None  # a live writer auto-creates each deleted index with this many docs
    open_timeout: bool = False  # POST <indices>/_open: the master does not process the task in time (503)


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


class FakeElasticsearch(ServedFake):
    """An Elasticsearch cluster behind a real HTTP server on 127.0.0.1 (use as a context manager)."""

    def __init__(
        self,
        version: str = "8.15.3",
        *,
        username: str | None = "elastic",
        password: str | None = "es-Secret-5d1c9a",
        blobstore: FakeBlobStore | None = None,
        nodes: int = 3,
        cluster_name: str = "fake-cluster",
    ) -> None:
        self.version = version
        self.major = int(version.split(".", maxsplit=1)[0])
        self.username, self.password = username, password
        self.blobstore = blobstore or FakeBlobStore()
        self.nodes = nodes
        self.cluster_name = cluster_name
        self.cluster_uuid = uuid.uuid4().hex[:22]
        self.scenario = Scenario()
        self.indices: dict[str, FakeIndex] = {}
        self.repositories: dict[str, dict[str, Any]] = {}
        self.data_streams: dict[str, dict[str, Any]] = {}  # name -> {"hidden": bool, "indices": [backing names]}
        self.deletions_in_progress: set[tuple[str, str]] = set()  # (repository, snapshot) being deleted
        self.destructive_requires_name = self.major >= 8
        self.requests: list[Recorded] = []
        self.lock = threading.RLock()

    # ---- lifecycle: ServedFake (start/stop/context manager) ----------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return self.base_url

    # ---- scripting helpers for tests ---------------------------------------------------------------

    def add_index(self, name: str, docs: int, primaries: int = 1, replicas: int = 0, **kw: Any) -> FakeIndex:
        """Create (or replace) an index."""
        with self.lock:
            self.indices[name] = FakeIndex(name, docs, primaries, replicas, **kw)
            return self.indices[name]

    def add_data_stream(self, name: str, docs: int, *, hidden: bool = False) -> FakeIndex:
        """Create a data stream with one (hidden) backing index ``.ds-<name>-2026.01.01-000001``."""
        with self.lock:
            backing = self.add_index(f".ds-{name}-2026.01.01-000001", docs)
            self.data_streams[name] = {"hidden": hidden, "indices": [backing.name]}
            return backing

    def add_repository(self, name: str, bucket: str, base_path: str, **settings: Any) -> None:
        """Register an S3 repository directly (as if done earlier through the API)."""
        with self.lock:
            self.repositories[name] = {"type": "s3", "settings": {"bucket": bucket, "base_path": base_path, **settings}}

    def add_snapshot(
        self, repository: str, name: str, *, state: str = "SUCCESS", age_days: float = 0, **metadata: Any
    ) -> FakeSnapshot:
        """Put a finished snapshot of the current open indices into a repository, ``age_days`` old."""
        with self.lock:
            contents = {n: i.saved() for n, i in self.indices.items()}
            start = int((time.time() - age_days * 86400) * 1000)
            snap = FakeSnapshot(
                name=name,
                uuid=uuid.uuid4().hex[:22],
                version=self.version,
                indices=sorted(contents),
                contents=contents,
                include_global_state=True,
                metadata=metadata,
                start_ms=start,
                outcome=state,
                failed_index=None,
                polls_left=0,
                state=state,
                end_ms=start + 1000,
            )
            self.snapshots(repository)[name] = snap
            return snap

    def snapshots(self, repository: str) -> dict[str, FakeSnapshot]:
        """Snapshots visible through a registered repository."""
        return self.blobstore.at(self.repositories[repository]["settings"])

    def calls(self, method: str, path_regex: str) -> list[Recorded]:
        """Recorded requests matching ``method`` and ``path_regex``."""
        return [r for r in self.requests if r.method == method and re.fullmatch(path_regex, r.path)]

    # ---- HTTP --------------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self._handle(request)
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        query = {k: v[-1] for k, v in parse_qs(request.query_string.decode(), keep_blank_values=True).items()}
        raw = request.get_data()
        body: Any = None
        media = self._media_type(request)
        try:
            if raw:
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise EsError(400, "parse_exception", f"request body is not valid JSON: {exc}") from exc
            with self.lock:
                self.requests.append(
                    Recorded(
                        request.method,
                        request.path,
                        query,
                        body,
                        {k.lower(): v for k, v in request.headers.items() if k.lower() != "authorization"},
                    )
                )
            self._check_media(request)
            self._authenticate(request)
            status, payload = self._route(request.method, request.path, query, body)
        except EsError as exc:
            status, payload = exc.status, exc.body()
            response = self._respond(status, payload, media, request.method)
            for k, v in exc.headers.items():
                response.headers[k] = v
            return response
        return self._respond(status, payload, media, request.method)

    def _media_type(self, request: Request) -> str:
        accept = request.headers.get("Accept", "")
        match = re.search(r"compatible-with=(\d+)", accept)
        if match and self.major >= 8:
            return f"application/vnd.elasticsearch+json;compatible-with={match.group(1)}"
        return "application/json; charset=UTF-8"

    def _check_media(self, request: Request) -> None:
        for header in ("Accept", "Content-Type"):
            match = re.search(r"compatible-with=(\d+)", request.headers.get(header, ""))
            if not match:
                continue
            wanted = int(match.group(1))
            if wanted not in (self.major, self.major - 1):
                raise EsError(
                    400,
                    "media_type_header_exception",
                    f"Invalid media-type value on headers [{header}]: compatible-with={wanted} is not supported "
                    f"by Elasticsearch {self.version}",
                )

    def _respond(self, status: int, payload: Any, media: str, method: str) -> Response:
        data = b"" if method == "HEAD" else json.dumps(payload).encode()
        response = Response(data, status=status, content_type=media)
        response.headers["X-Elastic-Product"] = "Elasticsearch"
        return response

    def _authenticate(self, request: Request) -> None:
        if self.username is None:
            return
        header = request.headers.get("Authorization", "")
        challenge = {"WWW-Authenticate": 'Basic realm="security" charset="UTF-8"'}
        if not header.startswith("Basic "):
            raise EsError(
                401,
                "security_exception",
                f"missing authentication credentials for REST request [{request.path}]",
                challenge,
            )
        user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
        if (user, pw) != (self.username, self.password):
            raise EsError(
                401,
                "security_exception",
                f"unable to authenticate user [{user}] for REST request [{request.path}]",
                challenge,
            )

    # ---- routing -----------------------------------------------------------------------------------

    def _route(self, method: str, path: str, q: dict[str, str], body: Any) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        with self.lock:
            if not parts and method in ("GET", "HEAD"):
                return 200, self._info()
            if parts[0] == "_snapshot":
                return self._snapshot_api(method, parts[1:], q, body or {})
            if parts[0] == "_cat" and len(parts) >= 2 and method == "GET":
                return 200, self._cat(parts[1], parts[2] if len(parts) > 2 else None, q)
            elif len(parts) == 1 and method == "DELETE" and not parts[0].startswith("_"):
                return 200, self._delete_indices(parts[0])
            elif len(parts) == 2 and parts[1] == "_close" and method == "POST":
                return 200, self._close_indices(parts[0])
            elif len(parts) == 2 and parts[1] == "_open" and method == "POST":
                return 200, self._open_indices(parts[0])
            elif parts[0] == "_data_stream" and len(parts) <= 2 and method == "GET":
                return 200, self._get_data_streams(parts[1] if len(parts) == 2 else "*", q)
            elif parts[-1] == "_refresh" and method in ("POST", "GET"):
                names = self._resolve(parts[0] if len(parts) == 2 else "*", q)
                total = sum(self.indices[n].primaries for n in names)
                return 200, {"_shards": {"total": total, "successful": total, "failed": 0}}
            elif not (parts[0] == "_cluster" and len(parts) in (2, 3) and parts[1] == "health" and method == "GET"):
                raise EsError(
                    405 if not parts[0].startswith("_") else 400,
                    "illegal_argument_exception",
                    f"request [{path}] contains unrecognized or unsupported method [{method}]",
                )
        return self._health(parts[2] if len(parts) > 2 else None, q)  # outside the lock: it may wait

    def _info(self) -> dict[str, Any]:
        return {
            "name": "fake-node-1",
            "cluster_name": self.cluster_name,
            "cluster_uuid": self.cluster_uuid,
            "version": {
                "number": self.version,
                "build_flavor": "default",
                "build_type": "docker",
                "build_hash": "0" * 40,
                "build_date": "2024-01-01T00:00:00.000Z",
                "build_snapshot": False,
                "lucene_version": "9.11.1",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0",
            },
            "tagline": "You Know, for Search",
        }

    # ---- indices -----------------------------------------------------------------------------------

    def _resolve(self, expr: str, q: dict[str, str], *, allow_wildcards: bool = True) -> list[str]:
        """Index names for a comma-separated expression (wildcards, ``-`` exclusions, hidden ``.x``)."""
        expand = q.get("expand_wildcards", "open")
        include_hidden = "all" in expand or "hidden" in expand
        include_closed = "all" in expand or "closed" in expand
        ignore_unavailable = q.get("ignore_unavailable") == "true"
        selected: list[str] = []
        for item in [i for i in expr.split(",") if i]:
            if (item in ("_all", "*") or "*" in item or item.startswith("-")) and not allow_wildcards:
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    f"Wildcard expressions or all indices are not allowed: [{expr}]",
                )
            if item.startswith("-"):
                selected = [n for n in selected if not fnmatch.fnmatchcase(n, item[1:])]
                continue
            pattern = "*" if item == "_all" else item
            if "*" in pattern:
                for name, idx in sorted(self.indices.items()):
                    if not fnmatch.fnmatchcase(name, pattern):
                        continue
                    if name.startswith(".") and not (include_hidden or pattern.startswith(".")):
                        continue
                    if idx.status == "close" and not include_closed:
                        continue
                    if name not in selected:
                        selected.append(name)
            elif item in self.indices:
                if item not in selected:
                    selected.append(item)
            elif not ignore_unavailable:
                raise EsError(404, "index_not_found_exception", f"no such index [{item}]")
        return selected

    def _index_health(self, idx: FakeIndex, now: float) -> str:
        if idx.unassigned_reason or now < idx.ready_at:
            return "red"
        if idx.replicas and self.nodes < idx.replicas + 1:
            return "yellow"
        return "green"

    def _shards(self, idx: FakeIndex, now: float) -> list[dict[str, Any]]:
        rows = []
        for shard in range(idx.primaries):
            for copy in range(idx.replicas + 1):
                prirep = "p" if copy == 0 else "r"
                if idx.unassigned_reason:
                    state, reason = "UNASSIGNED", idx.unassigned_reason
                elif now < idx.ready_at:
                    state, reason = "INITIALIZING", None
                elif copy >= self.nodes:
                    state, reason = "UNASSIGNED", "REPLICA_ADDED"
                else:
                    state, reason = "STARTED", None
                started = state == "STARTED"
                rows.append(
                    {
                        "index": idx.name,
                        "shard": str(shard),
                        "prirep": prirep,
                        "state": state,
                        "docs": str(idx.docs // idx.primaries) if started else None,
                        "store": "1kb" if started else None,
                        "ip": "10.0.0.1" if started else None,
                        "node": f"fake-node-{copy + 1}" if started else None,
                        "unassigned.reason": reason,
                    }
                )
        return rows

    def _cat(self, what: str, expr: str | None, q: dict[str, str]) -> list[dict[str, Any]]:
        if q.get("format") != "json":
            raise EsError(400, "illegal_argument_exception", "this fake answers _cat only with format=json")
        names = self._resolve(expr or "*", {"expand_wildcards": "all", **q} if expr is None else q)
        now = time.monotonic()
        rows: list[dict[str, Any]] = []
        for name in names:
            idx = self.indices[name]
            if what == "indices":
                is_open = idx.status == "open"
                rows.append(
                    {
                        "health": self._index_health(idx, now) if is_open else None,
                        "status": idx.status,
                        "index": name,
                        "uuid": idx.uuid,
                        "pri": str(idx.primaries),
                        "rep": str(idx.replicas),
                        "docs.count": str(idx.docs) if is_open else None,
                        "docs.deleted": "0" if is_open else None,
                        "store.size": "1kb" if is_open else None,
                    }
                )
            elif what == "shards":
                rows.extend(self._shards(idx, now))
            else:
                raise EsError(400, "illegal_argument_exception", f"unknown _cat API [{what}]")
        wanted = q.get("h")
        if wanted:
            keys = wanted.split(",")
            rows = [{k: r.get(k) for k in keys} for r in rows]
        return rows

    def _delete_indices(self, expr: str) -> dict[str, Any]:
        for name in self._resolve(
            expr, {"expand_wildcards": "open,closed"}, allow_wildcards=not self.destructive_requires_name
        ):
            del self.indices[name]
            if self.scenario.recreate_after_delete is not None:  # the app's next write auto-creates it
                self.indices[name] = FakeIndex(name, self.scenario.recreate_after_delete)
        return {"acknowledged": True}

    def _open_indices(self, expr: str) -> dict[str, Any]:
        names = self._resolve(expr, {"expand_wildcards": "closed"})
        if self.scenario.open_timeout:
            raise EsError(
                503,
                "process_cluster_event_timeout_exception",
                f"failed to process cluster event (open-indices {names}) within 30s",
            )
        for name in names:
            self.indices[name].status = "open"
        return {"acknowledged": True, "shards_acknowledged": True}

    def _get_data_streams(self, expr: str, q: dict[str, str]) -> dict[str, Any]:
        expand = q.get("expand_wildcards", "open")
        chosen: list[str] = []
        for item in [i for i in expr.split(",") if i]:
            if "*" in item or item == "_all":
                pattern = "*" if item == "_all" else item
                chosen.extend(
                    n
                    for n, ds in sorted(self.data_streams.items())
                    if fnmatch.fnmatchcase(n, pattern)
                    and (not ds["hidden"] or "all" in expand or "hidden" in expand)
                    and n not in chosen
                )
            elif item in self.data_streams:
                chosen.append(item)
            else:
                raise EsError(404, "index_not_found_exception", f"no such index [{item}]")
        streams = []
        for name in chosen:
            ds = self.data_streams[name]
            streams.append(
                {
                    "name": name,
                    "timestamp_field": {"name": "@timestamp"},
                    "indices": [{"index_name": i, "index_uuid": self.indices[i].uuid} for i in ds["indices"]],
                    "generation": len(ds["indices"]),
                    "status": "GREEN",
                    "template": f"{name}-template",
                    "hidden": ds["hidden"],
                    "system": False,
                }
            )
        return {"data_streams": streams}

    def _close_indices(self, expr: str) -> dict[str, Any]:
        names = self._resolve(expr, {}, allow_wildcards=not self.destructive_requires_name)
        for name in names:
            self.indices[name].status = "close"
        return {
            "acknowledged": True,
            "shards_acknowledged": True,
            "indices": {n: {"closed": True} for n in names},
        }

    def _health(self, expr: str | None, q: dict[str, str]) -> tuple[int, Any]:
        wanted = q.get("wait_for_status")
        timeout = min(_parse_time(q.get("timeout", "30s")), MAX_HEALTH_WAIT_S)
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                now = time.monotonic()
                try:
                    names = self._resolve(expr or "*", {"expand_wildcards": "all"})
                    missing = False
                except EsError:
                    names, missing = [], True
                statuses = [self._index_health(self.indices[n], now) for n in names]
                status = "red" if missing else max(statuses or ["green"], key=HEALTH_ORDER.__getitem__)
                shards = [s for n in names for s in self._shards(self.indices[n], now)]
            done = wanted is None or HEALTH_ORDER[status] <= HEALTH_ORDER[wanted]
            if done or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        body = {
            "cluster_name": self.cluster_name,
            "status": status,
            "timed_out": not done,
            "number_of_nodes": self.nodes,
            "number_of_data_nodes": self.nodes,
            "active_primary_shards": sum(1 for s in shards if s["prirep"] == "p" and s["state"] == "STARTED"),
            "active_shards": sum(1 for s in shards if s["state"] == "STARTED"),
            "relocating_shards": 0,
            "initializing_shards": sum(1 for s in shards if s["state"] == "INITIALIZING"),
            "unassigned_shards": sum(1 for s in shards if s["state"] == "UNASSIGNED"),
            "delayed_unassigned_shards": 0,
            "number_of_pending_tasks": 0,
            "number_of_in_flight_fetch": 0,
            "task_max_waiting_in_queue_millis": 0,
            "active_shards_percent_as_number": 100.0,
        }
        return (200 if done else 408), body

    # ---- snapshots ---------------------------------------------------------------------------------

    def _snapshot_api(self, method: str, parts: list[str], q: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        if not parts:
            if method == "GET":
                return 200, self.repositories
            raise EsError(405, "illegal_argument_exception", f"method [{method}] not allowed on _snapshot")
        repo = parts[0]
        if len(parts) == 1:
            if method == "GET":
                if repo not in self.repositories:
                    raise EsError(404, "repository_missing_exception", f"[{repo}] missing")
                return 200, {repo: self.repositories[repo]}
            if method in ("PUT", "POST"):
                return 200, self._put_repository(repo, body, q)
            if method == "DELETE":
                self._repo(repo)
                del self.repositories[repo]
                return 200, {"acknowledged": True}
        self._repo(repo)
        if len(parts) == 2 and parts[1] == "_verify" and method == "POST":
            return 200, self._verify(repo)
        if len(parts) == 2:
            if method in ("PUT", "POST"):
                return 200, self._create_snapshot(repo, parts[1], body, q)
            if method == "GET":
                return 200, self._get_snapshots(repo, parts[1], q)
            if method == "DELETE":
                return 200, self._delete_snapshots(repo, parts[1])
        if len(parts) == 3 and parts[2] == "_restore" and method == "POST":
            return 200, self._restore(repo, parts[1], body)
        raise EsError(400, "illegal_argument_exception", f"unsupported snapshot request {method} {parts}")

    def _repo(self, repo: str) -> dict[str, Any]:
        if repo not in self.repositories:
            raise EsError(404, "repository_missing_exception", f"[{repo}] missing")
        return self.repositories[repo]

    def _put_repository(self, repo: str, body: dict[str, Any], q: dict[str, str]) -> dict[str, Any]:
        rtype, settings = body.get("type"), dict(body.get("settings") or {})
        if rtype != "s3" or (self.major < 8 and not self.scenario.s3_plugin):
            raise EsError(
                500,
                "repository_exception",
                f"[{repo}] repository type [{rtype}] does not exist",
            )
        if not settings.get("bucket"):
            raise EsError(
                500,
                "repository_exception",
                f"[{repo}] Could not determine repository bucket: setting [bucket] is missing",
            )
        for key in ("readonly", "compress", "server_side_encryption"):
            if key in settings:
                settings[key] = str(settings[key]).lower()
        self.repositories[repo] = {"type": rtype, "settings": settings}
        if q.get("verify", "true") != "false":
            self._verify(repo)
        return {"acknowledged": True}

    def _verify(self, repo: str) -> dict[str, Any]:
        if self.scenario.verify_error:
            raise EsError(500, "repository_verification_exception", f"[{repo}] {self.scenario.verify_error}")
        return {"nodes": {f"node{i}": {"name": f"fake-node-{i + 1}"} for i in range(self.nodes)}}

    def _create_snapshot(self, repo: str, name: str, body: dict[str, Any], q: dict[str, str]) -> dict[str, Any]:
        settings = self.repositories[repo]["settings"]
        if settings.get("readonly") == "true":
            raise EsError(500, "repository_exception", f"[{repo}] cannot create snapshot in a readonly repository")
        if name != name.lower() or name.startswith("_") or re.search(r"[\\/*?\"<>| ,#]", name):
            raise EsError(400, "invalid_snapshot_name_exception", f"[{repo}:{name}] Invalid snapshot name [{name}]")
        stored = self.blobstore.at(settings)
        if name in stored:
            raise EsError(
                400,
                "invalid_snapshot_name_exception",
                f"[{repo}:{name}] Invalid snapshot name [{name}], snapshot with the same name already exists",
            )
        expr = body.get("indices", "_all")
        expr = ",".join(expr) if isinstance(expr, list) else str(expr)
        names = self._resolve(expr, {"ignore_unavailable": str(bool(body.get("ignore_unavailable"))).lower()})
        red = [n for n in names if self.indices[n].unassigned_reason]
        if red and not body.get("partial"):
            raise EsError(500, "snapshot_exception", f"[{repo}:{name}] Indices don't have primary shards {red}")
        contents = {n: self.indices[n].saved() for n in names}
        for index, extra in self.scenario.docs_written_during_snapshot.items():
            if index in self.indices:
                self.indices[index].docs += extra
        outcome = self.scenario.snapshot_outcome
        snap = FakeSnapshot(
            name=name,
            uuid=uuid.uuid4().hex[:22],
            version=self.version,
            indices=names,
            contents=contents,
            include_global_state=bool(body.get("include_global_state", True)),
            metadata=body.get("metadata") or {},
            start_ms=int(time.time() * 1000),
            outcome=outcome,
            failed_index=self.scenario.failed_index or (names[0] if names else None),
            polls_left=self.scenario.snapshot_polls,
        )
        stored[name] = snap
        if q.get("wait_for_completion") == "true":
            while snap.state == "IN_PROGRESS":
                self._advance(snap)
            return {"snapshot": snap.info(repo, self.major)}
        return {"accepted": True}

    def _advance(self, snap: FakeSnapshot) -> None:
        if snap.state != "IN_PROGRESS" or snap.polls_left is None:
            return
        if snap.polls_left > 0:
            snap.polls_left -= 1
            return
        snap.state = snap.outcome
        snap.end_ms = int(time.time() * 1000)

    def _get_snapshots(self, repo: str, expr: str, q: dict[str, str]) -> dict[str, Any]:
        stored = self.blobstore.at(self.repositories[repo]["settings"])
        chosen: list[FakeSnapshot] = []
        for item in expr.split(","):
            if item in ("_all", "*") or "*" in item:
                chosen.extend(s for n, s in stored.items() if fnmatch.fnmatchcase(n, item.replace("_all", "*")))
            elif item in stored:
                chosen.append(stored[item])
            elif q.get("ignore_unavailable") != "true":
                raise EsError(404, "snapshot_missing_exception", f"[{repo}:{item}] is missing")
        for snap in chosen:
            self._advance(snap)
        infos = [s.info(repo, self.major) for s in sorted(chosen, key=lambda s: (s.start_ms, s.name))]
        return {"snapshots": infos, "total": len(infos), "remaining": 0}

    def _delete_snapshots(self, repo: str, expr: str) -> dict[str, Any]:
        settings = self.repositories[repo]["settings"]
        if settings.get("readonly") == "true":
            raise EsError(500, "repository_exception", f"[{repo}] cannot delete snapshot from a readonly repository")
        stored = self.blobstore.at(settings)
        names = expr.split(",")
        for n in names:
            if n not in stored:
                raise EsError(404, "snapshot_missing_exception", f"[{repo}:{n}] is missing")
        for n in names:
            del stored[n]
        return {"acknowledged": True}

    def _restore(self, repo: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        stored = self.blobstore.at(self.repositories[repo]["settings"])
        snap = stored.get(name)
        if snap is None:
            raise EsError(404, "snapshot_missing_exception", f"[{repo}:{name}] is missing")
        where = f"[{repo}:{name}/{snap.uuid}]"
        if (repo, name) in self.deletions_in_progress:  # 7.8+: only a deletion of this very snapshot conflicts
            raise EsError(
                503,
                "concurrent_snapshot_execution_exception",
                f"{where} cannot restore a snapshot while a snapshot deletion is in-progress [[{repo}:[{name}]]]",
            )
        if snap.state != "SUCCESS" and not (snap.state == "PARTIAL" and body.get("partial")):
            raise EsError(500, "snapshot_restore_exception", f"{where} unsupported snapshot state [{snap.state}]")
        if _version_tuple(snap.version) > _version_tuple(self.version):
            raise EsError(
                500,
                "snapshot_restore_exception",
                f"{where} the snapshot was created with Elasticsearch version [{snap.version}] which is higher "
                f"than the version of this node [{self.version}]",
            )
        if "feature_states" in body and _version_tuple(self.version) < (7, 12, 0):
            raise EsError(400, "x_content_parse_exception", "[restore_snapshot] unknown field [feature_states]")
        expr = body.get("indices", "*")
        expr = ",".join(expr) if isinstance(expr, list) else str(expr)
        chosen: list[str] = []
        for item in [i for i in expr.split(",") if i]:
            if item.startswith("-"):
                chosen = [n for n in chosen if not fnmatch.fnmatchcase(n, item[1:])]
            elif "*" in item:
                chosen.extend(n for n in snap.indices if fnmatch.fnmatchcase(n, item) and n not in chosen)
            elif item in snap.indices:
                chosen.append(item)
            else:
                raise EsError(404, "index_not_found_exception", f"no such index [{item}]")
        pattern, replacement = body.get("rename_pattern"), body.get("rename_replacement")
        targets: dict[str, str] = {}
        for source in chosen:
            target = source
            if pattern is not None and replacement is not None:
                target = re.sub(pattern, re.sub(r"\$(\d)", r"\\\1", replacement), source)
            if target in targets.values():
                raise EsError(500, "snapshot_restore_exception", f"{where} indices [{target}] are renamed twice")
            targets[source] = target
        for source, target in targets.items():
            existing = self.indices.get(target)
            if existing is None:
                continue
            if existing.status == "open":
                raise EsError(
                    500,
                    "snapshot_restore_exception",
                    f"{where} cannot restore index [{target}] because an open index with same name already exists "
                    "in the cluster. Either close or delete the existing index or restore the index under a "
                    "different name by providing a rename pattern and replacement name",
                )
            if existing.primaries != snap.contents[source].primaries:
                raise EsError(
                    500,
                    "snapshot_restore_exception",
                    f"{where} cannot restore index [{target}] with [{existing.primaries}] shards from a snapshot of "
                    f"index [{source}] with [{snap.contents[source].primaries}] shards",
                )
        include_aliases = str(body.get("include_aliases", True)).lower() == "true"
        if include_aliases:
            self._check_write_aliases({t: snap.contents[s].aliases for s, t in targets.items()})
        ready_at = time.monotonic() + self.scenario.restore_recovery_s
        for source, target in targets.items():
            saved = snap.contents[source]
            self.indices[target] = FakeIndex(
                target,
                max(0, saved.docs - self.scenario.restore_doc_loss.get(target, 0)),
                saved.primaries,
                saved.replicas,
                unassigned_reason=self.scenario.restore_unassigned,
                ready_at=ready_at,
                aliases=dict(saved.aliases) if include_aliases else {},
            )
        return {"accepted": True}

    def _check_write_aliases(self, restored: dict[str, dict[str, bool]]) -> None:
        """Like the metadata validation of a restore: an alias may have only one write index."""
        writers: dict[str, list[str]] = {}
        for name, idx in self.indices.items():
            if name not in restored:
                for alias, is_write in idx.aliases.items():
                    if is_write:
                        writers.setdefault(alias, []).append(name)
        for name, aliases in restored.items():
            for alias, is_write in aliases.items():
                if is_write:
                    writers.setdefault(alias, []).append(name)
        for alias, names in writers.items():
            if len(names) > 1:
                raise EsError(
                    500, "illegal_state_exception", f"alias [{alias}] has more than one write index [{','.join(names)}]"
                )


@contextlib.contextmanager
def fake_elasticsearch(version: str = "8.15.3", **kwargs: Any) -> Iterator[FakeElasticsearch]:
    """Run a :class:`FakeElasticsearch` for the duration of a ``with`` block."""
    fake = FakeElasticsearch(version, **kwargs)
    with fake:
        yield fake


def _parse_time(text: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h)?", text.strip())
    if not match:
        raise EsError(400, "illegal_argument_exception", f"failed to parse setting [timeout] with value [{text}]")
    factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 0.001}[match.group(2)]
    return int(match.group(1)) * factor


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def _version_id(version: str) -> int:
    major, minor, patch = ((*_version_tuple(version), 0, 0, 0))[:3]
    return major * 1_000_000 + minor * 10_000 + patch * 100 + 99


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"
