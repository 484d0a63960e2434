"""One component's backup and restore WorkflowTemplates, built from its :class:`ComponentWiring`.

A component module (``postgres.py`` ...) only says how its step is called; the shape of the templates
(run id, mutex, plan/confirm flow, exit handler, metrics) is the same for every component:

``<tenant>-<component>-backup``
    ``main``: ``new-run-id`` -> ``backup`` (the leaf ``backup-all`` calls through templateRef).
``<tenant>-<component>-restore``
    ``main``: ``plan`` (confirm=false: verify the backup and print what would change) or
    ``restore`` (confirm=true: the destructive restore, under the component's mutex).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from hera.workflows import DAG, Task, WorkflowTemplate
from hera.workflows import models as m

from workflows.config import TenantConfig
from workflows.templates.common import (
    Flag,
    Param,
    Step,
    confirm_param,
    exit_handler,
    mutex_name,
    new_run_id_step,
    step_container,
    store_env,
    store_flags,
    when_false,
    when_true,
    workflow_kwargs,
)

RUN_ID_INPUT = Param("run-id", "Run id this backup writes (from backup-all, or a fresh one).")


def run_id_param(component: str) -> Param:
    """The restore's ``run-id`` parameter (default ``latest``)."""
    return Param(
        "run-id",
        f"Backup run to restore: a run id like 20261121T030000Z-1a2b3c (see `tenant-dr catalog list`), or "
        f"'latest' = the newest run holding a complete {component} backup.",
        "latest",
    )


@dataclass(frozen=True)
class Rule:
    """One RBAC rule the component's step needs on the tenant's cluster (in-cluster mode)."""

    namespace: str | None  # None: cluster-scoped (ClusterRole)
    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]


@dataclass(frozen=True)
class ComponentWiring:
    """How ``python -m steps.<module>`` is called for one component."""

    name: str
    title: str
    backup_description: str
    restore_description: str
    connection: Sequence[Flag] = ()
    env: Sequence[m.EnvVar] = ()
    backup_flags: Sequence[Flag] = ()
    restore_params: Sequence[Param] = ()
    restore_flags: Sequence[Flag] = ()
    kube: bool = False
    backup_deadline: int = 6 * 3600
    restore_deadline: int = 12 * 3600
    backup_memory: str = "1Gi"
    restore_memory: str = "1Gi"
    backup_rules: Sequence[Rule] = field(default_factory=tuple)
    restore_rules: Sequence[Rule] = field(default_factory=tuple)

    @property
    def module(self) -> str:
        """The step module (``steps.<name>``)."""
        return self.name


def backup_name(cfg: TenantConfig, component: str) -> str:
    """``<tenant>-<component>-backup``."""
    return f"{cfg.name}-{component}-backup"


def restore_name(cfg: TenantConfig, component: str) -> str:
    """``<tenant>-<component>-restore``."""
    return f"{cfg.name}-{component}-restore"


def backup_step(cfg: TenantConfig, w: ComponentWiring) -> Step:
    """The ``backup`` leaf: writes ``<run-id>/<component>/`` and its manifest."""
    return Step(
        name="backup",
        module=w.module,
        action="backup",
        flags=[*store_flags(cfg), ("--run-id", RUN_ID_INPUT.ref), *w.connection, *w.backup_flags],
        inputs=[RUN_ID_INPUT],
        outputs=("run-id",),
        env=[*store_env(cfg), *w.env],
        deadline=w.backup_deadline,
        mutex=mutex_name(cfg, w.name),
        kube=w.kube,
        memory_limit=w.backup_memory,
    )


def backup_template(cfg: TenantConfig, w: ComponentWiring) -> WorkflowTemplate:
    """``<tenant>-<component>-backup``: submittable on its own, and its ``backup`` leaf is used by backup-all."""
    name = backup_name(cfg, w.name)
    description = (
        f"{w.backup_description}\n\nWrites `{cfg.store.url}/{cfg.name}/runs/<run-id>/{w.name}/` with a manifest "
        f"written last. A run started here is not sealed (RUN.json is written by `{cfg.name}-backup-all`); "
        f"single-component restores can still use it."
    )
    with WorkflowTemplate(
        **workflow_kwargs(
            cfg,
            name=name,
            title=f"{w.title} backup ({cfg.name})",
            description=description,
            kind="backup",
            component=w.name,
        )
    ) as wt:
        run_id = step_container(cfg, new_run_id_step(cfg))
        leaf = step_container(cfg, backup_step(cfg, w))
        with DAG(name="main"):
            first = Task(name="new-run-id", template=run_id)
            first >> Task(
                name="backup",
                template=leaf,
                arguments={"run-id": "{{tasks.new-run-id.outputs.parameters.run-id}}"},
            )
        exit_handler(cfg, name)
    return wt


def restore_steps(cfg: TenantConfig, w: ComponentWiring) -> tuple[Step, Step]:
    """The ``plan`` (no ``--confirm``) and ``restore`` (``--confirm``, under the mutex) leaves."""
    run_id = run_id_param(w.name)
    flags = [*store_flags(cfg), ("--run-id", run_id.ref), *w.connection, *w.restore_flags]
    common = {
        "module": w.module,
        "action": "restore",
        "inputs": [run_id, *w.restore_params],
        "env": [*store_env(cfg), *w.env],
        "kube": w.kube,
        "memory_limit": w.restore_memory,
        "deadline": w.restore_deadline,
    }
    plan = Step(name="plan", flags=flags, **common)  # type: ignore[arg-type]
    apply = Step(name="restore", flags=[*flags, ("--confirm", None)], mutex=mutex_name(cfg, w.name), **common)  # type: ignore[arg-type]
    return plan, apply


def restore_template(cfg: TenantConfig, w: ComponentWiring) -> WorkflowTemplate:
    """``<tenant>-<component>-restore``: plan by default, the real restore with confirm=true."""
    name = restore_name(cfg, w.name)
    params = [run_id_param(w.name), confirm_param(f"restore {w.title} (destructive)"), *w.restore_params]
    description = (
        f"{w.restore_description}\n\nSubmit with `confirm=false` (default) first: the step verifies every object "
        f"of the chosen backup and prints its plan without touching {w.title}. Then submit again with "
        f"`confirm=true`, pinning `run-id` to the run the plan named."
    )
    with WorkflowTemplate(
        **workflow_kwargs(
            cfg,
            name=name,
            title=f"{w.title} restore ({cfg.name})",
            description=description,
            kind="restore",
            component=w.name,
            arguments=params,
            service_account=restore_service_account(cfg),
        )
    ) as wt:
        plan_step, apply_step = restore_steps(cfg, w)
        plan = step_container(cfg, plan_step)
        apply = step_container(cfg, apply_step)
        passed = {p.name: p.ref for p in params if p.name != "confirm"}
        with DAG(name="main", inputs=[p.input() for p in params]):
            Task(name="plan", template=plan, arguments=passed, when=when_false("confirm"))
            Task(name="restore", template=apply, arguments=passed, when=when_true("confirm"))
        exit_handler(cfg, name)
    return wt


def restore_service_account(cfg: TenantConfig) -> str:
    """Restores run under their own ServiceAccount (write access), backups under the read-only one."""
    return f"{cfg.service_account}-restore"
