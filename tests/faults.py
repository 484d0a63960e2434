"""A fault-injecting TCP proxy for reliability tests (loopback only).

``FaultProxy(upstream_port)`` listens on a free 127.0.0.1 port and forwards to the upstream. Faults:

- ``reset_after``: after N bytes from the client on a connection, reset it (RST) — like a dropped
  NAT entry or a load balancer restart mid-upload;
- ``reset_down_after``: after N bytes from the upstream, reset it — a reset mid-download (used when
  ``stall_after`` is not set);
- ``stall_after``: after N bytes from the upstream, stop forwarding for ``stall_seconds``;
- ``every``: inject on every k-th connection only (1 = every connection); ``max_faults`` caps them;
- ``max_injected``: caps the faults actually injected (``injected`` counts them).

Every loop is bounded; the proxy stops with its context manager.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

from tests.harness import free_port


@dataclass
class FaultPlan:
    """What to break and how often."""

    reset_after: int | None = None
    reset_down_after: int | None = None
    stall_after: int | None = None
    stall_seconds: float = 0.0
    every: int = 1
    max_faults: int = 1_000
    max_injected: int | None = None


@dataclass
class FaultProxy:
    """A TCP proxy on 127.0.0.1 that injects faults per :class:`FaultPlan`."""

    upstream_port: int
    plan: FaultPlan = field(default_factory=FaultPlan)
    port: int = field(default_factory=free_port)
    faults: int = 0
    injected: int = 0
    connections: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> FaultProxy:
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", self.port))
        self._server.listen(64)
        self._server.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.close()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def _take_fault(self, conn_no: int) -> bool:
        with self._lock:
            if conn_no % self.plan.every == 0 and self.faults < self.plan.max_faults:
                self.faults += 1
                return True
            return False

    def _inject(self) -> bool:
        with self._lock:
            if self.plan.max_injected is not None and self.injected >= self.plan.max_injected:
                return False
            self.injected += 1
            return True

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                conn_no = self.connections
            threading.Thread(target=self._serve, args=(client, conn_no), daemon=True).start()

    def _serve(self, client: socket.socket, conn_no: int) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        except OSError:
            client.close()
            return
        faulty = self._take_fault(conn_no)
        done = threading.Event()

        def pump(src: socket.socket, dst: socket.socket, limit: int | None, action: str) -> None:
            sent = 0
            src.settimeout(0.5)
            deadline = time.monotonic() + 600  # bounded: no connection lives forever
            try:
                while not done.is_set() and not self._stop.is_set() and time.monotonic() < deadline:
                    try:
                        data = src.recv(65536)
                    except TimeoutError:
                        continue
                    if not data:
                        break
                    if faulty and limit is not None and sent + len(data) > limit and self._inject():
                        if action == "reset":
                            for s in (client, upstream):  # RST instead of FIN
                                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                            break
                        time.sleep(self.plan.stall_seconds)  # stall, then carry on
                        limit = None
                    dst.sendall(data)
                    sent += len(data)
            except OSError:
                pass
            finally:
                done.set()

        plan = self.plan
        down = (plan.stall_after, "stall") if plan.stall_after is not None else (plan.reset_down_after, "reset")
        threads = [
            threading.Thread(target=pump, args=(client, upstream, self.plan.reset_after, "reset"), daemon=True),
            threading.Thread(target=pump, args=(upstream, client, *down), daemon=True),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=700)
        for s in (client, upstream):
            with contextlib.suppress(OSError):
                s.close()
