"""The compiled ``tenant-recreate`` / ``tenant-onboard`` templates and the ``dr`` config section."""

from __future__ import annotations

import itertools
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from workflows.build import build
from workflows.config import DEFAULT, ConfigError, parse_config
from workflows.lint import parse_step_args


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    build(DEFAULT, out)
    return out


def templates(dist: Path, name: str) -> dict[str, Any]:
    doc = yaml.safe_load((dist / "tenant-recreate" / "templates" / f"{name}.yaml").read_text())
    return {t["name"]: t for t in doc["spec"]["templates"]} | {"__spec__": doc["spec"]}


def tasks(tmpl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in tmpl["dag"]["tasks"]}


def test_main_runs_the_phases_in_order_and_times_them(dist: Path) -> None:
    t = templates(dist, "tenant-recreate")
    main = tasks(t["main"])
    order = ["preflight", "approval", "onboard", "restore", "validate", "cutover", "teardown", "timings"]
    assert list(main) == order
    for before, after in itertools.pairwise(order):
        assert main[after]["depends"] == before
    assert all("when" not in task for task in main.values())  # phases always run; modes skip inside them
    timing_args = {a["name"]: a["value"] for a in main["timings"]["arguments"]["parameters"]}
    assert timing_args["restore"] == "{{tasks.restore.startedAt}},{{tasks.restore.finishedAt}}"
    assert "--exclude" in t["timings"]["container"]["args"]
    params = {p["name"]: p for p in t["__spec__"]["arguments"]["parameters"]}
    assert params["approval-required"]["value"] == "true" and params["approval-required"]["enum"] == ["false", "true"]
    assert params["rollback-on-failure"]["value"] == "true" and params["drill"]["value"] == "false"
    assert all(p.get("description") for p in params.values())


def test_restores_read_the_source_catalog_with_confirm_from_one_run(dist: Path) -> None:
    t = templates(dist, "tenant-recreate")
    restore = tasks(t["restore"])
    assert set(restore) == set(DEFAULT.components.enabled())
    for name in restore:
        args = t[f"restore-{name}"]["container"]["args"]
        assert args[args.index("--tenant") + 1] == "{{inputs.parameters.source-tenant}}"
        assert args[args.index("--run-id") + 1] == "{{inputs.parameters.run-id}}"
        assert "--confirm" in args
    main = tasks(t["main"])
    run_ids = {a["value"] for a in main["restore"]["arguments"]["parameters"] if a["name"] == "run-id"}
    assert run_ids == {"{{tasks.preflight.outputs.parameters.run-id}}"}


def test_preflight_changes_nothing_and_mode_switches_sit_inside_phases(dist: Path) -> None:
    t = templates(dist, "tenant-recreate")
    for leaf in ("resolve", "verify", "old-tenant-plan", "new-tenant-lb", "dns-plan"):
        assert "--confirm" not in t[leaf]["container"]["args"], leaf
    assert tasks(t["approval"])["approve"]["when"] == "'{{inputs.parameters.approval-required}}' == 'true'"
    assert tasks(t["onboard"])["onboard"]["templateRef"] == {"name": "tenant-onboard", "template": "main"}
    for name in ("dns-cutover", "system-tests", "cutover-complete"):
        assert tasks(t["cutover"])[name]["when"] == "'{{inputs.parameters.drill}}' != 'true'"
    fence_when = "'{{inputs.parameters.drill}}' != 'true' && '{{inputs.parameters.fence}}' != 'skip'"
    assert tasks(t["cutover"])["fence"]["when"] == fence_when
    assert tasks(t["preflight"])["old-tenant-plan"]["when"] == "'{{inputs.parameters.fence}}' != 'skip'"
    assert tasks(t["teardown"])["scale-down-scratch"]["when"] == "'{{inputs.parameters.drill}}' == 'true'"


def test_only_old_tenant_leaves_get_its_kubeconfig(dist: Path) -> None:
    t = templates(dist, "tenant-recreate")
    source = {"old-tenant-plan", "fence", "rollback-old-tenant"}
    for name, tmpl in t.items():
        if "container" not in tmpl:
            continue
        mounts = {m["name"] for m in tmpl["container"].get("volumeMounts") or []}
        args = tmpl["container"]["args"]
        if name in source:
            assert "source-kubeconfig" in mounts
            assert args[args.index("--kubeconfig") + 1] == "/etc/tenant-dr/source-kubeconfig/kubeconfig"
        elif name == "system-tests":  # its `kube verify` precheck reads the old tenant (when it was fenced)
            assert "source-kubeconfig" in mounts
            volume = next(v for v in tmpl["volumes"] if v["name"] == "source-kubeconfig")
            assert volume["secret"]["optional"] is True  # fence=skip: the old installation (and Secret) may be gone
            env = {e["name"]: e.get("value") for e in tmpl["container"]["env"]}
            assert env["TENANT_DR_KUBECONFIG"] == "/etc/tenant-dr/source-kubeconfig/kubeconfig"
        else:
            assert "source-kubeconfig" not in mounts, name


def test_exit_handler_rolls_back_only_after_a_live_failure_then_notifies(dist: Path) -> None:
    t = templates(dist, "tenant-recreate")
    handler = tasks(t["exit-handler"])
    for name in ("rollback-old-tenant", "rollback-dns"):
        when = handler[name]["when"]
        assert "'{{workflow.status}}' != 'Succeeded'" in when
        assert "'{{workflow.parameters.rollback-on-failure}}' == 'true'" in when
        assert "'{{workflow.parameters.drill}}' != 'true'" in when
    assert "--missing-ok" in t["rollback-old-tenant"]["container"]["args"]
    assert "'{{workflow.parameters.fence}}' != 'skip'" in handler["rollback-old-tenant"]["when"]
    assert "'{{workflow.parameters.fence}}'" not in handler["rollback-dns"]["when"]
    for name in ("rollback-old-tenant", "rollback-dns"):  # a cutover recorded complete is never rolled back
        args = t[name]["container"]["args"]
        assert args[args.index("--unless-recorded") + 1] == "cutover-complete", name
    assert "rollback-old-tenant.Failed" in handler["rollback-dns"]["depends"]
    assert "notify" in handler and "rollback-dns.Skipped" in handler["notify"]["depends"]


def test_onboard_applies_the_bundle_with_the_domain(dist: Path) -> None:
    t = templates(dist, "tenant-onboard")
    args = t["apply-bundle"]["container"]["args"]
    assert args[:1] == ["apply-bundle"]
    assert args[args.index("--configmap") + 1] == "{{inputs.parameters.bundle}}"
    assert args[args.index("--domain") + 1] == "{{inputs.parameters.domain}}"
    assert "--confirm" in args


def test_dr_config_refuses_fencing_the_new_tenant_itself() -> None:
    with pytest.raises(ConfigError, match="fencing would scale down the new tenant"):
        parse_config({"dr": {"source": {"cluster": {"mode": "in-cluster"}}}})
    cfg = parse_config(
        {
            "dr": {
                "source": {
                    "tenant": "old",
                    "cluster": {"mode": "in-cluster"},
                    "workloads": [{"kind": "deployment", "name": "atlas", "namespace": "old-atlas"}],
                }
            }
        }
    )
    assert cfg.dr_source_tenant == "old" and cfg.dr_domain == cfg.dns.record
    with pytest.raises(ConfigError, match="need temporary_domain"):
        parse_config({"dr": {"ingresses": ["atlas/web"]}})


def test_preflight_refuses_a_live_target_unless_told_to_proceed(dist: Path) -> None:
    t = templates(dist, "tenant-recreate")
    params = {p["name"]: p for p in t["__spec__"]["arguments"]["parameters"]}
    assert params["if-target-live"]["value"] == "refuse" and params["if-target-live"]["enum"] == ["refuse", "proceed"]
    plan_args = t["dns-plan"]["container"]["args"]
    assert plan_args[plan_args.index("--if-at-target") + 1] == "{{inputs.parameters.if-target-live}}"
    assert "--if-at-target" not in t["dns-cutover"]["container"]["args"]  # the cutover itself converges on retry
    dns_plan = tasks(t["preflight"])["dns-plan"]
    assert {"name": "if-target-live", "value": "{{inputs.parameters.if-target-live}}"} in dns_plan["arguments"][
        "parameters"
    ]


def test_system_tests_first_check_that_the_cutover_is_in_place(dist: Path) -> None:
    t = templates(dist, "tenant-recreate")
    args = t["system-tests"]["container"]["args"]
    prechecks = [shlex.split(args[i + 1]) for i, a in enumerate(args) if a == "--precheck"]
    assert [p[:2] for p in prechecks] == [["dns", "verify"], ["kube", "verify"]]
    dns, kube = prechecks
    assert dns[dns.index("--target") + 1] == "{{inputs.parameters.target}}" and "--no-probe" in dns
    assert (
        kube[kube.index("--operation") + 1] == "{{workflow.name}}" and kube[kube.index("--record") + 1] == "old-tenant"
    )
    assert "--missing-ok" in kube  # fence=skip: nothing was fenced, nothing to check
    chain = tasks(t["cutover"])
    assert chain["cutover-complete"]["depends"] == "system-tests"
    assert t["cutover-complete"]["container"]["args"][:1] == ["complete"]
    assert parse_step_args("validate", args, {"CLOUDFLARE_API_TOKEN"}, {}) == []
    bad = ["http", "--base-url", "https://x", "--tests-json", "[]", "--precheck", "kube verify --operation x"]
    assert parse_step_args("validate", bad, set(), {}) == [
        "--precheck ['kube', 'verify']: missing required option --tenant",
        "--precheck ['kube', 'verify']: missing required option --store",
    ]


def test_fence_skip_is_a_parameter(dist: Path) -> None:
    t = templates(dist, "tenant-recreate")
    params = {p["name"]: p for p in t["__spec__"]["arguments"]["parameters"]}
    assert params["fence"]["value"] == "auto" and params["fence"]["enum"] == ["auto", "skip"]
    main = tasks(t["main"])
    for phase in ("preflight", "cutover"):
        passed = {a["name"]: a["value"] for a in main[phase]["arguments"]["parameters"]}
        assert passed["fence"] == "{{inputs.parameters.fence}}", phase


def test_elasticsearch_prune_holds_the_elasticsearch_mutex(dist: Path) -> None:
    def template(package: str, name: str, leaf: str) -> dict[str, Any]:
        doc = yaml.safe_load((dist / package / "templates" / f"{name}.yaml").read_text())
        return next(t for t in doc["spec"]["templates"] if t["name"] == leaf)

    mutex = template("atlas-backup", "atlas-backup-all", "prune-elasticsearch")["synchronization"]["mutexes"]
    assert mutex == template("atlas-restore", "atlas-elasticsearch-restore", "restore")["synchronization"]["mutexes"]
    assert mutex == template("atlas-backup", "atlas-elasticsearch-backup", "backup")["synchronization"]["mutexes"]
    assert mutex == [{"name": "tenant-dr-atlas-elasticsearch"}]
