"""The generator: tenant config -> argopm-compatible packages under ``DIR`` plus ``DIR/kustomization.yaml``.

Layout (one object per file, argopm style; ``namespace`` left unset on Argo objects and ConfigMaps)::

    DIR/<package>/package.json
    DIR/<package>/templates/<name>.yaml        WorkflowTemplates
    DIR/<package>/cronworkflows/<name>.yaml    CronWorkflows
    DIR/<package>/configmaps/<name>.yaml       ConfigMaps
    DIR/<package>/rbac/<kind>-<name>.yaml      ServiceAccounts, Roles, RoleBindings (namespaced explicitly)
    DIR/kustomization.yaml                     every file above, for `kubectl apply -k DIR`

Packages come from :data:`PACKAGE_BUILDERS`; a new package (e.g. ``tenant-recreate``) is one more builder.
Output bytes depend only on the config and the code (sorted, no timestamps).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hera.workflows import CronWorkflow, WorkflowTemplate

from workflows import __version__
from workflows.config import TenantConfig, dump_config
from workflows.rbac import Manifest, service_account_rbac
from workflows.templates import enabled_wirings
from workflows.templates.backup_all import backup_all_template, daily_cron, freshness_cron, freshness_template
from workflows.templates.common import labels
from workflows.templates.component import backup_template, restore_service_account, restore_template
from workflows.templates.dr import recreate_rules, recreate_service_account, recreate_template
from workflows.templates.notify import notify_template
from workflows.templates.onboard import onboard_rules, onboard_service_account, onboard_template
from workflows.templates.restore import restore_all_template

COMMON_PACKAGE = "tenant-dr-common"
HOMEPAGE = "https://github.com/tenant-dr/tenant-dr"


@dataclass
class Package:
    """One argopm package: its manifest fields and the objects it installs."""

    name: str
    description: str
    keywords: list[str]
    dependencies: list[str] = field(default_factory=list)
    templates: list[WorkflowTemplate] = field(default_factory=list)
    cronworkflows: list[CronWorkflow] = field(default_factory=list)
    configmaps: list[Manifest] = field(default_factory=list)
    rbac: list[Manifest] = field(default_factory=list)

    def package_json(self) -> dict[str, Any]:
        """``package.json`` (npm manifest + argopm ``config``)."""
        return {
            "name": self.name,
            "version": __version__,
            "description": self.description,
            "keywords": ["tenant-dr", "argo", *self.keywords],
            "homepage": HOMEPAGE,
            "license": "Apache-2.0",
            "dependencies": {dep: __version__ for dep in sorted(self.dependencies)},
            "config": {
                "labels": {"app.kubernetes.io/part-of": "tenant-dr"},
                "annotations": {"tenant-dr/generator": f"tenant-dr {__version__}"},
            },
        }


def common_package(cfg: TenantConfig) -> Package:
    """``tenant-dr-common``: the tenant-neutral notify template every exit handler calls."""
    return Package(
        name=COMMON_PACKAGE,
        description="Shared tenant-dr templates: workflow result notifications (Slack-compatible or JSON webhook).",
        keywords=["notify"],
        templates=[notify_template(cfg)],
    )


def backup_package(cfg: TenantConfig) -> Package:
    """``<tenant>-backup``: per-component backups, backup-all, the daily cron and the freshness monitor."""
    wirings = enabled_wirings(cfg)
    rules = [rule for w in wirings for rule in w.backup_rules]
    return Package(
        name=f"{cfg.name}-backup",
        description=f"Daily backup of tenant {cfg.name} ({', '.join(w.name for w in wirings)}) to {cfg.store.url}.",
        keywords=["backup", cfg.name],
        dependencies=[COMMON_PACKAGE],
        templates=[
            *(backup_template(cfg, w) for w in wirings),
            backup_all_template(cfg, wirings),
            freshness_template(cfg),
        ],
        cronworkflows=[daily_cron(cfg), freshness_cron(cfg)],
        configmaps=[config_map(cfg)],
        rbac=service_account_rbac(cfg, cfg.service_account, "backup", rules),
    )


def restore_package(cfg: TenantConfig) -> Package:
    """``<tenant>-restore``: per-component restores and the restore of a whole run."""
    wirings = enabled_wirings(cfg)
    rules = [rule for w in wirings for rule in w.restore_rules]
    return Package(
        name=f"{cfg.name}-restore",
        description=f"Restore of tenant {cfg.name} from {cfg.store.url}: one component or all, any run.",
        keywords=["restore", cfg.name],
        dependencies=[COMMON_PACKAGE],
        templates=[*(restore_template(cfg, w) for w in wirings), restore_all_template(cfg, wirings)],
        rbac=service_account_rbac(cfg, restore_service_account(cfg), "restore", rules),
    )


def recreate_package(cfg: TenantConfig) -> Package:
    """``tenant-recreate``: the DR workflow (built from the NEW tenant's config) and its onboarding hook."""
    return Package(
        name="tenant-recreate",
        description=(
            f"Disaster recovery: recreate tenant {cfg.dr_source_tenant} on {cfg.name} from its backups in "
            f"{cfg.store.url}, fence the old tenant and move {cfg.dr_domain} (Cloudflare DNS) to the new one."
        ),
        keywords=["dr", "recreate", cfg.name],
        dependencies=[COMMON_PACKAGE],
        templates=[recreate_template(cfg), onboard_template(cfg)],
        rbac=[
            *service_account_rbac(
                cfg, recreate_service_account(cfg), "recreate", recreate_rules(cfg, enabled_wirings(cfg))
            ),
            *service_account_rbac(cfg, onboard_service_account(cfg), "onboard", onboard_rules(cfg)),
        ],
    )


def config_map(cfg: TenantConfig) -> Manifest:
    """``<tenant>-tenant-dr-config``: the effective tenant config the packages were built from."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{cfg.name}-tenant-dr-config", "labels": labels(cfg, "config")},
        "data": {"config.yaml": dump_config(cfg)},
    }


PACKAGE_BUILDERS: list[Callable[[TenantConfig], Package]] = [
    common_package,
    backup_package,
    restore_package,
    recreate_package,
]


@dataclass(frozen=True)
class Written:
    """One file written by :func:`build`."""

    package: str
    kind: str
    name: str
    path: Path


def _dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=120, allow_unicode=True)


def _rbac_file(obj: Manifest) -> str:
    meta = obj["metadata"]
    ns = f"{meta['namespace']}-" if "namespace" in meta else ""
    return f"{obj['kind'].lower()}-{ns}{meta['name']}.yaml"


def render(cfg: TenantConfig) -> dict[str, tuple[str, str, str]]:
    """Every output file: relative path -> (kind, name, text). Raises on duplicate paths."""
    files: dict[str, tuple[str, str, str]] = {}

    def add(path: str, kind: str, name: str, text: str) -> None:
        if path in files:
            raise ValueError(f"two objects would be written to {path}")
        files[path] = (kind, name, text)

    for builder in PACKAGE_BUILDERS:
        pkg = builder(cfg)
        add(f"{pkg.name}/package.json", "package.json", pkg.name, json.dumps(pkg.package_json(), indent=2) + "\n")
        for wt in pkg.templates:
            add(f"{pkg.name}/templates/{wt.name}.yaml", "WorkflowTemplate", str(wt.name), wt.to_yaml())
        for cron in pkg.cronworkflows:
            add(f"{pkg.name}/cronworkflows/{cron.name}.yaml", "CronWorkflow", str(cron.name), cron.to_yaml())
        for cm in pkg.configmaps:
            add(f"{pkg.name}/configmaps/{cm['metadata']['name']}.yaml", "ConfigMap", cm["metadata"]["name"], _dump(cm))
        for obj in pkg.rbac:
            add(f"{pkg.name}/rbac/{_rbac_file(obj)}", obj["kind"], obj["metadata"]["name"], _dump(obj))
    resources = [p for p in files if p.endswith(".yaml")]
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    }
    add("kustomization.yaml", "Kustomization", "kustomization", _dump(kustomization))
    return files


def build(cfg: TenantConfig, out: Path) -> list[Written]:
    """Write every package of ``cfg`` under ``out`` (replacing what a previous build wrote there)."""
    files = render(cfg)
    out.mkdir(parents=True, exist_ok=True)
    for entry in sorted({p.split("/", 1)[0] for p in files}):
        target = out / entry
        if target.is_dir():
            shutil.rmtree(target)
    written = []
    for rel, (kind, name, text) in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(Written(rel.split("/", 1)[0] if "/" in rel else "", kind, name, path))
    return written
