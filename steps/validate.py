"""``python -m steps.validate data|http``: check a restored tenant against its backup, and over HTTP.

``data`` runs every component's own ``python -m steps.<component> verify`` (one subprocess each, in
parallel) against the target tenant with one resolved run id, reads each component's manifest for
the expected side, and prints one pass/fail table. The verify logic lives only in the component
modules; this step adds orchestration, the table and one exit code. Connection settings reach the
children through their usual env vars (``PGHOST``, ``TENANT_DR_REDIS_URL``, ``TENANT_DR_ES_URL``, ...)
or ``--component-args name=ARGS``; secrets only through env vars or files, never argv.

``http`` runs system tests from a YAML/JSON spec against a base URL with retries until a deadline.
``--precheck`` verifies (``dns verify --no-probe``: the name points at the new load balancer; ``kube
verify``: what the operation fenced is still at 0) must pass first: tests that assume that state are not
run, and the step exits like the failed verify (3: not in place), when it is not. The probe code is
shared with ``steps.dns verify``.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from rich.console import Console
from rich.table import Table

from steps.runtime import (
    ExitCode,
    IntegrityError,
    StepError,
    TransientError,
    UsageError,
    action,
    component,
    get_logger,
    redact,
    write_output,
)
from steps.runtime.log import tail
from steps.storage.catalog import Catalog
from steps.storage.manifest import ComponentManifest
from steps.storage.options import catalog_options

cli = component("validate", "Validate a restored tenant: data against the backup's manifests, and HTTP system tests.")

KNOWN_COMPONENTS = ("elasticsearch", "cassandra", "postgres", "redis", "argo")
_RESULT_NOISE = {"ok", "component", "action", "exit_code", "duration_s", "run_id", "tenant", "error"}
_STATUS_ORDER = (ExitCode.INTEGRITY, ExitCode.USAGE, ExitCode.TRANSIENT)
_ERRORS: dict[int, type[StepError]] = {
    ExitCode.INTEGRITY: IntegrityError,
    ExitCode.USAGE: UsageError,
    ExitCode.TRANSIENT: TransientError,
}
PRECHECK_MODULES = ("dns", "kube")  # whose `verify` may run as a precheck of the HTTP tests
PRECHECK_TIMEOUT_S = 600.0


# ---- output -------------------------------------------------------------------------------------


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """One rich table on stderr (plain text when stderr is not a terminal)."""
    tty = sys.stderr.isatty()
    console = Console(stderr=True, width=None if tty else 160, no_color=not tty, highlight=False)
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(redact(str(c)) for c in row))
    console.print(table)


def _short(value: Any, limit: int = 90) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- HTTP checks (shared with steps.dns verify) -------------------------------------------------


@dataclass(frozen=True)
class HttpCheck:
    """One request and what its answer must look like."""

    name: str
    url: str
    method: str = "GET"
    expect_status: tuple[int, ...] = (200,)
    body_contains: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    follow_redirects: bool = False


@dataclass
class CheckResult:
    """The outcome of one check after its attempts."""

    name: str
    url: str
    ok: bool = False
    attempts: int = 0
    status: int | None = None
    problem: str | None = None  # of the last failed attempt
    answered: bool = False  # the last attempt got an HTTP answer (wrong) rather than no answer
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "name": self.name,
            "url": self.url,
            "ok": self.ok,
            "attempts": self.attempts,
            "status": self.status,
            "problem": self.problem,
            "seconds": round(self.seconds, 3),
        }


def _attempt(client: httpx.Client, check: HttpCheck, result: CheckResult) -> None:
    result.attempts += 1
    try:
        response = client.request(
            check.method, check.url, headers=check.headers, follow_redirects=check.follow_redirects
        )
    except httpx.HTTPError as exc:
        result.answered, result.status = False, None
        result.problem = f"no answer: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        return
    result.answered, result.status = True, response.status_code
    problems = []
    if response.status_code not in check.expect_status:
        problems.append(f"status {response.status_code}, expected {'/'.join(map(str, check.expect_status))}")
    body = response.text
    problems += [f"body lacks {marker!r}" for marker in check.body_contains if marker not in body]
    result.ok = not problems
    result.problem = "; ".join(problems) or None


def run_checks(
    checks: Sequence[HttpCheck],
    *,
    deadline_s: float,
    interval_s: float,
    request_timeout_s: float,
    verify: bool | str = True,
) -> list[CheckResult]:
    """Try every check until it passes or the deadline passes; a passed check is not repeated."""
    log = get_logger()
    results = {c.name: CheckResult(c.name, c.url) for c in checks}
    start = time.monotonic()
    with httpx.Client(timeout=request_timeout_s, verify=verify) as client:
        while True:
            pending = [c for c in checks if not results[c.name].ok]
            for check in pending:
                _attempt(client, check, results[check.name])
                results[check.name].seconds = time.monotonic() - start
            pending = [c for c in checks if not results[c.name].ok]
            elapsed = time.monotonic() - start
            if not pending or elapsed + interval_s > deadline_s:
                break
            log.info(
                "waiting for checks",
                failing={c.name: results[c.name].problem for c in pending},
                elapsed_s=round(elapsed, 1),
                deadline_s=deadline_s,
            )
            time.sleep(interval_s)
    return [results[c.name] for c in checks]


def raise_for_checks(results: Sequence[CheckResult], what: str, deadline_s: float) -> None:
    """Exit 3 when a check got a wrong answer at the end; exit 1 when one got no answer at all."""
    failed = [r for r in results if not r.ok]
    if not failed:
        return
    shown = "; ".join(f"{r.name}: {r.problem}" for r in failed[:5])
    if any(not r.answered for r in failed):
        raise TransientError(
            f"{len(failed)} of {len(results)} {what} failed within {deadline_s:g}s: {shown}",
            hint="the endpoint did not answer (DNS, load balancer or pods not ready); Argo retries the step",
        )
    raise IntegrityError(
        f"{len(failed)} of {len(results)} {what} failed within {deadline_s:g}s: {shown}",
        hint="the service answers but not as expected; check the new tenant's pods and logs",
    )


def tls_verify(ca_file: str | None, insecure: bool) -> bool | str:
    """The httpx ``verify`` value: a CA bundle path, the system store, or off."""
    if insecure:
        return False
    return ca_file or True


def probe_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--deadline --interval --request-timeout --ca-file --insecure`` for HTTP checks."""
    options = [
        click.option(
            "--deadline",
            envvar="TENANT_DR_HTTP_DEADLINE",
            type=float,
            default=300,
            show_default=True,
            help="Seconds to keep retrying failing checks.",
        ),
        click.option("--interval", type=float, default=5, show_default=True, help="Seconds between rounds of retries."),
        click.option("--request-timeout", type=float, default=10, show_default=True, help="Seconds per request."),
        click.option("--ca-file", envvar="TENANT_DR_HTTP_CA_FILE", default=None, help="CA bundle for https."),
        click.option("--insecure", is_flag=True, default=False, help="Do not verify TLS certificates."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


# ---- validate http ------------------------------------------------------------------------------


class HttpTestSpec(BaseModel):
    """One system test in the spec file."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    path: str
    method: str = "GET"
    expect_status: list[int] = Field(default_factory=lambda: [200])
    body_contains: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    follow_redirects: bool = False

    @field_validator("expect_status", mode="before")
    @classmethod
    def _status_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) else value

    @field_validator("body_contains", mode="before")
    @classmethod
    def _marker_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value


def load_tests(text: str, where: str) -> list[HttpTestSpec]:
    """Parse a YAML/JSON list of tests (or ``{"tests": [...]}``); usage error on a bad spec."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{where} is not valid YAML/JSON: {' '.join(str(exc).split())[:200]}") from exc
    if isinstance(data, dict) and "tests" in data:
        data = data["tests"]
    if not isinstance(data, list) or not data:
        raise UsageError(f"{where} holds no tests", hint="a list of {path, expect_status, body_contains, method}")
    try:
        tests = [HttpTestSpec.model_validate(item) for item in data]
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"{where}: test field {loc or '?'}: {first['msg']}") from exc
    names = [t.name or f"{t.method.upper()} {t.path}" for t in tests]
    if len(set(names)) != len(names):
        raise UsageError(f"{where} has duplicate test names", hint="give tests distinct 'name' fields")
    return tests


@action(cli, "http")
@click.option("--base-url", envvar="TENANT_DR_BASE_URL", required=True, help="e.g. https://app.example.com")
@click.option("--tests-file", envvar="TENANT_DR_TESTS_FILE", default=None, help="YAML/JSON file with the tests.")
@click.option("--tests-json", envvar="TENANT_DR_TESTS_JSON", default=None, help="The tests inline as JSON.")
@click.option("--header", "headers", multiple=True, help="Extra 'Name: value' header on every request (not secret).")
@click.option(
    "--precheck",
    "prechecks",
    multiple=True,
    metavar="'MODULE verify ARGS'",
    help=f"A verify step ({'/'.join(PRECHECK_MODULES)}) that must pass before any test runs (shell-quoted; run "
    "as python -m steps.MODULE with this step's environment), e.g. 'dns verify --zone example.com --record "
    "app.example.com --target lb.example.net --no-probe'. Repeatable; when one fails, no test runs and the step "
    "exits like it (3: the state the tests assume is not in place).",
)
@probe_options
def http_tests(
    base_url: str,
    tests_file: str | None,
    tests_json: str | None,
    headers: tuple[str, ...],
    prechecks: tuple[str, ...],
    deadline: float,
    interval: float,
    request_timeout: float,
    ca_file: str | None,
    insecure: bool,
) -> dict[str, Any]:
    """Run HTTP system tests against --base-url until they pass or --deadline (exit 3 wrong answer, 1 no answer)."""
    if bool(tests_file) == bool(tests_json):
        raise UsageError("pass exactly one of --tests-file and --tests-json")
    if not base_url.startswith(("http://", "https://")):
        raise UsageError(f"--base-url {base_url!r} is not an http(s) URL")
    if tests_file:
        try:
            text, where = Path(tests_file).read_text(encoding="utf-8"), tests_file
        except OSError as exc:
            raise UsageError(f"cannot read {tests_file}: {exc.strerror}") from exc
    else:
        text, where = str(tests_json), "--tests-json"
    extra: dict[str, str] = {}
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header {header!r} is not 'Name: value'")
        extra[name.strip()] = value.strip()
    checks = [
        HttpCheck(
            name=t.name or f"{t.method.upper()} {t.path}",
            url=base_url.rstrip("/") + t.path,
            method=t.method.upper(),
            expect_status=tuple(t.expect_status),
            body_contains=tuple(t.body_contains),
            headers={**extra, **t.headers},
            follow_redirects=t.follow_redirects,
        )
        for t in load_tests(text, where)
    ]
    run_prechecks([parse_precheck(p) for p in prechecks])
    results = run_checks(
        checks,
        deadline_s=deadline,
        interval_s=interval,
        request_timeout_s=request_timeout,
        verify=tls_verify(ca_file, insecure),
    )
    print_table(
        f"HTTP system tests against {base_url}",
        ["test", "result", "status", "attempts", "detail"],
        [[r.name, "PASS" if r.ok else "FAIL", str(r.status or "-"), str(r.attempts), r.problem or ""] for r in results],
    )
    report = [r.as_dict() for r in results]
    write_output("report", report)
    raise_for_checks(results, "HTTP system tests", deadline)
    return {"base_url": base_url, "passed": len(results), "tests": report}


def parse_precheck(text: str) -> tuple[str, list[str]]:
    """``'MODULE verify ARGS'`` -> (module, args); usage error for anything else."""
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"--precheck {text!r}: {exc}") from exc
    if len(argv) < 2 or argv[0] not in PRECHECK_MODULES or argv[1] != "verify":
        raise UsageError(
            f"--precheck {text!r} is not 'MODULE verify ARGS'",
            hint=f"MODULE is one of {', '.join(PRECHECK_MODULES)}, e.g. 'dns verify ... --no-probe'",
        )
    return argv[0], argv[2:]


def run_prechecks(prechecks: Sequence[tuple[str, list[str]]]) -> None:
    """Run each precheck's verify in turn (all of them); raise like the worst failure, naming every failed one."""
    log = get_logger()
    failed: list[ComponentCheck] = []
    for module, args in prechecks:
        row = run_verify(module, args, dict(os.environ), PRECHECK_TIMEOUT_S)
        log.info("precheck", step=f"{module} verify", status=row.status, detail=row.detail or None)
        if row.status != "pass":
            row.component = f"{module} verify"
            failed.append(row)
    if failed:
        worst = next(code for code in _STATUS_ORDER if any(r.exit_code == code for r in failed))
        shown = "; ".join(f"{r.component}: {r.detail.split(' (hint: ')[0]}" for r in failed)
        raise _ERRORS[worst](
            f"precheck failed, no system test was run: {shown}",
            hint="the state the tests assume is not in place; after an automatic rollback of a DR cutover "
            "resubmit the workflow instead of retrying it",
        )


# ---- validate data ------------------------------------------------------------------------------


def _n(count: int, word: str) -> str:
    return f"{count} {word if count == 1 else word + 's'}"


def expected_summary(manifest: ComponentManifest) -> str:
    """What the manifest's fingerprints promise, in a few words (for the table)."""
    fp = manifest.fingerprints
    if manifest.component == "postgres":
        dbs = fp.get("databases", {})
        tables = [t for db in dbs.values() for t in db.get("tables", {}).values()]
        rows = sum(int(t.get("rows", 0)) for t in tables)
        return f"{_n(len(dbs), 'database')}, {_n(len(tables), 'table')}, {_n(rows, 'row')}"
    if manifest.component == "redis":
        dbs = fp.get("databases", {})
        return f"{_n(sum(int(v.get('keys', 0)) for v in dbs.values()), 'key')} in {_n(len(dbs), 'database')}"
    if manifest.component == "elasticsearch":
        docs = fp.get("doc_counts", {})
        indices = f"{len(docs)} {'index' if len(docs) == 1 else 'indices'}"
        return f"{indices}, {_n(sum(int(v) for v in docs.values()), 'doc')}"
    if manifest.component == "cassandra":
        per_ks = fp.get("tables_per_keyspace", {})
        return f"{_n(len(per_ks), 'keyspace')}, {_n(sum(len(t) for t in per_ks.values()), 'table')}"
    if manifest.component == "argo":
        return ", ".join(f"{len(v)} {k}" for k, v in sorted(fp.items()) if isinstance(v, list)) or "no objects"
    return _n(len(manifest.objects), "object")


@dataclass
class ComponentCheck:
    """One row of the data validation."""

    component: str
    status: str  # pass | fail | error | skipped
    exit_code: int
    expected: str = ""
    observed: str = ""
    detail: str = ""
    seconds: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON form (the ``report`` output)."""
        return {
            "component": self.component,
            "status": self.status,
            "exit_code": self.exit_code,
            "expected": self.expected,
            "observed": self.observed,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
        }


def parse_component_args(values: Sequence[str]) -> dict[str, list[str]]:
    """``name=ARGS`` (shell-quoted) -> extra argv per component."""
    out: dict[str, list[str]] = {}
    for value in values:
        name, sep, args = value.partition("=")
        if not sep or name.strip() not in KNOWN_COMPONENTS:
            raise UsageError(
                f"--component-args {value!r} is not COMPONENT=ARGS",
                hint=f"COMPONENT is one of {', '.join(KNOWN_COMPONENTS)}",
            )
        try:
            out.setdefault(name.strip(), []).extend(shlex.split(args))
        except ValueError as exc:
            raise UsageError(f"--component-args {name}: {exc}") from exc
    return out


def run_verify(
    comp: str,
    argv: list[str],
    env: dict[str, str],
    timeout: float,
) -> ComponentCheck:
    """Run ``python -m steps.<comp> verify`` and turn its exit code and JSON result into a row."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"tdr-validate-{comp}-") as out_dir:
        try:
            proc = subprocess.run(
                [sys.executable, "-m", f"steps.{comp}", "verify", *argv],
                env={**env, "STEP_OUTPUT_DIR": out_dir},
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return ComponentCheck(
                comp, "error", ExitCode.TRANSIENT, detail=f"verify did not finish within {timeout:g}s", seconds=timeout
            )
    seconds = time.monotonic() - start
    # The child's JSON log lines become part of this step's log (they are already redacted).
    sys.stderr.write(proc.stderr if proc.stderr.endswith("\n") or not proc.stderr else proc.stderr + "\n")
    result: dict[str, Any] = {}
    for line in reversed(proc.stdout.splitlines()):
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(parsed, dict):
            result = parsed
            break
    code = proc.returncode
    if code == 0:
        observed = {k: v for k, v in result.items() if k not in _RESULT_NOISE}
        return ComponentCheck(comp, "pass", 0, observed=_short(observed), seconds=seconds, result=result)
    detail = _short(str(result.get("error") or tail(proc.stderr.splitlines(), 2) or f"exit {code}"), 400)
    status = "fail" if code == ExitCode.INTEGRITY else "error"
    return ComponentCheck(comp, status, code if code in (1, 2, 3) else 1, detail=detail, seconds=seconds, result=result)


@action(cli, "data")
@catalog_options
@click.option("--run-id", envvar="TENANT_DR_RUN_ID", default="latest", show_default=True, help="Run that was restored.")
@click.option(
    "--components",
    envvar="TENANT_DR_COMPONENTS",
    default=None,
    help="Comma-separated components to check (default: every component of the run).",
)
@click.option(
    "--component-args",
    "component_args",
    multiple=True,
    help="Extra flags for one component's verify, e.g. 'redis=--timeout 30' or "
    "'elasticsearch=--password-file /s/es/password' (repeatable; never secrets themselves).",
)
@click.option(
    "--timeout",
    envvar="TENANT_DR_VALIDATE_TIMEOUT",
    type=float,
    default=3600,
    show_default=True,
    help="Seconds one component's verify may take.",
)
@click.option("--parallel", type=int, default=3, show_default=True, help="Components verified at the same time.")
def data(
    catalog: Catalog,
    tenant: str,
    run_id: str,
    components: str | None,
    component_args: tuple[str, ...],
    timeout: float,
    parallel: int,
) -> dict[str, Any]:
    """Run each restored component's verify against the target and print one pass/fail table (exit 3 on mismatch)."""
    log = get_logger()
    if parallel < 1:
        raise UsageError("--parallel must be at least 1")
    wanted = [c.strip() for c in components.split(",") if c.strip()] if components else None
    unknown = sorted(set(wanted or []) - set(KNOWN_COMPONENTS))
    if unknown:
        raise UsageError(f"unknown component(s) {', '.join(unknown)}", hint=f"use {', '.join(KNOWN_COMPONENTS)}")
    extra = parse_component_args(component_args)
    resolved = catalog.resolve(run_id, wanted[0] if wanted and len(wanted) == 1 else None)
    info = next(r for r in catalog.list_runs() if r.run_id == resolved)
    selected = wanted or sorted(info.components)
    if not selected:
        raise IntegrityError(f"run {resolved} has no component manifests", hint="pick another run with --run-id")
    rows: dict[str, ComponentCheck] = {}
    manifests: dict[str, ComponentManifest] = {}
    for comp in selected:
        if comp not in info.components:
            rows[comp] = ComponentCheck(comp, "fail", ExitCode.INTEGRITY, detail=f"run {resolved} has no {comp} backup")
        elif comp not in KNOWN_COMPONENTS:
            rows[comp] = ComponentCheck(comp, "error", ExitCode.USAGE, detail=f"no verify step for {comp!r}")
        else:
            manifests[comp] = catalog.read_manifest(resolved, comp)
    base = ["--tenant", tenant, "--store", catalog.store.url, "--run-id", resolved]
    env = dict(os.environ)
    log.info("verifying components", run_id=resolved, components=sorted(manifests))
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = {
            comp: pool.submit(run_verify, comp, [*base, *extra.get(comp, [])], env, timeout) for comp in manifests
        }
        for comp, future in futures.items():
            rows[comp] = future.result()
            rows[comp].expected = expected_summary(manifests[comp])
    for comp in sorted(info.components - set(selected)):
        rows[comp] = ComponentCheck(comp, "skipped", 0, detail="not in --components")
    ordered = [rows[c] for c in sorted(rows)]
    print_table(
        f"Data validation of tenant {tenant!r} against run {resolved}",
        ["component", "result", "expected (manifest)", "observed (verify)", "detail", "s"],
        [[r.component, r.status.upper(), r.expected, r.observed, r.detail, f"{r.seconds:.1f}"] for r in ordered],
    )
    report = {"run_id": resolved, "components": [r.as_dict() for r in ordered]}
    write_output("report", report)
    write_output("run-id", resolved)
    failed = [r for r in ordered if r.status in ("fail", "error")]
    if failed:
        worst = next(code for code in _STATUS_ORDER if any(r.exit_code == code for r in failed))
        shown = "; ".join(f"{r.component}: {r.detail.split(' (hint: ')[0]}" for r in failed)
        raise _ERRORS[worst](
            f"{len(failed)} of {len(selected)} components failed validation against run {resolved}: {shown}",
            hint="see the table above; 'fail' = differs from the backup, 'error' = could not check",
        )
    return {"run_id": resolved, "passed": [r.component for r in ordered if r.status == "pass"], **report}


if __name__ == "__main__":
    from steps.runtime import run

    run(cli)
