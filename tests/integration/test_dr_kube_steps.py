"""The kube actions tenant-recreate adds: ``apply-bundle`` (onboarding), ``scale-up --missing-ok`` and
``--unless-recorded`` (rollback), ``verify`` (the system tests' precheck that the fence is still in place).

Through the real kubernetes client against the fake API server (tests/fakes/kube.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakes.kube import FakeKube
from tests.harness import StepRun, run_step

BUNDLE = {
    "10-namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: acme\n",
    "20-apps.yaml": """
apiVersion: v1
kind: ConfigMap
metadata: {name: acme-config, namespace: acme}
data: {PUBLIC_URL: "https://__TENANT_DOMAIN__/app"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: acme}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:1"}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: acme}
spec:
  replicas: 1
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: "db:1"}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: acme}
spec:
  rules: [{host: __TENANT_DOMAIN__}]
  tls: [{hosts: [__TENANT_DOMAIN__], secretName: web-tls}]
""",
    "README": "not a manifest: ignored",
}


def kube_step(kube: FakeKube, tmp_path: Path, *args: str) -> StepRun:
    kubeconfig = str(kube.kubeconfig(tmp_path / "kubeconfig"))
    return run_step("kube", [args[0], "--kubeconfig", kubeconfig, *args[1:]], timeout=120)


@pytest.fixture
def kube(fake_kube: FakeKube) -> FakeKube:
    fake_kube.state.namespace("argo")
    fake_kube.state.configmap("argo", "tenant-bundle", BUNDLE)
    return fake_kube


def test_apply_bundle_plans_without_confirm_and_applies_with_the_domain(kube: FakeKube, tmp_path: Path) -> None:
    args = ("apply-bundle", "--configmap", "argo/tenant-bundle", "--domain", "new.example.com", "--poll-seconds", "0.1")
    plan = kube_step(kube, tmp_path, *args)
    assert plan.code == 0, plan.stderr
    assert plan.result["dry_run"] is True
    assert plan.result["objects"] == [
        "Namespace acme",
        "ConfigMap acme/acme-config",
        "Deployment acme/web",
        "StatefulSet acme/db",
        "Ingress acme/web",
    ]
    assert kube.state.get("namespaces", None, "acme") is None

    done = kube_step(kube, tmp_path, *args, "--confirm", "--timeout", "30")
    assert done.code == 0, done.stderr
    assert done.result["workloads"] == ["acme/deployment/web", "acme/statefulset/db"]
    config = kube.state.get("configmaps", "acme", "acme-config")
    assert config is not None and config["data"]["PUBLIC_URL"] == "https://new.example.com/app"
    ingress = kube.state.get("ingresses", "acme", "web")
    assert ingress is not None and ingress["spec"]["rules"][0]["host"] == "new.example.com"
    web = kube.state.get("deployments", "acme", "web")
    assert web is not None and web["status"].get("readyReplicas") == 2
    assert len(kube.state.pods("acme", "app=web")) == 2
    applies = [r for r in kube.state.requests if r.method == "PATCH" and "apply-patch" in (r.content_type or "")]
    assert len(applies) == 5 and all(r.query.get("fieldManager") == "tenant-dr" for r in applies)

    again = kube_step(kube, tmp_path, *args, "--confirm", "--timeout", "30")
    assert again.code == 0, again.stderr
    after = kube.state.get("deployments", "acme", "web")
    assert after is not None and after["metadata"]["generation"] == web["metadata"]["generation"]


@pytest.mark.parametrize(
    ("data", "needle", "code"),
    [
        ({"a.yaml": "kind: ConfigMap\nmetadata: {name: x}"}, "no apiVersion/kind", 2),
        ({"a.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: acme}"}, "is a Secret", 2),
        ({"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}"}, "has no metadata.namespace", 2),
        ({"a.yaml": "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: x}"}, "serves no Widget", 2),
        ({"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: [oops"}, "not valid YAML", 2),
    ],
)
def test_bad_bundles_are_refused_before_anything_is_applied(
    kube: FakeKube, tmp_path: Path, data: dict[str, str], needle: str, code: int
) -> None:
    kube.state.configmap(
        "argo", "bad-bundle", {"0-ok.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: zz}", **data}
    )
    run = kube_step(
        kube, tmp_path, "apply-bundle", "--configmap", "argo/bad-bundle", "--domain", "a.example.com", "--confirm"
    )
    assert run.code == code, run.stderr
    assert needle in run.result["error"]
    assert kube.state.get("namespaces", None, "zz") is None


def test_missing_bundle_configmap_is_a_usage_error(kube: FakeKube, tmp_path: Path) -> None:
    run = kube_step(
        kube, tmp_path, "apply-bundle", "--configmap", "argo/nope", "--domain", "a.example.com", "--confirm"
    )
    assert run.code == 2 and "not found" in run.result["error"]


def test_scale_up_missing_ok_is_a_no_op_without_a_record(kube: FakeKube, tmp_path: Path) -> None:
    kube.state.namespace("atlas")
    kube.state.deployment("atlas", "hermes", replicas=0)
    store = f"file://{tmp_path / 'store'}"
    common = ("--tenant", "acme", "--store", store, "--operation", "dr-1", "--confirm")
    strict = kube_step(kube, tmp_path, "scale-up", *common)
    assert strict.code == 3 and "no replicas-apps record" in strict.result["error"]
    out = tmp_path / "out"
    kubeconfig = str(kube.kubeconfig(tmp_path / "kubeconfig"))
    lenient = run_step(
        "kube",
        ["scale-up", "--kubeconfig", kubeconfig, *common, "--missing-ok"],
        env={"STEP_OUTPUT_DIR": str(out)},
    )
    assert lenient.code == 0, lenient.stderr
    assert lenient.result["scaled_up"] is False
    assert json.loads((out / "replicas").read_text()) == {}
    deployment = kube.state.get("deployments", "atlas", "hermes")
    assert deployment is not None and deployment["spec"]["replicas"] == 0
    assert not [r for r in kube.state.requests if r.method == "PATCH"]


def test_verify_checks_that_what_the_operation_fenced_is_still_down(kube: FakeKube, tmp_path: Path) -> None:
    kube.state.namespace("atlas")
    kube.state.deployment("atlas", "web", replicas=2)
    kube.state.statefulset("atlas", "db", replicas=1)
    store = f"file://{tmp_path / 'store'}"
    common = ("--tenant", "acme", "--store", store, "--operation", "dr-1", "--record", "old-tenant")
    assert kube_step(kube, tmp_path, "verify", *common).code == 3  # nothing recorded: nothing known to check
    lenient = kube_step(kube, tmp_path, "verify", *common, "--missing-ok")  # fence=skip: nothing was fenced
    assert lenient.code == 0 and lenient.result["checked"] == [], lenient.stderr
    workloads = ("--workloads", "atlas/deployment/web,atlas/statefulset/db", "--poll-seconds", "0.1")
    down = kube_step(kube, tmp_path, "scale-down", *common, *workloads, "--confirm")
    assert down.code == 0, down.stderr
    fenced = kube_step(kube, tmp_path, "verify", *common)
    assert fenced.code == 0 and fenced.result["checked"] == ["atlas/deployment/web", "atlas/statefulset/db"]
    up = kube_step(kube, tmp_path, "scale-up", *common, "--poll-seconds", "0.1", "--confirm")  # the rollback
    assert up.code == 0, up.stderr
    undone = kube_step(kube, tmp_path, "verify", *common, "--missing-ok")
    assert undone.code == 3 and "\n" not in undone.result["error"]
    assert "2 of 2 workloads scaled down by operation dr-1 run again" in undone.result["error"]
    assert "atlas/deployment/web (2 replicas)" in undone.result["error"]
    assert not [r for r in kube.state.requests[-4:] if r.method == "PATCH"], "verify changes nothing"


def test_scale_up_unless_recorded_leaves_a_completed_cutover_alone(kube: FakeKube, tmp_path: Path) -> None:
    kube.state.namespace("atlas")
    kube.state.deployment("atlas", "web", replicas=2)
    store = f"file://{tmp_path / 'store'}"
    common = ("--tenant", "acme", "--store", store, "--operation", "dr-1", "--record", "old-tenant")
    fence = ("--workloads", "atlas/deployment/web", "--poll-seconds", "0.1", "--confirm")
    assert kube_step(kube, tmp_path, "scale-down", *common, *fence).code == 0
    rollback = (*common, "--missing-ok", "--unless-recorded", "cutover-complete", "--poll-seconds", "0.1", "--confirm")
    complete = run_step(
        "dns", ["complete", "--tenant", "acme", "--store", store, "--operation", "dr-1", "--record", "app.example.com"]
    )
    assert complete.code == 0, complete.stderr
    kept = kube_step(kube, tmp_path, "scale-up", *rollback)
    assert kept.code == 0 and kept.result["scaled_up"] is False, kept.stderr
    deployment = kube.state.get("deployments", "atlas", "web")
    assert deployment is not None and deployment["spec"]["replicas"] == 0
    other = kube_step(kube, tmp_path, "scale-up", *rollback[:5], "dr-2", *rollback[6:])  # another operation
    assert other.code == 0 and other.result["scaled_up"] is False  # (--missing-ok: dr-2 fenced nothing)
