"""Streaming through zstd with sha256 of the raw and the stored bytes, and verified reads."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import zstandard

from steps.runtime.errors import IntegrityError
from steps.runtime.progress import Progress
from steps.storage.base import READ_CHUNK, ObjectStore, Readable
from steps.storage.manifest import ObjectRecord

DEFAULT_LEVEL = 3


class HashingReader:
    """Wraps a readable: counts and sha256-hashes every byte read through it."""

    def __init__(self, source: Readable, progress: Progress | None = None) -> None:
        self.source = source
        self.progress = progress
        self.size = 0
        self._sha = hashlib.sha256()

    def read(self, n: int = -1, /) -> bytes:
        """Read from the source and account for it."""
        data = self.source.read(n)
        if data:
            self.size += len(data)
            self._sha.update(data)
            if self.progress is not None:
                self.progress.update(len(data))
        return data

    @property
    def sha256(self) -> str:
        """Hex digest of everything read so far."""
        return self._sha.hexdigest()


def _threads() -> int:
    """Number of zstd worker threads: ``TENANT_DR_ZSTD_THREADS`` (default 0 = compress in the calling thread).

    On small pods the producer (pg_dump, tar) and the uploader need the other cores; measured on
    2 cores, in-thread compression was faster and used half the memory of 2 worker threads.
    """
    value = os.environ.get("TENANT_DR_ZSTD_THREADS", "0")
    return int(value) if value.lstrip("-").isdigit() else 0


def put_compressed(
    store: ObjectStore,
    key: str,
    name: str,
    source: Readable,
    *,
    level: int = DEFAULT_LEVEL,
    size_hint: int | None = None,
    progress: Progress | None = None,
) -> ObjectRecord:
    """Compress ``source`` with zstd straight into ``store`` under ``key``; no temp files.

    Returns the manifest record (``name`` is the key relative to the component directory).
    """
    raw = HashingReader(source, progress)
    cctx = zstandard.ZstdCompressor(level=level, threads=_threads(), write_checksum=True)
    with cctx.stream_reader(cast(Any, raw), read_size=READ_CHUNK, closefd=False) as compressed:
        stored = HashingReader(compressed)
        size = store.put_stream(key, stored, size_hint=size_hint)
    if size != stored.size:
        raise IntegrityError(f"{key}: stored {size} bytes but produced {stored.size}")
    return ObjectRecord(
        name=name,
        size=stored.size,
        sha256=stored.sha256,
        raw_size=raw.size,
        raw_sha256=raw.sha256,
        compression="zstd",
    )


def put_plain(store: ObjectStore, key: str, name: str, data: bytes) -> ObjectRecord:
    """Store small uncompressed bytes (schemas, token maps) and describe them."""
    store.put_bytes(key, data)
    digest = hashlib.sha256(data).hexdigest()
    return ObjectRecord(
        name=name, size=len(data), sha256=digest, raw_size=len(data), raw_sha256=digest, compression="none"
    )


def iter_verified(
    store: ObjectStore, key: str, record: ObjectRecord, *, progress: Progress | None = None
) -> Iterator[bytes]:
    """Yield the raw (decompressed) bytes of ``record``; raise :class:`IntegrityError` at the end on mismatch.

    Data is yielded before the final check: callers that must not act on bad data call
    :func:`verify` first (or write to a temp file and use :func:`download_verified`).
    """
    stored_sha, raw_sha = hashlib.sha256(), hashlib.sha256()
    stored_size = raw_size = 0

    def stored_chunks() -> Iterator[bytes]:
        nonlocal stored_size
        for chunk in store.iter_read(key):
            stored_size += len(chunk)
            stored_sha.update(chunk)
            yield chunk

    where = f"{store.url}/{key}"
    if record.compression == "zstd":
        dctx = zstandard.ZstdDecompressor()
        reader = dctx.stream_reader(cast(Any, _IterReader(stored_chunks())), read_across_frames=True, closefd=False)
        try:
            while chunk := reader.read(READ_CHUNK):
                raw_size += len(chunk)
                raw_sha.update(chunk)
                if progress is not None:
                    progress.update(len(chunk))
                yield chunk
        except zstandard.ZstdError as exc:
            raise IntegrityError(
                f"{where} is corrupt: zstd cannot decode it ({exc})",
                hint="the stored object was damaged; restore from another run",
            ) from exc
    else:
        for chunk in stored_chunks():
            raw_size += len(chunk)
            raw_sha.update(chunk)
            if progress is not None:
                progress.update(len(chunk))
            yield chunk
    if stored_size != record.size or stored_sha.hexdigest() != record.sha256:
        raise IntegrityError(
            f"{where} does not match its manifest: size {stored_size} (expected {record.size}), "
            f"sha256 {stored_sha.hexdigest()[:12]}… (expected {record.sha256[:12]}…)",
            hint="the stored object was damaged or replaced; restore from another run",
        )
    if record.raw_sha256 is not None and (raw_sha.hexdigest() != record.raw_sha256 or raw_size != record.raw_size):
        raise IntegrityError(
            f"{where}: decompressed content does not match its manifest",
            hint="the stored object was damaged; restore from another run",
        )


def verify(store: ObjectStore, key: str, record: ObjectRecord, *, progress: Progress | None = None) -> None:
    """Read ``record`` through and check sizes and checksums; nothing is written anywhere."""
    for _ in iter_verified(store, key, record, progress=progress):
        pass


def ensure_space(directory: Path, need: int, what: str, hint: str) -> None:
    """Refuse up front (exit 3) when ``directory`` has fewer than ``need`` bytes free."""
    free = shutil.disk_usage(directory).free
    if need > free:
        raise IntegrityError(f"{what} need {need} bytes in {directory}, only {free} are free", hint=hint)


def download_verified(
    store: ObjectStore, key: str, record: ObjectRecord, dest: Path, *, progress: Progress | None = None
) -> Path:
    """Write the raw bytes of ``record`` to ``dest``; the file appears only after verification."""
    tmp = dest.with_name(dest.name + ".partial")
    try:
        with open(tmp, "wb") as fh:
            for chunk in iter_verified(store, key, record, progress=progress):
                fh.write(chunk)
        tmp.replace(dest)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise IntegrityError(
                f"no space left in {dest.parent} while writing {record.name} ({record.raw_size} bytes)",
                hint="free space there or point --work-dir at a larger volume",
            ) from exc
        raise
    return dest


class _IterReader:
    """A readable over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def read(self, n: int = -1, /) -> bytes:
        if n is None or n < 0:
            return self._buf + b"".join(self._chunks)
        while len(self._buf) < n:
            nxt = next(self._chunks, None)
            if nxt is None:
                break
            self._buf += nxt
        out, self._buf = self._buf[:n], self._buf[n:]
        return out
