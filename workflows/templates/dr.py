"""``tenant-recreate``: rebuild a tenant from its backups on a new tenant and move its domain and DNS there.

Built from the NEW (target) tenant's config and installed next to it: the target's components are reached
exactly as its config says, the OLD (source) tenant only through its Kubernetes API (``dr.source.cluster``,
a kubeconfig Secret or in-cluster) for fencing and rollback, and its backups come from the store under the
source tenant's name. Every record the run writes (replicas, previous DNS record, previous domain values,
prior component state, timings) is under ``<store>/<source-tenant>/state/<workflow-name>/``.

``main`` runs phases that always run (so their times are always known); what a mode skips is skipped
inside a phase::

    preflight -> approval -> onboard -> restore -> validate -> cutover -> teardown -> timings

``preflight`` resolves and fully verifies the run, reads the old tenant's workloads, the new tenant's load
balancer and the DNS record (plan only: nothing changes), and refuses when the domain already points at
the new load balancer (the new tenant is live; ``if-target-live=proceed`` overrides). ``cutover`` fences
the old tenant, moves the domain, points DNS at the load balancer, runs the system tests (which first
check that DNS and the fence are still in place, so an ``argo retry`` after a rollback fails instead of
testing the old tenant) and records the cutover complete; ``drill=true`` skips it and runs ``teardown``
instead. ``fence=skip`` (the old installation is lost) never contacts the old tenant's cluster. The exit
handler scales the old tenant back up and restores the DNS record after a failure, unless the cutover was
recorded complete (both are no-ops when nothing was recorded), then notifies.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import shlex

from hera.workflows import DAG, Container, Parameter, Suspend, Task, WorkflowTemplate
from hera.workflows import models as m

from workflows.config import TenantConfig
from workflows.templates import enabled_wirings
from workflows.templates.common import (
    BOOL_ENUM,
    NOTIFY_TEMPLATE,
    Flag,
    Param,
    Step,
    catalog_step,
    kube_flags,
    notify_arguments,
    secret_env,
    step_container,
    store_env,
    store_flags,
    workflow_kwargs,
)
from workflows.templates.component import ComponentWiring, Rule, restore_steps
from workflows.templates.onboard import ONBOARD_DEFAULT, onboard_rules

RECREATE = "tenant-recreate"
SOURCE_KUBECONFIG_DIR = "/etc/tenant-dr/source-kubeconfig"
SOURCE_KUBECONFIG = f"{SOURCE_KUBECONFIG_DIR}/kubeconfig"
FENCE_RECORD = "old-tenant"
TEARDOWN_RECORD = "drill-teardown"
COMPLETE_RECORD = "cutover-complete"  # written by `dns complete` after the system tests passed
POLL: Flag = ("--poll-seconds", "2")
DEADLINE_KUBE = 30 * 60
# validate data runs these components' own `verify` (Cassandra's with --live) against the new tenant.
VALIDATED = ("argo", "cassandra", "elasticsearch", "postgres", "redis")
PHASES = ("preflight", "approval", "onboard", "restore", "validate", "cutover", "teardown")  # `validate` when any


def phases_of(cfg: TenantConfig) -> tuple[str, ...]:
    """The phases ``main`` runs (``validate`` only when a restored component has a verify in the base image)."""
    if any(name in VALIDATED for name in cfg.components.enabled()):
        return PHASES
    return tuple(p for p in PHASES if p != "validate")


ANY_END = ("Succeeded", "Failed", "Errored", "Skipped")


def params(cfg: TenantConfig) -> list[Param]:
    """The parameters on the submit form (with descriptions and dropdowns)."""
    return [
        Param(
            "source-tenant",
            "The OLD tenant whose backups are restored (its name in the backup store). Fencing and rollback "
            "always act on the old tenant's cluster from the config (dr.source).",
            cfg.dr_source_tenant,
        ),
        Param(
            "target-tenant",
            f"The NEW tenant (informational: this template was built for {cfg.name} and restores into it).",
            cfg.name,
            (cfg.name,),
        ),
        Param(
            "run-id",
            "Backup run to restore: a run id like 20261121T030000Z-1a2b3c (see `tenant-dr catalog list`), or "
            "'latest' = the newest complete (sealed) run. Every component comes from this one run.",
            "latest",
        ),
        Param("domain", f"The public domain moved to the new tenant (record in zone {cfg.dns.zone}).", cfg.dr_domain),
        Param(
            "approval-required",
            "true: stop after preflight until someone resumes the workflow (Argo UI: RESUME). false: go on.",
            str(cfg.dr.approval).lower(),
            BOOL_ENUM,
        ),
        Param(
            "rollback-on-failure",
            "true: if the run fails after fencing, scale the old tenant back up and restore the DNS record.",
            str(cfg.dr.rollback).lower(),
            BOOL_ENUM,
        ),
        Param(
            "drill",
            "true: restore into the new tenant, validate and record timings, then tear it down; the old "
            "tenant and DNS are never touched.",
            "false",
            BOOL_ENUM,
        ),
        Param(
            "skip-onboarding", "true: the new tenant is already provisioned; do not run onboarding.", "false", BOOL_ENUM
        ),
        Param(
            "fence",
            "auto: scale the old tenant down before the DNS cutover (replicas recorded, rolled back on failure). "
            "skip: the old installation is lost or its API unreachable: never contact its cluster (no plan, no "
            "fence, nothing to roll back there).",
            "auto",
            ("auto", "skip"),
        ),
        Param(
            "if-target-live",
            "refuse (default): preflight stops (exit 3) when the domain already points at the new tenant's load "
            "balancer: the new tenant is live and this run, drill or not, would overwrite its data. proceed: run "
            "anyway (only to rebuild a live tenant from the backup on purpose).",
            "refuse",
            ("refuse", "proceed"),
        ),
    ]


def _ref(name: str) -> str:
    return "{{inputs.parameters." + name + "}}"


def _is(name: str, value: str) -> str:
    return f"'{_ref(name)}' == '{value}'"


def _not(name: str, value: str) -> str:
    return f"'{_ref(name)}' != '{value}'"


def _all(*conditions: str) -> str:
    return " && ".join(conditions)


def _out(name: str, task: str, output: str) -> Parameter:
    """A DAG output taken from a task's output parameter."""
    return Parameter(name=name, value_from=m.ValueFrom(parameter=f"{{{{tasks.{task}.outputs.parameters.{output}}}}}"))


def _span(task: str) -> str:
    """``<startedAt>,<finishedAt>`` of a task (RFC 3339, as Argo sets them)."""
    return f"{{{{tasks.{task}.startedAt}}}},{{{{tasks.{task}.finishedAt}}}}"


def _source(cfg: TenantConfig) -> Param:
    """The ``source-tenant`` input of a phase or leaf (default: the config's old tenant)."""
    return Param("source-tenant", "The old tenant (its catalog and state records).", cfg.dr_source_tenant)


RUN_ID = Param("run-id", "The resolved backup run.")
DOMAIN = Param("domain", "The public domain.")
TARGET = Param("target", "New load balancer.")
FENCE = Param("fence", "auto or skip (the old installation is lost).")
IF_LIVE = Param("if-target-live", "refuse or proceed when the domain already points at the new tenant.")


def _src_store(cfg: TenantConfig) -> list[Flag]:
    """The store flags with ``--tenant`` = the source tenant (catalog reads and state records)."""
    return [("--tenant", _ref("source-tenant")) if f == "--tenant" else (f, v) for f, v in store_flags(cfg)]


def _source_kube_flags(cfg: TenantConfig) -> list[Flag]:
    return [("--kubeconfig", SOURCE_KUBECONFIG)] if cfg.dr.source.cluster.mode == "kubeconfig" else []


def source_container(cfg: TenantConfig, step: Step, *, optional: bool = False) -> Container:
    """A leaf that talks to the OLD tenant's API: its kubeconfig Secret is mounted (never the target's).

    ``optional``: the pod starts without the Secret (a leaf that needs it only when the old tenant was fenced).
    """
    container = step_container(cfg, dataclasses.replace(step, kube=False))
    ref = cfg.dr.source.cluster.kubeconfig
    if ref is not None:
        existing = container.volumes if isinstance(container.volumes, list) else []
        container.volumes = [
            *existing,
            m.Volume(
                name="source-kubeconfig",
                secret=m.SecretVolumeSource(
                    secret_name=ref.name,
                    items=[m.KeyToPath(key=ref.key, path="kubeconfig")],
                    default_mode=0o440,
                    optional=True if optional else None,
                ),
            ),
        ]
        container.volume_mounts = [
            *(container.volume_mounts or []),
            m.VolumeMount(name="source-kubeconfig", mount_path=SOURCE_KUBECONFIG_DIR, read_only=True),
        ]
    return container


def _workloads(cfg: TenantConfig, source: bool) -> str:
    return ",".join(w.ref for w in (cfg.dr_source_workloads if source else cfg.fence))


def _kube(cfg: TenantConfig, name: str, action: str, flags: list[Flag], **kw: object) -> Step:
    """A ``steps.kube`` leaf on the NEW tenant's cluster."""
    return Step(name=name, module="kube", action=action, flags=[*kube_flags(cfg), *flags], kube=True, **kw)  # type: ignore[arg-type]


def _source_kube(cfg: TenantConfig, name: str, action: str, flags: list[Flag], **kw: object) -> Step:
    """A ``steps.kube`` leaf on the OLD tenant's cluster, recording under the source tenant's state."""
    return Step(
        name=name,
        module="kube",
        action=action,
        flags=[*_source_kube_flags(cfg), *_src_store(cfg), *flags],
        env=store_env(cfg),
        **kw,  # type: ignore[arg-type]
    )


def _dns(
    cfg: TenantConfig, name: str, action: str, flags: list[Flag], inputs: list[Param], outputs: tuple[str, ...]
) -> Step:
    return Step(
        name=name,
        module="dns",
        action=action,
        flags=[*_src_store(cfg), ("--operation", "{{workflow.name}}"), ("--zone", cfg.dns.zone), *flags],
        inputs=[_source(cfg), *inputs],
        outputs=outputs,
        env=[*store_env(cfg), secret_env("CLOUDFLARE_API_TOKEN", cfg.dns.token)],
    )


def restore_leaf(cfg: TenantConfig, w: ComponentWiring) -> Step:
    """The component's confirmed ``restore`` leaf (same flags, mutex and limits), reading the old tenant's catalog."""
    _plan, apply = restore_steps(cfg, w)
    flags = [("--tenant", _ref("source-tenant")) if f == "--tenant" else (f, v) for f, v in apply.flags]
    return dataclasses.replace(apply, name=f"restore-{w.name}", flags=flags, inputs=[_source(cfg), *apply.inputs])


def validate_step(cfg: TenantConfig, wirings: list[ComponentWiring]) -> Step | None:
    """``validate data`` of the restored components that have a ``verify`` in the base image."""
    comp = cfg.components
    kube_args = [a for f in kube_flags(cfg) for a in (f[0], f[1] or "")]
    args = {
        "postgres": ["--host", comp.postgres.host, "--port", str(comp.postgres.port), "--user", comp.postgres.user,
                     "--databases", ",".join(comp.postgres.databases)],
        "redis": ["--url", comp.redis.url],
        "elasticsearch": ["--url", comp.elasticsearch.url, "--repository", comp.elasticsearch.repository],
        "argo": ["--namespace", comp.argo.namespace, *kube_args],
        "cassandra": ["--live", "--namespace", comp.cassandra.namespace, "--selector", comp.cassandra.selector,
                      "--container", comp.cassandra.container, "--data-dir", comp.cassandra.data_dir, *kube_args],
    }  # fmt: skip
    names = [w.name for w in wirings if w.name in VALIDATED]
    if not names:
        return None
    flags: list[Flag] = [*_src_store(cfg), ("--run-id", _ref("run-id")), ("--components", ",".join(names))]
    flags += [("--component-args", f"{n}={' '.join(args[n])}") for n in names]
    env = [*store_env(cfg), *(e for w in wirings if w.name in names for e in w.env)]
    return Step(
        name="validate-data",
        module="validate",
        action="data",
        flags=flags,
        inputs=[_source(cfg), RUN_ID],
        outputs=("report",),
        env=env,
        deadline=6 * 3600,
        kube=bool({"argo", "cassandra"} & set(names)),  # these verifies read the new tenant's cluster
    )


def recreate_rules(cfg: TenantConfig, wirings: list[ComponentWiring]) -> list[Rule]:
    """Exactly what the recreate steps call on the NEW tenant's cluster (in-cluster mode).

    The old tenant's cluster is reached with its kubeconfig's own credentials (nothing granted here unless
    ``dr.source.cluster`` is in-cluster, where fencing and rollback need the scale rules too).
    """
    rules = [rule for w in wirings for rule in w.restore_rules]
    targets = [(w.namespace, w.kind) for w in cfg.fence]
    if cfg.dr.source.cluster.mode == "in-cluster":
        targets += [(w.namespace, w.kind) for w in cfg.dr_source_workloads]
    for ns, kind in sorted(set(targets)):
        plural = f"{kind}s"
        rules += [  # wait-ready and scale-down/up read the workload; scale-down/up read and patch its scale
            Rule(ns, ("apps",), (plural,), ("get",)),
            Rule(ns, ("apps",), (f"{plural}/scale",), ("get", "patch")),
            Rule(ns, ("",), ("pods",), ("list",)),  # scale-down waits until the pods are gone
        ]
    for ns in cfg.dr.onboarding.namespaces:
        rules.append(Rule(ns, ("apps",), ("deployments", "statefulsets"), ("get", "list")))
    svc_ns = cfg.dr.ingress_service.split("/")[0]
    rules.append(Rule(svc_ns, ("",), ("services",), ("get",)))
    if cfg.dr.onboarding.template == ONBOARD_DEFAULT:
        rules += onboard_rules(cfg)  # templateRef'd templates run as the calling workflow's ServiceAccount
    for ref in cfg.dr.ingresses:
        rules.append(Rule(ref.split("/")[0], ("networking.k8s.io",), ("ingresses",), ("get", "patch")))
    for ref in cfg.dr.configmap_keys:
        rules.append(Rule(ref.split("/")[0], ("",), ("configmaps",), ("get", "patch")))
    return rules


def recreate_service_account(cfg: TenantConfig) -> str:
    """``<service_account>-recreate``."""
    return f"{cfg.service_account}-recreate"


def recreate_template(cfg: TenantConfig) -> WorkflowTemplate:
    """``tenant-recreate``."""
    wirings = enabled_wirings(cfg)
    plist = params(cfg)
    description = (
        f"Disaster recovery of tenant `{cfg.dr_source_tenant}` onto tenant `{cfg.name}`: preflight (resolve and "
        f"verify the backup run, reach both clusters, plan the DNS change; refuses when the domain already points "
        f"at the new tenant) -> approval -> onboarding (`{cfg.dr.onboarding.template}`) -> restore of "
        f"{', '.join(w.name for w in wirings)} in parallel -> data validation -> fence the old tenant -> move the "
        f"domain -> Cloudflare DNS to the new load balancer -> system tests (after checking DNS and the fence are "
        f"in place) -> cutover recorded complete. On failure after fencing and before that record, the exit "
        f"handler scales the old tenant back up and restores the DNS record: then resubmit, do not retry. "
        f"`drill=true` never fences or touches DNS; `fence=skip` never contacts the old tenant's cluster. Remove "
        f"this package once the new tenant is live. Runbook: docs/runbooks/tenant-recreate.md."
    )
    _zone, temp = cfg.dns.zone, cfg.dr.temporary_domain
    base_url = cfg.dr.system_tests_base_url or "https://" + _ref("domain")
    tests = json.dumps([t.model_dump(exclude_none=True) for t in cfg.dr.system_tests], separators=(",", ":"))
    with WorkflowTemplate(
        **workflow_kwargs(
            cfg,
            name=RECREATE,
            title=f"Recreate tenant {cfg.dr_source_tenant} on {cfg.name} (DR)",
            description=description,
            kind="recreate",
            arguments=plist,
            service_account=recreate_service_account(cfg),
            mutex=f"tenant-dr-{cfg.name}-recreate",
        )
    ) as wt:
        # ---- leaves
        resolve = step_container(
            cfg,
            dataclasses.replace(
                catalog_step(cfg, "resolve", "resolve", [("--run-id", _ref("run-id"))], inputs=[_source(cfg), RUN_ID],
                             outputs=("run-id",)),
                flags=[*_src_store(cfg), ("--run-id", _ref("run-id"))],
            ),
        )  # fmt: skip
        verify = step_container(
            cfg,
            Step(
                name="verify",
                module="catalog",
                action="verify",
                flags=[
                    *_src_store(cfg),
                    ("--run-id", _ref("run-id")),
                    ("--components", ",".join(w.name for w in wirings)),
                ],
                inputs=[_source(cfg), RUN_ID],
                outputs=("run-id",),
                env=store_env(cfg),
                deadline=6 * 3600,
            ),
        )
        source_plan = source_container(
            cfg,
            _source_kube(
                cfg,
                "old-tenant-plan",
                "scale-down",
                [("--operation", "{{workflow.name}}"), ("--record", FENCE_RECORD),
                 ("--workloads", _workloads(cfg, True))],
                inputs=[_source(cfg)],
            ),
        )  # fmt: skip
        lb = step_container(
            cfg,
            _kube(cfg, "new-tenant-lb", "lb-hostname", [("--service", cfg.dr.ingress_service)], outputs=("hostname",)),
        )
        dns_plan = step_container(
            cfg,
            _dns(cfg, "dns-plan", "cutover", [("--record", _ref("domain")), ("--target", _ref("target")),
                                              ("--if-at-target", _ref("if-target-live"))],
                 [DOMAIN, TARGET, IF_LIVE], ("previous-record",)),
        )  # fmt: skip
        approve = Suspend(name="approve")
        onboard_wait = step_container(
            cfg,
            _kube(
                cfg,
                "wait-ready",
                "wait-ready",
                [("--workloads", _workloads(cfg, False)), POLL]
                + ([("--namespaces", ",".join(cfg.dr.onboarding.namespaces))] if cfg.dr.onboarding.namespaces else []),
                deadline=DEADLINE_KUBE,
            ),
        )
        restores = {w.name: step_container(cfg, restore_leaf(cfg, w)) for w in wirings}
        validate = validate_step(cfg, wirings)
        validate_leaf = step_container(cfg, validate) if validate else None
        fence = source_container(
            cfg,
            _source_kube(
                cfg,
                "fence",
                "scale-down",
                [("--operation", "{{workflow.name}}"), ("--record", FENCE_RECORD),
                 ("--workloads", _workloads(cfg, True)), POLL, ("--confirm", None)],
                inputs=[_source(cfg)],
                outputs=("replicas",),
                deadline=DEADLINE_KUBE,
            ),
        )  # fmt: skip
        set_domain = None
        if temp:
            sd_flags: list[Flag] = [*_src_store(cfg), ("--operation", "{{workflow.name}}"), ("--from", temp),
                                    ("--to", _ref("domain"))]  # fmt: skip
            if cfg.dr.ingresses:
                sd_flags.append(("--ingresses", ",".join(cfg.dr.ingresses)))
            if cfg.dr.configmap_keys:
                sd_flags.append(("--configmap-keys", ",".join(cfg.dr.configmap_keys)))
            set_domain = step_container(
                cfg,
                _kube(cfg, "set-domain", "set-domain", [*sd_flags, ("--confirm", None)], inputs=[_source(cfg), DOMAIN],
                      env=store_env(cfg), outputs=("previous",)),
            )  # fmt: skip
        dns_cutover = step_container(
            cfg,
            _dns(cfg, "dns-cutover", "cutover",
                 [("--record", _ref("domain")), ("--target", _ref("target")), ("--confirm", None)],
                 [DOMAIN, TARGET], ("previous-record", "changed")),
        )  # fmt: skip
        # The prechecks run in the system tests' own pod: `argo retry` after the automatic rollback re-runs only
        # this failed step (fence and dns-cutover stay Succeeded), and it must fail, not test the old tenant.
        prechecks = [
            ["dns", "verify", "--zone", cfg.dns.zone, "--record", _ref("domain"), "--target", _ref("target"),
             "--no-probe"],
            ["kube", "verify", "--operation", "{{workflow.name}}", "--record", FENCE_RECORD, "--missing-ok",
             *(a for f, v in _src_store(cfg) for a in (f, v or ""))],
        ]  # fmt: skip
        source_kubeconfig_env = (
            [m.EnvVar(name="TENANT_DR_KUBECONFIG", value=SOURCE_KUBECONFIG)]  # read by the kube precheck
            if cfg.dr.source.cluster.mode == "kubeconfig"
            else []
        )
        system_tests = source_container(
            cfg,
            Step(
                name="system-tests",
                module="validate",
                action="http",
                flags=[("--base-url", base_url), ("--tests-json", tests),
                       ("--deadline", str(cfg.dr.system_tests_deadline_seconds)), ("--interval", "2"),
                       *(("--precheck", shlex.join(argv)) for argv in prechecks)],
                inputs=[_source(cfg), DOMAIN, TARGET],
                outputs=("report",),
                env=[*store_env(cfg), secret_env("CLOUDFLARE_API_TOKEN", cfg.dns.token), *source_kubeconfig_env],
                deadline=cfg.dr.system_tests_deadline_seconds + 300,
            ),
            optional=True,  # with fence=skip nothing was fenced and the old tenant's Secret may be gone
        )  # fmt: skip
        cutover_complete = step_container(
            cfg,
            Step(
                name="cutover-complete",
                module="dns",
                action="complete",
                flags=[*_src_store(cfg), ("--operation", "{{workflow.name}}"), ("--record", _ref("domain"))],
                inputs=[_source(cfg), DOMAIN],
                env=store_env(cfg),
            ),
        )
        teardown = step_container(
            cfg,
            _kube(
                cfg,
                "scale-down-scratch",
                "scale-down",
                [*_src_store(cfg), ("--operation", "{{workflow.name}}"), ("--record", TEARDOWN_RECORD),
                 ("--workloads", _workloads(cfg, False)), POLL, ("--confirm", None)],
                inputs=[_source(cfg)],
                env=store_env(cfg),
                deadline=DEADLINE_KUBE,
            ),
        )  # fmt: skip
        names = phases_of(cfg)
        phase_inputs = [Param(p, f"Start and end of phase {p}.") for p in names]
        timings = step_container(
            cfg,
            Step(
                name="timings",
                module="catalog",
                action="timings",
                flags=[*_src_store(cfg), ("--operation", "{{workflow.name}}"),
                       ("--created", "{{workflow.creationTimestamp}}"),
                       *(("--phase", f"{p}={_ref(p)}") for p in names), ("--exclude", "approval")],
                inputs=[_source(cfg), *phase_inputs],
                outputs=("timings", "rto-seconds"),
                env=store_env(cfg),
            ),
        )  # fmt: skip
        rollback_old = source_container(
            cfg,
            _source_kube(
                cfg,
                "rollback-old-tenant",
                "scale-up",
                [("--operation", "{{workflow.name}}"), ("--record", FENCE_RECORD), ("--missing-ok", None),
                 ("--unless-recorded", COMPLETE_RECORD), POLL, ("--confirm", None)],
                inputs=[_source(cfg)],
                deadline=DEADLINE_KUBE,
            ),
        )  # fmt: skip
        rollback_dns = step_container(
            cfg,
            _dns(cfg, "rollback-dns", "rollback",
                 [("--record", _ref("domain")), ("--unless-recorded", COMPLETE_RECORD), ("--confirm", None)],
                 [DOMAIN], ()),
        )  # fmt: skip

        # ---- phases
        with DAG(
            name="preflight",
            inputs=[_source(cfg).input(), Param("run-id", "Run id or latest.").input(), DOMAIN.input(), FENCE.input(),
                    IF_LIVE.input()],
            outputs=[
                _out("run-id", "verify", "run-id"),
                _out("lb-hostname", "new-tenant-lb", "hostname"),
            ],
        ):  # fmt: skip
            src = {"source-tenant": _ref("source-tenant")}
            t_resolve = Task(name="resolve", template=resolve, arguments={**src, "run-id": _ref("run-id")})
            t_verify = Task(
                name="verify",
                template=verify,
                arguments={**src, "run-id": "{{tasks.resolve.outputs.parameters.run-id}}"},
            )
            t_resolve >> t_verify
            Task(name="old-tenant-plan", template=source_plan, arguments=src, when=_not("fence", "skip"))
            t_lb = Task(name="new-tenant-lb", template=lb)
            t_lb >> Task(
                name="dns-plan",
                template=dns_plan,
                arguments={**src, "domain": _ref("domain"), "if-target-live": _ref("if-target-live"),
                           "target": "{{tasks.new-tenant-lb.outputs.parameters.hostname}}"},
            )  # fmt: skip
        with DAG(name="approval", inputs=[Param("approval-required", "Wait for approval?").input()]):
            Task(name="approve", template=approve, when=_is("approval-required", "true"))
        onboard_in = [Param("skip-onboarding", "Skip onboarding?").input(), DOMAIN.input()]
        with DAG(name="onboard", inputs=onboard_in):
            t_onboard = Task(
                name="onboard",
                template_ref=m.TemplateRef(name=cfg.dr.onboarding.template, template="main"),
                arguments={"domain": temp or _ref("domain")},
                when=_not("skip-onboarding", "true"),
            )
            t_onboard >> Task(name="wait-ready", template=onboard_wait)
        with DAG(name="restore", inputs=[_source(cfg).input(), RUN_ID.input()]):
            for w in wirings:
                Task(
                    name=w.name,
                    template=restores[w.name],
                    arguments={"source-tenant": _ref("source-tenant"), "run-id": _ref("run-id")},
                )
        if validate_leaf is not None:
            with DAG(name="validate", inputs=[_source(cfg).input(), RUN_ID.input()]):
                Task(
                    name="validate-data",
                    template=validate_leaf,
                    arguments={"source-tenant": _ref("source-tenant"), "run-id": _ref("run-id")},
                )
        cut_in = [
            _source(cfg).input(),
            DOMAIN.input(),
            Param("drill", "Drill?").input(),
            Param("target", "LB.").input(),
            FENCE.input(),
        ]
        with DAG(name="cutover", inputs=cut_in):
            live = _not("drill", "true")
            src = {"source-tenant": _ref("source-tenant")}
            chain = [Task(name="fence", template=fence, arguments=src, when=_all(live, _not("fence", "skip")))]
            if set_domain is not None:
                chain.append(
                    Task(name="set-domain", template=set_domain, arguments={**src, "domain": _ref("domain")}, when=live)
                )
            chain.append(
                Task(
                    name="dns-cutover",
                    template=dns_cutover,
                    arguments={**src, "domain": _ref("domain"), "target": _ref("target")},
                    when=live,
                )
            )
            chain.append(
                Task(
                    name="system-tests",
                    template=system_tests,
                    arguments={**src, "domain": _ref("domain"), "target": _ref("target")},
                    when=live,
                )
            )
            chain.append(
                Task(
                    name="cutover-complete",
                    template=cutover_complete,
                    arguments={**src, "domain": _ref("domain")},
                    when=live,
                )
            )
            for before, after in itertools.pairwise(chain):
                before >> after
        with DAG(name="teardown", inputs=[_source(cfg).input(), Param("drill", "Drill?").input()]):
            t_down = Task(
                name="scale-down-scratch", template=teardown, arguments={"source-tenant": _ref("source-tenant")},
                when=_is("drill", "true"),
            )  # fmt: skip
            if cfg.dr.teardown_template:
                t_down >> Task(
                    name="teardown-data",
                    template_ref=m.TemplateRef(name=cfg.dr.teardown_template, template="main"),
                    when=_is("drill", "true"),
                )

        # ---- main
        args = {p.name: p.ref for p in plist}
        resolved = "{{tasks.preflight.outputs.parameters.run-id}}"
        with DAG(
            name="main",
            inputs=[p.input() for p in plist],
            outputs=[
                Parameter(name="run-id", value_from=m.ValueFrom(parameter=resolved)),
                _out("timings", "timings", "timings"),
                _out("rto-seconds", "timings", "rto-seconds"),
            ],
        ):  # fmt: skip
            src = {"source-tenant": args["source-tenant"]}
            phases = [
                Task(name="preflight", template="preflight",
                     arguments={**src, "run-id": args["run-id"], "domain": args["domain"], "fence": args["fence"],
                                "if-target-live": args["if-target-live"]}),
                Task(name="approval", template="approval", arguments={"approval-required": args["approval-required"]}),
                Task(name="onboard", template="onboard",
                     arguments={"skip-onboarding": args["skip-onboarding"], "domain": args["domain"]}),
                Task(name="restore", template="restore", arguments={**src, "run-id": resolved}),
                *([Task(name="validate", template="validate", arguments={**src, "run-id": resolved})]
                  if validate_leaf is not None else []),
                Task(name="cutover", template="cutover",
                     arguments={**src, "domain": args["domain"], "drill": args["drill"], "fence": args["fence"],
                                "target": "{{tasks.preflight.outputs.parameters.lb-hostname}}"}),
                Task(name="teardown", template="teardown", arguments={**src, "drill": args["drill"]}),
                Task(name="timings", template=timings,
                     arguments={**src, **{p: _span(p) for p in names}}),
            ]  # fmt: skip
            for before, after in itertools.pairwise(phases):
                before >> after

        # ---- exit handler: roll back after a failure, unless the cutover was recorded complete (no-ops when
        # nothing was recorded), then notify
        failed_live = (
            "'{{workflow.status}}' != 'Succeeded' && '{{workflow.parameters.rollback-on-failure}}' == 'true' && "
            "'{{workflow.parameters.drill}}' != 'true'"
        )
        with DAG(name="exit-handler"):
            src = {"source-tenant": "{{workflow.parameters.source-tenant}}"}
            Task(
                name="rollback-old-tenant",
                template=rollback_old,
                arguments=src,
                when=_all(failed_live, "'{{workflow.parameters.fence}}' != 'skip'"),
            )
            Task(
                name="rollback-dns",
                template=rollback_dns,
                arguments={**src, "domain": "{{workflow.parameters.domain}}"},
                when=failed_live,
                depends=" || ".join(f"rollback-old-tenant.{r}" for r in ANY_END),
            )
            Task(
                name="notify",
                template_ref=m.TemplateRef(name=NOTIFY_TEMPLATE, template="main"),
                arguments=notify_arguments(cfg, RECREATE),
                depends=" || ".join(f"rollback-dns.{r}" for r in ANY_END),
            )
    return wt
