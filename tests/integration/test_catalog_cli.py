"""``python -m steps.catalog``: latest, seal, prune, freshness, lifecycle, list — through the CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from steps.storage import open_store
from steps.storage.catalog import Catalog, new_run_id
from steps.storage.manifest import ComponentManifest, utcnow
from tests.harness import S3Server, StepRun, run_step

TENANT = "acme"


def make_run(catalog: Catalog, when: datetime, components: list[str], seal: bool) -> str:
    """A run with a tiny real object and a manifest per component, optionally sealed."""
    run_id = new_run_id(when)
    for comp in components:
        attempt = catalog.new_attempt()
        record = catalog.put_small(run_id, comp, attempt, "data.json", f'{{"c": "{comp}"}}'.encode())
        catalog.write_manifest(
            ComponentManifest(
                tenant=TENANT, run_id=run_id, component=comp, started_at=when, finished_at=when, objects=[record]
            )
        )
    if seal:
        catalog.seal(run_id, components)
    return run_id


def cli(store_url: str, *args: str) -> StepRun:
    return run_step("catalog", [args[0], "--tenant", TENANT, "--store", store_url, *args[1:]])


def test_latest_against_s3_endpoint_from_env(s3: S3Server, bucket: str) -> None:
    """The issue's 'done when': `catalog latest --tenant t --store s3://bucket/p` via AWS_ENDPOINT_URL."""
    url = f"s3://{bucket}/p"
    catalog = Catalog(open_store(url), "t")
    old = new_run_id(utcnow() - timedelta(days=1))
    for comp in ("postgres",):
        rec = catalog.put_small(old, comp, catalog.new_attempt(), "x", b"1")
        now = utcnow()
        catalog.write_manifest(
            ComponentManifest(tenant="t", run_id=old, component=comp, started_at=now, finished_at=now, objects=[rec])
        )
    catalog.seal(old, ["postgres"])
    res = run_step("catalog", ["latest", "--tenant", "t", "--store", url])
    assert res.code == 0, res.stderr
    assert res.result["run_id"] == old


def test_latest_prefers_newest_complete_and_component_latest(store_url: str) -> None:
    catalog = Catalog(open_store(store_url), TENANT)
    now = utcnow()
    complete = make_run(catalog, now - timedelta(hours=5), ["postgres", "redis"], seal=True)
    partial = make_run(catalog, now - timedelta(hours=1), ["postgres"], seal=False)
    res = cli(store_url, "latest")
    assert res.code == 0 and res.result["run_id"] == complete
    res = cli(store_url, "latest", "--component", "postgres")
    assert res.result["run_id"] == partial
    res = cli(store_url, "latest", "--component", "cassandra")
    assert res.code == 3 and "no run" in res.error
    listing = cli(store_url, "list")
    runs = listing.result["runs"]
    assert [r["run_id"] for r in runs] == [complete, partial]
    assert [r["complete"] for r in runs] == [True, False]


def test_seal_refuses_incomplete_run_and_is_idempotent(store_url: str) -> None:
    catalog = Catalog(open_store(store_url), TENANT)
    run_id = make_run(catalog, utcnow(), ["postgres"], seal=False)
    refused = cli(store_url, "seal", "--run-id", run_id, "--components", "postgres,redis")
    assert refused.code == 3 and "redis" in refused.error
    assert not catalog.list_runs()[0].complete
    ok = cli(store_url, "seal", "--run-id", run_id, "--components", "postgres")
    assert ok.code == 0, ok.stderr
    again = cli(store_url, "seal", "--run-id", run_id, "--components", "postgres")
    assert again.code == 0
    assert catalog.read_run_record(run_id).components["postgres"].objects == 1


def test_seal_refuses_when_an_object_named_by_a_manifest_is_missing(store_url: str) -> None:
    catalog = Catalog(open_store(store_url), TENANT)
    run_id = make_run(catalog, utcnow(), ["postgres"], seal=False)
    manifest = catalog.read_manifest(run_id, "postgres")
    catalog.store.delete([catalog.object_key(manifest, manifest.objects[0])])
    res = cli(store_url, "seal", "--run-id", run_id, "--components", "postgres")
    assert res.code == 3 and "missing" in res.error


def test_prune_keeps_min_complete_even_when_all_are_old(store_url: str) -> None:
    catalog = Catalog(open_store(store_url), TENANT)
    base = utcnow() - timedelta(days=60)
    complete = [make_run(catalog, base + timedelta(days=i), ["postgres"], seal=True) for i in range(5)]
    incomplete_old = make_run(catalog, base + timedelta(days=6), ["postgres"], seal=False)
    dry = cli(store_url, "prune", "--older-than-days", "15", "--min-complete", "3")
    assert dry.code == 0 and dry.result["dry_run"] is True
    assert sorted(dry.result["delete"]) == sorted([*complete[:2], incomplete_old])
    assert len(catalog.list_runs()) == 6  # nothing deleted without --confirm
    done = cli(store_url, "prune", "--older-than-days", "15", "--min-complete", "3", "--confirm")
    assert done.code == 0, done.stderr
    left = catalog.list_runs()
    assert [r.run_id for r in left] == complete[2:]
    assert all(r.complete for r in left)
    assert catalog.resolve("latest") == complete[-1]


def test_prune_never_touches_recent_runs_or_the_es_repository(store_url: str) -> None:
    catalog = Catalog(open_store(store_url), TENANT)
    catalog.store.put_bytes(f"{TENANT}/es-repository/index-0", b"es owns this")
    old = make_run(catalog, utcnow() - timedelta(days=30), ["postgres"], seal=True)
    fresh = [make_run(catalog, utcnow() - timedelta(hours=h), ["postgres"], seal=True) for h in (30, 2)]
    res = cli(store_url, "prune", "--older-than-days", "15", "--min-complete", "1", "--confirm")
    assert res.code == 0 and res.result["delete"] == [old]
    assert [r.run_id for r in catalog.list_runs()] == fresh
    assert catalog.store.get_bytes(f"{TENANT}/es-repository/index-0") == b"es owns this"


def test_freshness(store_url: str) -> None:
    catalog = Catalog(open_store(store_url), TENANT)
    none = cli(store_url, "freshness")
    assert none.code == 3 and "no complete backup" in none.error
    make_run(catalog, utcnow() - timedelta(hours=30), ["postgres"], seal=True)
    stale = cli(store_url, "freshness", "--max-age", "26h")
    assert stale.code == 3 and "30" in stale.error and "26h" in stale.error
    make_run(catalog, utcnow() - timedelta(hours=2), ["postgres"], seal=False)  # incomplete: does not count
    assert cli(store_url, "freshness").code == 3
    make_run(catalog, utcnow() - timedelta(hours=1), ["postgres"], seal=True)
    fresh = cli(store_url, "freshness", "--max-age", "26h")
    assert fresh.code == 0 and 0.9 < fresh.result["age_hours"] < 1.2
    bad = cli(store_url, "freshness", "--max-age", "soon")
    assert bad.code == 2


def test_lifecycle_sets_encryption_and_a_rule_that_excludes_es_repository(s3: S3Server, bucket: str) -> None:
    client = s3.client()
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [{"ID": "theirs", "Status": "Enabled", "Filter": {"Prefix": "other/"}, "Expiration": {"Days": 3}}]
        },
    )
    url = f"s3://{bucket}/p"
    dry = run_step("catalog", ["lifecycle", "--tenant", TENANT, "--store", url, "--expire-days", "22"])
    assert dry.code == 0 and dry.result["dry_run"] is True
    res = run_step("catalog", ["lifecycle", "--tenant", TENANT, "--store", url, "--expire-days", "22", "--confirm"])
    assert res.code == 0, res.stderr
    rules = {r["ID"]: r for r in client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert "theirs" in rules  # other rules are kept
    ours = rules[f"tenant-dr-{TENANT}-runs"]
    assert ours["Filter"]["Prefix"] == f"p/{TENANT}/runs/"
    assert not f"p/{TENANT}/es-repository/".startswith(ours["Filter"]["Prefix"])
    assert ours["Expiration"]["Days"] == 22  # the default 15-day retention + the 7-day margin
    enc = client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert enc["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    plain = run_step("catalog", ["lifecycle", "--tenant", TENANT, "--store", url, "--confirm"])
    assert plain.code == 0, plain.stderr  # the recommended rule: abort stale uploads, no expiry
    ours = {r["ID"]: r for r in client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}[
        f"tenant-dr-{TENANT}-runs"
    ]
    assert "Expiration" not in ours and ours["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 2}


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--expire-days", "15"], {}),  # = the default retention: would expire the runs min_complete keeps
        (["--expire-days", "21"], {}),
        (["--expire-days", "30", "--retention-days", "30"], {}),
        (["--expire-days", "25"], {"TENANT_DR_RETENTION_DAYS": "20"}),  # the retention prune is configured with
    ],
)
def test_lifecycle_refuses_an_expiry_that_would_bypass_min_complete(
    s3: S3Server, bucket: str, args: list[str], env: dict[str, str]
) -> None:
    url = f"s3://{bucket}/p"
    res = run_step("catalog", ["lifecycle", "--tenant", TENANT, "--store", url, *args, "--confirm"], env=env)
    assert res.code == 2, res.stdout
    assert "min_complete" in res.error and "hint: use 0" in res.error
    client = s3.client()
    with pytest.raises(client.exceptions.ClientError, match="NoSuchLifecycleConfiguration"):
        client.get_bucket_lifecycle_configuration(Bucket=bucket)
    with pytest.raises(client.exceptions.ClientError, match="ServerSideEncryptionConfigurationNotFoundError"):
        client.get_bucket_encryption(Bucket=bucket)


def test_lifecycle_on_file_store_is_a_usage_error(tmp_path: object) -> None:
    res = run_step("catalog", ["lifecycle", "--tenant", TENANT, "--store", f"file://{tmp_path}", "--confirm"])
    assert res.code == 2 and "s3://" in res.error


@pytest.mark.parametrize("url", ["ftp://x", "s3://", "s3://UPPER/x", "file://rel"])
def test_bad_store_urls_exit_2_with_one_line(url: str) -> None:
    res = run_step("catalog", ["latest", "--tenant", TENANT, "--store", url])
    assert res.code == 2
    assert res.error and "\n" not in res.error and "Traceback" not in res.stderr


def test_restore_of_unknown_run_names_available_runs(store_url: str) -> None:
    catalog = Catalog(open_store(store_url), TENANT)
    have = make_run(catalog, utcnow() - timedelta(hours=3), ["postgres"], seal=True)
    res = cli(store_url, "verify", "--run-id", "20200101T000000Z-000000")
    assert res.code == 3 and "not found" in res.error and have in res.error
    bad_tenant = run_step("catalog", ["latest", "--tenant", "Bad Tenant", "--store", store_url])
    assert bad_tenant.code == 2


def test_run_ids_from_clock_are_utc(store_url: str) -> None:
    rid = new_run_id(datetime(2026, 11, 21, 3, 0, 5, tzinfo=UTC))
    assert rid.startswith("20261121T030005Z-")
