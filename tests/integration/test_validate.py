"""``python -m steps.validate data|http`` as subprocesses.

``data``: real backups made by the component steps (real PostgreSQL and Redis servers, the fake
Elasticsearch), catalog in moto S3; the components' own ``verify`` actions do the comparing.
``http``: system tests against a local pytest-httpserver, gated by ``dns verify`` prechecks against the
Cloudflare fake.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Request, Response

from steps.storage import open_store
from steps.storage.catalog import Catalog, new_run_id
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.elasticsearch import FakeElasticsearch
from tests.harness import PostgresServer, RedisServer, S3Server, StepRun, free_port, run_step

TENANT = "acme"


# ---- validate data ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def es() -> Iterator[FakeElasticsearch]:
    with FakeElasticsearch() as fake:
        fake.add_index("logs-1", docs=120, primaries=2)
        fake.add_index("users", docs=7)
        yield fake


@pytest.fixture(scope="module")
def backed_up(
    s3: S3Server, pg: PostgresServer, redis_srv: RedisServer, es: FakeElasticsearch
) -> Iterator[tuple[str, str]]:
    """One sealed run with postgres, redis and elasticsearch backups made by their own steps."""
    bucket = f"tdr-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=bucket)
    store = f"s3://{bucket}/backups"
    pg.psql("CREATE DATABASE shop")
    pg.psql("CREATE TABLE orders (id int PRIMARY KEY, note text)", "shop")
    pg.psql("INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 250) g", "shop")
    pg.psql("CREATE TABLE customers (id int PRIMARY KEY)", "shop")
    pg.psql("INSERT INTO customers SELECT generate_series(1, 40)", "shop")
    r0, r3 = redis_srv.client(0), redis_srv.client(3)
    r0.flushall()
    r0.mset({f"k{i}": i for i in range(30)})
    r3.hset("h", mapping={"a": 1})
    run_id = new_run_id()
    common = ["--tenant", TENANT, "--store", store, "--run-id", run_id]
    for module, args in (
        ("postgres", ["--databases", "shop"]),
        ("redis", ["--url", redis_srv.url]),
        ("elasticsearch", ["--url", es.url, "--poll-interval", "0.1"]),
    ):
        backup = run_step(module, ["backup", *common, *args], env=env_for(pg, redis_srv, es), timeout=180)
        assert backup.code == 0, f"{module}: {backup.error}"
    Catalog(open_store(store), TENANT).seal(run_id, ["postgres", "redis", "elasticsearch"])
    yield store, run_id


def env_for(pg: PostgresServer, redis_srv: RedisServer, es: FakeElasticsearch) -> dict[str, str]:
    """The target tenant's connection settings as a workflow would set them on one container."""
    return {
        **pg.env(),
        "TENANT_DR_PG_DATABASES": "shop",
        "TENANT_DR_REDIS_URL": redis_srv.url,
        "REDIS_PASSWORD": redis_srv.password or "",
        "TENANT_DR_ES_URL": es.url,
        "ES_USERNAME": es.username or "",
        "ES_PASSWORD": es.password or "",
    }


def validate_data(
    store: str,
    pg: PostgresServer,
    redis_srv: RedisServer,
    es: FakeElasticsearch,
    *args: str,
    out: Path | None = None,
) -> StepRun:
    env = env_for(pg, redis_srv, es)
    if out is not None:
        env["STEP_OUTPUT_DIR"] = str(out)
    run = run_step("validate", ["data", "--tenant", TENANT, "--store", store, *args], env=env, timeout=300)
    for secret in (pg.password, redis_srv.password, es.password):
        assert secret and secret not in run.stdout + run.stderr
    return run


def table_rows(stderr: str) -> dict[str, str]:
    """component -> result from the printed table."""
    rows: dict[str, str] = {}
    for line in stderr.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").replace("┃", "│").split("│")]
        if len(cells) >= 2 and cells[1] in ("PASS", "FAIL", "ERROR", "SKIPPED"):
            rows[cells[0]] = cells[1]
    return rows


def test_data_passes_when_the_target_matches_the_backup(
    backed_up: tuple[str, str], pg: PostgresServer, redis_srv: RedisServer, es: FakeElasticsearch, tmp_path: Path
) -> None:
    store, run_id = backed_up
    run = validate_data(
        store, pg, redis_srv, es, "--component-args", "elasticsearch=--request-timeout 20", out=tmp_path / "out"
    )
    assert run.code == 0, run.error
    assert run.result["run_id"] == run_id  # 'latest' = the newest sealed run
    assert sorted(run.result["passed"]) == ["elasticsearch", "postgres", "redis"]
    assert table_rows(run.stderr) == {"elasticsearch": "PASS", "postgres": "PASS", "redis": "PASS"}
    report = json.loads((tmp_path / "out" / "report").read_text())
    rows = {c["component"]: c for c in report["components"]}
    assert rows["postgres"]["expected"] == "1 database, 2 tables, 290 rows"
    assert rows["redis"]["expected"] == "31 keys in 2 databases"
    assert rows["elasticsearch"]["expected"] == "2 indices, 127 docs"
    # the children's own verify ran against the target (their log lines are part of this step's log)
    assert {line.get("step") for line in run.logs} >= {"postgres.verify", "redis.verify", "elasticsearch.verify"}


def test_data_fails_with_one_table_when_the_target_differs(
    backed_up: tuple[str, str], pg: PostgresServer, redis_srv: RedisServer, es: FakeElasticsearch, tmp_path: Path
) -> None:
    store, run_id = backed_up
    pg.psql("DELETE FROM orders WHERE id > 200", "shop")
    redis_srv.client(0).set("written-after-restore", 1)
    try:
        run = validate_data(store, pg, redis_srv, es, "--run-id", run_id, out=tmp_path / "out")
        assert run.code == 3, run.error
        assert table_rows(run.stderr) == {"elasticsearch": "PASS", "postgres": "FAIL", "redis": "FAIL"}
        assert "2 of 3 components failed validation" in run.error
        assert "shop.public.orders: 200 rows, expected 250" in run.error
        report = json.loads((tmp_path / "out" / "report").read_text())
        assert {c["component"]: c["status"] for c in report["components"]} == {
            "elasticsearch": "pass",
            "postgres": "fail",
            "redis": "fail",
        }

        # a component asked for but missing from the run fails; unrequested ones are listed as skipped
        only = validate_data(store, pg, redis_srv, es, "--run-id", run_id, "--components", "elasticsearch,cassandra")
        assert only.code == 3
        assert table_rows(only.stderr) == {
            "cassandra": "FAIL",
            "elasticsearch": "PASS",
            "postgres": "SKIPPED",
            "redis": "SKIPPED",
        }
        assert f"run {run_id} has no cassandra backup" in only.error
    finally:
        pg.psql("INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(201, 250) g", "shop")
        redis_srv.client(0).delete("written-after-restore")


def test_data_unreachable_component_is_transient_and_bad_flags_are_usage_errors(
    backed_up: tuple[str, str], pg: PostgresServer, redis_srv: RedisServer, es: FakeElasticsearch
) -> None:
    store, run_id = backed_up
    down = run_step(
        "validate",
        ["data", "--tenant", TENANT, "--store", store, "--run-id", run_id, "--components", "redis"],
        env={**env_for(pg, redis_srv, es), "TENANT_DR_REDIS_URL": f"redis://127.0.0.1:{free_port()}"},
        timeout=120,
    )
    assert down.code == 1, down.error
    assert table_rows(down.stderr) == {"redis": "ERROR", "elasticsearch": "SKIPPED", "postgres": "SKIPPED"}

    bad = validate_data(store, pg, redis_srv, es, "--components", "mongo")
    assert bad.code == 2 and "unknown component(s) mongo" in bad.error
    bad_args = validate_data(store, pg, redis_srv, es, "--component-args", "redis")
    assert bad_args.code == 2 and "is not COMPONENT=ARGS" in bad_args.error


# ---- validate http ------------------------------------------------------------------------------

SPEC = """
- path: /healthz
  body_contains: ok
- name: create order
  path: /api/orders
  method: POST
  expect_status: [200, 201]
  body_contains: [order, created]
- path: /nope
  expect_status: 404
"""


def serve_app(httpserver: HTTPServer) -> None:
    for _ in range(2):  # still warming up
        httpserver.expect_oneshot_request("/healthz").respond_with_data("starting", status=503)
    httpserver.expect_request("/healthz").respond_with_data("ok")
    httpserver.expect_request("/api/orders", method="POST").respond_with_data("order created", status=201)

    def not_found(_: Request) -> Response:
        return Response("not here", status=404)

    httpserver.expect_request("/nope").respond_with_handler(not_found)


def http(base_url: str, *args: str, out: Path | None = None) -> StepRun:
    env = {"STEP_OUTPUT_DIR": str(out)} if out else None
    return run_step("validate", ["http", "--base-url", base_url, "--interval", "0.2", *args], env=env, timeout=120)


def test_http_tests_pass_after_warm_up(httpserver: HTTPServer, tmp_path: Path) -> None:
    serve_app(httpserver)
    spec = tmp_path / "tests.yaml"
    spec.write_text(SPEC)
    run = http(httpserver.url_for(""), "--tests-file", str(spec), "--deadline", "30", out=tmp_path / "out")
    assert run.code == 0, run.error
    by_name = {t["name"]: t for t in run.result["tests"]}
    assert by_name["GET /healthz"]["attempts"] == 3
    assert by_name["create order"]["status"] == 201
    assert by_name["GET /nope"]["status"] == 404
    assert "PASS" in run.stderr and "FAIL" not in run.stderr
    assert json.loads((tmp_path / "out" / "report").read_text()) == run.result["tests"]


def test_http_wrong_answer_is_integrity_no_answer_is_transient(httpserver: HTTPServer, tmp_path: Path) -> None:
    serve_app(httpserver)
    tests = json.dumps([{"path": "/healthz", "body_contains": "version 2"}, {"path": "/nope", "expect_status": 404}])
    wrong = http(httpserver.url_for(""), "--tests-json", tests, "--deadline", "1.5", out=tmp_path / "out")
    assert wrong.code == 3, wrong.error
    assert "1 of 2 HTTP system tests failed" in wrong.error and "body lacks 'version 2'" in wrong.error
    report = json.loads((tmp_path / "out" / "report").read_text())
    assert [t["ok"] for t in report] == [False, True]
    assert "FAIL" in wrong.stderr

    down = http(f"http://127.0.0.1:{free_port()}", "--tests-json", tests, "--deadline", "1")
    assert down.code == 1, down.error
    assert "no answer" in down.error


def test_http_bad_spec_is_a_usage_error(tmp_path: Path) -> None:
    bad = http("https://app.example.com", "--tests-json", '[{"path": "healthz", "colour": "red"}]')
    assert bad.code == 2
    assert "test field" in bad.error
    both = http("https://app.example.com")
    assert both.code == 2 and "exactly one of --tests-file and --tests-json" in both.error


def test_http_prechecks_gate_the_tests(httpserver: HTTPServer) -> None:
    """`dns verify --no-probe` as a precheck: no test runs while the record points elsewhere (DR retry)."""
    httpserver.expect_request("/healthz").respond_with_data("ok")
    token = "cf-Token-3b7a90e1f2"
    with FakeCloudflare() as cf:
        cf.add_token(token)
        cf.add_zone("example.com")
        cf.add_record("example.com", "CNAME", "app.example.com", "old-lb.example.net", proxied=True)
        check = (
            f"dns verify --zone example.com --record app.example.com --target new-lb.example.net --no-probe "
            f"--api-base-url {cf.api_url} --max-retries 0"
        )
        tests = json.dumps([{"path": "/healthz"}])

        def run(*extra: str) -> StepRun:
            argv = ["http", "--base-url", httpserver.url_for(""), "--tests-json", tests, "--deadline", "2", *extra]
            return run_step("validate", argv, env={"CLOUDFLARE_API_TOKEN": token}, timeout=120)

        refused = run("--precheck", check)
        assert refused.code == 3, refused.stdout
        assert "\n" not in refused.error
        assert refused.error.startswith("precheck failed, no system test was run: dns verify: app.example.com")
        assert "no CNAME record pointing at new-lb.example.net" in refused.error
        assert not httpserver.log, "no system test ran"
        assert token not in refused.stdout + refused.stderr

        cf.remove_records("example.com", "app.example.com")
        cf.add_record("example.com", "CNAME", "app.example.com", "new-lb.example.net", proxied=True)
        passed = run("--precheck", check)
        assert passed.code == 0, passed.error
        assert len(httpserver.log) == 1

        for bad in ("postgres verify --run-id latest", "dns cutover --confirm", "kube"):
            usage = run("--precheck", bad)
            assert usage.code == 2 and "is not 'MODULE verify ARGS'" in usage.error, bad
