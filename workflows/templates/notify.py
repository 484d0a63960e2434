"""``tenant-dr-notify`` (package tenant-dr-common): the notify template every exit handler calls.

Tenant-neutral: the webhook Secret, message format and Argo UI URL are parameters the caller passes, so
one copy serves every tenant in the namespace.
"""

from __future__ import annotations

from hera.workflows import Container, WorkflowTemplate
from hera.workflows import models as m

from workflows.config import TenantConfig
from workflows.images import image_for_module
from workflows.templates.common import (
    DEADLINE_NOTIFY,
    NOTIFY_TEMPLATE,
    Param,
    container_security,
    labels,
    metadata_annotations,
    pod_security,
    retry_strategy,
)

PARAMS = (
    Param("tenant", "Tenant the workflow belongs to.", "test"),
    Param("workflow-template", "WorkflowTemplate the run came from.", ""),
    Param("workflow", "Workflow name ({{workflow.name}}).", "manual-test"),
    Param("namespace", "Workflow namespace ({{workflow.namespace}}).", ""),
    Param("status", "Final phase ({{workflow.status}}).", "Succeeded", ("Succeeded", "Failed", "Error")),
    Param("duration", "Seconds ({{workflow.duration}}).", "0"),
    Param("failures", "Argo's {{workflow.failures}} JSON.", "null"),
    Param("format", "Webhook payload: Slack-compatible text or generic JSON.", "slack", ("slack", "json")),
    Param("ui-url", "Argo UI base URL for the link.", "https://argo.example.com"),
    Param("webhook-secret", "Secret holding the webhook URL.", "tenant-dr-notify"),
    Param("webhook-key", "Key of the webhook URL in that Secret.", "webhook-url"),
)


def notify_template(cfg: TenantConfig) -> WorkflowTemplate:
    """``tenant-dr-notify``: ``main`` posts one workflow's result to the webhook from a Secret."""
    description = (
        "Posts a workflow's name, status, failed steps and a link to a Slack-compatible or JSON webhook whose URL "
        "is read from a Secret. Used by the exit handler of every tenant-dr template; submit it by hand to test "
        "the webhook. A webhook outage is logged and does not fail the calling workflow."
    )
    annotations = metadata_annotations("tenant-dr notify", description)
    lbl = labels(None, "common")
    ref = {p.name: p.ref for p in PARAMS}
    with WorkflowTemplate(
        name=NOTIFY_TEMPLATE,
        entrypoint="main",
        labels=lbl,
        annotations=annotations,
        workflow_metadata=m.WorkflowMetadata(labels=lbl, annotations=annotations),
        arguments=[p.argument() for p in PARAMS],
        service_account_name=cfg.service_account,
        security_context=pod_security(),
        pod_gc=m.PodGC(strategy="OnPodSuccess", delete_delay_duration="10m"),
        ttl_strategy=m.TTLStrategy(seconds_after_success=86400, seconds_after_failure=7 * 86400),
    ) as wt:
        Container(
            name="main",
            image=image_for_module(cfg, "notify"),
            image_pull_policy=cfg.images.pull_policy,
            command=["python", "-m", "steps.notify"],
            args=[
                "send",
                "--tenant",
                ref["tenant"],
                "--workflow-template",
                ref["workflow-template"],
                "--workflow",
                ref["workflow"],
                "--namespace",
                ref["namespace"],
                "--status",
                ref["status"],
                "--duration",
                ref["duration"],
                "--failures",
                ref["failures"],
                "--format",
                ref["format"],
                "--ui-url",
                ref["ui-url"],
            ],
            env=[
                m.EnvVar(
                    name="NOTIFY_WEBHOOK_URL",
                    value_from=m.EnvVarSource(
                        secret_key_ref=m.SecretKeySelector(name=ref["webhook-secret"], key=ref["webhook-key"])
                    ),
                ),
                m.EnvVar(name="STEP_OUTPUT_DIR", value="/tmp/outputs"),
            ],
            inputs=[p.input() for p in PARAMS],
            resources=m.ResourceRequirements(requests={"cpu": "50m", "memory": "64Mi"}, limits={"memory": "256Mi"}),
            active_deadline_seconds=DEADLINE_NOTIFY,
            retry_strategy=retry_strategy(),
            pod_security_context=pod_security(),
            security_context=container_security(),
            volumes=[m.Volume(name="tmp", empty_dir=m.EmptyDirVolumeSource())],
            volume_mounts=[m.VolumeMount(name="tmp", mount_path="/tmp")],
        )
    return wt
