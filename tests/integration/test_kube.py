"""steps.kube through the real kubernetes client against the fake API server (tests/fakes/kube.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.kube import FakeKube
from tests.harness import StepRun, free_port, run_step

TENANT = "acme"
WORKLOADS = {
    "atlas/deployment/hermes": 2,
    "atlas/deployment/auxiliary": 1,
    "atlas/statefulset/keycloak": 3,
    "atlas/statefulset/ranger": 1,
}
WORKLOAD_FLAG = ",".join(WORKLOADS)
POLL = ["--poll-seconds", "0.1"]


@pytest.fixture
def kube(fake_kube: FakeKube, tmp_path: Path) -> FakeKube:
    state = fake_kube.state
    state.namespace("atlas")
    for ref, replicas in WORKLOADS.items():
        ns, kind, name = ref.split("/")
        (state.deployment if kind == "deployment" else state.statefulset)(ns, name, replicas=replicas)
    state.deployment("atlas", "unrelated", replicas=1)
    return fake_kube


class Steps:
    """Runs ``python -m steps.kube`` against one fake cluster and one file store."""

    def __init__(self, kube: FakeKube, tmp_path: Path) -> None:
        self.kubeconfig = str(kube.kubeconfig(tmp_path / "kubeconfig"))
        self.store_dir = tmp_path / "store"
        self.store = f"file://{self.store_dir}"
        self.out = tmp_path / "outputs"

    def run(self, action: str, *args: str, kubeconfig: str | None = None, timeout: str = "20") -> StepRun:
        argv = [action, "--kubeconfig", kubeconfig or self.kubeconfig, *args]
        if action in ("scale-down", "scale-up", "wait-ready"):
            argv += ["--timeout", timeout, *POLL]
        if action in ("scale-down", "scale-up", "set-domain"):
            argv += ["--tenant", TENANT, "--store", self.store]
        return run_step("kube", argv, env={"STEP_OUTPUT_DIR": str(self.out)}, timeout=120)

    def output(self, name: str) -> Any:
        text = (self.out / name).read_text()
        return json.loads(text) if text[:1] in "{[" else text

    def state_record(self, operation: str, name: str) -> dict[str, Any] | None:
        path = self.store_dir / TENANT / "state" / operation / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None


@pytest.fixture
def steps(kube: FakeKube, tmp_path: Path) -> Steps:
    return Steps(kube, tmp_path)


def spec_replicas(kube: FakeKube) -> dict[str, int]:
    out = {}
    for ref in WORKLOADS:
        ns, kind, name = ref.split("/")
        obj = kube.state.get(kind, ns, name)
        assert obj is not None
        out[ref] = obj["spec"]["replicas"]
    return out


def pod_counts(kube: FakeKube) -> dict[str, int]:
    return {ref: len(kube.state.pods("atlas", f"app={ref.split('/')[2]}")) for ref in WORKLOADS}


def assert_one_line(run: StepRun, code: int, *fragments: str) -> None:
    assert run.code == code, (run.code, run.stdout, run.stderr[-2000:])
    assert run.result["ok"] is False
    assert "\n" not in run.error
    for fragment in fragments:
        assert fragment in run.error, run.error


def test_scale_down_then_up_restores_exact_replicas(kube: FakeKube, steps: Steps) -> None:
    op = ["--operation", "recreate-acme-x7k2p", "--workloads", WORKLOAD_FLAG]

    plan = steps.run("scale-down", *op)
    assert plan.code == 0, plan.stdout
    assert plan.result["dry_run"] is True and plan.result["current"] == WORKLOADS
    assert spec_replicas(kube) == WORKLOADS
    assert steps.state_record("recreate-acme-x7k2p", "replicas-apps") is None

    down = steps.run("scale-down", *op, "--confirm")
    assert down.code == 0, down.stdout + down.stderr[-2000:]
    assert steps.output("replicas") == WORKLOADS
    assert steps.state_record("recreate-acme-x7k2p", "replicas-apps")["workloads"] == WORKLOADS  # type: ignore[index]
    assert set(spec_replicas(kube).values()) == {0}
    assert set(pod_counts(kube).values()) == {0}, "scale-down returned before the pods were gone"
    assert len(kube.state.pods("atlas", "app=unrelated")) == 1

    again = steps.run("scale-down", *op, "--confirm")  # Argo retry / resubmit after the scale-down happened
    assert again.code == 0, again.stdout
    assert steps.output("replicas") == WORKLOADS, "a re-run must keep the originally recorded replicas, never 0s"
    assert again.result["current"] == dict.fromkeys(WORKLOADS, 0)

    up = steps.run("scale-up", "--operation", "recreate-acme-x7k2p", "--confirm")
    assert up.code == 0, up.stdout + up.stderr[-2000:]
    assert spec_replicas(kube) == WORKLOADS
    assert pod_counts(kube) == WORKLOADS
    for ref, replicas in WORKLOADS.items():
        ns, kind, name = ref.split("/")
        obj = kube.state.get(kind, ns, name)
        assert obj is not None and obj["status"]["readyReplicas"] == replicas, "scale-up returned before ready"
    assert steps.output("replicas") == WORKLOADS


def test_retry_after_timeout_keeps_recorded_replicas(kube: FakeKube, steps: Steps) -> None:
    kube.state.hold("statefulset", "atlas", "keycloak")  # its pods do not go away in time
    op = ["--operation", "dr-1", "--workloads", WORKLOAD_FLAG, "--confirm"]
    first = steps.run("scale-down", *op, timeout="1")
    assert_one_line(first, 1, "timed out after 1s", "atlas/statefulset/keycloak")
    assert "hermes" not in first.error
    kube.state.release("statefulset", "atlas", "keycloak")

    retry = steps.run("scale-down", *op)
    assert retry.code == 0, retry.stdout
    assert steps.output("replicas") == WORKLOADS
    assert set(pod_counts(kube).values()) == {0}

    up = steps.run("scale-up", "--operation", "dr-1", "--confirm")
    assert up.code == 0, up.stdout
    assert spec_replicas(kube) == WORKLOADS


def test_separate_records_per_fenced_set(kube: FakeKube, steps: Steps) -> None:
    first = steps.run(
        "scale-down", "--operation", "dr-2", "--workloads", "atlas/deployment/hermes", "--record", "old", "--confirm"
    )
    assert first.code == 0, first.stdout
    grown = steps.run("scale-down", "--operation", "dr-2", "--workloads", WORKLOAD_FLAG, "--record", "old", "--confirm")
    assert_one_line(grown, 3, "has no replicas for", "atlas/deployment/auxiliary")
    assert spec_replicas(kube)["atlas/deployment/auxiliary"] == 1, "nothing may be scaled on a record mismatch"
    up = steps.run("scale-up", "--operation", "dr-2", "--record", "old", "--confirm")
    assert up.code == 0 and up.result["replicas"] == {"atlas/deployment/hermes": 2}


def test_scale_up_without_record_is_a_precondition_failure(steps: Steps) -> None:
    run = steps.run("scale-up", "--operation", "never-fenced", "--confirm")
    assert_one_line(run, 3, "never-fenced", "replicas-apps")


def test_unknown_workload_changes_nothing(kube: FakeKube, steps: Steps) -> None:
    run = steps.run(
        "scale-down", "--operation", "dr-3", "--workloads", "atlas/deployment/hermes,atlas/deployment/nope", "--confirm"
    )
    assert_one_line(run, 2, "deployment atlas/nope", "not found")
    assert spec_replicas(kube) == WORKLOADS
    assert steps.state_record("dr-3", "replicas-apps") is None

    bad_kind = steps.run("wait-ready", "--workloads", "atlas/cronjob/backup")
    assert_one_line(bad_kind, 2, "atlas/cronjob/backup")


def test_wait_ready_names_the_workloads_that_are_not_ready(kube: FakeKube, steps: Steps) -> None:
    ready = steps.run("wait-ready", "--workloads", WORKLOAD_FLAG)
    assert ready.code == 0, ready.stdout

    hermes = kube.state.get("deployment", "atlas", "hermes")
    assert hermes is not None
    hermes["spec"]["replicas"] = 3
    kube.state.hold("deployment", "atlas", "hermes")
    kube.state.replace(hermes)
    stuck = steps.run("wait-ready", "--namespaces", "atlas", timeout="1")
    assert_one_line(stuck, 1, "atlas/deployment/hermes (ready 2/3", "timed out")
    assert "keycloak" not in stuck.error

    kube.state.release("deployment", "atlas", "hermes")
    done = steps.run("wait-ready", "--namespaces", "atlas")
    assert done.code == 0, done.stdout
    assert "atlas/deployment/unrelated" in done.result["workloads"]


def test_cluster_access_errors_are_one_line(kube: FakeKube, steps: Steps, tmp_path: Path) -> None:
    missing = steps.run("wait-ready", "--workloads", WORKLOAD_FLAG, kubeconfig=str(tmp_path / "nope"))
    assert_one_line(missing, 2, "kubeconfig", "does not exist")

    unreachable_kc = tmp_path / "unreachable"
    config = (tmp_path / "kubeconfig").read_text().replace(kube.url, f"http://127.0.0.1:{free_port()}")
    unreachable_kc.write_text(config)
    down = steps.run("lb-hostname", "--service", "atlas/x", kubeconfig=str(unreachable_kc))
    assert_one_line(down, 1, "cannot reach the Kubernetes API")

    kube.state.deny("patch", "statefulsets/scale", namespace="atlas")
    forbidden = steps.run("scale-down", "--operation", "dr-4", "--workloads", WORKLOAD_FLAG, "--confirm")
    assert_one_line(forbidden, 2, "forbidden (403", 'cannot patch resource "statefulsets/scale"')


def test_transient_api_errors_are_retried(kube: FakeKube, steps: Steps) -> None:
    kube.state.fail("get", "deployments/scale", status=503, times=1)
    run = steps.run("scale-down", "--operation", "dr-5", "--workloads", "atlas/deployment/hermes")
    assert run.code == 0, run.stdout
    assert run.result["current"] == {"atlas/deployment/hermes": 2}


# ---- set-domain ---------------------------------------------------------------------------------


@pytest.fixture
def domain_objects(kube: FakeKube) -> None:
    state = kube.state
    state.ingress(
        "atlas",
        "web",
        ["acme.example.com", "api.acme.example.com", "status.other.com"],
        tls_hosts=[["acme.example.com", "api.acme.example.com"], ["status.other.com"]],
    )
    state.configmap(
        "atlas",
        "atlas-config",
        {
            "PUBLIC_URL": "https://acme.example.com/app",
            "CALLBACKS": "https://api.acme.example.com/cb,https://notacme.example.com/x",
            "UNRELATED": "keep-me",
        },
    )


def hosts(kube: FakeKube) -> tuple[list[str], list[list[str]]]:
    obj = kube.state.get("ingress", "atlas", "web")
    assert obj is not None
    return [r["host"] for r in obj["spec"]["rules"]], [t["hosts"] for t in obj["spec"]["tls"]]


def config_data(kube: FakeKube) -> dict[str, str]:
    obj = kube.state.get("configmap", "atlas", "atlas-config")
    assert obj is not None
    return dict(obj["data"])


@pytest.mark.usefixtures("domain_objects")
def test_set_domain_round_trip(kube: FakeKube, steps: Steps) -> None:
    before_hosts, before_data = hosts(kube), config_data(kube)
    targets = [
        "--ingresses",
        "atlas/web",
        "--configmap-keys",
        "atlas/atlas-config/PUBLIC_URL,atlas/atlas-config/CALLBACKS",
    ]

    plan = steps.run(
        "set-domain", "--operation", "move-1", "--from", "acme.example.com", "--to", "eu.acme.example.com", *targets
    )
    assert plan.code == 0 and plan.result["dry_run"] is True and len(plan.result["changes"]) == 5, plan.stdout
    assert hosts(kube) == before_hosts

    # The new domain contains the old one: a naive re-run would produce eu.eu.acme...
    for _ in range(2):
        moved = steps.run(
            "set-domain",
            "--operation",
            "move-1",
            "--from",
            "acme.example.com",
            "--to",
            "eu.acme.example.com",
            *targets,
            "--confirm",
        )
        assert moved.code == 0, moved.stdout + moved.stderr[-2000:]
        assert hosts(kube) == (
            ["eu.acme.example.com", "api.eu.acme.example.com", "status.other.com"],
            [["eu.acme.example.com", "api.eu.acme.example.com"], ["status.other.com"]],
        )
        assert config_data(kube) == {
            "PUBLIC_URL": "https://eu.acme.example.com/app",
            "CALLBACKS": "https://api.eu.acme.example.com/cb,https://notacme.example.com/x",
            "UNRELATED": "keep-me",
        }
    assert moved.result["changes"] == [], "the second run must find nothing left to change"
    assert steps.output("previous")["configmaps"]["atlas/atlas-config/PUBLIC_URL"] == before_data["PUBLIC_URL"]

    back = steps.run(
        "set-domain",
        "--operation",
        "rollback-1",
        "--from",
        "eu.acme.example.com",
        "--to",
        "acme.example.com",
        *targets,
        "--confirm",
    )
    assert back.code == 0, back.stdout
    assert hosts(kube) == before_hosts
    assert config_data(kube) == before_data


@pytest.mark.usefixtures("domain_objects")
def test_set_domain_bad_inputs(kube: FakeKube, steps: Steps) -> None:
    before = kube.state.get("ingress", "atlas", "web")
    missing_key = steps.run(
        "set-domain", "--operation", "m", "--from", "acme.example.com", "--to", "b.example.com",
        "--ingresses", "atlas/web", "--configmap-keys", "atlas/atlas-config/NOPE", "--confirm",
    )  # fmt: skip
    assert_one_line(missing_key, 2, "atlas/atlas-config has no key 'NOPE'")
    wrong_domain = steps.run(
        "set-domain", "--operation", "m", "--from", "zzz.example.com", "--to", "b.example.com",
        "--ingresses", "atlas/web", "--confirm",
    )  # fmt: skip
    assert_one_line(wrong_domain, 3, "zzz.example.com appears in none")
    assert kube.state.get("ingress", "atlas", "web") == before


# ---- lb-hostname --------------------------------------------------------------------------------


def test_lb_hostname(kube: FakeKube, steps: Steps) -> None:
    kube.state.namespace("ingress-nginx")
    kube.state.service("ingress-nginx", "controller")
    pending = steps.run("lb-hostname", "--service", "ingress-nginx/controller")
    assert_one_line(pending, 1, "no load balancer address yet")

    kube.state.set_status(
        "service", "ingress-nginx", "controller", {"loadBalancer": {"ingress": [{"hostname": "abc.elb.example.com"}]}}
    )
    ready = steps.run("lb-hostname", "--service", "ingress-nginx/controller")
    assert ready.code == 0, ready.stdout
    assert ready.result["hostname"] == "abc.elb.example.com" and ready.result["address_type"] == "hostname"
    assert steps.output("hostname") == "abc.elb.example.com"

    kube.state.service("ingress-nginx", "by-ip", lb_ip="203.0.113.7")
    by_ip = steps.run("lb-hostname", "--service", "ingress-nginx/by-ip")
    assert by_ip.code == 0 and by_ip.result["hostname"] == "203.0.113.7" and by_ip.result["address_type"] == "ip"

    kube.state.service("ingress-nginx", "internal", type_="ClusterIP")
    internal = steps.run("lb-hostname", "--service", "ingress-nginx/internal")
    assert_one_line(internal, 2, "type ClusterIP, not LoadBalancer")
