"""A stateful fake Kubernetes API server that the real ``kubernetes`` client talks to over HTTP.

It answers like the API server where our steps (and kubectl-style tools) can tell the difference:
JSON ``Status`` error bodies with the right ``code``/``reason``/``details`` (401, 403, 404, 409, 415,
422), list responses with ``kind: <Kind>List``, ``apiVersion``, ``metadata.resourceVersion`` and
``limit``/``continue`` paging (items of built-in lists carry no ``kind``/``apiVersion``, custom
resources do), label and simple field selectors, ``resourceVersion``/``generation``/``uid``/
``creationTimestamp``/``managedFields``, the ``scale`` and ``status`` subresources, JSON patch,
merge patch, strategic merge patch (built-in types only, 415 for custom resources) and server-side
apply (``application/apply-patch+yaml`` with ``fieldManager`` and ``force``, field ownership and
409 conflicts), and discovery (``/version``, ``/api``, ``/apis``, ``/apis/<g>/<v>``).

A simulated controller converges Deployments and StatefulSets ``controller_delay`` seconds after
their replica count changes: it creates Ready pods (labels from the pod template, owner references
to the workload) or marks surplus pods Terminating, which vanish one more delay later (StatefulSets
drop the highest ordinals first); ``status`` (``replicas``, ``readyReplicas``, ``availableReplicas``,
``updatedReplicas``, ``observedGeneration``; zero counts omitted like the real API) follows.

Kinds served: Namespace, Pod, ConfigMap, Secret, Service (v1); Deployment, StatefulSet (apps/v1);
Ingress (networking.k8s.io/v1); WorkflowTemplate, CronWorkflow (namespaced) and
ClusterWorkflowTemplate (argoproj.io/v1alpha1). Not served: watch (400), deletecollection, TLS,
admission/defaulting, finalizers.

Usage::

    with fake_kube_server(controller_delay=0.2) as kube:      # or the ``fake_kube`` fixture
        kube.state.namespace("atlas")
        kube.state.deployment("atlas", "hermes", replicas=2)  # seeded converged: 2 Ready pods
        path = kube.kubeconfig(tmp_path / "kubeconfig")      # bearer-token kubeconfig for the client

Test-facing surface of :class:`KubeState` (``kube.state``), all thread-safe:

* seeding: ``add(obj)`` (any served kind; workloads start converged), ``namespace``, ``deployment``,
  ``statefulset``, ``configmap``, ``secret``, ``service`` (``lb_hostname=``/``lb_ip=``),
  ``ingress``, ``workflow_template``, ``cron_workflow``, ``cluster_workflow_template``;
* reading: ``get(resource, namespace, name)`` (a copy or ``None``), ``list_objects(resource,
  namespace, label_selector)``, ``pods(namespace, selector)``; ``resource`` is a plural, kind or singular name;
* changing: ``replace(obj)``, ``set_status(resource, namespace, name, status)``, ``remove(...)``;
* faults: ``deny(verb, resource, namespace=None, name=None)`` (403 like RBAC; ``resource`` may be
  ``deployments/scale``), ``fail(verb, resource, status=500, times=1)``, ``hold(resource, ns, name)``
  (the controller ignores that workload: a stuck rollout);
* ``requests``: every request seen (:class:`Request`: method, path, query, content type, body);
* ``wait_converged(timeout)``: block until no workload has a pending change.

Fixtures (registered by ``pytest_plugins`` in ``tests/conftest.py``): ``fake_kube`` (one server per
test) and ``fake_kube_factory`` (call it for each extra cluster, e.g. old and new tenant).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import re
import secrets
import string
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request as WsgiRequest
from werkzeug.wrappers import Response

Obj = dict[str, Any]
FieldPath = tuple[str, ...]
DEFAULT_TOKEN = "fake-kube-token-3f9c1d"
DEFAULT_USER = "system:serviceaccount:argo:tenant-dr"
APPLY = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


# ---- resource types -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceType:
    """One served resource: where it lives in the URL space and how it behaves."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    builtin: bool = True
    subresources: tuple[str, ...] = ()
    has_generation: bool = False

    @property
    def api_version(self) -> str:
        """``v1`` or ``<group>/<version>``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``deployments.apps`` or ``configmaps``: how the API server names it in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, subresources=("status",)),
    ResourceType("", "v1", "pods", "Pod", True, subresources=("status",)),
    ResourceType("", "v1", "configmaps", "ConfigMap", True),
    ResourceType("", "v1", "secrets", "Secret", True),
    ResourceType("", "v1", "services", "Service", True, subresources=("status",)),
    ResourceType(
        "apps", "v1", "deployments", "Deployment", True, subresources=("scale", "status"), has_generation=True
    ),
    ResourceType(
        "apps", "v1", "statefulsets", "StatefulSet", True, subresources=("scale", "status"), has_generation=True
    ),
    ResourceType(
        "networking.k8s.io", "v1", "ingresses", "Ingress", True, subresources=("status",), has_generation=True
    ),
    ResourceType("argoproj.io", "v1alpha1", "workflowtemplates", "WorkflowTemplate", True, False, (), True),
    ResourceType("argoproj.io", "v1alpha1", "cronworkflows", "CronWorkflow", True, False, (), True),
    ResourceType(
        "argoproj.io", "v1alpha1", "clusterworkflowtemplates", "ClusterWorkflowTemplate", False, False, (), True
    ),
)
WORKLOADS = ("deployments", "statefulsets")


def resource_type(name: str) -> ResourceType:
    """Look a type up by plural, kind or singular (case-insensitive)."""
    wanted = name.lower()
    for rt in RESOURCES:
        if wanted in (rt.plural, rt.kind.lower(), rt.qualified):
            return rt
    raise KeyError(f"the fake API server does not serve {name!r}")


def _type_at(group: str, version: str, plural: str) -> ResourceType | None:
    return next((r for r in RESOURCES if (r.group, r.version, r.plural) == (group, version, plural)), None)


# ---- errors -------------------------------------------------------------------------------------


class ApiError(Exception):
    """Turned into a ``Status`` response body."""

    def __init__(
        self, code: int, reason: str, message: str, details: Obj | None = None, causes: list[Obj] | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details = dict(details or {})
        if causes:
            self.details["causes"] = causes

    def body(self) -> Obj:
        """The ``Status`` object."""
        out: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            out["details"] = self.details
        return out


def _details(rt: ResourceType, name: str | None) -> Obj:
    out: Obj = {"group": rt.group, "kind": rt.plural} if rt.group else {"kind": rt.plural}
    if name:
        out["name"] = name
    return out


def not_found(rt: ResourceType, name: str) -> ApiError:
    """404 like the API server's."""
    return ApiError(404, "NotFound", f'{rt.qualified} "{name}" not found', _details(rt, name))


def bad_request(message: str) -> ApiError:
    """400 BadRequest."""
    return ApiError(400, "BadRequest", message)


def invalid(rt: ResourceType, name: str, message: str) -> ApiError:
    """422 Invalid."""
    return ApiError(
        422, "Invalid", f'{rt.kind}.{rt.group or "core"} "{name}" is invalid: {message}', _details(rt, name)
    )


# ---- patches and selectors ----------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge(target: Any, patch: Any) -> Any:
    """Merge patch, except lists of objects that all have ``name`` are merged by name."""
    if isinstance(patch, list) and isinstance(target, list) and _named(patch) and _named(target):
        merged = copy.deepcopy(target)
        index = {item["name"]: i for i, item in enumerate(merged)}
        for item in patch:
            if item["name"] in index:
                merged[index[item["name"]]] = strategic_merge(merged[index[item["name"]]], item)
            else:
                merged.append(copy.deepcopy(item))
        return merged
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = strategic_merge(result.get(key), value)
    return result


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _container(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test); ``ValueError`` when it does not apply."""
    if not isinstance(ops, list):
        raise ValueError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        kind, parts = op.get("op"), _pointer(op.get("path", ""))
        try:
            if kind == "test":
                if _container(doc, parts) != op.get("value"):
                    raise ValueError(f"test operation failed at {op['path']}")
                continue
            if kind in ("move", "copy"):
                source = _pointer(op["from"])
                value = copy.deepcopy(_container(doc, source))
                if kind == "move":
                    doc = json_patch(doc, [{"op": "remove", "path": op["from"]}])
                doc = json_patch(doc, [{"op": "add", "path": op["path"], "value": value}])
                continue
            parent, last = _container(doc, parts[:-1]), parts[-1]
            if kind == "add":
                if isinstance(parent, list):
                    parent.insert(len(parent) if last == "-" else int(last), copy.deepcopy(op["value"]))
                else:
                    parent[last] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            elif kind == "replace":
                key: Any = int(last) if isinstance(parent, list) else last
                if isinstance(parent, dict) and key not in parent:
                    raise ValueError(f"replace of missing path {op['path']}")
                parent[key] = copy.deepcopy(op["value"])
            else:
                raise ValueError(f"unknown JSON patch operation {kind!r}")
        except (KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"JSON patch {kind} {op.get('path')} does not apply: {exc}") from exc
    return doc


_REQ = re.compile(r"^\s*(!?)([A-Za-z0-9./_-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9._-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*$")


Requirement = tuple[str, str, frozenset[str]]  # (operator, key, values)


def parse_selector(text: str | None) -> list[Requirement]:
    """Label selector (``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``)."""
    reqs: list[Requirement] = []
    for raw in re.split(r",(?![^()]*\))", text or ""):
        if not raw.strip():
            continue
        m = _REQ.match(raw)
        if not m:
            raise bad_request(f"unable to parse requirement: {raw!r}")
        neg, key, op, value, setop, values = m.groups()
        if op:
            reqs.append(("!=" if op == "!=" else "=", key, frozenset([value])))
        elif setop:
            reqs.append((setop, key, frozenset(v.strip() for v in values.split(",") if v.strip())))
        else:
            reqs.append(("!" if neg else "exists", key, frozenset()))
    return reqs


def selector_matches(reqs: list[Requirement], labels: dict[str, str]) -> bool:
    """Whether ``labels`` satisfy every requirement."""
    for op, key, values in reqs:
        value = labels.get(key)
        ok = {
            "=": value in values,
            "in": value in values,
            "!=": value not in values,
            "notin": value not in values,
            "exists": key in labels,
            "!": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def _field_selector(text: str | None) -> Callable[[Obj], bool]:
    pairs: list[tuple[list[str], str, bool]] = []
    for raw in (text or "").split(","):
        if not raw.strip():
            continue
        m = re.match(r"^\s*([A-Za-z.]+)\s*(==|=|!=)\s*(.*?)\s*$", raw)
        if not m or m.group(1) not in ("metadata.name", "metadata.namespace", "status.phase", "spec.nodeName"):
            raise bad_request(f'field label not supported: "{raw}"')
        pairs.append((m.group(1).split("."), m.group(3), m.group(2) != "!="))

    def check(obj: Obj) -> bool:
        for path, value, equal in pairs:
            cur: Any = obj
            for part in path:
                cur = cur.get(part) if isinstance(cur, dict) else None
            if (str(cur or "") == value) != equal:
                return False
        return True

    return check


def selector_string(match_labels: dict[str, str]) -> str:
    """``{"app": "x"}`` -> ``app=x`` (what Scale.status.selector carries)."""
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


# ---- field ownership (server-side apply) ---------------------------------------------------------

_SERVER_META = {
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
}


def leaf_paths(obj: Obj) -> dict[FieldPath, Any]:
    """Owned leaves of an object (lists are atomic); server fields and status excluded."""
    out: dict[FieldPath, Any] = {}

    def walk(value: Any, path: FieldPath) -> None:
        if isinstance(value, dict) and value:
            for key, sub in value.items():
                walk(sub, (*path, key))
        else:
            out[path] = value

    for key, value in obj.items():
        if key in ("apiVersion", "kind", "status"):
            continue
        if key == "metadata" and isinstance(value, dict):
            for mkey, mvalue in value.items():
                if mkey not in _SERVER_META:
                    walk(mvalue, ("metadata", mkey))
            continue
        walk(value, (key,))
    return out


def _overlap(a: FieldPath, b: FieldPath) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _get_path(obj: Any, path: FieldPath) -> Any:
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return _MISSING
        obj = obj[part]
    return obj


def _del_path(obj: Obj, path: FieldPath) -> None:
    parents: list[tuple[Obj, str]] = []
    cur: Any = obj
    for part in path[:-1]:
        if not isinstance(cur, dict) or part not in cur:
            return
        parents.append((cur, part))
        cur = cur[part]
    if isinstance(cur, dict):
        cur.pop(path[-1], None)
    for parent, key in reversed(parents):  # drop maps left empty by the removal
        if parent[key] == {} and len(parents) > 1:
            parent.pop(key)


def _deep_merge(target: Obj, applied: Obj) -> None:
    for key, value in applied.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict) and value:
            _deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def fields_v1(paths: set[FieldPath]) -> Obj:
    """Ownership in the API server's FieldsV1 shape (``{"f:spec": {"f:replicas": {}}}``)."""
    root: Obj = {}
    for path in sorted(paths):
        node = root
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return root


class _Missing:
    pass


_MISSING = _Missing()


# ---- state --------------------------------------------------------------------------------------


@dataclass
class Request:
    """One request the fake saw."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any


@dataclass
class _Rule:
    verb: str
    resource: str
    namespace: str | None
    name: str | None
    status: int = 403
    times: int = -1  # -1: forever

    def matches(self, verb: str, resource: str, namespace: str | None, name: str | None) -> bool:
        return (
            self.times != 0
            and self.verb in ("*", verb)
            and self.resource in ("*", resource)
            and (self.namespace is None or self.namespace == namespace)
            and (self.name is None or self.name == name)
        )


Key = tuple[str, str, str]  # (plural, namespace or "", name)


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rand(n: int) -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(n))


@dataclass
class KubeState:
    """Everything the fake cluster holds; see the module docstring for the test-facing methods."""

    controller_delay: float = 0.3
    token: str = DEFAULT_TOKEN
    user: str = DEFAULT_USER
    requests: list[Request] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _objects: dict[Key, Obj] = field(default_factory=dict, repr=False)
    _owners: dict[Key, dict[tuple[str, str], set[FieldPath]]] = field(default_factory=dict, repr=False)
    _rv: int = 1000
    _changed: dict[Key, float] = field(default_factory=dict, repr=False)
    _held: set[Key] = field(default_factory=set, repr=False)
    _gone_at: dict[Key, float] = field(default_factory=dict, repr=False)
    _rules: list[_Rule] = field(default_factory=list, repr=False)

    # ---- seeding ----------------------------------------------------------------------------------

    def add(self, obj: Obj, *, manager: str = "seed") -> Obj:
        """Create ``obj`` (any served kind) as if a client had; workloads start converged."""
        with self.lock:
            rt = self._type_of(obj)
            meta = obj.setdefault("metadata", {})
            ns = meta.get("namespace", "default") if rt.namespaced else ""
            stored = self._create(rt, ns, copy.deepcopy(obj), manager)
            key = (rt.plural, ns, stored["metadata"]["name"])
            if rt.plural in WORKLOADS:
                self._changed.pop(key, None)
                self._converge(key, time.monotonic())
            return copy.deepcopy(self._objects[key])

    def namespace(self, name: str, labels: dict[str, str] | None = None) -> Obj:
        """Create a namespace (Active)."""
        return self.add(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **(labels or {})}},
                "status": {"phase": "Active"},
            }
        )

    def _workload(self, kind: str, ns: str, name: str, replicas: int, labels: dict[str, str] | None) -> Obj:
        labels = labels or {"app": name}
        spec: Obj = {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [{"name": name, "image": f"registry.example/{name}:1.0"}]},
            },
        }
        if kind == "StatefulSet":
            spec["serviceName"] = name
        return self.add(
            {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": spec}
        )

    def deployment(self, ns: str, name: str, replicas: int = 1, labels: dict[str, str] | None = None) -> Obj:
        """A Deployment with ``replicas`` Ready pods (selector ``app=<name>`` unless ``labels``)."""
        return self._workload("Deployment", ns, name, replicas, labels)

    def statefulset(self, ns: str, name: str, replicas: int = 1, labels: dict[str, str] | None = None) -> Obj:
        """A StatefulSet with pods ``<name>-0..n-1`` Ready."""
        return self._workload("StatefulSet", ns, name, replicas, labels)

    def configmap(self, ns: str, name: str, data: dict[str, str], labels: dict[str, str] | None = None) -> Obj:
        """A ConfigMap."""
        meta: Obj = {"name": name, "namespace": ns}
        if labels:
            meta["labels"] = labels
        return self.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(data)})

    def secret(self, ns: str, name: str, data: dict[str, bytes]) -> Obj:
        """An Opaque Secret (values base64-encoded like the API)."""
        encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
        return self.add(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": name, "namespace": ns},
                "data": encoded,
            }
        )

    def service(
        self,
        ns: str,
        name: str,
        *,
        type_: str = "LoadBalancer",
        lb_hostname: str | None = None,
        lb_ip: str | None = None,
    ) -> Obj:
        """A Service; a LoadBalancer gets ``status.loadBalancer.ingress`` when a hostname/IP is given."""
        ingress: list[Obj] = []
        if lb_hostname:
            ingress.append({"hostname": lb_hostname})
        if lb_ip:
            ingress.append({"ip": lb_ip})
        return self.add(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "type": type_,
                    "selector": {"app": name},
                    "ports": [{"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}],
                },
                "status": {"loadBalancer": {"ingress": ingress} if ingress else {}},
            }
        )

    def ingress(
        self, ns: str, name: str, hosts: list[str], tls_hosts: list[list[str]] | None = None, service: str = "web"
    ) -> Obj:
        """An Ingress with one rule per host and optional TLS host groups."""
        rules = [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": service, "port": {"number": 80}}},
                        }
                    ]
                },
            }
            for host in hosts
        ]
        spec: Obj = {"ingressClassName": "nginx", "rules": rules}
        if tls_hosts:
            spec["tls"] = [{"hosts": group, "secretName": f"{name}-tls-{i}"} for i, group in enumerate(tls_hosts)]
        return self.add(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {"name": name, "namespace": ns},
                "spec": spec,
            }
        )

    def workflow_template(self, ns: str, name: str, spec: Obj, labels: dict[str, str] | None = None) -> Obj:
        """An Argo WorkflowTemplate."""
        meta: Obj = {"name": name, "namespace": ns, **({"labels": labels} if labels else {})}
        return self.add(
            {"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate", "metadata": meta, "spec": spec}
        )

    def cron_workflow(
        self,
        ns: str,
        name: str,
        schedule: str = "0 3 * * *",
        suspend: bool | None = None,
        template: str = "main",
        labels: dict[str, str] | None = None,
    ) -> Obj:
        """An Argo CronWorkflow (``suspend`` omitted when ``None``) with a status like the controller's."""
        spec: Obj = {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "workflowSpec": {"workflowTemplateRef": {"name": template}},
        }
        if suspend is not None:
            spec["suspend"] = suspend
        return self.add(
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "CronWorkflow",
                "metadata": {"name": name, "namespace": ns, **({"labels": labels} if labels else {})},
                "spec": spec,
                "status": {"active": [], "lastScheduledTime": "2026-01-01T03:00:00Z", "phase": "Active"},
            }
        )

    def cluster_workflow_template(self, name: str, spec: Obj) -> Obj:
        """An Argo ClusterWorkflowTemplate."""
        return self.add(
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "ClusterWorkflowTemplate",
                "metadata": {"name": name},
                "spec": spec,
            }
        )

    # ---- reading and changing -------------------------------------------------------------------

    def get(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        """A copy of one object (after the controller caught up), or ``None``."""
        rt = resource_type(resource)
        with self.lock:
            self.reconcile()
            obj = self._objects.get((rt.plural, namespace or "" if rt.namespaced else "", name))
            return copy.deepcopy(obj) if obj else None

    def list_objects(self, resource: str, namespace: str | None = None, label_selector: str | None = None) -> list[Obj]:
        """Copies of the objects of one kind (optionally in one namespace / matching labels), by name."""
        rt = resource_type(resource)
        reqs = parse_selector(label_selector)
        with self.lock:
            self.reconcile()
            return [
                copy.deepcopy(obj)
                for (plural, ns, _), obj in sorted(self._objects.items())
                if plural == rt.plural
                and (namespace is None or ns == namespace)
                and selector_matches(reqs, obj["metadata"].get("labels") or {})
            ]

    def pods(self, namespace: str, selector: str | None = None) -> list[Obj]:
        """Pods in ``namespace`` matching ``selector`` (Terminating ones included)."""
        return self.list_objects("pods", namespace, selector)

    def replace(self, obj: Obj, *, manager: str = "test") -> Obj:
        """Overwrite an existing object's content (bumps resourceVersion/generation, keeps status)."""
        rt = self._type_of(obj)
        with self.lock:
            ns = obj["metadata"].get("namespace", "") if rt.namespaced else ""
            key = (rt.plural, ns, obj["metadata"]["name"])
            old = self._objects.get(key)
            if old is None:
                raise KeyError(key)
            new = copy.deepcopy(obj)
            new["status"] = copy.deepcopy(old.get("status", {}))
            return copy.deepcopy(self._store(rt, key, new, old, manager, "Update"))

    def set_status(self, resource: str, namespace: str | None, name: str, status: Obj) -> None:
        """Replace an object's status (e.g. a load balancer getting its hostname)."""
        rt = resource_type(resource)
        with self.lock:
            key = (rt.plural, namespace or "" if rt.namespaced else "", name)
            new = copy.deepcopy(self._objects[key])
            new["status"] = copy.deepcopy(status)
            self._store(rt, key, new, self._objects[key], "test", "Update")

    def remove(self, resource: str, namespace: str | None, name: str) -> None:
        """Delete an object at once (no grace period)."""
        rt = resource_type(resource)
        with self.lock:
            self._drop((rt.plural, namespace or "" if rt.namespaced else "", name))

    def deny(self, verb: str, resource: str, namespace: str | None = None, name: str | None = None) -> None:
        """Answer 403 Forbidden for ``verb`` on ``resource`` (``*`` wildcards), like missing RBAC."""
        with self.lock:
            self._rules.append(_Rule(verb, resource, namespace, name))

    def fail(self, verb: str, resource: str, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` matching requests with ``status`` (e.g. 500, 503, 429)."""
        with self.lock:
            self._rules.append(_Rule(verb, resource, None, None, status, times))

    def hold(self, resource: str, namespace: str, name: str) -> None:
        """Stop the controller from converging one workload (a stuck rollout)."""
        with self.lock:
            self._held.add((resource_type(resource).plural, namespace, name))

    def release(self, resource: str, namespace: str, name: str) -> None:
        """Undo :meth:`hold`."""
        with self.lock:
            self._held.discard((resource_type(resource).plural, namespace, name))

    def wait_converged(self, timeout: float = 10.0) -> None:
        """Block until the controller has no pending change (held workloads excluded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                self.reconcile()
                if not self._gone_at and not (set(self._changed) - self._held):
                    return
            time.sleep(0.05)
        raise TimeoutError("fake controller did not converge")

    # ---- internals --------------------------------------------------------------------------------

    def _type_of(self, obj: Obj) -> ResourceType:
        for rt in RESOURCES:
            if rt.api_version == obj.get("apiVersion") and rt.kind == obj.get("kind"):
                return rt
        raise KeyError(f"the fake API server does not serve {obj.get('apiVersion')}/{obj.get('kind')}")

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _create(self, rt: ResourceType, ns: str, obj: Obj, manager: str, operation: str = "Update") -> Obj:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + _rand(5)
        name = meta.get("name")
        if not name:
            raise invalid(rt, "", "metadata.name: Required value: name or generateName is required")
        if rt.namespaced:
            if ("namespaces", "", ns) not in self._objects:
                raise ApiError(404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"})
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        key = (rt.plural, ns, name)
        if key in self._objects:
            raise ApiError(409, "AlreadyExists", f'{rt.qualified} "{name}" already exists', _details(rt, name))
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now_iso()
        if rt.has_generation:
            meta["generation"] = 1
        for server_field in ("resourceVersion", "managedFields", "deletionTimestamp", "selfLink"):
            meta.pop(server_field, None)
        self._owners[key] = {}
        return self._store(rt, key, obj, None, manager, operation)

    def _store(
        self,
        rt: ResourceType,
        key: Key,
        new: Obj,
        old: Obj | None,
        manager: str,
        operation: str,
        applied: set[FieldPath] | None = None,
    ) -> Obj:
        """Write ``new`` with server-maintained metadata, ownership and controller bookkeeping."""
        meta = new["metadata"]
        if old is not None:
            for server_field in ("uid", "creationTimestamp", "deletionTimestamp"):
                if server_field in old["metadata"]:
                    meta[server_field] = old["metadata"][server_field]
            if rt.has_generation:
                meta["generation"] = old["metadata"].get("generation", 1)
                body_old = {k: v for k, v in old.items() if k not in ("metadata", "status")}
                body_new = {k: v for k, v in new.items() if k not in ("metadata", "status")}
                if body_old != body_new:
                    meta["generation"] += 1
        owners = self._owners.setdefault(key, {})
        if applied is not None:
            owners[(manager, "Apply")] = set(applied)
        else:
            before = leaf_paths(old) if old else {}
            after = leaf_paths(new)
            changed = {p for p, v in after.items() if before.get(p, _MISSING) != v}
            gone = set(before) - set(after)
            for paths in owners.values():
                paths -= {q for q in paths if any(_overlap(q, p) for p in changed | gone)}
            if changed:
                owners.setdefault((manager, operation), set()).update(changed)
        for mgr in [m for m, paths in owners.items() if not paths]:
            del owners[mgr]
        meta["managedFields"] = [
            {
                "manager": mgr,
                "operation": op,
                "apiVersion": rt.api_version,
                "time": _now_iso(),
                "fieldsType": "FieldsV1",
                "fieldsV1": fields_v1(paths),
            }
            for (mgr, op), paths in sorted(owners.items())
        ]
        if old is None or old != new:
            meta["resourceVersion"] = self._next_rv()
        self._objects[key] = new
        if rt.plural in WORKLOADS:
            old_replicas = (old or {}).get("spec", {}).get("replicas", _MISSING)
            if old is None or new.get("spec", {}).get("replicas", 1) != old_replicas:
                self._changed[key] = time.monotonic()
        return new

    def _drop(self, key: Key) -> None:
        removed = self._objects.pop(key, None)
        self._owners.pop(key, None)
        self._changed.pop(key, None)
        self._gone_at.pop(key, None)
        if removed is None:
            return
        if key[0] == "namespaces":
            for other in [k for k in self._objects if k[1] == key[2] and k[0] != "namespaces"]:
                self._drop(other)
        elif key[0] in WORKLOADS:  # garbage collection: the workload's pods terminate
            for pod_key, pod in self._owned_pods(removed):
                pod["metadata"]["deletionTimestamp"] = _now_iso()
                self._gone_at[pod_key] = time.monotonic() + self.controller_delay

    # ---- the controller -----------------------------------------------------------------------------

    def reconcile(self) -> None:
        """Let the simulated controllers and kubelets catch up with the wall clock."""
        now = time.monotonic()
        for key, gone in list(self._gone_at.items()):
            if now >= gone:
                self._objects.pop(key, None)
                self._owners.pop(key, None)
                del self._gone_at[key]
        for key, since in list(self._changed.items()):
            if key in self._held or now - since < self.controller_delay:
                continue
            del self._changed[key]
            if key in self._objects:
                self._converge(key, now)

    def _owned_pods(self, workload: Obj) -> list[tuple[Key, Obj]]:
        uid = workload["metadata"]["uid"]
        ns = workload["metadata"]["namespace"]
        return [
            (k, p)
            for k, p in sorted(self._objects.items())
            if k[0] == "pods"
            and k[1] == ns
            and any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])
        ]

    def _converge(self, key: Key, now: float) -> None:
        workload = self._objects[key]
        plural, ns, name = key
        desired = int(workload["spec"].get("replicas", 1))
        live = [(k, p) for k, p in self._owned_pods(workload) if k not in self._gone_at]
        if plural == "statefulsets":
            live.sort(key=lambda kp: int(kp[0][2].rsplit("-", 1)[1]))
        for pod_key, pod in live[desired:]:
            pod["metadata"]["deletionTimestamp"] = _now_iso()
            pod["metadata"]["resourceVersion"] = self._next_rv()
            pod["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
            self._gone_at[pod_key] = now + self.controller_delay
        template = workload["spec"]["template"]
        pod_hash = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        taken = {k[2] for k, _ in live}
        ordinal = 0
        while len(live) < desired:
            if plural == "statefulsets":
                while f"{name}-{ordinal}" in taken:
                    ordinal += 1
                pod_name = f"{name}-{ordinal}"
                taken.add(pod_name)
            else:
                pod_name = f"{name}-{pod_hash}-{_rand(5)}"
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
                    "namespace": ns,
                    "labels": dict(template.get("metadata", {}).get("labels", {})),
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": workload["kind"],
                            "name": name,
                            "uid": workload["metadata"]["uid"],
                            "controller": True,
                        }
                    ],
                },
                "spec": copy.deepcopy(template.get("spec", {})),
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
            }
            self._create(resource_type("pods"), ns, pod, f"{plural[:-1]}-controller")
            live.append(((("pods", ns, pod_name)), pod))
        count = min(len(live), desired)
        status: Obj = {"observedGeneration": workload["metadata"].get("generation", 1)}
        for field_name in ("replicas", "readyReplicas", "availableReplicas", "updatedReplicas", "currentReplicas"):
            if field_name == "currentReplicas" and plural != "statefulsets":
                continue
            if count or (field_name == "replicas" and plural == "statefulsets"):
                status[field_name] = count
        if workload.get("status") != status:
            workload["status"] = status
            workload["metadata"]["resourceVersion"] = self._next_rv()

    # ---- access checks ----------------------------------------------------------------------------

    def check_access(self, verb: str, rt: ResourceType, sub: str | None, ns: str, name: str | None) -> None:
        """Raise the configured 403/failure for this request, if any."""
        resource = f"{rt.plural}/{sub}" if sub else rt.plural
        for rule in self._rules:
            if not rule.matches(verb, resource, ns or None, name):
                continue
            if rule.times > 0:
                rule.times -= 1
            if rule.status == 403:
                what = f'{rt.qualified} "{name}"' if name else rt.qualified
                scope = f'in the namespace "{ns}"' if ns else "at the cluster scope"
                raise ApiError(
                    403,
                    "Forbidden",
                    f'{what} is forbidden: User "{self.user}" cannot {verb} resource "{resource}" '
                    f'in API group "{rt.group}" {scope}',
                    _details(rt, name),
                )
            reason = {429: "TooManyRequests", 503: "ServiceUnavailable", 504: "Timeout"}.get(
                rule.status, "InternalError"
            )
            raise ApiError(rule.status, reason, f"injected failure: {reason}")


# ---- the HTTP layer -----------------------------------------------------------------------------


class _App:
    """The WSGI application over a :class:`KubeState`."""

    def __init__(self, state: KubeState) -> None:
        self.state = state

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = WsgiRequest(environ)
        try:
            status, body = self.handle(request)
        except ApiError as exc:
            status, body = exc.code, exc.body()
        response = Response(json.dumps(body), status=status, content_type="application/json")
        return response(environ, start_response)

    def handle(self, request: WsgiRequest) -> tuple[int, Obj]:
        """Route one request."""
        state = self.state
        raw = request.get_data()
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        query = {k: v for k, v in request.args.items()}
        body: Any = None
        if raw:
            try:
                body = yaml.safe_load(raw) if content_type == APPLY else json.loads(raw)
            except (ValueError, yaml.YAMLError) as exc:
                raise bad_request(f"the body of the request could not be decoded: {exc}") from exc
        with state.lock:
            state.requests.append(Request(request.method, request.path, query, content_type, body))
            if request.headers.get("Authorization") != f"Bearer {state.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            state.reconcile()
            parts = [p for p in request.path.split("/") if p]
            if request.method == "GET":
                found = self._discovery(parts)
                if found is not None:
                    return 200, found
            if query.get("watch") in ("1", "true"):
                raise bad_request("watch is not implemented by the fake API server")
            return self._resource(request.method, parts, query, content_type, body, request)

    # ---- discovery ----------------------------------------------------------------------------------

    def _discovery(self, parts: list[str]) -> Obj | None:
        if parts == ["version"]:
            return {"major": "1", "minor": "31", "gitVersion": "v1.31.0-fake", "platform": "linux/amd64"}
        if parts == ["api"]:
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        groups = sorted({(r.group, r.version) for r in RESOURCES if r.group})
        if parts == ["apis"]:
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                        "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v},
                    }
                    for g, v in groups
                ],
            }
        if parts == ["api", "v1"] or (len(parts) == 3 and parts[0] == "apis" and (parts[1], parts[2]) in groups):
            group, version = ("", "v1") if parts[0] == "api" else (parts[1], parts[2])
            resources: list[Obj] = []
            for rt in RESOURCES:
                if (rt.group, rt.version) != (group, version):
                    continue
                resources.append(
                    {
                        "name": rt.plural,
                        "singularName": rt.kind.lower(),
                        "namespaced": rt.namespaced,
                        "kind": rt.kind,
                        "verbs": ["create", "delete", "get", "list", "patch", "update"],
                    }
                )
                for sub in rt.subresources:
                    sub_kind = "Scale" if sub == "scale" else rt.kind
                    entry: Obj = {
                        "name": f"{rt.plural}/{sub}",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "kind": sub_kind,
                        "verbs": ["get", "patch", "update"],
                    }
                    if sub == "scale":
                        entry.update(group="autoscaling", version="v1")
                    resources.append(entry)
            gv = f"{group}/{version}" if group else version
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
        return None

    # ---- resources ----------------------------------------------------------------------------------

    def _resource(
        self, method: str, parts: list[str], query: dict[str, str], ctype: str, body: Any, request: WsgiRequest
    ) -> tuple[int, Obj]:
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        ns = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        rt = _type_at(group, version, rest[0])
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if rt is None or (ns and not rt.namespaced) or (sub and sub not in rt.subresources):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        manager = query.get("fieldManager") or (request.user_agent.string or "unknown").split("/")[0]
        verb = {"GET": "get" if name else "list", "POST": "create", "PUT": "update", "PATCH": "patch"}.get(
            method, "delete"
        )
        self.state.check_access(verb, rt, sub, ns, name)
        if name is None:
            if method == "GET":
                return 200, self._list(rt, ns, query)
            if method == "POST" and (ns or not rt.namespaced):
                return 201, copy.deepcopy(self.state._create(rt, ns, self._body(rt, body), manager))
            raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on {rt.qualified}")
        key = (rt.plural, ns, name)
        current = self.state._objects.get(key)
        if method == "PATCH" and ctype == APPLY and sub is None:
            return self._apply(rt, key, current, body, query)
        if current is None:
            raise not_found(rt, name)
        if method == "GET":
            return 200, self._scale(current) if sub == "scale" else copy.deepcopy(current)
        if method == "DELETE":
            return 200, self._delete(rt, key, current)
        if method == "PUT":
            new = self._body(rt, body)
        elif method == "PATCH":
            base = self._scale(current) if sub == "scale" else current
            new = self._patch(rt, name, base, body, ctype)
        else:
            raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on {rt.qualified}")
        sent_rv = new.get("metadata", {}).get("resourceVersion")
        if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {rt.qualified} "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
                _details(rt, name),
            )
        if sub == "scale":
            replicas = new.get("spec", {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise invalid(rt, name, f"spec.replicas: Invalid value: {replicas!r}")
            updated = copy.deepcopy(current)
            updated["spec"]["replicas"] = replicas
            self.state._store(rt, key, updated, current, manager, "Update")
            return 200, self._scale(updated)
        if new.get("metadata", {}).get("name", name) != name:
            raise bad_request("the name of the object does not match the name on the URL")
        merged = copy.deepcopy(new)
        merged["apiVersion"], merged["kind"] = rt.api_version, rt.kind
        merged.setdefault("metadata", {})["name"] = name
        if ns:
            merged["metadata"]["namespace"] = ns
        if sub == "status":
            merged = {**copy.deepcopy(current), "status": merged.get("status", {})}
        elif "status" in rt.subresources or not rt.builtin:
            merged["status"] = copy.deepcopy(current.get("status", {}))
            if not merged["status"] and "status" not in current:
                merged.pop("status")
        return 200, copy.deepcopy(self.state._store(rt, key, merged, current, manager, "Update"))

    @staticmethod
    def _body(rt: ResourceType, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        if body.get("kind", rt.kind) != rt.kind or body.get("apiVersion", rt.api_version) != rt.api_version:
            raise bad_request(
                f"the API version in the data ({body.get('apiVersion')}) does not match the expected API version "
                f"({rt.api_version}) or kind {body.get('kind')} is not {rt.kind}"
            )
        return copy.deepcopy(body)

    def _list(self, rt: ResourceType, ns: str, query: dict[str, str]) -> Obj:
        reqs = parse_selector(query.get("labelSelector"))
        fields = _field_selector(query.get("fieldSelector"))
        items = [
            obj
            for (plural, ons, _), obj in sorted(self.state._objects.items())
            if plural == rt.plural
            and (not ns or ons == ns)
            and selector_matches(reqs, obj["metadata"].get("labels") or {})
            and fields(obj)
        ]
        start = 0
        if query.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(query["continue"]))
                start = int(token["start"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ApiError(410, "Expired", "the provided continue parameter is too old") from exc
        limit = int(query.get("limit") or 0)
        page = items[start : start + limit] if limit else items[start:]
        meta: Obj = {"resourceVersion": str(self.state._rv)}
        if limit and start + limit < len(items):
            token = {"rv": self.state._rv, "start": start + limit}
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            meta["remainingItemCount"] = len(items) - start - limit
        out = []
        for obj in page:
            item = copy.deepcopy(obj)
            if rt.builtin:  # typed lists come without per-item kind/apiVersion
                item.pop("kind", None)
                item.pop("apiVersion", None)
            out.append(item)
        return {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": meta, "items": out}

    @staticmethod
    def _scale(workload: Obj) -> Obj:
        meta = workload["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta
            },
            "spec": {"replicas": workload["spec"].get("replicas", 1)},
            "status": {
                "replicas": workload.get("status", {}).get("replicas", 0),
                "selector": selector_string(workload["spec"]["selector"].get("matchLabels", {})),
            },
        }

    @staticmethod
    def _patch(rt: ResourceType, name: str, current: Obj, body: Any, ctype: str) -> Obj:
        try:
            if ctype == JSON_PATCH:
                patched = json_patch(current, body)
            elif ctype == MERGE_PATCH:
                patched = merge_patch(current, body)
            elif ctype == STRATEGIC_PATCH and rt.builtin:
                patched = strategic_merge(current, body)
            else:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"{JSON_PATCH}, {MERGE_PATCH}{', ' + STRATEGIC_PATCH if rt.builtin else ''}, {APPLY}",
                )
        except ValueError as exc:
            raise invalid(rt, name, str(exc)) from exc
        if not isinstance(patched, dict):
            raise bad_request("the patch did not produce an object")
        return patched

    def _apply(
        self, rt: ResourceType, key: Key, current: Obj | None, body: Any, query: dict[str, str]
    ) -> tuple[int, Obj]:
        state = self.state
        _, ns, name = key
        manager = query.get("fieldManager")
        if not manager:
            raise bad_request("PATCH, application/apply-patch+yaml: fieldManager is required for apply requests")
        applied = self._body(rt, body)
        if applied.get("kind") != rt.kind or applied.get("apiVersion") != rt.api_version:
            raise bad_request("apply requests must set apiVersion and kind")
        meta = applied.get("metadata") or {}
        if meta.get("name") != name:
            raise bad_request("the name of the object does not match the name on the URL")
        if rt.namespaced and meta.get("namespace", ns) != ns:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        for server_field in _SERVER_META - {"name", "namespace"}:
            if server_field in meta and server_field != "resourceVersion":
                meta.pop(server_field)
        applied.pop("status", None)
        paths = leaf_paths(applied)
        if current is None:
            return 201, copy.deepcopy(state._create(rt, ns, copy.deepcopy(applied), manager, "Apply"))
        owners = state._owners.setdefault(key, {})
        conflicts: list[tuple[str, FieldPath]] = []
        for path, value in paths.items():
            for (mgr, op), owned in owners.items():
                if (mgr, op) == (manager, "Apply"):
                    continue
                if any(_overlap(path, q) for q in owned) and _get_path(current, path) != value:
                    conflicts.append((mgr, path))
        if conflicts and query.get("force") not in ("true", "1"):
            causes = [
                {"type": "FieldManagerConflict", "message": f'conflict with "{m}"', "field": "." + ".".join(p)}
                for m, p in conflicts
            ]
            fields_text = "\n".join(f"- {c['message']}: {c['field']}" for c in causes)
            raise ApiError(
                409,
                "Conflict",
                f"Apply failed with {len(conflicts)} conflict{'s' if len(conflicts) > 1 else ''}: {fields_text}",
                _details(rt, name),
                causes,
            )
        for mgr, path in conflicts:  # forced: the other managers lose these fields
            owners[(mgr, "Apply")] = owners.get((mgr, "Apply"), set())
            for owned in owners.values():
                owned -= {q for q in owned if _overlap(q, path)}
        new = copy.deepcopy(current)
        previously = owners.get((manager, "Apply"), set())
        others = [owned for m, owned in owners.items() if m != (manager, "Apply")]
        for path in previously - set(paths):
            if not any(_overlap(path, q) for owned in others for q in owned):
                _del_path(new, path)
        _deep_merge(new, {k: v for k, v in applied.items() if k != "metadata"})
        _deep_merge(new["metadata"], {k: v for k, v in meta.items() if k not in ("name", "namespace")})
        if meta.get("resourceVersion") and meta["resourceVersion"] != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {rt.qualified} "{name}"')
        return 200, copy.deepcopy(state._store(rt, key, new, current, manager, "Apply", applied=set(paths)))

    def _delete(self, rt: ResourceType, key: Key, current: Obj) -> Obj:
        state = self.state
        if rt.plural == "pods":
            current["metadata"]["deletionTimestamp"] = _now_iso()
            state._gone_at[key] = time.monotonic() + state.controller_delay
            for wkey, workload in state._objects.items():  # the owner's controller replaces the pod
                refs = current["metadata"].get("ownerReferences") or []
                if wkey[0] in WORKLOADS and any(r.get("uid") == workload["metadata"]["uid"] for r in refs):
                    state._changed.setdefault(wkey, time.monotonic())
        else:
            state._drop(key)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {**_details(rt, key[2]), "uid": current["metadata"]["uid"]},
        }


# ---- server lifecycle ---------------------------------------------------------------------------


@dataclass
class FakeKube:
    """A running fake API server."""

    state: KubeState
    server: BaseWSGIServer = field(repr=False)
    thread: threading.Thread = field(repr=False)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.server.server_port}"

    def kubeconfig(self, path: Path, *, token: str | None = None, namespace: str = "default") -> Path:
        """Write a kubeconfig (bearer token, context ``fake``) pointing at this server; returns ``path``."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": token or self.state.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
            "current-context": "fake",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    def stop(self) -> None:
        """Shut the server down."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No access log lines in test output."""


def start_fake_kube(*, controller_delay: float = 0.3, token: str = DEFAULT_TOKEN) -> FakeKube:
    """Start a fake API server on 127.0.0.1 (free port) in a daemon thread; call ``stop()`` when done."""
    state = KubeState(controller_delay=controller_delay, token=token)
    server = make_server("127.0.0.1", 0, _App(state), threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="fake-kube", daemon=True)
    thread.start()
    return FakeKube(state=state, server=server, thread=thread)


@contextlib.contextmanager
def fake_kube_server(*, controller_delay: float = 0.3, token: str = DEFAULT_TOKEN) -> Iterator[FakeKube]:
    """Context manager around :func:`start_fake_kube`."""
    kube = start_fake_kube(controller_delay=controller_delay, token=token)
    try:
        yield kube
    finally:
        kube.stop()


@pytest.fixture
def fake_kube() -> Iterator[FakeKube]:
    """A fresh fake Kubernetes API server for one test."""
    with fake_kube_server() as kube:
        yield kube


@pytest.fixture
def fake_kube_factory() -> Iterator[Callable[..., FakeKube]]:
    """Start as many fake clusters as a test needs (``factory(controller_delay=...)``); all stop afterwards."""
    started: list[FakeKube] = []

    def factory(**kwargs: Any) -> FakeKube:
        kube = start_fake_kube(**kwargs)
        started.append(kube)
        return kube

    yield factory
    for kube in started:
        kube.stop()
