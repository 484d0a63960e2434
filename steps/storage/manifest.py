"""Component manifests and RUN.json: the catalog's records, written once and last."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from steps.runtime.errors import IntegrityError

M = TypeVar("M", bound="BaseModel")
MANIFEST_NAME = "manifest.json"
RUN_RECORD_NAME = "RUN.json"
FORMAT = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObjectRecord(_Strict):
    """One stored object of a component backup."""

    name: str = Field(description="key relative to the component directory")
    size: int = Field(ge=0, description="stored bytes")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the stored bytes")
    raw_size: int | None = Field(default=None, ge=0, description="bytes before compression")
    raw_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    compression: Literal["zstd", "none"] = "zstd"
    meta: dict[str, Any] = Field(default_factory=dict, description="e.g. database, pod, keyspace")


class ComponentManifest(_Strict):
    """Everything a restore or validation needs to know about one component of one run."""

    format: Literal[1] = 1
    tenant: str
    run_id: str
    component: str
    started_at: datetime
    finished_at: datetime
    objects: list[ObjectRecord]
    source: dict[str, Any] = Field(default_factory=dict, description="server/tool versions, endpoint")
    fingerprints: dict[str, Any] = Field(default_factory=dict, description="logical counts to verify")
    details: dict[str, Any] = Field(default_factory=dict)
    tool_version: str = ""

    @property
    def total_bytes(self) -> int:
        """Stored bytes of all objects."""
        return sum(o.size for o in self.objects)

    def object(self, name: str) -> ObjectRecord:
        """The record called ``name``."""
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise IntegrityError(f"{self.component} manifest of run {self.run_id} has no object {name!r}")


class ComponentRef(_Strict):
    """What RUN.json says about one sealed component."""

    manifest_sha256: str
    objects: int
    bytes: int


class RunRecord(_Strict):
    """RUN.json: written by the seal step when every component succeeded."""

    format: Literal[1] = 1
    tenant: str
    run_id: str
    status: Literal["complete"] = "complete"
    sealed_at: datetime
    components: dict[str, ComponentRef]


def utcnow() -> datetime:
    """Timezone-aware now (UTC)."""
    return datetime.now(UTC)


def dumps(model: BaseModel) -> bytes:
    """Stable JSON bytes for a record."""
    return (json.dumps(model.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode()


def parse_manifest(data: bytes, where: str) -> ComponentManifest:
    """Parse a manifest; a damaged or foreign file is an integrity error (exit 3)."""
    return _parse(ComponentManifest, data, where)


def parse_run_record(data: bytes, where: str) -> RunRecord:
    """Parse RUN.json; a damaged file is an integrity error (exit 3)."""
    return _parse(RunRecord, data, where)


def _parse(model: type[M], data: bytes, where: str) -> M:
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise IntegrityError(
            f"{where} is not a valid {model.__name__}: {loc}: {first['msg']}",
            hint="the catalog object is damaged; use another run",
        ) from exc
