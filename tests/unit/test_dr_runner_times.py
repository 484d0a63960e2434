"""The runner resolves ``tasks.X.startedAt``/``finishedAt`` (Argo's RFC 3339 node times), which tenant-recreate's
``timings`` step reads."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from tests.unit.test_runner import Env, pod, wt


def test_task_start_and_finish_times_resolve_in_rfc3339(tmp_path: Path) -> None:
    env = Env(tmp_path)
    doc = wt(
        "times",
        [
            {
                "name": "main",
                "dag": {
                    "tasks": [
                        {"name": "a", "template": "slow"},
                        {
                            "name": "b",
                            "template": "echo",
                            "depends": "a",
                            "arguments": {
                                "parameters": [
                                    {"name": "times", "value": "{{tasks.a.startedAt}},{{tasks.a.finishedAt}}"}
                                ]
                            },
                        },
                    ]
                },
            },
            pod("slow", "--name", "slow", "--sleep", "1.2"),
            pod(
                "echo",
                "--name",
                "echo",
                "--times",
                "{{inputs.parameters.times}}",
                inputs={"parameters": [{"name": "times"}]},
            ),
        ],
    )
    result = env.run(env.add(doc))
    assert result.phase == "Succeeded", result.message
    call = next(c for c in env.calls() if c["name"] == "echo")
    started, finished = (datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ") for t in call["args"][3].split(","))
    slow = next(c for c in env.calls() if c["name"] == "slow")
    assert 1 <= (finished - started).total_seconds() <= 3
    assert abs(started.timestamp() - slow["start"]) < 2
    report = json.loads((result.run_dir / "run.json").read_text())
    node_a = next(n for n in report["nodes"] if n["displayName"] == "a")
    assert call["args"][3] == f"{node_a['startedAt']},{node_a['finishedAt']}"
