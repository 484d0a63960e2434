"""``python -m steps.argo``: back up and restore a tenant's Argo Workflows resources.

Backup exports WorkflowTemplates and CronWorkflows of one namespace, optionally the cluster's
ClusterWorkflowTemplates, and the namespace's ConfigMaps matching a label selector, with
server-only fields stripped, as ``kind: List`` JSON documents (one per kind) in the catalog.
Restore re-applies them with server-side apply; CronWorkflows stay suspended until every object
is in place and then get their backed-up ``suspend`` value back. The patch that suspends a live
CronWorkflow also records its previous ``suspend`` in the annotation ``tenant-dr.io/suspended-by-restore``,
so a restore killed before it put them back is finished by the next run (and the annotation removed).

tenant-dr's own objects (label ``app.kubernetes.io/part-of: tenant-dr``: this project's packages) are
never exported, restored or expected: each installation brings its own, and restoring the old tenant's
would make the new cluster back up into the old tenant's catalog.
"""

from __future__ import annotations

import copy
import io
import json
from dataclasses import dataclass
from typing import Any

import click

from steps.kubeapi import call_json, kube_options, load_api_client
from steps.runtime import (
    IntegrityError,
    StepError,
    Terminated,
    TransientError,
    action,
    component,
    confirm_option,
    get_logger,
    run_id_option,
    write_output,
)
from steps.storage.catalog import Catalog, new_run_id
from steps.storage.manifest import ComponentManifest, ObjectRecord, utcnow
from steps.storage.options import catalog_options
from steps.storage.stream import iter_verified

COMPONENT = "argo"
FIELD_MANAGER = "tenant-dr"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
PAGE = 500
DEFAULT_CONFIGMAP_SELECTOR = "workflows.argoproj.io/configmap-type=Parameter"
SKIPPED_CONFIGMAPS = frozenset({"kube-root-ca.crt"})
SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "generateName",
    "ownerReferences",
    "managedFields",
)
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SUSPENDED_BY_RESTORE = "tenant-dr.io/suspended-by-restore"  # value: the CronWorkflow's prior suspend
PRIOR_VALUES: dict[str, bool | None] = {"unset": None, "false": False, "true": True}
PART_OF = "app.kubernetes.io/part-of"
OWN_PART_OF = "tenant-dr"

cli = component("argo", "Argo Workflows resources of a tenant: export and server-side-apply restore.")


@dataclass(frozen=True)
class Kind:
    """One exported resource kind."""

    key: str  # plural; also the object name <key>.json and the fingerprint key
    kind: str
    api_version: str
    namespaced: bool

    @property
    def custom(self) -> bool:
        """An Argo custom resource (vs. a core ConfigMap)."""
        return self.api_version.startswith("argoproj.io/")


CONFIGMAPS = Kind("configmaps", "ConfigMap", "v1", True)
CLUSTER_TEMPLATES = Kind("clusterworkflowtemplates", "ClusterWorkflowTemplate", "argoproj.io/v1alpha1", False)
TEMPLATES = Kind("workflowtemplates", "WorkflowTemplate", "argoproj.io/v1alpha1", True)
CRONS = Kind("cronworkflows", "CronWorkflow", "argoproj.io/v1alpha1", True)
KINDS = (CONFIGMAPS, CLUSTER_TEMPLATES, TEMPLATES, CRONS)  # restore order: CronWorkflows last
_BY_KEY = {k.key: k for k in KINDS}


def _prior_text(prior: bool | None) -> str:
    """The annotation value recording a CronWorkflow's ``suspend`` before a restore suspended it."""
    return "unset" if prior is None else str(prior).lower()


def clean(obj: dict[str, Any], kind: Kind) -> dict[str, Any]:
    """A copy of ``obj`` fit for re-applying: kind/apiVersion set, server-only fields and status gone.

    A CronWorkflow caught suspended by a restore in progress is exported with its prior ``suspend``.
    """
    out = copy.deepcopy(obj)
    out["apiVersion"], out["kind"] = kind.api_version, kind.kind
    out.pop("status", None)
    meta = out.setdefault("metadata", {})
    for name in SERVER_METADATA:
        meta.pop(name, None)
    if not kind.namespaced:
        meta.pop("namespace", None)
    annotations = meta.get("annotations") or {}
    annotations.pop(LAST_APPLIED, None)
    prior = annotations.pop(SUSPENDED_BY_RESTORE, None)
    if prior is not None and kind is CRONS:
        spec = out.setdefault("spec", {})
        spec.pop("suspend", None)
        if PRIOR_VALUES.get(prior) is not None:
            spec["suspend"] = PRIOR_VALUES[prior]
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return {"apiVersion": out.pop("apiVersion"), "kind": out.pop("kind"), "metadata": meta, **out}


def _names(items: list[dict[str, Any]]) -> list[str]:
    return sorted(str(i["metadata"]["name"]) for i in items)


def is_own(obj: dict[str, Any]) -> bool:
    """One of tenant-dr's own objects (``app.kubernetes.io/part-of: tenant-dr``)."""
    return ((obj.get("metadata") or {}).get("labels") or {}).get(PART_OF) == OWN_PART_OF


def without_own(objects: dict[str, list[dict[str, Any]]], what: str) -> dict[str, list[dict[str, Any]]]:
    """``objects`` without tenant-dr's own, logging the names left out (``what``: e.g. "not exported")."""
    skipped = {key: _names([i for i in items if is_own(i)]) for key, items in objects.items()}
    skipped = {key: names for key, names in skipped.items() if names}
    if skipped:
        get_logger().info(
            f"tenant-dr's own objects ({PART_OF}={OWN_PART_OF}) {what}: each installation has its own", objects=skipped
        )
    return {key: [i for i in items if not is_own(i)] for key, items in objects.items()}


class ArgoCluster:
    """The Kubernetes calls of this module (raw JSON)."""

    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        from kubernetes import client

        api = load_api_client(kubeconfig, context)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.version = client.VersionApi(api)

    def server_version(self) -> str:
        """``v1.31.2``-style version of the API server."""
        return str(call_json("read the Kubernetes version", self.version.get_code).get("gitVersion", "unknown"))

    def _gvp(self, kind: Kind) -> tuple[str, str, str]:
        group, version = kind.api_version.split("/")
        return group, version, kind.key

    def list(self, kind: Kind, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        """Every object of ``kind`` (paged with limit/continue)."""
        where = f"in namespace {namespace}" if kind.namespaced else "in the cluster"
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            paging: dict[str, Any] = {"limit": PAGE, **({"_continue": token} if token else {})}
            if kind is CONFIGMAPS:
                page = call_json(
                    f"list configmaps {where}",
                    self.core.list_namespaced_config_map,
                    namespace,
                    label_selector=selector or None,
                    **paging,
                )
            elif kind.namespaced:
                page = call_json(
                    f"list {kind.key} {where}",
                    self.custom.list_namespaced_custom_object,
                    *self._gvp(kind)[:2],
                    namespace,
                    kind.key,
                    **paging,
                )
            else:
                page = call_json(f"list {kind.key}", self.custom.list_cluster_custom_object, *self._gvp(kind), **paging)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    def apply(self, kind: Kind, obj: dict[str, Any]) -> None:
        """Server-side apply ``obj`` (field manager tenant-dr, conflicts forced)."""
        name = obj["metadata"]["name"]
        ns = obj["metadata"].get("namespace")
        what = f"apply {kind.kind} {ns + '/' if ns else ''}{name}"
        opts: dict[str, Any] = {"field_manager": FIELD_MANAGER, "force": True, "_content_type": APPLY}
        if kind is CONFIGMAPS:
            call_json(what, self.core.patch_namespaced_config_map, name, ns, obj, **opts)
        elif kind.namespaced:
            group, version, plural = self._gvp(kind)
            call_json(what, self.custom.patch_namespaced_custom_object, group, version, ns, plural, name, obj, **opts)
        else:
            call_json(what, self.custom.patch_cluster_custom_object, *self._gvp(kind), name, obj, **opts)

    def set_suspend(self, namespace: str, name: str, suspend: bool | None, prior: str | None = None) -> None:
        """Merge-patch ``spec.suspend`` of a CronWorkflow (``None`` removes the field) in one request.

        ``prior`` (the value before a restore suspends it) is recorded in the annotation
        ``SUSPENDED_BY_RESTORE``; without it the annotation is removed (the CronWorkflow is put back).
        """
        group, version, plural = self._gvp(CRONS)
        body = {"metadata": {"annotations": {SUSPENDED_BY_RESTORE: prior}}, "spec": {"suspend": suspend}}
        call_json(
            f"set suspend={suspend} on CronWorkflow {namespace}/{name}",
            self.custom.patch_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            name,
            body,
            field_manager=FIELD_MANAGER,
            _content_type=MERGE,
        )


# ---- backup --------------------------------------------------------------------------------------


@action(cli)
@kube_options
@catalog_options
@run_id_option(help_text="Run to write into (default: a new run id).")
@click.option("--namespace", envvar="TENANT_DR_ARGO_NAMESPACE", default="argo", show_default=True)
@click.option(
    "--cluster-templates/--no-cluster-templates",
    default=False,
    show_default=True,
    help="Also export the cluster's ClusterWorkflowTemplates.",
)
@click.option(
    "--configmap-selector",
    envvar="TENANT_DR_ARGO_CONFIGMAP_SELECTOR",
    default=DEFAULT_CONFIGMAP_SELECTOR,
    show_default=True,
    help="Label selector of the ConfigMaps to export ('' exports none).",
)
def backup(
    catalog: Catalog,
    tenant: str,
    kubeconfig: str | None,
    kube_context: str | None,
    run_id: str | None,
    namespace: str,
    cluster_templates: bool,
    configmap_selector: str,
) -> dict[str, Any]:
    """Export WorkflowTemplates, CronWorkflows, labelled ConfigMaps (and ClusterWorkflowTemplates)."""
    log = get_logger()
    run_id = run_id or new_run_id()
    catalog.component_prefix(run_id, COMPONENT)  # validates the run id
    write_output("run-id", run_id)
    if catalog.has_manifest(run_id, COMPONENT):
        log.info("argo backup of this run already complete; nothing to do", run_id=run_id)
        return {"run_id": run_id, "skipped": "already complete"}
    started_at = utcnow()
    cluster = ArgoCluster(kubeconfig, kube_context)
    version = cluster.server_version()
    kinds = [k for k in KINDS if (k is not CLUSTER_TEMPLATES or cluster_templates)]
    if not configmap_selector.strip():
        kinds.remove(CONFIGMAPS)
    exported: dict[str, list[dict[str, Any]]] = {}
    for kind in kinds:
        items = cluster.list(kind, namespace, configmap_selector if kind is CONFIGMAPS else None)
        if kind is CONFIGMAPS:
            items = [i for i in items if i["metadata"]["name"] not in SKIPPED_CONFIGMAPS]
        exported[kind.key] = sorted((clean(i, kind) for i in items), key=lambda o: str(o["metadata"]["name"]))
    exported = without_own(exported, "not exported")
    attempt = catalog.new_attempt()
    objects: list[ObjectRecord] = []
    for key, items in exported.items():
        data = json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=1, sort_keys=True).encode()
        objects.append(
            catalog.put_object(
                run_id,
                COMPONENT,
                attempt,
                f"{key}.json",
                io.BytesIO(data),
                size_hint=len(data),
                meta={"kind": _BY_KEY[key].kind, "count": len(items)},
            )
        )
    fingerprints = {key: _names(items) for key, items in exported.items()}
    suspend = {c["metadata"]["name"]: c.get("spec", {}).get("suspend") for c in exported.get(CRONS.key, [])}
    manifest = ComponentManifest(
        tenant=catalog.tenant,
        run_id=run_id,
        component=COMPONENT,
        started_at=started_at,
        finished_at=utcnow(),
        objects=objects,
        source={"kubernetes_version": version, "namespace": namespace},
        fingerprints=fingerprints,
        details={
            "namespace": namespace,
            "configmap_selector": configmap_selector,
            "cluster_templates": cluster_templates,
            "cron_suspend": suspend,
        },
    )
    written = catalog.write_manifest(manifest)
    counts = {key: len(names) for key, names in fingerprints.items()}
    log.info("argo resources exported", counts=counts, attempt=attempt)
    return {"run_id": run_id, "namespace": namespace, "counts": counts, "manifest_written": written}


# ---- restore -------------------------------------------------------------------------------------


def load_backup(catalog: Catalog, manifest: ComponentManifest) -> dict[str, list[dict[str, Any]]]:
    """Read and verify every exported object; integrity error when content and fingerprints disagree."""
    loaded: dict[str, list[dict[str, Any]]] = {}
    for record in manifest.objects:
        key = record.name.rsplit("/", 1)[-1].removesuffix(".json")
        if key not in _BY_KEY:
            raise IntegrityError(f"argo manifest of run {manifest.run_id} names an unknown object {record.name}")
        data = b"".join(iter_verified(catalog.store, catalog.object_key(manifest, record), record))
        try:
            items = json.loads(data)["items"]
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"{record.name} of run {manifest.run_id} is not a JSON List ({exc})") from exc
        if _names(items) != sorted(manifest.fingerprints.get(key, [])):
            raise IntegrityError(
                f"{record.name} of run {manifest.run_id} holds other {key} than its manifest lists",
                hint="the backup is inconsistent; restore from another run",
            )
        loaded[key] = items
    missing = sorted(set(manifest.fingerprints) - set(loaded))
    if missing:
        raise IntegrityError(f"argo manifest of run {manifest.run_id} has fingerprints but no objects for {missing}")
    return loaded


def _suspend_of(obj: dict[str, Any]) -> bool | None:
    value = (obj.get("spec") or {}).get("suspend")
    return None if value is None else bool(value)


@action(cli)
@kube_options
@catalog_options
@run_id_option(default="latest")
@click.option("--namespace", default=None, help="Target namespace (default: the backed-up namespace).")
@confirm_option
def restore(
    catalog: Catalog,
    tenant: str,
    kubeconfig: str | None,
    kube_context: str | None,
    run_id: str | None,
    namespace: str | None,
    confirm: bool,
) -> dict[str, Any]:
    """Verify the backup, then server-side apply it with CronWorkflows suspended until the end."""
    log = get_logger()
    run_id = catalog.resolve(run_id, COMPONENT)
    manifest = catalog.read_manifest(run_id, COMPONENT)
    backup_objects = without_own(load_backup(catalog, manifest), "in the backup are not restored")
    target = namespace or str(manifest.details.get("namespace") or "argo")
    for key, items in backup_objects.items():
        for obj in items:
            if _BY_KEY[key].namespaced:
                obj["metadata"]["namespace"] = target
    cluster = ArgoCluster(kubeconfig, kube_context)
    present = {key: {i["metadata"]["name"]: i for i in cluster.list(_BY_KEY[key], target)} for key in backup_objects}
    if CRONS.key in present:
        live_crons = present[CRONS.key]
    else:
        live_crons = {c["metadata"]["name"]: c for c in cluster.list(CRONS, target)}
    backed_suspend = {c["metadata"]["name"]: _suspend_of(c) for c in backup_objects.get(CRONS.key, [])}
    plan = {
        key: {
            "create": [n for n in _names(items) if n not in present[key]],
            "update": [n for n in _names(items) if n in present[key]],
        }
        for key, items in backup_objects.items()
    }
    # Suspended by an earlier restore that never put them back (killed): their prior value is in the annotation.
    left_suspended = {
        name: PRIOR_VALUES.get(str(ann[SUSPENDED_BY_RESTORE]))
        for name, cron in live_crons.items()
        if SUSPENDED_BY_RESTORE in (ann := (cron.get("metadata") or {}).get("annotations") or {})
    }
    to_suspend = sorted(n for n, cron in live_crons.items() if not _suspend_of(cron) and n not in left_suspended)
    result: dict[str, Any] = {
        "run_id": run_id,
        "namespace": target,
        "plan": plan,
        "suspend_during_restore": to_suspend,
        "left_suspended_by_earlier_restore": sorted(left_suspended),
        "cron_suspend_after": backed_suspend,
    }
    write_output("run-id", run_id)
    if not confirm:
        log.info(
            "plan only (pass --confirm to apply)", plan={k: {a: len(v) for a, v in p.items()} for k, p in plan.items()}
        )
        return {**result, "dry_run": True}
    if left_suspended:
        log.warning("an earlier restore left CronWorkflows suspended; this one puts them back", crons=left_suspended)

    # CronWorkflows end with their backed-up suspend value; ones not in the backup with their value before.
    final_suspend = {name: _suspend_of(live_crons[name]) for name in to_suspend}
    final_suspend.update(left_suspended)
    final_suspend.update(backed_suspend)

    def put_back() -> list[str]:
        """Best effort: give every CronWorkflow its final suspend value (dropping the mark); return what failed."""
        failed: list[str] = []
        try:
            now = {c["metadata"]["name"] for c in cluster.list(CRONS, target)}
        except StepError as exc:
            return [f"listing CronWorkflows failed ({exc.one_line()})"]
        for name, value in sorted(final_suspend.items()):
            if name not in now:
                continue
            try:
                cluster.set_suspend(target, name, value)
            except StepError as exc:
                failed.append(f"{name} ({exc.one_line()})")
        return failed

    applied: dict[str, int] = {}
    try:
        for name in to_suspend:  # the prior value is recorded in the same patch (a kill here loses nothing)
            cluster.set_suspend(target, name, True, prior=_prior_text(_suspend_of(live_crons[name])))
        for kind in KINDS:
            for obj in backup_objects.get(kind.key, []):
                body = obj
                if kind is CRONS:
                    body = copy.deepcopy(obj)
                    body.setdefault("spec", {})["suspend"] = True
                cluster.apply(kind, body)
                applied[kind.key] = applied.get(kind.key, 0) + 1
            log.info("applied", kind=kind.kind, count=applied.get(kind.key, 0))
    except StepError as exc:
        failed = put_back()
        note = (
            "CronWorkflows were put back to their backed-up suspend state"
            if not failed
            else f"could NOT put back the suspend state of CronWorkflows: {'; '.join(failed)}"
        )
        raise type(exc)(f"{exc.message}; {note}", hint=exc.hint) from exc
    except Terminated:
        put_back()  # what it cannot put back, the annotation lets the next run finish
        raise
    failed = put_back()
    if failed:
        raise TransientError(
            f"restored all objects but could not set the backed-up suspend state of CronWorkflows: {'; '.join(failed)}",
            hint="they are still suspended and marked; re-run the restore (it puts them back) or fix spec.suspend",
        )
    missing: list[str] = []
    for key, items in backup_objects.items():
        live = {i["metadata"]["name"] for i in cluster.list(_BY_KEY[key], target)}
        missing += [f"{key}/{n}" for n in _names(items) if n not in live]
    if missing:
        raise IntegrityError(
            f"after restore these objects are missing in the target: {', '.join(missing)}",
            hint="something deletes them (GitOps, a controller); compare with the backup's manifest",
        )
    return {**result, "applied": applied, "dry_run": False}


@action(cli)
@kube_options
@catalog_options
@run_id_option(default="latest")
@click.option(
    "--namespace",
    envvar="TENANT_DR_ARGO_TARGET_NAMESPACE",
    default=None,
    help="Namespace to check (default: the backed-up namespace).",
)
def verify(
    catalog: Catalog,
    tenant: str,
    kubeconfig: str | None,
    kube_context: str | None,
    run_id: str | None,
    namespace: str | None,
) -> dict[str, Any]:
    """Check that every object the backup restores exists in the cluster (exit 3 naming what is missing)."""
    run_id = catalog.resolve(run_id, COMPONENT)
    manifest = catalog.read_manifest(run_id, COMPONENT)
    target = namespace or str(manifest.details.get("namespace") or "argo")
    backup_objects = without_own(load_backup(catalog, manifest), "in the backup are not expected")
    cluster = ArgoCluster(kubeconfig, kube_context)
    expected = {key: _names(items) for key, items in backup_objects.items()}
    observed: dict[str, list[str]] = {}
    missing: list[str] = []
    for key, names in expected.items():
        live = {i["metadata"]["name"] for i in cluster.list(_BY_KEY[key], target)}
        observed[key] = sorted(n for n in names if n in live)
        missing += [f"{key}/{n}" for n in names if n not in live]
    write_output("run-id", run_id)
    result = {
        "run_id": run_id,
        "namespace": target,
        "expected": {k: len(v) for k, v in expected.items()},
        "observed": {k: len(v) for k, v in observed.items()},
    }
    if missing:
        raise IntegrityError(
            f"argo objects of run {run_id} missing in {target}: {', '.join(missing[:10])}"
            + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""),
            hint="run the argo restore (or check what deletes them)",
        )
    return result


if __name__ == "__main__":
    from steps.runtime import run

    run(cli)
