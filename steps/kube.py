"""``python -m steps.kube``: fence and wake a tenant's apps, wait for readiness, move its domain, read its LB.

Workloads are named ``namespace/kind/name`` (kind ``deployment`` or ``statefulset``). Prior state
(replica counts, hostnames and ConfigMap values) is recorded once per operation in the catalog's
state records (``<tenant>/state/<operation>/<name>.json``) before anything changes, so a retried or
resubmitted step never records the already-changed state. ``verify`` checks that what an operation
scaled down is still at 0 (before system tests, which must not run against an unfenced old tenant).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from steps.kubeapi import REQUEST_TIMEOUT, api_error, call_json, kube_options, load_api_client
from steps.runtime import (
    IntegrityError,
    TransientError,
    UsageError,
    action,
    component,
    confirm_option,
    get_logger,
    write_output,
)
from steps.storage.catalog import Catalog
from steps.storage.options import catalog_options

F = TypeVar("F", bound=Callable[..., Any])
KINDS = {"deployment": "deployment", "deploy": "deployment", "statefulset": "statefulset", "sts": "statefulset"}
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
DOMAIN_RE = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")
LOG_EVERY_S = 10.0

cli = component("kube", "Tenant workloads on Kubernetes: scale down/up with recorded replicas, readiness, domain, LB.")


# ---- names ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """A Deployment or StatefulSet."""

    namespace: str
    kind: str  # deployment | statefulset
    name: str

    @property
    def ref(self) -> str:
        """``namespace/kind/name``."""
        return f"{self.namespace}/{self.kind}/{self.name}"


def _split(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def _check_name(value: str, what: str, example: str) -> str:
    if not NAME_RE.match(value):
        raise UsageError(f"{what} {value!r} is not a valid Kubernetes name", hint=f"expected e.g. {example}")
    return value


def parse_workloads(text: str | None) -> list[Workload]:
    """``ns/kind/name,...`` -> workloads; usage error naming the first bad entry."""
    out: list[Workload] = []
    for item in _split(text):
        parts = item.split("/")
        if len(parts) != 3 or parts[1].lower() not in KINDS:
            raise UsageError(
                f"workload {item!r} is not namespace/kind/name with kind deployment or statefulset",
                hint="e.g. --workloads atlas/deployment/hermes,atlas/statefulset/keycloak",
            )
        ns, kind, name = parts[0], KINDS[parts[1].lower()], parts[2]
        _check_name(ns, "namespace", "atlas/deployment/hermes")
        _check_name(name, "workload name", "atlas/deployment/hermes")
        workload = Workload(ns, kind, name)
        if workload not in out:
            out.append(workload)
    return out


def parse_refs(text: str | None, parts: int, what: str, example: str) -> list[tuple[str, ...]]:
    """``a/b,...`` (``parts`` slash-separated fields each) -> tuples; usage error on a bad entry."""
    out: list[tuple[str, ...]] = []
    for item in _split(text):
        fields = tuple(item.split("/"))
        if len(fields) != parts or not all(fields):
            raise UsageError(f"{what} {item!r} is malformed", hint=f"expected e.g. {example}")
        for value in fields[:2]:
            _check_name(value, what, example)
        if fields not in out:
            out.append(fields)
    return out


# ---- cluster access ------------------------------------------------------------------------------


class Cluster:
    """The API calls this module makes, as raw JSON."""

    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        from kubernetes import client

        api = load_api_client(kubeconfig, context)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.networking = client.NetworkingV1Api(api)

    def _apps_fn(self, kind: str, verb: str) -> Callable[..., Any]:
        suffix = "deployment" if kind == "deployment" else "stateful_set"
        return getattr(self.apps, verb.format(kind=suffix))  # type: ignore[no-any-return]

    def workload(self, w: Workload) -> dict[str, Any]:
        """The Deployment/StatefulSet object."""
        return dict(
            call_json(
                f"read {w.kind} {w.namespace}/{w.name}",
                self._apps_fn(w.kind, "read_namespaced_{kind}"),
                w.name,
                w.namespace,
            )
        )

    def scale(self, w: Workload) -> dict[str, Any]:
        """The workload's Scale subresource (spec.replicas, status.selector)."""
        fn = self._apps_fn(w.kind, "read_namespaced_{kind}_scale")
        return dict(call_json(f"read {w.kind} {w.namespace}/{w.name}", fn, w.name, w.namespace))

    def set_replicas(self, w: Workload, replicas: int) -> None:
        """Patch the Scale subresource."""
        fn = self._apps_fn(w.kind, "patch_namespaced_{kind}_scale")
        call_json(
            f"scale {w.kind} {w.namespace}/{w.name} to {replicas}",
            fn,
            w.name,
            w.namespace,
            {"spec": {"replicas": replicas}},
            _content_type="application/merge-patch+json",
        )

    def list_workloads(self, namespace: str) -> list[Workload]:
        """Every Deployment and StatefulSet in ``namespace``."""
        out: list[Workload] = []
        for kind, fn in (
            ("deployment", self.apps.list_namespaced_deployment),
            ("statefulset", self.apps.list_namespaced_stateful_set),
        ):
            items = call_json(f"list {kind}s in {namespace}", fn, namespace).get("items", [])
            out.extend(Workload(namespace, kind, i["metadata"]["name"]) for i in items)
        return out

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Pods in ``namespace`` matching a label selector (Terminating ones included)."""
        found = call_json(
            f"list pods {selector!r} in {namespace}", self.core.list_namespaced_pod, namespace, label_selector=selector
        )
        return list(found.get("items", []))

    def ingress(self, ns: str, name: str) -> dict[str, Any]:
        """One Ingress."""
        return dict(call_json(f"read ingress {ns}/{name}", self.networking.read_namespaced_ingress, name, ns))

    def configmap(self, ns: str, name: str) -> dict[str, Any]:
        """One ConfigMap."""
        return dict(call_json(f"read configmap {ns}/{name}", self.core.read_namespaced_config_map, name, ns))

    def json_patch(self, kind: str, ns: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        """RFC 6902 patch of an Ingress or ConfigMap (``test`` ops guard against concurrent edits)."""
        fn = self.networking.patch_namespaced_ingress if kind == "ingress" else self.core.patch_namespaced_config_map
        return dict(
            call_json(
                f"patch {kind} {ns}/{name}", fn, name, ns, ops, _content_type="application/json-patch+json", attempts=1
            )
        )

    def service(self, ns: str, name: str) -> dict[str, Any]:
        """One Service."""
        return dict(call_json(f"read service {ns}/{name}", self.core.read_namespaced_service, name, ns))


# ---- readiness -----------------------------------------------------------------------------------


def _status_count(obj: dict[str, Any], name: str) -> int:
    return int((obj.get("status") or {}).get(name) or 0)


def readiness(obj: dict[str, Any], kind: str) -> tuple[bool, str]:
    """Whether a workload is fully rolled out and ready, and a short ``ready 1/3`` description."""
    want = int((obj.get("spec") or {}).get("replicas", 1))
    observed = (obj.get("status") or {}).get("observedGeneration") or 0
    generation = (obj.get("metadata") or {}).get("generation") or 0
    ready = _status_count(obj, "readyReplicas")
    counts = [ready, _status_count(obj, "updatedReplicas")]
    if kind == "deployment":
        counts.append(_status_count(obj, "availableReplicas"))
    ok = observed >= generation and _status_count(obj, "replicas") == want and all(c >= want for c in counts)
    stale = "" if observed >= generation else ", rollout not observed yet"
    return ok, f"ready {ready}/{want}{stale}"


def wait_until(what: str, timeout: float, poll: float, check: Callable[[], dict[str, str]], fail_hint: str) -> float:
    """Poll ``check`` (returns ``{ref: why-not-done}``) until empty; TransientError after ``timeout``."""
    logger = get_logger()
    start = last_log = time.monotonic()
    while True:
        pending = check()
        elapsed = time.monotonic() - start
        if not pending:
            return round(elapsed, 2)
        if elapsed >= timeout:
            detail = "; ".join(f"{ref} ({why})" for ref, why in sorted(pending.items()))
            raise TransientError(f"timed out after {timeout:g}s waiting for {what}: {detail}", hint=fail_hint)
        if time.monotonic() - last_log >= LOG_EVERY_S:
            last_log = time.monotonic()
            logger.info(f"waiting for {what}", pending=sorted(pending), elapsed_s=round(elapsed, 1))
        time.sleep(min(poll, max(timeout - elapsed, 0.01)))


# ---- shared options ------------------------------------------------------------------------------


def wait_options(fn: F) -> F:
    """``--timeout`` and ``--poll-seconds``."""
    fn = click.option(
        "--poll-seconds", type=click.FloatRange(min=0.05), default=5.0, show_default=True, help="Poll interval."
    )(fn)
    return click.option(
        "--timeout",
        envvar="TENANT_DR_KUBE_TIMEOUT",
        type=click.FloatRange(min=0),
        default=600,
        show_default=True,
        help="Seconds to wait before failing with exit 1 (Argo retries).",
    )(fn)


def operation_option(fn: F) -> F:
    """``--operation`` (env ``TENANT_DR_OPERATION``): the id prior state is recorded under."""
    return click.option(
        "--operation",
        envvar="TENANT_DR_OPERATION",
        required=True,
        help="Id of the DR operation (e.g. the Argo workflow name); prior state is recorded under it once.",
    )(fn)


def record_option(fn: F) -> F:
    """``--record``: which replicas record of the operation (one per fenced set of workloads)."""
    return click.option(
        "--record",
        "record",
        default="apps",
        show_default=True,
        help="Name of the replicas record within the operation (e.g. old-tenant); stored as replicas-<record>.",
    )(fn)


def missing_ok_option(fn: F) -> F:
    """``--missing-ok``: a no-op when the operation recorded nothing (its scale-down never ran)."""
    return click.option(
        "--missing-ok",
        is_flag=True,
        help="Exit 0 as a no-op when the operation recorded nothing (scale-down never ran): for rollback "
        "handlers and checks of an optional fence.",
    )(fn)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- scale-down / scale-up -----------------------------------------------------------------------


def _read_scales(cluster: Cluster, workloads: list[Workload]) -> dict[Workload, dict[str, Any]]:
    """Every workload's Scale; any missing one fails before anything changes."""
    return {w: cluster.scale(w) for w in workloads}


def _selector(scale: dict[str, Any], obj: dict[str, Any]) -> str:
    """The workload's pod selector: Scale's ``status.selector``, else ``spec.selector.matchLabels``."""
    from_scale = (scale.get("status") or {}).get("selector")
    if from_scale:
        return str(from_scale)
    labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _pods_gone(cluster: Cluster, scales: dict[Workload, dict[str, Any]]) -> Callable[[], dict[str, str]]:
    def check() -> dict[str, str]:
        pending: dict[str, str] = {}
        for w, scale in scales.items():
            obj = cluster.workload(w)
            observed = (obj.get("status") or {}).get("observedGeneration") or 0
            if observed < (obj["metadata"].get("generation") or 0):
                pending[w.ref] = "scale-down not observed by the controller yet"
                continue
            if _status_count(obj, "replicas"):
                pending[w.ref] = f"status.replicas {_status_count(obj, 'replicas')}"
                continue
            selector = _selector(scale, obj)
            if not selector:
                raise UsageError(
                    f"{w.kind} {w.namespace}/{w.name} has no pod selector; cannot tell when its pods are gone"
                )
            pods = cluster.pods(w.namespace, selector)
            if pods:
                names = ", ".join(p["metadata"]["name"] for p in pods[:3])
                pending[w.ref] = f"{len(pods)} pods left: {names}"
        return pending

    return check


def _ready(cluster: Cluster, workloads: list[Workload]) -> Callable[[], dict[str, str]]:
    def check() -> dict[str, str]:
        pending: dict[str, str] = {}
        for w in workloads:
            ok, why = readiness(cluster.workload(w), w.kind)
            if not ok:
                pending[w.ref] = why
        return pending

    return check


@action(cli, "scale-down")
@kube_options
@catalog_options
@operation_option
@record_option
@click.option("--workloads", envvar="TENANT_DR_WORKLOADS", required=True, help="ns/kind/name,... to scale to 0.")
@wait_options
@confirm_option
def scale_down(
    catalog: Catalog,
    tenant: str,
    kubeconfig: str | None,
    kube_context: str | None,
    operation: str,
    record: str,
    workloads: str,
    timeout: float,
    poll_seconds: float,
    confirm: bool,
) -> dict[str, Any]:
    """Record current replicas once (output `replicas`), scale to 0 and wait until the pods are gone."""
    targets = parse_workloads(workloads)
    if not targets:
        raise UsageError("--workloads is empty", hint="pass ns/kind/name,...")
    record_name = f"replicas-{record}"
    catalog.state_key(operation, record_name)  # validates the names before any I/O
    cluster = Cluster(kubeconfig, kube_context)
    scales = _read_scales(cluster, targets)
    current = {w.ref: int(s["spec"].get("replicas") or 0) for w, s in scales.items()}
    existing = catalog.get_state(operation, record_name)
    result: dict[str, Any] = {"operation": operation, "record": record_name, "current": current}
    if not confirm:
        recorded = (existing or {}).get("workloads")
        get_logger().info("plan only (pass --confirm to scale down)", current=current)
        return {**result, "recorded": recorded, "plan": {ref: 0 for ref in current}, "dry_run": True}
    if existing is None and any(n == 0 for n in current.values()):
        get_logger().warning(
            "recording 0 replicas for workloads that are already scaled down",
            workloads=sorted(ref for ref, n in current.items() if n == 0),
        )
    stored = catalog.record_once(operation, record_name, {"workloads": current, "recorded_at": _now()})
    recorded = stored.get("workloads") or {}
    missing = sorted(w.ref for w in targets if w.ref not in recorded)
    if missing:
        raise IntegrityError(
            f"record {record_name} of operation {operation} has no replicas for {', '.join(missing)}",
            hint="the workload list changed since the first run; use another --record for the extra workloads",
        )
    write_output("replicas", recorded)
    for w in targets:
        if current[w.ref] != 0:
            cluster.set_replicas(w, 0)
            get_logger().info("scaled to 0", workload=w.ref, previous=recorded[w.ref])
    waited = wait_until(
        "pods to stop",
        timeout,
        poll_seconds,
        _pods_gone(cluster, scales),
        "pods are still terminating (finalizers, long grace periods); re-running keeps the recorded replicas",
    )
    return {**result, "recorded": recorded, "scaled": [w.ref for w in targets], "waited_s": waited, "dry_run": False}


def recorded_replicas(
    catalog: Catalog, operation: str, record_name: str, missing_ok: bool, what: str
) -> dict[str, int] | None:
    """The replicas ``scale-down`` recorded under ``operation`` (``None`` if none and ``missing_ok``; else exit 3)."""
    stored = catalog.get_state(operation, record_name)
    if stored is None:
        if missing_ok:
            return None
        raise IntegrityError(
            f"operation {operation} has no {record_name} record in {catalog.store.url}",
            hint=f"{what} what scale-down recorded; check --operation and --record",
        )
    return {str(k): int(v) for k, v in (stored.get("workloads") or {}).items()}


@action(cli, "scale-up")
@kube_options
@catalog_options
@operation_option
@record_option
@click.option(
    "--workloads", envvar="TENANT_DR_WORKLOADS", default=None, help="Subset to scale up (default: all recorded)."
)
@missing_ok_option
@click.option(
    "--unless-recorded",
    "unless_recorded",
    default=None,
    metavar="NAME",
    help="Exit 0 without changes when the operation has state record NAME (for rollback handlers, e.g. "
    "cutover-complete: the cutover passed its system tests, so a later failure must not undo the fence).",
)
@wait_options
@confirm_option
def scale_up(
    catalog: Catalog,
    tenant: str,
    kubeconfig: str | None,
    kube_context: str | None,
    operation: str,
    record: str,
    workloads: str | None,
    missing_ok: bool,
    unless_recorded: str | None,
    timeout: float,
    poll_seconds: float,
    confirm: bool,
) -> dict[str, Any]:
    """Scale back to the replicas recorded by scale-down and wait until they are ready."""
    record_name = f"replicas-{record}"
    if unless_recorded and catalog.get_state(operation, unless_recorded) is not None:
        get_logger().info(f"operation recorded {unless_recorded}; not scaling up", operation=operation)
        write_output("replicas", {})
        return {"operation": operation, "record": record_name, "replicas": {}, "scaled_up": False}
    recorded = recorded_replicas(catalog, operation, record_name, missing_ok, "scale-up only restores")
    if recorded is None:
        get_logger().info("nothing was scaled down under this operation; nothing to scale up", operation=operation)
        write_output("replicas", {})
        return {"operation": operation, "record": record_name, "replicas": {}, "scaled_up": False}
    targets = parse_workloads(workloads) if workloads else parse_workloads(",".join(recorded))
    unknown = sorted(w.ref for w in targets if w.ref not in recorded)
    if unknown:
        raise IntegrityError(
            f"record {record_name} of operation {operation} has no replicas for {', '.join(unknown)}",
            hint=f"recorded workloads: {', '.join(sorted(recorded)) or 'none'}",
        )
    cluster = Cluster(kubeconfig, kube_context)
    scales = _read_scales(cluster, targets)
    current = {w.ref: int(s["spec"].get("replicas") or 0) for w, s in scales.items()}
    wanted = {w.ref: recorded[w.ref] for w in targets}
    result: dict[str, Any] = {"operation": operation, "record": record_name, "current": current, "replicas": wanted}
    if not confirm:
        get_logger().info("plan only (pass --confirm to scale up)", replicas=wanted)
        return {**result, "dry_run": True}
    for w in targets:
        if current[w.ref] != wanted[w.ref]:
            cluster.set_replicas(w, wanted[w.ref])
            get_logger().info("scaled", workload=w.ref, replicas=wanted[w.ref])
    waited = wait_until(
        "workloads to become ready",
        timeout,
        poll_seconds,
        _ready(cluster, targets),
        "check the pods' events (image pulls, PVCs, probes); re-running is safe",
    )
    write_output("replicas", wanted)
    return {**result, "waited_s": waited, "dry_run": False}


@action(cli, "verify")
@kube_options
@catalog_options
@operation_option
@record_option
@missing_ok_option
def verify(
    catalog: Catalog,
    tenant: str,
    kubeconfig: str | None,
    kube_context: str | None,
    operation: str,
    record: str,
    missing_ok: bool,
) -> dict[str, Any]:
    """Check that every workload the operation's scale-down recorded is still at 0 replicas (exit 3 otherwise)."""
    record_name = f"replicas-{record}"
    recorded = recorded_replicas(catalog, operation, record_name, missing_ok, "verify checks")
    if recorded is None:
        get_logger().info("nothing was scaled down under this operation; nothing to check", operation=operation)
        return {"operation": operation, "record": record_name, "checked": []}
    targets = parse_workloads(",".join(recorded))
    scales = _read_scales(Cluster(kubeconfig, kube_context), targets)
    running = {w.ref: int(s["spec"].get("replicas") or 0) for w, s in scales.items()}
    running = {ref: n for ref, n in running.items() if n}
    if running:
        shown = ", ".join(f"{ref} ({n} replicas)" for ref, n in sorted(running.items()))
        raise IntegrityError(
            f"{len(running)} of {len(targets)} workloads scaled down by operation {operation} run again: {shown}",
            hint="the fence was undone (a rollback, or by hand); fence again or start a new operation",
        )
    return {"operation": operation, "record": record_name, "checked": [w.ref for w in targets]}


@action(cli, "wait-ready")
@kube_options
@click.option("--workloads", envvar="TENANT_DR_WORKLOADS", default=None, help="ns/kind/name,... to wait for.")
@click.option("--namespaces", default=None, help="Also wait for every Deployment and StatefulSet in these namespaces.")
@wait_options
def wait_ready(
    kubeconfig: str | None,
    kube_context: str | None,
    workloads: str | None,
    namespaces: str | None,
    timeout: float,
    poll_seconds: float,
) -> dict[str, Any]:
    """Wait until every listed workload is rolled out and ready (exit 1 naming the rest on timeout)."""
    targets = parse_workloads(workloads)
    spaces = [_check_name(ns, "namespace", "atlas,keycloak") for ns in _split(namespaces)]
    if not targets and not spaces:
        raise UsageError("nothing to wait for", hint="pass --workloads ns/kind/name,... and/or --namespaces a,b")
    cluster = Cluster(kubeconfig, kube_context)
    for ns in spaces:
        targets.extend(w for w in cluster.list_workloads(ns) if w not in targets)
    for w in targets:  # unknown workloads fail fast with exit 2
        cluster.workload(w)
    waited = wait_until(
        "workloads to become ready",
        timeout,
        poll_seconds,
        _ready(cluster, targets),
        "check the pods' events (image pulls, PVCs, probes); Argo retries this step",
    )
    return {"workloads": [w.ref for w in targets], "waited_s": waited}


# ---- set-domain ----------------------------------------------------------------------------------


def domain_pattern(old: str) -> re.Pattern[str]:
    """``old`` as a whole domain (also as a suffix after ``.``), not inside a longer label."""
    return re.compile(r"(?<![A-Za-z0-9-])" + re.escape(old) + r"(?![A-Za-z0-9-])")


def _ingress_hosts(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    return {
        "rules": [rule.get("host") for rule in spec.get("rules") or []],
        "tls": [list(t.get("hosts") or []) for t in spec.get("tls") or []],
    }


def _escape_pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


@action(cli, "set-domain")
@kube_options
@catalog_options
@operation_option
@click.option("--from", "old", required=True, help="Domain to move away from, e.g. acme.example.com.")
@click.option("--to", "new", required=True, help="Domain to move to.")
@click.option("--ingresses", default=None, help="ns/name,... Ingresses whose rule and TLS hosts change.")
@click.option("--configmap-keys", default=None, help="ns/name/key,... ConfigMap values in which the domain changes.")
@confirm_option
def set_domain(
    catalog: Catalog,
    tenant: str,
    kubeconfig: str | None,
    kube_context: str | None,
    operation: str,
    old: str,
    new: str,
    ingresses: str | None,
    configmap_keys: str | None,
    confirm: bool,
) -> dict[str, Any]:
    """Replace domain OLD with NEW in Ingress hosts and ConfigMap values, recording the previous values once."""
    old, new = old.strip().lower(), new.strip().lower()
    for value, flag in ((old, "--from"), (new, "--to")):
        if not DOMAIN_RE.match(value):
            raise UsageError(f"{flag} {value!r} is not a domain name", hint="e.g. acme.example.com")
    if old == new:
        raise UsageError(f"--from and --to are both {old}")
    ing_refs = parse_refs(ingresses, 2, "ingress", "atlas/atlas-ingress")
    cm_refs = parse_refs(configmap_keys, 3, "configmap key", "atlas/atlas-config/PUBLIC_URL")
    if not ing_refs and not cm_refs:
        raise UsageError("nothing to change", hint="pass --ingresses and/or --configmap-keys")
    record_name = "domain-" + hashlib.sha256(f"{old}>{new}".encode()).hexdigest()[:12]
    catalog.state_key(operation, record_name)
    cluster = Cluster(kubeconfig, kube_context)

    live_ing = {"/".join(r): cluster.ingress(r[0], r[1]) for r in ing_refs}
    live_cm: dict[str, str] = {}
    for ns, name, key in cm_refs:
        data = cluster.configmap(ns, name).get("data") or {}
        if key not in data:
            raise UsageError(
                f"configmap {ns}/{name} has no key {key!r}", hint=f"its keys: {', '.join(sorted(data)) or 'none'}"
            )
        live_cm[f"{ns}/{name}/{key}"] = str(data[key])
    pattern = domain_pattern(old)
    existing = catalog.get_state(operation, record_name)
    if existing is None:
        original: dict[str, Any] = {
            "from": old,
            "to": new,
            "ingresses": {ref: _ingress_hosts(obj) for ref, obj in live_ing.items()},
            "configmaps": live_cm,
        }
        hosts = [
            h for v in original["ingresses"].values() for h in [*v["rules"], *(x for g in v["tls"] for x in g)] if h
        ]
        if not any(pattern.search(text) for text in [*hosts, *live_cm.values()]):
            raise IntegrityError(
                f"domain {old} appears in none of the given ingress hosts or configmap values",
                hint="check --from (maybe the domain was already moved) and the object list",
            )
    else:
        original = existing
    missing = [ref for ref in live_ing if ref not in original["ingresses"]]
    missing += [ref for ref in live_cm if ref not in original["configmaps"]]
    if missing:
        raise IntegrityError(
            f"record {record_name} of operation {operation} has no previous value for {', '.join(missing)}",
            hint="the object list changed since the first run; run those objects under another --operation",
        )

    def swap(text: str | None) -> str | None:
        return pattern.sub(new, text) if text else text

    ing_ops: dict[str, list[dict[str, Any]]] = {}
    changes: list[dict[str, Any]] = []
    for ref, obj in live_ing.items():
        before, now = original["ingresses"][ref], _ingress_hosts(obj)
        if len(before["rules"]) != len(now["rules"]) or len(before["tls"]) != len(now["tls"]):
            raise IntegrityError(
                f"ingress {ref} changed shape since its hosts were recorded",
                hint="inspect it and finish the move by hand, or use a new --operation",
            )
        ops: list[dict[str, Any]] = []
        for i, host in enumerate(before["rules"]):
            target = swap(host)
            if target != now["rules"][i]:
                path = f"/spec/rules/{i}/host"
                ops += [
                    {"op": "test", "path": path, "value": now["rules"][i]},
                    {"op": "replace", "path": path, "value": target},
                ]
                changes.append({"object": f"ingress {ref}", "field": path, "from": now["rules"][i], "to": target})
        for i, group in enumerate(before["tls"]):
            target_group = [swap(h) for h in group]
            if target_group != now["tls"][i]:
                path = f"/spec/tls/{i}/hosts"
                ops += [
                    {"op": "test", "path": path, "value": now["tls"][i]},
                    {"op": "replace", "path": path, "value": target_group},
                ]
                changes.append({"object": f"ingress {ref}", "field": path, "from": now["tls"][i], "to": target_group})
        if ops:
            ing_ops[ref] = ops
    cm_targets = {ref: swap(value) or "" for ref, value in original["configmaps"].items() if ref in live_cm}
    for ref, target in cm_targets.items():
        if live_cm[ref] != target:
            changes.append(
                {
                    "object": f"configmap {ref.rsplit('/', 1)[0]}",
                    "field": ref.rsplit("/", 1)[1],
                    "from": live_cm[ref],
                    "to": target,
                }
            )
    result: dict[str, Any] = {"operation": operation, "record": record_name, "from": old, "to": new, "changes": changes}
    if not confirm:
        get_logger().info("plan only (pass --confirm to move the domain)", changes=len(changes))
        return {**result, "dry_run": True}
    catalog.record_once(operation, record_name, {**original, "recorded_at": _now()})
    for ref, ops in ing_ops.items():
        ns, name = ref.split("/")
        cluster.json_patch("ingress", ns, name, ops)
    for ref, target in cm_targets.items():
        if live_cm[ref] != target:
            ns, name, key = ref.split("/", 2)
            path = f"/data/{_escape_pointer(key)}"
            ops = [
                {"op": "test", "path": path, "value": live_cm[ref]},
                {"op": "replace", "path": path, "value": target},
            ]
            cluster.json_patch("configmap", ns, name, ops)
    wrong = [
        ref
        for ref in live_ing
        if _ingress_hosts(cluster.ingress(*ref.split("/")))
        != {
            "rules": [swap(h) for h in original["ingresses"][ref]["rules"]],
            "tls": [[swap(h) for h in g] for g in original["ingresses"][ref]["tls"]],
        }
    ]
    for ref, target in cm_targets.items():
        ns, name, key = ref.split("/", 2)
        if (cluster.configmap(ns, name).get("data") or {}).get(key) != target:
            wrong.append(ref)
    if wrong:
        raise IntegrityError(f"after the patch these objects do not carry domain {new}: {', '.join(wrong)}")
    write_output("previous", original)
    return {**result, "dry_run": False}


# ---- apply-bundle --------------------------------------------------------------------------------

WORKLOAD_KINDS = {"Deployment": "deployment", "StatefulSet": "statefulset"}


@dataclass(frozen=True)
class BundleObject:
    """One manifest of a bundle and where it is served."""

    obj: dict[str, Any]
    resource: Any  # the dynamic client's Resource (kind, plural, namespaced)
    source: str  # "<configmap key> #<n>" for messages

    @property
    def ref(self) -> str:
        """``Kind ns/name`` (or ``Kind name`` when cluster-scoped)."""
        meta = self.obj["metadata"]
        ns = meta.get("namespace")
        return f"{self.obj['kind']} {ns + '/' if ns else ''}{meta['name']}"


def parse_bundle(data: dict[str, str], placeholder: str, domain: str) -> list[tuple[str, dict[str, Any]]]:
    """Every manifest of the ConfigMap's keys (sorted by key, documents in order), the domain substituted."""
    import yaml

    out: list[tuple[str, dict[str, Any]]] = []
    for key in sorted(data):
        if not key.endswith((".yaml", ".yml", ".json")):
            continue
        try:
            docs = list(yaml.safe_load_all(data[key].replace(placeholder, domain)))
        except yaml.YAMLError as exc:
            raise UsageError(f"bundle key {key} is not valid YAML: {' '.join(str(exc).split())[:200]}") from exc
        for n, doc in enumerate(d for d in docs if d is not None):
            where = f"{key} #{n + 1}"
            if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
                raise UsageError(f"bundle object {where} has no apiVersion/kind")
            if not (doc.get("metadata") or {}).get("name"):
                raise UsageError(f"bundle object {where} ({doc['kind']}) has no metadata.name")
            if doc["kind"] == "Secret":
                raise UsageError(
                    f"bundle object {where} is a Secret",
                    hint="a ConfigMap bundle must not carry secrets; provision Secrets separately",
                )
            out.append((where, doc))
    if not out:
        raise UsageError("the bundle holds no manifests", hint="put YAML manifests under keys ending in .yaml")
    return out


class BundleApi:
    """Discovery and server-side apply of arbitrary manifests (the client's dynamic API)."""

    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        from kubernetes.dynamic import DynamicClient

        api = load_api_client(kubeconfig, context)
        try:
            self.dynamic = DynamicClient(api)
        except Exception as exc:
            raise api_error("discover the cluster's APIs", exc) from exc

    def locate(self, where: str, obj: dict[str, Any]) -> BundleObject:
        """Check that the cluster serves ``obj``'s kind, and where (usage error for an unknown kind)."""
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        api_version, kind = str(obj["apiVersion"]), str(obj["kind"])
        try:
            resource = self.dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError as exc:
            raise UsageError(f"bundle object {where}: the cluster serves no {kind} in {api_version}") from exc
        except Exception as exc:
            raise api_error(f"discover {kind} in {api_version}", exc) from exc
        meta = obj["metadata"]
        _check_name(str(meta["name"]), f"{kind} name", "atlas")
        if resource.namespaced:
            ns = meta.get("namespace")
            if not ns:
                raise UsageError(f"bundle object {where}: {kind} {meta['name']} has no metadata.namespace")
            _check_name(str(ns), "namespace", "atlas")
        else:
            meta.pop("namespace", None)
        return BundleObject(obj, resource, where)

    def apply(self, item: BundleObject, field_manager: str) -> None:
        """Server-side apply (conflicts forced: the bundle owns what it sets)."""
        meta = item.obj["metadata"]
        try:
            self.dynamic.server_side_apply(
                item.resource,
                body=item.obj,
                name=meta["name"],
                namespace=meta.get("namespace"),
                field_manager=field_manager,
                force_conflicts=True,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except Exception as exc:  # ApiException and connection errors; a re-run re-applies (idempotent)
            raise api_error(f"apply {item.ref}", exc) from exc


@action(cli, "apply-bundle")
@kube_options
@click.option("--configmap", "configmap_ref", required=True, help="ns/name of the ConfigMap holding the bundle.")
@click.option("--domain", required=True, help="The tenant's domain, substituted for --placeholder.")
@click.option("--placeholder", default="__TENANT_DOMAIN__", show_default=True, help="Text replaced by --domain.")
@click.option("--field-manager", default="tenant-dr", show_default=True, help="Server-side apply field manager.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the bundle's workloads.")
@wait_options
@confirm_option
def apply_bundle(
    kubeconfig: str | None,
    kube_context: str | None,
    configmap_ref: str,
    domain: str,
    placeholder: str,
    field_manager: str,
    wait: bool,
    timeout: float,
    poll_seconds: float,
    confirm: bool,
) -> dict[str, Any]:
    """Server-side apply every manifest of a ConfigMap bundle with the domain filled in, then wait for its workloads."""
    domain = domain.strip().lower()
    if not DOMAIN_RE.match(domain):
        raise UsageError(f"--domain {domain!r} is not a domain name", hint="e.g. acme.example.com")
    (ns, name), *rest = parse_refs(configmap_ref, 2, "configmap", "argo/tenant-bundle") or [("", "")]
    if rest or not name:
        raise UsageError(f"--configmap {configmap_ref!r} must name one ns/name")
    cluster = Cluster(kubeconfig, kube_context)
    data = cluster.configmap(ns, name).get("data") or {}
    api = BundleApi(kubeconfig, kube_context)
    items = [api.locate(where, obj) for where, obj in parse_bundle(data, placeholder, domain)]
    workloads = [
        Workload(str(i.obj["metadata"]["namespace"]), WORKLOAD_KINDS[i.obj["kind"]], str(i.obj["metadata"]["name"]))
        for i in items
        if i.obj["kind"] in WORKLOAD_KINDS and str(i.obj["apiVersion"]) == "apps/v1"
    ]
    result: dict[str, Any] = {
        "configmap": f"{ns}/{name}",
        "domain": domain,
        "objects": [i.ref for i in items],
        "workloads": [w.ref for w in workloads],
    }
    if not confirm:
        get_logger().info("plan only (pass --confirm to apply)", objects=result["objects"])
        return {**result, "dry_run": True}
    for item in items:
        api.apply(item, field_manager)
        get_logger().info("applied", object=item.ref)
    waited = 0.0
    if wait and workloads:
        waited = wait_until(
            "the bundle's workloads to become ready",
            timeout,
            poll_seconds,
            _ready(cluster, workloads),
            "check the pods' events (image pulls, PVCs, probes); re-applying is safe",
        )
    write_output("workloads", ",".join(w.ref for w in workloads))
    return {**result, "waited_s": waited, "dry_run": False}


# ---- lb-hostname ---------------------------------------------------------------------------------


@action(cli, "lb-hostname")
@kube_options
@click.option(
    "--service", "service_ref", required=True, help="ns/name of the ingress controller's LoadBalancer Service."
)
def lb_hostname(kubeconfig: str | None, kube_context: str | None, service_ref: str) -> dict[str, Any]:
    """Print the Service's load balancer hostname (or IP) as output `hostname`; exit 1 while it has none."""
    (ns, name), *rest = parse_refs(service_ref, 2, "service", "ingress-nginx/ingress-nginx-controller") or [("", "")]
    if rest or not name:
        raise UsageError(f"--service {service_ref!r} must name one ns/name")
    service = Cluster(kubeconfig, kube_context).service(ns, name)
    kind = (service.get("spec") or {}).get("type", "ClusterIP")
    if kind != "LoadBalancer":
        raise UsageError(
            f"service {ns}/{name} is of type {kind}, not LoadBalancer",
            hint="point --service at the ingress controller's LoadBalancer Service",
        )
    entries = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    hostname = next((e["hostname"] for e in entries if e.get("hostname")), None)
    address = hostname or next((e["ip"] for e in entries if e.get("ip")), None)
    if not address:
        raise TransientError(
            f"service {ns}/{name} has no load balancer address yet",
            hint="the cloud load balancer is still being provisioned; Argo retries this step",
        )
    write_output("hostname", address)
    return {"service": f"{ns}/{name}", "hostname": address, "address_type": "hostname" if hostname else "ip"}


if __name__ == "__main__":
    from steps.runtime import run

    run(cli)
