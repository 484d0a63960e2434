"""Reliability of the object store path: connection resets, lost responses, stalls, Object Lock, concurrent runs.

A fault-injecting TCP proxy (tests/faults.py, or :class:`LostResponseProxy` here) sits between the
step process and the S3 endpoint.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlparse

import pytest

from steps.runtime.errors import ExitCode
from steps.storage import ObjectExists, open_store
from steps.storage.catalog import Catalog, new_run_id
from steps.storage.s3 import S3Settings, S3Store
from tests.faults import FaultPlan, FaultProxy
from tests.harness import REPO, S3Server, StepRun, free_port, run_step

TENANT = "acme"
FAST_TIMEOUTS = {"TENANT_DR_S3_READ_TIMEOUT": "2", "TENANT_DR_S3_CONNECT_TIMEOUT": "2"}


def probe(endpoint: str, url: str, run_id: str, mib: int, fail_after: int = 0) -> tuple[int, dict[str, object]]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.stream_probe",
            "--store",
            url,
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
        env={**os.environ, "AWS_ENDPOINT_URL": endpoint, "TENANT_DR_PART_SIZE_MIB": "5", **FAST_TIMEOUTS},
    )
    out = proc.stdout.strip().splitlines()
    return proc.returncode, (json.loads(out[-1]) if out else {"stderr": proc.stderr[-2000:]})


def multipart_parts(client: Any, bucket: str, prefix: str) -> list[int]:
    """Part count of every ``data.bin.zst`` under ``prefix`` (1 = a single PUT), from its ETag."""
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    etags = [o["ETag"].strip('"') for o in listed if o["Key"].endswith("data.bin.zst")]
    return [int(e.rsplit("-", 1)[1]) if "-" in e else 1 for e in etags]


def upstream_port(s3: S3Server) -> int:
    port = urlparse(s3.endpoint).port
    assert port is not None
    return port


def verify_cli(endpoint: str, url: str, run_id: str, **extra_env: str) -> StepRun:
    return run_step(
        "catalog",
        ["verify", "--tenant", TENANT, "--store", url, "--run-id", run_id, "--components", "probe"],
        env={"AWS_ENDPOINT_URL": endpoint, **FAST_TIMEOUTS, **extra_env},
        timeout=300,
    )


def test_upload_survives_connection_resets(s3: S3Server, bucket: str) -> None:
    url = f"s3://{bucket}/faults"
    with FaultProxy(upstream_port(s3), FaultPlan(reset_after=3 * 2**20, every=3, max_faults=6)) as proxy:
        run_id = new_run_id()
        code, result = probe(proxy.url, url, run_id, 40)
        assert code == 0, result
        assert result["manifest"] is True
        survived = proxy.injected
    assert survived >= 1  # parts (5 MiB) really were cut after 3 MiB and re-sent
    parts = multipart_parts(s3.client(), bucket, "faults/")
    assert len(parts) == 1 and parts[0] > 1, parts  # ~20 MiB stored in 5 MiB parts
    # byte-identical: the verified read (direct, no proxy) recomputes both sha256s
    res = verify_cli(s3.endpoint, url, run_id)
    assert res.code == 0, res.stderr


def test_upload_that_never_gets_through_fails_with_exit_1_and_no_manifest(s3: S3Server, bucket: str) -> None:
    url = f"s3://{bucket}/dead"
    run_id = new_run_id()
    with FaultProxy(upstream_port(s3), FaultPlan(reset_after=2 * 2**20, every=1)) as proxy:
        code, result = probe(proxy.url, url, run_id, 24)  # ~12 MiB stored: 5 MiB parts, each cut at 2 MiB
        assert proxy.injected >= 1
    assert code == 1 and result["exit_code"] == 1, result
    assert "cannot reach the object store" in str(result["error"])
    catalog = Catalog(open_store(url), TENANT)
    assert not catalog.has_manifest(run_id, "probe")
    assert all(not r.components for r in catalog.list_runs())
    # the multipart upload was aborted: no object under the key, and no upload left holding parts
    client = s3.client()
    assert multipart_parts(client, bucket, "dead/") == []
    assert client.list_multipart_uploads(Bucket=bucket, Prefix="dead/").get("Uploads", []) == []


def test_download_resumes_after_a_stall(s3: S3Server, bucket: str) -> None:
    url = f"s3://{bucket}/stall"
    run_id = new_run_id()
    code, result = probe(s3.endpoint, url, run_id, 12)
    assert code == 0, result
    with FaultProxy(
        upstream_port(s3), FaultPlan(stall_after=3 * 2**20, stall_seconds=5, every=1, max_injected=2)
    ) as proxy:
        res = verify_cli(proxy.url, url, run_id)
        assert proxy.injected == 2  # the first GET of the ~6 MiB object and its first Range GET stall
    assert res.code == 0, res.stderr
    resumed = [entry["offset"] for entry in res.logs if entry.get("msg") == "read interrupted, resuming"]
    assert len(resumed) == 2 and 0 < resumed[0] < resumed[1], res.stderr  # each resume continues mid-object


def test_backups_only_write_new_objects_on_an_object_lock_bucket(s3: S3Server) -> None:
    """Versioned + Object Lock bucket: a crashed attempt and its retry never create a second version."""
    client = s3.client()
    bucket = f"tdr-lock-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    client.put_object_lock_configuration(
        Bucket=bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    url = f"s3://{bucket}/locked"
    run_id = new_run_id()
    code, _ = probe(s3.endpoint, url, run_id, 16, fail_after=12)  # producer dies: the attempt is abandoned
    assert code == 1
    code, result = probe(s3.endpoint, url, run_id, 16)  # Argo's retry of the same run
    assert code == 0 and result["manifest"] is True, result
    parts = multipart_parts(client, bucket, "locked/")
    assert len(parts) == 2 and min(parts) > 1, parts  # ~6 and ~8 MiB stored, in 5 MiB parts
    seal = run_step(
        "catalog",
        ["seal", "--tenant", TENANT, "--store", url, "--run-id", run_id, "--components", "probe"],
        env={"AWS_ENDPOINT_URL": s3.endpoint},
    )
    assert seal.code == 0, seal.stderr
    versions = client.list_object_versions(Bucket=bucket, Prefix="locked/")
    per_key = Counter(v["Key"] for v in versions.get("Versions", []))
    assert per_key and max(per_key.values()) == 1, per_key
    assert not versions.get("DeleteMarkers")


def test_two_backups_of_one_tenant_at_once_do_not_interfere(s3: S3Server, bucket: str) -> None:
    url = f"s3://{bucket}/concurrent"
    ids = [new_run_id(), new_run_id()]
    results: list[tuple[int, dict[str, object]]] = []

    def go(rid: str) -> None:
        results.append(probe(s3.endpoint, url, rid, 10))

    threads = [threading.Thread(target=go, args=(rid,)) for rid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ids[0] != ids[1]
    assert all(code == 0 and r["manifest"] is True for code, r in results), results
    for rid in ids:
        res = verify_cli(s3.endpoint, url, rid)
        assert res.code == 0, res.stderr


@dataclass
class LostResponseProxy:
    """A proxy in front of S3 that loses the response to the first ``method`` request whose request line has ``target``.

    That request reaches S3 and is carried out; the client sees its connection reset instead of the
    answer, as when a NAT entry or load balancer drops a connection at the wrong moment. With
    ``lose=False`` the response passes. ``before_put`` runs when that PUT arrives, before it is
    forwarded (e.g. another writer creating the key first).
    """

    upstream_port: int
    target: bytes
    lose: bool = True
    method: bytes = b"PUT "
    before_put: Callable[[], None] | None = None
    port: int = field(default_factory=free_port)
    matched: int = 0
    lost: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> LostResponseProxy:
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.close()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _is_target(self, data: bytes) -> bool:
        with self._lock:
            if self.matched or not data.startswith(self.method) or self.target not in data.split(b"\r\n", 1)[0]:
                return False
            self.matched += 1
            return True

    def _serve(self, client: socket.socket) -> None:
        """Forward both directions in one thread (so closing a socket resets it at once); bounded."""
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        armed = False
        deadline = time.monotonic() + 120
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                ready, _, _ = select.select([client, upstream], [], [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        if self._is_target(data):
                            armed = True
                            if self.before_put:
                                self.before_put()
                        upstream.sendall(data)
                        continue
                    if armed and not data.startswith(b"HTTP/1.1 100"):
                        armed = False
                        if self.lose:
                            self.lost += 1
                            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                            return
                    client.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()


def test_small_put_whose_response_is_lost_is_written_once(s3: S3Server, bucket: str) -> None:
    """The retry of a conditional PUT gets 412 from its own first attempt: that is success, not exit 3."""
    data = os.urandom(200_000)  # below the part size: a single conditional PUT
    with LostResponseProxy(upstream_port(s3), b"/lost/acme/small.bin") as proxy:
        store = S3Store(S3Settings(bucket, "lost", endpoint=proxy.url), f"s3://{bucket}/lost")
        assert store.put_stream("acme/small.bin", io.BytesIO(data)) == len(data)
        assert proxy.lost == 1
    client = s3.client()
    listed = client.list_objects_v2(Bucket=bucket, Prefix="lost/").get("Contents", [])
    assert [o["Key"] for o in listed] == ["lost/acme/small.bin"]
    assert client.get_object(Bucket=bucket, Key="lost/acme/small.bin")["Body"].read() == data


def test_multipart_upload_whose_complete_response_is_lost_is_written_once(s3: S3Server, bucket: str) -> None:
    """The retried CompleteMultipartUpload finds its upload gone (it completed): the object is there, so success."""
    data = os.urandom(12 << 20)  # three 5 MiB parts
    with LostResponseProxy(upstream_port(s3), b"uploadId=", method=b"POST ") as proxy:
        store = S3Store(
            S3Settings(bucket, "lost-mpu", endpoint=proxy.url, part_size=5 << 20), f"s3://{bucket}/lost-mpu"
        )
        assert store.put_stream("acme/big.bin", io.BytesIO(data)) == len(data)
        assert proxy.lost == 1
    client = s3.client()
    assert client.get_object(Bucket=bucket, Key="lost-mpu/acme/big.bin")["Body"].read() == data
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_catalog_object_whose_put_response_is_lost_completes_the_backup(s3: S3Server, bucket: str) -> None:
    """The component backup path (zstd + sha256 into the catalog) of a small stream survives a lost response."""
    run_id = new_run_id()
    with LostResponseProxy(upstream_port(s3), b"/data.bin.zst") as proxy:
        code, result = probe(proxy.url, f"s3://{bucket}/cat", run_id, 2)
        assert proxy.lost == 1
    assert code == 0 and result["manifest"] is True, result
    res = verify_cli(s3.endpoint, f"s3://{bucket}/cat", run_id)
    assert res.code == 0, res.stderr


def test_put_that_loses_a_race_to_different_bytes_is_still_exit_3(s3: S3Server, bucket: str) -> None:
    """412 because another writer stored other bytes under the key first: never treated as ours."""
    client = s3.client()

    def other_writer() -> None:
        client.put_object(Bucket=bucket, Key="race/acme/state.json", Body=b'{"first": "writer"}')

    with LostResponseProxy(upstream_port(s3), b"/race/acme/state.json", lose=False, before_put=other_writer) as proxy:
        store = S3Store(S3Settings(bucket, "race", endpoint=proxy.url), f"s3://{bucket}/race")
        with pytest.raises(ObjectExists) as err:
            store.put_bytes("acme/state.json", b'{"second": "writer"}')
        assert proxy.matched == 1
    assert err.value.exit_code == ExitCode.INTEGRITY
    body = client.get_object(Bucket=bucket, Key="race/acme/state.json")["Body"].read()
    assert body == b'{"first": "writer"}'
