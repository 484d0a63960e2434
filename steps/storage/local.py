"""``file:///path`` backend: the same write-once semantics on a local or mounted filesystem."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from steps.storage.base import READ_CHUNK, ObjectExists, ObjectInfo, ObjectNotFound, ObjectStore, Readable

_TMP_MARK = ".tmp-"


class FileStore(ObjectStore):
    """Objects are files under ``root``; writes go to a temp file and are linked into place."""

    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.url = url

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents and path != self.root.resolve():
            raise ValueError(f"key {key!r} escapes the store root")
        return path

    def _publish(self, tmp: Path, final: Path, key: str) -> None:
        try:
            os.link(tmp, final)
        except FileExistsError as exc:
            raise ObjectExists(f"{self.url}/{key} already exists; backups never overwrite objects") from exc
        finally:
            tmp.unlink(missing_ok=True)

    def _write(self, key: str, source: Readable) -> int:
        final = self._path(key)
        if final.exists():
            raise ObjectExists(f"{self.url}/{key} already exists; backups never overwrite objects")
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f"{final.name}{_TMP_MARK}{secrets.token_hex(4)}")
        written = 0
        try:
            with open(tmp, "wb") as fh:
                while chunk := source.read(READ_CHUNK):
                    fh.write(chunk)
                    written += len(chunk)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._publish(tmp, final, key)
        return written

    def put_stream(self, key: str, source: Readable, *, size_hint: int | None = None) -> int:
        """See :meth:`ObjectStore.put_stream`."""
        return self._write(key, source)

    def put_bytes(self, key: str, data: bytes) -> None:
        """See :meth:`ObjectStore.put_bytes`."""
        import io

        self._write(key, io.BytesIO(data))

    def iter_read(self, key: str, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
        """See :meth:`ObjectStore.iter_read`."""
        path = self._path(key)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed in the generator's finally
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"{self.url}/{key} does not exist") from exc
        try:
            while chunk := fh.read(chunk_size):
                yield chunk
        finally:
            fh.close()

    def head(self, key: str) -> ObjectInfo | None:
        """See :meth:`ObjectStore.head`."""
        try:
            return ObjectInfo(key, self._path(key).stat().st_size)
        except FileNotFoundError:
            return None

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        """See :meth:`ObjectStore.list`."""
        found: list[ObjectInfo] = []
        base = self.root.resolve()
        # Walk from the deepest existing directory of the prefix.
        start = self._path(prefix.rsplit("/", 1)[0]) if "/" in prefix else base
        if not start.is_dir():
            return iter(())
        for dirpath, _dirs, files in os.walk(start):
            for name in files:
                if _TMP_MARK in name:
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(base).as_posix()
                if key.startswith(prefix):
                    found.append(ObjectInfo(key, full.stat().st_size))
        return iter(sorted(found, key=lambda o: o.key))

    def delete(self, keys: list[str]) -> None:
        """See :meth:`ObjectStore.delete`."""
        base = self.root.resolve()
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            parent = path.parent
            while parent != base:
                with contextlib.suppress(OSError):
                    parent.rmdir()
                if parent.exists():
                    break
                parent = parent.parent
