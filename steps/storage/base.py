"""The object-store interface shared by the ``s3://`` and ``file://`` backends."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from steps.runtime.errors import IntegrityError, UsageError

MiB = 2**20
READ_CHUNK = 1 * MiB


class Readable(Protocol):
    """Anything with ``read(n) -> bytes`` (a pipe, a file, a decompressor)."""

    def read(self, n: int = -1, /) -> bytes:
        """Read up to ``n`` bytes; ``b""`` at the end."""
        ...


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: key relative to the store root, and its size."""

    key: str
    size: int


class ObjectNotFound(IntegrityError):
    """The object the catalog or a manifest names is not in the store."""


class ObjectExists(IntegrityError):
    """A write-once object is already there (objects are never rewritten)."""


class ObjectStore(abc.ABC):
    """Write-once object storage addressed by keys relative to the store URL's prefix."""

    url: str

    @abc.abstractmethod
    def put_stream(self, key: str, source: Readable, *, size_hint: int | None = None) -> int:
        """Store everything ``source`` yields under ``key``; return the byte count.

        Fails with :class:`ObjectExists` if the key exists. If reading ``source`` raises, nothing is
        left visible under ``key``.
        """

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Create a small object; :class:`ObjectExists` if it already exists."""

    @abc.abstractmethod
    def iter_read(self, key: str, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
        """Yield the object's bytes; :class:`ObjectNotFound` if missing."""

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """Size of ``key``, or ``None`` if it does not exist."""

    @abc.abstractmethod
    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` (recursive), in ascending key order."""

    @abc.abstractmethod
    def delete(self, keys: list[str]) -> None:
        """Delete ``keys`` (missing keys are ignored)."""

    def get_bytes(self, key: str) -> bytes:
        """The whole object (for small objects such as manifests)."""
        return b"".join(self.iter_read(key))

    def ensure_encryption(self, sse: str, kms_key_id: str | None) -> str:
        """Make default encryption of the bucket ``sse``; return what was done."""
        raise UsageError(f"{self.url}: default encryption applies to s3:// stores only")

    def ensure_lifecycle(self, prefix: str, expire_days: int | None, rule_id: str) -> str:
        """Install a lifecycle rule for ``prefix``; return what was done."""
        raise UsageError(f"{self.url}: lifecycle rules apply to s3:// stores only")


def read_exactly(source: Readable, n: int) -> bytearray:
    """Read until ``n`` bytes or end of stream (pipes return short reads).

    Reads of at most :data:`READ_CHUNK` go straight into one buffer of ``n`` bytes, allocated when the
    first byte arrives: this holds the part plus one chunk (joining a list of chunks would hold it twice).
    """
    buf = bytearray()
    filled = 0
    while filled < n:
        chunk = source.read(min(n - filled, READ_CHUNK))
        if not chunk:
            break
        if not buf:
            buf = bytearray(n)
        buf[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    del buf[filled:]
    return buf
