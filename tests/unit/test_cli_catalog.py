"""``tenant-dr catalog ACTION``: the catalog step with tenant and store taken from the config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from steps.storage import open_store
from steps.storage.catalog import Catalog, new_run_id
from steps.storage.manifest import ComponentManifest, utcnow


def tenant_dr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from workflows.cli import main; main()", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_catalog_uses_the_configs_tenant_and_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    config = tmp_path / "t.yaml"
    config.write_text(f"name: demo\nstore: {{url: 'file://{store}'}}\n")
    catalog = Catalog(open_store(f"file://{store}"), "demo")
    run_id = new_run_id()
    record = catalog.put_small(run_id, "postgres", catalog.new_attempt(), "x", b"1")
    now = utcnow()
    catalog.write_manifest(
        ComponentManifest(
            tenant="demo", run_id=run_id, component="postgres", started_at=now, finished_at=now, objects=[record]
        )
    )
    catalog.seal(run_id, ["postgres"])

    latest = tenant_dr("catalog", "latest", "--config", str(config))
    assert latest.returncode == 0, latest.stderr
    assert json.loads(latest.stdout.splitlines()[-1])["run_id"] == run_id
    verify = tenant_dr("catalog", "--config", str(config), "verify", "--run-id", run_id)
    assert verify.returncode == 0, verify.stderr
    missing = tenant_dr("catalog", "verify", "--run-id", "20200101T000000Z-000000", "--config", str(config))
    assert missing.returncode == 3
    assert run_id in json.loads(missing.stdout.splitlines()[-1])["error"]


def test_catalog_with_a_bad_config_is_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("store: {urll: x}\n")
    out = tenant_dr("catalog", "list", "--config", str(bad))
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: ") and "store.urll" in out.stderr
