"""How a step reaches a tenant's Kubernetes API: in-cluster, or a kubeconfig file (mounted Secret)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from steps.runtime.errors import StepError, TransientError, UsageError

F = TypeVar("F", bound=Callable[..., Any])
REQUEST_TIMEOUT = (10, 60)  # connect, read seconds for one API call


def load_api_client(kubeconfig: str | None, context: str | None = None) -> Any:
    """A ``kubernetes.client.ApiClient`` from ``kubeconfig`` (a file path) or the in-cluster config.

    A missing or unreadable kubeconfig, or no in-cluster environment, is a usage error (exit 2).
    """
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        if kubeconfig:
            if not os.path.isfile(kubeconfig):
                raise UsageError(
                    f"kubeconfig {kubeconfig} does not exist",
                    hint="mount the tenant's kubeconfig Secret at that path, or omit --kubeconfig in-cluster",
                )
            return config.new_client_from_config(config_file=kubeconfig, context=context)
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    except ConfigException as exc:
        where = kubeconfig or "in-cluster service account"
        raise UsageError(
            f"cannot load Kubernetes config from {where}: {exc}",
            hint="pass --kubeconfig FILE (a mounted Secret) or run inside the cluster",
        ) from exc


def api_error(what: str, exc: Exception) -> Exception:
    """Translate a kubernetes ``ApiException`` / urllib3 error into a step error with the right exit code."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        status = exc.status or 0
        reason = (exc.reason or "").strip()
        if status == 404:
            return UsageError(f"{what}: not found (404)", hint="check the names and namespace in the tenant config")
        detail = _server_message(exc)
        if status in (401, 403):
            return UsageError(
                f"{what}: forbidden ({status} {reason}{detail})",
                hint="check the ServiceAccount's Role or the kubeconfig's credentials",
            )
        if status in (408, 429) or status >= 500:
            return TransientError(f"{what}: API server error {status} {reason}{detail}")
        return UsageError(f"{what}: API error {status} {reason}{detail}")
    return TransientError(
        f"{what}: cannot reach the Kubernetes API ({type(exc).__name__}: {exc})",
        hint="check the API server address and network; Argo retries this step",
    )


def _server_message(exc: Any) -> str:
    """``: <message>`` from a ``Status`` error body, or ``""``."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return f": {' '.join(str(message).split())[:300]}" if message else ""


def _is_transient(exc: BaseException) -> bool:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        return exc.status in (408, 429) or (exc.status or 0) >= 500
    return isinstance(exc, HTTPError | OSError)


def call_json(what: str, fn: Callable[..., Any], *args: Any, attempts: int = 3, **kwargs: Any) -> Any:
    """Call a generated client method (``CoreV1Api().read_namespaced_service`` ...) and return parsed JSON.

    The raw body is used (``_preload_content=False``): no model round trip, unknown fields survive.
    Transient failures (connection errors, 408/429/5xx) are retried ``attempts`` times with backoff;
    every failure becomes a step error via :func:`api_error` naming ``what``.
    """
    import tenacity

    kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
    kwargs["_preload_content"] = False
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=0.5, max=8),
        retry=tenacity.retry_if_exception(_is_transient),
        reraise=True,
    )
    try:
        response = retrying(fn, *args, **kwargs)
    except StepError:
        raise
    except Exception as exc:
        raise api_error(what, exc) from exc
    data = response.data
    try:
        return json.loads(data) if data else {}
    except ValueError as exc:
        raise TransientError(f"{what}: the API server answered with invalid JSON ({exc})") from exc


def kube_options(fn: F) -> F:
    """Add ``--kubeconfig`` / ``--kube-context`` (env ``TENANT_DR_KUBECONFIG``, ``TENANT_DR_KUBE_CONTEXT``)."""
    fn = click.option(
        "--kube-context", envvar="TENANT_DR_KUBE_CONTEXT", default=None, help="Context inside the kubeconfig."
    )(fn)
    return click.option(
        "--kubeconfig",
        envvar="TENANT_DR_KUBECONFIG",
        default=None,
        help="Kubeconfig file of the tenant's cluster (a mounted Secret); in-cluster config if omitted.",
    )(fn)


__all__ = ["api_error", "call_json", "kube_options", "load_api_client"]
