"""Local executor of compiled WorkflowTemplates, with Argo's semantics for what the packages use.

``tenant-dr run DIR/<package>/templates/<file>.yaml`` runs the template on this machine: container
templates run their step (``python -m steps.x``) with this Python, DAG/steps templates run their
children in threads, ``templateRef`` resolves against every WorkflowTemplate under DIR, and
``when``/``depends``/retry expressions, suspend, onExit, mutexes and deadlines behave as in Argo.
``--retry`` continues an earlier failed run like ``argo retry``. Where it differs from Argo is written
down in docs/runner.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import string
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from workflows.runner_expr import ExprError, evaluate_bool, evaluate_depends
from workflows.runner_spec import Bundle, RefusedError, Target, load_bundle, load_target, reachable

SUCCEEDED, FAILED, ERROR = "Succeeded", "Failed", "Error"
PENDING, RUNNING, SKIPPED, OMITTED = "Pending", "Running", "Skipped", "Omitted"
DONE = (SUCCEEDED, FAILED, ERROR, SKIPPED, OMITTED)
EXIT_CODES = {SUCCEEDED: 0, FAILED: 1, ERROR: 3}
EXIT_REFUSED = 2
PASSTHROUGH_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
SECRET_ENV_PREFIX = "TENANT_DR_SECRET_"  # noqa: S105 - an env var prefix, not a secret
KILL_GRACE_S = 5.0
_VAR = re.compile(r"\{\{\s*(=?)\s*([^{}]*?)\s*\}\}")


class NodeError(Exception):
    """Something that puts a node into phase Error (missing secret, unresolved variable, ...)."""


class Stopped(Exception):
    """The run was interrupted (Ctrl-C)."""


def secret_env_name(name: str, key: str) -> str:
    """The env var that stands in for Secret ``name``/``key``: ``TENANT_DR_SECRET_<NAME>__<KEY>``."""

    def norm(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9]", "_", text).upper()

    return f"{SECRET_ENV_PREFIX}{norm(name)}__{norm(key)}"


def parse_duration(value: Any, what: str) -> float:
    """Seconds from ``30s``, ``15m``, ``1h30m``, ``2`` (seconds) — Argo's duration strings."""
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise NodeError(f"{what}: {text!r} is not a duration (like 30s, 15m, 1h)")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def read_kv_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, blank lines, optional ``export`` and quotes)."""
    out: dict[str, str] = {}
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
            raise RefusedError(f"{path}:{n}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def read_named_maps(path: Path, what: str) -> dict[str, dict[str, str]]:
    """A YAML ``{name: {key: value}}`` file (secrets or config maps)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RefusedError(f"{path}: cannot read {what}: {' '.join(str(exc).split())}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise RefusedError(f"{path}: {what} must be a mapping of name -> {{key: value}}")
    return {str(k): {str(kk): str(vv) for kk, vv in v.items()} for k, v in data.items()}


# ---- nodes --------------------------------------------------------------------------------------


@dataclass
class Node:
    """One node of the run, as Argo's ``status.nodes`` would show it."""

    id: str
    name: str
    display: str
    type: str
    template: str
    parent: Node | None = None
    phase: str = PENDING
    message: str = ""
    started: float | None = None
    finished: float | None = None
    children: list[Node] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    result: str | None = None
    exit_code: int | None = None
    log: Path | None = None
    error_line: str = ""

    @property
    def duration(self) -> float:
        """Seconds so far (or in total once finished)."""
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started

    @property
    def depth(self) -> int:
        """How many ancestors the node has."""
        return 0 if self.parent is None else self.parent.depth + 1

    def walk(self) -> Iterator[Node]:
        """The node itself and all its descendants, depth first."""
        yield self
        for child in list(self.children):
            yield from child.walk()

    def as_dict(self) -> dict[str, Any]:
        """JSON form for ``run.json``."""
        return {
            "id": self.id,
            "name": self.name,
            "displayName": self.display,
            "type": self.type,
            "templateName": self.template,
            "phase": self.phase,
            "message": self.message,
            "startedAt": _iso(self.started),
            "finishedAt": _iso(self.finished),
            "duration_s": round(self.duration, 3),
            "exitCode": self.exit_code,
            "outputs": self.outputs,
            "result": self.result,
            "log": str(self.log) if self.log else None,
            "errorLine": self.error_line,
            "children": [c.id for c in self.children],
        }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _from_iso(text: str | None) -> float | None:
    if not text:
        return None
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


# ---- options ------------------------------------------------------------------------------------


@dataclass
class RunOptions:
    """How to run: everything ``tenant-dr run`` takes besides the file."""

    parameters: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    configmaps: dict[str, dict[str, str]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    approve: bool = False
    backoff_scale: float = 1.0
    state_dir: Path = Path(os.environ.get("TENANT_DR_RUNNER_STATE_DIR", "~/.local/state/tenant-dr/runner"))
    name: str | None = None
    namespace: str = "argo"
    bundle_dir: Path | None = None
    steps_path: Path | None = None
    retry: bool = False


@dataclass
class RunResult:
    """The outcome of a run."""

    name: str
    phase: str
    message: str
    root: Node
    exit_node: Node | None
    run_dir: Path
    metrics: list[dict[str, Any]]

    @property
    def exit_code(self) -> int:
        """0 Succeeded, 1 Failed, 3 Error."""
        return EXIT_CODES.get(self.phase, 3)


class Listener:
    """Receives node changes (the live view); the default does nothing."""

    def changed(self, node: Node) -> None:
        """A node was created or changed phase."""

    def waiting(self, message: str) -> None:
        """The run waits for something outside it (a mutex held by another run)."""


# ---- mutexes ------------------------------------------------------------------------------------


class MutexWait:
    """A cross-process mutex: an exclusive ``flock`` on ``<state>/locks/<namespace>/<name>.lock``."""

    def __init__(self, lock_dir: Path, name: str) -> None:
        self.path = lock_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.lock"
        self.name = name
        self.fh: TextIO | None = None

    def acquire(self, stop: threading.Event, deadline: float | None, on_wait: Callable[[str], None]) -> None:
        """Block until held; raises :class:`NodeError` when the deadline passes while waiting."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        announced = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced:
                    on_wait(f"waiting for mutex {self.name} (held by another run or node; lock file {self.path})")
                    announced = True
                if stop.is_set():
                    fh.close()
                    raise Stopped() from None
                if deadline is not None and time.monotonic() > deadline:
                    fh.close()
                    raise NodeError(f"deadline exceeded while waiting for mutex {self.name}") from None
                time.sleep(0.1)
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self.fh = fh

    def release(self) -> None:
        """Unlock (closing the file releases the lock)."""
        if self.fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()
            self.fh = None


def _mutex_names(sync: Mapping[str, Any] | None, namespace: str) -> list[tuple[str, str]]:
    if not sync:
        return []
    items = list(sync.get("mutexes") or []) + ([sync["mutex"]] if sync.get("mutex") else [])
    return [(str(m.get("namespace") or namespace), str(m["name"])) for m in items]


# ---- the run ------------------------------------------------------------------------------------


@dataclass
class _Ctx:
    wt: str  # WorkflowTemplate whose templates `template:` refers to
    deadline: float | None  # monotonic


class Runner:
    """Runs one WorkflowTemplate; create, then call :meth:`run`."""

    def __init__(self, file: Path, options: RunOptions, listener: Listener | None = None) -> None:
        self.options = options
        self.listener = listener or Listener()
        root = options.bundle_dir or _bundle_root(file)
        self.bundle: Bundle = load_bundle(root)
        self.target: Target = load_target(file, self.bundle)
        reachable(self.bundle, self.target.name)
        self.doc = self.bundle.templates[self.target.name]
        self.spec: dict[str, Any] = self.doc["spec"]
        self.configmaps = {**self.bundle.configmaps, **options.configmaps}
        suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))  # noqa: S311 - a name
        self.name = options.name or f"{self.target.name}-{suffix}"
        self.state_dir = options.state_dir.expanduser()
        self.run_dir = self.state_dir / "runs" / self.name
        self.created = time.time()
        self.previous: dict[str, dict[str, Any]] = {}  # --retry: the earlier run's nodes by id
        self.kept: dict[str, dict[str, Any]] = {}  # --retry: its Succeeded nodes by name (outside onExit)
        if options.retry:
            self._load_previous()
        self.workflow_args = self._workflow_arguments()
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.nodes: list[Node] = []
        self.globals = self._global_scope()
        self._pythonpath = str(options.steps_path or _installed_steps_root())

    # -- setup --

    def _load_previous(self) -> None:
        """``--retry``: the earlier run of this name (``run.json``), as ``argo retry`` finds it."""
        if not self.options.name:
            raise RefusedError("--retry needs --name: the workflow name of the earlier run")
        path = self.run_dir / "run.json"
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RefusedError(f"--retry: cannot read the earlier run {path}: {exc}") from exc
        if report.get("workflowTemplate") != self.target.name:
            raise RefusedError(f"--retry: {self.name} ran {report.get('workflowTemplate')}, not {self.target.name}")
        if report.get("phase") == SUCCEEDED:
            raise RefusedError(f"--retry: {self.name} Succeeded; there is nothing to retry (Argo refuses it too)")
        exit_prefix = f"{self.name}.onExit"
        self.previous = {str(n["id"]): n for n in report["nodes"]}
        self.kept = {
            str(n["name"]): n
            for n in report["nodes"]
            if n["phase"] == SUCCEEDED and not str(n["name"]).startswith(exit_prefix)
        }
        self.created = _from_iso(report.get("creationTimestamp")) or self.created
        self.options.parameters = {**report.get("parameters", {}), **self.options.parameters}

    def _keep(self, prev: Mapping[str, Any], parent: Node | None) -> Node:
        """Re-create a node of the earlier run (and its subtree) as it finished: ``--retry`` does not run it again."""
        name, display = str(prev["name"]), str(prev["displayName"])
        node = self._node(name, display, str(prev["type"]), str(prev["templateName"]), parent)
        with self.lock:
            node.phase, node.message = str(prev["phase"]), str(prev.get("message") or "")
            node.started, node.finished = _from_iso(prev.get("startedAt")), _from_iso(prev.get("finishedAt"))
            node.outputs = dict(prev.get("outputs") or {})
            node.result, node.exit_code = prev.get("result"), prev.get("exitCode")
            node.log = Path(prev["log"]) if prev.get("log") else None
            node.error_line = str(prev.get("errorLine") or "")
        self.listener.changed(node)
        for child in prev.get("children") or []:
            self._keep(self.previous[str(child)], node)
        return node

    def _workflow_arguments(self) -> dict[str, str]:
        declared = {str(p["name"]): p for p in (self.spec.get("arguments") or {}).get("parameters") or []}
        values = {name: str(p.get("value", "")) for name, p in declared.items() if "value" in p}
        values.update(self.target.arguments)
        for name, value in self.options.parameters.items():
            if name not in declared:
                known = ", ".join(declared) or "none"
                raise RefusedError(f"-p {name}: {self.target.name} has no parameter {name!r} (parameters: {known})")
            values[name] = value
        for name, p in declared.items():
            if name not in values:
                raise RefusedError(f"parameter {name!r} of {self.target.name} has no value; pass -p {name}=...")
            enum = p.get("enum")
            if enum and values[name] not in [str(e) for e in enum]:
                raise RefusedError(f"-p {name}={values[name]}: not one of {', '.join(str(e) for e in enum)}")
        return values

    def _global_scope(self) -> dict[str, str]:
        meta = self.spec.get("workflowMetadata") or {}
        scope = {
            "workflow.name": self.name,
            "workflow.namespace": self.options.namespace,
            "workflow.uid": str(uuid.uuid4()),
            "workflow.serviceAccountName": str(self.spec.get("serviceAccountName", "default")),
            "workflow.mainEntrypoint": str(self.spec["entrypoint"]),
            "workflow.creationTimestamp": _iso(self.created) or "",
        }
        created = dt.datetime.fromtimestamp(self.created, dt.UTC)
        for letter in "aAbBcdHIjmMpSUwWxXyYZz":
            scope[f"workflow.creationTimestamp.{letter}"] = created.strftime(f"%{letter}")
        scope["workflow.creationTimestamp.s"] = str(int(self.created))
        scope["workflow.creationTimestamp.RFC3339"] = scope["workflow.creationTimestamp"]
        for key, value in (meta.get("labels") or {}).items():
            scope[f"workflow.labels.{key}"] = str(value)
        for key, value in (meta.get("annotations") or {}).items():
            scope[f"workflow.annotations.{key}"] = str(value)
        for key, value in self.workflow_args.items():
            scope[f"workflow.parameters.{key}"] = value
        return scope

    # -- node bookkeeping --

    def _node(self, name: str, display: str, type_: str, template: str, parent: Node | None) -> Node:
        node = Node(id=f"{self.name}-{len(self.nodes)}", name=name, display=display, type=type_, template=template)
        with self.lock:
            node.parent = parent
            if parent is not None:
                parent.children.append(node)
            self.nodes.append(node)
        self.listener.changed(node)
        return node

    def _set(self, node: Node, phase: str, message: str = "") -> None:
        with self.lock:
            node.phase = phase
            if message:
                node.message = message
            now = time.time()
            if phase == RUNNING and node.started is None:
                node.started = now
            if phase in DONE:
                if node.started is None:
                    node.started = now
                node.finished = now
        self.listener.changed(node)

    # -- substitution --

    def _subst(self, text: Any, scope: Mapping[str, str], where: str) -> str:
        def repl(m: re.Match[str]) -> str:
            if m.group(1):
                raise NodeError(f"{where}: expression templates {{{{={m.group(2)}}}}} are not supported")
            key = m.group(2)
            if key not in scope:
                raise NodeError(f"{where}: cannot resolve {{{{{key}}}}}")
            return scope[key]

        return _VAR.sub(repl, str(text))

    # -- template execution --

    def _call(
        self,
        ctx: _Ctx,
        call: Mapping[str, Any],
        scope: Mapping[str, str],
        name: str,
        display: str,
        parent: Node,
    ) -> Node:
        """Run a DAG task / step: resolve its template and arguments, then run the template."""
        if name in self.kept:
            return self._keep(self.kept[name], parent)
        if "templateRef" in call:
            wt, tname = str(call["templateRef"]["name"]), str(call["templateRef"]["template"])
        else:
            wt, tname = ctx.wt, str(call["template"])
        args: dict[str, str] = {}
        try:
            for p in (call.get("arguments") or {}).get("parameters") or []:
                args[str(p["name"])] = self._subst(p.get("value", ""), scope, f"{display}: argument {p['name']}")
        except NodeError as exc:
            node = self._node(name, display, "Skipped", tname, parent)
            self._set(node, ERROR, str(exc))
            return node
        return self.run_template(_Ctx(wt, ctx.deadline), wt, tname, args, name, display, parent)

    def run_template(
        self, ctx: _Ctx, wt: str, tname: str, args: Mapping[str, str], name: str, display: str, parent: Node | None
    ) -> Node:
        """Run template ``tname`` of ``wt`` with ``args``; retries, mutexes and deadlines included."""
        tmpl = self.bundle.template(wt, tname, display)
        kind = next(k for k in ("container", "dag", "steps", "suspend") if k in tmpl)
        node_type = {"container": "Pod", "dag": "DAG", "steps": "Steps", "suspend": "Suspend"}[kind]
        retry = tmpl.get("retryStrategy")
        node = self._node(name, display, "Retry" if retry else node_type, tname, parent)
        locks: list[MutexWait] = []
        try:
            inputs = self._inputs(tmpl, args, display)
            scope = {**self.globals, **{f"inputs.parameters.{k}": v for k, v in inputs.items()}}
            deadline = ctx.deadline
            if "activeDeadlineSeconds" in tmpl and kind != "container":
                own = time.monotonic() + float(self._subst(tmpl["activeDeadlineSeconds"], scope, display))
                deadline = own if deadline is None else min(deadline, own)
            for ns, mutex in _mutex_names(tmpl.get("synchronization"), self.options.namespace):
                lock = MutexWait(self.state_dir / "locks" / ns, mutex)
                self._set(node, PENDING, f"waiting for mutex {mutex}")
                lock.acquire(self.stop, deadline, lambda msg, n=node: self._set(n, PENDING, msg))  # type: ignore[misc]
                locks.append(lock)
                node.message = ""
            inner = _Ctx(wt, deadline)
            self._set(node, RUNNING)
            if retry:
                self._retry(inner, tmpl, kind, node_type, scope, node, retry)
            else:
                self._once(inner, tmpl, kind, scope, node, attempt=0)
        except NodeError as exc:
            self._set(node, ERROR, str(exc))
        except Stopped:
            self._set(node, FAILED, "stopped: the run was interrupted")
        finally:
            for lock in reversed(locks):
                lock.release()
        return node

    def _inputs(self, tmpl: Mapping[str, Any], args: Mapping[str, str], where: str) -> dict[str, str]:
        values: dict[str, str] = {}
        for p in (tmpl.get("inputs") or {}).get("parameters") or []:
            pname = str(p["name"])
            if pname in args:
                values[pname] = args[pname]
            elif "value" in p or "default" in p:
                # a template's own value may refer to workflow variables (Argo substitutes them)
                raw = p["value"] if "value" in p else p["default"]
                values[pname] = self._subst(raw, self.globals, f"{where}: input {pname}")
            else:
                raise NodeError(f"{where}: input parameter {pname!r} was not supplied")
        return values

    def _once(
        self, ctx: _Ctx, tmpl: Mapping[str, Any], kind: str, scope: dict[str, str], node: Node, attempt: int
    ) -> None:
        if kind == "container":
            self._container(ctx, tmpl, {**scope, "retries": str(attempt), "pod.name": node.id}, node)
        elif kind == "dag":
            self._dag(ctx, tmpl, scope, node)
        elif kind == "steps":
            self._steps(ctx, tmpl, scope, node)
        else:
            self._suspend(ctx, tmpl, scope, node)

    # -- retries --

    def _retry(
        self,
        ctx: _Ctx,
        tmpl: Mapping[str, Any],
        kind: str,
        node_type: str,
        scope: dict[str, str],
        node: Node,
        retry: Mapping[str, Any],
    ) -> None:
        limit_raw = retry.get("limit")
        limit = int(self._subst(limit_raw, scope, f"{node.display}: retryStrategy.limit")) if limit_raw else None
        expression = retry.get("expression")
        policy = retry.get("retryPolicy") or ("Always" if expression else "OnFailure")
        backoff = retry.get("backoff") or {}
        base = parse_duration(backoff["duration"], "backoff.duration") if "duration" in backoff else 0.0
        factor = float(self._subst(backoff.get("factor", 1), scope, "backoff.factor"))
        cap = parse_duration(backoff["cap"], "backoff.cap") if "cap" in backoff else None
        max_duration = (
            parse_duration(backoff["maxDuration"], "backoff.maxDuration") if "maxDuration" in backoff else None
        )
        first = time.monotonic()
        attempt = 0
        while True:
            child = self._node(f"{node.name}({attempt})", f"{node.display}({attempt})", node_type, node.template, node)
            self._set(child, RUNNING)
            try:
                self._once(ctx, tmpl, kind, {**scope, "retries": str(attempt)}, child, attempt)
            except NodeError as exc:
                self._set(child, ERROR, str(exc))
            last = child
            if last.phase not in (FAILED, ERROR):
                break
            why = self._no_retry_reason(last, attempt, limit, policy, expression)
            wait_s = 0.0
            if why is None:
                wait_s = base * (factor**attempt) if base else 0.0
                if cap is not None:
                    wait_s = min(wait_s, cap)
                if max_duration is not None and time.monotonic() - first + wait_s > max_duration:
                    why = f"backoff.maxDuration {backoff['maxDuration']} reached"
            if (
                why is None
                and ctx.deadline is not None
                and time.monotonic() + wait_s * self.options.backoff_scale > ctx.deadline
            ):
                why = "the deadline would pass during the backoff"
            if why is not None:
                self._set(node, last.phase, f"{last.message} ({why})" if last.message else why)
                self._copy_result(last, node)
                return
            scaled = wait_s * self.options.backoff_scale
            with self.lock:
                node.message = (
                    f"retry {attempt + 1} in {scaled:.2f}s (backoff {wait_s:.0f}s x {self.options.backoff_scale})"
                )
            self.listener.changed(node)
            if self.stop.wait(scaled):
                raise Stopped()
            attempt += 1
        self._copy_result(last, node)
        self._set(node, last.phase, last.message)

    def _no_retry_reason(
        self, last: Node, attempt: int, limit: int | None, policy: str, expression: str | None
    ) -> str | None:
        if limit is not None and attempt >= limit:
            return f"no more retries left (limit {limit})"
        if policy == "OnFailure" and last.phase != FAILED:
            return "retryPolicy OnFailure does not retry errors"
        if policy == "OnError" and last.phase != ERROR:
            return "retryPolicy OnError does not retry failures"
        if expression:
            env = {
                "lastRetry": {
                    "exitCode": str(last.exit_code) if last.exit_code is not None else "-1",
                    "status": last.phase,
                    "duration": str(round(last.duration, 3)),
                    "message": last.message,
                }
            }
            try:
                if not evaluate_bool(str(expression), mode="expr", env=env):
                    return f"retryStrategy.expression {expression!r} is false"
            except ExprError as exc:
                raise NodeError(f"retryStrategy.expression: {exc}") from exc
        return None

    @staticmethod
    def _copy_result(src: Node, dst: Node) -> None:
        dst.outputs = dict(src.outputs)
        dst.result = src.result
        dst.exit_code = src.exit_code
        dst.log = src.log
        dst.error_line = src.error_line

    # -- container --

    def _env_value(self, item: Mapping[str, Any], scope: Mapping[str, str], where: str) -> str | None:
        if "valueFrom" not in item:
            return self._subst(item.get("value", ""), scope, where)
        vf = item["valueFrom"]
        ref_kind = "secretKeyRef" if "secretKeyRef" in vf else "configMapKeyRef"
        ref = vf[ref_kind]
        name = self._subst(ref["name"], scope, where)
        key = self._subst(ref["key"], scope, where)
        if ref_kind == "secretKeyRef":
            found = self.options.secrets.get(name, {}).get(key)
            if found is None:
                found = os.environ.get(secret_env_name(name, key))
            hint = f"add {name}: {{{key}: ...}} to the --secrets file or set {secret_env_name(name, key)}"
        else:
            found = self.configmaps.get(name, {}).get(key)
            hint = f"add a ConfigMap {name} with key {key} to the bundle, or {name}: {{{key}: ...}} to --configmaps"
        if found is None and not ref.get("optional"):
            what = "Secret" if ref_kind == "secretKeyRef" else "ConfigMap"
            raise NodeError(f"{where}: {what} {name}/{key} not found ({hint})")
        return found

    def _volume_dirs(self, tmpl: Mapping[str, Any], node_dir: Path, scope: Mapping[str, str]) -> list[tuple[str, Path]]:
        volumes = {v["name"]: v for v in [*(self.spec.get("volumes") or []), *(tmpl.get("volumes") or [])]}
        mounts: list[tuple[str, Path]] = []
        for m in tmpl["container"].get("volumeMounts") or []:
            vol = volumes[m["name"]]
            local = node_dir / "volumes" / re.sub(r"[^A-Za-z0-9_.-]", "_", str(m["name"]))
            local.mkdir(parents=True, exist_ok=True)
            source = vol.get("secret") or vol.get("configMap")
            if source is not None:
                is_secret = "secret" in vol
                name = self._subst(source.get("secretName") if is_secret else source.get("name"), scope, "volume")
                data = (self.options.secrets if is_secret else self.configmaps).get(name)
                if data is None:
                    if not source.get("optional"):
                        raise NodeError(
                            f"volume {m['name']}: {'Secret' if is_secret else 'ConfigMap'} {name} not found"
                        )
                    data = {}
                items = source.get("items") or [{"key": k, "path": k} for k in data]
                for it in items:
                    if it["key"] not in data:
                        if source.get("optional"):
                            continue  # like the kubelet: an optional Secret's missing keys are left out
                        raise NodeError(f"volume {m['name']}: key {it['key']} not in {name}")
                    target = local / str(it["path"])
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(data[it["key"]], encoding="utf-8")
                    target.chmod(0o600)
            mounts.append((str(m["mountPath"]).rstrip("/") or "/", local))
        mounts.sort(key=lambda mp: len(mp[0]), reverse=True)
        return mounts

    @staticmethod
    def _map_path(value: str, mounts: list[tuple[str, Path]]) -> str:
        for mount, local in mounts:
            if value == mount:
                return str(local)
            if value.startswith(mount + "/"):
                return str(local / value[len(mount) + 1 :])
        return value

    def _container(self, ctx: _Ctx, tmpl: Mapping[str, Any], scope: dict[str, str], node: Node) -> None:
        container = tmpl["container"]
        where = f"template {node.template}"
        node_dir = self.run_dir / "nodes" / node.id
        node_dir.mkdir(parents=True, exist_ok=True)
        try:
            mounts = self._volume_dirs(tmpl, node_dir, scope)
            module = str(container["command"][2])
            args = [
                self._map_path(self._subst(a, scope, f"{where}: args"), mounts) for a in container.get("args") or []
            ]
            env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
            env.update({k: v for k, v in os.environ.items() if k.startswith("AWS_")})
            env.update(self.options.env)
            for item in container.get("env") or []:
                value = self._env_value(item, scope, f"{where}: env {item['name']}")
                if value is not None:
                    env[str(item["name"])] = self._map_path(value, mounts) if "valueFrom" not in item else value
            tmp = self._map_path("/tmp", mounts)  # the container's /tmp
            if tmp == "/tmp":
                tmp = str(node_dir / "tmp")
                Path(tmp).mkdir(exist_ok=True)
            env["TMPDIR"] = tmp
            env.setdefault("STEP_OUTPUT_DIR", str(node_dir / "outputs"))
            env["PYTHONPATH"] = os.pathsep.join(p for p in (self._pythonpath, env.get("PYTHONPATH")) if p)
            env["PYTHONUNBUFFERED"] = "1"
            timeout = None
            if "activeDeadlineSeconds" in tmpl:
                timeout = float(self._subst(tmpl["activeDeadlineSeconds"], scope, f"{where}: activeDeadlineSeconds"))
            self._exec(ctx, node, [sys.executable, "-m", module, *args], env, node_dir, timeout)
            if node.phase == SUCCEEDED:
                self._read_outputs(tmpl, mounts, node)
        finally:
            shutil.rmtree(node_dir, ignore_errors=True)  # emptyDir volumes die with the pod

    def _exec(
        self, ctx: _Ctx, node: Node, argv: list[str], env: dict[str, str], cwd: Path, timeout: float | None
    ) -> None:
        logs = self.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.()-]", "_", node.name.removeprefix(self.name + ".") or "main")
        log_path, out_path = logs / f"{stem}.log", logs / f"{stem}.out"
        node.log = log_path
        start = time.monotonic()
        limit = None if timeout is None else start + timeout
        why_killed = ""
        with open(log_path, "wb") as err, open(out_path, "wb") as out:
            try:
                proc = subprocess.Popen(  # argv: `python -m steps.<module>` (checked)
                    argv, env=env, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
                )
            except OSError as exc:
                raise NodeError(f"cannot start {argv[2]}: {exc}") from exc
            while proc.poll() is None:
                now = time.monotonic()
                if limit is not None and now > limit:
                    why_killed = f"Pod was active on the node longer than the specified deadline ({timeout:.0f}s)"
                elif ctx.deadline is not None and now > ctx.deadline:
                    why_killed = "Step exceeded its deadline"
                elif self.stop.is_set():
                    why_killed = "stopped: the run was interrupted"
                if why_killed:
                    _kill_group(proc)
                    break
                time.sleep(0.05)
        code = proc.wait()
        node.exit_code = code
        stdout = out_path.read_text(encoding="utf-8", errors="replace")
        node.result = stdout.strip()
        node.error_line = _last_error(log_path, stdout)
        if why_killed:
            self._set(node, FAILED, why_killed)
        elif code == 0:
            self._set(node, SUCCEEDED)
        else:
            detail = f": {node.error_line}" if node.error_line else ""
            self._set(node, FAILED, f"Error (exit code {code}){detail}")

    def _read_outputs(self, tmpl: Mapping[str, Any], mounts: list[tuple[str, Path]], node: Node) -> None:
        for p in (tmpl.get("outputs") or {}).get("parameters") or []:
            vf = p["valueFrom"]
            local = Path(self._map_path(str(vf["path"]), mounts))
            try:
                node.outputs[str(p["name"])] = local.read_text(encoding="utf-8").rstrip("\n")
            except OSError as exc:
                if "default" in vf:
                    node.outputs[str(p["name"])] = str(vf["default"])
                    continue
                self._set(node, ERROR, f"output parameter {p['name']}: cannot read {vf['path']}: {exc.strerror}")
                return

    # -- dag --

    def _dag(self, ctx: _Ctx, tmpl: Mapping[str, Any], scope: dict[str, str], node: Node) -> None:
        tasks = {str(t["name"]): t for t in tmpl["dag"]["tasks"]}
        deps = {n: _task_deps(t) for n, t in tasks.items()}
        nodes: dict[str, Node] = {}
        local: dict[str, str] = {}
        running: dict[Future[Node], str] = {}

        def result(task: str, res: str | None) -> bool:
            phase = nodes[task].phase
            if res is None:
                return phase in (SUCCEEDED, SKIPPED)
            wanted = {"Succeeded": SUCCEEDED, "AnySucceeded": SUCCEEDED, "Failed": FAILED, "AllFailed": FAILED}
            wanted |= {"Errored": ERROR, "Skipped": SKIPPED, "Omitted": OMITTED}
            return phase == wanted.get(res)

        with ThreadPoolExecutor(max_workers=max(1, len(tasks)), thread_name_prefix=node.display) as pool:
            while True:
                started = False
                for tname, task in tasks.items():
                    if tname in nodes or any(d not in nodes or nodes[d].phase not in DONE for d in deps[tname]):
                        continue
                    child_name, tscope = f"{node.name}.{tname}", {**scope, **local}
                    if self.stop.is_set() or (ctx.deadline is not None and time.monotonic() > ctx.deadline):
                        break
                    try:
                        go = evaluate_depends(_depends_text(task), result) if deps[tname] else True
                        if go and "when" in task:
                            go_when = self._when(task["when"], tscope, f"{node.display}.{tname}")
                        else:
                            go_when = True
                    except NodeError as exc:
                        nodes[tname] = self._node(child_name, tname, "Skipped", _call_template(task), node)
                        self._set(nodes[tname], ERROR, str(exc))
                        started = True
                        continue
                    if not go:
                        nodes[tname] = self._node(child_name, tname, "Skipped", _call_template(task), node)
                        self._set(nodes[tname], OMITTED, "omitted: depends condition not met")
                        self._scope_of(f"tasks.{tname}", nodes[tname], local)
                        started = True
                        continue
                    if not go_when:
                        nodes[tname] = self._node(child_name, tname, "Skipped", _call_template(task), node)
                        self._set(
                            nodes[tname], SKIPPED, f"when '{self._subst(task['when'], tscope, tname)}' evaluated false"
                        )
                        self._scope_of(f"tasks.{tname}", nodes[tname], local)
                        started = True
                        continue
                    placeholder = Node(id="", name=child_name, display=tname, type="", template="", phase=RUNNING)
                    nodes[tname] = placeholder
                    fut = pool.submit(self._call, ctx, task, tscope, child_name, tname, node)
                    running[fut] = tname
                    started = True
                if started:
                    continue
                if not running:
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in done:
                    tname = running.pop(fut)
                    child = fut.result()
                    nodes[tname] = child
                    self._scope_of(f"tasks.{tname}", child, local)
        missing = [t for t in tasks if t not in nodes]
        if missing and (self.stop.is_set() or (ctx.deadline is not None and time.monotonic() > ctx.deadline)):
            stopped = "stopped: the run was interrupted" if self.stop.is_set() else "Step exceeded its deadline"
            self._set(node, FAILED, f"{stopped} ({len(missing)} task(s) not started)")
            return
        phase, message = _assess_dag(tasks, deps, nodes)
        if phase == SUCCEEDED:
            try:
                self._dag_outputs(tmpl, {**scope, **local}, node)
            except NodeError as exc:
                phase, message = ERROR, str(exc)
        self._set(node, phase, message)

    def _scope_of(self, prefix: str, child: Node, local: dict[str, str]) -> None:
        with self.lock:
            local[f"{prefix}.status"] = child.phase
            local[f"{prefix}.id"] = child.id
            local[f"{prefix}.startedAt"] = _iso(child.started) or ""
            local[f"{prefix}.finishedAt"] = _iso(child.finished) or ""
            if child.exit_code is not None:
                local[f"{prefix}.exitCode"] = str(child.exit_code)
            if child.result is not None:
                local[f"{prefix}.outputs.result"] = child.result
            for key, value in child.outputs.items():
                local[f"{prefix}.outputs.parameters.{key}"] = value

    def _dag_outputs(self, tmpl: Mapping[str, Any], scope: Mapping[str, str], node: Node) -> None:
        for p in (tmpl.get("outputs") or {}).get("parameters") or []:
            vf = p.get("valueFrom") or {}
            try:
                node.outputs[str(p["name"])] = self._subst(vf.get("parameter", ""), scope, f"output {p['name']}")
            except NodeError:
                if "default" not in vf:
                    raise
                node.outputs[str(p["name"])] = str(vf["default"])

    def _when(self, expr: Any, scope: Mapping[str, str], where: str) -> bool:
        text = self._subst(expr, scope, f"{where}: when")
        try:
            return evaluate_bool(text, mode="govaluate")
        except ExprError as exc:
            raise NodeError(f"{where}: when: {exc}") from exc

    # -- steps --

    def _steps(self, ctx: _Ctx, tmpl: Mapping[str, Any], scope: dict[str, str], node: Node) -> None:
        local: dict[str, str] = {}
        for i, group in enumerate(tmpl["steps"]):
            gnode = self._node(f"{node.name}[{i}]", f"[{i}]", "StepGroup", node.template, node)
            self._set(gnode, RUNNING)
            if self.stop.is_set() or (ctx.deadline is not None and time.monotonic() > ctx.deadline):
                why = "stopped: the run was interrupted" if self.stop.is_set() else "Step exceeded its deadline"
                self._set(gnode, FAILED, why)
                self._set(node, FAILED, why)
                return
            children: dict[str, Node] = {}
            with ThreadPoolExecutor(max_workers=max(1, len(group)), thread_name_prefix=node.display) as pool:
                futures: dict[str, Future[Node]] = {}
                for step in group:
                    sname = str(step["name"])
                    child_name, sscope = f"{gnode.name}.{sname}", {**scope, **local}
                    try:
                        go = self._when(step["when"], sscope, sname) if "when" in step else True
                    except NodeError as exc:
                        children[sname] = self._node(child_name, sname, "Skipped", _call_template(step), gnode)
                        self._set(children[sname], ERROR, str(exc))
                        continue
                    if not go:
                        children[sname] = self._node(child_name, sname, "Skipped", _call_template(step), gnode)
                        self._set(
                            children[sname],
                            SKIPPED,
                            f"when '{self._subst(step['when'], sscope, sname)}' evaluated false",
                        )
                        continue
                    futures[sname] = pool.submit(self._call, ctx, step, sscope, child_name, sname, gnode)
                for sname, fut in futures.items():
                    children[sname] = fut.result()
            for sname, child in children.items():
                self._scope_of(f"steps.{sname}", child, local)
            failed = [(s, c) for s, c in children.items() if c.phase in (FAILED, ERROR)]
            if failed:
                sname, child = failed[0]
                self._set(gnode, child.phase, f"child '{sname}' failed")
                self._set(node, child.phase, f"child '{sname}' failed")
                return
            self._set(gnode, SUCCEEDED)
        try:
            self._dag_outputs(tmpl, {**scope, **local}, node)
        except NodeError as exc:
            self._set(node, ERROR, str(exc))
            return
        self._set(node, SUCCEEDED)

    # -- suspend --

    def _suspend(self, ctx: _Ctx, tmpl: Mapping[str, Any], scope: dict[str, str], node: Node) -> None:
        duration = (tmpl.get("suspend") or {}).get("duration")
        if duration is not None:
            seconds = parse_duration(self._subst(duration, scope, f"{node.display}: suspend.duration"), "suspend")
            with self.lock:
                node.message = f"suspended for {seconds:.0f}s"
            self.listener.changed(node)
            end = time.monotonic() + seconds
            if ctx.deadline is not None and ctx.deadline < end:
                self.stop.wait(max(0.0, ctx.deadline - time.monotonic()))
                self._set(node, FAILED, "Step exceeded its deadline")
                return
            if self.stop.wait(seconds):
                raise Stopped()
            self._set(node, SUCCEEDED, f"resumed after {seconds:.0f}s")
        elif self.options.approve:
            self._set(node, SUCCEEDED, "resumed by --approve")
        else:
            self._set(
                node,
                FAILED,
                "suspended, waiting for approval: the local run stops here (Argo would wait for `argo resume`); "
                "run again with --approve to resume suspend nodes",
            )

    # -- the workflow --

    def run(self) -> RunResult:
        """Run the workflow (entrypoint, then onExit) and write ``run.json`` into the run directory."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        deadline = None
        if "activeDeadlineSeconds" in self.spec:
            deadline = started + float(self.spec["activeDeadlineSeconds"])
        root: Node | None = None
        locks: list[MutexWait] = []
        exit_node: Node | None = None
        phase, message = ERROR, ""
        try:
            for ns, mutex in _mutex_names(self.spec.get("synchronization"), self.options.namespace):
                lock = MutexWait(self.state_dir / "locks" / ns, mutex)
                lock.acquire(self.stop, deadline, self.listener.waiting)
                locks.append(lock)
            if self.name in self.kept:  # --retry of a run whose entrypoint succeeded and whose onExit failed
                root = self._keep(self.kept[self.name], None)
            else:
                root = self.run_template(
                    _Ctx(self.target.name, deadline),
                    self.target.name,
                    str(self.spec["entrypoint"]),
                    self.workflow_args,
                    self.name,
                    self.name,
                    None,
                )
            phase, message = root.phase, root.message
            if phase not in (SUCCEEDED, FAILED, ERROR):
                phase = FAILED
            if self.spec.get("onExit") and not self.stop.is_set():
                exit_node, phase, message = self._on_exit(phase, message, time.monotonic() - started)
        except Stopped:
            phase, message = FAILED, "stopped: the run was interrupted"
        except NodeError as exc:
            phase, message = ERROR, str(exc)
        finally:
            for lock in reversed(locks):
                lock.release()
        if root is None:
            root = self._node(self.name, self.name, "Workflow", str(self.spec["entrypoint"]), None)
            self._set(root, phase, message)
        duration = time.monotonic() - started
        scope = {**self.globals, **self._status_scope(phase, duration)}
        metrics = self._metrics(scope)
        result = RunResult(self.name, phase, message, root, exit_node, self.run_dir, metrics)
        self._write_report(result, duration)
        return result

    def _status_scope(self, phase: str, duration: float) -> dict[str, str]:
        with self.lock:
            failures = [
                {
                    "displayName": n.display,
                    "message": n.message,
                    "templateName": n.template,
                    "phase": n.phase,
                    "podName": n.id if n.type == "Pod" else "",
                    "finishedAt": _iso(n.finished) or "",
                }
                for n in self.nodes
                if n.phase in (FAILED, ERROR)
            ]
        return {
            "workflow.status": phase,
            "workflow.duration": f"{duration:.6f}",
            "workflow.failures": json.dumps(failures) if failures else "null",
        }

    def _on_exit(self, phase: str, message: str, duration: float) -> tuple[Node, str, str]:
        saved = self.globals
        self.globals = {**saved, **self._status_scope(phase, duration)}
        try:
            exit_node = self.run_template(
                _Ctx(self.target.name, None),
                self.target.name,
                str(self.spec["onExit"]),
                self.workflow_args,
                f"{self.name}.onExit",
                f"{self.name}.onExit",
                None,
            )
        finally:
            self.globals = saved
        if phase == SUCCEEDED and exit_node.phase in (FAILED, ERROR):
            return exit_node, exit_node.phase, f"onExit handler failed: {exit_node.message}"
        return exit_node, phase, message

    def _metrics(self, scope: Mapping[str, str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for m in (self.spec.get("metrics") or {}).get("prometheus") or []:
            try:
                if "when" in m and not self._when(m["when"], scope, f"metric {m['name']}"):
                    continue
                kind = next(k for k in ("gauge", "counter", "histogram") if k in m)
                labels = {str(lb["key"]): self._subst(lb["value"], scope, m["name"]) for lb in m.get("labels") or []}
                value = self._subst(m[kind]["value"], scope, m["name"])
                out.append({"name": m["name"], "type": kind, "labels": labels, "value": value})
            except (NodeError, StopIteration) as exc:
                out.append({"name": m.get("name"), "error": str(exc)})
        return out

    def _write_report(self, result: RunResult, duration: float) -> None:
        with self.lock:
            nodes = [n.as_dict() for n in self.nodes]
        report = {
            "workflow": self.name,
            "workflowTemplate": self.target.name,
            "phase": result.phase,
            "message": result.message,
            "exitCode": result.exit_code,
            "creationTimestamp": _iso(self.created),
            "duration_s": round(duration, 3),
            "parameters": self.workflow_args,
            "nodes": nodes,
            "metrics": result.metrics,
        }
        (self.run_dir / "run.json").write_text(json.dumps(report, indent=2), encoding="utf-8")


# ---- helpers ------------------------------------------------------------------------------------


def _installed_steps_root() -> Path:
    """The directory holding this installation's ``steps`` package."""
    spec = importlib.util.find_spec("steps")
    if spec is None or spec.origin is None:
        raise RefusedError("the tenant-dr steps package is not importable; install tenant-dr (uv sync)")
    return Path(spec.origin).parent.parent


def _bundle_root(file: Path) -> Path:
    from workflows.runner_spec import find_bundle_root

    return find_bundle_root(file)


def _task_deps(task: Mapping[str, Any]) -> list[str]:
    from workflows.runner_expr import depends_tasks

    if "depends" in task:
        return depends_tasks(str(task["depends"]))
    return [str(d) for d in task.get("dependencies") or []]


def _depends_text(task: Mapping[str, Any]) -> str:
    if "depends" in task:
        return str(task["depends"])
    return " && ".join(str(d) for d in task.get("dependencies") or [])


def _call_template(call: Mapping[str, Any]) -> str:
    if "templateRef" in call:
        return f"{call['templateRef']['name']}/{call['templateRef']['template']}"
    return str(call.get("template"))


def _assess_dag(tasks: Mapping[str, Any], deps: Mapping[str, list[str]], nodes: Mapping[str, Node]) -> tuple[str, str]:
    """Argo's assessDAGPhase: the phase of the DAG from its target (leaf) tasks' branches.

    An omitted task inherits a failed parent's phase, so a failure propagates to the targets below it.
    """
    memo: dict[str, str] = {}

    def branch(task: str) -> str:
        if task not in memo:
            node = nodes[task]
            if node.phase != OMITTED:
                memo[task] = node.phase
            else:
                parents = [branch(d) for d in deps[task]]
                bad = [p for p in parents if p in (FAILED, ERROR)]
                memo[task] = bad[0] if bad else SUCCEEDED
        return memo[task]

    dependents = {d for ds in deps.values() for d in ds}
    for target in [t for t in tasks if t not in dependents]:
        phase = branch(target)
        if phase in (FAILED, ERROR):
            culprit = target
            while nodes[culprit].phase == OMITTED:
                culprit = next(d for d in deps[culprit] if branch(d) in (FAILED, ERROR))
            return phase, f"child '{culprit}' failed"
    return SUCCEEDED, ""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the step's process group, SIGKILL after a grace period (like a pod deletion)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _last_error(log_path: Path, stdout: str) -> str:
    """The most useful one-line error of a step: its JSON result's ``error``, else the last error log line."""
    for line in reversed([ln for ln in stdout.splitlines() if ln.strip()]):
        with contextlib.suppress(json.JSONDecodeError):
            doc = json.loads(line)
            if isinstance(doc, dict) and doc.get("error"):
                return " ".join(str(doc["error"]).split())
        break
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            if line.strip():
                return " ".join(line.split())[:500]
            continue
        if isinstance(doc, dict) and doc.get("level") in ("error", "critical"):
            return " ".join(str(doc.get("error") or doc.get("msg") or "").split())[:500]
    return ""


def load_options_files(
    secrets: Path | None, configmaps: Path | None, env_file: Path | None
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]], dict[str, str]]:
    """Read the ``--secrets``, ``--configmaps`` and ``--env`` files (any may be ``None``)."""
    return (
        read_named_maps(secrets, "secrets") if secrets else {},
        read_named_maps(configmaps, "config maps") if configmaps else {},
        read_kv_file(env_file) if env_file else {},
    )


__all__ = [
    "EXIT_REFUSED",
    "Listener",
    "Node",
    "RefusedError",
    "RunOptions",
    "RunResult",
    "Runner",
    "load_options_files",
    "secret_env_name",
]
