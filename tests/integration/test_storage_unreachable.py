"""An unreachable object store is never mistaken for a missing object.

The DR exit handler's ``kube scale-up --missing-ok`` and ``dns rollback``, and ``catalog seal``, read a
record and treat "not there" as "nothing to do". When S3 cannot be reached they must exit 1 (Argo
retries) and change nothing; a record that is really missing keeps the no-op. Real moto S3, reached
directly, through a proxy that resets every connection, or at a port where nothing listens.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from steps.storage import open_store
from steps.storage.catalog import Catalog, new_run_id
from steps.storage.manifest import ComponentManifest, utcnow
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.kube import FakeKube
from tests.faults import FaultPlan, FaultProxy
from tests.harness import S3Server, StepRun, free_port, run_step

TENANT = "acme"
OP = "dr-1"
ZONE, NAME, TOKEN = "example.com", "app.example.com", "cf-Token-3c9e51a7d2"
OLD, NEW = "old-lb.example.net", "new-lb.example.net"
FAST = {"TENANT_DR_S3_CONNECT_TIMEOUT": "1", "TENANT_DR_S3_READ_TIMEOUT": "2"}
NO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    "AWS_CONFIG_FILE": "/nonexistent/config",
}


@pytest.fixture(params=["reset", "dead-port"])
def broken(request: pytest.FixtureRequest, s3: S3Server) -> Iterator[str]:
    """An S3 endpoint that never answers: every connection reset, or nothing listening."""
    if request.param == "dead-port":
        yield f"http://127.0.0.1:{free_port()}"
        return
    port = urlparse(s3.endpoint).port
    assert port is not None
    with FaultProxy(port, FaultPlan(reset_after=0, every=1)) as proxy:
        yield proxy.url
        assert proxy.faults >= 1


def on(endpoint: str, **extra: str) -> dict[str, str]:
    """Env of a step that reaches S3 at ``endpoint``."""
    return {"AWS_ENDPOINT_URL": endpoint, **FAST, **extra}


# ---- kube scale-up --missing-ok (the DR rollback's "scale the old tenant back up") -------------


def scale_up(kube: FakeKube, tmp_path: Path, store: str, env: dict[str, str]) -> StepRun:
    kubeconfig = str(kube.kubeconfig(tmp_path / "kubeconfig"))
    args = ["scale-up", "--kubeconfig", kubeconfig, "--tenant", TENANT, "--store", store, "--operation", OP]
    args += ["--missing-ok", "--confirm", "--timeout", "30", "--poll-seconds", "0.1"]
    return run_step("kube", args, env=env, timeout=180)


def hermes_replicas(kube: FakeKube) -> int:
    deployment = kube.state.get("deployments", "atlas", "hermes")
    assert deployment is not None
    return int(deployment["spec"]["replicas"])


@pytest.fixture
def fenced(fake_kube: FakeKube) -> FakeKube:
    """The old tenant scaled to 0 by the fence step."""
    fake_kube.state.namespace("atlas")
    fake_kube.state.deployment("atlas", "hermes", replicas=0)
    return fake_kube


def test_scale_up_missing_ok_exits_1_and_scales_nothing_when_s3_is_unreachable(
    s3: S3Server, bucket: str, fenced: FakeKube, tmp_path: Path, broken: str
) -> None:
    store = f"s3://{bucket}/p"
    record = {"workloads": {"atlas/deployment/hermes": 3}, "recorded_at": "2026-11-22T03:00:00Z"}
    s3.client().put_object(
        Bucket=bucket, Key=f"p/{TENANT}/state/{OP}/replicas-apps.json", Body=json.dumps(record).encode()
    )

    run = scale_up(fenced, tmp_path, store, on(broken))
    assert run.code == 1, run.stdout
    assert "cannot reach the object store" in run.error
    assert hermes_replicas(fenced) == 0
    assert not [r for r in fenced.state.requests if r.method == "PATCH"]

    retried = scale_up(fenced, tmp_path, store, on(s3.endpoint))  # Argo's retry once S3 is back
    assert retried.code == 0, retried.stdout
    assert retried.result["replicas"] == {"atlas/deployment/hermes": 3}
    assert hermes_replicas(fenced) == 3


def test_scale_up_missing_ok_is_still_a_no_op_when_nothing_was_recorded(
    s3: S3Server, bucket: str, fenced: FakeKube, tmp_path: Path
) -> None:
    run = scale_up(fenced, tmp_path, f"s3://{bucket}/p", on(s3.endpoint))
    assert run.code == 0, run.stdout
    assert run.result["scaled_up"] is False
    assert hermes_replicas(fenced) == 0


def test_scale_up_without_credentials_is_a_config_error_not_a_missing_record(
    s3: S3Server, bucket: str, fenced: FakeKube, tmp_path: Path
) -> None:
    run = scale_up(fenced, tmp_path, f"s3://{bucket}/p", on(s3.endpoint, **NO_CREDENTIALS))
    assert run.code == 2, run.stdout
    assert "no AWS credentials" in run.error and "hint:" in run.error
    assert hermes_replicas(fenced) == 0


# ---- dns rollback (the DR rollback's "point the record back") ----------------------------------


@pytest.fixture
def cf() -> Iterator[FakeCloudflare]:
    with FakeCloudflare() as fake:
        fake.add_token(TOKEN)
        fake.add_zone(ZONE)
        yield fake


def dns(action: str, cf: FakeCloudflare, store: str, env: dict[str, str], *extra: str) -> StepRun:
    args = [action, "--zone", ZONE, "--record", NAME, "--api-base-url", cf.api_url, "--max-retries", "1"]
    args += ["--tenant", TENANT, "--store", store, "--operation", OP, "--confirm", *extra]
    return run_step("dns", args, env={"CLOUDFLARE_API_TOKEN": TOKEN, **env}, timeout=180)


def cname(cf: FakeCloudflare) -> list[str]:
    return [r["content"] for r in cf.records(ZONE, NAME) if r["type"] == "CNAME"]


def test_dns_rollback_exits_1_and_changes_nothing_when_s3_is_unreachable(
    s3: S3Server, bucket: str, cf: FakeCloudflare, broken: str
) -> None:
    store = f"s3://{bucket}/p"
    cf.add_record(ZONE, "CNAME", NAME, OLD)
    cutover = dns("cutover", cf, store, on(s3.endpoint), "--target", NEW)
    assert cutover.code == 0, cutover.stdout
    assert cname(cf) == [NEW]
    writes = len(cf.writes())

    run = dns("rollback", cf, store, on(broken))
    assert run.code == 1, run.stdout
    assert "cannot reach the object store" in run.error
    assert cname(cf) == [NEW] and len(cf.writes()) == writes

    retried = dns("rollback", cf, store, on(s3.endpoint))
    assert retried.code == 0, retried.stdout
    assert retried.result["rolled_back"] is True
    assert cname(cf) == [OLD]


def test_dns_rollback_is_still_a_no_op_without_a_recorded_cutover(
    s3: S3Server, bucket: str, cf: FakeCloudflare
) -> None:
    cf.add_record(ZONE, "CNAME", NAME, OLD)
    run = dns("rollback", cf, f"s3://{bucket}/p", on(s3.endpoint))
    assert run.code == 0, run.stdout
    assert run.result["rolled_back"] is False
    assert cf.writes() == []


# ---- catalog seal ------------------------------------------------------------------------------


def backed_up_run(url: str) -> str:
    """A run whose ``probe`` component completed (object + manifest), not sealed yet."""
    catalog = Catalog(open_store(url), TENANT)
    run_id, now = new_run_id(), utcnow()
    record = catalog.put_small(run_id, "probe", catalog.new_attempt(), "data.json", b'{"ok": true}')
    manifest = ComponentManifest(
        tenant=TENANT, run_id=run_id, component="probe", started_at=now, finished_at=now, objects=[record]
    )
    assert catalog.write_manifest(manifest)
    return run_id


def seal(url: str, run_id: str, env: dict[str, str]) -> StepRun:
    args = ["seal", "--tenant", TENANT, "--store", url, "--run-id", run_id, "--components", "probe"]
    return run_step("catalog", args, env=env, timeout=180)


def test_seal_exits_1_when_s3_is_unreachable_and_seals_on_retry(s3: S3Server, bucket: str, broken: str) -> None:
    url = f"s3://{bucket}/p"
    run_id = backed_up_run(url)
    run = seal(url, run_id, on(broken))
    assert run.code == 1, run.stdout
    assert "cannot reach the object store" in run.error
    assert not Catalog(open_store(url), TENANT).list_runs()[0].complete

    retried = seal(url, run_id, on(s3.endpoint))
    assert retried.code == 0, retried.stdout
    assert Catalog(open_store(url), TENANT).list_runs()[0].complete


def test_seal_of_a_run_without_its_manifest_is_still_exit_3(s3: S3Server, bucket: str) -> None:
    url = f"s3://{bucket}/p"
    run = seal(url, new_run_id(), on(s3.endpoint))
    assert run.code == 3 and "no manifest for probe" in run.error


def test_seal_without_credentials_is_a_config_error(s3: S3Server, bucket: str) -> None:
    url = f"s3://{bucket}/p"
    run_id = backed_up_run(url)
    run = seal(url, run_id, on(s3.endpoint, **NO_CREDENTIALS))
    assert run.code == 2 and "no AWS credentials" in run.error, run.stdout
