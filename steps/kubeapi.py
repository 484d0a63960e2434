"""How a step reaches a tenant's Kubernetes API: in-cluster, or a kubeconfig file (mounted Secret)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from steps.runtime.errors import TransientError, UsageError

F = TypeVar("F", bound=Callable[..., Any])


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
        if status in (401, 403):
            return UsageError(
                f"{what}: forbidden ({status} {reason})",
                hint="check the ServiceAccount's Role or the kubeconfig's credentials",
            )
        if status in (408, 429) or status >= 500:
            return TransientError(f"{what}: API server error {status} {reason}")
        return UsageError(f"{what}: API error {status} {reason}")
    return TransientError(
        f"{what}: cannot reach the Kubernetes API ({type(exc).__name__}: {exc})",
        hint="check the API server address and network; Argo retries this step",
    )


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


__all__ = ["api_error", "kube_options", "load_api_client"]
