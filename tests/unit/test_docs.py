"""The generated template reference (``tenant-dr docs``): current, complete, and it follows new packages.

``docs/reference/`` must equal what the generator produces from the packages of the embedded default
tenant *now*, so it cannot go stale: a change to a template (or a new package such as tenant-recreate)
fails this test until the pages are regenerated with ``uv run tenant-dr docs`` (or
``TENANT_DR_REGENERATE=1 uv run pytest tests/unit/test_docs.py``); CI (``CI=true``) refuses to regenerate.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from workflows.build import build
from workflows.cli import cli
from workflows.config import DEFAULT, load_config
from workflows.docs import MARKER, anchor, reference_for_config, render_reference, stale_pages, write_reference

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"
MINIMAL = ROOT / "tests" / "golden" / "configs" / "minimal.yaml"


def _regenerate() -> bool:
    if not os.environ.get("TENANT_DR_REGENERATE"):
        return False
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("refusing to regenerate docs/reference in CI (unset TENANT_DR_REGENERATE)")
    return True


def _objects(bundle: Path) -> list[tuple[str, dict[str, Any]]]:
    """(package, object) for every WorkflowTemplate and CronWorkflow file the build wrote."""
    out = []
    for path in sorted(bundle.glob("*/*/*.yaml")):
        obj = yaml.safe_load(path.read_text())
        if obj["kind"] in ("WorkflowTemplate", "CronWorkflow"):
            out.append((path.parent.parent.name, obj))
    return out


def _section(page: str, kind: str, name: str) -> str:
    """The text of one object's ``## <kind> `<name>``` section."""
    head = f"## {kind} `{name}`\n"
    assert head in page, f"no section {head.strip()!r}"
    rest = page.split(head, 1)[1]
    return rest.split("\n## ", 1)[0]


def test_checked_in_reference_is_current() -> None:
    pages = reference_for_config(DEFAULT)
    if _regenerate():
        write_reference(pages, REFERENCE)
    stale = stale_pages(pages, REFERENCE)
    assert not stale, (
        f"docs/reference is stale ({', '.join(stale)}): run `uv run tenant-dr docs` and commit docs/reference/"
    )


@pytest.mark.parametrize("config", ["default", "minimal"])
def test_every_template_parameter_and_step_is_documented(config: str, tmp_path: Path) -> None:
    cfg = DEFAULT if config == "default" else load_config(MINIMAL)
    build(cfg, tmp_path)
    pages = render_reference(tmp_path)
    objects = _objects(tmp_path)
    assert {f"{pkg}.md" for pkg, _ in objects} <= set(pages)
    for pkg, obj in objects:
        name, meta = obj["metadata"]["name"], obj["metadata"]
        section = _section(pages[f"{pkg}.md"], obj["kind"], name)
        assert meta["annotations"]["workflows.argoproj.io/title"] in section
        assert meta["annotations"]["workflows.argoproj.io/description"].split()[0] in section
        spec = obj["spec"]
        if obj["kind"] == "CronWorkflow":
            for schedule in spec["schedules"]:
                assert f"`{schedule}` ({spec['timezone']})" in section
            assert spec["workflowSpec"]["workflowTemplateRef"]["name"] in section
            continue
        assert f"entry template `{spec['entrypoint']}`" in section
        assert f"argo submit -n {cfg.namespace} --from workflowtemplate/{name}" in section
        for param in spec.get("arguments", {}).get("parameters", []):
            row = next(line for line in section.splitlines() if line.startswith(f"| `{param['name']}` |"))
            default = '`""`' if param["value"] == "" else f"`{param['value']}`"
            assert f"| {default} |" in row
            assert " ".join(param["description"].split()).replace("|", "\\|") in row
            for choice in param.get("enum", []):
                assert f"`{choice}`" in row
        for tpl in spec["templates"]:
            assert f"#### `{name}` / `{tpl['name']}`" in section
            if "container" in tpl:
                c = tpl["container"]
                assert shlex.join(c["command"] + c["args"][:1]) in section  # python -m steps.<module> <action>
                for arg in c["args"][1:]:
                    assert shlex.quote(arg) in section
                for env in c.get("env", []):
                    if "valueFrom" in env:
                        ref = env["valueFrom"]["secretKeyRef"]
                        assert f"`{env['name']}` from Secret `{ref['name']}` key `{ref['key']}`" in section


def test_template_refs_link_to_the_referenced_section(tmp_path: Path) -> None:
    build(DEFAULT, tmp_path)
    pages = render_reference(tmp_path)
    backup_all = _section(pages["atlas-backup.md"], "WorkflowTemplate", "atlas-backup-all")
    assert "[`atlas-postgres-backup/backup`](#workflowtemplate-atlas-postgres-backup)" in backup_all
    restore_all = _section(pages["atlas-restore.md"], "WorkflowTemplate", "atlas-restore")
    assert "[`tenant-dr-notify/main`](tenant-dr-common.md#workflowtemplate-tenant-dr-notify)" in restore_all
    assert anchor("WorkflowTemplate `atlas-backup-all`") == "workflowtemplate-atlas-backup-all"


def _extra_package(bundle: Path) -> None:
    """A package the generator has never seen (like tenant-recreate landing): steps, suspend, resource."""
    pkg = bundle / "zz-recreate"
    (pkg / "templates").mkdir(parents=True)
    (pkg / "package.json").write_text(json.dumps({"name": "zz-recreate", "version": "9.9.9", "description": "DR."}))
    wt = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": "zz-recreate", "annotations": {"workflows.argoproj.io/title": "Recreate"}},
        "spec": {
            "entrypoint": "main",
            "arguments": {"parameters": [{"name": "target", "description": "New tenant | required."}]},
            "templates": [
                {
                    "name": "main",
                    "steps": [
                        [{"name": "preflight", "template": "check"}],
                        [{"name": "approve", "template": "gate", "when": "{{workflow.parameters.x}} == y"}],
                        [
                            {"name": "onboard", "templateRef": {"name": "atlas-backup-all", "template": "main"}},
                            {"name": "fence", "template": "scale"},
                        ],
                    ],
                },
                {"name": "gate", "suspend": {}},
                {
                    "name": "check",
                    "container": {
                        "image": "img:1",
                        "command": ["python", "-m", "steps.validate"],
                        "args": ["preflight", "--target", "{{inputs.parameters.target}}", "--strict"],
                    },
                },
                {"name": "scale", "resource": {"action": "patch", "manifest": "kind: Deployment\n"}},
                {"name": "orphan", "container": {"image": "img:1", "command": ["true"]}},
            ],
        },
    }
    (pkg / "templates" / "zz-recreate.yaml").write_text(yaml.safe_dump(wt))


def test_a_new_package_gets_its_page_without_code_changes(tmp_path: Path) -> None:
    build(DEFAULT, tmp_path)
    _extra_package(tmp_path)
    pages = render_reference(tmp_path)
    page = pages["zz-recreate.md"]
    assert "`zz-recreate`" in pages["README.md"]
    section = _section(page, "WorkflowTemplate", "zz-recreate")
    assert "| `target` | (required) | — | New tenant \\| required. |" in section
    assert "-p target=<value>" in section  # a required parameter shows up in the submit line
    order = [section.index(f"/ `{t}`") for t in ("main", "check", "gate", "scale", "orphan")]
    assert order == sorted(order), "templates follow the entry's order, unreferenced ones last"
    assert "Approval gate: waits until resumed" in section
    assert "Kubernetes resource: `patch` a `Deployment`" in section
    assert "python -m steps.validate preflight \\\n  --target '{{inputs.parameters.target}}' \\\n  --strict" in section
    assert "| 3 | `onboard` | [`atlas-backup-all/main`](atlas-backup.md#workflowtemplate-atlas-backup-all) |" in section


def test_cli_writes_checks_and_prunes_only_generated_pages(tmp_path: Path) -> None:
    out = tmp_path / "ref"
    runner = CliRunner()
    result = runner.invoke(cli, ["docs", "--out", str(out), "--check"])
    assert result.exit_code == 1 and "stale" in result.output
    result = runner.invoke(cli, ["docs", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(reference_for_config(DEFAULT))
    assert runner.invoke(cli, ["docs", "--out", str(out), "--check"]).exit_code == 0
    (out / "old-package.md").write_text(MARKER + "\n# gone\n")
    (out / "notes.md").write_text("# written by hand\n")
    assert runner.invoke(cli, ["docs", "--out", str(out), "--check"]).exit_code == 1
    assert runner.invoke(cli, ["docs", "--out", str(out), "--config", str(MINIMAL)]).exit_code == 0
    names = {p.name for p in out.iterdir()}
    assert "old-package.md" not in names and "notes.md" in names
    assert "beta-backup.md" in names and "atlas-backup.md" not in names


def test_cli_documents_a_built_bundle(tmp_path: Path) -> None:
    build(load_config(MINIMAL), tmp_path / "dist")
    result = CliRunner().invoke(cli, ["docs", "--bundle", str(tmp_path / "dist"), "--out", str(tmp_path / "ref")])
    assert result.exit_code == 0, result.output
    assert "steps.postgres backup" in (tmp_path / "ref" / "beta-backup.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "{bad}"], "components.postgres.port"),
        (["--config", "{bad}", "--bundle", "{empty}"], "exclusive"),
        (["--bundle", "{empty}"], "no <package>/package.json"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("components:\n  postgres:\n    port: 0\n")
    (tmp_path / "empty").mkdir()
    argv = [a.format(bad=bad, empty=tmp_path / "empty") for a in args]
    result = CliRunner().invoke(cli, ["docs", *argv, "--out", str(tmp_path / "ref")])
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "ref").exists()
