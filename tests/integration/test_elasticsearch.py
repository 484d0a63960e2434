"""steps.elasticsearch through the real elasticsearch/elasticsearch7 clients against the HTTP-level fake.

Every step runs as a subprocess (``run_step``); the catalog lives in moto's S3 server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from steps.storage import open_store
from steps.storage.catalog import Catalog, new_run_id
from steps.storage.manifest import ComponentManifest, utcnow
from tests.fakes.elasticsearch import FakeBlobStore, FakeElasticsearch, fake_elasticsearch
from tests.harness import S3Server, StepRun, free_port, run_step

TENANT = "acme"
V8, V7, V9 = "8.15.3", "7.17.22", "9.0.2"


@pytest.fixture
def store(s3: S3Server, bucket: str) -> str:
    return f"s3://{bucket}/backups"


@pytest.fixture(params=[V8, V7])
def es(request: pytest.FixtureRequest) -> Iterator[FakeElasticsearch]:
    with fake_elasticsearch(request.param) as fake:
        fake.add_index("logs-1", docs=120, primaries=2, replicas=1)
        fake.add_index("users", docs=7)
        fake.add_index(".kibana_1", docs=3)
        yield fake


def step(action: str, fake: FakeElasticsearch, store: str, *args: str, env: dict[str, str] | None = None) -> StepRun:
    base = [action, "--tenant", TENANT, "--store", store, "--url", fake.url, "--poll-interval", "0.1"]
    creds = {"ES_USERNAME": fake.username or "", "ES_PASSWORD": fake.password or ""}
    return run_step("elasticsearch", [*base, *args], env={**creds, **(env or {})}, timeout=120)


def catalog(store: str) -> Catalog:
    return Catalog(open_store(store), TENANT)


def assert_no_secret(fake: FakeElasticsearch, *runs: StepRun) -> None:
    assert fake.password
    for r in runs:
        assert fake.password not in r.stdout + r.stderr


def test_backup_restore_round_trip(es: FakeElasticsearch, store: str) -> None:
    run_id = new_run_id()
    backup = step("backup", es, store, "--run-id", run_id, "--sse", "AES256")
    assert backup.code == 0, backup.error
    name = f"{TENANT}-{run_id.lower()}"
    assert backup.result["snapshot"] == name

    repo = es.repositories["tenant-dr"]
    assert repo["type"] == "s3"
    assert repo["settings"]["bucket"] == store.split("/")[2]
    assert repo["settings"]["base_path"] == f"backups/{TENANT}/es-repository"
    assert repo["settings"]["server_side_encryption"] == "true"
    assert es.calls("POST", "/_snapshot/tenant-dr/_verify")
    assert es.snapshots("tenant-dr")[name].state == "SUCCESS"

    manifest = catalog(store).read_manifest(run_id, "elasticsearch")
    assert manifest.details["snapshot"] == name
    assert manifest.details["repository"] == "tenant-dr"
    assert manifest.details["indices"] == ["logs-1", "users"]  # hidden .kibana_1 excluded by *,-.*
    assert manifest.fingerprints["doc_counts"] == {"logs-1": 120, "users": 7}
    assert manifest.fingerprints["primary_shards"] == {"logs-1": 2, "users": 1}
    assert manifest.source["elasticsearch"] == es.version
    # the client whose major matches the server was used
    accept = es.calls("GET", "/_snapshot/tenant-dr/" + name)[0].headers.get("accept", "")
    assert ("compatible-with=8" in accept) == (es.major >= 8)

    runs = [backup]
    if es.major >= 8:  # client-independent paths: checked once
        again = step("backup", es, store, "--run-id", run_id)
        assert again.code == 0 and again.result["skipped"] is True
        runs.append(again)

    # the tenant's data changes; the plan touches nothing
    es.indices["logs-1"].docs = 5
    del es.indices["users"]
    plan = step("restore", es, store)
    assert plan.code == 0, plan.error
    assert plan.result["dry_run"] is True
    assert plan.result["plan"]["run_id"] == run_id
    assert plan.result["plan"]["replace"] == ["logs-1"]
    assert es.indices["logs-1"].docs == 5 and not es.calls("DELETE", "/logs-1")

    done = step("restore", es, store, "--confirm")
    assert done.code == 0, done.error
    assert es.indices["logs-1"].docs == 120 and es.indices["users"].docs == 7
    assert es.indices[".kibana_1"].docs == 3  # untouched
    deletes = [r.path for r in es.requests if r.method == "DELETE" and not r.path.startswith("/_snapshot")]
    assert deletes == ["/logs-1"]  # explicit names only (destructive_requires_name)
    restore_body = es.calls("POST", f"/_snapshot/tenant-dr/{name}/_restore")[0].body
    assert restore_body["include_global_state"] is False
    assert restore_body["feature_states"] == ["none"]
    assert restore_body["indices"] == "logs-1,users"

    verify = step("verify", es, store, "--run-id", run_id)
    assert verify.code == 0, verify.error
    runs += [plan, done, verify]
    if es.major >= 8:
        es.indices["users"].docs = 6
        drift = step("verify", es, store)
        assert drift.code == 3 and "users: 6 docs, backup has 7" in drift.error
        runs.append(drift)
    assert_no_secret(es, *runs)


def test_es9_through_8_client_with_password_file(store: str, tmp_path: Any) -> None:
    with fake_elasticsearch(V9) as fake:
        fake.add_index("logs", docs=3)
        secret = tmp_path / "password"
        secret.write_text(f"{fake.password}\n")
        r = step(
            "backup", fake, store, "--run-id", new_run_id(), "--password-file", str(secret), env={"ES_PASSWORD": ""}
        )
        assert r.code == 0, r.error
        assert "compatible-with=8" in fake.requests[-1].headers.get("accept", "")
        assert_no_secret(fake, r)


def test_restore_elsewhere_is_readonly_and_writer_takeover(store: str) -> None:
    shared = FakeBlobStore()
    with fake_elasticsearch(V8, blobstore=shared) as old, fake_elasticsearch(V8, blobstore=shared) as new:
        old.add_index("logs", docs=100, primaries=3)
        old.scenario.docs_written_during_snapshot = {"logs": 10}  # the app keeps writing during the backup
        run_id = new_run_id()
        assert step("backup", old, store, "--run-id", run_id).code == 0
        fp = catalog(store).read_manifest(run_id, "elasticsearch").fingerprints
        assert (fp["doc_counts"]["logs"], fp["doc_counts_after"]["logs"]) == (100, 110)

        r = step("restore", new, store, "--confirm", "--rename-pattern", "(.+)", "--rename-replacement", "r-$1")
        assert r.code == 0, r.error
        assert new.indices["r-logs"].docs == 100 and new.indices["r-logs"].primaries == 3
        assert new.repositories["tenant-dr"]["settings"]["readonly"] == "true"

        # the restore target must not silently become a second writer
        refused = step("backup", new, store, "--run-id", new_run_id())
        assert refused.code == 2 and "read-only" in refused.error and "--take-over-repository" in refused.error
        taken = step("backup", new, store, "--run-id", new_run_id(), "--take-over-repository")
        assert taken.code == 0, taken.error
        assert new.repositories["tenant-dr"]["settings"].get("readonly") != "true"
        # ... and now the old cluster is refused: the newest snapshot was written by another cluster
        stale = step("backup", old, store, "--run-id", new_run_id())
        assert stale.code == 2 and "written by cluster" in stale.error


def test_partial_snapshot_fails_without_manifest_then_retry_succeeds(store: str) -> None:
    with fake_elasticsearch(V8) as fake:
        fake.add_index("logs", docs=10, primaries=2)
        fake.add_index("users", docs=4)
        fake.scenario.snapshot_outcome, fake.scenario.failed_index = "PARTIAL", "users"
        run_id = new_run_id()
        r = step("backup", fake, store, "--run-id", run_id)
        assert r.code == 1
        assert "ended PARTIAL" in r.error and "1/3 shards failed" in r.error and "users[0]" in r.error
        assert "IndexShardSnapshotFailedException" in r.error
        assert not catalog(store).has_manifest(run_id, "elasticsearch")

        fake.scenario.snapshot_outcome = "SUCCESS"  # Argo's retry of the same run
        retry = step("backup", fake, store, "--run-id", run_id)
        assert retry.code == 0, retry.error
        assert catalog(store).has_manifest(run_id, "elasticsearch")


def test_failed_snapshot(store: str) -> None:
    with fake_elasticsearch(V7) as fake:
        fake.add_index("logs", docs=10)
        fake.scenario.snapshot_outcome = "FAILED"
        run_id = new_run_id()
        r = step("backup", fake, store, "--run-id", run_id)
        assert r.code == 1 and "ended FAILED" in r.error
        assert not catalog(store).has_manifest(run_id, "elasticsearch")


def test_snapshot_timeout_aborts(store: str) -> None:
    with fake_elasticsearch(V8) as fake:
        fake.add_index("logs", docs=10)
        fake.scenario.snapshot_polls = None  # never finishes
        run_id = new_run_id()
        t0 = time.monotonic()
        r = step("backup", fake, store, "--run-id", run_id, "--snapshot-timeout", "1")
        assert r.code == 1 and "still IN_PROGRESS after 1s (aborted)" in r.error
        assert time.monotonic() - t0 < 30
        assert fake.snapshots("tenant-dr") == {}
        assert not catalog(store).has_manifest(run_id, "elasticsearch")


def test_red_cluster_backup_names_unassigned_shards(store: str) -> None:
    with fake_elasticsearch(V8) as fake:
        fake.add_index("logs", docs=10, primaries=2, unassigned_reason="NODE_LEFT")
        r = step("backup", fake, store, "--run-id", new_run_id())
        assert r.code == 1
        assert "logs[0]p UNASSIGNED (NODE_LEFT)" in r.error and "2 primary shards" in r.error
        assert not fake.blobstore.at(fake.repositories["tenant-dr"]["settings"])


@pytest.mark.parametrize("version", [V8, V7])
def test_restore_never_green_reports_unassigned_shards(store: str, version: str) -> None:
    with fake_elasticsearch(version) as fake:
        fake.add_index("logs", docs=10, primaries=2)
        assert step("backup", fake, store, "--run-id", new_run_id()).code == 0
        fake.scenario.restore_unassigned = "NEW_INDEX_RESTORED"
        r = step("restore", fake, store, "--confirm", "--green-timeout", "2")
        assert r.code == 3
        assert "did not reach green within 2s" in r.error and "health red" in r.error
        assert "logs[0]p UNASSIGNED (NEW_INDEX_RESTORED)" in r.error
        assert "\n" not in r.error


def test_restore_count_mismatch_and_missing_snapshot_exit_3(store: str) -> None:
    with fake_elasticsearch(V8) as fake:
        fake.add_index("logs", docs=10)
        assert step("backup", fake, store, "--run-id", new_run_id()).code == 0
        fake.scenario.restore_doc_loss = {"logs": 4}
        r = step("restore", fake, store, "--confirm")
        assert r.code == 3 and "logs: 6 docs, backup has 10" in r.error

        fake.snapshots("tenant-dr").clear()  # e.g. deleted by someone else: checked before destroying
        fake.requests.clear()
        gone = step("restore", fake, store, "--confirm")
        assert gone.code == 3 and "is not in repository tenant-dr" in gone.error
        assert "logs" in fake.indices and not fake.calls("DELETE", "/logs")


def test_close_mode_and_shard_count_check(store: str) -> None:
    with fake_elasticsearch(V7) as fake:
        fake.add_index("logs", docs=10, primaries=2)
        assert step("backup", fake, store, "--run-id", new_run_id()).code == 0
        fake.indices["logs"].docs = 1
        ok = step("restore", fake, store, "--confirm", "--mode", "close")
        assert ok.code == 0, ok.error
        assert fake.calls("POST", "/logs/_close") and not fake.calls("DELETE", "/logs")
        assert fake.indices["logs"].docs == 10

        fake.add_index("logs", docs=1, primaries=5)
        bad = step("restore", fake, store, "--confirm", "--mode", "close")
        assert bad.code == 3 and "5 primary shards" in bad.error
        assert fake.indices["logs"].status == "open" and fake.indices["logs"].docs == 1  # untouched


def test_restore_missing_run_exit_3(store: str) -> None:
    with fake_elasticsearch(V8) as es:
        _missing_run(es, store)


def _missing_run(es: FakeElasticsearch, store: str) -> None:
    r = step("restore", es, store, "--confirm")
    assert r.code == 3 and "no run of tenant 'acme' with a complete elasticsearch backup" in r.error
    other = step("restore", es, store, "--run-id", new_run_id(), "--confirm")
    assert other.code == 3 and "not found" in other.error
    assert not es.requests  # nothing touched the cluster


def test_wrong_credentials_exit_2_without_leaking(store: str) -> None:
    with fake_elasticsearch(V8) as fake:
        wrong = "not-the-Password-77"
        r = step("backup", fake, store, "--run-id", new_run_id(), env={"ES_PASSWORD": wrong})
        assert r.code == 2 and "rejected the credentials (HTTP 401 security_exception" in r.error
        assert wrong not in r.stdout + r.stderr
        assert not fake.repositories

        nopass = step("backup", fake, store, "--run-id", new_run_id(), env={"ES_PASSWORD": ""})
        assert nopass.code == 2 and "has no password" in nopass.error


def test_unreachable_url_exit_1(store: str) -> None:
    fake = FakeElasticsearch(V8)  # never started: the port is closed
    url = f"http://127.0.0.1:{free_port()}"
    r = run_step(
        "elasticsearch",
        ["backup", "--tenant", TENANT, "--store", store, "--run-id", new_run_id(), "--url", url],
        env={"ES_USERNAME": "elastic", "ES_PASSWORD": fake.password or ""},
    )
    assert r.code == 1 and "cannot reach Elasticsearch" in r.error


def test_file_store_and_missing_plugin_are_usage_errors(tmp_path: Any, store: str) -> None:
    with fake_elasticsearch(V7) as fake:
        r = step("backup", fake, f"file://{tmp_path}/store", "--run-id", new_run_id())
        assert r.code == 2 and "cannot host an Elasticsearch snapshot repository" in r.error
        fake.scenario.s3_plugin = False
        r = step("backup", fake, store, "--run-id", new_run_id())
        assert r.code == 2 and "repository type [s3] does not exist" in r.error and "repository-s3" in r.error


def test_prune_keeps_min_complete_and_other_tenants(store: str) -> None:
    cat = catalog(store)
    with fake_elasticsearch(V8) as fake:
        fake.add_index("logs", docs=1)
        fake.add_repository("tenant-dr", store.split("/")[2], f"backups/{TENANT}/es-repository")
        now = utcnow()
        runs = [new_run_id(now - timedelta(days=d)) for d in (40, 30, 20, 19, 1)]
        ages = dict(zip(runs, (40, 30, 20, 19, 1), strict=True))
        for run_id in runs:
            fake.add_snapshot("tenant-dr", f"{TENANT}-{run_id.lower()}", age_days=ages[run_id])
            if run_id != runs[3]:  # runs[3]: snapshot SUCCESS but no manifest -> not complete
                cat.write_manifest(
                    ComponentManifest(
                        tenant=TENANT,
                        run_id=run_id,
                        component="elasticsearch",
                        started_at=now,
                        finished_at=now,
                        objects=[],
                    )
                )
        fake.add_snapshot("tenant-dr", f"acme-prod-{runs[0].lower()}", age_days=40)  # another tenant
        fake.add_snapshot("tenant-dr", f"{TENANT}-nightly-manual", age_days=40)  # not ours by name
        snaps = fake.snapshots("tenant-dr")
        name = {r: f"{TENANT}-{r.lower()}" for r in runs}

        plan = step("prune", fake, store, "--older-than-days", "15", "--min-complete", "2")
        assert plan.code == 0, plan.error
        # complete: runs 0,1,2,4 -> newest two complete are 2 and 4; run 3 is old and incomplete
        assert sorted(plan.result["delete"]) == sorted([name[runs[0]], name[runs[1]], name[runs[3]]])
        assert plan.result["protected_by_min_complete"] == [name[runs[2]]]
        assert plan.result["dry_run"] is True and len(snaps) == 7

        done = step("prune", fake, store, "--older-than-days", "15", "--min-complete", "2", "--confirm")
        assert done.code == 0, done.error
        assert sorted(snaps) == sorted(
            [name[runs[2]], name[runs[4]], f"acme-prod-{runs[0].lower()}", f"{TENANT}-nightly-manual"]
        )
        deletes = [r for r in fake.requests if r.method == "DELETE" and r.path.startswith("/_snapshot/")]
        assert len(deletes) == 1  # one API call; nothing is deleted through S3
