"""steps.elasticsearch through the real elasticsearch/elasticsearch7 clients against the HTTP-level fake.

Every step runs as a subprocess (``run_step``); the catalog lives in moto's S3 server.
"""

from __future__ import annotations

import copy
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


def snap(run_id: str) -> str:
    return f"{TENANT}-{run_id.lower()}"


def es_manifest(run_id: str) -> ComponentManifest:
    """An (object-less) elasticsearch manifest, enough for the catalog to count the component complete."""
    now = utcnow()
    return ComponentManifest(
        tenant=TENANT, run_id=run_id, component="elasticsearch", started_at=now, finished_at=now, objects=[]
    )


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
    assert restore_body["include_aliases"] is True
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

        rename = ("--rename-pattern", "(.+)", "--rename-replacement", "r-$1")
        plan = step("restore", new, store, *rename)
        assert plan.code == 0, plan.error
        assert new.repositories == {}  # registered read-only only to read the snapshot, then unregistered
        assert new.calls("DELETE", "/_snapshot/tenant-dr")
        repository = plan.result["plan"]["repository"]
        assert repository["registered_for_plan_only"] is True and repository["on_confirm"] == "register read-only"

        r = step("restore", new, store, "--confirm", *rename)
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
                cat.write_manifest(es_manifest(run_id))
                cat.seal(run_id, ["elasticsearch"])
        fake.add_snapshot("tenant-dr", f"acme-prod-{runs[0].lower()}", age_days=40)  # another tenant
        fake.add_snapshot("tenant-dr", f"{TENANT}-nightly-manual", age_days=40)  # not ours by name
        snaps = fake.snapshots("tenant-dr")
        name = {r: f"{TENANT}-{r.lower()}" for r in runs}

        plan = step("prune", fake, store, "--older-than-days", "15", "--min-complete", "2")
        assert plan.code == 0, plan.error
        # complete: runs 0,1,2,4 -> newest two complete are 2 and 4; run 3 is old and incomplete
        assert sorted(plan.result["delete"]) == sorted([name[runs[0]], name[runs[1]], name[runs[3]]])
        assert plan.result["kept_for_catalog"] == [name[runs[2]]]
        assert plan.result["dry_run"] is True and len(snaps) == 7

        done = step("prune", fake, store, "--older-than-days", "15", "--min-complete", "2", "--confirm")
        assert done.code == 0, done.error
        assert sorted(snaps) == sorted(
            [name[runs[2]], name[runs[4]], f"acme-prod-{runs[0].lower()}", f"{TENANT}-nightly-manual"]
        )
        deletes = [r for r in fake.requests if r.method == "DELETE" and r.path.startswith("/_snapshot/")]
        assert len(deletes) == 1  # one API call; nothing is deleted through S3


def test_prune_keeps_the_snapshots_of_runs_the_catalog_keeps(store: str) -> None:
    """Another component failed for weeks: ES succeeded nightly, but only old runs are sealed ("latest" is old)."""
    cat = catalog(store)
    with fake_elasticsearch(V8) as fake:
        fake.add_index("logs", docs=1)
        fake.add_repository("tenant-dr", store.split("/")[2], f"backups/{TENANT}/es-repository")
        ages = [30, 25, 20, 18, 3, 2, 1]
        runs = [new_run_id(utcnow() - timedelta(days=d)) for d in ages]
        for run_id, age in zip(runs, ages, strict=True):
            fake.add_snapshot("tenant-dr", snap(run_id), age_days=age)
            cat.write_manifest(es_manifest(run_id))
        for run_id in runs[:3]:
            cat.seal(run_id, ["elasticsearch"])
        kept = {r.run_id for r in cat.prune_plan(15, 3).keep}
        assert set(runs[:3]) <= kept  # the catalog keeps the newest 3 sealed runs, however old

        done = step("prune", fake, store, "--older-than-days", "15", "--min-complete", "3", "--confirm")
        assert done.code == 0, done.error
        snaps = fake.snapshots("tenant-dr")
        assert sorted(snaps) == sorted(snap(r) for r in kept)  # every kept run still has its snapshot
        assert done.result["delete"] == [snap(runs[3])]  # old, never sealed: goes with its catalog run
        latest = cat.latest_complete()
        assert latest is not None and snap(latest.run_id) in snaps


def test_restore_of_a_run_another_cluster_wrote_keeps_the_writer_writable(store: str) -> None:
    shared = FakeBlobStore()
    with fake_elasticsearch(V8, blobstore=shared) as old, fake_elasticsearch(V8, blobstore=shared) as new:
        old.add_index("logs", docs=10)
        pre_dr = new_run_id(utcnow() - timedelta(days=1))
        assert step("backup", old, store, "--run-id", pre_dr).code == 0
        new.add_index("logs", docs=4)  # after the DR, the new cluster took over as the writer
        taken = step("backup", new, store, "--run-id", new_run_id(), "--take-over-repository")
        assert taken.code == 0, taken.error
        registered = copy.deepcopy(new.repositories)

        new.requests.clear()
        plan = step("restore", new, store, "--run-id", pre_dr)  # on-call plans a restore of a pre-DR run
        assert plan.code == 0, plan.error
        forced = step("restore", new, store, "--run-id", pre_dr, "--repository-mode", "readonly")
        assert forced.code == 0, forced.error
        assert new.repositories == registered  # plans change nothing
        changes = [r for r in new.requests if r.method in ("PUT", "DELETE") or r.path.endswith(("_close", "_open"))]
        assert changes == []
        assert step("backup", new, store, "--run-id", new_run_id()).code == 0
        assert plan.result["plan"]["repository"]["on_confirm"] == "keep as registered"
        assert forced.result["plan"]["repository"]["on_confirm"] == "re-register read-only"

        done = step("restore", new, store, "--run-id", pre_dr, "--confirm")
        assert done.code == 0, done.error
        assert new.indices["logs"].docs == 10
        assert new.repositories == registered  # still writable
        nightly = step("backup", new, store, "--run-id", new_run_id())
        assert nightly.code == 0, nightly.error


def test_delete_mode_with_a_live_writer_exits_3_naming_the_deleted_indices(store: str) -> None:
    with fake_elasticsearch(V8) as fake:
        fake.add_index("logs", docs=10)
        fake.add_index("users", docs=5)
        assert step("backup", fake, store, "--run-id", new_run_id()).code == 0
        fake.scenario.recreate_after_delete = 1  # the app's next bulk write auto-creates each deleted index
        fake.requests.clear()
        r = step("restore", fake, store, "--confirm")
        assert r.code == 3  # not retried: a retry would delete again and lose the same race
        assert "restore refused: index [logs] exists (open) again" in r.error
        assert "this step had deleted logs, users (not restored)" in r.error
        assert "fence the writers" in r.error and "action.auto_create_index=false" in r.error
        assert "\n" not in r.error
        assert len(fake.calls("POST", r"/_snapshot/tenant-dr/[^/]+/_restore")) == 1
        assert fake.indices["logs"].docs == 1  # what the writer created; nothing deleted it again


@pytest.mark.parametrize("version", [V8, V7])
def test_close_mode_reopens_the_indices_when_the_restore_is_refused(store: str, version: str) -> None:
    with fake_elasticsearch(version) as fake:
        fake.add_index("logs", docs=10)
        fake.add_index("users", docs=5)
        run_id = new_run_id()
        assert step("backup", fake, store, "--run-id", run_id).code == 0
        fake.deletions_in_progress.add(("tenant-dr", snap(run_id)))  # prune is deleting this very snapshot
        r = step("restore", fake, store, "--confirm", "--mode", "close")
        assert r.code == 1
        assert "HTTP 503 concurrent_snapshot_execution_exception" in r.error
        assert "the indices this step had closed were reopened: logs, users" in r.error
        assert "\n" not in r.error
        assert fake.calls("POST", "/logs,users/_close") and fake.calls("POST", "/logs,users/_open")
        assert {n: i.status for n, i in fake.indices.items()} == {"logs": "open", "users": "open"}

        fake.scenario.open_timeout = True  # the master is too busy to reopen them as well
        r = step("restore", fake, store, "--confirm", "--mode", "close")
        assert r.code == 1
        assert "STILL CLOSED: logs, users" in r.error and "POST logs,users/_open" in r.error
        assert {n: i.status for n, i in fake.indices.items()} == {"logs": "close", "users": "close"}


def test_renamed_restore_does_not_take_the_live_aliases(store: str) -> None:
    with fake_elasticsearch(V8) as fake:
        aliases = {"logs-read": False, "logs-write": True}
        fake.add_index("logs", docs=10, aliases=dict(aliases))
        assert step("backup", fake, store, "--run-id", new_run_id()).code == 0
        rename = ("--rename-pattern", "(.+)", "--rename-replacement", "copy-$1")
        r = step("restore", fake, store, "--confirm", *rename)
        assert r.code == 0, r.error
        assert fake.indices["copy-logs"].docs == 10 and fake.indices["copy-logs"].aliases == {}
        assert fake.indices["logs"].aliases == aliases  # the live tenant keeps its aliases alone
        plan = step("restore", fake, store, *rename)
        assert plan.code == 0 and plan.result["plan"]["include_aliases"] is False

        fake.indices["logs"].docs = 3
        in_place = step("restore", fake, store, "--confirm", "--indices", "logs")
        assert in_place.code == 0, in_place.error
        assert fake.indices["logs"].docs == 10 and fake.indices["logs"].aliases == aliases  # restored with it


@pytest.mark.parametrize("version", [V8, V7])
def test_backup_refuses_data_streams(store: str, version: str) -> None:
    with fake_elasticsearch(version) as fake:
        fake.add_index("users", docs=3)
        fake.add_data_stream("ilm-history-7", docs=2, hidden=True)  # hidden: a wildcard does not reach it
        assert step("backup", fake, store, "--run-id", new_run_id()).code == 0
        fake.add_data_stream("logs-app-default", docs=5)
        run_id = new_run_id()
        r = step("backup", fake, store, "--run-id", run_id)
        assert r.code == 2
        assert "data streams or their backing indices (logs-app-default)" in r.error
        assert "--indices '*,-.*,-logs-app-default'" in r.error
        assert snap(run_id) not in fake.snapshots("tenant-dr")
        assert not catalog(store).has_manifest(run_id, "elasticsearch")
        explicit = step("backup", fake, store, "--run-id", new_run_id(), "--indices", "users,.ds-logs-app-default-*")
        assert explicit.code == 2 and ".ds-logs-app-default-2026.01.01-000001" in explicit.error
        excluded = step("backup", fake, store, "--run-id", new_run_id(), "--indices", "*,-.*,-logs-app-default")
        assert excluded.code == 0, excluded.error
