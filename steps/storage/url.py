"""Store URLs: ``s3://bucket/prefix`` and ``file:///absolute/path``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from steps.runtime.errors import UsageError

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_HINT = "use s3://bucket/prefix or file:///absolute/path"


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL."""

    scheme: str
    bucket: str
    prefix: str
    path: Path | None

    @property
    def text(self) -> str:
        """Canonical form (no trailing slash)."""
        if self.scheme == "file":
            return f"file://{self.path}"
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


def parse_store_url(url: str) -> StoreURL:
    """Parse and check ``url``; a bad one is a usage error (exit 2)."""
    if not url or not url.strip():
        raise UsageError("store URL is empty", hint=_HINT)
    parsed = urlparse(url.strip())
    if parsed.scheme == "s3":
        bucket = parsed.netloc
        if not bucket:
            raise UsageError(f"store URL {url!r} has no bucket", hint=_HINT)
        if not _BUCKET.match(bucket):
            raise UsageError(f"store URL {url!r}: {bucket!r} is not a valid S3 bucket name", hint=_HINT)
        prefix = parsed.path.strip("/")
        if "//" in prefix or any(p in (".", "..") for p in prefix.split("/")):
            raise UsageError(f"store URL {url!r} has an invalid prefix", hint=_HINT)
        return StoreURL("s3", bucket, prefix, None)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise UsageError(f"store URL {url!r} is not an absolute file:/// path", hint=_HINT)
        return StoreURL("file", "", "", Path(parsed.path))
    raise UsageError(f"store URL {url!r} has unsupported scheme {parsed.scheme or '(none)'!r}", hint=_HINT)
