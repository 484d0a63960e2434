"""Helpers shared by the PostgreSQL and Redis integration tests."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def _parent(pid: int) -> int:
    """The parent pid from ``/proc/<pid>/stat`` (0 when the process is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        pid = _parent(pid)
        if pid == ancestor:
            return True
    return False


class CmdlineWatch:
    """Samples the argv (``/proc/*/cmdline``, what ``ps`` shows) of every process this test started.

    Only descendants of the test process count, so a parallel test worker's own commands (which may
    legitimately carry test passwords) cannot make this test fail.
    """

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
                if not _descends_from(int(entry.name), me):
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
