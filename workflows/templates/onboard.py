"""``tenant-onboard``: the default onboarding hook ``tenant-recreate`` calls (templateRef ``<name>/main``).

It server-side applies a manifest bundle kept in a ConfigMap (``dr.onboarding.bundle_configmap``) to the new
tenant's cluster with the tenant's domain substituted for ``dr.onboarding.placeholder``, then waits until the
bundle's Deployments and StatefulSets are ready (``python -m steps.kube apply-bundle``). Teams with their own
provisioning point ``dr.onboarding.template`` at a WorkflowTemplate whose ``main`` takes a ``domain`` input.
"""

from __future__ import annotations

from hera.workflows import DAG, Task, WorkflowTemplate

from workflows.config import TenantConfig
from workflows.templates.common import Param, Step, exit_handler, kube_flags, step_container, workflow_kwargs
from workflows.templates.component import Rule

ONBOARD_DEFAULT = "tenant-onboard"
# What a tenant bundle may hold (server-side apply: create + patch); Deployments and StatefulSets are also read
# while waiting for them. Other kinds need the onboarding Role extended (or a team's own onboarding template).
BUNDLE_RESOURCES = (("", ("configmaps", "services")), ("networking.k8s.io", ("ingresses",)))
WORKLOAD_RESOURCES = ("deployments", "statefulsets")


def onboard_params(cfg: TenantConfig) -> list[Param]:
    """``domain`` and ``bundle``."""
    return [
        Param(
            "domain",
            f"Domain the new tenant is set up with (replaces {cfg.dr.onboarding.placeholder} in the bundle).",
            cfg.dr.temporary_domain or cfg.dr_domain,
        ),
        Param(
            "bundle", "namespace/name of the ConfigMap holding the manifest bundle.", cfg.dr.onboarding.bundle_configmap
        ),
    ]


def onboard_rules(cfg: TenantConfig) -> list[Rule]:
    """Read the bundle; create namespaces; apply the bundle's kinds in the tenant's namespaces."""
    bundle_ns = cfg.dr.onboarding.bundle_configmap.split("/")[0]
    rules = [
        Rule(bundle_ns, ("",), ("configmaps",), ("get",)),
        Rule(None, ("",), ("namespaces",), ("create", "patch")),
    ]
    for ns in sorted({w.namespace for w in cfg.fence} | set(cfg.dr.onboarding.namespaces)):
        for group, resources in BUNDLE_RESOURCES:
            rules.append(Rule(ns, (group,), resources, ("create", "patch")))
        rules.append(Rule(ns, ("apps",), WORKLOAD_RESOURCES, ("create", "get", "patch")))
    return rules


def onboard_service_account(cfg: TenantConfig) -> str:
    """``<service_account>-onboard``."""
    return f"{cfg.service_account}-onboard"


def onboard_template(cfg: TenantConfig) -> WorkflowTemplate:
    """``tenant-onboard``: apply the bundle with the domain, wait for its workloads."""
    name = cfg.dr.onboarding.template
    plist = onboard_params(cfg)
    description = (
        f"Provisions a new tenant: server-side applies every manifest of the ConfigMap bundle (default "
        f"`{cfg.dr.onboarding.bundle_configmap}`; keys ending in .yaml, applied in key order) with "
        f"`{cfg.dr.onboarding.placeholder}` replaced by the domain, then waits until the bundle's Deployments and "
        f"StatefulSets are ready. Secrets never live in the bundle. Called by tenant-recreate."
    )
    with WorkflowTemplate(
        **workflow_kwargs(
            cfg,
            name=name,
            title=f"Onboard a tenant ({cfg.name})",
            description=description,
            kind="onboard",
            arguments=plist,
            service_account=onboard_service_account(cfg),
        )
    ) as wt:
        apply = step_container(
            cfg,
            Step(
                name="apply-bundle",
                module="kube",
                action="apply-bundle",
                flags=[
                    *kube_flags(cfg),
                    ("--configmap", "{{inputs.parameters.bundle}}"),
                    ("--domain", "{{inputs.parameters.domain}}"),
                    ("--placeholder", cfg.dr.onboarding.placeholder),
                    ("--poll-seconds", "2"),
                    ("--confirm", None),
                ],
                inputs=plist,
                outputs=("workloads",),
                kube=True,
            ),
        )
        with DAG(name="main", inputs=[p.input() for p in plist]):
            Task(name="apply-bundle", template=apply, arguments={p.name: p.ref for p in plist})
        exit_handler(cfg, name, only_on_failure=True)
    return wt
