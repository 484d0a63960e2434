"""Building blocks every template shares: step containers, parameters, retries, metrics, notify, metadata.

A step container always runs ``python -m steps.<module> <action> --flag value ...`` (``command`` is set
explicitly so the YAML says what runs, and the linter can parse it with the step's own CLI). Secrets reach
containers only through ``secretKeyRef`` env vars. Nothing here imports ``steps``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hera.workflows import DAG, Container, Counter, Gauge, Label, Metrics, Parameter, RetryStrategy, Task
from hera.workflows import models as m

from workflows import __version__
from workflows.config import SecretRef, TenantConfig
from workflows.images import image_for_module

TITLE = "workflows.argoproj.io/title"
DESCRIPTION = "workflows.argoproj.io/description"
PART_OF = "app.kubernetes.io/part-of"
TENANT_LABEL = "tenant-dr/tenant"
COMPONENT_LABEL = "tenant-dr/component"
KIND_LABEL = "tenant-dr/kind"
OUTPUT_DIR = "/tmp/outputs"
KUBECONFIG_DIR = "/etc/tenant-dr/kubeconfig"
KUBECONFIG_PATH = f"{KUBECONFIG_DIR}/kubeconfig"
NOTIFY_TEMPLATE = "tenant-dr-notify"
RUN_AS = 10001  # the uid/gid of the step images (images/*/Dockerfile)
BOOL_ENUM = ("false", "true")

# Exit codes of the step contract: 1 (and anything unexpected: OOM kill, lost pod) is retried, 2 (usage)
# and 3 (integrity/precondition) are not.
RETRY_EXPRESSION = "lastRetry.exitCode not in ['2', '3']"

# Leaf deadlines (seconds): a hung step must not hold the tenant's mutex forever.
DEADLINE_CATALOG = 30 * 60
DEADLINE_NOTIFY = 5 * 60


@dataclass(frozen=True)
class Param:
    """A template parameter: a UI field (description, enum dropdown) and an input with a default."""

    name: str
    description: str
    default: str | None = None
    enum: tuple[str, ...] | None = None

    def argument(self) -> Parameter:
        """As ``spec.arguments.parameters[]`` (what the Argo UI shows on submit)."""
        kwargs: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.default is not None:
            kwargs["value"] = self.default
        if self.enum:
            kwargs["enum"] = list(self.enum)
        return Parameter(**kwargs)

    def input(self) -> Parameter:
        """As ``inputs.parameters[]`` of an entry template (so templateRef callers may omit it)."""
        return self.argument()

    @property
    def ref(self) -> str:
        """``{{inputs.parameters.<name>}}``."""
        return "{{inputs.parameters." + self.name + "}}"


def confirm_param(what: str) -> Param:
    """The ``confirm`` dropdown: ``false`` (default) only prints the plan; ``true`` really does it."""
    return Param(
        "confirm",
        f"false (default): verify the backup and print the plan only. true: really {what}.",
        "false",
        BOOL_ENUM,
    )


def when_true(param: str) -> str:
    """A ``when`` expression that holds when input parameter ``param`` is ``true``."""
    return "'{{inputs.parameters." + param + "}}' == 'true'"


def when_false(param: str) -> str:
    """A ``when`` expression that holds when input parameter ``param`` is not ``true``."""
    return "'{{inputs.parameters." + param + "}}' != 'true'"


Flag = tuple[str, str | None]  # ("--flag", value) or ("--flag", None) for a bare switch


@dataclass(frozen=True)
class Step:
    """One step container: ``python -m steps.<module> <action> <flags>``."""

    name: str
    module: str
    action: str
    flags: Sequence[Flag] = ()
    inputs: Sequence[Param] = ()
    outputs: Sequence[str] = ()
    env: Sequence[m.EnvVar] = ()
    deadline: int = DEADLINE_CATALOG
    mutex: str | None = None
    kube: bool = False
    memory_limit: str = "1Gi"
    retry: bool = True
    display: str | None = None

    def args(self) -> list[str]:
        """``<action> --flag value ...`` as container args."""
        out = [self.action]
        for flag, value in self.flags:
            out.append(flag)
            if value is not None:
                out.append(value)
        return out


def secret_env(name: str, ref: SecretRef | None, key: str | None = None, *, optional: bool = False) -> m.EnvVar:
    """An env var from a Secret key (``secretKeyRef``); never a literal value."""
    assert ref is not None or key is not None
    secret = ref.name if ref else ""
    return m.EnvVar(
        name=name,
        value_from=m.EnvVarSource(
            secret_key_ref=m.SecretKeySelector(
                name=secret, key=key or (ref.key if ref else ""), optional=True if optional else None
            )
        ),
    )


def secret_env_from(name: str, secret: str, key: str) -> m.EnvVar:
    """An env var from ``secret``/``key``."""
    return m.EnvVar(name=name, value_from=m.EnvVarSource(secret_key_ref=m.SecretKeySelector(name=secret, key=key)))


def store_flags(cfg: TenantConfig) -> list[Flag]:
    """``--tenant --store --region --sse [--sse-kms-key-id] --part-size-mib`` from the config."""
    flags: list[Flag] = [
        ("--tenant", cfg.name),
        ("--store", cfg.store.url),
        ("--region", cfg.store.region),
        ("--sse", cfg.store.sse.mode),
    ]
    if cfg.store.sse.kms_key_id:
        flags.append(("--sse-kms-key-id", cfg.store.sse.kms_key_id))
    flags.append(("--part-size-mib", str(cfg.store.part_size_mib)))
    return flags


def store_env(cfg: TenantConfig) -> list[m.EnvVar]:
    """The S3 endpoint (``AWS_ENDPOINT_URL``) and static credentials from a Secret, when configured."""
    env: list[m.EnvVar] = []
    if cfg.store.endpoint:
        env.append(m.EnvVar(name="AWS_ENDPOINT_URL", value=cfg.store.endpoint))
    creds = cfg.store.credentials
    if creds is not None:
        env.append(secret_env_from("AWS_ACCESS_KEY_ID", creds.secret, creds.access_key_id_key))
        env.append(secret_env_from("AWS_SECRET_ACCESS_KEY", creds.secret, creds.secret_access_key_key))
    return env


def kube_flags(cfg: TenantConfig) -> list[Flag]:
    """``--kubeconfig <mounted Secret>`` in kubeconfig mode; nothing in-cluster."""
    return [("--kubeconfig", KUBECONFIG_PATH)] if cfg.cluster.mode == "kubeconfig" else []


def retry_strategy() -> RetryStrategy:
    """Retry exit 1 (and lost pods) with exponential backoff; never 2 or 3."""
    return RetryStrategy(
        limit="3",
        retry_policy="Always",
        backoff=m.Backoff(duration="30s", factor="2", max_duration="15m"),
        expression=RETRY_EXPRESSION,
    )


def pod_security() -> m.PodSecurityContext:
    """Non-root pod: the images' uid/gid, RuntimeDefault seccomp."""
    return m.PodSecurityContext(
        run_as_non_root=True,
        run_as_user=RUN_AS,
        run_as_group=RUN_AS,
        fs_group=RUN_AS,
        seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
    )


def container_security() -> m.SecurityContext:
    """No privilege escalation, no capabilities, read-only root (``/tmp`` is an emptyDir)."""
    return m.SecurityContext(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        capabilities=m.Capabilities(drop=["ALL"]),
    )


def step_container(cfg: TenantConfig, step: Step) -> Container:
    """The leaf template for ``step`` (must be called inside a WorkflowTemplate context)."""
    volumes = [m.Volume(name="tmp", empty_dir=m.EmptyDirVolumeSource())]
    mounts = [m.VolumeMount(name="tmp", mount_path="/tmp")]
    if step.kube and cfg.cluster.kubeconfig is not None:
        ref = cfg.cluster.kubeconfig
        volumes.append(
            m.Volume(
                name="kubeconfig",
                secret=m.SecretVolumeSource(
                    secret_name=ref.name, items=[m.KeyToPath(key=ref.key, path="kubeconfig")], default_mode=0o440
                ),
            )
        )
        mounts.append(m.VolumeMount(name="kubeconfig", mount_path=KUBECONFIG_DIR, read_only=True))
    return Container(
        name=step.name,
        image=image_for_module(cfg, step.module),
        image_pull_policy=cfg.images.pull_policy,
        command=["python", "-m", f"steps.{step.module}"],
        args=step.args(),
        env=[*step.env, m.EnvVar(name="STEP_OUTPUT_DIR", value=OUTPUT_DIR)],
        inputs=[p.input() for p in step.inputs] or None,
        outputs=[Parameter(name=o, value_from=m.ValueFrom(path=f"{OUTPUT_DIR}/{o}")) for o in step.outputs] or None,
        resources=m.ResourceRequirements(
            requests={"cpu": "100m", "memory": "256Mi"}, limits={"memory": step.memory_limit}
        ),
        retry_strategy=retry_strategy() if step.retry else None,
        active_deadline_seconds=step.deadline,
        synchronization=m.Synchronization(mutexes=[m.Mutex(name=step.mutex)]) if step.mutex else None,
        pod_security_context=pod_security(),
        security_context=container_security(),
        volumes=volumes,
        volume_mounts=mounts,
        annotations={"workflows.argoproj.io/display-name": step.display} if step.display else None,
    )


def mutex_name(cfg: TenantConfig, component: str) -> str:
    """The per-tenant, per-component lock shared by its backup and destructive restore."""
    return f"tenant-dr-{cfg.name}-{component}"


# ---- workflow-level settings ---------------------------------------------------------------------


def labels(cfg: TenantConfig | None, kind: str, component: str | None = None) -> dict[str, str]:
    """Labels on every generated object."""
    out = {PART_OF: "tenant-dr", "app.kubernetes.io/version": __version__, KIND_LABEL: kind}
    if cfg is not None:
        out[TENANT_LABEL] = cfg.name
    if component:
        out[COMPONENT_LABEL] = component
    return out


def metadata_annotations(title: str, description: str) -> dict[str, str]:
    """UI title and description (Markdown)."""
    return {TITLE: title, DESCRIPTION: description}


def workflow_metrics(tenant: str, template: str) -> Metrics:
    """Duration gauge, failure counter and last-success timestamp gauge, labelled by tenant and template."""
    common = [Label(key="tenant", value=tenant), Label(key="workflow_template", value=template)]
    items: list[Any] = (  # hera types Metrics.metrics as its model Metric; Gauge/Counter build into it
        [
            Gauge(
                name="tenant_dr_workflow_duration_seconds",
                help="Duration of the last tenant-dr workflow run, by final status.",
                realtime=False,
                value="{{workflow.duration}}",
                labels=[*common, Label(key="status", value="{{workflow.status}}")],
            ),
            Counter(
                name="tenant_dr_workflow_failures_total",
                help="tenant-dr workflow runs that did not succeed.",
                value="1",
                when="{{workflow.status}} != Succeeded",
                labels=common,
            ),
            Gauge(
                name="tenant_dr_workflow_last_success_timestamp_seconds",
                help="Start time (unix seconds) of the last successful tenant-dr workflow run.",
                realtime=False,
                value="{{workflow.creationTimestamp.s}}",
                when="{{workflow.status}} == Succeeded",
                labels=common,
            ),
        ]
    )
    return Metrics(metrics=items)


def workflow_kwargs(
    cfg: TenantConfig,
    *,
    name: str,
    title: str,
    description: str,
    kind: str,
    component: str | None = None,
    arguments: Iterable[Param] = (),
    service_account: str | None = None,
    mutex: str | None = None,
) -> dict[str, Any]:
    """Everything a tenant WorkflowTemplate sets besides its templates."""
    annotations = metadata_annotations(title, description)
    lbl = labels(cfg, kind, component)
    return {
        "name": name,
        "entrypoint": "main",
        "on_exit": "exit-handler",
        "labels": lbl,
        "annotations": annotations,
        "workflow_metadata": m.WorkflowMetadata(labels=lbl, annotations=annotations),
        "arguments": [p.argument() for p in arguments] or None,
        "service_account_name": service_account or cfg.service_account,
        "security_context": pod_security(),
        "pod_gc": m.PodGC(strategy="OnPodSuccess", delete_delay_duration="10m"),
        "ttl_strategy": m.TTLStrategy(seconds_after_success=3 * 86400, seconds_after_failure=14 * 86400),
        "synchronization": m.Synchronization(mutexes=[m.Mutex(name=mutex)]) if mutex else None,
        "metrics": workflow_metrics(cfg.name, name),
    }


def notify_arguments(cfg: TenantConfig, template: str) -> dict[str, str]:
    """Arguments of the ``tenant-dr-notify`` call made by every exit handler."""
    return {
        "tenant": cfg.name,
        "workflow-template": template,
        "workflow": "{{workflow.name}}",
        "namespace": "{{workflow.namespace}}",
        "status": "{{workflow.status}}",
        "duration": "{{workflow.duration}}",
        "failures": "{{workflow.failures}}",
        "format": cfg.notify.format,
        "ui-url": cfg.notify.argo_ui_url,
        "webhook-secret": cfg.notify.webhook.name,
        "webhook-key": cfg.notify.webhook.key,
    }


def exit_handler(cfg: TenantConfig, template: str, *, only_on_failure: bool = False) -> DAG:
    """The ``exit-handler`` template: notify (via ``tenant-dr-notify``) with the run's status and failures."""
    with DAG(name="exit-handler") as dag:
        Task(
            name="notify",
            template_ref=m.TemplateRef(name=NOTIFY_TEMPLATE, template="main"),
            arguments=notify_arguments(cfg, template),
            when="{{workflow.status}} != Succeeded" if only_on_failure else None,
        )
    return dag


# ---- catalog helpers (tenant-specific: they carry the tenant's store settings) ----------------------


def new_run_id_step(cfg: TenantConfig) -> Step:
    """``catalog new-run-id``: one run id for every component of a backup run."""
    return Step(
        name="new-run-id", module="catalog", action="new-run-id", flags=[("--tenant", cfg.name)], outputs=("run-id",)
    )


def catalog_step(
    cfg: TenantConfig,
    name: str,
    action: str,
    flags: Sequence[Flag] = (),
    *,
    inputs: Sequence[Param] = (),
    outputs: Sequence[str] = (),
    retry: bool = True,
) -> Step:
    """A ``python -m steps.catalog <action>`` step with the tenant's store flags."""
    return Step(
        name=name,
        module="catalog",
        action=action,
        flags=[*store_flags(cfg), *flags],
        inputs=inputs,
        outputs=outputs,
        env=store_env(cfg),
        retry=retry,
    )
