"""``python -m steps.elasticsearch``: snapshot a tenant's indices into an S3 repository, restore, verify, prune.

Elasticsearch writes the snapshot data to S3 itself (repository-s3); this step registers the
repository at ``<store prefix>/<tenant>/es-repository``, takes a snapshot with a client-generated name,
polls it to completion and records a manifest (snapshot name, indices, doc and primary-shard counts,
server version). Restores check the snapshot before touching anything, delete (or close) the target
indices by explicit name, restore, wait for green and compare doc counts with the manifest.

The client major must match the server: one ``GET /`` picks ``elasticsearch7`` for 7.x servers and
``elasticsearch`` (8.x) for 8.x and 9.x servers (9.x through REST compatibility mode).
"""

from __future__ import annotations

import base64
import fnmatch
import functools
import json
import logging
import re
import ssl
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlparse

import click
import urllib3
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from steps.runtime import (
    IntegrityError,
    StepError,
    TransientError,
    UsageError,
    action,
    component,
    confirm_option,
    get_logger,
    read_secret,
    read_setting,
    run_id_option,
    write_output,
)
from steps.runtime.errors import ExitCode
from steps.storage.catalog import Catalog
from steps.storage.manifest import ComponentManifest, utcnow
from steps.storage.options import catalog_options
from steps.storage.s3 import S3Store
from steps.storage.stream import verify as verify_object

COMPONENT = "elasticsearch"
SNAPSHOT_OBJECT = "snapshot.json"
TERMINAL_STATES = ("SUCCESS", "PARTIAL", "FAILED", "INCOMPATIBLE")
CAT_INDEX_COLUMNS = "index,status,health,pri,rep,docs.count"
CAT_SHARD_COLUMNS = "index,shard,prirep,state,unassigned.reason,node"
MAX_PATH_CHARS = 3000  # index names per request path; ES rejects request lines over 4 KiB
HEALTH_WAIT_CHUNK_S = 60  # one health call waits at most this long (then we ask again)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

cli = component(COMPONENT, "Elasticsearch snapshots in an S3 repository: backup, restore, verify, prune.")


# ---- connection -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EsSettings:
    """How to reach the cluster (no I/O happens until :func:`connect`)."""

    url: str
    username: str | None
    password: str | None
    ca_file: str | None
    request_timeout: float
    poll_interval: float
    repository: str


@dataclass(frozen=True)
class ServerInfo:
    """What ``GET /`` says about the server."""

    version: str
    major: int
    minor: int
    cluster_uuid: str
    cluster_name: str

    @property
    def version_tuple(self) -> tuple[int, ...]:
        """``(major, minor, patch)``."""
        return _version_tuple(self.version)


def es_options(fn: F) -> F:
    """Add ``--url --repository --username-file --password-file --ca-file`` and timeouts; pass ``es``."""

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        url = _check_url(kwargs.pop("url"))
        username_file, password_file = kwargs.pop("username_file"), kwargs.pop("password_file")
        ca_file = kwargs.pop("ca_file")
        username = read_setting(what="the Elasticsearch username", env="ES_USERNAME", file=username_file)
        password = read_secret(what="Elasticsearch password", env="ES_PASSWORD", file=password_file, required=False)
        if password and not username:
            raise UsageError(
                "an Elasticsearch password is set but no username", hint="set ES_USERNAME or --username-file"
            )
        if username and not password:
            raise UsageError(
                f"Elasticsearch user {username!r} has no password",
                hint="set ES_PASSWORD (from a secretKeyRef) or pass --password-file",
            )
        if ca_file and not url.startswith("https://"):
            raise UsageError("--ca-file needs an https:// --url", hint="drop --ca-file or use https")
        kwargs["es"] = EsSettings(
            url=url,
            username=username,
            password=password,
            ca_file=ca_file,
            request_timeout=float(kwargs.pop("request_timeout")),
            poll_interval=float(kwargs.pop("poll_interval")),
            repository=kwargs.pop("repository"),
        )
        return fn(**kwargs)

    options = [
        click.option(
            "--url",
            envvar="TENANT_DR_ES_URL",
            required=True,
            help="Elasticsearch URL, e.g. http://atlas-elasticsearch-master.atlas:9200 (no credentials in it).",
        ),
        click.option(
            "--repository",
            envvar="TENANT_DR_ES_REPOSITORY",
            default="tenant-dr",
            show_default=True,
            help="Snapshot repository name on the cluster.",
        ),
        click.option("--username-file", default=None, help="File holding the username (else env ES_USERNAME)."),
        click.option("--password-file", default=None, help="File holding the password (else env ES_PASSWORD)."),
        click.option("--ca-file", envvar="TENANT_DR_ES_CA_FILE", default=None, help="CA bundle for an https URL."),
        click.option("--request-timeout", type=float, default=60, show_default=True, help="Seconds per HTTP call."),
        click.option(
            "--poll-interval",
            envvar="TENANT_DR_ES_POLL_INTERVAL",
            type=float,
            default=5,
            show_default=True,
            help="Seconds between snapshot polls.",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


def _check_url(url: str) -> str:
    parsed = urlparse(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UsageError(f"Elasticsearch URL {url!r} is invalid", hint="use http(s)://host:port")
    if parsed.username or parsed.password:
        raise UsageError(
            "the Elasticsearch URL must not contain credentials",
            hint="put them in ES_USERNAME/ES_PASSWORD or --username-file/--password-file",
        )
    if parsed.query or parsed.fragment:
        raise UsageError(f"Elasticsearch URL {url!r} must not have a query or fragment")
    return url.strip().rstrip("/")


def probe(settings: EsSettings) -> ServerInfo:
    """One ``GET /`` (client-independent, urllib3) to learn the server version and cluster identity."""
    http = urllib3.PoolManager(
        cert_reqs=ssl.CERT_REQUIRED if settings.url.startswith("https://") else ssl.CERT_NONE,
        ca_certs=settings.ca_file,
    )
    headers = {"Accept": "application/json"}
    if settings.username:
        token = base64.b64encode(f"{settings.username}:{settings.password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    timeout = urllib3.Timeout(connect=10, read=settings.request_timeout)
    where = f"Elasticsearch at {settings.url}"
    try:
        for attempt in Retrying(
            stop=stop_after_attempt(3),
            wait=wait_exponential(multiplier=1, max=4),
            retry=retry_if_exception_type((urllib3.exceptions.NewConnectionError, urllib3.exceptions.ProtocolError)),
            reraise=True,
        ):
            with attempt:
                response = http.request("GET", settings.url + "/", headers=headers, timeout=timeout, retries=False)
    except urllib3.exceptions.SSLError as exc:
        raise UsageError(f"TLS to {where} failed: {exc}", hint="pass --ca-file with the cluster's CA") from exc
    except urllib3.exceptions.HTTPError as exc:
        raise TransientError(
            f"cannot reach {where}: {type(exc).__name__}: {exc}",
            hint="check --url and the Service/network; Argo retries this step",
        ) from exc
    status, body = response.status, _json_or_text(response.data)
    if status in (401, 403):
        etype, reason = _error_type_reason(body)
        raise UsageError(
            f"{where} rejected the credentials (HTTP {status} {etype}: {reason})",
            hint="check ES_USERNAME/ES_PASSWORD or the mounted --username-file/--password-file",
        )
    if status >= 500 or status in (408, 429):
        raise TransientError(f"{where} answered HTTP {status} to GET /", hint="the cluster is unhealthy; retried")
    version = body.get("version", {}) if isinstance(body, dict) else {}
    number = version.get("number") if isinstance(version, dict) else None
    if status != 200 or not isinstance(number, str) or not re.match(r"^\d+\.\d+", number):
        raise UsageError(f"{where} does not look like Elasticsearch (HTTP {status} to GET /)", hint="check --url")
    if version.get("distribution") == "opensearch":
        raise UsageError(f"{where} is OpenSearch {number}, which this step does not support")
    major, minor = _version_tuple(number)[:2]
    if (major, minor) >= (7, 14) and response.headers.get("X-Elastic-Product") != "Elasticsearch":
        raise UsageError(f"{where} claims version {number} but lacks the X-Elastic-Product header; not Elasticsearch")
    if major < 7 or major > 9:
        raise UsageError(
            f"{where} runs Elasticsearch {number}; supported servers are 7.x, 8.x and 9.x",
            hint="the client major must match the server; this step ships elasticsearch7 and elasticsearch 8.x",
        )
    return ServerInfo(number, major, minor, str(body.get("cluster_uuid", "")), str(body.get("cluster_name", "")))


class EsApiError(StepError):
    """An error answer from Elasticsearch; the exit code follows the HTTP status."""

    def __init__(self, what: str, status: int, etype: str, reason: str, body: Any = None) -> None:
        super().__init__(f"{what}: HTTP {status} {etype}: {reason[:400]}")
        self.status, self.etype, self.reason, self.body = status, etype, reason, body
        if status in (400, 401, 403, 405):
            self.exit_code = ExitCode.USAGE
            if status in (401, 403):
                self.hint = "check the credentials and the user's snapshot/index privileges"
        elif status == 404:
            self.exit_code = ExitCode.INTEGRITY
        else:
            self.exit_code = ExitCode.TRANSIENT
            if etype == "concurrent_snapshot_execution_exception":
                self.hint = "a conflicting snapshot operation runs (e.g. prune deleting this snapshot); Argo retries"


class Cluster:
    """The operations this step needs, over whichever client matches the server's major version."""

    def __init__(self, settings: EsSettings, info: ServerInfo, client: Any) -> None:
        self.settings = settings
        self.info = info
        self.client = client

    @property
    def feature_states_supported(self) -> bool:
        """``feature_states`` exists from 7.12."""
        return self.info.version_tuple >= (7, 12)

    # Subclasses: raw client calls and error decoding.
    def _error_parts(self, exc: Exception) -> tuple[int | None, Any] | None:
        raise NotImplementedError

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Exception as exc:
            parts = self._error_parts(exc)
            if parts is None:
                raise
            status, body = parts
            if status is None:
                raise TransientError(
                    f"{what}: cannot reach Elasticsearch at {self.settings.url} ({type(exc).__name__}: {exc})",
                    hint="check the network and the cluster; Argo retries this step",
                ) from exc
            etype, reason = _error_type_reason(body)
            raise EsApiError(what, status, etype, reason, body) from exc

    def _optional(self, what: str, fn: Callable[[], T]) -> T | None:
        """``fn()``, or ``None`` when the thing is missing (404)."""
        try:
            return self._call(what, fn)
        except EsApiError as exc:
            if exc.status == 404:
                return None
            raise

    # Operations (implemented per client major).
    def get_repository(self, name: str) -> dict[str, Any] | None:
        """The repository definition (``{"type", "settings"}``) or ``None``."""
        raise NotImplementedError

    def put_repository(self, name: str, body: dict[str, Any], verify: bool) -> None:
        """Register or update a repository."""
        raise NotImplementedError

    def verify_repository(self, name: str) -> dict[str, Any]:
        """Ask every node to check access to the repository."""
        raise NotImplementedError

    def delete_repository(self, name: str) -> None:
        """Unregister a repository (its contents stay in S3)."""
        raise NotImplementedError

    def snapshots(self, repository: str, pattern: str) -> list[dict[str, Any]]:
        """Snapshot infos matching ``pattern`` (a name, wildcard or ``_all``); [] if an explicit name is missing."""
        raise NotImplementedError

    def create_snapshot(self, repository: str, name: str, body: dict[str, Any]) -> None:
        """Start a snapshot (``wait_for_completion=false``)."""
        raise NotImplementedError

    def delete_snapshots(self, repository: str, names: list[str]) -> None:
        """Delete (or abort) snapshots by name."""
        raise NotImplementedError

    def restore(self, repository: str, name: str, body: dict[str, Any]) -> None:
        """Start a restore (``wait_for_completion=false``)."""
        raise NotImplementedError

    def health(self, indices: list[str], wait_for_status: str, timeout_s: int) -> dict[str, Any]:
        """Cluster health of ``indices``, waiting server-side; a 408 answer is returned (``timed_out``)."""
        raise NotImplementedError

    def cat_indices(self, expr: str, expand_wildcards: str = "open") -> list[dict[str, Any]]:
        """``_cat/indices`` rows."""
        raise NotImplementedError

    def cat_shards(self, expr: str) -> list[dict[str, Any]]:
        """``_cat/shards`` rows."""
        raise NotImplementedError

    def delete_indices(self, names: list[str]) -> None:
        """Delete indices by explicit name."""
        raise NotImplementedError

    def close_indices(self, names: list[str]) -> None:
        """Close indices by explicit name."""
        raise NotImplementedError

    def open_indices(self, names: list[str]) -> None:
        """Open closed indices by explicit name."""
        raise NotImplementedError

    def data_streams(self) -> list[dict[str, Any]]:
        """Every data stream (hidden ones included), as ``GET _data_stream/*?expand_wildcards=all`` lists them."""
        raise NotImplementedError

    def refresh(self, expr: str) -> None:
        """Refresh so that doc counts include every indexed document."""
        raise NotImplementedError

    # Helpers over the operations.
    def snapshot(self, repository: str, name: str) -> dict[str, Any] | None:
        """One snapshot's info, or ``None``."""
        found = [s for s in self.snapshots(repository, name) if s.get("snapshot") == name]
        return found[0] if found else None

    def all_indices(self) -> dict[str, dict[str, Any]]:
        """Every index (hidden and closed included) by name."""
        return {row["index"]: row for row in self.cat_indices("*", expand_wildcards="all")}


class _Es8Cluster(Cluster):
    """``elasticsearch`` 8.x (keyword-only API); also ES 9.x servers through REST compatibility."""

    def _error_parts(self, exc: Exception) -> tuple[int | None, Any] | None:
        import elasticsearch

        if isinstance(exc, elasticsearch.UnsupportedProductError):
            raise UsageError(f"{self.settings.url} is not Elasticsearch (the client's product check failed)") from exc
        if isinstance(exc, elasticsearch.ApiError):
            return exc.meta.status, exc.body
        if isinstance(exc, elasticsearch.TransportError):
            return None, None
        return None

    def get_repository(self, name: str) -> dict[str, Any] | None:
        got = self._optional(f"get repository {name}", lambda: self.client.snapshot.get_repository(name=name))
        return None if got is None else dict(got.body).get(name)

    def put_repository(self, name: str, body: dict[str, Any], verify: bool) -> None:
        self._call(
            f"register repository {name}",
            lambda: self.client.snapshot.create_repository(name=name, repository=body, verify=verify),
        )

    def verify_repository(self, name: str) -> dict[str, Any]:
        return dict(self._call(f"verify repository {name}", lambda: self.client.snapshot.verify_repository(name=name)))

    def delete_repository(self, name: str) -> None:
        self._call(f"unregister repository {name}", lambda: self.client.snapshot.delete_repository(name=name))

    def snapshots(self, repository: str, pattern: str) -> list[dict[str, Any]]:
        got = self._optional(
            f"get snapshots {repository}/{pattern}",
            lambda: self.client.snapshot.get(repository=repository, snapshot=pattern),
        )
        return [] if got is None else list(got.body.get("snapshots", []))

    def create_snapshot(self, repository: str, name: str, body: dict[str, Any]) -> None:
        self._call(
            f"create snapshot {repository}/{name}",
            lambda: self.client.snapshot.create(
                repository=repository, snapshot=name, wait_for_completion=False, body=body
            ),
        )

    def delete_snapshots(self, repository: str, names: list[str]) -> None:
        for chunk in _chunks(names):
            self._call(
                f"delete snapshots {repository}/{','.join(chunk)[:200]}",
                functools.partial(self.client.snapshot.delete, repository=repository, snapshot=",".join(chunk)),
            )

    def restore(self, repository: str, name: str, body: dict[str, Any]) -> None:
        self._call(
            f"restore snapshot {repository}/{name}",
            lambda: self.client.snapshot.restore(
                repository=repository, snapshot=name, wait_for_completion=False, body=body
            ),
        )

    def health(self, indices: list[str], wait_for_status: str, timeout_s: int) -> dict[str, Any]:
        client = self.client.options(request_timeout=timeout_s + self.settings.request_timeout, ignore_status=408)
        got = self._call(
            "cluster health",
            lambda: client.cluster.health(index=indices, wait_for_status=wait_for_status, timeout=f"{timeout_s}s"),
        )
        return dict(got.body)

    def cat_indices(self, expr: str, expand_wildcards: str = "open") -> list[dict[str, Any]]:
        got = self._call(
            f"list indices {expr[:200]}",
            lambda: self.client.cat.indices(
                index=expr, format="json", h=CAT_INDEX_COLUMNS, expand_wildcards=expand_wildcards
            ),
        )
        return list(got.body)

    def cat_shards(self, expr: str) -> list[dict[str, Any]]:
        got = self._call(
            f"list shards {expr[:200]}", lambda: self.client.cat.shards(index=expr, format="json", h=CAT_SHARD_COLUMNS)
        )
        return list(got.body)

    def delete_indices(self, names: list[str]) -> None:
        for chunk in _chunks(names):
            self._call(
                f"delete indices {','.join(chunk)[:200]}", functools.partial(self.client.indices.delete, index=chunk)
            )

    def close_indices(self, names: list[str]) -> None:
        for chunk in _chunks(names):
            self._call(
                f"close indices {','.join(chunk)[:200]}", functools.partial(self.client.indices.close, index=chunk)
            )

    def open_indices(self, names: list[str]) -> None:
        for chunk in _chunks(names):
            self._call(
                f"open indices {','.join(chunk)[:200]}", functools.partial(self.client.indices.open, index=chunk)
            )

    def data_streams(self) -> list[dict[str, Any]]:
        got = self._call(
            "list data streams",
            lambda: self.client.indices.get_data_stream(name="*", expand_wildcards="all"),
        )
        return list(got.body.get("data_streams", []))

    def refresh(self, expr: str) -> None:
        self._call(f"refresh {expr[:200]}", lambda: self.client.indices.refresh(index=expr))


class _Es7Cluster(Cluster):
    """``elasticsearch7`` (positional ``body=`` API) for 7.x servers."""

    def _error_parts(self, exc: Exception) -> tuple[int | None, Any] | None:
        from elasticsearch7 import exceptions as es7

        if isinstance(exc, es7.UnsupportedProductError):
            raise UsageError(f"{self.settings.url} is not Elasticsearch (the client's product check failed)") from exc
        if isinstance(exc, es7.ConnectionError):
            return None, None
        if isinstance(exc, es7.TransportError) and isinstance(exc.status_code, int):
            return exc.status_code, exc.info
        return None

    def get_repository(self, name: str) -> dict[str, Any] | None:
        got = self._optional(f"get repository {name}", lambda: self.client.snapshot.get_repository(repository=name))
        return None if got is None else got.get(name)

    def put_repository(self, name: str, body: dict[str, Any], verify: bool) -> None:
        self._call(
            f"register repository {name}",
            lambda: self.client.snapshot.create_repository(name, body, verify=verify),
        )

    def verify_repository(self, name: str) -> dict[str, Any]:
        return dict(self._call(f"verify repository {name}", lambda: self.client.snapshot.verify_repository(name)))

    def delete_repository(self, name: str) -> None:
        self._call(f"unregister repository {name}", lambda: self.client.snapshot.delete_repository(name))

    def snapshots(self, repository: str, pattern: str) -> list[dict[str, Any]]:
        got = self._optional(
            f"get snapshots {repository}/{pattern}", lambda: self.client.snapshot.get(repository, pattern)
        )
        return [] if got is None else list(got.get("snapshots", []))

    def create_snapshot(self, repository: str, name: str, body: dict[str, Any]) -> None:
        self._call(
            f"create snapshot {repository}/{name}",
            lambda: self.client.snapshot.create(repository, name, body=body, wait_for_completion=False),
        )

    def delete_snapshots(self, repository: str, names: list[str]) -> None:
        for chunk in _chunks(names):
            self._call(
                f"delete snapshots {repository}/{','.join(chunk)[:200]}",
                functools.partial(self.client.snapshot.delete, repository, ",".join(chunk)),
            )

    def restore(self, repository: str, name: str, body: dict[str, Any]) -> None:
        self._call(
            f"restore snapshot {repository}/{name}",
            lambda: self.client.snapshot.restore(repository, name, body=body, wait_for_completion=False),
        )

    def health(self, indices: list[str], wait_for_status: str, timeout_s: int) -> dict[str, Any]:
        got = self._call(
            "cluster health",
            lambda: self.client.cluster.health(
                index=",".join(indices),
                wait_for_status=wait_for_status,
                timeout=f"{timeout_s}s",
                request_timeout=timeout_s + self.settings.request_timeout,
                ignore=408,
            ),
        )
        return dict(got)

    def cat_indices(self, expr: str, expand_wildcards: str = "open") -> list[dict[str, Any]]:
        return list(
            self._call(
                f"list indices {expr[:200]}",
                lambda: self.client.cat.indices(
                    index=expr, format="json", h=CAT_INDEX_COLUMNS, expand_wildcards=expand_wildcards
                ),
            )
        )

    def cat_shards(self, expr: str) -> list[dict[str, Any]]:
        return list(
            self._call(
                f"list shards {expr[:200]}",
                lambda: self.client.cat.shards(index=expr, format="json", h=CAT_SHARD_COLUMNS),
            )
        )

    def delete_indices(self, names: list[str]) -> None:
        for chunk in _chunks(names):
            self._call(
                f"delete indices {','.join(chunk)[:200]}",
                functools.partial(self.client.indices.delete, index=",".join(chunk)),
            )

    def close_indices(self, names: list[str]) -> None:
        for chunk in _chunks(names):
            self._call(
                f"close indices {','.join(chunk)[:200]}",
                functools.partial(self.client.indices.close, index=",".join(chunk)),
            )

    def open_indices(self, names: list[str]) -> None:
        for chunk in _chunks(names):
            self._call(
                f"open indices {','.join(chunk)[:200]}",
                functools.partial(self.client.indices.open, index=",".join(chunk)),
            )

    def data_streams(self) -> list[dict[str, Any]]:
        got = self._call(
            "list data streams", lambda: self.client.indices.get_data_stream(name="*", expand_wildcards="all")
        )
        return list(got.get("data_streams", []))

    def refresh(self, expr: str) -> None:
        self._call(f"refresh {expr[:200]}", lambda: self.client.indices.refresh(index=expr))


def connect(settings: EsSettings) -> Cluster:
    """Probe the server and build the client whose major matches it (7.x -> elasticsearch7, else 8.x)."""
    for name in ("elasticsearch", "elasticsearch7", "elastic_transport", "urllib3"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # errors surface as exceptions, not stray text
    info = probe(settings)
    auth = (settings.username, settings.password or "") if settings.username else None
    common: dict[str, Any] = {"max_retries": 2, "retry_on_timeout": True}
    if settings.ca_file:
        common["ca_certs"] = settings.ca_file
    if info.major == 7:
        import elasticsearch7

        warnings.filterwarnings("ignore", category=elasticsearch7.exceptions.ElasticsearchWarning)
        client7 = elasticsearch7.Elasticsearch(
            [settings.url], http_auth=auth, timeout=settings.request_timeout, **common
        )
        cluster: Cluster = _Es7Cluster(settings, info, client7)
    else:
        import elasticsearch

        warnings.filterwarnings("ignore", category=elasticsearch.exceptions.ElasticsearchWarning)
        client8 = elasticsearch.Elasticsearch(
            settings.url, basic_auth=auth, request_timeout=settings.request_timeout, **common
        )
        cluster = _Es8Cluster(settings, info, client8)
        if info.major == 9:
            get_logger().warning(
                "Elasticsearch 9.x through the 8.x client in REST compatibility mode (compatible-with=8)",
                server=info.version,
            )
    get_logger().info(
        "connected",
        server=info.version,
        cluster=info.cluster_name,
        cluster_uuid=info.cluster_uuid,
        client="elasticsearch7" if info.major == 7 else "elasticsearch",
    )
    return cluster


# ---- repository -----------------------------------------------------------------------------------


def repository_settings(catalog: Catalog, s3_client: str) -> dict[str, Any]:
    """S3 repository settings for this tenant: the store's bucket, ``<prefix>/<tenant>/es-repository``."""
    store = catalog.store
    if not isinstance(store, S3Store):
        raise UsageError(
            f"store {store.url} cannot host an Elasticsearch snapshot repository",
            hint="Elasticsearch writes snapshots to S3 itself (repository-s3); use an s3:// store",
        )
    base_path = "/".join(p for p in (store.settings.prefix.strip("/"), catalog.es_repository_path) if p)
    settings: dict[str, Any] = {
        "bucket": store.settings.bucket,
        "base_path": base_path,
        "client": s3_client,
        "compress": True,
    }
    if store.settings.sse == "AES256":
        settings["server_side_encryption"] = True
    return settings


def _same_location(current: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    if not current or current.get("type") != "s3":
        return False
    have = current.get("settings", {})
    return bool(
        have.get("bucket") == wanted["bucket"]
        and str(have.get("base_path", "")).strip("/") == str(wanted["base_path"]).strip("/")
    )


def _is_readonly(definition: dict[str, Any] | None) -> bool:
    return str((definition or {}).get("settings", {}).get("readonly", "false")).lower() == "true"


def _where(settings: dict[str, Any]) -> str:
    return f"s3://{settings['bucket']}/{settings['base_path']}"


def ensure_repository(cluster: Cluster, name: str, settings: dict[str, Any], *, readonly: bool) -> dict[str, Any]:
    """Register ``name`` at ``settings``' location unless it already points there; verify it.

    Returns what was found and done. A repository of the same name pointing elsewhere is a usage error.
    """
    current = cluster.get_repository(name)
    if current is not None and not _same_location(current, settings):
        have = current.get("settings", {})
        raise UsageError(
            f"repository {name!r} on the cluster points at {current.get('type')} "
            f"s3://{have.get('bucket')}/{have.get('base_path')}, not {_where(settings)}",
            hint="pass another --repository name, or remove the old registration deliberately",
        )
    registered = False
    if current is None or _is_readonly(current) != readonly:
        body = {"type": "s3", "settings": {**settings, **({"readonly": True} if readonly else {})}}
        try:
            cluster.put_repository(name, body, verify=True)
        except EsApiError as exc:
            if exc.etype in ("repository_exception", "repository_verification_exception"):
                raise UsageError(
                    f"cannot register S3 repository {name!r} at {_where(settings)}: {exc.etype}: {exc.reason[:300]}",
                    hint="check the repository-s3 plugin (7.x), the s3.client.* settings/keystore and IAM access",
                ) from exc
            raise
        registered = True
    try:
        cluster.verify_repository(name)
    except EsApiError as exc:
        raise UsageError(
            f"repository {name!r} ({_where(settings)}) failed verification: {exc.etype}: {exc.reason[:300]}",
            hint="every master and data node must reach the bucket; check IAM and the s3.client settings",
        ) from exc
    return {
        "name": name,
        "location": _where(settings),
        "readonly": readonly if registered else _is_readonly(current),
        "registered": registered,
        "previous": current,
    }


# ---- indices, counts, shards ----------------------------------------------------------------------


def _chunks(names: list[str], limit: int = MAX_PATH_CHARS) -> Iterator[list[str]]:
    chunk: list[str] = []
    size = 0
    for name in names:
        if chunk and size + len(name) + 1 > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(name)
        size += len(name) + 1
    if chunk:
        yield chunk


def select(names: Iterable[str], expr: str) -> list[str]:
    """Names matching an ES-style expression: comma list, ``*`` wildcards, ``-pattern`` exclusions.

    A bare ``*`` does not match hidden ``.names`` (as in Elasticsearch); name them explicitly.
    """
    pool = list(names)
    chosen: list[str] = []
    for item in (i.strip() for i in expr.split(",")):
        if not item:
            continue
        if item.startswith("-"):
            chosen = [n for n in chosen if not fnmatch.fnmatchcase(n, item[1:])]
            continue
        for name in pool:
            hidden_ok = not name.startswith(".") or item.startswith(".")
            if fnmatch.fnmatchcase(name, item) and hidden_ok and name not in chosen:
                chosen.append(name)
    return chosen


def rename(names: list[str], pattern: str | None, replacement: str | None) -> dict[str, str]:
    """Source -> target index names, applying ``rename_pattern``/``rename_replacement`` like ES (``$1``)."""
    if (pattern is None) != (replacement is None):
        raise UsageError("--rename-pattern and --rename-replacement go together")
    if pattern is None or replacement is None:
        return {n: n for n in names}
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise UsageError(f"--rename-pattern {pattern!r} is not a valid regex: {exc}") from exc
    python_repl = re.sub(r"\$(\d+)", r"\\g<\1>", replacement.replace("\\", "\\\\"))
    mapping = {n: regex.sub(python_repl, n) for n in names}
    targets = list(mapping.values())
    dupes = sorted({t for t in targets if targets.count(t) > 1})
    if dupes:
        raise UsageError(f"the rename maps several indices onto {', '.join(dupes[:5])}", hint="fix the pattern")
    bad = [t for t in targets if not re.match(r"^[a-z0-9.][^\\/*?\"<>| ,#A-Z]*$", t)]
    if bad:
        raise UsageError(f"the rename produces invalid index names: {', '.join(bad[:5])}")
    return mapping


def _counts(rows: Iterable[dict[str, Any]]) -> tuple[dict[str, int], dict[str, int]]:
    """Doc counts and primary shard counts of open indices."""
    docs, primaries = {}, {}
    for row in rows:
        if row.get("status", "open") != "open" or row.get("docs.count") in (None, ""):
            continue
        docs[row["index"]] = int(row["docs.count"])
        primaries[row["index"]] = int(row["pri"])
    return docs, primaries


def not_started(shards: Iterable[dict[str, Any]], limit: int = 8) -> tuple[int, str]:
    """How many shards are not STARTED, and a short description: ``idx[0]p UNASSIGNED (reason)``."""
    bad = [s for s in shards if s.get("state") not in ("STARTED", "RELOCATING")]
    bad.sort(key=lambda s: (s.get("prirep") != "p", s.get("index", ""), int(s.get("shard") or 0)))
    text = ", ".join(
        f"{s.get('index')}[{s.get('shard')}]{s.get('prirep')} {s.get('state')}"
        + (f" ({s['unassigned.reason']})" if s.get("unassigned.reason") else "")
        for s in bad[:limit]
    )
    more = f" and {len(bad) - limit} more" if len(bad) > limit else ""
    return len(bad), text + more


def compare_counts(manifest: ComponentManifest, mapping: dict[str, str], live: dict[str, dict[str, Any]]) -> list[str]:
    """Problems found comparing live indices with the manifest (empty = all match).

    A live count must lie between the counts taken just before and just after the snapshot (the
    snapshot is a point in that interval); primary shard counts must be equal.
    """
    before = manifest.fingerprints.get("doc_counts", {})
    after = manifest.fingerprints.get("doc_counts_after", {})
    primaries = manifest.fingerprints.get("primary_shards", {})
    problems = []
    for source, target in mapping.items():
        row = live.get(target)
        if row is None:
            problems.append(f"{target}: missing")
            continue
        if row.get("status") != "open" or row.get("docs.count") in (None, ""):
            problems.append(f"{target}: {row.get('status')}, no doc count")
            continue
        got = int(row["docs.count"])
        bounds = [c for c in (before.get(source), after.get(source)) if c is not None]
        if bounds and not min(bounds) <= got <= max(bounds):
            expected = str(bounds[0]) if min(bounds) == max(bounds) else f"{min(bounds)}..{max(bounds)}"
            problems.append(f"{target}: {got} docs, backup has {expected}")
        if source in primaries and int(row["pri"]) != int(primaries[source]):
            problems.append(f"{target}: {row['pri']} primary shards, backup has {primaries[source]}")
    return problems


# ---- backup ---------------------------------------------------------------------------------------


def snapshot_name(tenant: str, run_id: str) -> str:
    """The client-generated snapshot name of a run: ``<tenant>-<run id in lowercase>``."""
    return f"{tenant}-{run_id.lower()}"


def _snapshot_failure(info: dict[str, Any]) -> str:
    shards = info.get("shards", {})
    failures = info.get("failures") or []
    listed = "; ".join(
        f"{f.get('index')}[{f.get('shard_id')}] on {f.get('node_id')}: "
        + " ".join(str(f.get("reason", "")).split())[:160]
        for f in failures[:3]
    )
    more = f" and {len(failures) - 3} more" if len(failures) > 3 else ""
    reason = f" ({info['reason']})" if info.get("reason") else ""
    return (
        f"snapshot {info.get('snapshot')} ended {info.get('state')}{reason}: "
        f"{shards.get('failed', '?')}/{shards.get('total', '?')} shards failed"
        + (f": {listed}{more}" if listed else "")
    )


def wait_for_snapshot(cluster: Cluster, repository: str, name: str, timeout_s: float) -> dict[str, Any]:
    """Poll ``GET _snapshot/<repo>/<name>`` until a terminal state; abort and fail on timeout."""
    log = get_logger()
    deadline = time.monotonic() + timeout_s
    last_log = 0.0
    while True:
        info = cluster.snapshot(repository, name)
        if info is None:
            raise TransientError(
                f"snapshot {repository}/{name} disappeared while running",
                hint="someone deleted it, or the repository was re-registered; Argo retries",
            )
        state = str(info.get("state"))
        if state in TERMINAL_STATES:
            return info
        now = time.monotonic()
        if now >= deadline:
            try:
                cluster.delete_snapshots(repository, [name])  # aborts the running snapshot
                aborted = "aborted"
            except StepError as exc:
                aborted = f"abort failed: {exc.one_line()}"
            raise TransientError(
                f"snapshot {repository}/{name} still {state} after {int(timeout_s)}s ({aborted})",
                hint=f"raise --snapshot-timeout or check GET _snapshot/{repository}/{name}/_status",
            )
        if now - last_log >= 30:
            log.info("snapshot running", snapshot=name, state=state, shards=info.get("shards"))
            last_log = now
        time.sleep(min(cluster.settings.poll_interval, max(0.0, deadline - now)))


@action(cli)
@catalog_options
@run_id_option(help_text="Run id this backup belongs to (YYYYMMDDTHHMMSSZ-xxxxxx).")
@es_options
@click.option(
    "--indices",
    envvar="TENANT_DR_ES_INDICES",
    default="*,-.*",
    show_default=True,
    help="Indices to snapshot (ES expression; open indices only).",
)
@click.option("--s3-client", default="default", show_default=True, help="ES s3.client.<name> holding S3 settings.")
@click.option(
    "--include-global-state/--no-include-global-state",
    default=True,
    show_default=True,
    help="Also snapshot templates, ILM policies, pipelines, persistent settings (never system feature states).",
)
@click.option("--snapshot-timeout", type=int, default=4 * 3600, show_default=True, help="Seconds to wait.")
@click.option(
    "--take-over-repository",
    is_flag=True,
    default=False,
    help="Make this cluster the repository's writer although another cluster wrote it last (after a DR).",
)
def backup(
    catalog: Catalog,
    tenant: str,
    run_id: str | None,
    es: EsSettings,
    indices: str,
    s3_client: str,
    include_global_state: bool,
    snapshot_timeout: int,
    take_over_repository: bool,
) -> dict[str, Any]:
    """Snapshot the tenant's indices into the S3 repository and write the manifest."""
    log = get_logger()
    if not run_id or run_id == "latest":
        raise UsageError("backup needs --run-id", hint="the backup workflow passes the run id it created")
    started = utcnow()
    name = snapshot_name(tenant, run_id)
    if catalog.has_manifest(run_id, COMPONENT):
        log.info("elasticsearch backup of this run already complete; nothing to do", snapshot=name)
        write_output("run-id", run_id)
        return {"tenant": tenant, "run_id": run_id, "snapshot": name, "skipped": True}
    wanted = repository_settings(catalog, s3_client)
    cluster = connect(es)
    repo = es.repository
    check_no_data_streams(cluster, indices)

    current = cluster.get_repository(repo)
    _check_writer(cluster, repo, current, wanted, tenant, take_over_repository)
    repository = ensure_repository(cluster, repo, wanted, readonly=False)

    rows = cluster.cat_indices(indices)
    names = sorted(r["index"] for r in rows if r.get("status") == "open")
    if names:
        count, text = not_started(s for s in cluster.cat_shards(indices) if s.get("prirep") == "p")
        if count:
            raise TransientError(
                f"cannot snapshot: {count} primary shards of the selected indices are not started: {text}",
                hint="the cluster is red; fix allocation (GET _cluster/allocation/explain), Argo retries",
            )
        cluster.refresh(indices)
    else:
        log.warning("no open index matches; the snapshot holds only global state", indices=indices)
    before, _ = _counts(cluster.cat_indices(indices))

    stale = cluster.snapshot(repo, name)
    if stale is not None:
        log.warning("removing the snapshot of an earlier attempt", snapshot=name, state=stale.get("state"))
        cluster.delete_snapshots(repo, [name])
    body: dict[str, Any] = {
        "indices": ",".join(names) if names else indices,
        "ignore_unavailable": not names,
        "include_global_state": include_global_state,
        "partial": False,
        "metadata": {
            "taken_by": "tenant-dr",
            "tenant": tenant,
            "run_id": run_id,
            "cluster_uuid": cluster.info.cluster_uuid,
        },
    }
    if cluster.feature_states_supported:
        body["feature_states"] = ["none"]
    cluster.create_snapshot(repo, name, body)
    log.info("snapshot started", snapshot=name, repository=repo, indices=len(names))
    info = wait_for_snapshot(cluster, repo, name, snapshot_timeout)
    state = info.get("state")
    if state == "INCOMPATIBLE":
        raise IntegrityError(_snapshot_failure(info), hint="the repository holds snapshots of a newer version")
    if state != "SUCCESS":
        raise TransientError(
            _snapshot_failure(info),
            hint="no manifest was written; Argo retries (the retry replaces this snapshot); check the S3 client",
        )
    snap_indices = sorted(info.get("indices") or [])
    if names:
        cluster.refresh(indices)
    after, after_primaries = _counts(r for r in cluster.cat_indices(indices) if r["index"] in snap_indices)
    primaries = {r["index"]: int(r["pri"]) for r in rows if r["index"] in snap_indices}
    primaries.update({k: v for k, v in after_primaries.items() if k not in primaries})

    attempt = catalog.new_attempt()
    record = catalog.put_small(
        run_id,
        COMPONENT,
        attempt,
        SNAPSHOT_OBJECT,
        (
            json.dumps({"repository": repository, "snapshot": info}, indent=2, sort_keys=True, default=str) + "\n"
        ).encode(),
    )
    manifest = ComponentManifest(
        tenant=tenant,
        run_id=run_id,
        component=COMPONENT,
        started_at=started,
        finished_at=utcnow(),
        objects=[record],
        source={
            "elasticsearch": cluster.info.version,
            "cluster_uuid": cluster.info.cluster_uuid,
            "cluster_name": cluster.info.cluster_name,
            "url": es.url,
        },
        fingerprints={
            "doc_counts": {i: before[i] for i in snap_indices if i in before},
            "doc_counts_after": {i: after[i] for i in snap_indices if i in after},
            "primary_shards": {i: primaries[i] for i in snap_indices if i in primaries},
        },
        details={
            "snapshot": name,
            "snapshot_uuid": info.get("uuid"),
            "repository": repo,
            "repository_settings": {"type": "s3", **wanted},
            "indices": snap_indices,
            "include_global_state": include_global_state,
            "state": state,
            "shards": info.get("shards", {}),
            "snapshot_version": info.get("version"),
        },
    )
    catalog.write_manifest(manifest)
    write_output("run-id", run_id)
    write_output("snapshot", name)
    return {
        "tenant": tenant,
        "run_id": run_id,
        "snapshot": name,
        "repository": repo,
        "state": state,
        "indices": len(snap_indices),
        "docs": sum(before.get(i, 0) for i in snap_indices),
        "server": cluster.info.version,
    }


def check_no_data_streams(cluster: Cluster, indices: str) -> None:
    """Refuse (exit 2) when ``indices`` reaches a data stream: this step handles plain indices only.

    A wildcard matches a non-hidden data stream by its name and resolves to the stream's hidden ``.ds-*``
    backing indices; restoring backing indices by name does not bring the data stream back (ES docs).
    """
    if cluster.info.version_tuple < (7, 9):
        return  # data streams exist from 7.9
    streams = cluster.data_streams()
    items = {i.strip() for i in indices.split(",")}
    visible = select([s["name"] for s in streams if not s.get("hidden")], indices)
    hidden = [s["name"] for s in streams if s.get("hidden") and s["name"] in items]
    backing = select([i["index_name"] for s in streams for i in s.get("indices", [])], indices)
    reached = visible + hidden + backing
    if reached:
        excluded = ",".join(f"-{n}" for n in (visible + hidden)[:3]) or "-.ds-*"
        raise UsageError(
            f"--indices {indices!r} reaches data streams or their backing indices ({_listed(reached)}); this step "
            "snapshots and restores plain indices only, and restoring backing indices does not bring a data stream "
            "back",
            hint=f"exclude them (e.g. --indices '{indices},{excluded}') and protect data streams another way; "
            "see the limits in docs/components/elasticsearch.md",
        )


def _check_writer(
    cluster: Cluster,
    repo: str,
    current: dict[str, Any] | None,
    wanted: dict[str, Any],
    tenant: str,
    take_over: bool,
) -> None:
    """Only one cluster may write a repository: refuse to become the writer implicitly."""
    if take_over:
        return
    if current is not None and _same_location(current, wanted) and _is_readonly(current):
        raise UsageError(
            f"repository {repo!r} is registered read-only on this cluster ({cluster.info.cluster_name}): "
            "it was a restore target, another cluster is the writer",
            hint="if this cluster now owns the tenant (after a DR), pass --take-over-repository once",
        )
    if current is None or not _same_location(current, wanted):
        return
    ours = [
        s
        for s in cluster.snapshots(repo, f"{tenant}-*")
        if (s.get("metadata") or {}).get("tenant") == tenant and (s.get("metadata") or {}).get("cluster_uuid")
    ]
    if ours:
        last = max(ours, key=lambda s: int(s.get("start_time_in_millis") or 0))
        writer = last["metadata"]["cluster_uuid"]
        if writer != cluster.info.cluster_uuid:
            raise UsageError(
                f"the newest snapshot {last.get('snapshot')} in repository {repo!r} was written by cluster {writer}, "
                f"this is {cluster.info.cluster_uuid}",
                hint="two writers corrupt a repository; after a DR pass --take-over-repository once",
            )


# ---- restore / verify -----------------------------------------------------------------------------


def _load_manifest(catalog: Catalog, run_id: str | None) -> ComponentManifest:
    run = catalog.resolve(run_id or "latest", COMPONENT)
    manifest = catalog.read_manifest(run, COMPONENT)
    for record in manifest.objects:
        verify_object(catalog.store, catalog.object_key(manifest, record), record)
    for key in ("snapshot", "repository_settings", "indices"):
        if key not in manifest.details:
            raise IntegrityError(f"the elasticsearch manifest of run {run} lacks {key!r}", hint="use another run")
    return manifest


def _mapping(manifest: ComponentManifest, indices: str | None, pattern: str | None, repl: str | None) -> dict[str, str]:
    available = list(manifest.details["indices"])
    chosen = select(available, indices) if indices else available
    if indices and not chosen:
        raise UsageError(
            f"--indices {indices!r} matches none of the {len(available)} indices in the backup",
            hint=f"the backup has: {', '.join(available[:10])}",
        )
    return rename(chosen, pattern, repl)


def wait_for_health(cluster: Cluster, targets: list[str], status: str, timeout_s: int) -> None:
    """Wait until ``targets`` reach ``status``; on timeout, fail naming the shards that are not started."""
    deadline = time.monotonic() + timeout_s
    for chunk in _chunks(targets):
        while True:
            remaining = int(deadline - time.monotonic())
            health = cluster.health(chunk, status, max(1, min(HEALTH_WAIT_CHUNK_S, remaining)))
            if not health.get("timed_out"):
                break
            if time.monotonic() >= deadline:
                shards = [s for s in cluster.cat_shards("*") if s.get("index") in set(targets)]
                count, text = not_started(shards)
                raise IntegrityError(
                    f"restored indices did not reach {status} within {timeout_s}s (health {health.get('status')}, "
                    f"{count} shards not started: {text or 'none listed'})",
                    hint="check GET _cluster/allocation/explain (disk watermarks, shard limits, replicas on too "
                    "few nodes: --wait-for-status yellow); run verify once it is green",
                )


def _writer_uuid(catalog: Catalog, manifest: ComponentManifest) -> str:
    """The cluster uuid that writes the repository now: the one in the newest elasticsearch manifest."""
    newest = catalog.latest_with(COMPONENT)
    if newest is None or newest.run_id == manifest.run_id:
        return str(manifest.source.get("cluster_uuid", ""))
    try:
        return str(catalog.read_manifest(newest.run_id, COMPONENT).source.get("cluster_uuid", ""))
    except IntegrityError as exc:
        get_logger().warning("cannot tell the repository's writer; a new registration is read-only", error=exc.message)
        return ""


def restore_registration(
    current: dict[str, Any] | None, location: dict[str, Any], mode: str, writer: bool
) -> bool | None:
    """The ``readonly`` flag a restore registers the repository with, or ``None`` to keep the registration.

    ``auto`` never changes a registration at the same location (a writable one stays writable, so the
    nightly backup keeps working after restoring a run another cluster wrote); a missing one is registered
    read-only unless this cluster is the repository's writer. ``readonly``/``writable`` force the mode.
    """
    if current is not None and _same_location(current, location):
        if mode == "auto" or _is_readonly(current) == (mode == "readonly"):
            return None
        return mode == "readonly"
    return mode == "readonly" or (mode == "auto" and not writer)


def _unregister_after_plan(cluster: Cluster, repo: str) -> None:
    try:
        cluster.delete_repository(repo)
    except StepError as exc:
        if isinstance(exc, EsApiError) and exc.status == 404:  # the registration itself failed: nothing to undo
            return
        raise TransientError(
            f"the plan registered repository {repo!r} read-only to read the snapshot and could not unregister it: "
            f"{exc.message}",
            hint=f"DELETE _snapshot/{repo} (the snapshots in S3 stay); a read-only registration makes backups "
            "on this cluster refuse",
        ) from exc
    get_logger().info("repository registered read-only only to read the snapshot; unregistered again", repository=repo)


def check_snapshot(cluster: Cluster, repo: str, where: str, name: str, run: str, sources: list[str]) -> None:
    """The run's snapshot is in the repository, SUCCESS, and holds ``sources`` (exit 3 otherwise)."""
    info = cluster.snapshot(repo, name)
    if info is None:
        raise IntegrityError(
            f"snapshot {name} of run {run} is not in repository {repo} ({where})",
            hint="it was deleted (prune?) or the repository points elsewhere; pick another run",
        )
    if info.get("state") != "SUCCESS":
        raise IntegrityError(f"snapshot {name} is {info.get('state')}, not SUCCESS", hint="pick another run")
    missing = sorted(set(sources) - set(info.get("indices") or []))
    if missing:
        raise IntegrityError(f"snapshot {name} lacks indices the manifest lists: {', '.join(missing[:10])}")


def not_restored(cluster: Cluster, exc: StepError, deleted: list[str], closed: list[str]) -> StepError:
    """The error for a restore that did not start, after reopening the indices this step closed.

    A restore refused because a target index exists (open) means a writer re-created or reopened it: exit 3,
    since a retry would delete again and lose the same race.
    """
    notes = []
    if deleted:
        notes.append(f"this step had deleted {_listed(deleted)} (not restored)")
    if closed:
        try:
            cluster.open_indices(closed)
            notes.append(f"the indices this step had closed were reopened: {_listed(closed)}")
        except StepError as again:
            notes.append(
                f"indices this step closed are STILL CLOSED: {_listed(closed)} (reopening failed: {again.message}); "
                f"open them with POST {','.join(closed)[:300]}/_open"
            )
    if (
        isinstance(exc, EsApiError)
        and exc.etype == "snapshot_restore_exception"
        and "index with same name already exists" in exc.reason
    ):
        found = re.search(r"cannot restore index \[([^\]]+)\]", exc.reason)
        return IntegrityError(
            f"restore refused: index [{found.group(1) if found else '?'}] exists (open) again, so something still "
            f"writes to the target and re-created or reopened it; {'; '.join(notes) or 'nothing was changed'}",
            hint="fence the writers (scale the applications to 0) or set action.auto_create_index=false on the "
            "cluster, then run the restore again",
        )
    if not notes:
        return exc
    error = StepError(f"{exc.message}; {'; '.join(notes)}", hint=exc.hint)
    error.exit_code = exc.exit_code
    return error


@action(cli)
@catalog_options
@run_id_option(default="latest")
@es_options
@click.option("--indices", default=None, help="Restore only these backed-up indices (ES expression; default all).")
@click.option("--rename-pattern", default=None, help="Regex on index names, e.g. '(.+)'.")
@click.option("--rename-replacement", default=None, help="Replacement with $1 groups, e.g. 'restored-$1'.")
@click.option(
    "--mode",
    type=click.Choice(["delete", "close"]),
    default="delete",
    show_default=True,
    help="What to do with existing target indices before the restore.",
)
@click.option("--include-global-state", is_flag=True, default=False, help="Also restore templates/ILM/pipelines.")
@click.option(
    "--repository-mode",
    type=click.Choice(["auto", "readonly", "writable"]),
    default="auto",
    show_default=True,
    help="auto: keep an existing registration as it is; register a missing one read-only unless this cluster "
    "wrote the newest backup. readonly/writable: force that mode (with --confirm).",
)
@click.option("--s3-client", default="default", show_default=True, help="ES s3.client.<name> holding S3 settings.")
@click.option("--wait-for-status", type=click.Choice(["green", "yellow"]), default="green", show_default=True)
@click.option("--green-timeout", type=int, default=1800, show_default=True, help="Seconds to wait for the status.")
@click.option("--operation", envvar="TENANT_DR_OPERATION", default=None, help="Operation id to record prior state.")
@confirm_option
def restore(
    catalog: Catalog,
    tenant: str,
    run_id: str | None,
    es: EsSettings,
    indices: str | None,
    rename_pattern: str | None,
    rename_replacement: str | None,
    mode: str,
    include_global_state: bool,
    repository_mode: str,
    s3_client: str,
    wait_for_status: str,
    green_timeout: int,
    operation: str | None,
    confirm: bool,
) -> dict[str, Any]:
    """Restore a run's snapshot: plan without --confirm; with it replace the target indices and verify counts."""
    log = get_logger()
    manifest = _load_manifest(catalog, run_id)
    run = manifest.run_id
    details = manifest.details
    name = str(details["snapshot"])
    recorded = {k: v for k, v in details["repository_settings"].items() if k != "type"}
    location = {**recorded, "client": s3_client}
    mapping = _mapping(manifest, indices, rename_pattern, rename_replacement)
    targets = list(mapping.values())

    cluster = connect(es)
    backup_version = str(manifest.source.get("elasticsearch", "0"))
    if _version_tuple(backup_version)[:2] > cluster.info.version_tuple[:2]:
        raise IntegrityError(
            f"snapshot {name} was taken on Elasticsearch {backup_version}; the target runs {cluster.info.version}",
            hint="restore into a cluster of the same or a newer version",
        )
    if cluster.info.major - _version_tuple(backup_version)[0] > 1:
        raise IntegrityError(
            f"indices from Elasticsearch {backup_version} cannot be restored into {cluster.info.version}",
            hint="restore into the previous major first and reindex",
        )
    current = cluster.get_repository(es.repository)
    writer = _writer_uuid(catalog, manifest) == cluster.info.cluster_uuid
    wanted = restore_registration(current, location, repository_mode, writer)
    on_confirm = "keep as registered"
    if wanted is not None:
        on_confirm = f"{'register' if current is None else 're-register'} {'read-only' if wanted else 'writable'}"
    # A plan changes nothing: it reads through the registration as it is, or registers read-only just to read.
    for_plan_only = not confirm and current is None
    if confirm:
        readonly = _is_readonly(current) if wanted is None else wanted
    else:
        readonly = current is None or _is_readonly(current)
    try:
        repository = ensure_repository(cluster, es.repository, location, readonly=readonly)
        check_snapshot(cluster, es.repository, repository["location"], name, run, list(mapping))
    finally:
        if for_plan_only:
            _unregister_after_plan(cluster, es.repository)
    repository.update(on_confirm=on_confirm, registered_for_plan_only=for_plan_only)

    live = cluster.all_indices()
    primaries = manifest.fingerprints.get("primary_shards", {})
    existing = [t for t in targets if t in live]
    plan_rows = []
    for source, target in mapping.items():
        row = live.get(target)
        plan_rows.append(
            {
                "source": source,
                "target": target,
                "backup_docs": manifest.fingerprints.get("doc_counts", {}).get(source),
                "exists": row is not None,
                "current_docs": None if row is None or row.get("docs.count") is None else int(row["docs.count"]),
                "action": mode if row is not None else "create",
            }
        )
        if mode == "close" and row is not None and int(row["pri"]) != int(primaries.get(source, row["pri"])):
            raise IntegrityError(
                f"index {target} has {row['pri']} primary shards, the backup of {source} has {primaries[source]}; "
                "a closed index can only be restored over one with the same shard count",
                hint="use --mode delete or a --rename-pattern",
            )
    plan = {
        "run_id": run,
        "snapshot": name,
        "repository": repository,
        "server": cluster.info.version,
        "mode": mode,
        "include_global_state": include_global_state,
        "include_aliases": rename_pattern is None,
        "indices": plan_rows,
        "replace": existing,
    }
    if not confirm:
        log.info("plan only (pass --confirm to restore)", replace=existing, restore=len(targets))
        return {"tenant": tenant, "dry_run": True, "plan": plan}

    prior = {
        "cluster_uuid": cluster.info.cluster_uuid,
        "indices": {t: live[t] for t in existing},
        "repository": repository["previous"],
    }
    if operation:
        catalog.record_once(operation, "elasticsearch-prior", prior)
    write_output("prior-state", prior)
    log.info("prior state recorded", replace=existing)
    body: dict[str, Any] = {
        "indices": ",".join(mapping),
        "include_global_state": include_global_state,
        # ES does not rename aliases: a renamed copy would join the live indices' aliases (and write alias).
        "include_aliases": rename_pattern is None,
    }
    if cluster.feature_states_supported:
        body["feature_states"] = ["none"]
    if rename_pattern is not None:
        body.update(rename_pattern=rename_pattern, rename_replacement=rename_replacement)
    deleted: list[str] = []
    closed: list[str] = []
    try:
        for chunk in _chunks(existing):
            if mode == "delete":
                cluster.delete_indices(chunk)
                deleted += chunk
            else:
                cluster.close_indices(chunk)
                closed += chunk
        cluster.restore(es.repository, name, body)
    except StepError as exc:
        error = not_restored(cluster, exc, deleted, closed)
        if error is exc:
            raise
        raise error from exc
    log.info("restore started", snapshot=name, indices=len(targets))
    if targets:
        wait_for_health(cluster, targets, wait_for_status, green_timeout)
    problems = compare_counts(manifest, mapping, cluster.all_indices())
    if problems:
        raise IntegrityError(
            f"restored indices do not match the backup of run {run}: {'; '.join(problems[:5])}"
            + (f" and {len(problems) - 5} more" if len(problems) > 5 else ""),
            hint="the restore is incomplete; check the cluster and retry the restore",
        )
    write_output("restored-indices", targets)
    return {
        "tenant": tenant,
        "run_id": run,
        "snapshot": name,
        "restored": len(targets),
        "replaced": existing,
        "docs": sum(int(manifest.fingerprints.get("doc_counts", {}).get(s, 0)) for s in mapping),
        "server": cluster.info.version,
        "dry_run": False,
    }


@action(cli, "verify")
@catalog_options
@run_id_option(default="latest")
@es_options
@click.option("--indices", default=None, help="Check only these backed-up indices (default all).")
@click.option("--rename-pattern", default=None, help="As given to restore.")
@click.option("--rename-replacement", default=None, help="As given to restore.")
def verify_counts(
    catalog: Catalog,
    tenant: str,
    run_id: str | None,
    es: EsSettings,
    indices: str | None,
    rename_pattern: str | None,
    rename_replacement: str | None,
) -> dict[str, Any]:
    """Compare live doc and primary-shard counts with the manifest (exit 3 on mismatch)."""
    manifest = _load_manifest(catalog, run_id)
    mapping = _mapping(manifest, indices, rename_pattern, rename_replacement)
    cluster = connect(es)
    problems = compare_counts(manifest, mapping, cluster.all_indices())
    if problems:
        raise IntegrityError(
            f"{len(problems)} of {len(mapping)} indices differ from the backup of run {manifest.run_id}: "
            + "; ".join(problems[:5]),
            hint="restore again, or check whether the application wrote since the restore",
        )
    return {"tenant": tenant, "run_id": manifest.run_id, "checked": len(mapping), "ok_indices": len(mapping)}


# ---- prune ----------------------------------------------------------------------------------------


@action(cli)
@catalog_options
@es_options
@click.option("--older-than-days", envvar="TENANT_DR_RETENTION_DAYS", type=int, default=15, show_default=True)
@click.option(
    "--min-complete",
    envvar="TENANT_DR_MIN_COMPLETE",
    type=int,
    default=3,
    show_default=True,
    help="As for catalog prune: the snapshots of the newest this many sealed runs are kept, however old.",
)
@confirm_option
def prune(
    catalog: Catalog, tenant: str, es: EsSettings, older_than_days: int, min_complete: int, confirm: bool
) -> dict[str, Any]:
    """Delete this tenant's snapshots older than the retention through the ES API (never through S3).

    The snapshot of every run that ``catalog prune`` keeps (same retention) is kept, so "latest" stays restorable.
    """
    if older_than_days < 0 or min_complete < 0:
        raise UsageError("--older-than-days and --min-complete must be >= 0")
    cluster = connect(es)
    repo = es.repository
    definition = cluster.get_repository(repo)
    if definition is None:
        return {"tenant": tenant, "delete": [], "kept": 0, "note": f"repository {repo!r} is not registered here"}
    if _is_readonly(definition):
        raise UsageError(
            f"repository {repo!r} is read-only on this cluster", hint="prune on the cluster that writes the backups"
        )
    own = re.compile(rf"^{re.escape(tenant)}-(\d{{8}})t(\d{{6}})z-([0-9a-f]{{6}})$")
    now = utcnow()
    kept_runs = {r.run_id for r in catalog.prune_plan(older_than_days, min_complete, now=now).keep}
    snaps = []
    for info in cluster.snapshots(repo, f"{tenant}-*"):
        match = own.match(str(info.get("snapshot")))
        if match:
            run = f"{match.group(1)}T{match.group(2)}Z-{match.group(3)}"
            snaps.append((int(info.get("start_time_in_millis") or 0), info, run))
    snaps.sort(key=lambda s: s[0])
    cutoff = (now - timedelta(days=older_than_days)).timestamp() * 1000
    old = [s for s in snaps if s[0] < cutoff and s[1].get("state") != "IN_PROGRESS"]
    doomed = [s[1]["snapshot"] for s in old if s[2] not in kept_runs]
    result: dict[str, Any] = {
        "tenant": tenant,
        "repository": repo,
        "delete": doomed,
        "kept": len(snaps) - len(doomed),
        "kept_for_catalog": [s[1]["snapshot"] for s in old if s[2] in kept_runs],
        "dry_run": not confirm,
    }
    if not confirm:
        get_logger().info("plan only (pass --confirm to delete)", delete=doomed)
        return result
    if doomed:
        cluster.delete_snapshots(repo, doomed)
    return result


# ---- small helpers --------------------------------------------------------------------------------


def _listed(names: list[str], limit: int = 10) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3]) or (0,)


def _json_or_text(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return data[:300].decode("utf-8", "replace")


def _error_type_reason(body: Any) -> tuple[str, str]:
    """``(type, reason)`` from an ES error body (or a health body on 408)."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            causes = error.get("root_cause") or []
            reason = error.get("reason") or (causes[0].get("reason") if causes else "") or ""
            return str(error.get("type", "error")), " ".join(str(reason).split())
        if isinstance(error, str):
            return "error", error
        if body.get("timed_out"):
            return "timeout", f"timed out with status {body.get('status')}"
    return "error", " ".join(str(body).split())[:300]


if __name__ == "__main__":
    from steps.runtime import run

    run(cli)
