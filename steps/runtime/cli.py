"""The step contract: flags with env fallbacks, exit codes, outputs, JSON logs, one-line results.

A component module builds a click group with :func:`component`, adds actions with :func:`action`
and ends with ``if __name__ == "__main__": run(cli)``. Actions return a dict that becomes part of
the final JSON result line on stdout; they raise :class:`~steps.runtime.errors.StepError` on failure.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from steps.runtime import log
from steps.runtime.errors import ExitCode, StepError, Terminated, UsageError

F = TypeVar("F", bound=Callable[..., Any])

OUTPUT_DIR_ENV = "STEP_OUTPUT_DIR"
DEFAULT_OUTPUT_DIR = "/tmp/outputs"
_CONTEXT_FIELDS = ("tenant", "run_id")


def output_dir() -> Path:
    """Where output parameter files go (``$STEP_OUTPUT_DIR``, default ``/tmp/outputs``)."""
    return Path(os.environ.get(OUTPUT_DIR_ENV, DEFAULT_OUTPUT_DIR))


def write_output(name: str, value: Any) -> None:
    """Write one Argo output parameter file; dicts and lists are written as JSON."""
    directory = output_dir()
    directory.mkdir(parents=True, exist_ok=True)
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    (directory / name).write_text(log.redact(text), encoding="utf-8")


def read_setting(*, what: str, env: str, file: str | Path | None = None) -> str | None:
    """A non-secret value (e.g. a user name) from a mounted file or an env var; ``None`` when unset."""
    if file:
        try:
            return Path(file).read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise UsageError(
                f"cannot read {what} from {file}: {exc.strerror}",
                hint="mount the Secret at that path or set " + env,
            ) from exc
    return os.environ.get(env) or None


def read_secret(
    *,
    what: str,
    env: str,
    file: str | Path | None = None,
    required: bool = True,
) -> str | None:
    """Read a secret from a mounted file (preferred) or an env var, and register it for redaction.

    Secrets never come from flag values: ``--password-file`` names a file, never the secret itself.
    """
    value: str | None = None
    if file:
        try:
            value = Path(file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise UsageError(
                f"cannot read {what} from {file}: {exc.strerror}",
                hint="mount the Secret at that path or set " + env,
            ) from exc
    else:
        value = os.environ.get(env) or None
    if value is None and required:
        raise UsageError(f"{what} is not set", hint=f"set {env} (from a secretKeyRef) or pass a --*-file")
    log.register_secret(value)
    return value


def component(name: str, help_text: str) -> click.Group:
    """The click group for ``python -m steps.<name>``."""
    group = click.Group(name=f"steps.{name}", help=help_text)
    group.context_settings = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
    return group


def action(group: click.Group, name: str | None = None, help_text: str | None = None) -> Callable[[F], F]:
    """Register ``fn`` as an action of ``group``; the wrapper logs start/finish and collects the result."""

    def decorate(fn: F) -> F:
        action_name = name or fn.__name__.replace("_", "-")

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> dict[str, Any]:
            component_name = (group.name or "").removeprefix("steps.")
            log.bind(
                step=f"{component_name}.{action_name}",
                component=component_name,
                **{k: kwargs.get(k) for k in _CONTEXT_FIELDS},
            )
            shown = {
                k: v
                for k, v in kwargs.items()
                if isinstance(v, str | int | float | bool | tuple | list | None) and k not in _CONTEXT_FIELDS
            }
            log.get_logger().info("start", args=shown)
            result = fn(**kwargs) or {}
            return {"component": component_name, "action": action_name, **result}

        cmd = click.command(name=action_name, help=help_text or fn.__doc__)(wrapper)
        group.add_command(cmd)
        return fn

    return decorate


# ---- common options -----------------------------------------------------------------------------


def tenant_option(fn: F) -> F:
    """``--tenant`` (env ``TENANT_DR_TENANT``)."""
    return click.option("--tenant", envvar="TENANT_DR_TENANT", required=True, help="Tenant name (catalog prefix).")(fn)


def run_id_option(*, default: str | None = None, help_text: str | None = None) -> Callable[[F], F]:
    """``--run-id`` (env ``TENANT_DR_RUN_ID``)."""
    return click.option(
        "--run-id",
        envvar="TENANT_DR_RUN_ID",
        default=default,
        show_default=default is not None,
        help=help_text or "Backup run id (YYYYMMDDTHHMMSSZ-xxxxxx), or 'latest'.",
    )


def confirm_option(fn: F) -> F:
    """``--confirm``: without it, destructive actions only print their plan."""
    return click.option(
        "--confirm", is_flag=True, default=False, help="Really do it; without this only the plan is printed."
    )(fn)


# ---- main ---------------------------------------------------------------------------------------


def _emit_result(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(log.redact(result), sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def _timed() -> Iterator[Callable[[], float]]:
    start = time.monotonic()
    yield lambda: round(time.monotonic() - start, 3)


def _terminate(_signum: int, _frame: Any) -> None:
    """The first SIGTERM unwinds the step (see :class:`Terminated`); later ones must not cut its cleanup short."""
    signal.signal(signal.SIGTERM, _already_terminating)
    raise Terminated()


def _already_terminating(_signum: int, _frame: Any) -> None:
    # a Python handler, not SIG_IGN: an ignored disposition would be inherited by the children cleanup starts
    log.get_logger().warning("SIGTERM again; still cleaning up")


def run(group: click.Group, argv: list[str] | None = None) -> NoReturn:
    """Parse ``argv``, run the action, print the JSON result and exit with the contract's code.

    SIGTERM (what Argo and the kubelet send before SIGKILL) raises :class:`Terminated` in the action,
    so its ``finally`` blocks and undo paths run within the pod's grace period.
    """
    log.configure()
    logger = log.get_logger()
    signal.signal(signal.SIGTERM, _terminate)
    with _timed() as elapsed:
        code = ExitCode.OK
        result: dict[str, Any]
        try:
            rv = group.main(args=argv, prog_name=f"python -m {group.name}", standalone_mode=False)
            if isinstance(rv, int) or rv is None:  # --help or a bare group invocation
                sys.exit(int(rv or 0))
            result = {"ok": True, **rv}
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            code = ExitCode.USAGE
            hint = f"see 'python -m {group.name} --help'"
            result = {"ok": False, "error": f"{exc.format_message()} (hint: {hint})"}
        except click.Abort:
            code = ExitCode.TRANSIENT
            result = {"ok": False, "error": "aborted"}
        except StepError as exc:
            code = exc.exit_code
            result = {"ok": False, "error": exc.one_line()}
        except KeyboardInterrupt:
            code = ExitCode.TRANSIENT
            result = {"ok": False, "error": "interrupted"}
        except Terminated as exc:
            code = ExitCode.TRANSIENT
            result = {"ok": False, "error": str(exc)}
        except Exception as exc:
            code = ExitCode.TRANSIENT
            where = traceback.extract_tb(exc.__traceback__)[-1]
            result = {
                "ok": False,
                "error": f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())} "
                f"(at {Path(where.filename).name}:{where.lineno}; hint: this is a bug if it repeats)",
            }
            logger.error("traceback", exc_info=exc)
        result["exit_code"] = int(code)
        result["duration_s"] = elapsed()
    if code == ExitCode.OK:
        logger.info("finish", duration_s=result["duration_s"], bytes=result.get("bytes"))
    else:
        logger.error("finish", duration_s=result["duration_s"], exit_code=int(code), error=result["error"])
        if sys.stderr.isatty():
            sys.stderr.write(f"error: {log.redact(result['error'])}\n")
    _emit_result(result)
    sys.exit(int(code))
