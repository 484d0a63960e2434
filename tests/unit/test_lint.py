"""``tenant-dr lint``: clean builds pass; each kind of mistake, planted in a copy of the build, is reported."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from workflows.build import build
from workflows.cli import cli
from workflows.config import DEFAULT, load_config
from workflows.lint import lint_bundle

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
BACKUP = "atlas-backup/templates"
RESTORE = "atlas-restore/templates"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    build(DEFAULT, out)
    return out


@pytest.fixture
def dist(built: Path, tmp_path: Path) -> Path:
    target = tmp_path / "dist"
    shutil.copytree(built, target)
    return target


def edit(dist: Path, rel: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = dist / rel
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def template(data: dict[str, Any], name: str) -> dict[str, Any]:
    spec = data["spec"].get("workflowSpec", data["spec"])
    return next(t for t in spec["templates"] if t["name"] == name)


def task(data: dict[str, Any], tmpl: str, name: str) -> dict[str, Any]:
    return next(t for t in template(data, tmpl)["dag"]["tasks"] if t["name"] == name)


def findings(dist: Path) -> list[str]:
    return [str(f) for f in lint_bundle(dist)]


def assert_reported(dist: Path, *needles: str) -> None:
    found = findings(dist)
    for needle in needles:
        assert any(needle in line for line in found), f"{needle!r} not reported; findings: {found}"


def set_arg(data: dict[str, Any], tmpl: str, old: str, new: str) -> None:
    args = template(data, tmpl)["container"]["args"]
    args[args.index(old)] = new


# ---- clean builds -----------------------------------------------------------------------------------


def test_default_build_is_clean(built: Path) -> None:
    assert findings(built) == []


def test_non_default_build_is_clean(tmp_path: Path) -> None:
    build(load_config(GOLDEN / "configs" / "minimal.yaml"), tmp_path)
    assert findings(tmp_path) == []


def test_cli_reports_one_line_per_finding_and_exits_1(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-backup-all.yaml", lambda d: d["spec"].update(entrypoint="mian"))
    edit(dist, f"{BACKUP}/atlas-redis-backup.yaml", lambda d: d["spec"].update(onExit="nope"))
    result = CliRunner().invoke(cli, ["lint", str(dist)])
    assert result.exit_code == 1
    lines = [ln for ln in result.stdout.splitlines() if ln]
    assert len(lines) == 2
    assert lines[0] == (
        f"{dist}/{BACKUP}/atlas-backup-all.yaml: WorkflowTemplate/atlas-backup-all: entrypoint 'mian' undefined"
    )
    assert lines[1].startswith(f"{dist}/{BACKUP}/atlas-redis-backup.yaml: WorkflowTemplate/atlas-redis-backup: ")


def test_cli_clean_exits_0(built: Path) -> None:
    result = CliRunner().invoke(cli, ["lint", str(built)])
    assert result.exit_code == 0, result.output


# ---- (a) strict schema ------------------------------------------------------------------------------


def test_misspelled_top_level_field(dist: Path) -> None:
    def typo(d: dict[str, Any]) -> None:
        d["spec"]["entrypiont"] = d["spec"].pop("entrypoint")

    edit(dist, f"{BACKUP}/atlas-postgres-backup.yaml", typo)
    assert_reported(dist, "schema: $.spec.entrypiont: unknown field for WorkflowSpec")


def test_misspelled_nested_field(dist: Path) -> None:
    def typo(d: dict[str, Any]) -> None:
        retry = template(d, "backup")["retryStrategy"]
        retry["limt"] = retry.pop("limit")

    edit(dist, f"{BACKUP}/atlas-postgres-backup.yaml", typo)
    assert_reported(dist, ".retryStrategy.limt: unknown field for RetryStrategy")


def test_misspelled_container_field(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-redis-backup.yaml", lambda d: template(d, "backup")["container"].update(imagee="x"))
    assert_reported(dist, ".container.imagee: unknown field for Container")


def test_misspelled_cron_field(dist: Path) -> None:
    def typo(d: dict[str, Any]) -> None:
        d["spec"]["concurencyPolicy"] = d["spec"].pop("concurrencyPolicy")

    edit(dist, "atlas-backup/cronworkflows/atlas-backup-daily.yaml", typo)
    assert_reported(dist, "schema: $.spec.concurencyPolicy: unknown field for CronWorkflowSpec")


def test_wrong_type(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-redis-backup.yaml", lambda d: template(d, "backup")["container"].update(args="backup"))
    assert_reported(dist, "schema: $.spec.templates.1.container.args: Input should be a valid list")


def test_deadline_not_a_number(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-redis-backup.yaml", lambda d: template(d, "backup").update(activeDeadlineSeconds="abc"))
    assert_reported(dist, "templates.backup: activeDeadlineSeconds 'abc' is not a positive integer or a variable")


def test_unknown_field_in_rbac(dist: Path) -> None:
    edit(dist, "atlas-backup/rbac/role-atlas-tenant-dr-atlas-backup.yaml", lambda d: d["rules"][0].update(verb=["x"]))
    assert_reported(dist, "schema: $.rules[0].verb: unknown field for PolicyRule")


def test_secret_object_in_a_package(dist: Path) -> None:
    (dist / "atlas-backup" / "configmaps" / "creds.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\ndata: {password: aHVudGVyMg==}\n"
    )
    assert_reported(dist, "unexpected kind 'Secret'")


def test_two_documents_in_one_file(dist: Path) -> None:
    path = dist / BACKUP / "atlas-redis-backup.yaml"
    path.write_text(path.read_text() + "---\n" + path.read_text())
    assert_reported(dist, "holds 2 YAML documents")


# ---- (b) semantic rules -----------------------------------------------------------------------------


def test_name_too_long(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-redis-backup.yaml", lambda d: d["metadata"].update(name="a" * 64))
    assert_reported(dist, "name is 64 characters; the limit for a WorkflowTemplate is 63")


def test_cron_name_over_52(dist: Path) -> None:
    edit(dist, "atlas-backup/cronworkflows/atlas-backup-daily.yaml", lambda d: d["metadata"].update(name="c" * 53))
    assert_reported(dist, "name is 53 characters; the limit for a CronWorkflow is 52")


def test_name_not_dns_1123(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-redis-backup.yaml", lambda d: d["metadata"].update(name="Bad_Name"))
    assert_reported(dist, "name 'Bad_Name' is not a DNS-1123 subdomain")


def test_duplicate_template_name(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-redis-backup.yaml", lambda d: template(d, "new-run-id").update(name="backup"))
    assert_reported(dist, "template name 'backup' is not unique")


def test_duplicate_task_name(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-backup-all.yaml", lambda d: task(d, "main", "redis").update(name="postgres"))
    assert_reported(dist, "templates.main: task name 'postgres' is not unique")


def test_entrypoint_undefined(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-backup-all.yaml", lambda d: d["spec"].update(entrypoint="mian"))
    assert_reported(dist, "entrypoint 'mian' undefined")


def test_on_exit_undefined(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-backup-all.yaml", lambda d: d["spec"].update(onExit="notify"))
    assert_reported(dist, "onExit template 'notify' undefined")


def test_task_template_undefined(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-backup-all.yaml", lambda d: task(d, "main", "seal").update(template="seel"))
    assert_reported(dist, "templates.main.tasks.seal: template 'seel' undefined")


def test_template_ref_to_missing_workflow_template(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-backup-all.yaml", lambda d: task(d, "main", "redis")["templateRef"].update(name="x"))
    assert_reported(dist, "templateRef x.backup: WorkflowTemplate not in the bundle")


def test_template_ref_to_missing_template(dist: Path) -> None:
    edit(
        dist,
        f"{BACKUP}/atlas-backup-all.yaml",
        lambda d: task(d, "main", "redis")["templateRef"].update(template="bakup"),
    )
    assert_reported(dist, "templateRef atlas-redis-backup.bakup: no such template")


def test_template_ref_across_packages_needs_a_dependency(dist: Path) -> None:
    import json

    path = dist / "atlas-backup" / "package.json"
    pkg = json.loads(path.read_text())
    pkg["dependencies"] = {}
    path.write_text(json.dumps(pkg))
    assert_reported(dist, "uses tenant-dr-notify from package tenant-dr-common, not a dependency")


def test_dependency_undefined(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-backup-all.yaml", lambda d: task(d, "main", "prune").update(depends="seel"))
    assert_reported(dist, "templates.main.tasks.prune: dependency 'seel' not defined")


def test_dependency_cycle(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-backup-all.yaml", lambda d: task(d, "main", "new-run-id").update(depends="seal"))
    assert_reported(dist, "dependency cycle")


def test_unknown_depends_result(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-backup-all.yaml", lambda d: task(d, "main", "prune").update(depends="seal.Succeded"))
    assert_reported(dist, "depends result 'Succeded' is unknown")


def test_enum_without_its_default(dist: Path) -> None:
    def bad(d: dict[str, Any]) -> None:
        confirm = next(p for p in d["spec"]["arguments"]["parameters"] if p["name"] == "confirm")
        confirm["value"] = "yes"

    edit(dist, f"{RESTORE}/atlas-restore.yaml", bad)
    assert_reported(dist, "parameter 'confirm': value 'yes' is not in its enum")


def test_unresolved_input_parameter(dist: Path) -> None:
    edit(
        dist,
        f"{BACKUP}/atlas-redis-backup.yaml",
        lambda d: set_arg(d, "backup", "{{inputs.parameters.run-id}}", "{{inputs.parameters.runid}}"),
    )
    assert_reported(dist, "templates.backup: {{inputs.parameters.runid}}: no input parameter 'runid'")


def test_undeclared_workflow_parameter(dist: Path) -> None:
    edit(
        dist,
        f"{RESTORE}/atlas-redis-restore.yaml",
        lambda d: set_arg(d, "plan", "{{inputs.parameters.run-id}}", "{{workflow.parameters.runid}}"),
    )
    assert_reported(dist, "{{workflow.parameters.runid}}: 'runid' is not a declared workflow parameter")


def test_task_output_that_does_not_exist(dist: Path) -> None:
    def bad(d: dict[str, Any]) -> None:
        task(d, "main", "seal")["arguments"]["parameters"][0]["value"] = "{{tasks.new-run-id.outputs.parameters.id}}"

    edit(dist, f"{BACKUP}/atlas-backup-all.yaml", bad)
    assert_reported(dist, "task 'new-run-id' has no output parameter 'id'")


def test_task_output_without_dependency(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-backup-all.yaml", lambda d: task(d, "main", "seal").pop("depends"))
    assert_reported(dist, "task 'new-run-id' is not a dependency")


def test_tasks_variable_outside_a_dag(dist: Path) -> None:
    edit(
        dist,
        f"{BACKUP}/atlas-redis-backup.yaml",
        lambda d: set_arg(
            d, "backup", "{{inputs.parameters.run-id}}", "{{tasks.new-run-id.outputs.parameters.run-id}}"
        ),
    )
    assert_reported(dist, "tasks.* only resolves inside a DAG")


def test_missing_and_unknown_arguments_of_a_call(dist: Path) -> None:
    edit(
        dist,
        f"{BACKUP}/atlas-backup-all.yaml",
        lambda d: task(d, "main", "redis")["arguments"]["parameters"][0].update(name="runid"),
    )
    assert_reported(dist, "input parameter 'run-id' of 'backup' is not supplied", "passes 'runid'")


def test_invalid_cron_and_timezone(dist: Path) -> None:
    edit(
        dist,
        "atlas-backup/cronworkflows/atlas-backup-daily.yaml",
        lambda d: d["spec"].update(schedules=["0 3 * *"], timezone="Mars/Olympus", concurrencyPolicy="Never"),
    )
    assert_reported(
        dist,
        "schedule '0 3 * *' is not a valid 5-field cron expression",
        "timezone 'Mars/Olympus' is not an IANA timezone",
        "concurrencyPolicy 'Never'",
    )


def test_cron_workflow_template_ref_missing(dist: Path) -> None:
    edit(
        dist,
        "atlas-backup/cronworkflows/atlas-backup-daily.yaml",
        lambda d: d["spec"]["workflowSpec"]["workflowTemplateRef"].update(name="atlas-backup-al"),
    )
    assert_reported(dist, "workflowTemplateRef 'atlas-backup-al': WorkflowTemplate not in the bundle")


def test_deadline_on_a_dag(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-backup-all.yaml", lambda d: template(d, "main").update(activeDeadlineSeconds=60))
    assert_reported(dist, "templates.main: activeDeadlineSeconds is only allowed on leaf templates")


def test_bad_metric_name(dist: Path) -> None:
    edit(
        dist,
        f"{BACKUP}/atlas-backup-all.yaml",
        lambda d: d["spec"]["metrics"]["prometheus"][0].update(name="tenant-dr:duration"),
    )
    assert_reported(dist, "metric name 'tenant-dr:duration' is not a Prometheus name")


# ---- conventions ------------------------------------------------------------------------------------


def test_literal_secret_in_env(dist: Path) -> None:
    def leak(d: dict[str, Any]) -> None:
        env = template(d, "backup")["container"]["env"]
        next(e for e in env if e["name"] == "PGPASSWORD").update(value="hunter2", valueFrom=None)
        for e in env:
            if e.get("valueFrom") is None:
                e.pop("valueFrom", None)

    edit(dist, f"{BACKUP}/atlas-postgres-backup.yaml", leak)
    assert_reported(dist, "env PGPASSWORD carries a literal value; secrets only via secretKeyRef")


def test_namespace_set(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-redis-backup.yaml", lambda d: d["metadata"].update(namespace="argo"))
    assert_reported(dist, "metadata.namespace must be unset")


def test_missing_ui_annotations(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-redis-backup.yaml", lambda d: d["spec"]["workflowMetadata"].pop("annotations"))
    assert_reported(dist, "spec.workflowMetadata.annotations[workflows.argoproj.io/title] is missing")


def test_leaf_without_retry_or_deadline(dist: Path) -> None:
    def strip(d: dict[str, Any]) -> None:
        leaf = template(d, "backup")
        leaf.pop("retryStrategy")
        leaf.pop("activeDeadlineSeconds")

    edit(dist, f"{BACKUP}/atlas-redis-backup.yaml", strip)
    assert_reported(
        dist, "templates.backup: leaf without activeDeadlineSeconds", "templates.backup: leaf without retry"
    )


def test_rbac_wildcard(dist: Path) -> None:
    edit(dist, "atlas-backup/rbac/role-atlas-tenant-dr-atlas-backup.yaml", lambda d: d["rules"][0].update(verbs=["*"]))
    assert_reported(dist, "wildcard grants are not least privilege")


def test_kustomization_out_of_sync(dist: Path) -> None:
    edit(dist, "kustomization.yaml", lambda d: d["resources"].pop(0))
    (dist / "atlas-backup" / "configmaps" / "extra.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\ndata: {a: b}\n"
    )
    assert_reported(dist, "atlas-backup/configmaps/extra.yaml is not listed in resources", "is not listed")


# ---- (c) wiring -------------------------------------------------------------------------------------


def test_renamed_flag(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-postgres-backup.yaml", lambda d: set_arg(d, "backup", "--databases", "--database"))
    assert_reported(dist, "python -m steps.postgres: No such option '--database'")


def test_unknown_action(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-backup-all.yaml", lambda d: set_arg(d, "seal", "seal", "close"))
    assert_reported(dist, "templates.seal: python -m steps.catalog: unknown action 'close'")


def test_missing_required_option(dist: Path) -> None:
    def drop(d: dict[str, Any]) -> None:
        args = template(d, "backup")["container"]["args"]
        i = args.index("--tenant")
        del args[i : i + 2]

    edit(dist, f"{BACKUP}/atlas-redis-backup.yaml", drop)
    assert_reported(dist, "python -m steps.redis: missing required option --tenant")


def test_value_the_option_rejects(dist: Path) -> None:
    edit(dist, f"{BACKUP}/atlas-postgres-backup.yaml", lambda d: set_arg(d, "backup", "5432", "fivefour"))
    assert_reported(dist, "--port 'fivefour'")


def test_enum_choice_the_step_rejects(dist: Path) -> None:
    def widen(d: dict[str, Any]) -> None:
        mode = next(p for p in template(d, "restore")["inputs"]["parameters"] if p["name"] == "mode")
        mode["enum"].append("wipe")

    edit(dist, f"{RESTORE}/atlas-elasticsearch-restore.yaml", widen)
    assert_reported(dist, "templates.restore: python -m steps.elasticsearch: --mode 'wipe'")


def test_unknown_step_module(dist: Path) -> None:
    edit(
        dist,
        f"{BACKUP}/atlas-redis-backup.yaml",
        lambda d: template(d, "backup")["container"].update(command=["python", "-m", "steps.redys"]),
    )
    assert_reported(dist, "python -m steps.redys: cannot import the step module")


def test_image_without_dockerfile(dist: Path) -> None:
    edit(
        dist,
        f"{BACKUP}/atlas-redis-backup.yaml",
        lambda d: template(d, "backup")["container"].update(image="ghcr.io/tenant-dr/tenant-dr-keydb:0.1.0"),
    )
    assert_reported(dist, "images/keydb/Dockerfile does not exist")


def test_module_in_the_wrong_image(dist: Path) -> None:
    edit(
        dist,
        f"{BACKUP}/atlas-postgres-backup.yaml",
        lambda d: template(d, "backup")["container"].update(image="ghcr.io/tenant-dr/tenant-dr-base:0.1.0"),
    )
    assert_reported(dist, "steps.postgres runs in image 'postgres' (images.yaml), not 'base'")
