"""Helpers shared by the PostgreSQL and Redis integration tests."""

from __future__ import annotations

import os
import threading
from pathlib import Path


class CmdlineWatch:
    """Samples every process's argv (``/proc/*/cmdline``, what ``ps`` shows) in a thread."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.seen: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit() or int(entry.name) == me:
                    continue
                try:
                    raw = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if raw:
                    self.seen[int(entry.name)] = raw.replace(b"\0", b" ").decode(errors="replace")
            self._stop.wait(self.interval)

    def __enter__(self) -> CmdlineWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def matching(self, word: str) -> list[str]:
        """Command lines that contain ``word``."""
        return [c for c in self.seen.values() if word in c]


def corrupt_middle(path: Path) -> None:
    """Flip bytes in the middle of a stored object, keeping its size."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    for i in range(mid, min(mid + 64, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
