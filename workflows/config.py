"""TenantConfig: everything a tenant's packages need, validated strictly, with the seed topology as default.

Unknown keys are rejected everywhere (a misspelled key must not silently fall back to a default).
``load_config`` turns any problem into one :class:`ConfigError` line naming the field.
"""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from workflows import __version__

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
K8sName = Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)]
Namespace = Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]
SecretKey = Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)]


class ConfigError(Exception):
    """A config problem, as one line: ``<file>: <field>: <problem>``."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


def _valid_cron(v: str) -> str:
    if len(v.split()) != 5 or not croniter.is_valid(v):
        raise ValueError(f"{v!r} is not a 5-field cron expression")
    return v


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class SecretRef(_Model):
    """A key in a Kubernetes Secret (in the namespace the workflows run in)."""

    name: K8sName = Field(description="Secret name")
    key: SecretKey = Field(description="key inside the Secret")


class S3Credentials(_Model):
    """Static S3 credentials from a Secret; omit to use the pod's identity (IRSA)."""

    secret: K8sName
    access_key_id_key: SecretKey = "AWS_ACCESS_KEY_ID"
    secret_access_key_key: SecretKey = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 - a key name, not a secret


class SSE(_Model):
    """Server-side encryption of stored objects."""

    mode: Literal["AES256", "aws:kms"] = "AES256"
    kms_key_id: str | None = None

    @model_validator(mode="after")
    def _kms_needs_key(self) -> SSE:
        if self.mode == "aws:kms" and not self.kms_key_id:
            raise ValueError("mode aws:kms needs kms_key_id")
        if self.mode == "AES256" and self.kms_key_id:
            raise ValueError("kms_key_id is only used with mode aws:kms")
        return self


class Store(_Model):
    """Where backups live."""

    url: str = Field("s3://tenant-dr-backups/prod", description="s3://bucket/prefix or file:///path")
    region: str = "us-east-1"
    endpoint: str | None = Field(None, description="S3-compatible endpoint URL (MinIO etc.)")
    sse: SSE = SSE()
    credentials: S3Credentials | None = None
    part_size_mib: int = Field(16, ge=5, le=5120)

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if not re.match(r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?|file:///[^\s]*)$", v):
            raise ValueError("must be s3://bucket/prefix or file:///absolute/path")
        return v.rstrip("/")

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+(:\d+)?/?$", v):
            raise ValueError("must be an http(s):// URL")
        return v


class Credentials(_Model):
    """Username/password keys in one Secret."""

    secret: K8sName
    username_key: SecretKey | None = "username"
    password_key: SecretKey = "password"  # noqa: S105 - a key name


class Elasticsearch(_Model):
    """Elasticsearch snapshot/restore."""

    enabled: bool = True
    url: str = "http://atlas-elasticsearch-master.atlas:9200"
    repository: K8sName = "tenant-dr"
    indices: str = "*,-.*"
    credentials: Credentials | None = None


class Cassandra(_Model):
    """Cassandra snapshots streamed from every pod."""

    enabled: bool = True
    namespace: Namespace = "atlas"
    selector: str = "app=cassandra"
    container: K8sName = "cassandra"
    keyspaces: list[Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]{0,47}$")]] = Field(
        default_factory=lambda: ["atlas"], min_length=1
    )
    data_dir: str = "/var/lib/cassandra/data"
    credentials: Credentials | None = None


class Postgres(_Model):
    """PostgreSQL logical dumps."""

    enabled: bool = True
    host: str = "postgresql.postgresql"
    port: int = Field(5432, ge=1, le=65535)
    user: str = "postgres"
    databases: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")]] = Field(
        default_factory=lambda: ["atlan", "auxiliary", "caspian", "keycloak", "ranger"], min_length=1
    )
    password: SecretRef = SecretRef(name="postgresql", key="postgres-password")
    restore_jobs: int = Field(4, ge=1, le=32)
    restore_strategy: Literal["swap", "drop-first"] = Field(
        "swap",
        description="swap keeps each old database renamed aside until every restored one checks out (needs room "
        "for both copies); drop-first drops each one before restoring it",
    )


class Redis(_Model):
    """Redis RDB over the replication protocol."""

    enabled: bool = True
    url: str = "redis://redis-master.redis:6379"
    password: SecretRef | None = SecretRef(name="redis", key="redis-password")
    bgsave: bool = Field(
        True,
        description="BGSAVE before fetching the RDB (refreshes the server's dump.rdb); false skips that second fork",
    )
    restore_mode: Literal["flush", "swap"] = Field(
        "flush",
        description="flush empties the target before the copy; swap copies into spare databases and SWAPDBs them "
        "in (nothing changes for clients if it fails; needs spare databases and memory for both copies)",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if not re.match(r"^rediss?://[^\s/:@]+(:\d+)?/?$", v):
            raise ValueError("must be redis://host:port (the password comes from the Secret)")
        return v


class Argo(_Model):
    """Argo's own resources."""

    enabled: bool = True
    namespace: Namespace = "argo"
    cluster_templates: bool = True
    configmap_selector: str = "tenant-dr/backup=true"


class Components(_Model):
    """Per-component connection and location (defaults: the seed topology)."""

    elasticsearch: Elasticsearch = Elasticsearch()
    cassandra: Cassandra = Cassandra()
    postgres: Postgres = Postgres()
    redis: Redis = Redis()
    argo: Argo = Argo()

    def enabled(self) -> list[str]:
        """Names of enabled components, in a fixed order."""
        return [name for name in COMPONENTS if getattr(self, name).enabled]


COMPONENTS = ("elasticsearch", "cassandra", "postgres", "redis", "argo")


class Workload(_Model):
    """A Deployment or StatefulSet to scale to 0 when fencing the old tenant."""

    kind: Literal["deployment", "statefulset"]
    name: K8sName
    namespace: Namespace = "atlas"

    @property
    def ref(self) -> str:
        """``ns/kind/name`` as the kube step takes it."""
        return f"{self.namespace}/{self.kind}/{self.name}"


def _seed_workloads() -> list[Workload]:
    return [
        Workload(kind="statefulset", name="keycloak"),
        Workload(kind="statefulset", name="ranger"),
        *(Workload(kind="deployment", name=n) for n in ("hermes", "auxiliary", "caspian", "user-service", "atlas")),
    ]


class Schedule(_Model):
    """When the daily backup runs."""

    cron: str = "0 3 * * *"
    timezone: str = "Etc/UTC"
    starting_deadline_seconds: int = Field(3600, ge=0)

    _check_cron = field_validator("cron")(_valid_cron)

    @field_validator("timezone")
    @classmethod
    def _check_tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{v!r} is not an IANA timezone") from exc
        return v


class Retention(_Model):
    """How long runs are kept."""

    days: int = Field(15, ge=1)
    min_complete: int = Field(3, ge=1)


class Freshness(_Model):
    """The monitor that alerts when the newest complete backup is too old."""

    max_age_hours: int = Field(26, ge=1)
    cron: str = "17 * * * *"

    _check_cron = field_validator("cron")(_valid_cron)


class Images(_Model):
    """Where step images come from."""

    registry: str = Field("ghcr.io/tenant-dr", pattern=r"^[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)*$")
    tag: str = Field(__version__, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"


class Notify(_Model):
    """Where workflow results are posted."""

    webhook: SecretRef = SecretRef(name="tenant-dr-notify", key="webhook-url")
    format: Literal["slack", "json"] = "slack"
    argo_ui_url: str = Field("https://argo.example.com", pattern=r"^https?://\S+$")


class DNS(_Model):
    """The tenant's public record at Cloudflare."""

    zone: K8sName = "example.com"
    record: K8sName = "atlas.example.com"
    proxied: bool = True
    ttl: int = Field(1, ge=1, le=86400, description="1 = automatic")
    token: SecretRef = SecretRef(name="cloudflare", key="api-token")

    @model_validator(mode="after")
    def _record_in_zone(self) -> DNS:
        if self.record != self.zone and not self.record.endswith("." + self.zone):
            raise ValueError(f"record {self.record!r} is not inside zone {self.zone!r}")
        return self


class Cluster(_Model):
    """How the tenant's cluster is reached from the workflows."""

    mode: Literal["in-cluster", "kubeconfig"] = "in-cluster"
    kubeconfig: SecretRef | None = None

    @model_validator(mode="after")
    def _kubeconfig_needs_secret(self) -> Cluster:
        if self.mode == "kubeconfig" and self.kubeconfig is None:
            raise ValueError("mode kubeconfig needs kubeconfig: {name, key}")
        if self.mode == "in-cluster" and self.kubeconfig is not None:
            raise ValueError("kubeconfig is only used with mode kubeconfig")
        return self


IngressRef = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]
ConfigMapKeyRef = Annotated[
    str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[-._a-zA-Z0-9]+$")
]
DomainName = Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)]


class DRSource(_Model):
    """The old (source) tenant: whose backups are restored and which is fenced, reached only through its API."""

    tenant: str | None = Field(
        None, pattern=DNS_LABEL, max_length=20, description="its tenant name in the store (default: this tenant's name)"
    )
    cluster: Cluster = Field(
        default_factory=lambda: Cluster(
            mode="kubeconfig", kubeconfig=SecretRef(name="tenant-dr-source-kubeconfig", key="kubeconfig")
        ),
        description="how its Kubernetes API is reached (a kubeconfig Secret, or in-cluster)",
    )
    workloads: list[Workload] | None = Field(
        None, description="its apps to scale to 0 when fencing (default: the top-level fence list)"
    )


class SystemTest(_Model):
    """One HTTP check run against the domain after the DNS cutover."""

    path: str = Field("/", pattern=r"^/\S*$")
    expect_status: int = Field(200, ge=100, le=599)
    body_contains: str | None = None


class Onboarding(_Model):
    """How the new tenant is provisioned before its data is restored."""

    template: K8sName = Field("tenant-onboard", description="WorkflowTemplate called (entrypoint main)")
    bundle_configmap: IngressRef = Field(
        "argo/tenant-bundle", description="namespace/name of the ConfigMap holding the manifest bundle"
    )
    placeholder: str = Field("__TENANT_DOMAIN__", pattern=r"^\S{3,64}$", description="replaced by the domain")
    namespaces: list[Namespace] = Field(
        default_factory=list, description="also wait for every workload in these namespaces"
    )


class DR(_Model):
    """tenant-recreate: this config describes the NEW tenant; ``source`` is the old one."""

    source: DRSource = DRSource()
    domain: DomainName | None = Field(None, description="the public domain to move (default: dns.record)")
    temporary_domain: DomainName | None = Field(
        None, description="the new tenant's own domain until the move (None: no set-domain step)"
    )
    ingresses: list[IngressRef] = Field(default_factory=list, description="ns/name Ingresses set-domain rewrites")
    configmap_keys: list[ConfigMapKeyRef] = Field(
        default_factory=list, description="ns/name/key ConfigMap values set-domain rewrites"
    )
    ingress_service: IngressRef = Field(
        "ingress-nginx/ingress-nginx-controller",
        description="the new tenant's LoadBalancer Service; its hostname becomes the DNS target",
    )
    onboarding: Onboarding = Onboarding()
    system_tests: list[SystemTest] = Field(default_factory=lambda: [SystemTest()], min_length=1)
    system_tests_base_url: str | None = Field(
        None, pattern=r"^https?://\S+$", description="where system tests go (default: https://<domain>)"
    )
    system_tests_deadline_seconds: int = Field(
        300, ge=1, le=3600, description="how long failing system tests are retried before the run fails"
    )
    approval: bool = True
    rollback: bool = True
    teardown_template: K8sName | None = Field(
        None, description="drill: a WorkflowTemplate (entrypoint main) that deletes the scratch tenant's data"
    )

    @model_validator(mode="after")
    def _moves_somewhere(self) -> DR:
        if (self.ingresses or self.configmap_keys) and not self.temporary_domain:
            raise ValueError("ingresses/configmap_keys need temporary_domain (the domain set-domain moves from)")
        if self.temporary_domain and not (self.ingresses or self.configmap_keys):
            raise ValueError("temporary_domain needs ingresses and/or configmap_keys to rewrite")
        return self


class TenantConfig(_Model):
    """One tenant: what to back up, where to, when, and how DR reaches it."""

    name: str = Field("atlas", pattern=DNS_LABEL, max_length=20, description="tenant name, used in names")
    namespace: Namespace = Field("argo", description="namespace the packages are installed into")
    service_account: K8sName = "tenant-dr"
    store: Store = Store()
    components: Components = Components()
    fence: list[Workload] = Field(default_factory=_seed_workloads)
    schedule: Schedule = Schedule()
    retention: Retention = Retention()
    freshness: Freshness = Freshness()
    images: Images = Images()
    notify: Notify = Notify()
    dns: DNS = DNS()
    cluster: Cluster = Cluster()
    dr: DR = DR()

    @model_validator(mode="after")
    def _something_enabled(self) -> TenantConfig:
        if not self.components.enabled():
            raise ValueError("components: at least one component must be enabled")
        return self

    @model_validator(mode="after")
    def _dr_never_fences_itself(self) -> TenantConfig:
        if self.dr.source.cluster.mode == "in-cluster" and self.cluster.mode == "in-cluster":
            own = {w.ref for w in self.fence}
            clash = sorted(w.ref for w in self.dr_source_workloads if w.ref in own)
            if clash:
                raise ValueError(
                    f"dr.source: the old and new tenant share a cluster and fencing would scale down the new "
                    f"tenant's own {', '.join(clash)}; list the old tenant's workloads in dr.source.workloads"
                )
        return self

    @property
    def dr_source_tenant(self) -> str:
        """The old tenant's name in the store (default: this tenant's)."""
        return self.dr.source.tenant or self.name

    @property
    def dr_source_workloads(self) -> list[Workload]:
        """The old tenant's workloads to fence (default: the top-level fence list)."""
        return self.dr.source.workloads if self.dr.source.workloads is not None else self.fence

    @property
    def dr_domain(self) -> str:
        """The public domain DR moves (default: dns.record)."""
        return self.dr.domain or self.dns.record


DEFAULT = TenantConfig()


def _format_error(exc: ValidationError, source: str) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    kind = first["type"]
    msg = first["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        msg = "unknown key (check the spelling; see `tenant-dr config show` for every key)"
    more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{source}: {loc}: {msg}{more}"


def parse_config(data: Any, source: str = "config") -> TenantConfig:
    """Validate a mapping; :class:`ConfigError` (one line) on any problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(data).__name__}")
    try:
        return TenantConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from exc


def load_config(path: str | Path | None) -> TenantConfig:
    """Load a YAML tenant config, or the embedded default when ``path`` is ``None``."""
    if path is None:
        return DEFAULT
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "?"
        raise ConfigError(f"{file}: not valid YAML ({where}): {getattr(exc, 'problem', exc)}") from exc
    return parse_config(data, str(file))


def dump_config(config: TenantConfig) -> str:
    """The effective config as YAML (stable key order, every default spelled out)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, default_flow_style=False)
