"""``<tenant>-backup-all`` with its daily CronWorkflow, and the freshness monitor.

backup-all runs every component in parallel under one run id, then seals the run and prunes; the freshness
monitor is a WorkflowTemplate plus an hourly CronWorkflow.
"""

from __future__ import annotations

from hera.workflows import DAG, CronWorkflow, Task, WorkflowTemplate
from hera.workflows import models as m

from workflows.config import TenantConfig
from workflows.templates.common import (
    DEADLINE_CATALOG,
    Param,
    Step,
    catalog_step,
    exit_handler,
    labels,
    metadata_annotations,
    mutex_name,
    new_run_id_step,
    step_container,
    store_env,
    store_flags,
    workflow_kwargs,
)
from workflows.templates.component import ComponentWiring, backup_name

RUN_ID = "{{tasks.new-run-id.outputs.parameters.run-id}}"
SEAL_RUN_ID = Param("run-id", "Run to seal once every component's manifest is there.")


def backup_all_name(cfg: TenantConfig) -> str:
    """``<tenant>-backup-all``."""
    return f"{cfg.name}-backup-all"


def freshness_name(cfg: TenantConfig) -> str:
    """``<tenant>-backup-freshness`` (WorkflowTemplate and CronWorkflow)."""
    return f"{cfg.name}-backup-freshness"


def daily_name(cfg: TenantConfig) -> str:
    """``<tenant>-backup-daily`` (the CronWorkflow)."""
    return f"{cfg.name}-backup-daily"


def backup_all_template(cfg: TenantConfig, wirings: list[ComponentWiring]) -> WorkflowTemplate:
    """One run id, every enabled component in parallel, then ``catalog seal`` and the retention prunes."""
    name = backup_all_name(cfg)
    components = [w.name for w in wirings]
    retention = [
        ("--older-than-days", str(cfg.retention.days)),
        ("--min-complete", str(cfg.retention.min_complete)),
        ("--confirm", None),
    ]
    description = (
        f"Backs up {', '.join(components)} of tenant `{cfg.name}` in parallel under one run id, then seals the "
        f"run (`RUN.json`: the run is complete and becomes `latest`) and prunes runs older than "
        f"{cfg.retention.days} days (always keeping the newest {cfg.retention.min_complete} complete runs). "
        f"Nothing is pruned unless this run sealed."
    )
    with WorkflowTemplate(
        **workflow_kwargs(
            cfg,
            name=name,
            title=f"Back up tenant {cfg.name}",
            description=description,
            kind="backup",
            mutex=f"tenant-dr-{cfg.name}-backup-all",
        )
    ) as wt:
        run_id = step_container(cfg, new_run_id_step(cfg))
        seal = step_container(
            cfg,
            catalog_step(
                cfg,
                "seal",
                "seal",
                [("--run-id", SEAL_RUN_ID.ref), ("--components", ",".join(components))],
                inputs=[SEAL_RUN_ID],
            ),
        )
        prune = step_container(cfg, catalog_step(cfg, "prune", "prune", retention))
        es_prune = None
        es = next((w for w in wirings if w.name == "elasticsearch"), None)
        if es is not None:
            es_prune = step_container(
                cfg,
                Step(
                    name="prune-elasticsearch",
                    module="elasticsearch",
                    action="prune",
                    flags=[*store_flags(cfg), *es.connection, *retention],
                    env=[*store_env(cfg), *es.env],
                    deadline=DEADLINE_CATALOG,
                    mutex=mutex_name(cfg, es.name),  # never while an Elasticsearch restore or backup runs
                ),
            )
        with DAG(name="main"):
            first = Task(name="new-run-id", template=run_id)
            backups = [
                Task(
                    name=w.name,
                    template_ref=m.TemplateRef(name=backup_name(cfg, w.name), template="backup"),
                    arguments={"run-id": RUN_ID},
                )
                for w in wirings
            ]
            sealed = Task(name="seal", template=seal, arguments={"run-id": RUN_ID})
            first >> backups
            backups >> sealed  # type: ignore[operator]  # hera: list >> Task via Task.__rrshift__
            sealed >> Task(name="prune", template=prune)
            if es_prune is not None:
                sealed >> Task(name="prune-elasticsearch", template=es_prune)
        exit_handler(cfg, name)
    return wt


def daily_cron(cfg: TenantConfig) -> CronWorkflow:
    """The daily schedule of backup-all (default 03:00 Etc/UTC); a missed run starts within the deadline."""
    s = cfg.schedule
    annotations = metadata_annotations(
        f"Daily backup of tenant {cfg.name} ({s.cron} {s.timezone})",
        f"Submits `{backup_all_name(cfg)}` on `{s.cron}` ({s.timezone}). Never two at once (Forbid); a run "
        f"missed by a controller outage still starts within {s.starting_deadline_seconds}s.",
    )
    lbl = labels(cfg, "backup")
    return CronWorkflow(
        name=daily_name(cfg),
        labels=lbl,
        annotations=annotations,
        schedules=[s.cron],
        timezone=s.timezone,
        concurrency_policy="Forbid",
        starting_deadline_seconds=s.starting_deadline_seconds,
        successful_jobs_history_limit=3,
        failed_jobs_history_limit=7,
        workflow_metadata=m.WorkflowMetadata(labels=lbl, annotations=annotations),
        workflow_template_ref=m.WorkflowTemplateRef(name=backup_all_name(cfg)),
    )


def freshness_template(cfg: TenantConfig) -> WorkflowTemplate:
    """Fails (and notifies) when the newest complete backup is older than ``freshness.max_age_hours``."""
    name = freshness_name(cfg)
    max_age = f"{cfg.freshness.max_age_hours}h"
    description = (
        f"Checks that tenant `{cfg.name}`'s newest complete (sealed) backup in `{cfg.store.url}` is at most "
        f"{max_age} old. Fails and notifies otherwise; silent when fresh."
    )
    with WorkflowTemplate(
        **workflow_kwargs(
            cfg, name=name, title=f"Backup freshness of tenant {cfg.name}", description=description, kind="monitor"
        )
    ) as wt:
        check = step_container(
            cfg, catalog_step(cfg, "freshness", "freshness", [("--max-age", max_age)], outputs=("age-hours",))
        )
        with DAG(name="main"):
            Task(name="freshness", template=check)
        exit_handler(cfg, name, only_on_failure=True)
    return wt


def freshness_cron(cfg: TenantConfig) -> CronWorkflow:
    """The freshness monitor's schedule (hourly by default)."""
    f = cfg.freshness
    annotations = metadata_annotations(
        f"Backup freshness monitor of tenant {cfg.name}",
        f"Runs `{freshness_name(cfg)}` on `{f.cron}` (Etc/UTC); alerts when the newest complete backup is older "
        f"than {f.max_age_hours}h.",
    )
    lbl = labels(cfg, "monitor")
    return CronWorkflow(
        name=freshness_name(cfg),
        labels=lbl,
        annotations=annotations,
        schedules=[f.cron],
        timezone="Etc/UTC",
        concurrency_policy="Forbid",
        starting_deadline_seconds=600,
        successful_jobs_history_limit=1,
        failed_jobs_history_limit=5,
        workflow_metadata=m.WorkflowMetadata(labels=lbl, annotations=annotations),
        workflow_template_ref=m.WorkflowTemplateRef(name=freshness_name(cfg)),
    )
