"""End to end: `tenant-dr build` + `tenant-dr run` of the compiled packages, steps and all.

Real: PostgreSQL and Redis servers (two of each: the tenant and the DR target), S3 (moto server), the
step processes, the runner. Fakes (no server can run here): Elasticsearch (HTTP), the Kubernetes API
(HTTP, for the Argo export/apply), Cassandra pods (directories behind the local pod executor).

The tenant is backed up with `<tenant>-backup-all`, checked with the freshness template and
``steps.catalog latest``, then restored with `<tenant>-restore` (confirm=true) into the second set of
servers, which are compared with the first. The retry tests run the compiled PostgreSQL templates with
faults from the environment only: a PATH shim for ``pg_dump`` that fails twice, and a run id that does
not exist (exit 3).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_httpserver import HTTPServer

from tests.fakes.cassandra import FakeCassandra
from tests.fakes.elasticsearch import FakeBlobStore, FakeElasticsearch
from tests.fakes.kube import FakeKube, start_fake_kube
from tests.harness import REPO, PostgresServer, RedisServer, S3Server, pg_bin, postgres_server, redis_server, run_step

TENANT = "e2e"
DATABASES = ("appdb", "authdb")
CLI = "import sys; from workflows.cli import main; sys.argv[0] = 'tenant-dr'; main()"
ARGO_LABEL = {"tenant-dr/backup": "true"}


@dataclass
class Site:
    """One tenant installation: the servers a compiled config points at."""

    pg: PostgresServer
    redis: RedisServer
    es: FakeElasticsearch
    cassandra: FakeCassandra
    kube: FakeKube
    kubeconfig: Path


@dataclass
class World:
    """Everything the e2e tests share."""

    tmp: Path
    bucket: str
    store: str
    s3: S3Server
    source: Site
    target: Site
    sink: HTTPServer
    dist_source: Path
    dist_target: Path

    def env_file(self, site: Site, name: str, **extra: str) -> Path:
        """The ``--env`` file pointing steps at ``site`` (S3 endpoint, pod executor, kubeconfig)."""
        values = {
            "AWS_ENDPOINT_URL": self.s3.endpoint,
            "TENANT_DR_EXECUTOR": site.cassandra.executor,
            "TENANT_DR_ES_POLL_INTERVAL": "0.2",
            "TENANT_DR_KUBECONFIG": str(site.kubeconfig),
            **extra,
        }
        path = self.tmp / f"{name}.env"
        path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        return path

    def secrets_file(self, site: Site, name: str) -> Path:
        """The ``--secrets`` file: database passwords of ``site`` and the notify webhook."""
        secrets = {
            "postgresql": {"postgres-password": site.pg.password},
            "redis": {"redis-password": site.redis.password},
            "tenant-dr-notify": {"webhook-url": self.sink.url_for("/hook")},
        }
        path = self.tmp / f"{name}.secrets.yaml"
        path.write_text(yaml.safe_dump(secrets))
        return path

    def run(self, dist: Path, template: str, site: Site, *args: str, env: dict[str, str] | None = None) -> Run:
        """``tenant-dr run dist/<package>/templates/<template>.yaml`` as a subprocess."""
        file = next(dist.glob(f"*/templates/{template}.yaml"))
        name = (
            f"{template}-{len(list((self.tmp / 'state' / 'runs').glob('*'))) if (self.tmp / 'state').exists() else 0}"
        )
        argv = [sys.executable, "-c", CLI, "run", str(file), "--name", name, "--state-dir", str(self.tmp / "state")]
        argv += [
            "--secrets",
            str(self.secrets_file(site, name)),
            "--env",
            str(self.env_file(site, name, **(env or {}))),
        ]
        argv += ["--backoff-scale", "0.01", *args]
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=300)
        report = json.loads((self.tmp / "state" / "runs" / name / "run.json").read_text())
        return Run(proc.returncode, proc.stdout, proc.stderr, report)


@dataclass
class Run:
    """A finished ``tenant-dr run``."""

    code: int
    stdout: str
    stderr: str
    report: dict[str, Any]

    def node(self, display: str) -> dict[str, Any]:
        """The first node with this display name."""
        return next(n for n in self.report["nodes"] if n["displayName"] == display)

    def explain(self) -> str:
        """What to show when an assertion fails."""
        return f"exit {self.code}\n{self.stdout[-6000:]}\n{self.stderr[-2000:]}"


def config(site: Site, bucket: str) -> dict[str, Any]:
    """A tenant config for ``site`` (same tenant name for both sites: the target restores its backups)."""
    return {
        "name": TENANT,
        "store": {"url": f"s3://{bucket}/dr", "region": "us-east-1"},
        "components": {
            "elasticsearch": {"url": site.es.url, "repository": "tenant-dr", "enabled": True},
            "cassandra": {"namespace": "atlas", "data_dir": "data", "keyspaces": ["atlas"]},
            "postgres": {"host": "127.0.0.1", "port": site.pg.port, "databases": list(DATABASES)},
            "redis": {"url": site.redis.url},
            "argo": {"namespace": "argo", "configmap_selector": "tenant-dr/backup=true"},
        },
        "notify": {"format": "json"},
    }


def build(tmp: Path, name: str, cfg: dict[str, Any]) -> Path:
    """``tenant-dr build --config`` then ``tenant-dr lint``."""
    cfg_path = tmp / f"{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    out = tmp / name
    for argv in (["build", "--config", str(cfg_path), "--out", str(out)], ["lint", str(out)]):
        proc = subprocess.run([sys.executable, "-c", CLI, *argv], capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


# ---- data ---------------------------------------------------------------------------------------


def seed(site: Site) -> None:
    """Give the source tenant data in every component."""
    for db in DATABASES:
        site.pg.psql(f"CREATE DATABASE {db}")
    site.pg.psql(
        "CREATE TABLE accounts (id serial PRIMARY KEY, email text UNIQUE, balance numeric(12,2), meta jsonb);"
        "INSERT INTO accounts (email, balance, meta) SELECT 'u' || g || '@x.io', g * 1.5, "
        "jsonb_build_object('n', g) FROM generate_series(1, 2000) g;"
        "CREATE TABLE events (id bigserial PRIMARY KEY, account int REFERENCES accounts(id), "
        "at timestamptz, body text);"
        "INSERT INTO events (account, at, body) SELECT 1 + g % 2000, now(), repeat('x', g % 50) "
        "FROM generate_series(1, 5000) g;",
        dbname="appdb",
    )
    site.pg.psql(
        "CREATE TABLE realms (name text PRIMARY KEY); INSERT INTO realms VALUES ('master'), ('e2e');", "authdb"
    )
    r0, r1 = site.redis.client(0), site.redis.client(1)
    r0.set("greeting", "hello")
    r0.hset("user:1", mapping={"name": "ada", "plan": "pro"})
    r0.rpush("queue", "a", "b", "c")
    r1.sadd("tags", "x", "y")
    r1.zadd("scores", {"ada": 3.0, "bob": 1.5})
    site.es.add_index("logs-1", docs=120, primaries=2, replicas=1)
    site.es.add_index("users", docs=7)
    site.cassandra.create_keyspace("atlas", {"users": "id uuid PRIMARY KEY, name text", "events": "id int PRIMARY KEY"})
    site.cassandra.write_sstables("atlas", "users", generations=2)
    site.cassandra.write_sstables("atlas", "events", generations=1, size=200_000)
    state = site.kube.state
    state.workflow_template(
        "argo",
        "app-nightly",
        {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "app:1", "args": ["run"]}}]},
        labels={"app.kubernetes.io/part-of": "app"},
    )
    state.cron_workflow("argo", "app-nightly", schedule="0 1 * * *")
    state.configmap("argo", "app-params", {"retention": "15"}, labels=ARGO_LABEL)


def pg_content(pg: PostgresServer) -> dict[str, str]:
    """A digest of every table's rows, per database."""
    out = {}
    existing = pg.psql("SELECT datname FROM pg_database").split()
    for db in [d for d in DATABASES if d in existing]:
        tables = pg.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1", db).split()
        for table in tables:
            out[f"{db}.{table}"] = pg.psql(
                f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t", db
            )
    return out


def redis_content(site: Site) -> dict[str, Any]:
    """Every key with its type and value, per db."""
    out: dict[str, Any] = {}
    for db in (0, 1):
        client = site.redis.client(db)
        for key in client.scan_iter():
            kind = client.type(key).decode()
            readers = {
                "string": client.get,
                "hash": client.hgetall,
                "list": lambda k, c=client: c.lrange(k, 0, -1),
                "set": lambda k, c=client: sorted(c.smembers(k)),
                "zset": lambda k, c=client: c.zrange(k, 0, -1, withscores=True),
            }
            value: Any = readers[kind](key)
            out[f"{db}/{key.decode()}"] = (kind, repr(value))
    return out


def cassandra_content(fc: FakeCassandra) -> dict[tuple[str, str], list[str]]:
    """Per pod and table: the digests of its SSTable files (names change on import, contents must not)."""
    return {
        (pod, table): sorted(hashlib.sha256(data).hexdigest() for data in fc.files(pod, "atlas", table).values())
        for pod in fc.pod_names
        for table in ("users", "events")
    }


def argo_content(kube: FakeKube) -> dict[str, Any]:
    """The tenant's Argo objects without server-maintained fields (tenant-dr's own are not the tenant's data)."""
    out = {}
    for kind in ("workflowtemplates", "cronworkflows", "configmaps"):
        for obj in kube.state.list_objects(kind, "argo"):
            if kind == "configmaps" and obj["metadata"].get("labels", {}) != ARGO_LABEL:
                continue
            if obj["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "tenant-dr":
                continue
            clean = copy.deepcopy(obj)
            clean.pop("status", None)
            meta = clean["metadata"]
            for field in ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "annotations"):
                meta.pop(field, None)
            if kind == "cronworkflows":
                clean["spec"].pop("suspend", None)
            out[f"{kind}/{meta['name']}"] = clean
    return out


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("e2e")
    bucket = "tdr-e2e"
    s3.client().create_bucket(Bucket=bucket)
    blobs = FakeBlobStore()
    sink = HTTPServer(host="127.0.0.1", port=0)
    sink.start()
    kubes: list[FakeKube] = []
    with (
        postgres_server() as pg_a,
        postgres_server(password="pg-Target-4b1d") as pg_b,
        redis_server() as redis_a,
        redis_server(password="rd-Target-91aa") as redis_b,
        FakeElasticsearch(username=None, password=None, blobstore=blobs) as es_a,
        FakeElasticsearch(username=None, password=None, blobstore=blobs) as es_b,
    ):
        sites = []
        for label, pg, rd, es in (("source", pg_a, redis_a, es_a), ("target", pg_b, redis_b, es_b)):
            kube = start_fake_kube(controller_delay=0.05)
            kubes.append(kube)
            kube.state.namespace("argo")
            cass = FakeCassandra(tmp / f"cassandra-{label}", username=None, password=None)
            sites.append(Site(pg, rd, es, cass, kube, kube.kubeconfig(tmp / f"kubeconfig-{label}")))
        source, target = sites
        seed(source)
        try:
            yield World(
                tmp=tmp,
                bucket=bucket,
                store=f"s3://{bucket}/dr",
                s3=s3,
                source=source,
                target=target,
                sink=sink,
                dist_source=build(tmp, "dist-source", config(source, bucket)),
                dist_target=build(tmp, "dist-target", config(target, bucket)),
            )
        finally:
            for kube in kubes:
                kube.stop()
            sink.clear()
            sink.stop()


def hooks(sink: HTTPServer) -> list[dict[str, Any]]:
    """The JSON bodies the notify step posted."""
    return [json.loads(req.get_data()) for req, _ in sink.log if req.path == "/hook"]


def catalog_step(world: World, action: str, *args: str) -> Any:
    return run_step(
        "catalog",
        [action, "--tenant", TENANT, "--store", world.store, *args],
        env={"AWS_ENDPOINT_URL": world.s3.endpoint},
    )


# ---- the tests ----------------------------------------------------------------------------------


def test_backup_all_seals_a_run_that_is_latest_and_fresh(world: World) -> None:
    world.sink.expect_request("/hook", method="POST").respond_with_data("ok")
    run = world.run(world.dist_source, f"{TENANT}-backup-all", world.source)
    assert run.code == 0, run.explain()
    assert run.report["phase"] == "Succeeded"
    run_id = run.node("new-run-id")["outputs"]["run-id"]
    components = [c for c in ("elasticsearch", "cassandra", "postgres", "redis", "argo")]
    for component in (*components, "seal", "prune"):
        assert run.node(component)["phase"] == "Succeeded", (component, run.explain())
    keys = {o["Key"] for o in world.s3.client().list_objects_v2(Bucket=world.bucket, Prefix="dr/")["Contents"]}
    assert f"dr/{TENANT}/runs/{run_id}/RUN.json" in keys
    for component in components:
        assert f"dr/{TENANT}/runs/{run_id}/{component}/manifest.json" in keys

    latest = catalog_step(world, "latest")
    assert latest.code == 0 and latest.result["run_id"] == run_id, latest.stderr[-2000:]
    fresh = world.run(world.dist_source, f"{TENANT}-backup-freshness", world.source)
    assert fresh.code == 0, fresh.explain()

    posted = hooks(world.sink)
    assert posted and json.dumps(posted[-1]).count("Succeeded") >= 1
    assert "pg-Secret" not in run.stdout + run.stderr


def test_restore_all_into_the_second_tenant_is_identical(world: World) -> None:
    assert catalog_step(world, "latest").code == 0, "needs the backup of the previous test"
    assert pg_content(world.target.pg) == {}
    run = world.run(world.dist_target, f"{TENANT}-restore", world.target, "-p", "confirm=true")
    assert run.code == 0, run.explain()
    assert run.node("plan")["phase"] == "Skipped"
    assert pg_content(world.target.pg) == pg_content(world.source.pg)
    assert redis_content(world.target) == redis_content(world.source)
    assert {n: i.docs for n, i in world.target.es.indices.items()} == {
        n: i.docs for n, i in world.source.es.indices.items()
    }
    assert cassandra_content(world.target.cassandra) == cassandra_content(world.source.cassandra)
    assert argo_content(world.target.kube) == argo_content(world.source.kube)
    # the target kept its own superuser password
    assert world.target.pg.psql("SELECT 1") == "1"


def shim_dir(tmp: Path, fail_times: int) -> Path:
    """A PATH directory whose ``pg_dump`` fails ``fail_times`` dump calls with exit 1, then runs the real one."""
    directory = tmp / "shim"
    directory.mkdir(exist_ok=True)
    counter = directory / "count"
    script = f"""#!/bin/sh
case "$1" in --version) exec {pg_bin("pg_dump")} "$@";; esac
n=$(cat {counter} 2>/dev/null || echo 0)
echo $((n + 1)) > {counter}
if [ "$n" -lt {fail_times} ]; then echo "pg_dump: error: connection to server lost (injected)" >&2; exit 1; fi
exec {pg_bin("pg_dump")} "$@"
"""
    shim = directory / "pg_dump"
    shim.write_text(script)
    shim.chmod(0o755)
    return directory


def test_transient_failures_are_retried_and_the_workflow_succeeds(world: World) -> None:
    world.sink.clear()
    world.sink.expect_request("/hook", method="POST").respond_with_data("ok")
    shim = shim_dir(world.tmp, fail_times=2)
    run = world.run(
        world.dist_source,
        f"{TENANT}-postgres-backup",
        world.source,
        env={"PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"},
    )
    assert run.code == 0, run.explain()
    backup = run.node("backup")
    attempts = [n for n in run.report["nodes"] if n["displayName"].startswith("backup(")]
    assert [a["phase"] for a in attempts] == ["Failed", "Failed", "Succeeded"]
    assert all(a["exitCode"] == 1 for a in attempts[:2])
    assert "injected" in attempts[0]["errorLine"]
    assert backup["phase"] == "Succeeded"
    assert hooks(world.sink)[-1]["status"] == "Succeeded"


def test_integrity_failure_is_not_retried_and_on_exit_reports_it(world: World) -> None:
    world.sink.clear()
    world.sink.expect_request("/hook", method="POST").respond_with_data("ok")
    missing = "20200101T000000Z-abcdef"
    run = world.run(
        world.dist_target, f"{TENANT}-postgres-restore", world.target, "-p", f"run-id={missing}", "-p", "confirm=true"
    )
    assert run.code == 1, run.explain()
    attempts = [n for n in run.report["nodes"] if n["displayName"].startswith("restore(")]
    assert len(attempts) == 1 and attempts[0]["exitCode"] == 3
    assert "retryStrategy.expression" in run.node("restore")["message"]
    posted = hooks(world.sink)[-1]
    assert posted["status"] == "Failed"
    assert missing in json.dumps(posted)
    assert "Failed" in run.stdout and missing in run.stdout
