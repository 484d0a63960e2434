"""``tenant-dr submit``: submit a WorkflowTemplate through the Argo Server REST API.

``POST <server>/api/v1/workflows/<namespace>/submit`` with ``resourceKind: WorkflowTemplate``,
``resourceName`` and ``submitOptions.parameters`` (``NAME=VALUE`` strings), authenticated with a bearer
token (``argo auth token`` or a ServiceAccount token) from ``ARGO_TOKEN`` or a file. The token is sent only in
the ``Authorization`` header and never printed. Standard library only (the CLI has no HTTP dependency).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


class SubmitError(Exception):
    """A one-line failure; ``code`` is the CLI exit code (2 bad input/refused, 1 transient)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Submitted:
    """The created workflow."""

    name: str
    namespace: str
    link: str


def server_url(server: str) -> str:
    """``ARGO_SERVER`` may be ``host:port`` (as the argo CLI takes it) or a URL; default scheme https."""
    server = server.strip().rstrip("/")
    if not server:
        raise SubmitError("no Argo Server given: pass --server or set ARGO_SERVER", 2)
    return server if server.startswith(("http://", "https://")) else f"https://{server}"


def bearer(token: str) -> str:
    """The Authorization header value (``argo auth token`` already prints ``Bearer ...``)."""
    token = token.strip()
    if not token:
        raise SubmitError("the Argo token is empty: set ARGO_TOKEN or pass --token-file", 2)
    return token if token.lower().startswith("bearer ") else f"Bearer {token}"


def submit_template(
    server: str,
    namespace: str,
    template: str,
    parameters: dict[str, str],
    token: str,
    *,
    ui_url: str | None = None,
    insecure: bool = False,
    timeout: float = 30.0,
) -> Submitted:
    """Submit ``template`` with ``parameters``; :class:`SubmitError` naming what failed."""
    base = server_url(server)
    body = {
        "namespace": namespace,
        "resourceKind": "WorkflowTemplate",
        "resourceName": template,
        "submitOptions": {"parameters": [f"{k}={v}" for k, v in parameters.items()]},
    }
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's Argo Server (http/https only)
        f"{base}/api/v1/workflows/{namespace}/submit",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": bearer(token), "Content-Type": "application/json", "Accept": "application/json"},
    )
    context = ssl._create_unverified_context() if insecure else None  # noqa: S323 - explicit --insecure
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            created: dict[str, Any] = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = _message(exc)
        if exc.code in (401, 403):
            raise SubmitError(
                f"the Argo Server refused the token ({exc.code}{detail}); check ARGO_TOKEN and its RBAC", 2
            ) from exc
        if exc.code == 404:
            raise SubmitError(f"WorkflowTemplate {namespace}/{template} not found ({exc.code}{detail})", 2) from exc
        if exc.code >= 500 or exc.code == 429:
            raise SubmitError(f"the Argo Server failed ({exc.code}{detail}); try again", 1) from exc
        raise SubmitError(f"the Argo Server rejected the submission ({exc.code}{detail})", 2) from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SubmitError(f"cannot reach the Argo Server at {base}: {reason}", 1) from exc
    except json.JSONDecodeError as exc:
        raise SubmitError(f"the Argo Server at {base} answered with invalid JSON", 1) from exc
    name = str((created.get("metadata") or {}).get("name") or "")
    if not name:
        raise SubmitError("the Argo Server's answer names no workflow", 1)
    ns = str((created.get("metadata") or {}).get("namespace") or namespace)
    link = f"{(ui_url or base).rstrip('/')}/workflows/{ns}/{name}"
    return Submitted(name, ns, link)


def _message(exc: urllib.error.HTTPError) -> str:
    try:
        data = json.loads(exc.read() or b"{}")
    except (json.JSONDecodeError, OSError):
        return ""
    message = data.get("message") if isinstance(data, dict) else None
    return f": {' '.join(str(message).split())[:300]}" if message else ""
