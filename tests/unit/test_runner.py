"""The local runner's Argo semantics, on small hand-written packages.

The containers run ``python -m steps.probe``, a probe step package written into the test's directory
(``--steps-path``): it exits with scripted codes, sleeps, writes outputs and records each call, like the
``sh -c 'exit 1'`` containers Argo's own tests use. The real steps run in tests/e2e/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import REPO
from workflows.runner import Node, RefusedError, Runner, RunOptions, RunResult
from workflows.runner_spec import load_bundle, reachable

PROBE = r"""
import json, os, sys, time
from pathlib import Path

args = sys.argv[1:]
opts = dict(zip(args[::2], args[1::2]))
name = opts.get("--name", "probe")
state = Path(os.environ["PROBE_STATE"])
state.mkdir(parents=True, exist_ok=True)
counter = state / f"{name}.count"
n = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(n + 1))
start = time.time()
time.sleep(float(opts.get("--sleep", "0")))
codes = [int(c) for c in opts.get("--codes", "0").split(",")]
code = codes[min(n, len(codes) - 1)]
out = Path(os.environ.get("STEP_OUTPUT_DIR", "/nonexistent"))
for pair in filter(None, opts.get("--out", "").split(";")):
    key, value = pair.split("=", 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / key).write_text(value)
env = {k: os.environ.get(k) for k in opts.get("--env", "").split(",") if k}
record = {"name": name, "attempt": n, "start": start, "end": time.time(), "args": args, "env": env,
          "output_dir": str(out), "tmpdir": os.environ.get("TMPDIR")}
with open(state / "calls.jsonl", "a") as fh:
    fh.write(json.dumps(record) + "\n")
if code:
    error = f"probe {name} failed with {code}"
    sys.stderr.write(json.dumps({"level": "error", "msg": "finish", "error": error}) + "\n")
    print(json.dumps({"ok": False, "error": error}))
else:
    print(json.dumps({"ok": True}))
sys.exit(code)
"""

RETRY = {
    "limit": "3",
    "retryPolicy": "Always",
    "expression": "lastRetry.exitCode not in ['2', '3']",
    "backoff": {"duration": "30s", "factor": "2", "maxDuration": "15m"},
}


def pod(name: str, *args: str, outputs: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    """A container template running the probe, laid out like the compiled packages."""
    tmpl: dict[str, Any] = {
        "name": name,
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        "container": {
            "image": "ghcr.io/x/base:1",
            "command": ["python", "-m", "steps.probe"],
            "args": list(args),
            "env": [{"name": "STEP_OUTPUT_DIR", "value": "/tmp/outputs"}],
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            "securityContext": {"readOnlyRootFilesystem": True},
        },
    }
    if outputs:
        tmpl["outputs"] = {"parameters": [{"name": o, "valueFrom": {"path": f"/tmp/outputs/{o}"}} for o in outputs]}
    tmpl.update(extra)
    return tmpl


def wt(name: str, templates: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    """A WorkflowTemplate document."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": name},
        "spec": {"entrypoint": "main", "templates": templates, **spec},
    }


class Env:
    """A bundle directory, a probe steps package and a state dir for one test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bundle = root / "dist"
        (self.bundle).mkdir()
        (self.bundle / "kustomization.yaml").write_text("resources: []\n")
        self.steps = root / "stepsroot"
        (self.steps / "steps").mkdir(parents=True)
        (self.steps / "steps" / "__init__.py").write_text("")
        (self.steps / "steps" / "probe.py").write_text(PROBE)
        self.state = root / "probe-state"
        self.state_dir = root / "runner-state"

    def add(self, doc: dict[str, Any], package: str = "pkg") -> Path:
        """Write a document into ``dist/<package>/templates/``."""
        directory = self.bundle / package / ("templates" if doc["kind"] == "WorkflowTemplate" else "configmaps")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{doc['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def options(self, **kw: Any) -> RunOptions:
        """Run options pointing at the probe package, with a tiny backoff."""
        env = {"PROBE_STATE": str(self.state), **kw.pop("env", {})}
        return RunOptions(
            steps_path=self.steps, state_dir=self.state_dir, backoff_scale=kw.pop("backoff_scale", 0.001), env=env, **kw
        )

    def run(self, path: Path, **kw: Any) -> RunResult:
        """Run ``path`` in-process."""
        return Runner(path, self.options(**kw)).run()

    def calls(self) -> list[dict[str, Any]]:
        """Every probe invocation, in order."""
        path = self.state / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def cli(self, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        """``tenant-dr run`` as a subprocess (plain output)."""
        env_file = self.root / "run.env"
        env_file.write_text(f"PROBE_STATE={self.state}\n")
        argv = [sys.executable, "-m", "workflows.cli", "run", str(path), "--steps-path", str(self.steps)]
        argv += ["--state-dir", str(self.state_dir), "--env", str(env_file), "--backoff-scale", "0.001", *extra]
        code = "import sys; from workflows.cli import main; sys.argv[0] = 'tenant-dr'; main()"
        return subprocess.run(
            [sys.executable, "-c", code, *argv[3:]], capture_output=True, text=True, cwd=REPO, timeout=120
        )


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def by_display(result: RunResult) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    for root in [result.root, *([result.exit_node] if result.exit_node else [])]:
        for node in root.walk():
            nodes.setdefault(node.display, node)
    return nodes


# ---- DAGs, parameters, templateRef --------------------------------------------------------------


def test_dag_parameters_templateref_and_parallelism(env: Env) -> None:
    env.add(
        wt(
            "shared",
            [
                pod(
                    "echo",
                    "--name",
                    "{{inputs.parameters.who}}",
                    "--sleep",
                    "0.6",
                    "--out",
                    "got={{inputs.parameters.id}}",
                    outputs=("got",),
                    inputs={"parameters": [{"name": "who"}, {"name": "id"}]},
                ),
            ],
        ),
        package="common",
    )
    main = wt(
        "top",
        [
            pod("make-id", "--name", "make-id", "--out", "id=run-42", outputs=("id",)),
            {
                "name": "main",
                "inputs": {"parameters": [{"name": "greeting"}]},
                "dag": {
                    "tasks": [
                        {"name": "make-id", "template": "make-id"},
                        *(
                            {
                                "name": who,
                                "depends": "make-id",
                                "templateRef": {"name": "shared", "template": "echo"},
                                "arguments": {
                                    "parameters": [
                                        {"name": "who", "value": f"{who}-{{{{inputs.parameters.greeting}}}}"},
                                        {"name": "id", "value": "{{tasks.make-id.outputs.parameters.id}}"},
                                    ]
                                },
                            }
                            for who in ("left", "right")
                        ),
                        {
                            "name": "final",
                            "dependencies": ["left", "right"],
                            "template": "make-id",
                            "when": "'{{tasks.left.outputs.parameters.got}}' == 'run-42'",
                        },
                    ]
                },
            },
        ],
        arguments={"parameters": [{"name": "greeting", "value": "hi"}]},
    )
    path = env.add(main)
    started = time.monotonic()
    result = env.run(path, parameters={"greeting": "yo"})
    elapsed = time.monotonic() - started
    assert result.phase == "Succeeded", result.root.message
    nodes = by_display(result)
    assert nodes["left"].outputs == {"got": "run-42"} and nodes["final"].phase == "Succeeded"
    calls = {c["name"]: c for c in env.calls()}
    assert set(calls) == {"make-id", "left-yo", "right-yo"}
    left, right = calls["left-yo"], calls["right-yo"]
    assert left["start"] < right["end"] and right["start"] < left["end"], "the two branches ran in parallel"
    assert elapsed < 1.15 + 1.0  # 0.6s each in parallel, not 1.2s in series, plus process start-up
    # each node had its own output dir (the template's /tmp/outputs mapped under the run directory), now removed
    assert left["output_dir"] != right["output_dir"] and not Path(left["output_dir"]).exists()
    report = json.loads((result.run_dir / "run.json").read_text())
    assert report["phase"] == "Succeeded" and report["parameters"] == {"greeting": "yo"}


def test_failed_branch_omits_dependents_and_fails_the_dag(env: Env) -> None:
    path = env.add(
        wt(
            "branches",
            [
                pod("ok", "--name", "ok"),
                pod("bad", "--name", "bad", "--codes", "3"),
                {
                    "name": "main",
                    "dag": {
                        "tasks": [
                            {"name": "a", "template": "bad"},
                            {"name": "b", "depends": "a", "template": "ok"},
                            {"name": "cleanup", "depends": "a.Failed", "template": "ok"},
                            {"name": "skipped", "template": "ok", "when": "'x' == 'y'"},
                        ]
                    },
                },
            ],
        )
    )
    result = env.run(path)
    nodes = by_display(result)
    assert nodes["a"].phase == "Failed" and nodes["a"].exit_code == 3
    assert "probe bad failed with 3" in nodes["a"].message
    assert nodes["b"].phase == "Omitted" and nodes["cleanup"].phase == "Succeeded"
    assert nodes["skipped"].phase == "Skipped"
    assert result.phase == "Failed" and result.root.message == "child 'a' failed"
    assert result.exit_code == 1


def test_handled_failure_does_not_fail_the_dag(env: Env) -> None:
    path = env.add(
        wt(
            "handled",
            [
                pod("ok", "--name", "ok"),
                pod("bad", "--name", "bad", "--codes", "1"),
                {
                    "name": "main",
                    "dag": {
                        "tasks": [
                            {"name": "a", "template": "bad"},
                            {"name": "recover", "depends": "a.Failed || a.Errored", "template": "ok"},
                        ]
                    },
                },
            ],
        )
    )
    assert env.run(path).phase == "Succeeded"


# ---- retries and onExit -------------------------------------------------------------------------


def notify_wt(env: Env, entry: dict[str, Any], name: str) -> Path:
    exit_handler = pod(
        "notify",
        "--name",
        "notify",
        "--status",
        "{{workflow.status}}",
        "--failures",
        "{{workflow.failures}}",
        "--duration",
        "{{workflow.duration}}",
    )
    return env.add(wt(name, [entry, exit_handler], onExit="notify"))


def test_retry_until_success_with_backoff(env: Env) -> None:
    path = notify_wt(env, pod("main", "--name", "flaky", "--codes", "1,1,0", retryStrategy=RETRY), "retry-ok")
    result = env.run(path, backoff_scale=0.005)
    assert result.phase == "Succeeded"
    assert [c["attempt"] for c in env.calls() if c["name"] == "flaky"] == [0, 1, 2]
    assert [c.phase for c in result.root.children] == ["Failed", "Failed", "Succeeded"]
    flaky = [c for c in env.calls() if c["name"] == "flaky"]
    # backoff 30s, 60s scaled by 0.005 -> 0.15s, 0.3s between the attempts
    assert flaky[1]["start"] - flaky[0]["end"] >= 0.14 and flaky[2]["start"] - flaky[1]["end"] >= 0.29
    notify = next(c for c in env.calls() if c["name"] == "notify")
    assert notify["args"][3] == "Succeeded"
    # the failed attempts are in workflow.failures even though the workflow succeeded (as in Argo)
    assert [f["phase"] for f in json.loads(notify["args"][5])] == ["Failed", "Failed"]


def test_exit_3_is_not_retried_and_on_exit_reports_it(env: Env) -> None:
    path = notify_wt(env, pod("main", "--name", "broken", "--codes", "3", retryStrategy=RETRY), "retry-no")
    result = env.run(path)
    assert result.phase == "Failed" and result.exit_code == 1
    assert len([c for c in env.calls() if c["name"] == "broken"]) == 1
    assert "retryStrategy.expression" in result.root.message
    notify = next(c for c in env.calls() if c["name"] == "notify")
    assert notify["args"][3] == "Failed"
    failures = json.loads(notify["args"][5])
    assert any("probe broken failed with 3" in f["message"] for f in failures)
    assert float(notify["args"][7]) > 0


def test_retry_limit_and_policy(env: Env) -> None:
    limited = {"limit": 2, "backoff": {"duration": "1s"}}  # default policy OnFailure
    path = env.add(wt("limited", [pod("main", "--name", "always-1", "--codes", "1", retryStrategy=limited)]))
    result = env.run(path)
    assert result.phase == "Failed" and len(result.root.children) == 3
    assert "no more retries left (limit 2)" in result.root.message
    on_error = {"limit": 5, "retryPolicy": "OnError"}
    path = env.add(wt("onerror", [pod("main", "--name", "fail-once", "--codes", "1", retryStrategy=on_error)]))
    result = env.run(path)
    assert result.phase == "Failed" and len(result.root.children) == 1
    assert "OnError does not retry failures" in result.root.message


def test_on_exit_failure_fails_a_succeeded_workflow(env: Env) -> None:
    path = env.add(
        wt("exitfail", [pod("main", "--name", "fine"), pod("bye", "--name", "bye", "--codes", "1")], onExit="bye")
    )
    result = env.run(path)
    assert result.root.phase == "Succeeded" and result.phase == "Failed"
    assert result.message.startswith("onExit handler failed")


# ---- steps, suspend, deadlines ------------------------------------------------------------------


def test_steps_groups_when_and_outputs(env: Env) -> None:
    path = env.add(
        wt(
            "stepped",
            [
                pod("first", "--name", "first", "--out", "go=yes", outputs=("go",)),
                pod("second", "--name", "second"),
                pod("third", "--name", "third"),
                {
                    "name": "main",
                    "steps": [
                        [{"name": "one", "template": "first"}],
                        [
                            {"name": "two", "template": "second", "when": "{{steps.one.outputs.parameters.go}} == yes"},
                            {"name": "three", "template": "third", "when": "{{steps.one.outputs.parameters.go}} == no"},
                        ],
                    ],
                },
            ],
        )
    )
    result = env.run(path)
    assert result.phase == "Succeeded"
    assert [c["name"] for c in env.calls()] == ["first", "second"]
    assert by_display(result)["three"].phase == "Skipped"


def approval_wt(env: Env) -> Path:
    return env.add(
        wt(
            "gated",
            [
                {"name": "approve", "suspend": {}},
                pod("act", "--name", "act"),
                {
                    "name": "main",
                    "dag": {
                        "tasks": [
                            {"name": "approve", "template": "approve"},
                            {"name": "act", "depends": "approve", "template": "act"},
                        ]
                    },
                },
            ],
        )
    )


def test_suspend_stops_without_approve_and_resumes_with_it(env: Env) -> None:
    path = approval_wt(env)
    result = env.run(path)
    assert result.phase == "Failed"
    assert "--approve" in by_display(result)["approve"].message
    assert env.calls() == []
    result = env.run(path, approve=True)
    assert result.phase == "Succeeded" and [c["name"] for c in env.calls()] == ["act"]


def test_active_deadline_kills_the_step(env: Env) -> None:
    path = env.add(wt("slow", [pod("main", "--name", "sleepy", "--sleep", "30", activeDeadlineSeconds=1)]))
    started = time.monotonic()
    result = env.run(path)
    assert time.monotonic() - started < 10
    assert result.phase == "Failed" and "deadline" in result.root.message
    assert env.calls() == []  # killed before it could record anything


# ---- env, secrets, config maps ------------------------------------------------------------------


def test_env_secrets_configmaps_and_volumes(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "fast"}})
    tmpl = pod("main", "--name", "envy", "--env", "FROM_FILE,FROM_ENV,MODE,EXTRA,STEP_OUTPUT_DIR,PINNED,KCFG")
    tmpl["container"]["env"] += [
        {"name": "FROM_FILE", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        {"name": "FROM_ENV", "valueFrom": {"secretKeyRef": {"name": "other-secret", "key": "token"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "PINNED", "value": "template-wins"},
        {"name": "KCFG", "value": "/etc/kube/config"},
    ]
    tmpl["volumes"].append({"name": "kube", "secret": {"secretName": "kubeconfig"}})
    tmpl["container"]["volumeMounts"].append({"name": "kube", "mountPath": "/etc/kube"})
    path = env.add(wt("envs", [tmpl]))
    monkeypatch.setenv("TENANT_DR_SECRET_OTHER_SECRET__TOKEN", "tok-123")
    secrets = {"db": {"password": "pw-1"}, "kubeconfig": {"config": "apiVersion: v1"}}
    result = env.run(path, secrets=secrets, env={"EXTRA": "x", "PINNED": "env-file"})
    assert result.phase == "Succeeded", result.root.message
    seen = env.calls()[0]["env"]
    assert seen["FROM_FILE"] == "pw-1" and seen["FROM_ENV"] == "tok-123" and seen["MODE"] == "fast"
    assert seen["EXTRA"] == "x" and seen["PINNED"] == "template-wins"
    assert seen["STEP_OUTPUT_DIR"].startswith(str(env.state_dir)) and seen["STEP_OUTPUT_DIR"].endswith("/outputs")
    assert seen["KCFG"].endswith("/config") and seen["KCFG"] != "/etc/kube/config"
    # no secret value ends up in the run's report or logs
    for file in result.run_dir.rglob("*"):
        if file.is_file():
            assert "pw-1" not in file.read_text() and "tok-123" not in file.read_text()


def test_missing_secret_is_an_error_naming_it(env: Env) -> None:
    tmpl = pod("main", "--name", "nope")
    tmpl["container"]["env"].append({"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}})
    result = env.run(env.add(wt("nosecret", [tmpl])))
    assert result.phase == "Error" and result.exit_code == 3
    assert "Secret db/pw not found" in result.root.message and "TENANT_DR_SECRET_DB__PW" in result.root.message


# ---- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda t: t.update(script={"source": "echo"}), "script templates are not supported"),
        (lambda t: t["container"].update(command=["sh", "-c", "true"]), "only runs tenant-dr steps"),
        (lambda t: t.update(outputs={"parameters": [{"name": "x", "valueFrom": {"path": "/out/x"}}]}), "emptyDir"),
        (lambda t: t["container"].update(envFrom=[{"secretRef": {"name": "s"}}]), "envFrom are not supported"),
        (lambda t: t.update(memoize={"key": "k"}), "memoization are not supported"),
        (lambda t: t["container"].update(lifecycle={}), "unknown or unsupported field"),
        (lambda t: t.update(outputs={"artifacts": [{"name": "a"}]}), "artifacts are not supported"),
    ],
)
def test_unsupported_constructs_are_refused(env: Env, mutate: Any, fragment: str) -> None:
    tmpl = pod("main", "--name", "x")
    mutate(tmpl)
    path = env.add(wt("refused", [tmpl]))
    with pytest.raises(RefusedError, match=fragment.replace("(", r"\(")):
        Runner(path, env.options())


def test_unresolved_template_ref_and_loops_are_refused(env: Env) -> None:
    dag = {"name": "main", "dag": {"tasks": [{"name": "t", "templateRef": {"name": "ghost", "template": "main"}}]}}
    with pytest.raises(RefusedError, match="templateRef to WorkflowTemplate 'ghost'"):
        Runner(env.add(wt("dangling", [dag])), env.options())
    loop = {"name": "main", "dag": {"tasks": [{"name": "t", "template": "p", "withItems": [1, 2]}]}}
    with pytest.raises(RefusedError, match="withItems loops are not supported"):
        Runner(env.add(wt("loop", [loop, pod("p")])), env.options())


def test_parameters_are_checked(env: Env) -> None:
    path = env.add(
        wt(
            "params",
            [pod("main")],
            arguments={"parameters": [{"name": "confirm", "value": "false", "enum": ["false", "true"]}]},
        )
    )
    with pytest.raises(RefusedError, match="has no parameter 'nope'"):
        Runner(path, env.options(parameters={"nope": "1"}))
    with pytest.raises(RefusedError, match="not one of false, true"):
        Runner(path, env.options(parameters={"confirm": "yes"}))


def test_every_compiled_package_is_runnable(tmp_path: Path) -> None:
    """Everything `tenant-dr build` writes (default config) is within what the runner implements."""
    out = tmp_path / "dist"
    from workflows.build import build
    from workflows.config import DEFAULT

    build(DEFAULT, out)
    bundle = load_bundle(out)
    assert len(bundle.templates) >= 10
    for name in bundle.templates:
        assert reachable(bundle, name)


# ---- the CLI and cross-process mutexes ----------------------------------------------------------


def test_cli_exit_codes_and_plain_output(env: Env) -> None:
    ok = env.add(wt("cli-ok", [pod("main", "--name", "c")]))
    proc = env.cli(ok)
    assert proc.returncode == 0, proc.stderr
    assert "Succeeded" in proc.stdout and "workflow cli-ok-" in proc.stdout
    bad = env.add(wt("cli-bad", [pod("main", "--name", "b", "--codes", "3")]))
    proc = env.cli(bad)
    assert proc.returncode == 1 and "probe b failed with 3" in proc.stdout
    refused = env.add(wt("cli-refused", [pod("main")]))
    proc = env.cli(refused, "-p", "x=1")
    assert proc.returncode == 2 and "refused:" in proc.stderr


def test_mutex_serialises_concurrent_runs(env: Env) -> None:
    tmpl = pod("main", "--name", "locked", "--sleep", "1")
    tmpl["synchronization"] = {"mutexes": [{"name": "tenant-dr-test-postgres"}]}
    path = env.add(wt("mutexed", [tmpl]))
    procs = []  # two real processes sharing one state dir
    for _ in range(2):
        env_file = env.root / "run.env"
        env_file.write_text(f"PROBE_STATE={env.state}\n")
        code = "import sys; from workflows.cli import main; sys.argv[0] = 'tenant-dr'; main()"
        argv = [
            sys.executable,
            "-c",
            code,
            "run",
            str(path),
            "--steps-path",
            str(env.steps),
            "--state-dir",
            str(env.state_dir),
            "--env",
            str(env_file),
        ]
        procs.append(
            subprocess.Popen(
                argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ}
            )
        )
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    a, b = sorted(env.calls(), key=lambda c: c["start"])
    assert b["start"] >= a["end"], "the second run waited for the mutex"
    assert any("waiting for mutex tenant-dr-test-postgres" in out for out in outputs)


def test_metrics_are_computed(env: Env) -> None:
    metrics = {
        "prometheus": [
            {
                "name": "ok",
                "help": "h",
                "when": "{{workflow.status}} == Succeeded",
                "gauge": {"value": "{{workflow.creationTimestamp.s}}"},
            },
            {"name": "bad", "help": "h", "when": "{{workflow.status}} != Succeeded", "counter": {"value": "1"}},
        ]
    }
    result = env.run(env.add(wt("metrics", [pod("main", "--name", "m")], metrics=metrics)))
    assert [m["name"] for m in result.metrics] == ["ok"]
    assert abs(int(result.metrics[0]["value"]) - time.time()) < 60
