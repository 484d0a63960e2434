"""Progress of long transfers: a JSON log line every few seconds, or a rich bar on a terminal."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import Any

from rich.progress import (
    BarColumn,
    DownloadColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichProgress

from steps.runtime.log import get_logger

DEFAULT_INTERVAL_S = 5.0


def human_bytes(n: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


class Progress:
    """Counts bytes of one transfer; thread-safe ``update``.

    Use as a context manager. When stderr is a terminal a rich progress bar is drawn; otherwise a
    ``progress`` log line with bytes and rate is written every ``interval`` seconds.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        interval: float = DEFAULT_INTERVAL_S,
        tty: bool | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.interval = interval
        self.done = 0
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_report = self._started
        self._tty = sys.stderr.isatty() if tty is None else tty
        self._bar: RichProgress | None = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self._tty:
            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TimeElapsedColumn(),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def update(self, n: int) -> None:
        """Add ``n`` bytes."""
        with self._lock:
            self.done += n
            now = time.monotonic()
            due = now - self._last_report >= self.interval
            if due:
                self._last_report = now
        if self._bar is not None:
            self._bar.update(self._task, advance=n)
        elif due:
            self._report("progress")

    def rate(self) -> float:
        """Bytes per second since start."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        return self.done / elapsed

    def _report(self, msg: str) -> None:
        fields: dict[str, Any] = {
            "transfer": self.label,
            "bytes": self.done,
            "human": human_bytes(self.done),
            "rate_mib_s": round(self.rate() / 2**20, 2),
        }
        if self.total:
            fields["percent"] = round(100 * self.done / self.total, 1)
        get_logger().info(msg, **fields)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
        if exc_type is None:
            self._report("transfer done")
