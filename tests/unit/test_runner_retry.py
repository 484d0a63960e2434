"""``tenant-dr run --retry``: an earlier failed run continued like ``argo retry`` (probe steps, see test_runner)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_runner import Env, by_display, pod, wt
from workflows.runner import RefusedError, Runner


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def counts(env: Env) -> dict[str, int]:
    """How often each probe ran."""
    out: dict[str, int] = {}
    for call in env.calls():
        out[call["name"]] = out.get(call["name"], 0) + 1
    return out


def flaky_workflow(env: Env) -> Path:
    """first -> inner (fence -> tests, which fails once with exit 3) -> after; onExit bye."""
    templates: list[dict[str, Any]] = [
        pod("first", "--name", "first", "--out", "id={{inputs.parameters.tag}}-1", outputs=("id",),
            inputs={"parameters": [{"name": "tag"}]}),
        pod("fence", "--name", "fence", "--out", "replicas=2", outputs=("replicas",)),
        pod("tests", "--name", "tests", "--codes", "3,0", inputs={"parameters": [{"name": "id"}]}),
        pod("after", "--name", "after"),
        pod("bye", "--name", "bye", "--status", "{{workflow.status}}"),
        {
            "name": "inner",
            "inputs": {"parameters": [{"name": "id"}]},
            "dag": {
                "tasks": [
                    {"name": "fence", "template": "fence"},
                    {"name": "tests", "template": "tests", "depends": "fence",
                     "arguments": {"parameters": [{"name": "id", "value": "{{inputs.parameters.id}}"}]}},
                ]
            },
        },
        {
            "name": "main",
            "inputs": {"parameters": [{"name": "tag"}]},
            "dag": {
                "tasks": [
                    {"name": "first", "template": "first",
                     "arguments": {"parameters": [{"name": "tag", "value": "{{inputs.parameters.tag}}"}]}},
                    {"name": "inner", "template": "inner", "depends": "first",
                     "arguments": {"parameters": [{"name": "id", "value": "{{tasks.first.outputs.parameters.id}}"}]}},
                    {"name": "after", "template": "after", "depends": "inner"},
                ]
            },
        },
    ]  # fmt: skip
    return env.add(
        wt("flaky", templates, onExit="bye", arguments={"parameters": [{"name": "tag", "value": "default"}]})
    )


def test_retry_keeps_succeeded_nodes_and_reruns_failed_ones_and_on_exit(env: Env) -> None:
    path = flaky_workflow(env)
    first = env.run(path, name="flaky-1", parameters={"tag": "given"})
    assert first.phase == "Failed", first.message
    assert by_display(first)["tests"].exit_code == 3 and by_display(first)["after"].phase == "Omitted"
    assert counts(env) == {"first": 1, "fence": 1, "tests": 1, "bye": 1}
    earlier = json.loads((first.run_dir / "run.json").read_text())
    time.sleep(1.1)  # a later second: a fresh run would get another creationTimestamp

    retried = env.run(path, name="flaky-1", retry=True)
    assert retried.phase == "Succeeded", retried.message
    # Succeeded nodes were kept (not run again), the failed one and what it blocked ran, and onExit ran again
    assert counts(env) == {"first": 1, "fence": 1, "tests": 2, "after": 1, "bye": 2}
    nodes = by_display(retried)
    assert nodes["first"].outputs == {"id": "given-1"} and nodes["fence"].outputs == {"replicas": "2"}
    assert [c["args"] for c in env.calls() if c["name"] == "bye"][-1][-1] == "Succeeded"
    report = json.loads((retried.run_dir / "run.json").read_text())
    assert report["parameters"] == {"tag": "given"}, "the earlier run's parameters are kept"
    assert report["creationTimestamp"] == earlier["creationTimestamp"], "the workflow keeps its creation time"
    kept_first = next(n for n in report["nodes"] if n["displayName"] == "first")
    assert kept_first["phase"] == "Succeeded" and kept_first["outputs"] == {"id": "given-1"}


def test_retry_is_refused_without_a_failed_run_of_that_name(env: Env) -> None:
    path = flaky_workflow(env)
    with pytest.raises(RefusedError, match="needs --name"):
        Runner(path, env.options(retry=True))
    with pytest.raises(RefusedError, match="cannot read the earlier run"):
        Runner(path, env.options(retry=True, name="never-ran"))
    assert env.run(path, name="flaky-2").phase == "Failed"
    assert env.run(path, name="flaky-2", retry=True).phase == "Succeeded"
    with pytest.raises(RefusedError, match="Succeeded; there is nothing to retry"):
        Runner(path, env.options(retry=True, name="flaky-2"))


def test_retry_after_only_the_exit_handler_failed_reruns_just_the_exit_handler(env: Env) -> None:
    path = env.add(
        wt("exitonly", [pod("main", "--name", "main"), pod("bye", "--name", "bye", "--codes", "1,0")], onExit="bye")
    )
    first = env.run(path, name="exitonly-1")
    assert first.phase == "Failed" and first.root.phase == "Succeeded", first.message
    retried = env.run(path, name="exitonly-1", retry=True)
    assert retried.phase == "Succeeded", retried.message
    assert counts(env) == {"main": 1, "bye": 2}  # the entrypoint was kept, the exit handler ran again
    assert retried.root.phase == "Succeeded" and retried.exit_node is not None
