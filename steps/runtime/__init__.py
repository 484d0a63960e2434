"""Step runtime: the contract every ``python -m steps.<component>`` obeys (see DESIGN.md)."""

from steps.runtime.cli import (
    action,
    component,
    confirm_option,
    output_dir,
    read_secret,
    read_setting,
    run,
    run_id_option,
    tenant_option,
    write_output,
)
from steps.runtime.errors import ExitCode, IntegrityError, StepError, Terminated, TransientError, UsageError
from steps.runtime.log import get_logger, redact, register_secret
from steps.runtime.progress import Progress, human_bytes

__all__ = [
    "ExitCode",
    "IntegrityError",
    "Progress",
    "StepError",
    "Terminated",
    "TransientError",
    "UsageError",
    "action",
    "component",
    "confirm_option",
    "get_logger",
    "human_bytes",
    "output_dir",
    "read_secret",
    "read_setting",
    "redact",
    "register_secret",
    "run",
    "run_id_option",
    "tenant_option",
    "write_output",
]
