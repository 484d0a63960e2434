"""``python -m steps.catalog timings``: the phase timings and RTO tenant-recreate records as evidence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.harness import run_step

PHASES = [
    "--phase", "preflight=2026-11-21T03:00:05Z,2026-11-21T03:01:05Z",
    "--phase", "approval=2026-11-21T03:01:05Z,2026-11-21T03:11:05Z",
    "--phase", "restore=2026-11-21T03:11:05Z,2026-11-21T03:41:05Z",
]  # fmt: skip


def timings(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], Path]:
    out = tmp_path / "out"
    store = f"file://{tmp_path / 'store'}"
    run = run_step(
        "catalog",
        ["timings", "--tenant", "old", "--store", store, "--operation", "tenant-recreate-x1", *args],
        env={"STEP_OUTPUT_DIR": str(out)},
    )
    return run.code, run.result, out


def test_timings_are_recorded_once_with_the_rto(tmp_path: Path) -> None:
    code, result, out = timings(tmp_path, "--created", "2026-11-21T03:00:00Z", *PHASES, "--exclude", "approval")
    assert code == 0, result
    assert [p["seconds"] for p in result["phases"]] == [60, 600, 1800]
    assert result["total_seconds"] == 2465
    assert result["rto_seconds"] == 2465 - 600
    record = json.loads((tmp_path / "store" / "old" / "state" / "tenant-recreate-x1" / "timings.json").read_text())
    assert record["rto_seconds"] == 1865
    assert (out / "rto-seconds").read_text() == "1865.0"
    assert json.loads((out / "timings").read_text())["phases"][2]["phase"] == "restore"
    # a retried run keeps the first record (write-once state)
    code, again, _ = timings(tmp_path, "--created", "2026-11-21T03:00:00Z", *PHASES[:2])
    assert code == 0 and again["rto_seconds"] == 1865


def test_bad_times_are_usage_errors(tmp_path: Path) -> None:
    for args, needle in (
        (["--created", "yesterday", *PHASES], "not an RFC 3339 time"),
        (["--created", "2026-11-21T03:00:00Z", "--phase", "x=2026-11-21T03:00:09Z"], "not NAME=START,END"),
        (["--created", "2026-11-21T03:00:00Z", "--phase", "x=2026-11-21T03:09:00Z,2026-11-21T03:01:00Z"], "order"),
        (["--created", "2026-11-21T03:00:00Z", *PHASES, "--exclude", "nope"], "no such phase"),
    ):
        code, result, _ = timings(tmp_path, *args)
        assert code == 2 and needle in str(result["error"]), result
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").rglob("*.json"))
