"""steps.argo through the real kubernetes client: export from one fake cluster, apply into another."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard

from tests.fakes.kube import APPLY, FakeKube
from tests.harness import REPO, StepRun, run_step

TENANT = "acme"
RUN_ID = "20261121T030000Z-a1b2c3"
PARAMETER = {"workflows.argoproj.io/configmap-type": "Parameter"}
KINDS = ("workflowtemplates", "cronworkflows", "configmaps", "clusterworkflowtemplates")
SERVER_FIELDS = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")
OWN = {"app.kubernetes.io/part-of": "tenant-dr"}  # tenant-dr's own objects: never exported or restored
MARK = "tenant-dr.io/suspended-by-restore"


def seed_source(kube: FakeKube) -> None:
    state = kube.state
    state.namespace("argo")
    state.workflow_template(
        "argo",
        "postgres-backup",
        {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "tdr:1", "args": ["backup"]}}]},
        labels=OWN,
    )
    state.cron_workflow("argo", "acme-dr-backup-daily", schedule="0 3 * * *", labels=OWN)
    tpl = state.workflow_template("argo", "redis-backup", {"entrypoint": "main", "templates": [{"name": "main"}]})
    tpl["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": '{"apiVersion":"argoproj.io/v1alpha1"}',
        "workflows.argoproj.io/description": "Back up Redis",
    }
    state.replace(tpl, manager="kubectl-client-side-apply")
    state.cron_workflow("argo", "acme-backup", schedule="0 3 * * *")
    state.cron_workflow("argo", "acme-freshness", schedule="*/30 * * * *", suspend=True)
    state.configmap("argo", "acme-params", {"retention": "15"}, labels=PARAMETER)
    state.configmap("argo", "unlabelled", {"x": "1"})
    state.configmap("argo", "kube-root-ca.crt", {"ca.crt": "PEM"}, labels=PARAMETER)
    state.cluster_workflow_template("tenant-dr-notify", {"entrypoint": "notify", "templates": [{"name": "notify"}]})


def stripped(obj: dict[str, Any]) -> dict[str, Any]:
    """What must survive a round trip: everything but server-maintained fields and status."""
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out["metadata"]
    for name in SERVER_FIELDS:
        meta.pop(name, None)
    annotations = meta.pop("annotations", {})
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if annotations:
        meta["annotations"] = annotations
    return out


def snapshot(kube: FakeKube, namespace: str = "argo") -> dict[str, dict[str, Any]]:
    """The objects a backup carries (tenant-dr's own and unselected ConfigMaps left out)."""
    out: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        ns = None if kind == "clusterworkflowtemplates" else namespace
        for obj in kube.state.list_objects(kind, ns):
            if kind == "configmaps" and obj["metadata"]["name"] in ("unlabelled", "kube-root-ca.crt"):
                continue
            if obj["metadata"].get("labels") == OWN:
                continue
            out[f"{kind}/{obj['metadata']['name']}"] = stripped(obj)
    return out


class Steps:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.store_dir = tmp_path / "store"
        self.store = f"file://{self.store_dir}"

    def run(self, kube: FakeKube, action: str, *args: str) -> StepRun:
        kubeconfig = kube.kubeconfig(self.tmp / f"kc-{kube.server.server_port}")
        argv = [action, "--kubeconfig", str(kubeconfig), "--tenant", TENANT, "--store", self.store, *args]
        return run_step("argo", argv, env={"STEP_OUTPUT_DIR": str(self.tmp / "out")}, timeout=120)

    def manifest(self) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads(
            (self.store_dir / TENANT / "runs" / RUN_ID / "argo" / "manifest.json").read_text()
        )
        return manifest


@pytest.fixture
def source(fake_kube_factory: Callable[..., FakeKube]) -> FakeKube:
    kube = fake_kube_factory()
    seed_source(kube)
    return kube


@pytest.fixture
def target(fake_kube_factory: Callable[..., FakeKube]) -> FakeKube:
    kube = fake_kube_factory()
    kube.state.namespace("argo")
    return kube


def writes(kube: FakeKube) -> list[Any]:
    return [r for r in kube.state.requests if r.method in ("PATCH", "POST", "PUT", "DELETE")]


def test_export_then_apply_reproduces_the_objects(source: FakeKube, target: FakeKube, tmp_path: Path) -> None:
    steps = Steps(tmp_path)
    backup = steps.run(source, "backup", "--run-id", RUN_ID, "--namespace", "argo", "--cluster-templates")
    assert backup.code == 0, backup.stdout + backup.stderr[-2000:]
    manifest = steps.manifest()
    assert manifest["fingerprints"] == {
        "configmaps": ["acme-params"],
        "clusterworkflowtemplates": ["tenant-dr-notify"],
        "workflowtemplates": ["redis-backup"],  # postgres-backup is tenant-dr's own
        "cronworkflows": ["acme-backup", "acme-freshness"],  # so is acme-dr-backup-daily
    }
    assert writes(source) == [], "backup must not change the source cluster"
    assert steps.run(source, "backup", "--run-id", RUN_ID, "--cluster-templates").result["skipped"]

    before = steps.run(target, "verify")
    assert before.code == 3 and "redis-backup" in before.error, before.stdout
    assert writes(target) == []

    plan = steps.run(target, "restore")
    assert plan.code == 0 and plan.result["dry_run"] is True, plan.stdout
    assert plan.result["plan"]["workflowtemplates"]["create"] == ["redis-backup"]
    assert writes(target) == []

    restored = steps.run(target, "restore", "--run-id", "latest", "--confirm")
    assert restored.code == 0, restored.stdout + restored.stderr[-2000:]
    assert snapshot(target) == snapshot(source)
    assert "kubectl.kubernetes.io/last-applied-configuration" not in json.dumps(snapshot(target))

    assert target.state.get("workflowtemplates", "argo", "postgres-backup") is None
    assert target.state.get("cronworkflows", "argo", "acme-dr-backup-daily") is None
    applies = [r for r in writes(target) if r.content_type == APPLY]
    assert len(applies) == 5
    assert all(r.query.get("fieldManager") == "tenant-dr" and r.query.get("force") == "true" for r in applies)
    cron_applies = [r for r in applies if "/cronworkflows/" in r.path]
    assert [r.body["spec"]["suspend"] for r in cron_applies] == [True, True], "CronWorkflows must be applied suspended"
    assert applies[-1] is cron_applies[-1], "CronWorkflows are applied after everything they use"
    backup_cron = target.state.get("cronworkflows", "argo", "acme-backup")
    assert backup_cron is not None and "suspend" not in backup_cron["spec"]
    managers = {(m["manager"], m["operation"]) for m in backup_cron["metadata"]["managedFields"]}
    assert ("tenant-dr", "Apply") in managers

    again = steps.run(target, "restore", "--confirm")
    assert again.code == 0, again.stdout
    assert snapshot(target) == snapshot(source)

    after = steps.run(target, "verify", "--run-id", RUN_ID)
    assert after.code == 0, after.stdout
    assert (
        after.result["observed"]
        == after.result["expected"]
        == {
            "configmaps": 1,
            "clusterworkflowtemplates": 1,
            "workflowtemplates": 1,
            "cronworkflows": 2,
        }
    )


def test_restore_suspends_existing_cronworkflows_first(source: FakeKube, target: FakeKube, tmp_path: Path) -> None:
    steps = Steps(tmp_path)
    assert steps.run(source, "backup", "--run-id", RUN_ID).code == 0
    target.state.cron_workflow("argo", "acme-backup", schedule="0 4 * * *", suspend=False)
    target.state.cron_workflow("argo", "local-only", schedule="0 5 * * *")
    target.state.requests.clear()

    restored = steps.run(target, "restore", "--confirm")
    assert restored.code == 0, restored.stdout + restored.stderr[-2000:]
    assert restored.result["suspend_during_restore"] == ["acme-backup", "local-only"]
    first_writes = writes(target)[:2]
    assert all(r.content_type == "application/merge-patch+json" for r in first_writes)
    assert sorted(r.path.rsplit("/", 1)[1] for r in first_writes) == ["acme-backup", "local-only"]
    assert all(r.body["spec"] == {"suspend": True} for r in first_writes)

    priors = {r.path.rsplit("/", 1)[1]: r.body["metadata"]["annotations"][MARK] for r in first_writes}
    assert priors == {"acme-backup": "false", "local-only": "unset"}, "the prior value goes in the same patch"

    acme_backup = target.state.get("cronworkflows", "argo", "acme-backup")
    local_only = target.state.get("cronworkflows", "argo", "local-only")
    assert acme_backup is not None and local_only is not None
    assert acme_backup["spec"]["schedule"] == "0 3 * * *" and "suspend" not in acme_backup["spec"]
    assert "suspend" not in local_only["spec"], "a CronWorkflow not in the backup keeps its own suspend state"
    assert MARK not in json.dumps([acme_backup["metadata"], local_only["metadata"]])
    freshness = target.state.get("cronworkflows", "argo", "acme-freshness")
    assert freshness is not None and freshness["spec"]["suspend"] is True


def test_failed_restore_puts_cronworkflows_back(source: FakeKube, target: FakeKube, tmp_path: Path) -> None:
    steps = Steps(tmp_path)
    assert steps.run(source, "backup", "--run-id", RUN_ID).code == 0
    target.state.cron_workflow("argo", "acme-backup", suspend=False)
    target.state.deny("patch", "workflowtemplates", namespace="argo", name="redis-backup")

    failed = steps.run(target, "restore", "--confirm")
    assert failed.code == 2, failed.stdout
    assert "\n" not in failed.error
    assert "forbidden (403" in failed.error and "put back to their backed-up suspend state" in failed.error
    cron = target.state.get("cronworkflows", "argo", "acme-backup")
    assert cron is not None and cron["spec"].get("suspend") is None, "CronWorkflow left suspended after a failure"


def test_restore_verifies_the_backup_before_touching_the_target(
    source: FakeKube, target: FakeKube, tmp_path: Path
) -> None:
    steps = Steps(tmp_path)
    assert steps.run(source, "backup", "--run-id", RUN_ID).code == 0
    stored = next((steps.store_dir / TENANT / "runs" / RUN_ID / "argo").glob("*/workflowtemplates.json"))
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    target.state.requests.clear()

    run = steps.run(target, "restore", "--confirm")
    assert run.code == 3, run.stdout
    assert "workflowtemplates.json" in run.error and "\n" not in run.error
    assert target.state.requests == [], "a damaged backup must fail before the target is contacted"


def test_backup_errors_leave_no_manifest(source: FakeKube, tmp_path: Path) -> None:
    steps = Steps(tmp_path)
    source.state.deny("list", "cronworkflows", namespace="argo")
    denied = steps.run(source, "backup", "--run-id", RUN_ID)
    assert denied.code == 2 and "\n" not in denied.error
    assert 'cannot list resource "cronworkflows"' in denied.error
    assert not (steps.store_dir / TENANT / "runs" / RUN_ID / "argo" / "manifest.json").exists()


def test_backup_pages_through_long_lists(source: FakeKube, tmp_path: Path) -> None:
    for i in range(620):
        source.state.configmap("argo", f"param-{i:04d}", {"i": str(i)}, labels=PARAMETER)
    steps = Steps(tmp_path)
    run = steps.run(source, "backup", "--run-id", RUN_ID)
    assert run.code == 0, run.stdout
    assert len(steps.manifest()["fingerprints"]["configmaps"]) == 621
    pages = [r for r in source.state.requests if r.path.endswith("/configmaps")]
    assert len(pages) == 2 and pages[0].query["limit"] == "500" and "continue" in pages[1].query


def start_killable_restore(steps: Steps, target: FakeKube, tmp_path: Path) -> subprocess.Popen[bytes]:
    """A confirmed restore into ``target``, returned once it has suspended the new tenant's CronWorkflows.

    The target's first apply (a ConfigMap) gets 500s, so the step sits in its backoff: the window to kill it.
    """
    target.state.cron_workflow("argo", "new-backup", schedule="0 3 * * *")  # the new tenant's own, not in the backup
    target.state.cron_workflow("argo", "new-freshness", schedule="*/30 * * * *", suspend=False)
    target.state.cron_workflow("argo", "new-paused", schedule="0 5 * * *", suspend=True)
    target.state.fail("patch", "configmaps", status=500, times=2)
    kubeconfig = target.kubeconfig(tmp_path / "kc-target")
    env = {**os.environ, "PYTHONPATH": str(REPO), "STEP_OUTPUT_DIR": str(tmp_path / "killed")}
    argv = ["restore", "--kubeconfig", str(kubeconfig), "--tenant", TENANT, "--store", steps.store, "--confirm"]
    proc = subprocess.Popen([sys.executable, "-m", "steps.argo", *argv], env=env, cwd=REPO, stdout=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        crons = [target.state.get("cronworkflows", "argo", n) for n in ("new-backup", "new-freshness")]
        if all(c and c["spec"].get("suspend") is True for c in crons):
            return proc
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("the restore never suspended the CronWorkflows")


def crons_of(target: FakeKube, *names: str) -> dict[str, tuple[bool | None, str | None]]:
    """``name: (spec.suspend, the suspended-by-restore annotation)``."""
    out = {}
    for name in names:
        cron = target.state.get("cronworkflows", "argo", name) or {}
        out[name] = (cron["spec"].get("suspend"), (cron["metadata"].get("annotations") or {}).get(MARK))
    return out


NEW_CRONS = ("new-backup", "new-freshness", "new-paused")


def test_a_killed_restore_is_finished_by_the_next_run(source: FakeKube, target: FakeKube, tmp_path: Path) -> None:
    """SIGKILL (OOM, deadline, lost node) between the suspends and the first apply: the re-run puts them back."""
    steps = Steps(tmp_path)
    assert steps.run(source, "backup", "--run-id", RUN_ID).code == 0
    proc = start_killable_restore(steps, target, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert crons_of(target, *NEW_CRONS) == {
        "new-backup": (True, "unset"),
        "new-freshness": (True, "false"),
        "new-paused": (True, None),
    }, "suspended, each with its prior value recorded in the same patch"
    assert target.state.get("workflowtemplates", "argo", "redis-backup") is None, "killed before the first apply"

    rerun = steps.run(target, "restore", "--confirm")  # Argo's retryStrategy runs the step again
    assert rerun.code == 0, rerun.stdout + rerun.stderr[-2000:]
    assert rerun.result["suspend_during_restore"] == []  # everything live is suspended already ...
    assert rerun.result["left_suspended_by_earlier_restore"] == ["new-backup", "new-freshness"]  # ... but marked
    assert crons_of(target, *NEW_CRONS, "acme-backup", "acme-freshness") == {
        "new-backup": (None, None),
        "new-freshness": (False, None),
        "new-paused": (True, None),
        "acme-backup": (None, None),
        "acme-freshness": (True, None),
    }


def test_a_terminated_restore_puts_the_cronworkflows_back_itself(
    source: FakeKube, target: FakeKube, tmp_path: Path
) -> None:
    """SIGTERM (argo stop, activeDeadlineSeconds): the step unwinds and puts them back before it exits."""
    steps = Steps(tmp_path)
    assert steps.run(source, "backup", "--run-id", RUN_ID).code == 0
    proc = start_killable_restore(steps, target, tmp_path)
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "terminated by SIGTERM" in stdout.decode()
    assert crons_of(target, *NEW_CRONS) == {
        "new-backup": (None, None),
        "new-freshness": (False, None),
        "new-paused": (True, None),
    }


def test_an_old_backup_with_tenant_dr_objects_restores_without_them(
    source: FakeKube, target: FakeKube, tmp_path: Path
) -> None:
    """A backup taken before tenant-dr's own objects were left out: restore and verify skip them."""
    steps = Steps(tmp_path)
    assert steps.run(source, "backup", "--run-id", RUN_ID).code == 0
    run_dir = steps.store_dir / TENANT / "runs" / RUN_ID / "argo"
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    record = next(r for r in manifest["objects"] if r["name"].endswith("workflowtemplates.json"))
    stored = run_dir / record["name"]
    items = json.loads(zstandard.ZstdDecompressor().decompressobj().decompress(stored.read_bytes()))
    for obj in items["items"]:  # as an older tenant-dr exported it: its own template labelled part-of tenant-dr
        obj["metadata"]["labels"] = OWN
    raw = json.dumps(items).encode()
    data = zstandard.ZstdCompressor().compress(raw)
    stored.write_bytes(data)
    record.update(
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        raw_size=len(raw),
        raw_sha256=hashlib.sha256(raw).hexdigest(),
    )
    manifest_path.write_text(json.dumps(manifest))

    restored = steps.run(target, "restore", "--confirm")
    assert restored.code == 0, restored.stdout + restored.stderr[-2000:]
    assert restored.result["plan"]["workflowtemplates"] == {"create": [], "update": []}
    assert target.state.list_objects("workflowtemplates", "argo") == []
    assert not [r for r in writes(target) if "/workflowtemplates/" in r.path], "never applied"
    assert "not restored" in restored.stderr and "redis-backup" in restored.stderr
    verified = steps.run(target, "verify")
    assert verified.code == 0, verified.stdout
    assert verified.result["expected"]["workflowtemplates"] == 0
