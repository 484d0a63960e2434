"""The backup catalog: run ids, component manifests, RUN.json, latest, seal, prune, freshness.

Layout (relative to the store URL)::

    <tenant>/runs/<run_id>/<component>/<attempt>/...   data objects of one step attempt
    <tenant>/runs/<run_id>/<component>/manifest.json   written last: the component is complete
    <tenant>/runs/<run_id>/RUN.json                    written by seal: the run is complete
    <tenant>/es-repository/                            Elasticsearch's own repository (never pruned here)

Objects are written once and never rewritten, so every step attempt writes under its own
``<attempt>`` directory; the manifest names the objects of the attempt that completed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from steps.runtime.errors import IntegrityError, UsageError
from steps.runtime.log import get_logger
from steps.runtime.progress import Progress
from steps.storage.base import ObjectExists, ObjectStore, Readable
from steps.storage.manifest import (
    MANIFEST_NAME,
    RUN_RECORD_NAME,
    ComponentManifest,
    ComponentRef,
    ObjectRecord,
    RunRecord,
    dumps,
    parse_manifest,
    parse_run_record,
    utcnow,
)
from steps.storage.stream import put_compressed, put_plain

RUN_ID_RE = re.compile(r"^(\d{8}T\d{6}Z)-([0-9a-f]{6})$")
TENANT_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
COMPONENT_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
OPERATION_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{0,100}$")
STATE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")
LATEST = "latest"


def new_run_id(now: datetime | None = None) -> str:
    """A new, time-sortable run id: ``YYYYMMDDTHHMMSSZ-<6 hex>``."""
    moment = (now or utcnow()).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def run_id_time(run_id: str) -> datetime:
    """When the run started, read from its id; a malformed id is a usage error."""
    match = RUN_ID_RE.match(run_id)
    if not match:
        raise UsageError(
            f"run id {run_id!r} is malformed",
            hint="run ids look like 20261121T030000Z-1a2b3c; use 'latest' or 'catalog list'",
        )
    try:
        return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise UsageError(f"run id {run_id!r} has an impossible date", hint="check the run id") from exc


def check_tenant(tenant: str) -> str:
    """Validate a tenant name (it is a key prefix); usage error when invalid."""
    if not TENANT_RE.match(tenant or ""):
        raise UsageError(
            f"tenant name {tenant!r} is invalid",
            hint="use lowercase letters, digits and '-', at most 40 characters",
        )
    return tenant


@dataclass
class RunInfo:
    """One run as seen in the store listing."""

    run_id: str
    components: set[str] = field(default_factory=set)
    complete: bool = False
    bytes: int = 0

    @property
    def started_at(self) -> datetime:
        """Start time encoded in the run id."""
        return run_id_time(self.run_id)

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form."""
        return {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "complete": self.complete,
            "components": sorted(self.components),
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class PrunePlan:
    """Runs to delete and runs kept, with the reason for keeping."""

    delete: list[RunInfo]
    keep: list[RunInfo]
    protected: list[str]  # run ids kept only because of min_complete


class Catalog:
    """The catalog of one tenant in one store."""

    def __init__(self, store: ObjectStore, tenant: str) -> None:
        self.store = store
        self.tenant = check_tenant(tenant)

    # ---- keys --------------------------------------------------------------------------------------

    @property
    def runs_prefix(self) -> str:
        """``<tenant>/runs/``."""
        return f"{self.tenant}/runs/"

    @property
    def es_repository_path(self) -> str:
        """Where Elasticsearch keeps its repository, relative to the store."""
        return f"{self.tenant}/es-repository"

    def component_prefix(self, run_id: str, component: str) -> str:
        """``<tenant>/runs/<run_id>/<component>/``."""
        run_id_time(run_id)
        if not COMPONENT_RE.match(component):
            raise UsageError(f"component name {component!r} is invalid")
        return f"{self.runs_prefix}{run_id}/{component}/"

    def manifest_key(self, run_id: str, component: str) -> str:
        """Key of a component manifest."""
        return self.component_prefix(run_id, component) + MANIFEST_NAME

    def run_record_key(self, run_id: str) -> str:
        """Key of RUN.json."""
        run_id_time(run_id)
        return f"{self.runs_prefix}{run_id}/{RUN_RECORD_NAME}"

    # ---- listing -----------------------------------------------------------------------------------

    def list_runs(self) -> list[RunInfo]:
        """Every run of the tenant, oldest first."""
        runs: dict[str, RunInfo] = {}
        for obj in self.store.list_objects(self.runs_prefix):
            parts = obj.key[len(self.runs_prefix) :].split("/")
            if not RUN_ID_RE.match(parts[0]):
                continue
            info = runs.setdefault(parts[0], RunInfo(parts[0]))
            info.bytes += obj.size
            if parts[1:] == [RUN_RECORD_NAME]:
                info.complete = True
            elif len(parts) == 3 and parts[2] == MANIFEST_NAME:
                info.components.add(parts[1])
        return [runs[k] for k in sorted(runs)]

    def latest_complete(self) -> RunInfo | None:
        """The newest run sealed complete."""
        return next((r for r in reversed(self.list_runs()) if r.complete), None)

    def latest_with(self, component: str) -> RunInfo | None:
        """The newest run that has ``component``'s manifest (complete or not)."""
        return next((r for r in reversed(self.list_runs()) if component in r.components), None)

    def resolve(self, run_id: str | None, component: str | None = None) -> str:
        """Turn ``latest`` (or ``None``) into a run id; check that an explicit run exists.

        ``latest`` means the newest complete run; for a single component, the newest run with that
        component's manifest. Missing runs are integrity errors naming what is available.
        """
        runs = self.list_runs()
        if not run_id or run_id == LATEST:
            candidates = [r for r in runs if (component in r.components if component else r.complete)]
            if not candidates:
                what = f"with a complete {component} backup" if component else "sealed complete"
                raise IntegrityError(
                    f"no run of tenant {self.tenant!r} {what} in {self.store.url}",
                    hint=f"available runs: {_names(runs)}",
                )
            return candidates[-1].run_id
        run_id_time(run_id)
        found = next((r for r in runs if r.run_id == run_id), None)
        if found is None or (component and component not in found.components):
            what = f"run {run_id} has no complete {component} backup" if found else f"run {run_id} not found"
            have = [r for r in runs if component in r.components] if component else runs
            raise IntegrityError(
                f"{what} for tenant {self.tenant!r} in {self.store.url}",
                hint=f"available runs: {_names(have)}",
            )
        return run_id

    # ---- components --------------------------------------------------------------------------------

    def new_attempt(self) -> str:
        """A fresh attempt directory name for one step execution."""
        return f"a{secrets.token_hex(4)}"

    def put_object(
        self,
        run_id: str,
        component: str,
        attempt: str,
        name: str,
        source: Readable,
        *,
        size_hint: int | None = None,
        progress: Progress | None = None,
        meta: dict[str, object] | None = None,
    ) -> ObjectRecord:
        """Stream ``source`` through zstd into ``<component>/<attempt>/<name>``."""
        rel = f"{attempt}/{name}"
        key = self.component_prefix(run_id, component) + rel
        record = put_compressed(self.store, key, rel, source, size_hint=size_hint, progress=progress)
        return record.model_copy(update={"meta": dict(meta or {})}) if meta else record

    def put_small(
        self, run_id: str, component: str, attempt: str, name: str, data: bytes, meta: dict[str, object] | None = None
    ) -> ObjectRecord:
        """Store small uncompressed bytes (schema, token map, exported objects)."""
        rel = f"{attempt}/{name}"
        record = put_plain(self.store, self.component_prefix(run_id, component) + rel, rel, data)
        return record.model_copy(update={"meta": dict(meta or {})}) if meta else record

    def object_key(self, manifest: ComponentManifest, record: ObjectRecord) -> str:
        """Store key of an object named in ``manifest``."""
        return self.component_prefix(manifest.run_id, manifest.component) + record.name

    def has_manifest(self, run_id: str, component: str) -> bool:
        """Whether ``component`` of ``run_id`` is complete."""
        return self.store.head(self.manifest_key(run_id, component)) is not None

    def write_manifest(self, manifest: ComponentManifest) -> bool:
        """Write the manifest, after checking every object it names; ``False`` if one already existed.

        Called last by a backup step: its presence means the component is complete.
        """
        if manifest.tenant != self.tenant:
            raise UsageError(f"manifest is for tenant {manifest.tenant!r}, catalog is {self.tenant!r}")
        self.check_objects(manifest)
        try:
            self.store.put_bytes(self.manifest_key(manifest.run_id, manifest.component), dumps(manifest))
        except ObjectExists:
            get_logger().warning(
                "component already complete; keeping the existing manifest",
                component=manifest.component,
                run_id=manifest.run_id,
            )
            return False
        return True

    def read_manifest(self, run_id: str, component: str) -> ComponentManifest:
        """The manifest of ``component`` in ``run_id``; integrity error if missing or damaged."""
        key = self.manifest_key(run_id, component)
        if self.store.head(key) is None:
            raise IntegrityError(
                f"run {run_id} of tenant {self.tenant!r} has no {component} manifest",
                hint=f"the {component} backup of that run did not complete; pick another run",
            )
        manifest = parse_manifest(self.store.get_bytes(key), f"{self.store.url}/{key}")
        if (manifest.tenant, manifest.run_id, manifest.component) != (self.tenant, run_id, component):
            raise IntegrityError(
                f"{self.store.url}/{key} describes another backup ({manifest.tenant}/"
                f"{manifest.run_id}/{manifest.component})"
            )
        return manifest

    def check_objects(self, manifest: ComponentManifest) -> None:
        """Every object of ``manifest`` exists with its recorded size (cheap: one HEAD each)."""
        for record in manifest.objects:
            key = self.object_key(manifest, record)
            info = self.store.head(key)
            if info is None:
                raise IntegrityError(f"{self.store.url}/{key} named in the {manifest.component} manifest is missing")
            if info.size != record.size:
                raise IntegrityError(
                    f"{self.store.url}/{key} has {info.size} bytes, the manifest says {record.size}",
                    hint="the object is partial or was replaced; use another run",
                )

    # ---- operation state (DR records) -------------------------------------------------------------

    def state_key(self, operation: str, name: str) -> str:
        """``<tenant>/state/<operation>/<name>.json``: prior state recorded by a DR operation."""
        if not OPERATION_RE.match(operation):
            raise UsageError(
                f"operation id {operation!r} is invalid",
                hint="use lowercase letters, digits, '.' and '-' (e.g. the Argo workflow name)",
            )
        if not STATE_NAME_RE.match(name):
            raise UsageError(f"state record name {name!r} is invalid")
        return f"{self.tenant}/state/{operation}/{name}.json"

    def record_once(self, operation: str, name: str, data: dict[str, Any]) -> dict[str, Any]:
        """Store ``data`` unless a record already exists; return the stored record (the first one wins).

        A re-run after a crash must not replace the original prior state (e.g. replicas already 0).
        """
        key = self.state_key(operation, name)
        existing = self.get_state(operation, name)
        if existing is not None:
            return existing
        with contextlib.suppress(ObjectExists):
            self.store.put_bytes(key, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
        stored = self.get_state(operation, name)
        assert stored is not None
        return stored

    def get_state(self, operation: str, name: str) -> dict[str, Any] | None:
        """A recorded state, or ``None``."""
        key = self.state_key(operation, name)
        if self.store.head(key) is None:
            return None
        try:
            value = json.loads(self.store.get_bytes(key))
        except json.JSONDecodeError as exc:
            raise IntegrityError(f"{self.store.url}/{key} is not valid JSON") from exc
        if not isinstance(value, dict):
            raise IntegrityError(f"{self.store.url}/{key} is not a JSON object")
        return value

    # ---- runs --------------------------------------------------------------------------------------

    def seal(self, run_id: str, components: Iterable[str]) -> RunRecord:
        """Write RUN.json once every named component's manifest is present and its objects exist."""
        wanted = sorted(set(components))
        if not wanted:
            raise UsageError("seal needs at least one component", hint="pass --components a,b,...")
        run_id_time(run_id)
        existing = self.store.head(self.run_record_key(run_id))
        if existing is not None:
            record = self.read_run_record(run_id)
            missing = set(wanted) - set(record.components)
            if missing:
                raise IntegrityError(f"run {run_id} is already sealed without {', '.join(sorted(missing))}")
            return record
        refs: dict[str, ComponentRef] = {}
        absent = [c for c in wanted if not self.has_manifest(run_id, c)]
        if absent:
            raise IntegrityError(
                f"cannot seal run {run_id}: no manifest for {', '.join(absent)}",
                hint="those component backups failed or are still running; the run stays incomplete",
            )
        for comp in wanted:
            data = self.store.get_bytes(self.manifest_key(run_id, comp))
            manifest = parse_manifest(data, self.manifest_key(run_id, comp))
            self.check_objects(manifest)
            refs[comp] = ComponentRef(
                manifest_sha256=hashlib.sha256(data).hexdigest(),
                objects=len(manifest.objects),
                bytes=manifest.total_bytes,
            )
        record = RunRecord(tenant=self.tenant, run_id=run_id, sealed_at=utcnow(), components=refs)
        try:
            self.store.put_bytes(self.run_record_key(run_id), dumps(record))
        except ObjectExists:
            return self.read_run_record(run_id)
        return record

    def read_run_record(self, run_id: str) -> RunRecord:
        """RUN.json of ``run_id``."""
        key = self.run_record_key(run_id)
        if self.store.head(key) is None:
            raise IntegrityError(f"run {run_id} of tenant {self.tenant!r} is not sealed complete")
        return parse_run_record(self.store.get_bytes(key), f"{self.store.url}/{key}")

    def prune_plan(self, older_than_days: int, min_complete: int, now: datetime | None = None) -> PrunePlan:
        """Runs older than ``older_than_days`` go, except the newest ``min_complete`` complete runs."""
        if older_than_days < 0 or min_complete < 0:
            raise UsageError("retention days and min_complete must be >= 0")
        cutoff = (now or utcnow()) - timedelta(days=older_than_days)
        runs = self.list_runs()
        complete = [r.run_id for r in runs if r.complete]
        newest_complete = set(complete[max(0, len(complete) - min_complete) :])
        delete, keep, protected = [], [], []
        for run in runs:
            if run.started_at >= cutoff:
                keep.append(run)
            elif run.run_id in newest_complete:
                keep.append(run)
                protected.append(run.run_id)
            else:
                delete.append(run)
        return PrunePlan(delete=delete, keep=keep, protected=protected)

    def delete_runs(self, runs: Iterable[RunInfo]) -> int:
        """Delete every object of ``runs`` (RUN.json first, so a half-deleted run is never complete)."""
        count = 0
        for run in runs:
            prefix = f"{self.runs_prefix}{run.run_id}/"
            keys = [o.key for o in self.store.list_objects(prefix)]
            record = self.run_record_key(run.run_id)
            manifests = [k for k in keys if k.endswith("/" + MANIFEST_NAME)]
            self.store.delete([k for k in keys if k == record])
            self.store.delete(manifests)
            self.store.delete([k for k in keys if k != record and k not in manifests])
            count += len(keys)
        return count

    def freshness(self, now: datetime | None = None) -> tuple[RunInfo | None, timedelta | None]:
        """The newest complete run and its age."""
        run = self.latest_complete()
        if run is None:
            return None, None
        return run, (now or utcnow()) - run.started_at


def _names(runs: list[RunInfo], limit: int = 5) -> str:
    if not runs:
        return "none"
    shown = [f"{r.run_id}{'' if r.complete else ' (incomplete)'}" for r in runs[-limit:]]
    more = f" and {len(runs) - limit} older" if len(runs) > limit else ""
    return ", ".join(reversed(shown)) + more
