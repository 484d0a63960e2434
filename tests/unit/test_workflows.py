"""What the generated packages do: wiring of backup-all and restores, schedules, secrets, RBAC, the CLI."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from steps.storage import open_store
from steps.storage.catalog import Catalog
from steps.storage.manifest import ComponentManifest
from tests.harness import run_step
from workflows.build import build
from workflows.cli import cli
from workflows.config import DEFAULT, parse_config
from workflows.lint import lint_bundle

GOLDEN = Path(__file__).resolve().parent.parent / "golden"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    build(DEFAULT, out)
    return out


def load(dist: Path, rel: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((dist / rel).read_text())
    return data


def templates(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in doc["spec"]["templates"]}


def tasks(doc: dict[str, Any], name: str = "main") -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in templates(doc)[name]["dag"]["tasks"]}


def test_backup_all_runs_components_in_parallel_then_seals_then_prunes(dist: Path) -> None:
    doc = load(dist, "atlas-backup/templates/atlas-backup-all.yaml")
    dag = tasks(doc)
    components = ["elasticsearch", "cassandra", "postgres", "redis", "argo"]
    for name in components:
        assert dag[name]["depends"] == "new-run-id"
        assert dag[name]["templateRef"] == {"name": f"atlas-{name}-backup", "template": "backup"}
        assert dag[name]["arguments"]["parameters"] == [
            {"name": "run-id", "value": "{{tasks.new-run-id.outputs.parameters.run-id}}"}
        ]
    assert set(dag["seal"]["depends"].split(" && ")) == set(components)
    seal_args = templates(doc)["seal"]["container"]["args"]
    assert seal_args[seal_args.index("--components") + 1] == ",".join(components)
    assert dag["prune"]["depends"] == "seal" and dag["prune-elasticsearch"]["depends"] == "seal"
    prune_args = templates(doc)["prune"]["container"]["args"]
    assert prune_args[:1] == ["prune"] and "--confirm" in prune_args
    assert prune_args[prune_args.index("--older-than-days") + 1] == "15"
    assert doc["spec"]["onExit"] == "exit-handler"
    notify = tasks(doc, "exit-handler")["notify"]
    assert notify["templateRef"] == {"name": "tenant-dr-notify", "template": "main"}


def test_disabled_components_are_left_out(tmp_path: Path) -> None:
    cfg = parse_config({"components": {"cassandra": {"enabled": False}, "elasticsearch": {"enabled": False}}})
    build(cfg, tmp_path)
    doc = load(tmp_path, "atlas-backup/templates/atlas-backup-all.yaml")
    assert set(tasks(doc)) == {"new-run-id", "postgres", "redis", "argo", "seal", "prune"}
    seal_args = templates(doc)["seal"]["container"]["args"]
    assert seal_args[seal_args.index("--components") + 1] == "postgres,redis,argo"
    assert not (tmp_path / "atlas-backup/templates/atlas-cassandra-backup.yaml").exists()
    restore = load(tmp_path, "atlas-restore/templates/atlas-restore.yaml")
    assert [p["name"] for p in restore["spec"]["arguments"]["parameters"]] == [
        "run-id",
        "confirm",
        "postgres",
        "redis",
        "argo",
    ]
    assert lint_bundle(tmp_path) == []


def test_redis_bgsave_can_be_switched_off(dist: Path, tmp_path: Path) -> None:
    def backup_args(root: Path) -> list[str]:
        doc = load(root, "atlas-backup/templates/atlas-redis-backup.yaml")
        args: list[str] = templates(doc)["backup"]["container"]["args"]
        return args

    assert "--no-bgsave" not in backup_args(dist)  # the default keeps the BGSAVE
    build(parse_config({"components": {"redis": {"bgsave": False}}}), tmp_path)
    assert "--no-bgsave" in backup_args(tmp_path)
    assert lint_bundle(tmp_path) == []  # the flag parses with the step's own CLI


def test_daily_cron(dist: Path) -> None:
    cron = load(dist, "atlas-backup/cronworkflows/atlas-backup-daily.yaml")
    spec = cron["spec"]
    assert spec["schedules"] == ["0 3 * * *"] and spec["timezone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid" and spec["startingDeadlineSeconds"] == 3600
    assert spec["workflowSpec"]["workflowTemplateRef"] == {"name": "atlas-backup-all"}
    assert len(cron["metadata"]["name"]) <= 52


def test_freshness_monitor_alerts_only_on_failure(dist: Path) -> None:
    cron = load(dist, "atlas-backup/cronworkflows/atlas-backup-freshness.yaml")
    assert cron["spec"]["schedules"] == ["17 * * * *"]
    doc = load(dist, "atlas-backup/templates/atlas-backup-freshness.yaml")
    args = templates(doc)["freshness"]["container"]["args"]
    assert args[0] == "freshness" and args[args.index("--max-age") + 1] == "26h"
    assert tasks(doc, "exit-handler")["notify"]["when"] == "{{workflow.status}} != Succeeded"


def test_restore_plans_by_default_and_confirms_only_when_asked(dist: Path) -> None:
    doc = load(dist, "atlas-restore/templates/atlas-postgres-restore.yaml")
    params = {p["name"]: p for p in doc["spec"]["arguments"]["parameters"]}
    assert params["confirm"]["value"] == "false" and params["confirm"]["enum"] == ["false", "true"]
    assert params["run-id"]["value"] == "latest"
    main = templates(doc)["main"]
    assert {p["name"] for p in main["inputs"]["parameters"]} == set(params)
    dag = tasks(doc)
    assert dag["plan"]["when"] == "'{{inputs.parameters.confirm}}' != 'true'"
    assert dag["restore"]["when"] == "'{{inputs.parameters.confirm}}' == 'true'"
    plan, restore = templates(doc)["plan"], templates(doc)["restore"]
    assert "--confirm" not in plan["container"]["args"]
    assert restore["container"]["args"][-1] == "--confirm"
    assert restore["synchronization"] == {"mutexes": [{"name": "tenant-dr-atlas-postgres"}]}
    backup = load(dist, "atlas-backup/templates/atlas-postgres-backup.yaml")
    assert templates(backup)["backup"]["synchronization"] == restore["synchronization"]
    assert doc["spec"]["serviceAccountName"] == "tenant-dr-restore"


def test_restore_all_resolves_one_run_for_every_component(dist: Path) -> None:
    doc = load(dist, "atlas-restore/templates/atlas-restore.yaml")
    dag = tasks(doc)
    for name in ("elasticsearch", "cassandra", "postgres", "redis", "argo"):
        assert dag[name]["depends"] == "resolve"
        args = {p["name"]: p["value"] for p in dag[name]["arguments"]["parameters"]}
        assert args == {
            "run-id": "{{tasks.resolve.outputs.parameters.run-id}}",
            "confirm": "{{inputs.parameters.confirm}}",
        }
        assert dag[name]["when"] == f"'{{{{inputs.parameters.{name}}}}}' == 'true'"


def test_secrets_only_through_secret_key_refs(dist: Path) -> None:
    refs: dict[str, str] = {}
    for path in dist.rglob("*.yaml"):
        for tmpl in (yaml.safe_load(path.read_text()).get("spec") or {}).get("templates") or []:
            for env in (tmpl.get("container") or {}).get("env") or []:
                if re.search("PASSWORD|SECRET|TOKEN|WEBHOOK", env["name"]):
                    assert "value" not in env, f"{path}: {env}"
                    refs[env["name"]] = env["valueFrom"]["secretKeyRef"]["name"]
    assert refs == {
        "PGPASSWORD": "postgresql",
        "REDIS_PASSWORD": "redis",
        "NOTIFY_WEBHOOK_URL": "{{inputs.parameters.webhook-secret}}",
        "CLOUDFLARE_API_TOKEN": "cloudflare",  # tenant-recreate's DNS steps
    }


def test_kubeconfig_mode_mounts_the_secret_and_grants_nothing_remote(tmp_path: Path) -> None:
    build(parse_config(yaml.safe_load((GOLDEN / "configs/minimal.yaml").read_text())), tmp_path)
    doc = load(tmp_path, "beta-backup/templates/beta-cassandra-backup.yaml")
    leaf = templates(doc)["backup"]
    args = leaf["container"]["args"]
    assert args[args.index("--kubeconfig") + 1] == "/etc/tenant-dr/kubeconfig/kubeconfig"
    volume = next(v for v in leaf["volumes"] if v["name"] == "kubeconfig")
    assert volume["secret"]["secretName"] == "beta-kubeconfig"
    roles = [load(tmp_path, str(p.relative_to(tmp_path))) for p in tmp_path.glob("*/rbac/role-*.yaml")]
    assert {r["metadata"]["namespace"] for r in roles} == {"dr"}
    assert not list(tmp_path.glob("*/rbac/clusterrole*"))


def test_in_cluster_rbac_is_least_privilege(dist: Path) -> None:
    backup = load(dist, "atlas-backup/rbac/role-atlas-tenant-dr-atlas-backup.yaml")
    assert backup["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]},
    ]
    argo_backup = load(dist, "atlas-backup/rbac/role-argo-tenant-dr-atlas-backup.yaml")
    verbs = {v for rule in argo_backup["rules"] for v in rule["verbs"]}
    assert verbs == {"list", "create", "patch"}  # create/patch only on workflowtaskresults
    writes = [r for r in argo_backup["rules"] if {"create", "patch"} & set(r["verbs"])]
    assert writes == [
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}
    ]
    binding = load(dist, "atlas-backup/rbac/rolebinding-atlas-tenant-dr-atlas-backup.yaml")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "tenant-dr", "namespace": "argo"}]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomization_builds(dist: Path) -> None:
    out = subprocess.run(["kubectl", "kustomize", str(dist)], capture_output=True, text=True, check=True)
    kinds = re.findall(r"^kind: (\w+)$", out.stdout, re.MULTILINE)
    assert kinds.count("WorkflowTemplate") == 16 and kinds.count("CronWorkflow") == 2


def test_cli_build_prints_a_summary_and_lint_passes(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["build", "--out", str(tmp_path / "dist")])
    assert result.exit_code == 0, result.output
    assert "atlas-backup-all" in result.output and "wrote 54 files" in result.output
    assert runner.invoke(cli, ["lint", str(tmp_path / "dist")]).exit_code == 0


def test_cli_build_rejects_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("componentz: {}\n")
    result = CliRunner().invoke(cli, ["build", "--config", str(bad), "--out", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert "componentz: unknown key" in result.output
    assert not (tmp_path / "d").exists()


# ---- the catalog actions the templates rely on -----------------------------------------------------


def test_new_run_id_writes_the_output(tmp_path: Path) -> None:
    run = run_step("catalog", ["new-run-id", "--tenant", "atlas"], env={"STEP_OUTPUT_DIR": str(tmp_path)})
    assert run.code == 0, run.stderr
    run_id = (tmp_path / "run-id").read_text()
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", run_id) and run.result["run_id"] == run_id


def test_resolve_latest_complete_and_explicit_runs(tmp_path: Path) -> None:
    store = f"file://{tmp_path / 'store'}"
    catalog = Catalog(open_store(store), "atlas")
    base = ["--tenant", "atlas", "--store", store]
    empty = run_step("catalog", ["resolve", *base], env={"STEP_OUTPUT_DIR": str(tmp_path / "o0")})
    assert empty.code == 3
    now = datetime.now(UTC)
    runs = ["20261120T030000Z-aaaaaa", "20261121T030000Z-bbbbbb"]
    for run_id in runs:
        manifest = ComponentManifest(
            tenant="atlas", run_id=run_id, component="redis", started_at=now, finished_at=now, objects=[]
        )
        catalog.write_manifest(manifest)
    catalog.seal(runs[0], ["redis"])  # the newer run is incomplete
    latest = run_step("catalog", ["resolve", *base], env={"STEP_OUTPUT_DIR": str(tmp_path / "o1")})
    assert latest.code == 0, latest.stderr
    assert (tmp_path / "o1" / "run-id").read_text() == runs[0]
    explicit = run_step("catalog", ["resolve", *base, "--run-id", runs[1]], env={"STEP_OUTPUT_DIR": str(tmp_path)})
    assert explicit.code == 0 and explicit.result["run_id"] == runs[1]
    missing = run_step("catalog", ["resolve", *base, "--run-id", "20261122T030000Z-cccccc"])
    assert missing.code == 3 and "not found" in missing.error
