"""The shared lifecycle of the HTTP-level fakes: a werkzeug server on a free 127.0.0.1 port."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class QuietHandler(WSGIRequestHandler):
    """No access log on the test's stderr."""

    def log(self, type: str, message: str, *args: Any) -> None:
        """Drop werkzeug's per-request log line."""


class ServedFake:
    """Serve ``self._wsgi`` in a background thread; use as a context manager."""

    _server: BaseWSGIServer | None = None
    _thread: threading.Thread | None = None

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        assert self._server is not None, "fake not started"
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> Self:
        """Serve on a free port in a background thread."""
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
