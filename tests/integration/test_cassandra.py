"""Cassandra backup/restore/verify through ``--executor local:<root>`` against the stand-in cluster.

The step runs as a real subprocess; pods are directories with stand-in ``nodetool``/``cqlsh`` and the
real ``tar``/``sh``; the store is a real ``file://`` directory or moto's S3 server.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard

from steps.storage import open_store
from steps.storage.catalog import Catalog
from tests.fakes.cassandra import FakeCassandra
from tests.harness import StepRun, free_port, run_step

TENANT = "acme"
RUN = "20260101T030000Z-c0ffee"
TABLES = {
    "users": "id uuid PRIMARY KEY, name text",
    "events": "id timeuuid PRIMARY KEY, payload blob",
    "empty_table": "id int PRIMARY KEY",
}


def make_cluster(root: Path, **kwargs: Any) -> FakeCassandra:
    root.mkdir(parents=True, exist_ok=True)
    return FakeCassandra(root, **kwargs)


def populate(fc: FakeCassandra) -> FakeCassandra:
    """Keyspaces atlas (3 tables, one empty) and audit (1 table), with SSTables on every pod."""
    fc.create_keyspace("atlas", TABLES)
    fc.create_keyspace("audit", {"log": "id int PRIMARY KEY, line text"})
    fc.write_sstables("atlas", "users", generations=2)
    fc.write_sstables("atlas", "events", generations=1, size=2_500_000)  # several 1 MiB exec chunks
    fc.write_sstables("audit", "log", generations=1, size=5_000)
    return fc


@pytest.fixture
def source(tmp_path: Path) -> FakeCassandra:
    """A fresh populated 3-pod cluster (for tests that break its tools)."""
    return populate(make_cluster(tmp_path / "src"))


@dataclass
class BackedUp:
    """A populated cluster, the files it had, and a file:// store holding its backup ``RUN``."""

    cluster: FakeCassandra
    store: str
    store_dir: Path
    files: dict[tuple[str, str, str], dict[str, bytes]]


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory: pytest.TempPathFactory) -> BackedUp:
    """One backup shared by the restore tests of this module (they must leave the cluster as they found it)."""
    base = tmp_path_factory.mktemp("cassandra")
    fc = populate(make_cluster(base / "src"))
    store = f"file://{base / 'store'}"
    files = snapshot_of_files(fc)
    run = backup(fc, store)
    assert run.code == 0, run.stderr[-2000:]
    return BackedUp(fc, store, base / "store", files)


def creds(fc: FakeCassandra) -> dict[str, str]:
    assert fc.username and fc.password
    return {"CASSANDRA_USERNAME": fc.username, "CASSANDRA_PASSWORD": fc.password}


def step(fc: FakeCassandra, action: str, store: str, *args: str, env: dict[str, str] | None = None) -> StepRun:
    return run_step(
        "cassandra",
        [action, "--tenant", TENANT, "--store", store, "--executor", fc.executor, "--data-dir", "data", *args],
        env=creds(fc) if env is None else env,
        timeout=120,
    )


def backup(fc: FakeCassandra, store: str, *args: str) -> StepRun:
    return step(fc, "backup", store, "--run-id", RUN, "--keyspaces", "atlas,audit", *args)


def snapshot_of_files(fc: FakeCassandra) -> dict[tuple[str, str, str], dict[str, bytes]]:
    return {
        (pod, ks, table): fc.files(pod, ks, table)
        for pod in fc.pod_names
        for ks, tables in (("atlas", TABLES), ("audit", {"log": ""}))
        for table in tables
    }


def contents(files: dict[str, bytes]) -> Counter[tuple[str, bytes]]:
    """SSTable files by component and content: Cassandra renames generations when it loads SSTables."""
    return Counter((name.rsplit("-", 1)[-1], data) for name, data in files.items())


def holds(fc: FakeCassandra, keys: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], Counter[Any]]:
    """What each node serves per (pod, keyspace, table): its loaded SSTables; no unloaded file may lie there."""
    out: dict[tuple[str, str, str], Counter[Any]] = {}
    for pod, ks, table in keys:
        loaded = fc.loaded(pod, ks, table)
        assert fc.files(pod, ks, table) == loaded, f"files on {pod} in {ks}.{table} that the node has not loaded"
        out[pod, ks, table] = contents(loaded)
    return out


def catalog(store: str) -> Catalog:
    return Catalog(open_store(store), TENANT)


def assert_clean(run: StepRun, fc: FakeCassandra) -> None:
    """No credential in the step's output, logs, or in any argv/environment a pod process saw."""
    assert fc.password
    assert fc.password not in run.stdout + run.stderr
    seen = "".join(fc.exec_log(pod) + json.dumps(fc.nodetool_calls(pod)) for pod in fc.pod_names)
    assert "tenant-dr-cqlsh" in seen and "ARGV" in seen  # the logs really record what ran
    assert fc.password not in seen
    assert "CASSANDRA_PASSWORD" not in seen


# ---- backup ------------------------------------------------------------------------------------


def test_round_trip_into_a_new_cluster_with_new_table_ids(
    source: FakeCassandra, store_url: str, tmp_path: Path
) -> None:
    before = snapshot_of_files(source)
    run = backup(source, store_url)
    assert run.code == 0, run.stderr[-2000:]
    assert_clean(run, source)

    # the manifest names one object per pod and keyspace, and each really is that pod's snapshot tar
    cat = catalog(store_url)
    manifest = cat.read_manifest(RUN, "cassandra")
    tars = [o for o in manifest.objects if o.meta.get("kind") == "sstables"]
    assert sorted((o.meta["pod"], o.meta["keyspace"]) for o in tars) == sorted(
        (p, ks) for p in source.pod_names for ks in ("atlas", "audit")
    )
    for obj in tars:
        data = (
            zstandard.ZstdDecompressor().decompressobj().decompress(cat.store.get_bytes(cat.object_key(manifest, obj)))
        )
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members = {m.name: m.size for m in tar.getmembers() if m.isfile()}
        listed = {
            f"{entry['dir']}/snapshots/{manifest.details['tag']}/{rel}": size
            for entry in manifest.details["files"][obj.meta["pod"]][obj.meta["keyspace"]].values()
            for rel, size in entry["files"]
        }
        assert members == listed
    users = manifest.details["files"]["cassandra-1"]["atlas"]["users"]
    assert users["dir"] == source.table_dir("cassandra-1", "atlas", "users").name
    assert {rel: size for rel, size in users["files"] if rel not in ("manifest.json", "schema.cql")} == {
        name: len(data) for name, data in before["cassandra-1", "atlas", "users"].items()
    }
    assert manifest.fingerprints["tables_per_keyspace"] == {"atlas": sorted(TABLES), "audit": ["log"]}
    assert set(manifest.details["schema"]) == {"atlas", "audit"}
    assert set(manifest.details["token_map"]) == set(source.pod_names)
    assert all(t["tokens"] == 4 for t in manifest.details["token_map"].values())
    # snapshots were taken on every pod and cleared again
    assert source.snapshot_dirs() == []
    for pod in source.pod_names:
        verbs = [c[0] for c in source.nodetool_calls(pod)]
        assert "snapshot" in verbs and "clearsnapshot" in verbs
    again = backup(source, store_url)  # idempotent: a finished run is not redone
    assert again.code == 0 and again.result["skipped"] == "already complete"

    # restore into a new cluster: same pod names and tokens, keyspaces missing
    target = make_cluster(tmp_path / "dst")
    plan = step(target, "restore", store_url)
    assert plan.code == 0, plan.stderr[-2000:]
    assert plan.result["dry_run"] is True
    assert plan.result["plan"]["schema"] == {"atlas": "create", "audit": "create"}
    assert target.state()["keyspaces"] == {}  # the plan changed nothing
    empty = step(target, "verify", store_url, "--live")
    assert empty.code == 3 and "atlas.users is not in the schema" in empty.error

    run = step(target, "restore", store_url, "--confirm")
    assert run.code == 0, run.stderr[-2000:]
    assert_clean(run, target)
    live = step(target, "verify", store_url, "--live")
    assert live.code == 0, live.stderr[-2000:]
    assert live.result["live"] == {"exact": 3 * (len(TABLES) + 1)}  # every table of both keyspaces, every pod
    lost = target.table_dir("cassandra-2", "atlas", "users")
    saved = {f: f.read_bytes() for f in lost.iterdir() if f.is_file()}
    for f in saved:
        f.unlink()
    gone = step(target, "verify", store_url, "--live")
    assert gone.code == 3 and "atlas.users has no data on pod cassandra-2" in gone.error
    for f, data in saved.items():
        f.write_bytes(data)
    for pod, ks, table in before:
        assert target.table_dir(pod, ks, table).name != source.table_dir(pod, ks, table).name  # new table ids
    # byte-identical SSTables on the same pod, all loaded
    assert holds(target, before) == {key: contents(files) for key, files in before.items()}
    for pod in target.pod_names:
        refreshed = sorted(c[1:] for c in target.nodetool_calls(pod) if c[0] == "refresh")
        assert refreshed == sorted(["--", ks, t] for (p, ks, t) in before if p == pod)
        assert not (target.pod_dir(pod) / "tenant-dr-restore" / RUN).exists()  # staging removed
    assert set(run.result["post_load"].values()) == {"exact"}
    assert [s for s in target.cql_statements() if s.startswith("TRUNCATE")] == [
        f"TRUNCATE {ks}.{t}" for ks, ts in (("atlas", sorted(TABLES)), ("audit", ["log"])) for t in ts
    ]


def test_failing_tar_in_one_pod_clears_snapshots_and_leaves_no_manifest(source: FakeCassandra, tmp_path: Path) -> None:
    store = f"file://{tmp_path / 'store'}"
    source.replace_tool(
        "cassandra-1", "tar", '#!/bin/sh\n/usr/bin/tar "$@"\necho "tar: data/atlas: read error" >&2\nexit 2\n'
    )
    run = backup(source, store)
    assert run.code == 1
    assert "tar of atlas in pod cassandra-1 failed with exit code 2" in run.error
    assert "\n" not in run.error
    assert not catalog(store).has_manifest(RUN, "cassandra")
    assert not list((tmp_path / "store").rglob("cassandra-1/atlas.tar.zst*"))  # the upload was aborted
    assert source.snapshot_dirs() == []
    for pod in source.pod_names:
        assert any(c[0] == "clearsnapshot" for c in source.nodetool_calls(pod))

    source.replace_tool("cassandra-1", "tar", '#!/bin/sh\nexec /usr/bin/tar "$@"\n')
    source.replace_tool("cassandra-2", "tar", "#!/bin/sh\nexec sleep 60\n")  # a hanging exec
    hung = backup(source, store, "--exec-timeout", "2")
    assert hung.code == 1 and "cassandra-2" in hung.error
    assert not catalog(store).has_manifest(RUN, "cassandra")
    assert source.snapshot_dirs() == []


def test_bad_inputs_give_one_line_and_exit_code(backed_up: BackedUp, tmp_path: Path) -> None:
    fc, store = backed_up.cluster, f"file://{tmp_path / 'store'}"
    no_pods = backup(fc, store, "--selector", "app=nope")
    assert no_pods.code == 2 and "no pods match 'app=nope'" in no_pods.error
    unknown = step(fc, "backup", store, "--run-id", RUN, "--keyspaces", "nope")
    assert unknown.code == 2 and "keyspace nope does not exist" in unknown.error
    wrong = step(fc, "backup", store, "--run-id", RUN, env={**creds(fc), "CASSANDRA_PASSWORD": "wrong-pass"})
    assert wrong.code == 2 and "authentication failed" in wrong.error
    bad_exec = run_step("cassandra", ["backup", "--tenant", TENANT, "--store", store, "--executor", "ssh:x"])
    assert bad_exec.code == 2 and "executor 'ssh:x' is unknown" in bad_exec.error
    missing = run_step("cassandra", ["backup", "--tenant", TENANT, "--store", store, "--kubeconfig", "/nope"])
    assert missing.code == 2 and "kubeconfig /nope does not exist" in missing.error
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{free_port()}'}}}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: t}}]\n"
    )
    unreachable = run_step(
        "cassandra", ["backup", "--tenant", TENANT, "--store", store, "--kubeconfig", str(kubeconfig)]
    )
    assert unreachable.code == 1 and "cannot reach the Kubernetes API" in unreachable.error
    assert fc.snapshot_dirs() == []
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").rglob("manifest.json"))


# ---- restore ------------------------------------------------------------------------------------


def test_restore_into_the_same_cluster_replaces_newer_data(backed_up: BackedUp) -> None:
    fc = backed_up.cluster
    fc.write_sstables("atlas", "users", generations=1, seed=7)  # data written after the backup
    fc.write_sstables("atlas", "empty_table", generations=1, seed=7)
    run = step(fc, "restore", backed_up.store, "--confirm", "--keyspaces", "atlas")
    assert run.code == 0, run.stderr[-2000:]
    assert holds(fc, backed_up.files) == {key: contents(files) for key, files in backed_up.files.items()}
    verify = run_step("cassandra", ["verify", "--tenant", TENANT, "--store", backed_up.store])
    assert verify.code == 0 and verify.result["files"] == 3 * 36  # per pod: 4 tables, 4 SSTables x 7 files + 8


def test_import_is_used_on_cassandra_4(tmp_path: Path) -> None:
    store = f"file://{tmp_path / 'store'}"
    src = make_cluster(tmp_path / "src", version="4.1.3")
    src.create_keyspace("atlas", {"users": TABLES["users"]})
    src.write_sstables("atlas", "users", generations=2)
    before = {p: src.files(p, "atlas", "users") for p in src.pod_names}
    assert step(src, "backup", store, "--run-id", RUN).code == 0
    dst = make_cluster(tmp_path / "dst", version="4.1.3")
    dst.create_keyspace("atlas", {"users": TABLES["users"]})
    dst.write_sstables("atlas", "users", generations=3, seed=9)  # existing data: truncated, generations move on
    run = step(dst, "restore", store, "--confirm")
    assert run.code == 0, run.stderr[-2000:]
    assert run.result["plan"]["load"] == "import"
    for pod in dst.pod_names:
        assert any(c[0] == "import" for c in dst.nodetool_calls(pod))
        # import renames generations: compare the contents per component
        got = Counter((n.rsplit("-", 1)[-1], d) for n, d in dst.files(pod, "atlas", "users").items())
        assert got == Counter((n.rsplit("-", 1)[-1], d) for n, d in before[pod].items())


def test_schema_hash_mismatch_is_refused(backed_up: BackedUp, tmp_path: Path) -> None:
    target = make_cluster(tmp_path / "dst")
    target.create_keyspace("atlas", {**TABLES, "users": "id uuid PRIMARY KEY, name text, email text"})
    target.write_sstables("atlas", "users", generations=1, seed=5)
    before = {p: target.files(p, "atlas", "users") for p in target.pod_names}
    for extra in ([], ["--confirm"]):
        run = step(target, "restore", backed_up.store, "--keyspaces", "atlas", *extra)
        assert run.code == 3
        assert "schema of keyspace(s) atlas differs" in run.error and "--force-schema" in run.error
    assert not [s for s in target.cql_statements() if s.startswith("TRUNCATE")]
    assert {p: target.files(p, "atlas", "users") for p in target.pod_names} == before


def test_pod_count_mismatch_is_refused(backed_up: BackedUp, tmp_path: Path) -> None:
    target = make_cluster(tmp_path / "dst", pods=2)
    run = step(target, "restore", backed_up.store, "--confirm")
    assert run.code == 3
    assert "backup has 3 Cassandra pods" in run.error and "same number of pods" in run.error
    assert target.state()["keyspaces"] == {}
    assert not any(s.startswith(("CREATE", "TRUNCATE")) for s in target.cql_statements())


def test_token_change_is_restored_when_every_node_holds_all_data(backed_up: BackedUp, tmp_path: Path) -> None:
    """A new cluster has other tokens (a DR's new cluster always does); with replication 3 on 3 nodes every
    node holds all the data, so each pod's SSTables are whole there and the restore goes ahead by itself."""
    target = make_cluster(tmp_path / "dst", token_seed=2)
    plan = step(target, "restore", backed_up.store, "--keyspaces", "audit")
    assert plan.code == 0, plan.stderr[-2000:]
    assert len(plan.result["plan"]["token_changes"]) == 3 and plan.result["plan"]["every_node_holds_all_data"]
    restored = step(target, "restore", backed_up.store, "--confirm", "--keyspaces", "audit")
    assert restored.code == 0, restored.stderr[-2000:]
    keys = [(p, "audit", "log") for p in target.pod_names]
    assert holds(target, keys) == {key: contents(backed_up.files[key]) for key in keys}


@pytest.mark.parametrize(
    ("replication", "why"),
    [
        ("{'class': 'SimpleStrategy', 'replication_factor': '2'}", "replication_factor 2 < 3 nodes"),
        ("{'class': 'NetworkTopologyStrategy', 'dc2': '3'}", "dc1: 0 < 3 nodes"),
    ],
)
def test_token_change_is_refused_unless_allowed_when_nodes_hold_part_of_the_data(
    tmp_path: Path, replication: str, why: str
) -> None:
    source = make_cluster(tmp_path / "src")
    source.create_keyspace("audit", {"log": "id int PRIMARY KEY, line text"}, replication=replication)
    source.write_sstables("audit", "log", generations=1, size=5_000)
    files = {(p, "audit", "log"): source.files(p, "audit", "log") for p in source.pod_names}
    store = f"file://{tmp_path / 'store'}"
    backed_up = step(source, "backup", store, "--run-id", RUN, "--keyspaces", "audit")
    assert backed_up.code == 0, backed_up.stderr[-2000:]
    target = make_cluster(tmp_path / "dst", token_seed=2)
    refused = step(target, "restore", store, "--confirm", "--keyspaces", "audit")
    assert refused.code == 3 and "tokens differ" in refused.error and f"audit ({why})" in refused.error
    assert "initial_token" in refused.error
    assert target.state()["keyspaces"] == {}
    allowed = step(target, "restore", store, "--confirm", "--keyspaces", "audit", "--allow-token-change")
    assert allowed.code == 0, allowed.stderr[-2000:]
    keys = [(p, "audit", "log") for p in target.pod_names]
    assert holds(target, keys) == {key: contents(files[key]) for key in keys}


def test_corrupted_object_exits_3_before_any_truncate(backed_up: BackedUp, tmp_path: Path) -> None:
    fc = backed_up.cluster
    shutil.copytree(backed_up.store_dir, tmp_path / "store")
    store = f"file://{tmp_path / 'store'}"
    victim = next((tmp_path / "store").rglob("cassandra-2/atlas.tar.zst"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.chmod(0o644)
    victim.write_bytes(bytes(data))
    truncates = len([s for s in fc.cql_statements() if s.startswith("TRUNCATE")])
    run = step(fc, "restore", store, "--confirm")
    assert run.code == 3
    assert "atlas.tar.zst" in run.error
    assert len([s for s in fc.cql_statements() if s.startswith("TRUNCATE")]) == truncates
    assert holds(fc, backed_up.files) == {key: contents(files) for key, files in backed_up.files.items()}
    verify = run_step("cassandra", ["verify", "--tenant", TENANT, "--store", store])
    assert verify.code == 3 and "atlas.tar.zst" in verify.error


# ---- ring, stale snapshots ---------------------------------------------------------------------


def test_backup_missing_a_ring_node_exits_1_without_manifest(source: FakeCassandra, tmp_path: Path) -> None:
    store = f"file://{tmp_path / 'store'}"
    labels = source.pod_dir("cassandra-2") / "labels.json"
    saved = labels.read_text()
    labels.unlink()  # the pod object is gone while the StatefulSet recreates it (or it is Terminating)
    host = json.loads((source.pod_dir("cassandra-2") / "node.json").read_text())["host_id"]
    missing = backup(source, store)
    assert missing.code == 1, missing.stderr[-2000:]
    assert "ring (3 node(s)) does not match the 2 pod(s) found" in missing.error
    assert f"node 10.0.0.3 (host id {host}, UN) has no pod" in missing.error
    assert not catalog(store).has_manifest(RUN, "cassandra")
    assert source.snapshot_dirs() == []
    assert not any(c[0] == "snapshot" for p in source.pod_names for c in source.nodetool_calls(p))

    labels.write_text(saved)
    source.set_node_status("cassandra-1", "DN")  # the pod is listed, its node is down
    down = backup(source, store)
    assert down.code == 1 and "node 10.0.0.2 of pod cassandra-1 is DN, not UN" in down.error
    assert not catalog(store).has_manifest(RUN, "cassandra")

    source.set_node_status("cassandra-1", "UN")
    whole = backup(source, store)
    assert whole.code == 0, whole.stderr[-2000:]
    assert catalog(store).read_manifest(RUN, "cassandra").details["pods"] == source.pod_names


def test_backup_clears_snapshots_left_by_earlier_backups(source: FakeCassandra, tmp_path: Path) -> None:
    store = f"file://{tmp_path / 'store'}"
    older = "tdr-20251231t030000z-0badc0-a0000beef"
    newer = "tdr-20990101t030000z-0badc0-a0000beef"  # not older than this run: left alone
    source.take_snapshot("tdr-old", pods=["cassandra-1"])  # e.g. a backup SIGTERMed before its cleanup
    source.take_snapshot(older)
    source.take_snapshot(newer, pods=["cassandra-0"])
    source.take_snapshot("before-upgrade")  # an operator's snapshot
    run = backup(source, store)
    assert run.code == 0, run.stderr[-2000:]
    left = {(d.parents[4].name, d.name) for d in source.snapshot_dirs()}
    assert left == {(p, "before-upgrade") for p in source.pod_names} | {("cassandra-0", newer)}
    assert run.result["stale_snapshots_cleared"] == {
        "cassandra-0": [older],
        "cassandra-1": sorted([older, "tdr-old"]),
        "cassandra-2": [older],
    }
    logged = [json.loads(ln) for ln in run.stderr.splitlines() if "clearing snapshots" in ln]
    assert {ln["pod"]: ln["tags"] for ln in logged} == run.result["stale_snapshots_cleared"]
    verified = run_step("cassandra", ["verify", "--tenant", TENANT, "--store", store])
    assert verified.code == 0, verified.stderr[-2000:]
    stored = catalog(store).read_manifest(RUN, "cassandra").details["files"]["cassandra-1"]["atlas"]["users"]
    assert {rel for rel, _ in stored["files"]} == {
        *source.files("cassandra-1", "atlas", "users"),
        "manifest.json",
        "schema.cql",
    }


# ---- loading -----------------------------------------------------------------------------------


def test_restore_with_a_secondary_index_on_cassandra_4(tmp_path: Path) -> None:
    store = f"file://{tmp_path / 'store'}"
    fc = make_cluster(tmp_path / "src", version="4.1.3")
    fc.create_keyspace("atlas", {"users": TABLES["users"], "events": TABLES["events"]})
    fc.create_keyspace("audit", {"log": "id int PRIMARY KEY, line text"})
    fc.create_index("atlas", "users", "users_name_idx", "name")
    fc.write_sstables("atlas", "users", generations=2)
    fc.write_sstables("atlas", "events", generations=1)
    fc.write_sstables("audit", "log", generations=1)
    keys = [(p, ks, t) for p in fc.pod_names for ks, t in (("atlas", "users"), ("atlas", "events"), ("audit", "log"))]
    expected = holds(fc, keys)
    assert backup(fc, store).code == 0
    users = catalog(store).read_manifest(RUN, "cassandra").details["files"]["cassandra-0"]["atlas"]["users"]
    assert any(rel.startswith(".users_name_idx/") for rel, _ in users["files"])  # Cassandra's snapshot layout

    fc.write_sstables("atlas", "users", generations=1, seed=5)  # written after the backup (and indexed)
    fc.write_sstables("audit", "log", generations=1, seed=5)
    run = step(fc, "restore", store, "--confirm")
    assert run.code == 0, run.stderr[-2000:]
    assert run.result["plan"]["load"] == "import"
    assert holds(fc, keys) == expected
    for pod in fc.pod_names:  # the index was rebuilt from the restored data, nothing stale in it
        assert fc.index_sources(pod, "atlas", "users", "users_name_idx") == fc.data_digests(pod, "atlas", "users")

    fresh = make_cluster(tmp_path / "dst", version="4.1.3")  # keyspaces and the index created from the schema
    run = step(fresh, "restore", store, "--confirm")
    assert run.code == 0, run.stderr[-2000:]
    assert "users_name_idx" in fresh.state()["keyspaces"]["atlas"]["tables"]["users"]["indexes"]
    assert holds(fresh, keys) == expected
    for pod in fresh.pod_names:
        assert fresh.index_sources(pod, "atlas", "users", "users_name_idx") == fresh.data_digests(pod, "atlas", "users")


def test_a_table_that_fails_to_load_does_not_stop_the_others(tmp_path: Path) -> None:
    store = f"file://{tmp_path / 'store'}"
    fc = make_cluster(tmp_path / "src", version="4.1.3")
    fc.create_keyspace("atlas", {"users": TABLES["users"], "events": TABLES["events"]})
    fc.create_keyspace("audit", {"log": "id int PRIMARY KEY, line text"})
    for ks, table in (("atlas", "users"), ("atlas", "events"), ("audit", "log")):
        fc.write_sstables(ks, table, generations=1)
    keys = [(p, ks, t) for p in fc.pod_names for ks, t in (("atlas", "users"), ("atlas", "events"), ("audit", "log"))]
    expected = holds(fc, keys)
    assert backup(fc, store).code == 0
    fail = 'case "$*" in "import -- {}"*) echo "error: Failed importing sstables" >&2; exit 2;; esac'
    fc.wrap_tool("cassandra-0", "nodetool", fail.format("atlas users "))
    fc.wrap_tool("cassandra-2", "nodetool", fail.format("audit log "))
    run = step(fc, "restore", store, "--confirm")
    assert run.code == 1, run.stderr[-2000:]
    assert "loading failed for 2 of 9 table(s)" in run.error
    assert "cassandra-0:atlas.users: nodetool import in pod cassandra-0 failed" in run.error
    assert "cassandra-2:audit.log: nodetool import in pod cassandra-2 failed" in run.error
    failed = {("cassandra-0", "atlas", "users"), ("cassandra-2", "audit", "log")}
    got = holds(fc, keys)
    assert {k: v for k, v in got.items() if k not in failed} == {k: v for k, v in expected.items() if k not in failed}
    assert all(not got[k] for k in failed)  # truncated, not loaded: the error says so
    assert not any((fc.pod_dir(p) / "tenant-dr-restore" / RUN).exists() for p in fc.pod_names)  # staging removed

    fc.wrap_tool("cassandra-0", "nodetool", ":")
    fc.wrap_tool("cassandra-2", "nodetool", ":")
    again = step(fc, "restore", store, "--confirm")  # what the retry does: stage, truncate, load again
    assert again.code == 0, again.stderr[-2000:]
    assert holds(fc, keys) == expected


def test_refresh_never_overwrites_an_sstable_flushed_after_truncate(source: FakeCassandra, tmp_path: Path) -> None:
    store = f"file://{tmp_path / 'store'}"
    assert backup(source, store).code == 0
    backed = {k: contents(v) for k, v in snapshot_of_files(source).items()}
    target = make_cluster(tmp_path / "dst")  # 3.11: refresh; fresh tables, so the first flush is mc-1-big-*
    target.write_after_truncate("atlas", "users")  # the apps keep writing during the restore
    run = step(target, "restore", store, "--confirm")
    assert run.code == 0, run.stderr[-2000:]
    got = holds(target, backed)
    for pod in target.pod_names:
        assert got[pod, "atlas", "events"] == backed[pod, "atlas", "events"]
        users = got[pod, "atlas", "users"]
        assert not backed[pod, "atlas", "users"] - users  # every backed-up SSTable loaded
        extra = users - backed[pod, "atlas", "users"]
        assert sorted(c for c, _ in extra.elements()) == sorted(
            ["Data.db", "Index.db", "Summary.db", "Filter.db", "Statistics.db", "Digest.crc32", "TOC.txt"]
        )  # and the app's SSTable (mc-1-big-*) is still there, loaded, not overwritten
        assert contents({n: d for n, d in target.loaded(pod, "atlas", "users").items() if "-1-big-" in n}) == extra
    assert run.result["post_load"]["cassandra-0:atlas.users"] == "exact"


def test_a_refresh_that_loads_nothing_fails_the_restore(backed_up: BackedUp, tmp_path: Path) -> None:
    target = make_cluster(tmp_path / "dst")
    target.wrap_tool("cassandra-1", "nodetool", 'if [ "$*" = "refresh -- audit log" ]; then exit 0; fi')
    run = step(target, "restore", backed_up.store, "--confirm")
    assert run.code == 3, run.stderr[-2000:]
    assert "loading failed for 1 of 12 table(s)" in run.error
    assert "cassandra-1:audit.log: audit.log on pod cassandra-1: nodetool refresh did not load 7 copied file(s)" in (
        run.error
    )
    keys = [(p, "atlas", t) for p in target.pod_names for t in TABLES]
    assert holds(target, keys) == {k: contents(backed_up.files[k]) for k in keys}


def test_truncate_gets_a_long_request_timeout(backed_up: BackedUp, tmp_path: Path) -> None:
    target = make_cluster(tmp_path / "dst")
    target.create_keyspace("audit", {"log": "id int PRIMARY KEY, line text"})
    target.slow_truncate("audit", "log", 45)  # a large table: longer than cqlsh's default 10 s
    run = step(target, "restore", backed_up.store, "--confirm", "--keyspaces", "audit")
    assert run.code == 0, run.stderr[-2000:]
    truncates = [c["argv"] for c in target.cqlsh_calls() if any(s.startswith("TRUNCATE") for s in c["statements"])]
    assert truncates and all(a[a.index("--request-timeout") + 1] == "3600" for a in truncates)
    short = step(target, "restore", backed_up.store, "--confirm", "--keyspaces", "audit", "--truncate-timeout", "30")
    assert short.code == 1 and "OperationTimedOut" in short.error and "truncate audit.log" in short.error
