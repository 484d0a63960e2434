"""ServiceAccounts and least-privilege Roles/RoleBindings for the generated packages (plain manifests).

Backups run as ``<service_account>`` (read-only access), restores as ``<service_account>-restore``.
Every workflow pod needs ``workflowtaskresults`` in its own namespace (Argo's executor). In-cluster mode
adds the rules each component's step declares (e.g. pods/exec on the Cassandra pods); in kubeconfig mode
the tenant's cluster is reached with the kubeconfig's own credentials, so nothing else is granted here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from workflows.config import TenantConfig
from workflows.templates.common import labels
from workflows.templates.component import Rule

Manifest = dict[str, Any]
RBAC_API = "rbac.authorization.k8s.io/v1"


def _meta(cfg: TenantConfig, name: str, namespace: str | None, kind: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = labels(cfg, kind)
    return meta


def _rules(rules: Iterable[Rule]) -> list[dict[str, Any]]:
    merged: dict[tuple[tuple[str, ...], tuple[str, ...]], set[str]] = defaultdict(set)
    for r in rules:
        merged[(r.api_groups, r.resources)].update(r.verbs)
    return [
        {"apiGroups": list(groups), "resources": list(resources), "verbs": sorted(verbs)}
        for (groups, resources), verbs in sorted(merged.items())
    ]


def service_account_rbac(cfg: TenantConfig, account: str, kind: str, rules: Iterable[Rule]) -> list[Manifest]:
    """The ServiceAccount ``account`` in the install namespace and the Roles it needs, bound to it."""
    ns = cfg.namespace
    subject = [{"kind": "ServiceAccount", "name": account, "namespace": ns}]
    out: list[Manifest] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(cfg, account, ns, kind)},
    ]
    by_ns: dict[str | None, list[Rule]] = defaultdict(list)
    by_ns[ns].append(Rule(ns, ("argoproj.io",), ("workflowtaskresults",), ("create", "patch")))
    if cfg.cluster.mode == "in-cluster":
        for rule in rules:
            by_ns[rule.namespace].append(rule)
    base = f"tenant-dr-{cfg.name}-{kind}"
    for namespace in sorted(by_ns, key=lambda n: (n is None, n or "")):
        role_kind = "ClusterRole" if namespace is None else "Role"
        role = {
            "apiVersion": RBAC_API,
            "kind": role_kind,
            "metadata": _meta(cfg, base, namespace, kind),
            "rules": _rules(by_ns[namespace]),
        }
        binding = {
            "apiVersion": RBAC_API,
            "kind": f"{role_kind}Binding",
            "metadata": _meta(cfg, base, namespace, kind),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": base},
            "subjects": subject,
        }
        out += [role, binding]
    return out
