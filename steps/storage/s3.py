"""``s3://bucket/prefix`` backend on boto3, for AWS S3 and S3-compatible stores.

Uploads are our own bounded-memory multipart loop rather than ``upload_fileobj``: a pipe of unknown
length must fit in 10,000 parts (so part sizes grow as the stream grows) while the bytes held in
memory stay below ``max_buffer`` (s3transfer buffers up to ``chunksize x 10`` for non-seekable input).
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import boto3
import botocore.exceptions
from botocore.config import Config
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from steps.runtime.errors import StepError, TransientError, UsageError
from steps.runtime.log import get_logger
from steps.storage.base import (
    READ_CHUNK,
    MiB,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    Readable,
    read_exactly,
)

T = TypeVar("T")
MAX_PARTS = 10_000
MIN_PART = 5 * MiB
MAX_PART = 5 * 1024 * MiB
GROWTH_AFTER = 5_000  # parts of the base size before sizes start doubling
GROWTH_EVERY = 1_000  # parts per doubling after that
_RETRY_ATTEMPTS = 5


@dataclass(frozen=True)
class S3Settings:
    """How to reach and write the bucket."""

    bucket: str
    prefix: str
    region: str | None = None
    endpoint: str | None = None  # falls back to AWS_ENDPOINT_URL (boto3 reads it itself)
    sse: str | None = None  # "AES256" | "aws:kms" | None
    kms_key_id: str | None = None
    part_size: int = 16 * MiB
    max_buffer: int = 64 * MiB  # bytes of parts in flight (being uploaded) at once
    checksums: str = "auto"  # "auto" | "when_supported" | "when_required"
    # Part growth; only tests lower these, to make parts grow within a few MiB of stream.
    growth_after: int = GROWTH_AFTER
    growth_every: int = GROWTH_EVERY


def part_size_for(part_number: int, base: int, after: int = GROWTH_AFTER, every: int = GROWTH_EVERY) -> int:
    """Size of part ``part_number`` (1-based): ``base`` for ``after`` parts, then doubling every ``every``.

    With the default 16 MiB base, 10,000 parts hold about 1 TiB; a ``size_hint`` raises the base so
    that the hinted size fits in the first 5,000 parts and memory stays flat.
    """
    steps = (part_number - 1 - after) // every + 1 if part_number > after else 0
    return int(min(MAX_PART, base * (2**steps)))


def capacity(base: int) -> int:
    """Largest stream that fits in 10,000 parts with base part size ``base``."""
    return sum(part_size_for(n, base) for n in range(1, MAX_PARTS + 1))


def _md5(data: bytes | bytearray) -> str:
    """Content-MD5 header value: transport integrity everywhere, and required by Object Lock buckets."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _env_seconds(name: str, default: float) -> float:
    """A timeout from the environment (seconds), or ``default`` when unset or not a number."""
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


# Network trouble: connect failures and timeouts, connections closed or reset before or during a
# response (HTTPClientError is the parent of ConnectionClosedError, ReadTimeoutError and
# ResponseStreamingError), truncated bodies.
_NETWORK_ERRORS = (
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.IncompleteReadError,
)


def _is_transient(exc: BaseException) -> bool:
    """Whether retrying the same request may succeed."""
    if isinstance(exc, _NETWORK_ERRORS):
        return True
    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or status in (408, 429)
    return False


_io_retry = retry(
    retry=retry_if_exception(_is_transient),
    stop=stop_after_attempt(_RETRY_ATTEMPTS),
    wait=wait_exponential(multiplier=0.5, max=20),
    reraise=True,
)


class _InFlight:
    """Bytes of multipart parts handed to upload threads and not finished yet."""

    def __init__(self) -> None:
        self._bytes = 0
        self._changed = threading.Condition()

    def add(self, size: int) -> None:
        """A part of ``size`` bytes is handed over."""
        with self._changed:
            self._bytes += size

    def done(self, size: int) -> None:
        """A part of ``size`` bytes finished (uploaded or failed) and its memory is released."""
        with self._changed:
            self._bytes -= size
            self._changed.notify_all()

    def wait_until_at_most(self, limit: int) -> None:
        """Block until the parts in flight total at most ``limit`` bytes (every part finishes: bounded)."""
        with self._changed:
            self._changed.wait_for(lambda: self._bytes <= limit)


class S3Store(ObjectStore):
    """Objects under ``s3://bucket/prefix``."""

    def __init__(self, settings: S3Settings, url: str) -> None:
        self.settings = settings
        self.url = url
        endpoint = settings.endpoint or os.environ.get("AWS_ENDPOINT_URL") or None
        checksums = settings.checksums
        if checksums == "auto":  # S3-compatible stores often reject the default CRC checksums
            checksums = "when_required" if endpoint else "when_supported"
        config = Config(
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=_env_seconds("TENANT_DR_S3_CONNECT_TIMEOUT", 10),
            read_timeout=_env_seconds("TENANT_DR_S3_READ_TIMEOUT", 120),
            max_pool_connections=16,
            request_checksum_calculation=checksums,
            response_checksum_validation=checksums,
            s3={"addressing_style": "path"} if endpoint else {},
        )
        self.client: Any = boto3.client("s3", region_name=settings.region, endpoint_url=endpoint, config=config)

    # ---- helpers ---------------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        return f"{self.settings.prefix}/{key}" if self.settings.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.settings.prefix) + 1 :] if self.settings.prefix else full

    def _sse_args(self) -> dict[str, str]:
        args: dict[str, str] = {}
        if self.settings.sse:
            args["ServerSideEncryption"] = self.settings.sse
            if self.settings.sse == "aws:kms" and self.settings.kms_key_id:
                args["SSEKMSKeyId"] = self.settings.kms_key_id
        return args

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one S3 call with bounded retries and translate failures into step errors."""
        try:
            return _io_retry(fn)()
        except botocore.exceptions.ClientError as exc:
            raise self._translate(what, exc) from exc
        except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError) as exc:
            raise UsageError(
                f"{what}: no AWS credentials",
                hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or use a pod identity (IRSA)",
            ) from exc
        except _NETWORK_ERRORS as exc:
            raise TransientError(
                f"{what}: cannot reach the object store ({exc})",
                hint="check AWS_ENDPOINT_URL / network policy; Argo retries this step",
            ) from exc

    def _translate(self, what: str, exc: botocore.exceptions.ClientError) -> StepError:
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        msg = exc.response.get("Error", {}).get("Message", str(exc))
        if code == "NoSuchBucket":
            return UsageError(
                f"{what}: bucket {self.settings.bucket!r} does not exist",
                hint="create it or fix the store URL",
            )
        if code in ("NoSuchKey", "404", "NotFound"):
            return ObjectNotFound(f"{what}: object does not exist")
        if code in ("PreconditionFailed", "ConditionalRequestConflict") or status == 412:
            return ObjectExists(f"{what}: object already exists; backups never overwrite objects")
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403") or status == 403:
            return UsageError(f"{what}: access denied ({code})", hint="check the credentials and the bucket policy")
        if status >= 500 or status in (408, 429):
            return TransientError(f"{what}: object store error {status} {code}: {msg}")
        return UsageError(f"{what}: {code or status}: {msg}")

    # ---- interface -------------------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo | None:
        """See :meth:`ObjectStore.head`: ``None`` only when S3 answers 404; any other failure raises."""
        what = f"head {self.url}/{key}"
        try:
            resp = self._call(what, lambda: self.client.head_object(Bucket=self.settings.bucket, Key=self._key(key)))
        except ObjectNotFound:
            return None
        return ObjectInfo(key, int(resp["ContentLength"]))

    def put_bytes(self, key: str, data: bytes) -> None:
        """See :meth:`ObjectStore.put_bytes` (conditional ``If-None-Match: *`` where supported).

        A retried PUT whose first response was lost finds its own object (412): that counts as written
        when the stored bytes are ``data``.
        """
        what = f"write {self.url}/{key}"
        if self.head(key) is not None:
            raise ObjectExists(f"{what}: object already exists; backups never overwrite objects")
        args = {
            "Bucket": self.settings.bucket,
            "Key": self._key(key),
            "Body": data,
            "ContentMD5": _md5(data),
            **self._sse_args(),
        }

        def conditional_put() -> bool:
            """Store ``data`` unless the key exists; ``False`` if the store has no conditional writes."""
            try:
                self.client.put_object(IfNoneMatch="*", **args)
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "NotImplemented":
                    return False
                raise
            return True

        try:
            conditional = self._call(what, conditional_put)
        except ObjectExists:
            if not self._holds(key, data):
                raise
            get_logger().info("object already written by a retried request (response lost)", key=key)
            return
        if not conditional:
            self._call(what, lambda: self.client.put_object(**args))

    def _holds(self, key: str, data: bytes) -> bool:
        """Whether the object at ``key`` is exactly ``data``."""
        info = self.head(key)
        return info is not None and info.size == len(data) and self.get_bytes(key) == data

    def put_stream(self, key: str, source: Readable, *, size_hint: int | None = None) -> int:
        """See :meth:`ObjectStore.put_stream`.

        Memory is bounded by ``max_buffer`` bytes of parts in flight plus the part being read: the
        next part is read only once the parts in flight total at most ``max_buffer``.
        """
        what = f"upload {self.url}/{key}"
        if self.head(key) is not None:
            raise ObjectExists(f"{what}: object already exists; backups never overwrite objects")
        settings = self.settings
        base = max(settings.part_size, MIN_PART)
        if size_hint:
            base = max(base, -(-int(size_hint * 1.25) // settings.growth_after))
        data = read_exactly(source, base)
        if len(data) < base:
            self.put_bytes(key, bytes(data))
            return len(data)
        full = self._key(key)
        bucket = settings.bucket
        mpu = self._call(
            what,
            lambda: self.client.create_multipart_upload(Bucket=bucket, Key=full, **self._sse_args()),
        )
        upload_id = mpu["UploadId"]
        in_flight = _InFlight()
        failed = threading.Event()
        futures: list[Future[dict[str, Any]]] = []
        total = 0

        def upload(number: int, held: list[bytearray]) -> dict[str, Any]:
            # The part travels in a list that is emptied when its upload ends, so neither the executor's
            # work item nor the retry machinery's reference cycles (alive until the cyclic GC runs) keep
            # it in memory afterwards: the bytes in flight are what ``in_flight`` counts.
            size = len(held[0])
            try:
                resp = self._call(
                    f"{what} part {number}",
                    lambda: self.client.upload_part(
                        Bucket=bucket,
                        Key=full,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=held[0],
                        ContentMD5=_md5(held[0]),
                    ),
                )
                return {"PartNumber": number, "ETag": resp["ETag"]}
            except BaseException:
                failed.set()
                raise
            finally:
                held.clear()
                in_flight.done(size)

        try:
            workers = max(1, settings.max_buffer // base)
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-part") as pool:
                number = 1
                while data and not failed.is_set():
                    if number > MAX_PARTS:
                        raise UsageError(
                            f"{what}: stream exceeds {MAX_PARTS} parts",
                            hint="raise --part-size-mib (or pass a size hint) for streams this large",
                        )
                    in_flight.add(len(data))
                    futures.append(pool.submit(upload, number, [data]))
                    total += len(data)
                    del data
                    in_flight.wait_until_at_most(settings.max_buffer)
                    if failed.is_set():
                        break  # read no further part: the upload is aborted below
                    number += 1
                    data = read_exactly(
                        source, part_size_for(number, base, settings.growth_after, settings.growth_every)
                    )
                parts = [f.result() for f in futures]
            self._call(
                what,
                lambda: self.client.complete_multipart_upload(
                    Bucket=bucket, Key=full, UploadId=upload_id, MultipartUpload={"Parts": parts}
                ),
            )
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=bucket, Key=full, UploadId=upload_id)
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as abort_exc:
                get_logger().warning("abort multipart failed", key=key, error=str(abort_exc))
            raise
        return total

    def iter_read(self, key: str, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
        """See :meth:`ObjectStore.iter_read`; a dropped connection resumes with a Range request."""
        what = f"read {self.url}/{key}"
        bucket, full = self.settings.bucket, self._key(key)
        resp = self._call(what, lambda: self.client.get_object(Bucket=bucket, Key=full))
        etag = resp["ETag"]
        offset, resumes = 0, 0
        body = resp["Body"]
        while True:
            try:
                for chunk in body.iter_chunks(chunk_size):
                    offset += len(chunk)
                    yield chunk
                return
            except (botocore.exceptions.BotoCoreError, OSError) as exc:
                resumes += 1
                if resumes > _RETRY_ATTEMPTS:
                    raise TransientError(f"{what}: connection lost {resumes} times at byte {offset}") from exc
                get_logger().warning("read interrupted, resuming", key=key, offset=offset, error=str(exc))
                body = self._call(
                    what,
                    lambda at=offset: self.client.get_object(  # type: ignore[misc]
                        Bucket=bucket, Key=full, Range=f"bytes={at}-", IfMatch=etag
                    ),
                )["Body"]

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        """See :meth:`ObjectStore.list_objects`; each page is one retried request."""
        what = f"list {self.url}/{prefix}"
        args: dict[str, Any] = {"Bucket": self.settings.bucket, "Prefix": self._key(prefix)}
        while True:
            page = self._call(what, lambda a=dict(args): self.client.list_objects_v2(**a))  # type: ignore[misc]
            for obj in page.get("Contents", []):
                yield ObjectInfo(self._rel(obj["Key"]), int(obj["Size"]))
            if not page.get("IsTruncated"):
                return
            args["ContinuationToken"] = page["NextContinuationToken"]

    def delete(self, keys: list[str]) -> None:
        """See :meth:`ObjectStore.delete` (batches of 1,000)."""
        for i in range(0, len(keys), 1000):
            batch = [{"Key": self._key(k)} for k in keys[i : i + 1000]]
            resp = self._call(
                f"delete from {self.url}",
                lambda b=batch: self.client.delete_objects(  # type: ignore[misc]
                    Bucket=self.settings.bucket, Delete={"Objects": b, "Quiet": True}
                ),
            )
            if resp.get("Errors"):
                err = resp["Errors"][0]
                raise TransientError(f"delete {err.get('Key')}: {err.get('Code')} {err.get('Message')}")

    def ensure_encryption(self, sse: str, kms_key_id: str | None) -> str:
        """Set the bucket's default encryption (AES256 or aws:kms with a key id)."""
        rule: dict[str, Any] = {"SSEAlgorithm": sse}
        if sse == "aws:kms" and kms_key_id:
            rule["KMSMasterKeyID"] = kms_key_id
        self._call(
            f"set default encryption on {self.settings.bucket}",
            lambda: self.client.put_bucket_encryption(
                Bucket=self.settings.bucket,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": rule, "BucketKeyEnabled": True}]
                },
            ),
        )
        return f"default encryption {sse}"

    def ensure_lifecycle(self, prefix: str, expire_days: int | None, rule_id: str) -> str:
        """Upsert rule ``rule_id`` for ``prefix``, keeping every other rule of the bucket."""
        bucket = self.settings.bucket

        def current_rules() -> list[dict[str, Any]]:
            try:
                rules: list[dict[str, Any]] = self.client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
                    raise
                return []
            return rules

        current = self._call(f"read lifecycle of {bucket}", current_rules)
        rule: dict[str, Any] = {
            "ID": rule_id,
            "Status": "Enabled",
            "Filter": {"Prefix": self._key(prefix)},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2},
        }
        if expire_days:
            rule["Expiration"] = {"Days": expire_days}
            rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": 1}
        rules = [r for r in current if r.get("ID") != rule_id] + [rule]
        self._call(
            f"set lifecycle on {bucket}",
            lambda: self.client.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration={"Rules": rules}
            ),
        )
        return f"rule {rule_id} on {self._key(prefix)}" + (f" expires after {expire_days}d" if expire_days else "")
