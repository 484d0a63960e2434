"""End to end: ``tenant-recreate`` through `tenant-dr build` + `lint` + `run`, every step a real process.

Real: PostgreSQL and Redis (old and new tenant), S3 (moto server), the steps, the runner. Fakes (no server can
run here): the two Kubernetes API servers (old tenant: its apps and Argo objects; new tenant: the onboarding
bundle, the apps it creates, the ingress controller's LoadBalancer Service), Cassandra pods (local executor),
Cloudflare's API, and the new tenant's HTTP endpoint the system tests call (a local HTTP server).

The old tenant ``old`` is backed up with its own ``old-backup-all``; ``tenant-recreate`` is built from the new
tenant's config (``new``, ``dr.source.tenant: old``) and restores ``old``'s run into the new servers. The tests
run in order and share the world: a corrupted object stops preflight, a drill leaves the old tenant and DNS
alone, a failure after fencing rolls back, ``argo retry`` of that workflow (``tenant-dr run --retry``) fails
at the system tests' precheck instead of testing the old tenant, a resubmit converges to a full recreate, a
drill of the now live tenant is refused in preflight, a failure after the cutover completed is not rolled
back, and with the old cluster unreachable ``fence=skip`` cuts over without it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Response

from tests.e2e.test_e2e_dr import (
    CLI,
    DATABASES,
    Run,
    Site,
    argo_content,
    build,
    cassandra_content,
    hooks,
    pg_content,
    redis_content,
    seed,
)
from tests.fakes.cassandra import FakeCassandra
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.elasticsearch import FakeBlobStore, FakeElasticsearch
from tests.fakes.kube import FakeKube, start_fake_kube
from tests.harness import REPO, S3Server, postgres_server, redis_server

OLD, NEW = "old", "new"
DOMAIN = "app.example.com"
TEMP_DOMAIN = "new-tenant.example.com"
OLD_LB, NEW_LB = "old-lb.example.net", "new-lb.example.net"
CF_TOKEN = "cf-Token-5c2e91d0aa"  # a test token for the fake
TENANT_DR = {"app.kubernetes.io/part-of": "tenant-dr"}
APPS = {"atlas/deployment/web": 2, "atlas/statefulset/keycloak": 1}
BUNDLE = {
    "10-namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: atlas}\n",
    "20-apps.yaml": """
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config, namespace: atlas}
data: {PUBLIC_URL: "https://__TENANT_DOMAIN__/"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: atlas}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template: {metadata: {labels: {app: web}}, spec: {containers: [{name: web, image: "web:1"}]}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: keycloak, namespace: atlas}
spec:
  replicas: 1
  serviceName: keycloak
  selector: {matchLabels: {app: keycloak}}
  template: {metadata: {labels: {app: keycloak}}, spec: {containers: [{name: kc, image: "kc:1"}]}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: atlas}
spec:
  rules: [{host: __TENANT_DOMAIN__}]
  tls: [{hosts: [__TENANT_DOMAIN__], secretName: web-tls}]
""",
}


@dataclass
class DrWorld:
    """Both tenants, the store, Cloudflare, the system-test endpoint and the two builds."""

    tmp: Path
    store: str
    s3: S3Server
    old: Site
    new: Site
    cf: FakeCloudflare
    app: HTTPServer
    sink: HTTPServer
    dist_old: Path
    dist_new: Path

    def run(
        self, dist: Path, template: str, site: Site, *args: str, name: str | None = None, source: Path | None = None
    ) -> Run:
        """``tenant-dr run`` of a compiled template against ``site`` (the cluster in-cluster steps reach).

        ``source``: the old tenant's kubeconfig in its Secret (default: the old fake cluster's).
        """
        file = next(dist.glob(f"*/templates/{template}.yaml"))
        runs = self.tmp / "state" / "runs"
        name = name or f"{template}-{len(list(runs.glob('*'))) if runs.exists() else 0}"
        secrets = {
            "postgresql": {"postgres-password": site.pg.password},
            "redis": {"redis-password": site.redis.password},
            "tenant-dr-notify": {"webhook-url": self.sink.url_for("/hook")},
            "cloudflare": {"api-token": CF_TOKEN},
            "tenant-dr-source-kubeconfig": {"kubeconfig": (source or self.old.kubeconfig).read_text()},
        }
        secrets_file = self.tmp / f"{name}.secrets.yaml"
        secrets_file.write_text(yaml.safe_dump(secrets))
        env = {
            "AWS_ENDPOINT_URL": self.s3.endpoint,
            "TENANT_DR_EXECUTOR": site.cassandra.executor,
            "TENANT_DR_KUBECONFIG": str(site.kubeconfig),
            "CLOUDFLARE_API_BASE_URL": self.cf.api_url,
        }
        env_file = self.tmp / f"{name}.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        argv = [sys.executable, "-c", CLI, "run", str(file), "--name", name, "--state-dir", str(self.tmp / "state")]
        argv += ["--secrets", str(secrets_file), "--env", str(env_file), "--backoff-scale", "0.01", "--plain", *args]
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=600)
        report = json.loads((runs / name / "run.json").read_text())
        return Run(proc.returncode, proc.stdout, proc.stderr, report)

    def recreate(self, *params: str, name: str | None = None, retry: bool = False, source: Path | None = None) -> Run:
        """Run tenant-recreate on the new tenant (no approval gate unless asked; ``retry``: like ``argo retry``)."""
        argv: list[str] = ["--retry"] if retry else []
        for p in ("approval-required=false", *params):
            argv += ["-p", p]
        return self.run(self.dist_new, "tenant-recreate", self.new, *argv, name=name, source=source)

    def old_tenant_live(self) -> None:
        """Reset to before any cutover: the domain points at the old LB and the old tenant runs."""
        self.cf.remove_records("example.com", DOMAIN)
        self.cf.add_record("example.com", "CNAME", DOMAIN, OLD_LB, proxied=True)
        for ref, replicas in APPS.items():
            ns, kind, name = ref.split("/")
            obj = self.old.kube.state.get(f"{kind}s", ns, name)
            assert obj is not None
            obj["spec"]["replicas"] = replicas
            self.old.kube.state.replace(obj)
        assert self.dns() == [("CNAME", OLD_LB, True)]
        assert self.replicas(self.old.kube) == APPS

    def put_state(self, operation: str, record: str, body: bytes) -> None:
        """Write a state record of the source tenant (a fault injected through the store)."""
        bucket, prefix = self.store.removeprefix("s3://").split("/", 1)
        self.s3.client().put_object(Bucket=bucket, Key=f"{prefix}/{OLD}/state/{operation}/{record}.json", Body=body)

    def dns(self) -> list[tuple[str, str, bool]]:
        """The domain's address records as (type, content, proxied)."""
        return [(r["type"], r["content"], r["proxied"]) for r in self.cf.records("example.com", DOMAIN)]

    def replicas(self, kube: FakeKube) -> dict[str, int]:
        """spec.replicas of the app workloads."""
        out = {}
        for ref in APPS:
            ns, kind, name = ref.split("/")
            obj = kube.state.get(f"{kind}s", ns, name)
            out[ref] = -1 if obj is None else int(obj["spec"]["replicas"])
        return out

    def state(self, operation: str, record: str) -> dict[str, Any] | None:
        """A state record of the source tenant in the store."""
        bucket, prefix = self.store.removeprefix("s3://").split("/", 1)
        key = f"{prefix}/{OLD}/state/{operation}/{record}.json"
        try:
            body = self.s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        except self.s3.client().exceptions.NoSuchKey:
            return None
        return dict(json.loads(body))


def tenant_config(name: str, site: Site, bucket: str, app_url: str) -> dict[str, Any]:
    """One tenant's config; the new tenant's carries the dr section."""
    cfg: dict[str, Any] = {
        "name": name,
        "store": {"url": f"s3://{bucket}/dr", "region": "us-east-1"},
        "components": {
            "elasticsearch": {"url": site.es.url, "enabled": False},
            "cassandra": {"namespace": "atlas", "data_dir": "data", "keyspaces": ["atlas"]},
            "postgres": {"host": "127.0.0.1", "port": site.pg.port, "databases": list(DATABASES)},
            "redis": {"url": site.redis.url},
            "argo": {"namespace": "argo", "configmap_selector": "tenant-dr/backup=true"},
        },
        "fence": [{"kind": ref.split("/")[1], "name": ref.split("/")[2], "namespace": "atlas"} for ref in APPS],
        "notify": {"format": "json"},
        "dns": {"zone": "example.com", "record": DOMAIN},
    }
    if name == NEW:
        cfg["dr"] = {
            "source": {"tenant": OLD},
            "temporary_domain": TEMP_DOMAIN,
            "ingresses": ["atlas/web"],
            "configmap_keys": ["atlas/app-config/PUBLIC_URL"],
            "system_tests": [{"path": "/healthz", "expect_status": 200, "body_contains": "new-tenant-ok"}],
            "system_tests_base_url": app_url,
            "system_tests_deadline_seconds": 3,
        }
    return cfg


@pytest.fixture(scope="module")
def world(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrWorld]:
    tmp = tmp_path_factory.mktemp("dr")
    bucket = "tdr-dr-e2e"
    s3.client().create_bucket(Bucket=bucket)
    blobs = FakeBlobStore()
    sink, app = HTTPServer(host="127.0.0.1", port=0), HTTPServer(host="127.0.0.1", port=0)
    sink.start()
    app.start()
    sink.expect_request("/hook", method="POST").respond_with_data("ok")
    cf = FakeCloudflare().start()
    cf.add_token(CF_TOKEN)
    cf.add_zone("example.com")
    cf.add_record("example.com", "CNAME", DOMAIN, OLD_LB, proxied=True)
    cf.add_record("example.com", "A", "other.example.com", "192.0.2.10")
    kubes: list[FakeKube] = []
    with (
        postgres_server() as pg_a,
        postgres_server(password="pg-New-Tenant-61f0") as pg_b,
        redis_server() as redis_a,
        redis_server(password="rd-New-Tenant-0c4d") as redis_b,
        FakeElasticsearch(username=None, password=None, blobstore=blobs) as es_a,
        FakeElasticsearch(username=None, password=None, blobstore=blobs) as es_b,
    ):
        sites = []
        for label, pg, rd, es, seed_of_tokens in ((OLD, pg_a, redis_a, es_a, 1), (NEW, pg_b, redis_b, es_b, 2)):
            kube = start_fake_kube(controller_delay=0.05)
            kubes.append(kube)
            kube.state.namespace("argo")
            # the new cluster's nodes have other tokens, as a newly started cluster always does
            cass = FakeCassandra(tmp / f"cassandra-{label}", username=None, password=None, token_seed=seed_of_tokens)
            sites.append(Site(pg, rd, es, cass, kube, kube.kubeconfig(tmp / f"kubeconfig-{label}")))
        old, new = sites
        seed(old)
        # the old tenant's own tenant-dr installation: never backed up, never restored onto the new tenant
        old.kube.state.workflow_template("argo", "old-backup-all", {"entrypoint": "main"}, labels=TENANT_DR)
        old.kube.state.cron_workflow("argo", "old-backup-daily", template="old-backup-all", labels=TENANT_DR)
        old.kube.state.namespace("atlas")
        for ref, replicas in APPS.items():
            ns, kind, name = ref.split("/")
            (old.kube.state.deployment if kind == "deployment" else old.kube.state.statefulset)(ns, name, replicas)
        new.kube.state.configmap("argo", "tenant-bundle", BUNDLE)
        new.kube.state.namespace("ingress-nginx")
        new.kube.state.service("ingress-nginx", "ingress-nginx-controller", lb_hostname=NEW_LB)
        app_url = app.url_for("/").rstrip("/")
        dists = {
            label: build(tmp, f"dist-{label}", tenant_config(label, site, bucket, app_url))
            for label, site in ((OLD, old), (NEW, new))
        }
        try:
            yield DrWorld(tmp, f"s3://{bucket}/dr", s3, old, new, cf, app, sink, dists[OLD], dists[NEW])
        finally:
            for kube in kubes:
                kube.stop()
            cf.stop()
            for server in (sink, app):
                server.clear()
                server.stop()


def serve_health(app: HTTPServer, status: int) -> None:
    """The new tenant's endpoint answers /healthz with ``status``."""
    app.clear_all_handlers()
    body = "new-tenant-ok" if status == 200 else "maintenance"
    app.expect_request("/healthz").respond_with_response(Response(body, status=status))


def data_of(site: Site) -> dict[str, Any]:
    """Every component's content (Cassandra: none before its keyspace exists)."""
    has_keyspace = "atlas" in site.cassandra.state().get("keyspaces", {})
    return {
        "pg": pg_content(site.pg),
        "redis": redis_content(site),
        "cassandra": cassandra_content(site.cassandra) if has_keyspace else {},
        "argo": argo_content(site.kube),
    }


# ---- the tests (in order) ----------------------------------------------------------------------


def test_the_old_tenant_is_backed_up(world: DrWorld) -> None:
    run = world.run(world.dist_old, f"{OLD}-backup-all", world.old)
    assert run.code == 0, run.explain()


def test_a_corrupted_backup_stops_in_preflight_and_changes_nothing(world: DrWorld) -> None:
    client = world.s3.client()
    bucket, prefix = world.store.removeprefix("s3://").split("/", 1)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/{OLD}/runs/")["Contents"]]
    victim = next(k for k in keys if "/postgres/" in k and not k.endswith("manifest.json"))
    original = client.get_object(Bucket=bucket, Key=victim)["Body"].read()
    client.put_object(Bucket=bucket, Key=victim, Body=original[:-7] + b"garbage")
    before = (world.dns(), world.replicas(world.old.kube), data_of(world.new))
    try:
        run = world.recreate()
    finally:
        client.put_object(Bucket=bucket, Key=victim, Body=original)
    assert run.code == 1, run.explain()
    assert run.node("verify")["phase"] == "Failed"
    assert run.node("verify")["exitCode"] == 3
    for phase in ("approval", "onboard", "restore", "cutover"):
        assert not [n for n in run.report["nodes"] if n["displayName"] == phase and n["phase"] != "Omitted"], phase
    assert (world.dns(), world.replicas(world.old.kube), data_of(world.new)) == before
    assert world.new.kube.state.get("namespaces", None, "atlas") is None  # not even onboarded
    assert run.node("rollback-old-tenant")["phase"] == "Succeeded"  # the no-op rollback ran and found nothing
    assert world.state(run.report["workflow"], "replicas-old-tenant") is None
    assert hooks(world.sink)[-1]["status"] == "Failed"


def test_a_drill_restores_validates_tears_down_and_never_touches_the_old_tenant_or_dns(world: DrWorld) -> None:
    serve_health(world.app, 200)
    dns_before, writes_before = world.dns(), len(world.cf.writes())
    run = world.recreate("drill=true")
    assert run.code == 0, run.explain()
    assert data_of(world.new) == data_of(world.old)
    assert run.node("validate-data")["phase"] == "Succeeded"
    for skipped in ("fence", "set-domain", "dns-cutover", "system-tests"):
        assert run.node(skipped)["phase"] == "Skipped", skipped
    assert world.dns() == dns_before and len(world.cf.writes()) == writes_before
    assert world.replicas(world.old.kube) == APPS
    assert world.replicas(world.new.kube) == {ref: 0 for ref in APPS}  # torn down
    timings = json.loads(run.node("timings")["outputs"]["timings"])
    assert [p["phase"] for p in timings["phases"]][:4] == ["preflight", "approval", "onboard", "restore"]
    assert timings["rto_seconds"] > 0


def test_a_failure_after_fencing_rolls_dns_and_the_old_tenant_back(world: DrWorld) -> None:
    serve_health(world.app, 503)
    run = world.recreate(name="recreate-live")
    assert run.code == 1, run.explain()
    assert run.node("fence")["phase"] == "Succeeded"
    assert run.node("dns-cutover")["phase"] == "Succeeded"
    assert run.node("system-tests")["phase"] == "Failed"
    assert run.node("rollback-old-tenant")["phase"] == "Succeeded"
    assert run.node("rollback-dns")["phase"] == "Succeeded"
    assert world.dns() == [("CNAME", OLD_LB, True)]
    assert world.replicas(world.old.kube) == APPS
    assert world.state("recreate-live", "replicas-old-tenant")["workloads"] == APPS  # type: ignore[index]
    assert hooks(world.sink)[-1]["status"] == "Failed"


def test_argo_retry_after_the_rollback_fails_at_the_precheck_instead_of_testing_the_old_tenant(
    world: DrWorld,
) -> None:
    serve_health(world.app, 200)  # the system tests alone would pass (they would reach the old tenant)
    run = world.recreate(name="recreate-live", retry=True)
    assert run.code == 1, run.explain()
    tests = run.node("system-tests")
    assert tests["phase"] == "Failed" and tests["exitCode"] == 3, run.explain()
    assert "precheck failed, no system test was run" in tests["errorLine"]
    assert f"no CNAME record pointing at {NEW_LB}" in tests["errorLine"]
    assert "run again" in tests["errorLine"]  # the fence was undone by the rollback
    assert [n["phase"] for n in run.report["nodes"] if n["displayName"].startswith("system-tests(")] == ["Failed"]
    for kept in ("preflight", "restore", "fence", "set-domain", "dns-cutover"):
        assert run.node(kept)["phase"] == "Succeeded", kept
    assert run.node("cutover-complete")["phase"] == "Omitted"
    # fence and dns-cutover were not run again: the old tenant still serves, DNS still points at it
    assert world.dns() == [("CNAME", OLD_LB, True)]
    assert world.replicas(world.old.kube) == APPS
    assert run.node("rollback-old-tenant")["phase"] == "Succeeded"
    assert world.state("recreate-live", "cutover-complete") is None
    assert hooks(world.sink)[-1]["status"] == "Failed"


def test_resubmitting_converges_to_a_full_recreate(world: DrWorld) -> None:
    serve_health(world.app, 200)
    run = world.recreate(name="recreate-again")  # a new workflow (argo submit / resubmit): fresh records
    assert run.code == 0, run.explain()
    # data identical in the new tenant
    assert data_of(world.new) == data_of(world.old)
    assert world.new.pg.psql("SELECT 1") == "1"  # kept its own superuser password
    # the old tenant's own tenant-dr objects were neither backed up nor restored onto the new tenant
    for kind, name in (("workflowtemplates", "old-backup-all"), ("cronworkflows", "old-backup-daily")):
        assert world.old.kube.state.get(kind, "argo", name) is not None
        assert world.new.kube.state.get(kind, "argo", name) is None, name
        assert not [r for r in world.new.kube.state.requests if r.path.endswith(f"/{kind}/{name}")], name
    # the old tenant fenced, with the replicas it had again after the first run's rollback recorded
    assert world.replicas(world.old.kube) == {ref: 0 for ref in APPS}
    assert world.state("recreate-again", "replicas-old-tenant")["workloads"] == APPS  # type: ignore[index]
    assert not world.old.kube.state.pods("atlas", "app=web")
    # the domain moved onto the new tenant
    ingress = world.new.kube.state.get("ingresses", "atlas", "web")
    assert ingress is not None and ingress["spec"]["rules"][0]["host"] == DOMAIN
    config = world.new.kube.state.get("configmaps", "atlas", "app-config")
    assert config is not None and config["data"]["PUBLIC_URL"] == f"https://{DOMAIN}/"
    # DNS points at the new load balancer; the previous record is kept for rollback; other names untouched
    assert world.dns() == [("CNAME", NEW_LB, True)]
    assert [r["content"] for r in world.cf.records("example.com", "other.example.com")] == ["192.0.2.10"]
    previous = world.state("recreate-again", "dns-app.example.com")
    assert previous is not None and [r["content"] for r in previous["records"]] == [OLD_LB]
    # system tests passed, the cutover is recorded complete, rollback did not run, timings reported
    assert run.node("system-tests")["phase"] == "Succeeded"
    assert world.state("recreate-again", "cutover-complete") is not None
    assert run.node("rollback-dns")["phase"] == "Skipped"
    timings = world.state("recreate-again", "timings")
    assert timings is not None and timings["rto_seconds"] > 0
    assert {p["phase"] for p in timings["phases"]} >= {"preflight", "restore", "cutover"}
    assert run.report["nodes"][0]["outputs"]["rto-seconds"] == str(timings["rto_seconds"])
    assert hooks(world.sink)[-1]["status"] == "Succeeded"


def test_a_drill_of_the_live_new_tenant_is_refused_in_preflight(world: DrWorld) -> None:
    """After the cutover the new tenant IS production: a drill (or second run) must not wipe it."""
    db = DATABASES[0]
    world.new.pg.psql("CREATE TABLE prod_writes (id int); INSERT INTO prod_writes VALUES (1)", db)
    serve_health(world.app, 200)
    before = (data_of(world.new), world.replicas(world.new.kube), world.replicas(world.old.kube), world.dns())
    ingress_before = world.new.kube.state.get("ingresses", "atlas", "web")
    run = world.recreate("drill=true", name="drill-after-cutover")
    assert run.code == 1, run.explain()
    plan = run.node("dns-plan")
    assert plan["exitCode"] == 3 and "\n" not in plan["errorLine"]
    assert f"{DOMAIN} already points at {NEW_LB}" in plan["errorLine"]
    assert "if-target-live=proceed" in plan["errorLine"] and "remove the tenant-recreate package" in plan["errorLine"]
    for phase in ("approval", "onboard", "restore", "teardown"):
        assert run.node(phase)["phase"] == "Omitted", phase
    assert (data_of(world.new), world.replicas(world.new.kube), world.replicas(world.old.kube), world.dns()) == before
    assert "prod_writes" in world.new.pg.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", db)
    assert world.new.kube.state.get("ingresses", "atlas", "web") == ingress_before
    assert world.replicas(world.new.kube) == APPS  # the live tenant's apps keep running


def test_a_failure_after_the_cutover_completed_is_not_rolled_back(world: DrWorld) -> None:
    world.old_tenant_live()
    serve_health(world.app, 200)
    world.put_state("recreate-late-failure", "timings", b"not json")  # `timings` (after the cutover) fails: exit 3
    run = world.recreate(name="recreate-late-failure")
    assert run.code == 1, run.explain()
    assert run.node("timings")["phase"] == "Failed" and run.node("timings")["exitCode"] == 3
    assert run.node("system-tests")["phase"] == "Succeeded"
    # the cutover stands: DNS on the new tenant, the old tenant still fenced
    assert world.dns() == [("CNAME", NEW_LB, True)]
    assert world.replicas(world.old.kube) == {ref: 0 for ref in APPS}
    assert run.node("cutover-complete")["phase"] == "Succeeded"
    assert run.node("rollback-old-tenant")["phase"] == "Succeeded"  # ran, and left the fence alone
    assert run.node("rollback-dns")["phase"] == "Succeeded"
    assert hooks(world.sink)[-1]["status"] == "Failed"


def test_with_the_old_cluster_unreachable_fence_skip_cuts_over_without_it(world: DrWorld, tmp_path: Path) -> None:
    world.old_tenant_live()
    serve_health(world.app, 200)
    lost = start_fake_kube()  # the old tenant's API server, gone: its kubeconfig points at nothing
    lost_kubeconfig = lost.kubeconfig(tmp_path / "kubeconfig-lost")
    lost.stop()
    old_requests = len(world.old.kube.state.requests)
    run = world.recreate("fence=skip", name="recreate-old-lost", source=lost_kubeconfig)
    assert run.code == 0, run.explain()
    for skipped in ("old-tenant-plan", "fence"):
        assert run.node(skipped)["phase"] == "Skipped", skipped
    assert run.node("system-tests")["phase"] == "Succeeded"
    assert world.state("recreate-old-lost", "replicas-old-tenant") is None  # nothing recorded, nothing to undo
    assert world.dns() == [("CNAME", NEW_LB, True)]
    assert data_of(world.new) == data_of(world.old)
    assert len(world.old.kube.state.requests) == old_requests  # (the real old fake was never reached either)
