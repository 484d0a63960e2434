"""Object store (``s3://``, ``file://``), streaming with zstd + sha256, manifests and the catalog."""

from __future__ import annotations

from steps.runtime.errors import UsageError
from steps.storage.base import MiB, ObjectExists, ObjectInfo, ObjectNotFound, ObjectStore
from steps.storage.local import FileStore
from steps.storage.url import StoreURL, parse_store_url

SSE_MODES = ("AES256", "aws:kms")


def open_store(
    url: str,
    *,
    region: str | None = None,
    sse: str | None = None,
    kms_key_id: str | None = None,
    part_size_mib: int = 16,
    max_buffer_mib: int = 64,
    checksums: str = "auto",
) -> ObjectStore:
    """Open the store named by ``url`` (no network I/O happens here)."""
    parsed = parse_store_url(url)
    if sse is not None and sse not in SSE_MODES:
        raise UsageError(f"unknown SSE mode {sse!r}", hint=f"use one of {', '.join(SSE_MODES)}")
    if sse == "aws:kms" and not kms_key_id:
        raise UsageError("SSE aws:kms needs a key id", hint="pass --sse-kms-key-id (or TENANT_DR_SSE_KMS_KEY_ID)")
    if not 5 <= part_size_mib <= 5120:
        raise UsageError(f"part size {part_size_mib} MiB is outside S3's 5..5120 MiB")
    if parsed.scheme == "file":
        assert parsed.path is not None
        return FileStore(parsed.path, parsed.text)
    from steps.storage.s3 import S3Settings, S3Store  # boto3 is imported only when an s3:// store is used

    settings = S3Settings(
        bucket=parsed.bucket,
        prefix=parsed.prefix,
        region=region,
        sse=sse,
        kms_key_id=kms_key_id,
        part_size=part_size_mib * MiB,
        max_buffer=max(max_buffer_mib, part_size_mib) * MiB,
        checksums=checksums,
    )
    return S3Store(settings, parsed.text)


__all__ = [
    "SSE_MODES",
    "FileStore",
    "ObjectExists",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "StoreURL",
    "open_store",
    "parse_store_url",
]
