"""JSON log lines on stderr with secret redaction (structlog)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "***"
_MIN_SECRET_LEN = 4
_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is masked in every log line and result."""
    if value and len(value) >= _MIN_SECRET_LEN:
        with _lock:
            _secrets.add(value)
            # URL-encoded forms show up in connection strings.
            from urllib.parse import quote

            _secrets.add(quote(value, safe=""))


def clear_secrets() -> None:
    """Forget every registered secret (tests)."""
    with _lock:
        _secrets.clear()


def redact(value: Any) -> Any:
    """Return ``value`` with every registered secret replaced by ``***`` (recursing into containers)."""
    if isinstance(value, str):
        with _lock:
            secrets = sorted(_secrets, key=len, reverse=True)
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, Mapping):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, bytes):
        return redact(value.decode("utf-8", "replace"))
    return value


def _redact_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    return {k: redact(v) for k, v in event.items()}


def _rename_event(_: Any, __: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    """Put ``ts level msg`` first, then the context fields, then the rest."""
    msg = event.pop("event", "")
    head = {"ts": event.pop("ts", None), "level": event.pop("level", None), "msg": msg}
    return {**head, **event}


def configure(stream: TextIO | None = None) -> None:
    """Send one JSON object per line to ``stream`` (default stderr)."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            _rename_event,
            structlog.processors.format_exc_info,
            _redact_processor,
            structlog.processors.JSONRenderer(sort_keys=False, default=str),
        ],
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def bind(**context: Any) -> None:
    """Add fields (step, component, tenant, run_id, ...) to every following log line."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in context.items() if v is not None})


def get_logger() -> Any:
    """The step logger: ``log.info("msg", key=value)``."""
    return structlog.get_logger()


def tail(lines: Iterable[str], limit: int = 5) -> str:
    """The last ``limit`` non-empty lines joined with `` | `` (for one-line error messages)."""
    kept = [ln.strip() for ln in lines if ln.strip()][-limit:]
    return " | ".join(kept)
