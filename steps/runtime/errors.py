"""Errors that carry the step contract's exit codes.

Library code raises these; only ``main()`` (see :mod:`steps.runtime.cli`) turns them into an exit.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes that drive Argo's retry expression."""

    OK = 0
    TRANSIENT = 1  # retried by Argo
    USAGE = 2  # bad flags or config: not retried
    INTEGRITY = 3  # precondition or integrity failure: not retried


class StepError(Exception):
    """A failure the user can act on: what failed, why, and how to fix it."""

    exit_code: ExitCode = ExitCode.TRANSIENT

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The error as a single line: ``message (hint: ...)``."""
        text = self.message if not self.hint else f"{self.message} (hint: {self.hint})"
        return " ".join(text.split())


class TransientError(StepError):
    """Network, timeout or server-side trouble: Argo retries the step."""

    exit_code = ExitCode.TRANSIENT


class UsageError(StepError):
    """Bad flag, bad config or missing secret: retrying will not help."""

    exit_code = ExitCode.USAGE


class IntegrityError(StepError):
    """A precondition or integrity check failed (missing backup, checksum mismatch, ...)."""

    exit_code = ExitCode.INTEGRITY


class Terminated(BaseException):
    """SIGTERM arrived (Argo stop or deadline, pod eviction): unwinds the step so its cleanup runs.

    A ``BaseException``, like ``KeyboardInterrupt``: handlers that catch ``Exception`` to retry or to
    carry on do not swallow it, while ``finally`` blocks and undo paths (``except BaseException``) run.
    """

    def __init__(self) -> None:
        super().__init__("terminated by SIGTERM (Argo stopped the step, its deadline passed, or the pod was evicted)")
