"""Argo Workflows resources: ``python -m steps.argo backup|restore`` wiring."""

from __future__ import annotations

from workflows.config import TenantConfig
from workflows.templates.common import Flag, kube_flags
from workflows.templates.component import ComponentWiring, Rule

READ = ("list",)  # the step pages through lists; it never reads single objects
WRITE = ("list", "create", "patch")  # server-side apply = patch (create for new objects)


def wiring(cfg: TenantConfig) -> ComponentWiring:
    """Namespace, ConfigMap selector and whether ClusterWorkflowTemplates are included, from the config."""
    ar = cfg.components.argo
    flags: list[Flag] = [("--configmap-selector", ar.configmap_selector)]
    flags.append(("--cluster-templates", None) if ar.cluster_templates else ("--no-cluster-templates", None))

    def rules(verbs: tuple[str, ...]) -> tuple[Rule, ...]:
        out = [
            Rule(ar.namespace, ("argoproj.io",), ("cronworkflows", "workflowtemplates"), verbs),
            Rule(ar.namespace, ("",), ("configmaps",), verbs),
        ]
        if ar.cluster_templates:
            out.append(Rule(None, ("argoproj.io",), ("clusterworkflowtemplates",), verbs))
        return tuple(out)

    return ComponentWiring(
        name="argo",
        title="Argo resources",
        backup_description=(
            f"Exports WorkflowTemplates and CronWorkflows of `{ar.namespace}`"
            f"{', ClusterWorkflowTemplates' if ar.cluster_templates else ''} and ConfigMaps labelled "
            f"`{ar.configmap_selector}`, with server-only fields stripped."
        ),
        restore_description=(
            f"Server-side applies the exported objects into `{ar.namespace}`; CronWorkflows stay suspended during "
            f"the restore and get their backed-up state back at the end."
        ),
        connection=[("--namespace", ar.namespace), *kube_flags(cfg)],
        backup_flags=flags,
        kube=True,
        backup_memory="512Mi",
        restore_memory="512Mi",
        backup_deadline=3600,
        restore_deadline=3600,
        backup_rules=rules(READ),
        restore_rules=rules(WRITE),
    )
