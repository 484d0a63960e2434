"""Loading and checking compiled packages for the local runner.

Every WorkflowTemplate (and ConfigMap) under the bundle directory is loaded so ``templateRef`` can be
resolved. The templates a run can reach are checked against an allowlist of the fields the runner
implements; anything else is refused with its path and what it is (never silently skipped). Fields
with no local meaning (image, resources, securityContext, podGC, ...) are accepted and ignored.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workflows.runner_expr import ExprError, depends_tasks

# ``python -m steps.<module>``: the only container command the runner executes.
STEP_COMMAND = re.compile(r"^steps\.[a-z_][a-z0-9_]*$")
PYTHONS = ("python", "python3")


class RefusedError(Exception):
    """The package uses something the runner does not implement, or is inconsistent (exit 2)."""


IGNORED = "ignored"  # accepted, no local meaning (documented in docs/runner.md)
FREE = None  # accepted, content used as is

# What a refused key is, for the message.
_WHAT = {
    "script": "script templates",
    "resource": "resource templates",
    "http": "HTTP templates",
    "plugin": "plugin templates",
    "containerSet": "containerSet templates",
    "data": "data templates",
    "artifacts": "artifacts",
    "withItems": "withItems loops",
    "withParam": "withParam loops",
    "withSequence": "withSequence loops",
    "continueOn": "continueOn",
    "onExit": "task/step-level onExit",
    "hooks": "lifecycle hooks",
    "inline": "inline templates",
    "semaphore": "semaphores",
    "semaphores": "semaphores",
    "memoize": "memoization",
    "sidecars": "sidecars",
    "initContainers": "init containers",
    "daemon": "daemon templates",
    "podSpecPatch": "podSpecPatch",
    "parallelism": "parallelism limits",
    "envFrom": "envFrom",
    "workingDir": "container workingDir",
    "fieldRef": "env fieldRef",
    "resourceFieldRef": "env resourceFieldRef",
    "subPath": "volumeMount subPath",
    "globalName": "global output parameters",
    "timeout": "template timeout",
    "target": "dag.target",
    "metrics": "template-level metrics",
    "templateDefaults": "templateDefaults",
    "retryStrategy": "workflow-level retryStrategy",
    "workflowTemplateRef": "workflowTemplateRef",
}

_PARAM_ARG = {"name": FREE, "value": FREE, "description": FREE, "enum": FREE}
_ARGUMENTS = {"parameters": [_PARAM_ARG]}
_KEY_REF = {"name": FREE, "key": FREE, "optional": FREE}
_ENV = {"name": FREE, "value": FREE, "valueFrom": {"secretKeyRef": _KEY_REF, "configMapKeyRef": _KEY_REF}}
_ITEMS = [{"key": FREE, "path": FREE, "mode": FREE}]
_VOLUME = {
    "name": FREE,
    "emptyDir": {"medium": IGNORED, "sizeLimit": IGNORED},
    "secret": {"secretName": FREE, "items": _ITEMS, "defaultMode": IGNORED, "optional": FREE},
    "configMap": {"name": FREE, "items": _ITEMS, "defaultMode": IGNORED, "optional": FREE},
}
_MOUNT = {"name": FREE, "mountPath": FREE, "readOnly": IGNORED}
_CONTAINER = {
    "name": IGNORED,
    "image": IGNORED,
    "imagePullPolicy": IGNORED,
    "command": FREE,
    "args": FREE,
    "env": [_ENV],
    "volumeMounts": [_MOUNT],
    "resources": IGNORED,
    "securityContext": IGNORED,
    "ports": IGNORED,
    "livenessProbe": IGNORED,
    "readinessProbe": IGNORED,
    "startupProbe": IGNORED,
    "terminationMessagePath": IGNORED,
    "terminationMessagePolicy": IGNORED,
}
_SYNC = {"mutexes": [{"name": FREE, "namespace": FREE}], "mutex": {"name": FREE, "namespace": FREE}}
_REF = {"name": FREE, "template": FREE, "clusterScope": FREE}
_CALL = {"name": FREE, "template": FREE, "templateRef": _REF, "arguments": _ARGUMENTS, "when": FREE}
_TASK = {**_CALL, "depends": FREE, "dependencies": FREE}
_STEP_GROUPS = "steps"  # marker: a list of lists of _CALL
_TEMPLATE: dict[str, Any] = {
    "name": FREE,
    "container": _CONTAINER,
    "dag": {"tasks": [_TASK], "failFast": FREE},
    "steps": _STEP_GROUPS,
    "suspend": {"duration": FREE},
    "inputs": {"parameters": [{"name": FREE, "value": FREE, "default": FREE, "description": FREE, "enum": FREE}]},
    "outputs": {
        "parameters": [
            {"name": FREE, "description": FREE, "valueFrom": {"path": FREE, "parameter": FREE, "default": FREE}}
        ]
    },
    "retryStrategy": {
        "limit": FREE,
        "retryPolicy": FREE,
        "expression": FREE,
        "backoff": {"duration": FREE, "factor": FREE, "maxDuration": FREE, "cap": FREE},
        "affinity": IGNORED,
    },
    "activeDeadlineSeconds": FREE,
    "synchronization": _SYNC,
    "volumes": [_VOLUME],
    "metadata": IGNORED,
    "securityContext": IGNORED,
    "serviceAccountName": IGNORED,
    "automountServiceAccountToken": IGNORED,
    "nodeSelector": IGNORED,
    "tolerations": IGNORED,
    "affinity": IGNORED,
    "priorityClassName": IGNORED,
    "archiveLocation": IGNORED,
    "hostAliases": IGNORED,
}
_METRIC = {
    "name": FREE,
    "help": FREE,
    "labels": [{"key": FREE, "value": FREE}],
    "when": FREE,
    "gauge": {"value": FREE, "realtime": FREE, "operation": FREE},
    "counter": {"value": FREE},
    "histogram": {"value": FREE, "buckets": FREE},
}
_SPEC: dict[str, Any] = {
    "entrypoint": FREE,
    "onExit": FREE,
    "templates": FREE,  # checked per reachable template
    "arguments": _ARGUMENTS,
    "activeDeadlineSeconds": FREE,
    "synchronization": _SYNC,
    "volumes": [_VOLUME],
    "metrics": {"prometheus": [_METRIC]},
    "serviceAccountName": IGNORED,
    "automountServiceAccountToken": IGNORED,
    "podGC": IGNORED,
    "ttlStrategy": IGNORED,
    "securityContext": IGNORED,
    "workflowMetadata": IGNORED,
    "podMetadata": IGNORED,
    "nodeSelector": IGNORED,
    "tolerations": IGNORED,
    "affinity": IGNORED,
    "imagePullSecrets": IGNORED,
    "priorityClassName": IGNORED,
    "podPriorityClassName": IGNORED,
    "schedulerName": IGNORED,
    "podDisruptionBudget": IGNORED,
    "archiveLogs": IGNORED,
    "artifactRepositoryRef": IGNORED,
    "dnsPolicy": IGNORED,
    "dnsConfig": IGNORED,
    "hostNetwork": IGNORED,
}
_DOC = {"apiVersion": FREE, "kind": FREE, "metadata": FREE, "spec": FREE}


def _check(obj: Any, schema: Any, path: str) -> None:
    """Refuse any key of ``obj`` that ``schema`` does not list."""
    if schema is FREE or schema == IGNORED:
        return
    if schema == _STEP_GROUPS:
        if not isinstance(obj, list) or not all(isinstance(g, list) for g in obj):
            raise RefusedError(f"{path}: steps must be a list of step groups (lists)")
        for i, group in enumerate(obj):
            for j, step in enumerate(group):
                _check(step, _CALL, f"{path}[{i}][{j}]")
        return
    if isinstance(schema, list):
        if not isinstance(obj, list):
            raise RefusedError(f"{path}: expected a list, got {type(obj).__name__}")
        for i, item in enumerate(obj):
            label = f"{path}[{i}]"
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                label = f"{path}[{item['name']}]"
            _check(item, schema[0], label)
        return
    if not isinstance(obj, dict):
        raise RefusedError(f"{path}: expected a mapping, got {type(obj).__name__}")
    for key, value in obj.items():
        if key not in schema:
            what = _WHAT.get(key)
            desc = f"{what} are not supported" if what else "unknown or unsupported field"
            raise RefusedError(f"{path}.{key}: {desc} by the local runner (refusing rather than skipping it)")
        _check(value, schema[key], f"{path}.{key}")


@dataclass
class Bundle:
    """Every WorkflowTemplate and ConfigMap under a directory of built packages."""

    root: Path
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)
    configmaps: dict[str, dict[str, str]] = field(default_factory=dict)

    def workflow_template(self, name: str, where: str) -> dict[str, Any]:
        """The WorkflowTemplate ``name`` or a refusal naming ``where`` it was referenced."""
        doc = self.templates.get(name)
        if doc is None:
            known = ", ".join(sorted(self.templates)) or "none"
            raise RefusedError(
                f"{where}: templateRef to WorkflowTemplate {name!r}, which is not in {self.root} (found: {known})"
            )
        return doc

    def template(self, wt: str, name: str, where: str) -> dict[str, Any]:
        """Template ``name`` of WorkflowTemplate ``wt``."""
        for tmpl in self.workflow_template(wt, where)["spec"].get("templates") or []:
            if tmpl.get("name") == name:
                return dict(tmpl)
        raise RefusedError(f"{where}: WorkflowTemplate {wt!r} has no template {name!r}")


def _load_docs(path: Path) -> list[Any]:
    try:
        return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    except (OSError, yaml.YAMLError) as exc:
        raise RefusedError(f"{path}: cannot read YAML: {' '.join(str(exc).split())}") from exc


def load_bundle(root: Path) -> Bundle:
    """Load every WorkflowTemplate and ConfigMap under ``root`` (recursively)."""
    bundle = Bundle(root=root)
    for path in sorted([*root.rglob("*.yaml"), *root.rglob("*.yml")]):
        for doc in _load_docs(path):
            if not isinstance(doc, dict):
                continue
            kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name")
            if kind == "WorkflowTemplate" and isinstance(name, str):
                if name in bundle.templates:
                    raise RefusedError(f"WorkflowTemplate {name!r} is defined twice: {bundle.sources[name]} and {path}")
                if not isinstance(doc.get("spec"), dict):
                    raise RefusedError(f"{path}: WorkflowTemplate {name} has no spec")
                bundle.templates[name] = doc
                bundle.sources[name] = path
            elif kind == "ConfigMap" and isinstance(name, str):
                bundle.configmaps[name] = {str(k): str(v) for k, v in (doc.get("data") or {}).items()}
    return bundle


def find_bundle_root(file: Path) -> Path:
    """The bundle directory ``DIR`` of ``DIR/<package>/templates/<file>.yaml``.

    That is the nearest parent with a ``kustomization.yaml``, else ``DIR`` by position.
    """
    for parent in file.resolve().parents:
        if (parent / "kustomization.yaml").is_file():
            return parent
    parents = file.resolve().parents
    return parents[2] if len(parents) > 2 else parents[0]


@dataclass
class Target:
    """What to run: a WorkflowTemplate plus argument overrides (from a CronWorkflow's workflowSpec)."""

    name: str
    arguments: dict[str, str]


def load_target(file: Path, bundle: Bundle) -> Target:
    """The WorkflowTemplate in ``file`` (or the one a CronWorkflow in ``file`` references)."""
    docs = [d for d in _load_docs(file) if isinstance(d, dict)]
    if len(docs) != 1:
        raise RefusedError(f"{file}: expected exactly one YAML document, found {len(docs)}")
    doc = docs[0]
    kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name")
    if kind == "WorkflowTemplate":
        if bundle.sources.get(str(name), Path()).resolve() != file.resolve():
            raise RefusedError(f"{file}: is not inside the bundle {bundle.root} (pass --bundle DIR)")
        return Target(str(name), {})
    if kind == "CronWorkflow":
        wspec = (doc.get("spec") or {}).get("workflowSpec") or {}
        extra = sorted(set(wspec) - {"workflowTemplateRef", "workflowMetadata", "arguments"})
        if extra or "workflowTemplateRef" not in wspec:
            raise RefusedError(
                f"{file}: CronWorkflow {name}: only a workflowSpec with workflowTemplateRef can be run locally"
                + (f" (found {', '.join(extra)})" if extra else "")
            )
        ref = wspec["workflowTemplateRef"]
        if ref.get("clusterScope"):
            raise RefusedError(f"{file}: ClusterWorkflowTemplate references are not supported by the local runner")
        bundle.workflow_template(str(ref.get("name")), f"{file}")
        args = {str(p["name"]): str(p.get("value", "")) for p in (wspec.get("arguments") or {}).get("parameters", [])}
        return Target(str(ref["name"]), args)
    raise RefusedError(f"{file}: kind {kind} cannot be run; give a WorkflowTemplate (or CronWorkflow) file")


# ---- static checks of what a run can reach ------------------------------------------------------


def _mount_for(path: str, mounts: list[dict[str, Any]]) -> dict[str, Any] | None:
    for mount in mounts:
        base = str(mount.get("mountPath", "")).rstrip("/") or "/"
        if path == base or path.startswith(base.rstrip("/") + "/"):
            return mount
    return None


def _check_container(tmpl: dict[str, Any], spec_volumes: list[dict[str, Any]], where: str) -> None:
    container = tmpl["container"]
    command = [str(c) for c in container.get("command") or []]
    if len(command) != 3 or command[0] not in PYTHONS or command[1] != "-m" or not STEP_COMMAND.match(command[2]):
        raise RefusedError(
            f"{where}.container.command {command}: the local runner only runs tenant-dr steps "
            "(`python -m steps.<module>`), replacing the image's Python with its own"
        )
    volumes = {v.get("name"): v for v in [*spec_volumes, *(tmpl.get("volumes") or [])]}
    for v in volumes.values():
        kinds = [k for k in ("emptyDir", "secret", "configMap") if k in v]
        if len(kinds) != 1:
            raise RefusedError(f"{where}: volume {v.get('name')!r} must be exactly one of emptyDir, secret, configMap")
    mounts = container.get("volumeMounts") or []
    for m in mounts:
        if m.get("name") not in volumes:
            raise RefusedError(f"{where}: volumeMount {m.get('name')!r} names no volume of the template or workflow")
        if not posixpath.isabs(str(m.get("mountPath", ""))):
            raise RefusedError(f"{where}: volumeMount {m.get('name')!r} needs an absolute mountPath")
    for p in (tmpl.get("outputs") or {}).get("parameters") or []:
        vf = p.get("valueFrom") or {}
        if "parameter" in vf:
            raise RefusedError(f"{where}: output {p.get('name')}: valueFrom.parameter is only for dag/steps templates")
        path = str(vf.get("path", ""))
        mount = _mount_for(path, mounts)
        if not path or mount is None or "emptyDir" not in volumes[mount["name"]]:
            raise RefusedError(
                f"{where}: output {p.get('name')}: valueFrom.path {path!r} is not under an emptyDir volume mount; "
                "the runner reads outputs only from mounted emptyDir volumes (one local directory per node)"
            )


def _check_retry(tmpl: dict[str, Any], where: str) -> None:
    retry = tmpl.get("retryStrategy")
    if retry is None:
        return
    policy = retry.get("retryPolicy")
    if policy is not None and policy not in ("Always", "OnFailure", "OnError"):
        raise RefusedError(f"{where}.retryStrategy.retryPolicy {policy!r} is not supported by the local runner")


def _calls(tmpl: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    if "dag" in tmpl:
        return [(f"dag.tasks[{t.get('name')}]", t) for t in tmpl["dag"].get("tasks") or []]
    out = []
    for i, group in enumerate(tmpl.get("steps") or []):
        out += [(f"steps[{i}][{s.get('name')}]", s) for s in group]
    return out


def _check_dag(tmpl: dict[str, Any], where: str) -> None:
    tasks = tmpl["dag"].get("tasks") or []
    names = [t.get("name") for t in tasks]
    if len(set(names)) != len(names):
        raise RefusedError(f"{where}: duplicate task names")
    for task in tasks:
        if "depends" in task and "dependencies" in task:
            raise RefusedError(f"{where}: task {task['name']}: use depends or dependencies, not both")
        try:
            deps = depends_tasks(str(task["depends"])) if "depends" in task else list(task.get("dependencies") or [])
        except ExprError as exc:
            raise RefusedError(f"{where}: task {task['name']}: {exc}") from exc
        for dep in deps:
            if dep not in names:
                raise RefusedError(f"{where}: task {task['name']} depends on unknown task {dep!r}")


def reachable(bundle: Bundle, target: str) -> list[tuple[str, str]]:
    """Check every template a run of ``target`` can reach; return them as ``(workflow template, template)``."""
    doc = bundle.workflow_template(target, "run")
    _check(doc, _DOC, target)
    spec = doc["spec"]
    _check(spec, _SPEC, f"{target}.spec")
    spec_volumes = list(spec.get("volumes") or [])
    roots = [str(spec.get("entrypoint") or "")]
    if not roots[0]:
        raise RefusedError(f"{target}: spec.entrypoint is not set")
    if spec.get("onExit"):
        roots.append(str(spec["onExit"]))
    todo = [(target, name, f"{target}.spec") for name in roots]
    seen: list[tuple[str, str]] = []
    while todo:
        wt, name, ref_where = todo.pop()
        if (wt, name) in seen:
            continue
        seen.append((wt, name))
        tmpl = bundle.template(wt, name, ref_where)
        where = f"{wt}.templates[{name}]"
        _check(tmpl, _TEMPLATE, where)
        kinds = [k for k in ("container", "dag", "steps", "suspend") if k in tmpl]
        if len(kinds) != 1:
            raise RefusedError(
                f"{where}: needs exactly one of container, dag, steps, suspend (found {kinds or 'none'})"
            )
        _check_retry(tmpl, where)
        if "container" in tmpl:
            _check_container(tmpl, spec_volumes if wt == target else [], where)
        if "dag" in tmpl:
            _check_dag(tmpl, where)
        for label, call in _calls(tmpl):
            call_where = f"{where}.{label}"
            if ("template" in call) == ("templateRef" in call):
                raise RefusedError(f"{call_where}: needs exactly one of template, templateRef")
            if "templateRef" in call:
                ref = call["templateRef"]
                if ref.get("clusterScope"):
                    raise RefusedError(f"{call_where}: ClusterWorkflowTemplate references are not supported")
                if "{{" in str(ref.get("name")) + str(ref.get("template")):
                    raise RefusedError(f"{call_where}: templateRef with {{{{...}}}} is not supported")
                todo.append((str(ref.get("name")), str(ref.get("template")), call_where))
            else:
                todo.append((wt, str(call["template"]), call_where))
    return seen
