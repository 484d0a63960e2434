"""``tenant-dr lint DIR``: offline checks of what ``tenant-dr build`` writes, one finding per line.

Three layers, all over the whole bundle ``DIR`` (so cross-template references can be resolved):

schema
    Every WorkflowTemplate / ClusterWorkflowTemplate / CronWorkflow is validated by hera's generated
    pydantic models, then the raw document is walked beside the validated model: any key the model does
    not know (a typo, which pydantic would silently drop) is reported. RBAC, ConfigMaps, package.json and
    kustomization.yaml get a small strict shape check.
semantic
    A port of the rules of Argo's ``workflow/validate/validate.go`` that matter here: names (63, 52 for
    CronWorkflows, DNS-1123), unique template/task names, entrypoint and onExit, template/templateRef
    resolution inside the bundle, DAG dependencies and cycles, enum values, variable resolution
    (``inputs.parameters``, ``workflow.parameters``, ``tasks.X.outputs``), cron and timezone, metrics;
    plus this project's conventions (UI annotations, deadlines and retries on leaves, non-root pods,
    secrets only through ``secretKeyRef``).
wiring
    Every container runs ``python -m steps.<module> <action> ...``: the arguments are parsed by that step's
    own click parser (unknown flag or action, missing required option, a value or enum choice the option
    rejects), and its image must be the one ``images/images.yaml`` assigns to the module, with a
    Dockerfile under ``images/<key>/``. This is the one place ``workflows`` imports ``steps``: only to
    read the CLI definitions, never to run them.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import yaml
from croniter import croniter
from pydantic import BaseModel, RootModel, ValidationError

from workflows.images import IMAGES_DIR, ImagesError, image_key, load_images

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
FIELD_NAME = re.compile(r"^[a-zA-Z0-9][-a-zA-Z0-9]*$")
PARAM_NAME = re.compile(r"^[-a-zA-Z0-9_]+$")
METRIC_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
TAG = re.compile(r"{{\s*([^{}]*?)\s*}}")
SECRET_ENV = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|ACCESS_KEY|WEBHOOK|CREDENTIAL|API_KEY)", re.IGNORECASE)
TEMPLATE_TYPES = (
    "container",
    "containerSet",
    "steps",
    "script",
    "resource",
    "dag",
    "suspend",
    "data",
    "http",
    "plugin",
)
LEAF_TYPES = ("container", "containerSet", "script", "resource", "data", "http", "plugin", "suspend")
WORKFLOW_KINDS = ("WorkflowTemplate", "ClusterWorkflowTemplate", "CronWorkflow")
RETRY_POLICIES = ("Always", "OnError", "OnFailure", "OnTransientError")
POD_GC = ("", "OnPodCompletion", "OnPodSuccess", "OnWorkflowCompletion", "OnWorkflowSuccess")
DEPENDS_RESULTS = ("Succeeded", "Failed", "Skipped", "Omitted", "Errored", "Daemoned", "AnySucceeded", "AllFailed")
WORKFLOW_GLOBALS = {
    "name", "namespace", "uid", "status", "duration", "failures", "serviceAccountName", "mainEntrypoint",
    "priority", "scheduledTime", "creationTimestamp", "parameters", "parameters.json", "labels", "labels.json",
    "annotations", "annotations.json",
}  # fmt: skip
RBAC_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "*"}
NAME_LIMIT = 63
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: 10x faster
CRON_NAME_LIMIT = 52


@dataclass(frozen=True, order=True)
class Finding:
    """One problem: ``path: kind/name: message``."""

    path: str
    kind: str
    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.kind}/{self.name}: {self.message}"


@dataclass
class Doc:
    """One YAML object of the bundle."""

    path: str
    data: dict[str, Any]
    package: str | None

    @property
    def kind(self) -> str:
        """``kind`` of the object."""
        return str(self.data.get("kind", "?"))

    @property
    def name(self) -> str:
        """``metadata.name`` of the object."""
        meta = self.data.get("metadata")
        return str(meta.get("name", "?")) if isinstance(meta, dict) else "?"


@dataclass
class Bundle:
    """Everything under DIR, indexed for cross-object checks."""

    root: Path
    docs: list[Doc] = field(default_factory=list)
    packages: dict[str, dict[str, Any]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def templates(self, kind: str = "WorkflowTemplate") -> dict[str, Doc]:
        """WorkflowTemplates (or another kind) by name."""
        return {d.name: d for d in self.docs if d.kind == kind}

    def add(self, doc: Doc | str, message: str, kind: str | None = None, name: str | None = None) -> None:
        """Record a finding about ``doc`` (or a bare path)."""
        if isinstance(doc, Doc):
            self.findings.append(Finding(doc.path, kind or doc.kind, name or doc.name, message))
        else:
            self.findings.append(Finding(doc, kind or "-", name or "-", message))


# ---- loading -------------------------------------------------------------------------------------


def _package_of(root: Path, path: Path) -> str | None:
    rel = path.relative_to(root)
    if len(rel.parts) > 1 and (root / rel.parts[0] / "package.json").is_file():
        return rel.parts[0]
    return None


def load_bundle(root: Path) -> Bundle:
    """Read every YAML object and package.json under ``root`` (one object per YAML file, argopm style)."""
    bundle = Bundle(root)
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        shown = str(path)
        if path.name == "package.json":
            try:
                bundle.packages[path.parent.name] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                bundle.add(shown, f"not valid JSON: {exc}", "package.json", path.parent.name)
            continue
        if path.suffix not in (".yaml", ".yml"):
            continue
        try:
            docs = [d for d in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_LOADER) if d is not None]
        except yaml.YAMLError as exc:
            bundle.add(shown, f"not valid YAML: {' '.join(str(exc).split())}")
            continue
        if len(docs) != 1:
            bundle.add(shown, f"holds {len(docs)} YAML documents; argopm installs exactly one object per file")
            continue
        if not isinstance(docs[0], dict):
            bundle.add(shown, "is not a YAML mapping")
            continue
        bundle.docs.append(Doc(shown, docs[0], _package_of(root, path)))
    return bundle


# ---- (a) strict schema ---------------------------------------------------------------------------


def _model_class(kind: str) -> type[BaseModel]:
    from hera.workflows import models as m

    classes: dict[str, type[BaseModel]] = {
        "WorkflowTemplate": m.WorkflowTemplate,
        "ClusterWorkflowTemplate": m.ClusterWorkflowTemplate,
        "CronWorkflow": m.CronWorkflow,
    }
    return classes[kind]


def unknown_fields(raw: Any, model: Any, where: str = "$") -> Iterator[str]:
    """Keys of ``raw`` that the validated ``model`` has no field for (pydantic drops them silently)."""
    if isinstance(model, RootModel):
        yield from unknown_fields(raw, model.root, where)
    elif isinstance(model, BaseModel):
        if not isinstance(raw, dict):
            return
        by_alias = {(info.alias or name): name for name, info in type(model).model_fields.items()}
        for key, value in raw.items():
            if key not in by_alias:
                yield f"{where}.{key}: unknown field for {type(model).__name__}"
            else:
                yield from unknown_fields(value, getattr(model, by_alias[key]), f"{where}.{key}")
    elif isinstance(model, list) and isinstance(raw, list):
        for i, (r, mm) in enumerate(zip(raw, model, strict=False)):
            yield from unknown_fields(r, mm, f"{where}[{i}]")
    elif isinstance(model, dict) and isinstance(raw, dict):
        for key, value in raw.items():
            if key in model:
                yield from unknown_fields(value, model[key], f"{where}.{key}")


def check_schema(bundle: Bundle, doc: Doc) -> None:
    """Validate with hera's models and report type errors and unknown fields."""
    cls = _model_class(doc.kind)
    try:
        model = cls.model_validate(doc.data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = "$." + ".".join(str(p) for p in err["loc"])
            bundle.add(doc, f"schema: {loc}: {err['msg']}")
        return
    for problem in unknown_fields(doc.data, model):
        bundle.add(doc, f"schema: {problem}")


_K8S_SHAPES: dict[str, set[str]] = {
    "ConfigMap": {"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"},
    "ServiceAccount": {"apiVersion", "kind", "metadata", "automountServiceAccountToken", "imagePullSecrets"},
    "Role": {"apiVersion", "kind", "metadata", "rules"},
    "ClusterRole": {"apiVersion", "kind", "metadata", "rules", "aggregationRule"},
    "RoleBinding": {"apiVersion", "kind", "metadata", "roleRef", "subjects"},
    "ClusterRoleBinding": {"apiVersion", "kind", "metadata", "roleRef", "subjects"},
}
_META_KEYS = {"name", "namespace", "labels", "annotations"}
_RULE_KEYS = {"apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"}


def check_k8s_object(bundle: Bundle, doc: Doc) -> None:
    """Strict shape of the plain Kubernetes objects (RBAC, ConfigMaps); no Secrets in packages."""
    allowed = _K8S_SHAPES.get(doc.kind)
    if allowed is None:
        bundle.add(doc, f"schema: unexpected kind {doc.kind!r} in a package (Secrets must never be generated)")
        return
    for key in sorted(set(doc.data) - allowed):
        bundle.add(doc, f"schema: $.{key}: unknown field for {doc.kind}")
    meta = doc.data.get("metadata") or {}
    for key in sorted(set(meta) - _META_KEYS):
        bundle.add(doc, f"schema: $.metadata.{key}: unknown or server-side field")
    _check_name(bundle, doc, 253)
    if doc.kind in ("Role", "ClusterRole"):
        for i, rule in enumerate(doc.data.get("rules") or []):
            for key in sorted(set(rule) - _RULE_KEYS):
                bundle.add(doc, f"schema: $.rules[{i}].{key}: unknown field for PolicyRule")
            for verb in rule.get("verbs") or []:
                if verb not in RBAC_VERBS:
                    bundle.add(doc, f"rules[{i}]: unknown verb {verb!r}")
            if "*" in (rule.get("verbs") or []) or "*" in (rule.get("resources") or []):
                bundle.add(doc, f"rules[{i}]: wildcard grants are not least privilege")
    if doc.kind in ("RoleBinding", "ClusterRoleBinding"):
        _check_binding(bundle, doc)


def _check_binding(bundle: Bundle, doc: Doc) -> None:
    ref = doc.data.get("roleRef") or {}
    ns = (doc.data.get("metadata") or {}).get("namespace")
    roles = {
        (d.kind, d.name, (d.data.get("metadata") or {}).get("namespace"))
        for d in bundle.docs
        if d.kind in ("Role", "ClusterRole")
    }
    want = (ref.get("kind"), ref.get("name"), ns if ref.get("kind") == "Role" else None)
    if want not in roles:
        bundle.add(doc, f"roleRef {ref.get('kind')}/{ref.get('name')} is not in the bundle")
    accounts = {d.name for d in bundle.docs if d.kind == "ServiceAccount"}
    for subject in doc.data.get("subjects") or []:
        if subject.get("kind") == "ServiceAccount" and subject.get("name") not in accounts:
            bundle.add(doc, f"subject ServiceAccount {subject.get('name')!r} is not in the bundle")


# ---- (b) semantic rules --------------------------------------------------------------------------


def _check_name(bundle: Bundle, doc: Doc, limit: int) -> None:
    name = doc.name
    if name == "?":
        bundle.add(doc, "metadata.name is required")
        return
    if len(name) > limit:
        bundle.add(doc, f"name is {len(name)} characters; the limit for a {doc.kind} is {limit}")
    if not DNS_SUBDOMAIN.match(name):
        bundle.add(doc, f"name {name!r} is not a DNS-1123 subdomain (lowercase letters, digits, '-', '.')")


def _spec(doc: Doc) -> dict[str, Any]:
    spec = doc.data.get("spec") or {}
    if doc.kind == "CronWorkflow":
        spec = spec.get("workflowSpec") or {}
    return spec if isinstance(spec, dict) else {}


def _params(holder: dict[str, Any] | None, section: str = "parameters") -> list[dict[str, Any]]:
    if not isinstance(holder, dict):
        return []
    return [p for p in holder.get(section) or [] if isinstance(p, dict)]


def _template_type(tmpl: dict[str, Any]) -> list[str]:
    return [t for t in TEMPLATE_TYPES if t in tmpl]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _tags(value: Any) -> Iterator[str]:
    for text in _strings(value):
        for match in TAG.finditer(text):
            if not match.group(1).startswith("="):
                yield match.group(1)


def _depends_names(expr: str) -> list[str]:
    out = []
    for token in re.findall(r"[A-Za-z0-9][-A-Za-z0-9_]*(?:\.[A-Za-z]+)?", expr):
        name, _, result = token.partition(".")
        out.append(name)
        if result and result not in DEPENDS_RESULTS:
            out.append(f"{name}.{result}")
    return out


def _resolve_template(
    bundle: Bundle, doc: Doc, holder: dict[str, Any], where: str
) -> tuple[dict[str, Any] | None, Doc | None]:
    """The template a task/step/handler refers to (``template`` or ``templateRef``), or a finding."""
    local = {t.get("name"): t for t in _spec(doc).get("templates") or [] if isinstance(t, dict)}
    if "template" in holder and "templateRef" in holder:
        bundle.add(doc, f"{where}: template and templateRef are mutually exclusive")
        return None, None
    if "templateRef" in holder:
        ref = holder["templateRef"] or {}
        kind = "ClusterWorkflowTemplate" if ref.get("clusterScope") else "WorkflowTemplate"
        target = bundle.templates(kind).get(str(ref.get("name")))
        if target is None:
            bundle.add(doc, f"{where}: templateRef {ref.get('name')}.{ref.get('template')}: {kind} not in the bundle")
            return None, None
        found = {t.get("name"): t for t in _spec(target).get("templates") or []}.get(ref.get("template"))
        if found is None:
            bundle.add(doc, f"{where}: templateRef {ref.get('name')}.{ref.get('template')}: no such template")
            return None, None
        if doc.package and target.package and doc.package != target.package:
            deps = (bundle.packages.get(doc.package) or {}).get("dependencies") or {}
            if target.package not in deps:
                bundle.add(doc, f"{where}: uses {target.name} from package {target.package}, not a dependency")
        return found, target
    name = holder.get("template")
    if name not in local:
        bundle.add(doc, f"{where}: template {name!r} undefined")
        return None, None
    return local[name], doc


def _check_call(bundle: Bundle, doc: Doc, holder: dict[str, Any], target: dict[str, Any] | None, where: str) -> None:
    """Arguments passed to a template match its inputs (required ones given, no unknown ones)."""
    if target is None:
        return
    inputs = {str(p.get("name")): p for p in _params(target.get("inputs"))}
    given = {str(p.get("name")) for p in _params(holder.get("arguments"))}
    for name, param in inputs.items():
        if name not in given and "value" not in param and "default" not in param and "valueFrom" not in param:
            bundle.add(doc, f"{where}: input parameter {name!r} of {target.get('name')!r} is not supplied")
    for name in sorted(n for n in given if n not in inputs):
        bundle.add(doc, f"{where}: passes {name!r}, which {target.get('name')!r} does not declare as an input")


def _check_enum(bundle: Bundle, doc: Doc, params: list[dict[str, Any]], where: str) -> None:
    for p in params:
        name = p.get("name", "?")
        if not PARAM_NAME.match(str(name)):
            bundle.add(doc, f"{where}: parameter name {name!r} is invalid")
        if "enum" in p:
            if not p["enum"]:
                bundle.add(doc, f"{where}: parameter {name!r}: enum must not be empty")
            elif "value" in p and p["value"] not in p["enum"]:
                bundle.add(doc, f"{where}: parameter {name!r}: value {p['value']!r} is not in its enum {p['enum']}")


def _check_variables(
    bundle: Bundle,
    doc: Doc,
    value: Any,
    where: str,
    *,
    inputs: set[str],
    outputs: set[str],
    workflow_params: set[str] | None,
    tasks: dict[str, set[str]] | None = None,
    ancestors: set[str] | None = None,
) -> None:
    """Every ``{{...}}`` tag in ``value`` resolves in its scope."""
    for tag in _tags(value):
        parts = tag.split(".")
        head = parts[0]
        problem = None
        if head == "inputs":
            if parts[1:2] == ["parameters"] and len(parts) == 3 and parts[2] not in inputs:
                problem = f"{{{{{tag}}}}}: no input parameter {parts[2]!r}"
        elif head == "outputs":
            if parts[1:2] == ["parameters"] and len(parts) >= 3 and parts[2] not in outputs:
                problem = f"{{{{{tag}}}}}: no output parameter {parts[2]!r}"
        elif head == "workflow":
            rest = ".".join(parts[1:])
            if parts[1:2] == ["parameters"] and len(parts) == 3:
                if workflow_params is not None and parts[2] not in workflow_params:
                    problem = f"{{{{{tag}}}}}: {parts[2]!r} is not a declared workflow parameter"
            elif not (
                rest in WORKFLOW_GLOBALS
                or (parts[1] in ("creationTimestamp", "labels", "annotations", "outputs") and len(parts) >= 3)
            ):
                problem = f"{{{{{tag}}}}}: unknown workflow variable"
        elif head == "tasks":
            if tasks is None:
                problem = f"{{{{{tag}}}}}: tasks.* only resolves inside a DAG"
            elif len(parts) < 2 or parts[1] not in tasks:
                problem = f"{{{{{tag}}}}}: no task {parts[1] if len(parts) > 1 else ''!r}"
            elif ancestors is not None and parts[1] not in ancestors:
                problem = f"{{{{{tag}}}}}: task {parts[1]!r} is not a dependency (missing depends)"
            elif parts[2:4] == ["outputs", "parameters"] and len(parts) == 5 and parts[4] not in tasks[parts[1]]:
                problem = f"{{{{{tag}}}}}: task {parts[1]!r} has no output parameter {parts[4]!r}"
        elif head in ("steps", "item", "pod", "node", "retries", "lastRetry", "status", "duration", "exitCode"):
            pass
        else:
            problem = f"{{{{{tag}}}}}: unknown variable"
        if problem:
            bundle.add(doc, f"{where}: {problem}")


def _dag_ancestors(tasks: list[dict[str, Any]]) -> tuple[dict[str, set[str]], list[str]]:
    deps: dict[str, set[str]] = {}
    for t in tasks:
        names = set(_depends_names(str(t.get("depends") or "")))
        names.update(t.get("dependencies") or [])
        deps[str(t.get("name"))] = {n for n in names if "." not in n}
    cyclic: list[str] = []
    closure: dict[str, set[str]] = {}

    def visit(name: str, stack: tuple[str, ...]) -> set[str]:
        if name in closure:
            return closure[name]
        if name in stack:
            cyclic.append(" -> ".join([*stack[stack.index(name) :], name]))
            return set()
        out: set[str] = set()
        for dep in deps.get(name, ()):
            out |= {dep, *visit(dep, (*stack, name))}
        closure[name] = out
        return out

    for name in deps:
        visit(name, ())
    return closure, cyclic


def check_workflow(bundle: Bundle, doc: Doc) -> None:
    """Argo's semantic rules and the project's conventions for one WorkflowTemplate/CronWorkflow."""
    _check_name(bundle, doc, CRON_NAME_LIMIT if doc.kind == "CronWorkflow" else NAME_LIMIT)
    meta = doc.data.get("metadata") or {}
    if "namespace" in meta:
        bundle.add(doc, "metadata.namespace must be unset (packages are installed into a namespace)")
    annotations = meta.get("annotations") or {}
    wf_annotations = ((_spec(doc).get("workflowMetadata") or {}).get("annotations")) or {}
    for key in ("workflows.argoproj.io/title", "workflows.argoproj.io/description"):
        if not annotations.get(key):
            bundle.add(doc, f"metadata.annotations[{key}] is missing (the Argo UI shows it)")
        if not wf_annotations.get(key):
            bundle.add(doc, f"spec.workflowMetadata.annotations[{key}] is missing (runs do not inherit metadata)")
    if doc.kind == "CronWorkflow":
        _check_cron(bundle, doc)
    spec = _spec(doc)
    workflow_params = {str(p.get("name")) for p in _params(spec.get("arguments"))}
    _check_enum(bundle, doc, _params(spec.get("arguments")), "spec.arguments")
    gc = (spec.get("podGC") or {}).get("strategy", "")
    if gc not in POD_GC:
        bundle.add(doc, f"podGC.strategy {gc!r} is unknown")
    _check_metrics(bundle, doc, spec.get("metrics"), "spec.metrics", workflow_params)
    templates = [t for t in spec.get("templates") or [] if isinstance(t, dict)]
    names = [t.get("name") for t in templates]
    for name in sorted({n for n in names if names.count(n) > 1}, key=str):
        bundle.add(doc, f"template name {name!r} is not unique")
    local = {t.get("name"): t for t in templates}
    if doc.kind == "CronWorkflow" or spec.get("workflowTemplateRef"):
        if templates and spec.get("workflowTemplateRef"):
            bundle.add(doc, "spec.templates must be empty with workflowTemplateRef")
    else:
        entry = spec.get("entrypoint")
        if entry not in local:
            bundle.add(doc, f"entrypoint {entry!r} undefined")
        else:
            declared = {p.get("name") for p in _params(local[entry].get("inputs"))}
            for name in sorted(workflow_params - declared):
                bundle.add(doc, f"entry template {entry!r} does not declare input {name!r} (needed for templateRef)")
        if spec.get("onExit") and spec["onExit"] not in local:
            bundle.add(doc, f"onExit template {spec['onExit']!r} undefined")
        if not spec.get("onExit") and (meta.get("labels") or {}).get("tenant-dr/kind") != "common":
            bundle.add(doc, "spec.onExit is missing (every tenant-dr workflow notifies on exit)")
        if not spec.get("ttlStrategy") or not spec.get("podGC"):
            bundle.add(doc, "spec.ttlStrategy and spec.podGC are required")
        sc = spec.get("securityContext") or {}
        if not sc.get("runAsNonRoot"):
            bundle.add(doc, "spec.securityContext.runAsNonRoot must be true")
    for tmpl in templates:
        _check_template(bundle, doc, tmpl, workflow_params)


def _check_cron(bundle: Bundle, doc: Doc) -> None:
    spec = doc.data.get("spec") or {}
    schedules = spec.get("schedules") or []
    if not schedules:
        bundle.add(doc, "spec.schedules must not be empty")
    for s in schedules:
        if not (str(s).startswith("@") or len(str(s).split()) == 5) or not croniter.is_valid(str(s)):
            bundle.add(doc, f"schedule {s!r} is not a valid 5-field cron expression")
    tz = spec.get("timezone")
    if not tz:
        bundle.add(doc, "spec.timezone is unset (the controller's local time would be used)")
    else:
        try:
            zoneinfo.ZoneInfo(str(tz))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            bundle.add(doc, f"timezone {tz!r} is not an IANA timezone")
    if spec.get("concurrencyPolicy", "") not in ("", "Allow", "Forbid", "Replace"):
        bundle.add(doc, f"concurrencyPolicy {spec.get('concurrencyPolicy')!r} is not Allow, Forbid or Replace")
    if int(spec.get("startingDeadlineSeconds") or 0) < 0:
        bundle.add(doc, "startingDeadlineSeconds must be >= 0")
    ref = (spec.get("workflowSpec") or {}).get("workflowTemplateRef")
    if not ref:
        bundle.add(doc, "spec.workflowSpec.workflowTemplateRef is required (argopm cluster installs rewrite it)")
        return
    target = bundle.templates().get(ref.get("name"))
    if target is None:
        bundle.add(doc, f"workflowTemplateRef {ref.get('name')!r}: WorkflowTemplate not in the bundle")
        return
    declared = {p.get("name") for p in _params(_spec(target).get("arguments"))}
    for p in _params((spec.get("workflowSpec") or {}).get("arguments")):
        if p.get("name") not in declared:
            bundle.add(doc, f"argument {p.get('name')!r} is not a parameter of {target.name}")


def _check_metrics(
    bundle: Bundle, doc: Doc, metrics: dict[str, Any] | None, where: str, workflow_params: set[str]
) -> None:
    for i, metric in enumerate((metrics or {}).get("prometheus") or []):
        name = str(metric.get("name", ""))
        if not METRIC_NAME.match(name):
            bundle.add(doc, f"{where}[{i}]: metric name {name!r} is not a Prometheus name")
        if not metric.get("help"):
            bundle.add(doc, f"{where}[{i}]: metric {name!r} needs help")
        for label in metric.get("labels") or []:
            if not METRIC_NAME.match(str(label.get("key", ""))):
                bundle.add(doc, f"{where}[{i}]: label key {label.get('key')!r} is not a Prometheus label")
        kinds = [k for k in ("gauge", "counter", "histogram") if k in metric]
        if len(kinds) != 1:
            bundle.add(doc, f"{where}[{i}]: metric {name!r} needs exactly one of gauge, counter, histogram")
        elif kinds[0] != "histogram" and not (metric[kinds[0]] or {}).get("value"):
            bundle.add(doc, f"{where}[{i}]: metric {name!r} needs a value")
        _check_variables(
            bundle, doc, metric, f"{where}[{i}]", inputs=set(), outputs=set(), workflow_params=workflow_params
        )


def _check_template(bundle: Bundle, doc: Doc, tmpl: dict[str, Any], workflow_params: set[str]) -> None:
    name = str(tmpl.get("name", ""))
    where = f"templates.{name}"
    if not FIELD_NAME.match(name) or len(name) > 128:
        bundle.add(doc, f"{where}: template name {name!r} is invalid")
    types = _template_type(tmpl)
    if len(types) != 1:
        bundle.add(doc, f"{where}: needs exactly one template type, has {types or 'none'}")
        return
    kind = types[0]
    inputs = {str(p.get("name")) for p in _params(tmpl.get("inputs"))}
    outputs = {str(p.get("name")) for p in _params(tmpl.get("outputs"))}
    _check_enum(bundle, doc, _params(tmpl.get("inputs")), f"{where}.inputs")
    leaf = kind in LEAF_TYPES
    deadline = tmpl.get("activeDeadlineSeconds")
    if deadline is not None and not (
        (isinstance(deadline, int) and deadline > 0)
        or (isinstance(deadline, str) and ((deadline.isdigit() and int(deadline) > 0) or TAG.fullmatch(deadline)))
    ):
        bundle.add(doc, f"{where}: activeDeadlineSeconds {deadline!r} is not a positive integer or a variable")
    if "activeDeadlineSeconds" in tmpl and not leaf:
        bundle.add(doc, f"{where}: activeDeadlineSeconds is only allowed on leaf templates")
    retry = tmpl.get("retryStrategy") or {}
    if retry.get("retryPolicy") and retry["retryPolicy"] not in RETRY_POLICIES:
        bundle.add(doc, f"{where}: retryStrategy.retryPolicy {retry['retryPolicy']!r} is unknown")
    if kind == "container":
        _check_container(bundle, doc, tmpl, where)
        for p in _params(tmpl.get("outputs")):
            if not (p.get("valueFrom") or {}).get("path"):
                bundle.add(doc, f"{where}: output parameter {p.get('name')!r} needs valueFrom.path")
    scope = {"inputs": inputs, "outputs": outputs, "workflow_params": workflow_params}
    if kind == "dag":
        _check_dag(bundle, doc, tmpl, where, scope)
    else:
        body = {k: v for k, v in tmpl.items() if k not in ("inputs", "name")}
        _check_variables(bundle, doc, body, where, **scope)  # type: ignore[arg-type]
        # an input default may use workflow variables, not other inputs
        _check_variables(bundle, doc, tmpl.get("inputs"), where, inputs=set(), outputs=set(),
                         workflow_params=workflow_params)  # fmt: skip


def _check_container(bundle: Bundle, doc: Doc, tmpl: dict[str, Any], where: str) -> None:
    container = tmpl.get("container") or {}
    if not container.get("image"):
        bundle.add(doc, f"{where}: container.image is required")
    for env in container.get("env") or []:
        if "value" in env and SECRET_ENV.search(str(env.get("name", ""))):
            bundle.add(doc, f"{where}: env {env.get('name')} carries a literal value; secrets only via secretKeyRef")
    if "activeDeadlineSeconds" not in tmpl:
        bundle.add(doc, f"{where}: leaf without activeDeadlineSeconds")
    retry = tmpl.get("retryStrategy")
    if not retry or not retry.get("expression") or not retry.get("backoff"):
        bundle.add(doc, f"{where}: leaf without retryStrategy (backoff and exit-code expression)")
    pod_sc = tmpl.get("securityContext") or {}
    sc = container.get("securityContext") or {}
    if not pod_sc.get("runAsNonRoot") and not sc.get("runAsNonRoot"):
        bundle.add(doc, f"{where}: container may run as root (securityContext.runAsNonRoot)")
    if sc.get("allowPrivilegeEscalation") is not False:
        bundle.add(doc, f"{where}: securityContext.allowPrivilegeEscalation must be false")


def _check_dag(bundle: Bundle, doc: Doc, tmpl: dict[str, Any], where: str, scope: dict[str, Any]) -> None:
    tasks = [t for t in (tmpl.get("dag") or {}).get("tasks") or [] if isinstance(t, dict)]
    if not tasks:
        bundle.add(doc, f"{where}: a DAG needs at least one task")
        return
    names = [str(t.get("name")) for t in tasks]
    for name in sorted({n for n in names if names.count(n) > 1}):
        bundle.add(doc, f"{where}: task name {name!r} is not unique")
    task_outputs: dict[str, set[str]] = {}
    for t in tasks:
        tname = str(t.get("name"))
        twhere = f"{where}.tasks.{tname}"
        if not FIELD_NAME.match(tname):
            bundle.add(doc, f"{twhere}: task name is invalid")
        if "depends" in t and "dependencies" in t:
            bundle.add(doc, f"{twhere}: cannot use both depends and dependencies")
        target, _ = _resolve_template(bundle, doc, t, twhere)
        _check_call(bundle, doc, t, target, twhere)
        task_outputs[tname] = {str(p.get("name")) for p in _params((target or {}).get("outputs"))}
    ancestors, cycles = _dag_ancestors(tasks)
    for cycle in sorted(set(cycles)):
        bundle.add(doc, f"{where}: dependency cycle {cycle}")
    for t in tasks:
        tname = str(t.get("name"))
        for dep in _depends_names(str(t.get("depends") or "")) + list(t.get("dependencies") or []):
            if "." in dep:
                bundle.add(doc, f"{where}.tasks.{tname}: depends result {dep.split('.', 1)[1]!r} is unknown")
            elif dep not in task_outputs:
                bundle.add(doc, f"{where}.tasks.{tname}: dependency {dep!r} not defined")
        body = {k: v for k, v in t.items() if k not in ("name", "depends", "dependencies")}
        _check_variables(
            bundle, doc, body, f"{where}.tasks.{tname}", tasks=task_outputs, ancestors=ancestors.get(tname, set()),
            **scope,
        )  # fmt: skip


# ---- (c) wiring ----------------------------------------------------------------------------------


def _step_group(module: str) -> click.Group:
    mod = importlib.import_module(f"steps.{module}")
    group = getattr(mod, "cli", None)
    if not isinstance(group, click.Group):
        raise ImportError(f"steps.{module} has no click group 'cli'")
    return group


def _candidates(value: str, inputs: dict[str, dict[str, Any]]) -> list[str]:
    """Concrete values a templated argument can take: an input's enum or default; nothing if unknown."""
    match = re.fullmatch(r"{{\s*inputs\.parameters\.([-\w]+)\s*}}", value)
    if match is None:
        return [] if "{{" in value else [value]
    param = inputs.get(match.group(1)) or {}
    if param.get("enum"):
        return [str(v) for v in param["enum"]]
    return [str(param["value"])] if "value" in param and "{{" not in str(param["value"]) else []


def check_wiring(bundle: Bundle, doc: Doc, images_dir: Path) -> None:
    """Parse every container's command with the target step's own CLI, and check its image."""
    for tmpl in _spec(doc).get("templates") or []:
        container = tmpl.get("container") if isinstance(tmpl, dict) else None
        if not isinstance(container, dict):
            continue
        where = f"templates.{tmpl.get('name')}"
        command = list(container.get("command") or [])
        if len(command) != 3 or command[:2] != ["python", "-m"] or not command[2].startswith("steps."):
            bundle.add(doc, f"{where}: command {command} is not ['python', '-m', 'steps.<module>']")
            continue
        module = command[2].removeprefix("steps.")
        _check_image(bundle, doc, where, str(container.get("image", "")), module, images_dir)
        env_names = {str(e.get("name")) for e in container.get("env") or []}
        inputs = {str(p.get("name")): p for p in _params(tmpl.get("inputs"))}
        for problem in parse_step_args(module, [str(a) for a in container.get("args") or []], env_names, inputs):
            bundle.add(doc, f"{where}: python -m steps.{module}: {problem}")


def parse_step_args(module: str, args: list[str], env_names: set[str], inputs: dict[str, dict[str, Any]]) -> list[str]:
    """Problems the step's own click parser finds in ``args`` (nothing is executed)."""
    try:
        group = _step_group(module)
    except ImportError as exc:
        return [f"cannot import the step module ({exc})"]
    if not args:
        return ["no action given"]
    root = click.Context(group, info_name=f"steps.{module}")
    cmd = group.get_command(root, args[0])
    if cmd is None:
        return [f"unknown action {args[0]!r} (has: {', '.join(sorted(group.list_commands(root)))})"]
    ctx = click.Context(cmd, info_name=args[0], parent=root)
    try:
        opts, extra, _ = cmd.make_parser(ctx).parse_args(args=list(args[1:]))
    except click.UsageError as exc:
        return [exc.format_message()]
    problems = []
    if extra:
        problems.append(f"unexpected extra arguments {extra}")
    for param in cmd.params:
        if not isinstance(param, click.Option) or param.name is None:
            continue
        value = opts.get(param.name)
        if value is None:
            envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or [])
            if param.required and not any(e in env_names for e in envvars):
                problems.append(f"missing required option {param.opts[0]}")
            continue
        if isinstance(param.type, click.Path | click.File) or param.is_flag:
            continue
        if (module, param.name) == ("validate", "prechecks"):  # each one is a step command line of its own
            for raw in value:
                inner = shlex.split(str(raw))
                for problem in parse_step_args(inner[0], inner[1:], env_names, inputs) if inner else ["empty"]:
                    problems.append(f"--precheck {inner[:2]}: {problem}")
            continue
        for raw in value if isinstance(value, list) else [value]:
            for candidate in _candidates(str(raw), inputs):
                try:
                    param.type.convert(candidate, param, ctx)
                except click.BadParameter as exc:
                    problems.append(f"{param.opts[0]} {candidate!r}: {exc.format_message()}")
    return problems


def _check_image(bundle: Bundle, doc: Doc, where: str, image: str, module: str, images_dir: Path) -> None:
    key = image_key(image)
    if key is None:
        bundle.add(doc, f"{where}: image {image!r} is not <registry>/tenant-dr-<key>:<tag>")
        return
    if not (images_dir / key / "Dockerfile").is_file():
        bundle.add(doc, f"{where}: image {image!r}: {images_dir / key / 'Dockerfile'} does not exist")
    try:
        expected = load_images(images_dir).key_for(module)
    except ImagesError as exc:
        bundle.add(doc, f"{where}: {exc}")
        return
    if expected != key:
        bundle.add(doc, f"{where}: steps.{module} runs in image {expected!r} (images.yaml), not {key!r}")


# ---- packages and kustomization ------------------------------------------------------------------


def check_packages(bundle: Bundle) -> None:
    """package.json fields and dependencies; kustomization.yaml lists exactly the bundle's objects."""
    for name, pkg in sorted(bundle.packages.items()):
        path = str(bundle.root / name / "package.json")
        for key in ("name", "version", "description"):
            if not pkg.get(key):
                bundle.add(path, f"missing {key!r}", "package.json", name)
        if pkg.get("name") not in (None, name):
            bundle.add(path, f"name {pkg.get('name')!r} differs from its directory", "package.json", name)
        for dep in pkg.get("dependencies") or {}:
            if dep not in bundle.packages:
                bundle.add(path, f"dependency {dep!r} is not in the bundle", "package.json", name)
    kust = next((d for d in bundle.docs if d.kind == "Kustomization"), None)
    if kust is None:
        return
    listed = [str(r) for r in kust.data.get("resources") or []]
    base = Path(kust.path).parent
    on_disk = {str(Path(d.path).relative_to(base)) for d in bundle.docs if d is not kust}
    for res in listed:
        if res not in on_disk:
            bundle.add(kust, f"resource {res!r} does not exist")
    for res in sorted(on_disk - set(listed)):
        bundle.add(kust, f"{res} is not listed in resources")


def lint_bundle(root: Path, images_dir: Path | None = None) -> list[Finding]:
    """Every finding for the bundle under ``root``, sorted by path."""
    images = images_dir or IMAGES_DIR
    bundle = load_bundle(root)
    for doc in bundle.docs:
        if doc.kind in WORKFLOW_KINDS:
            check_schema(bundle, doc)
            check_workflow(bundle, doc)
            check_wiring(bundle, doc, images)
        elif doc.kind != "Kustomization":
            check_k8s_object(bundle, doc)
    names = [(d.kind, d.name, (d.data.get("metadata") or {}).get("namespace")) for d in bundle.docs]
    for doc, key in zip(bundle.docs, names, strict=True):
        if names.count(key) > 1:
            bundle.add(doc, "another object in the bundle has the same kind, name and namespace")
    accounts = {d.name for d in bundle.docs if d.kind == "ServiceAccount"}
    for doc in bundle.docs:
        if doc.kind in WORKFLOW_KINDS:
            account = _spec(doc).get("serviceAccountName")
            if account and account not in accounts:
                bundle.add(doc, f"serviceAccountName {account!r} has no ServiceAccount in the bundle")
    check_packages(bundle)
    return sorted(set(bundle.findings))
