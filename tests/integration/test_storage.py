"""Object store + streaming, against both backends (file:// and a real S3 HTTP endpoint: moto server)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from steps.runtime.errors import ExitCode, IntegrityError
from steps.storage import ObjectExists, open_store
from steps.storage.base import READ_CHUNK, MiB
from steps.storage.catalog import Catalog, new_run_id
from steps.storage.s3 import S3Settings, S3Store, part_size_for
from steps.storage.stream import verify
from tests.harness import REPO, S3Server, run_step

TENANT = "acme"


def probe(store_url: str, run_id: str, mib: int, fail_after: int = 0) -> dict[str, Any]:
    """Stream ``mib`` MiB from a producer process into the catalog (tests/stream_probe.py)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.stream_probe",
            "--store",
            store_url,
            "--tenant",
            TENANT,
            "--run-id",
            run_id,
            "--mib",
            str(mib),
            "--fail-after",
            str(fail_after),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        timeout=600,
    )
    assert proc.stdout.strip(), proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def flip_one_byte(store_url: str, key: str, tmp_path: Path, s3_client: Any) -> None:
    """Corrupt a stored object behind the catalog's back, as bit rot or tampering would."""
    if store_url.startswith("file://"):
        path = Path(store_url.removeprefix("file://")) / key
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
        return
    bucket, prefix = store_url.removeprefix("s3://").split("/", 1)
    full = f"{prefix}/{key}"
    body = bytearray(s3_client.get_object(Bucket=bucket, Key=full)["Body"].read())
    body[len(body) // 2] ^= 0x01
    s3_client.put_object(Bucket=bucket, Key=full, Body=bytes(body))


@pytest.mark.slow
def test_200mb_round_trip_with_bounded_memory(store_url: str) -> None:
    run_id = new_run_id()
    written = probe(store_url, run_id, 200)
    assert written["producer_exit"] == 0 and written["manifest"] is True
    assert written["raw_size"] == 200 * 2**20
    assert written["peak_rss_mb"] < 150, written
    # read back through the CLI: every byte decompressed and checked against both sha256s
    res = run_step(
        "catalog", ["verify", "--tenant", TENANT, "--store", store_url, "--run-id", run_id, "--components", "probe"]
    )
    assert res.code == 0, res.stderr
    assert res.result["verified_objects"] == {"probe": 1}
    assert res.peak_rss_mb < 150, res.peak_rss_mb


def test_flipped_byte_fails_verification_with_exit_3(store_url: str, tmp_path: Path, s3: S3Server) -> None:
    run_id = new_run_id()
    assert probe(store_url, run_id, 3)["manifest"] is True
    catalog = Catalog(open_store(store_url), TENANT)
    manifest = catalog.read_manifest(run_id, "probe")
    key = catalog.object_key(manifest, manifest.objects[0])
    flip_one_byte(store_url, key, tmp_path, s3.client() if store_url.startswith("s3") else None)
    with pytest.raises(IntegrityError) as err:
        verify(catalog.store, key, manifest.objects[0])
    assert err.value.exit_code == ExitCode.INTEGRITY
    res = run_step("catalog", ["verify", "--tenant", TENANT, "--store", store_url, "--run-id", run_id])
    assert res.code == 3
    assert "corrupt" in res.error or "does not match its manifest" in res.error


def test_failed_producer_leaves_no_manifest_and_run_is_never_latest(store_url: str) -> None:
    good = new_run_id(datetime(2026, 11, 1, 3, 0, tzinfo=UTC))
    assert probe(store_url, good, 1)["manifest"] is True
    seal = run_step(
        "catalog", ["seal", "--tenant", TENANT, "--store", store_url, "--run-id", good, "--components", "probe"]
    )
    assert seal.code == 0, seal.stderr

    bad = new_run_id()  # newer than `good`
    result = probe(store_url, bad, 8, fail_after=3)
    assert result["producer_exit"] == 1 and result["manifest"] is False
    catalog = Catalog(open_store(store_url), TENANT)
    runs = {r.run_id: r for r in catalog.list_runs()}
    assert runs[bad].bytes > 0  # the truncated object is there ...
    assert runs[bad].components == set() and not runs[bad].complete  # ... but nothing claims it
    latest = run_step("catalog", ["latest", "--tenant", TENANT, "--store", store_url])
    assert latest.result["run_id"] == good
    refused = run_step(
        "catalog", ["seal", "--tenant", TENANT, "--store", store_url, "--run-id", bad, "--components", "probe"]
    )
    assert refused.code == 3 and "no manifest for probe" in refused.error
    assert not catalog.list_runs()[-1].complete


def test_objects_are_written_once(store_url: str) -> None:
    store = open_store(store_url)
    store.put_bytes("acme/x/one.json", b"{}")
    with pytest.raises(ObjectExists) as err:
        store.put_bytes("acme/x/one.json", b"{ }")
    assert err.value.exit_code == ExitCode.INTEGRITY
    with pytest.raises(ObjectExists):
        store.put_stream("acme/x/one.json", io.BytesIO(b"other"))
    assert store.get_bytes("acme/x/one.json") == b"{}"


def test_multipart_upload_is_used_and_reassembled(s3: S3Server, bucket: str) -> None:
    store = open_store(f"s3://{bucket}/mp", part_size_mib=5, max_buffer_mib=10)
    data = bytes(range(256)) * (13 * 2**20 // 256)  # 13 MiB -> 3 parts of 5/5/3 MiB
    assert store.put_stream("obj", io.BytesIO(data)) == len(data)
    head = s3.client().head_object(Bucket=bucket, Key="mp/obj")
    assert head["ETag"].strip('"').endswith("-3")
    assert b"".join(store.iter_read("obj")) == data


class PatternSource:
    """``size`` bytes of a shifting random pattern, made as they are read (nothing held) and hashed."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = os.urandom(MiB + 4093)
        self.produced = 0
        self.sha256 = hashlib.sha256()

    def read(self, n: int = -1, /) -> bytes:
        n = min(self.left if n < 0 else n, self.left, MiB)
        start = self.produced % 4093
        chunk = self.block[start : start + n]
        self.left -= n
        self.produced += n
        self.sha256.update(chunk)
        return chunk


def test_growing_parts_keep_upload_memory_within_max_buffer_plus_the_part_being_read(s3: S3Server, bucket: str) -> None:
    """Parts that grow past --max-buffer-mib must not multiply: parts in flight are bounded in bytes.

    Growth starts after part 2 and doubles every part here (after 5,000 and every 1,000 in production),
    so a 80 MiB stream exercises the parts of a ~300 GiB one.
    """
    base, buffer = 5 * MiB, 10 * MiB
    settings = S3Settings(
        bucket, "grow", endpoint=s3.endpoint, part_size=base, max_buffer=buffer, growth_after=2, growth_every=1
    )
    store = S3Store(settings, f"s3://{bucket}/grow")
    sizes = [part_size_for(n, base, 2, 1) for n in range(1, 6)]
    assert [size // MiB for size in sizes] == [5, 5, 10, 20, 40]
    source = PatternSource(sum(sizes))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        assert store.put_stream("obj", source) == sum(sizes)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    # parts in flight (<= max_buffer) + the part being read + one read chunk + boto3's own small change
    assert peak <= buffer + max(sizes) + READ_CHUNK + 4 * MiB, f"peak {peak / MiB:.1f} MiB"
    assert s3.client().head_object(Bucket=bucket, Key="grow/obj")["ETag"].strip('"').endswith("-5")
    digest = hashlib.sha256()
    for chunk in store.iter_read("obj"):
        digest.update(chunk)
    assert digest.hexdigest() == source.sha256.hexdigest()


def test_sse_is_requested_on_every_object(s3: S3Server, bucket: str) -> None:
    store = open_store(f"s3://{bucket}/enc", sse="AES256", part_size_mib=5)
    store.put_bytes("small", b"x")
    store.put_stream("big", io.BytesIO(b"y" * (6 * 2**20)))
    for key in ("enc/small", "enc/big"):
        assert s3.client().head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"


def test_missing_bucket_and_unreachable_endpoint_are_one_line_errors(tmp_path: Path) -> None:
    res = run_step("catalog", ["list", "--tenant", TENANT, "--store", "s3://no-such-bucket-here/x"])
    assert res.code == 2 and "does not exist" in res.error
    res = run_step(
        "catalog",
        ["list", "--tenant", TENANT, "--store", "s3://some-bucket/x"],
        env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
        timeout=120,
    )
    assert res.code == 1 and "cannot reach the object store" in res.error
    assert "Traceback" not in res.stderr
