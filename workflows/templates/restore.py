"""``<tenant>-restore``: restore the chosen components of one backup run (default: all, latest complete)."""

from __future__ import annotations

from hera.workflows import DAG, Task, WorkflowTemplate
from hera.workflows import models as m

from workflows.config import TenantConfig
from workflows.templates.common import (
    BOOL_ENUM,
    Param,
    catalog_step,
    confirm_param,
    exit_handler,
    step_container,
    when_true,
    workflow_kwargs,
)
from workflows.templates.component import ComponentWiring, restore_name, restore_service_account

RUN_ID = "{{tasks.resolve.outputs.parameters.run-id}}"


def restore_all_name(cfg: TenantConfig) -> str:
    """``<tenant>-restore``."""
    return f"{cfg.name}-restore"


def restore_all_template(cfg: TenantConfig, wirings: list[ComponentWiring]) -> WorkflowTemplate:
    """Resolve the run once (so every component comes from the same run), then restore the chosen ones."""
    name = restore_all_name(cfg)
    run_id = Param(
        "run-id",
        "Backup run to restore: a run id like 20261121T030000Z-1a2b3c (see `tenant-dr catalog list`), or "
        "'latest' = the newest complete (sealed) run. Every component comes from this one run.",
        "latest",
    )
    choices = [Param(w.name, f"Restore {w.title}? (true/false)", "true", BOOL_ENUM) for w in wirings]
    params = [run_id, confirm_param("restore the chosen components (destructive)"), *choices]
    description = (
        f"Restores the chosen components of tenant `{cfg.name}` from one backup run, in parallel. With "
        f"`confirm=false` (default) every component only verifies the backup and prints its plan; submit again "
        f"with `confirm=true` and the `run-id` the plan resolved to restore for real."
    )
    with WorkflowTemplate(
        **workflow_kwargs(
            cfg,
            name=name,
            title=f"Restore tenant {cfg.name}",
            description=description,
            kind="restore",
            arguments=params,
            service_account=restore_service_account(cfg),
            mutex=f"tenant-dr-{cfg.name}-restore-all",
        )
    ) as wt:
        resolve = step_container(
            cfg,
            catalog_step(cfg, "resolve", "resolve", [("--run-id", run_id.ref)], inputs=[run_id], outputs=("run-id",)),
        )
        with DAG(name="main", inputs=[p.input() for p in params]):
            first = Task(name="resolve", template=resolve, arguments={"run-id": run_id.ref})
            first >> [
                Task(
                    name=w.name,
                    template_ref=m.TemplateRef(name=restore_name(cfg, w.name), template="main"),
                    arguments={"run-id": RUN_ID, "confirm": "{{inputs.parameters.confirm}}"},
                    when=when_true(w.name),
                )
                for w in wirings
            ]
        exit_handler(cfg, name)
    return wt
