"""Step runtime: exit codes, one-line results, JSON logs, redaction, outputs, env fallbacks."""

from __future__ import annotations

import json
from pathlib import Path

from steps.runtime import log
from tests.harness import run_step


def test_unknown_action_and_flag_are_usage_errors(tmp_path: Path) -> None:
    for args in (["nope"], ["latest", "--tenant", "t", "--store", f"file://{tmp_path}", "--bogus"]):
        res = run_step("catalog", args)
        assert res.code == 2, res.stderr
        assert res.result["ok"] is False and "hint" in res.error
        assert "\n" not in res.error


def test_missing_required_flag_names_it() -> None:
    res = run_step("catalog", ["latest", "--store", "file:///tmp/x"], env={"TENANT_DR_TENANT": ""})
    assert res.code == 2
    assert "--tenant" in res.error


def test_env_fallbacks_are_used(tmp_path: Path) -> None:
    res = run_step("catalog", ["list"], env={"TENANT_DR_TENANT": "envtenant", "TENANT_DR_STORE": f"file://{tmp_path}"})
    assert res.code == 0, res.stderr
    assert res.result["tenant"] == "envtenant" and res.result["runs"] == []


def test_logs_are_json_lines_with_start_and_finish(tmp_path: Path) -> None:
    res = run_step("catalog", ["list", "--tenant", "t", "--store", f"file://{tmp_path}"])
    assert res.code == 0
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines and all(json.loads(ln) for ln in lines)  # every stderr line is one JSON object
    msgs = [entry["msg"] for entry in res.logs]
    assert msgs[0] == "start" and msgs[-1] == "finish"
    for entry in res.logs:
        assert {"ts", "level", "msg"} <= entry.keys()
    assert res.logs[0]["step"] == "catalog.list" and res.logs[0]["tenant"] == "t"
    assert "duration_s" in res.logs[-1]
    # the final result is one JSON line on stdout
    assert len(res.stdout.strip().splitlines()) == 1
    assert res.result["ok"] is True and res.result["exit_code"] == 0


def test_outputs_are_written_to_step_output_dir(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run_step(
        "catalog", ["list", "--tenant", "t", "--store", f"file://{tmp_path}/s"], env={"STEP_OUTPUT_DIR": str(out)}
    )
    assert res.code == 0
    assert json.loads((out / "runs").read_text()) == []


def test_redaction_masks_registered_secrets_everywhere() -> None:
    log.clear_secrets()
    log.register_secret("hunter2-very-secret")
    try:
        assert log.redact("password=hunter2-very-secret;") == "password=***;"
        assert log.redact({"a": ["x hunter2-very-secret y"]}) == {"a": ["x *** y"]}
        assert log.redact("pw=hunter2-very-secret%") == "pw=***%"
        assert log.redact("url-encoded hunter2-very-secret") == "url-encoded ***"
    finally:
        log.clear_secrets()


def test_secret_from_file_is_never_logged(tmp_path: Path) -> None:
    """A secret read through read_secret is masked even when an error message would contain it."""
    secret = "S3cr3t-Value-From-File"
    f = tmp_path / "pw"
    f.write_text(secret + "\n")
    code = (
        "from steps.runtime import read_secret, UsageError, component, action, run\n"
        "import click\n"
        "cli = component('demo', 'demo')\n"
        "@action(cli)\n@click.option('--password-file')\n"
        "def go(password_file):\n"
        "    pw = read_secret(what='demo password', env='DEMO_PW', file=password_file)\n"
        "    raise UsageError(f'login failed for password {pw}')\n"
        "run(cli, ['go', '--password-file', " + repr(str(f)) + "])\n"
    )
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert secret not in proc.stdout + proc.stderr
    assert "***" in proc.stdout
