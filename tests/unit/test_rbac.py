"""Least privilege: the generated Roles grant exactly the Kubernetes API calls the steps make.

How: build the embedded default tenant (in-cluster mode, so Roles carry the component rules), find every
step container each ServiceAccount runs (its WorkflowTemplates, following templateRefs and exit
handlers), and run each Kubernetes-touching call *with the flags from the compiled YAML* as a real
subprocess against the fake API server (``tests/fakes/kube.py``), whose request log records every API
call. The log is turned into (namespace, apiGroup, resource, verb) the way the API server authorizes it,
and compared with the Roles/ClusterRoles bound to that ServiceAccount, in both directions:

* a granted verb/resource no step call used fails the test (over-grant), and
* a call the Roles do not grant fails it too (the step would get 403 in the cluster).

Why this approach and not a declared table: a table next to each step could drift from the code the same
way the Roles can; the request log is what the real ``kubernetes`` client actually sent for the exact
command lines the templates run, so adding a grant without a matching call, or a call without a grant,
fails here. Which modules need a run is decided from their imports (``steps.kubeapi``/``steps.podexec``/
``kubernetes``), and a Kubernetes-touching call with no scenario below fails rather than being skipped.

Known limits, on purpose: the fake does not serve pods/exec (the Cassandra step's exec is recorded and
then fails), which is enough because ``KubernetesExecutor`` makes exactly two kinds of call (list pods,
exec); a code path no scenario reaches would show up as an over-grant, and the fix is a scenario for it.
API-server rules applied: a websocket exec needs ``get`` and ``create`` on pods/exec (``create`` since
Kubernetes 1.30, ``get`` before); a server-side apply that creates the object also needs ``create``;
Argo's executor itself needs ``workflowtaskresults`` create/patch in the install namespace.
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.cassandra import FakeCassandra
from tests.fakes.kube import APPLY, RESOURCES, FakeKube
from tests.harness import StepRun, run_step
from workflows.build import build
from workflows.config import DEFAULT

REPO = Path(__file__).resolve().parents[2]
RUN_ID = "20261121T030000Z-5eed01"
Grant = tuple[str | None, str, str, str]  # (namespace or None for cluster scope, apiGroup, resource, verb)
KUBE_IMPORTS = ("steps.kubeapi", "steps.podexec", "kubernetes")

# Argo's executor (wait container) reports outputs through WorkflowTaskResults; no step makes this call.
ARGO_EXECUTOR: set[Grant] = {(DEFAULT.namespace, "argoproj.io", "workflowtaskresults", v) for v in ("create", "patch")}


# ---- what the bundle grants and runs ------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One step container of the bundle: ``python -m steps.<module> <args>`` and its input defaults."""

    module: str
    args: tuple[str, ...]
    defaults: tuple[tuple[str, str], ...] = ()

    @property
    def action(self) -> str:
        return self.args[0]


@dataclass
class Bundle:
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: list[dict[str, Any]] = field(default_factory=list)

    def calls(self, account: str) -> list[Call]:
        """Every step container a workflow running as ``account`` can start (templateRefs followed)."""
        seen: set[tuple[str, str]] = set()
        calls: list[Call] = []

        def visit(wt_name: str, tpl_name: str) -> None:
            if (wt_name, tpl_name) in seen or wt_name not in self.templates:
                return
            seen.add((wt_name, tpl_name))
            by_name = {t["name"]: t for t in self.templates[wt_name]["spec"]["templates"]}
            tpl = by_name[tpl_name]
            container = tpl.get("container")
            if container and container["command"][:2] == ["python", "-m"]:
                defaults = tuple(
                    (p["name"], str(p["value"])) for p in tpl.get("inputs", {}).get("parameters", []) if "value" in p
                )
                calls.append(Call(container["command"][2].removeprefix("steps."), tuple(container["args"]), defaults))
            tasks = tpl.get("dag", {}).get("tasks", []) + [s for g in tpl.get("steps") or [] for s in g]
            for task in tasks:
                if "templateRef" in task:
                    visit(task["templateRef"]["name"], task["templateRef"]["template"])
                else:
                    visit(wt_name, task["template"])

        for name, wt in self.templates.items():
            if wt["spec"].get("serviceAccountName") == account:
                for entry in (wt["spec"]["entrypoint"], wt["spec"].get("onExit")):
                    if entry:
                        visit(name, entry)
        return sorted(set(calls), key=lambda c: (c.module, c.args))

    def grants(self) -> dict[str, set[Grant]]:
        """ServiceAccount -> every (namespace, group, resource, verb) its bound Roles/ClusterRoles allow."""
        roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in self.objects}
        out: dict[str, set[Grant]] = {}
        for binding in self.objects:
            if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
                continue
            ns = binding["metadata"].get("namespace")
            role = roles[(binding["roleRef"]["kind"], ns, binding["roleRef"]["name"])]
            for subject in binding["subjects"]:
                granted = out.setdefault(subject["name"], set())
                for rule in role["rules"]:
                    for group in rule["apiGroups"]:
                        for resource in rule["resources"]:
                            granted.update((ns, group, resource, verb) for verb in rule["verbs"])
        return out


def load(directory: Path) -> Bundle:
    bundle = Bundle()
    for path in sorted(directory.glob("*/*/*.yaml")):
        obj = yaml.safe_load(path.read_text())
        bundle.objects.append(obj)
        if obj["kind"] == "WorkflowTemplate":
            bundle.templates[obj["metadata"]["name"]] = obj
    return bundle


def touches_kube(module: str, seen: set[str] | None = None) -> bool:
    """Whether ``steps.<module>`` (or a ``steps`` module it imports) imports a Kubernetes client."""
    seen = seen if seen is not None else set()
    if module in seen:
        return False
    seen.add(module)
    path = REPO / "steps" / f"{module.replace('.', '/')}.py"
    if not path.is_file():
        path = REPO / "steps" / module.replace(".", "/") / "__init__.py"
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    if any(n == k or n.startswith(k + ".") for n in names for k in KUBE_IMPORTS):
        return True
    inner = {n.removeprefix("steps.").split(".")[0] for n in names if n.startswith("steps.")}
    return any(touches_kube(m, seen) for m in inner if (REPO / "steps" / f"{m}.py").is_file())


# ---- from the fake's request log to RBAC grants --------------------------------------------------

TYPES = {(rt.group, rt.plural): rt for rt in RESOURCES}
Key = tuple[str, str, str]


def existing_keys(kube: FakeKube) -> set[Key]:
    return {
        (rt.plural, o["metadata"].get("namespace", ""), o["metadata"]["name"])
        for rt in RESOURCES
        for o in kube.state.list_objects(rt.plural)
    }


def requested(kube: FakeKube, before: set[Key], start: int = 0) -> set[Grant]:
    """What the requests since ``start`` need, as the API server authorizes them."""
    exists = set(before)
    out: set[Grant] = set()
    for req in kube.state.requests[start:]:
        parts = [p for p in req.path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, rest = "", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, rest = parts[1], parts[3:]
        else:
            continue  # /version, discovery: non-resource URLs every authenticated user may read
        if not rest:
            continue
        ns = ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        rt = TYPES.get((group, rest[0]))
        assert rt is not None, f"request to a resource the fake does not serve: {req.method} {req.path}"
        name = rest[1] if len(rest) > 1 else (req.body or {}).get("metadata", {}).get("name")
        resource = "/".join([rest[0], *rest[2:3]])
        scope = ns or None
        if resource == "pods/exec":
            verbs = {"get", "create"}
        elif req.method == "GET":
            verbs = {"get" if len(rest) > 1 else "list"}
        elif req.method == "POST":
            verbs = {"create"}
        elif req.method == "PUT":
            verbs = {"update"}
        elif req.method == "PATCH":
            key = (rt.plural, ns, str(name))
            verbs = {"patch"} if key in exists or req.content_type != APPLY else {"patch", "create"}
        else:
            verbs = {"delete" if len(rest) > 1 else "deletecollection"}
        if req.method in ("POST", "PATCH") and name:
            exists.add((rt.plural, ns, str(name)))
        out.update((scope, group, resource, verb) for verb in verbs)
    return out


# ---- scenarios: run a bundle call against the fake -----------------------------------------------


@dataclass
class Lab:
    """One store, fake clusters and helpers shared by the scenarios of a test."""

    tmp: Path
    kube_factory: Callable[..., FakeKube]
    bundle: Bundle
    store: str = ""
    backups: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.store = f"file://{self.tmp / 'store'}"

    def argv(self, call: Call, kube: FakeKube | None, replace: dict[str, str] | None = None) -> list[str]:
        """The call's args with parameters filled in, the store on disk and the fake's kubeconfig."""
        values = {"run-id": RUN_ID, **dict(call.defaults)}
        args = list(call.args)
        for flag, value in (replace or {}).items():
            args[args.index(flag) + 1] = value
        if "--store" in args:
            args[args.index("--store") + 1] = self.store
        out = []
        for arg in args:
            for param in re.findall(r"\{\{inputs\.parameters\.([\w-]+)\}\}", arg):
                if param not in values:
                    pytest.fail(f"RBAC scenario for steps.{call.module} {call.action}: no value for input {param!r}")
                arg = arg.replace("{{inputs.parameters." + param + "}}", values[param])
            arg = arg.replace("{{workflow.name}}", "rbac-check")
            assert "{{" not in arg, f"unfilled parameter in {call.module} {call.action}: {arg}"
            out.append(arg)
        if kube is not None:
            out += ["--kubeconfig", str(kube.kubeconfig(self.tmp / f"kc-{kube.server.server_port}"))]
        return out

    def run(
        self,
        call: Call,
        kube: FakeKube | None,
        *extra: str,
        env: dict[str, str] | None = None,
        replace: dict[str, str] | None = None,
    ) -> StepRun:
        return run_step(call.module, [*self.argv(call, kube, replace), *extra], env=env, timeout=120)

    def backup_call(self, module: str) -> Call:
        return next(
            c for a in ("tenant-dr",) for c in self.bundle.calls(a) if c.module == module and c.action == "backup"
        )


def _observe(kube: FakeKube, fn: Callable[[], None]) -> set[Grant]:
    before, start = existing_keys(kube), len(kube.state.requests)
    fn()
    return requested(kube, before, start)


def seed_argo(kube: FakeKube, *, partial: bool = False) -> None:
    """Argo objects of the default config's namespace; ``partial``: a target that already has some."""
    state, label = kube.state, dict([DEFAULT.components.argo.configmap_selector.split("=")])
    state.namespace("argo")
    spec = {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "x:1"}}]}
    state.workflow_template("argo", "atlas-postgres-backup", spec)
    state.cron_workflow("argo", "atlas-backup-daily", schedule="0 3 * * *")
    if partial:
        return
    state.workflow_template("argo", "atlas-redis-backup", spec)
    state.cron_workflow("argo", "atlas-backup-freshness", schedule="17 * * * *", suspend=True)
    state.configmap("argo", "atlas-params", {"retention": "15"}, labels=label)
    state.cluster_workflow_template("tenant-dr-notify", spec)


def argo_scenario(lab: Lab, call: Call) -> set[Grant]:
    if call.action == "backup":
        source = lab.kube_factory()
        seed_argo(source)

        def backup() -> None:
            run = lab.run(call, source)
            assert run.code == 0, run.stdout + run.stderr[-2000:]

        return _observe(source, backup)
    assert call.action == "restore", call
    if "argo" not in lab.backups:
        source = lab.kube_factory()
        seed_argo(source)
        run = lab.run(lab.backup_call("argo"), source)
        assert run.code == 0, run.stdout + run.stderr[-2000:]
        lab.backups.add("argo")
    target = lab.kube_factory()
    seed_argo(target, partial=True)

    def restore() -> None:
        run = lab.run(call, target)
        assert run.code == 0, run.stdout + run.stderr[-2000:]

    return _observe(target, restore)


def cassandra_scenario(lab: Lab, call: Call) -> set[Grant]:
    """The Kubernetes executor's calls: list the pods, exec into them (the fake refuses the exec itself)."""
    ns = DEFAULT.components.cassandra.namespace
    selector = dict([DEFAULT.components.cassandra.selector.split("=")])
    if call.action == "restore" and "cassandra" not in lab.backups:
        fc = FakeCassandra(lab.tmp / "cassandra", namespace=ns, username=None, password=None)
        fc.create_keyspace("atlas", {"users": "id uuid PRIMARY KEY, name text"})
        fc.write_sstables("atlas", "users", generations=1, size=2_000)
        local = lab.run(lab.backup_call("cassandra"), None, "--executor", fc.executor, replace={"--data-dir": "data"})
        assert local.code == 0, local.stdout + local.stderr[-2000:]
        lab.backups.add("cassandra")
    kube = lab.kube_factory()
    kube.state.namespace(ns)
    for i in range(3):
        kube.state.add(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"cassandra-{i}", "namespace": ns, "labels": selector},
                "spec": {"containers": [{"name": "cassandra", "image": "cassandra:3.11"}]},
                "status": {"phase": "Running"},
            }
        )

    def run() -> None:
        result = lab.run(call, kube, env={"TENANT_DR_EXECUTOR": "kubernetes"})
        execs = [r for r in kube.state.requests if r.path.endswith("/exec")]
        assert execs, f"cassandra {call.action} never reached pods/exec: {result.stdout} {result.stderr[-1500:]}"

    return _observe(kube, run)


KUBE_BUNDLE = """
apiVersion: v1
kind: Namespace
metadata: {name: atlas}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config, namespace: atlas}
data: {URL: "https://__TENANT_DOMAIN__/"}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: atlas}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: atlas}
spec: {rules: [{host: __TENANT_DOMAIN__}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: atlas}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template: {metadata: {labels: {app: web}}, spec: {containers: [{name: web, image: "web:1"}]}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: atlas}
spec:
  replicas: 1
  serviceName: db
  selector: {matchLabels: {app: db}}
  template: {metadata: {labels: {app: db}}, spec: {containers: [{name: db, image: "db:1"}]}}
"""


def kube_scenario(lab: Lab, call: Call) -> set[Grant]:
    """tenant-recreate/tenant-onboard's kube calls on the new tenant's cluster (the fence list, its LB, a bundle).

    Calls that carry the old tenant's mounted kubeconfig reach another cluster with that kubeconfig's own
    credentials: they need nothing from this cluster's Roles.
    """
    if any("/source-kubeconfig/" in arg for arg in call.args):
        return set()
    kube = lab.kube_factory(controller_delay=0.05)
    state = kube.state
    for ns in {w.namespace for w in DEFAULT.fence} | {"argo"}:
        state.namespace(ns)
    for w in DEFAULT.fence:
        (state.deployment if w.kind == "deployment" else state.statefulset)(w.namespace, w.name, replicas=1)
    svc_ns, svc = DEFAULT.dr.ingress_service.split("/")
    state.namespace(svc_ns)
    state.service(svc_ns, svc, lb_hostname="lb.example.net")
    bundle_ns, bundle = DEFAULT.dr.onboarding.bundle_configmap.split("/")
    if call.action == "apply-bundle":
        state.remove("namespaces", None, "atlas")  # the bundle creates the tenant's namespace
        for w in DEFAULT.fence:
            state.remove(f"{w.kind}s", w.namespace, w.name)
    state.configmap(bundle_ns, bundle, {"bundle.yaml": KUBE_BUNDLE})

    def run() -> None:
        waits = ("--timeout", "30") if call.action in ("wait-ready", "scale-down", "scale-up", "apply-bundle") else ()
        result = lab.run(call, kube, *waits)
        assert result.code == 0, f"kube {call.action}: {result.stdout} {result.stderr[-2000:]}"

    return _observe(kube, run)


SCENARIOS: dict[str, Callable[[Lab, Call], set[Grant]]] = {
    "argo": argo_scenario,
    "cassandra": cassandra_scenario,
    "kube": kube_scenario,
}


# ---- the tests ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    assert DEFAULT.cluster.mode == "in-cluster", "the default tenant must exercise the in-cluster Roles"
    out = tmp_path_factory.mktemp("dist")
    build(DEFAULT, out)
    return load(out)


def test_touches_kube_follows_imports() -> None:
    assert touches_kube("argo") and touches_kube("cassandra") and touches_kube("kube")
    assert not touches_kube("postgres") and not touches_kube("catalog") and not touches_kube("notify")


def test_request_log_to_grants(fake_kube: FakeKube, tmp_path: Path) -> None:
    """The mapping itself: list vs get, an apply that creates vs one that updates, cluster scope."""
    seed_argo(fake_kube)
    kc = str(fake_kube.kubeconfig(tmp_path / "kc"))
    store = f"file://{tmp_path / 'store'}"
    common = ["--kubeconfig", kc, "--tenant", "atlas", "--store", store]
    assert _observe(fake_kube, lambda: None) == set()

    def backup() -> None:
        run = run_step("argo", ["backup", *common, "--run-id", RUN_ID, "--no-cluster-templates"], timeout=120)
        assert run.code == 0, run.stderr[-2000:]

    read = _observe(fake_kube, backup)
    assert ("argo", "argoproj.io", "workflowtemplates", "list") in read
    assert {verb for *_, verb in read} == {"list"}, "a backup only lists"
    assert all(scope == "argo" for scope, *_ in read), "--no-cluster-templates: no cluster-scoped call"
    fake_kube.state.remove("workflowtemplates", "argo", "atlas-redis-backup")

    def restore() -> None:
        run = run_step("argo", ["restore", *common, "--run-id", RUN_ID, "--confirm"], timeout=120)
        assert run.code == 0, run.stderr[-2000:]

    wrote = _observe(fake_kube, restore)
    assert ("argo", "argoproj.io", "workflowtemplates", "create") in wrote, "apply of a missing object creates"
    assert ("argo", "argoproj.io", "cronworkflows", "create") not in wrote, "every CronWorkflow existed"
    assert ("argo", "argoproj.io", "cronworkflows", "patch") in wrote


@pytest.mark.timeout(240)
def test_roles_grant_exactly_what_the_steps_use(
    bundle: Bundle, fake_kube_factory: Callable[..., FakeKube], tmp_path: Path
) -> None:
    lab = Lab(tmp_path, fake_kube_factory, bundle)
    grants = bundle.grants()
    assert {"tenant-dr", "tenant-dr-restore"} <= set(grants)
    problems: list[str] = []
    for account in sorted(grants):
        needed: set[Grant] = set(ARGO_EXECUTOR)
        for call in bundle.calls(account):
            if not touches_kube(call.module):
                continue
            scenario = SCENARIOS.get(call.module)
            if scenario is None:
                problems.append(f"{account}: no RBAC scenario for steps.{call.module} {call.action} (add one here)")
                continue
            needed |= scenario(lab, call)
        granted = grants[account]
        for grant in sorted(needed - granted, key=str):
            problems.append(f"{account}: a step needs {grant} but no Role grants it (403 in the cluster)")
        for grant in sorted(granted - needed, key=str):
            problems.append(f"{account}: Role grants {grant} but no step call uses it")
    assert not problems, "\n".join(problems)


def test_a_role_granting_more_fails_the_check(bundle: Bundle) -> None:
    """The comparison is not vacuous: an extra verb in a Role shows up as granted and unexplained."""
    tampered = Bundle(bundle.templates, copy.deepcopy(bundle.objects))
    role = next(o for o in tampered.objects if o["kind"] == "Role" and o["metadata"]["namespace"] == "atlas")
    role["rules"][0]["verbs"].append("delete")
    extra = tampered.grants()["tenant-dr"] - bundle.grants()["tenant-dr"]
    assert extra == {("atlas", "", role["rules"][0]["resources"][0], "delete")}
    assert not extra & ARGO_EXECUTOR
