"""``python -m steps.dns`` through the real ``cloudflare`` SDK against the HTTP-level Cloudflare fake.

Every step runs as a subprocess (``run_step``); operation state goes to a ``file://`` catalog; the
HTTP probe of ``verify`` hits a local pytest-httpserver.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudflare
import pytest
from pytest_httpserver import HTTPServer

from steps.storage import open_store
from steps.storage.catalog import Catalog
from tests.fakes.cloudflare import EDIT, READ, ZONE_READ, FakeCloudflare
from tests.harness import StepRun, free_port, run_step

TENANT = "acme"
ZONE = "example.com"
NAME = "app.example.com"
TOKEN = "cf-Token-8e41d7c2b9"
OP = "tenant-recreate-x7k2p"
OLD, NEW = "old-lb.example.net", "new-lb.example.net"


@pytest.fixture
def cf() -> Iterator[FakeCloudflare]:
    with FakeCloudflare() as fake:
        fake.add_token(TOKEN)
        fake.add_zone(ZONE)
        fake.add_zone("other.org")
        yield fake


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"file://{tmp_path / 'store'}"


def dns(
    action: str, cf: FakeCloudflare, store: str, *args: str, env: dict[str, str] | None = None, op: str = OP
) -> StepRun:
    base = [action, "--zone", ZONE, "--record", NAME, "--api-base-url", cf.api_url, "--max-retries", "1"]
    if action != "verify":
        base += ["--tenant", TENANT, "--store", store, "--operation", op]
    run = run_step("dns", [*base, *args], env={"CLOUDFLARE_API_TOKEN": TOKEN, **(env or {})}, timeout=120)
    assert TOKEN not in run.stdout + run.stderr
    return run


def state(store: str, op: str = OP) -> dict[str, Any] | None:
    return Catalog(open_store(store), TENANT).get_state(op, f"dns-{NAME}")


def address(cf: FakeCloudflare, name: str = NAME) -> list[tuple[str, str, int, bool, str | None]]:
    return [
        (r["type"], r["content"], r["ttl"], r["proxied"], r["comment"])
        for r in cf.records(ZONE, name)
        if r["type"] in ("A", "AAAA", "CNAME")
    ]


def test_cutover_records_previous_record_then_points_at_target(cf: FakeCloudflare, store: str, tmp_path: Path) -> None:
    old = cf.add_record(ZONE, "CNAME", NAME, OLD, proxied=True, comment="prod lb")
    out = tmp_path / "out"

    plan = dns("cutover", cf, store, "--target", NEW, env={"STEP_OUTPUT_DIR": str(out)})
    assert plan.code == 0, plan.error
    assert plan.result["dry_run"] is True
    assert plan.result["plan"]["patch"][0]["to"] == {"type": "CNAME", "content": NEW, "ttl": 1, "proxied": True}
    assert cf.writes() == [] and state(store) is None  # the plan neither changes DNS nor records state
    assert address(cf) == [("CNAME", OLD, 1, True, "prod lb")]

    run = dns("cutover", cf, store, "--target", NEW, "--confirm", env={"STEP_OUTPUT_DIR": str(out)})
    assert run.code == 0, run.error
    assert run.result["changed"] is True
    # same record edited in place: proxied and TTL kept from the previous record
    recs = cf.records(ZONE, NAME)
    assert [(r["id"], r["type"], r["content"], r["proxied"], r["ttl"]) for r in recs] == [
        (old["id"], "CNAME", NEW, True, 1)
    ]
    recorded = state(store)
    assert recorded is not None
    assert recorded["absent"] is False
    assert recorded["records"] == [
        {
            "id": old["id"],
            "type": "CNAME",
            "name": NAME,
            "content": OLD,
            "ttl": 1,
            "proxied": True,
            "comment": "prod lb",
            "tags": [],
        }
    ]
    assert json.loads((out / "previous-record").read_text()) == recorded
    assert (out / "changed").read_text() == "true"
    assert len(cf.writes()) == 1 and cf.writes()[0].path.endswith("/dns_records/batch")

    # a second cutover (Argo retry, resubmit) is a no-op that keeps the original previous record
    again = dns("cutover", cf, store, "--target", NEW, "--confirm", env={"STEP_OUTPUT_DIR": str(out)})
    assert again.code == 0, again.error
    assert again.result["changed"] is False
    assert len(cf.writes()) == 1  # no API write at all
    assert state(store) == recorded
    assert json.loads((out / "previous-record").read_text()) == recorded
    assert (out / "changed").read_text() == "false"


def test_state_is_recorded_before_the_change(cf: FakeCloudflare, store: str) -> None:
    cf.add_record(ZONE, "CNAME", NAME, OLD, proxied=True)
    cf.fail_next("POST", r"/zones/[^/]+/dns_records/batch", 500, times=10)
    run = dns("cutover", cf, store, "--target", NEW, "--confirm")
    assert run.code == 1, run.error
    assert "HTTP 500" in run.error
    assert address(cf) == [("CNAME", OLD, 1, True, None)]  # unchanged
    recorded = state(store)
    assert recorded is not None and recorded["records"][0]["content"] == OLD


def test_cutover_replaces_conflicting_a_records_and_rollback_restores_them_exactly(
    cf: FakeCloudflare, store: str
) -> None:
    cf.add_record(ZONE, "A", NAME, "203.0.113.10", ttl=300, comment="old lb 1", tags=["team:web"])
    cf.add_record(ZONE, "A", NAME, "203.0.113.11", ttl=300)
    cf.add_record(ZONE, "AAAA", NAME, "2001:db8::10", ttl=300)
    before = address(cf)

    run = dns("cutover", cf, store, "--target", NEW, "--proxied", "--confirm")
    assert run.code == 0, run.error
    assert address(cf) == [("CNAME", NEW, 1, True, f"tenant-dr cutover {OP}")]
    batch = [w for w in cf.writes() if w.path.endswith("/batch")]
    assert len(batch) == 1  # deletes and the create in one atomic request
    assert len(batch[0].body["deletes"]) == 3 and len(batch[0].body["posts"]) == 1
    recorded = state(store)
    assert recorded is not None
    assert sorted((r["type"], r["content"]) for r in recorded["records"]) == [
        ("A", "203.0.113.10"),
        ("A", "203.0.113.11"),
        ("AAAA", "2001:db8::10"),
    ]

    plan = dns("rollback", cf, store)
    assert plan.code == 0 and plan.result["dry_run"] is True
    assert address(cf) == [("CNAME", NEW, 1, True, f"tenant-dr cutover {OP}")]

    back = dns("rollback", cf, store, "--confirm")
    assert back.code == 0, back.error
    assert back.result["rolled_back"] is True and back.result["changed"] is True
    assert address(cf) == before
    tagged = next(r for r in cf.records(ZONE, NAME) if r["content"] == "203.0.113.10")
    assert tagged["tags"] == ["team:web"]

    writes = len(cf.writes())
    again = dns("rollback", cf, store, "--confirm")
    assert again.code == 0 and again.result["changed"] is False
    assert len(cf.writes()) == writes


def test_cutover_creates_a_missing_record_and_rollback_deletes_it(cf: FakeCloudflare, store: str) -> None:
    cf.add_record(ZONE, "TXT", NAME, "v=keep-me", ttl=300)
    cname = dns("cutover", cf, store, "--target", NEW, "--confirm")
    assert cname.code == 3  # a CNAME cannot coexist with the TXT record: refused before anything
    assert "cannot coexist with a CNAME" in cname.error
    assert cf.writes() == [] and state(store) is None

    run = dns("cutover", cf, store, "--target", "198.51.100.7", "--no-proxied", "--confirm")
    assert run.code == 0, run.error
    assert address(cf) == [("A", "198.51.100.7", 60, False, f"tenant-dr cutover {OP}")]
    recorded = state(store)
    assert recorded is not None and recorded["absent"] is True and recorded["records"] == []

    back = dns("rollback", cf, store, "--confirm")
    assert back.code == 0, back.error
    assert back.result["restore_to"] == "absent"
    assert address(cf) == []
    assert [r["content"] for r in cf.records(ZONE, NAME)] == ["v=keep-me"]  # other types are never touched


def test_rollback_restores_an_edited_record_in_place(cf: FakeCloudflare, store: str) -> None:
    old = cf.add_record(ZONE, "CNAME", NAME, OLD, ttl=120, comment="prod")
    assert dns("cutover", cf, store, "--target", NEW, "--confirm").code == 0
    assert address(cf) == [("CNAME", NEW, 120, False, f"tenant-dr cutover {OP}")]
    back = dns("rollback", cf, store, "--confirm")
    assert back.code == 0, back.error
    assert [(r["id"], r["content"], r["ttl"], r["comment"]) for r in cf.records(ZONE, NAME)] == [
        (old["id"], OLD, 120, "prod")
    ]


def test_rollback_without_a_recorded_cutover_changes_nothing(cf: FakeCloudflare, store: str) -> None:
    cf.add_record(ZONE, "CNAME", NAME, OLD)
    run = dns("rollback", cf, store, "--confirm")
    assert run.code == 0, run.error
    assert run.result["rolled_back"] is False
    assert cf.writes() == []


def test_verify_through_api_and_http_probe(cf: FakeCloudflare, store: str, httpserver: HTTPServer) -> None:
    cf.add_record(ZONE, "CNAME", NAME, NEW, proxied=True)
    for _ in range(2):  # the new load balancer warms up
        httpserver.expect_oneshot_request("/healthz").respond_with_data("starting", status=503)
    httpserver.expect_request("/healthz").respond_with_data("ok from new-lb")
    probe = ["--probe-url", httpserver.url_for("/healthz"), "--probe-body-contains", "new-lb", "--interval", "0.2"]

    ok = dns("verify", cf, store, "--target", NEW, "--proxied", *probe, "--deadline", "20")
    assert ok.code == 0, ok.error
    assert ok.result["api"]["content"] == NEW
    assert ok.result["probe"]["attempts"] == 3 and ok.result["probe"]["status"] == 200

    wrong_marker = ["--probe-url", httpserver.url_for("/healthz"), "--probe-body-contains", "old-lb"]
    bad = dns("verify", cf, store, "--target", NEW, *wrong_marker, "--deadline", "1", "--interval", "0.3")
    assert bad.code == 3, bad.error
    assert "body lacks 'old-lb'" in bad.error

    gone = f"http://127.0.0.1:{free_port()}/healthz"
    down = dns("verify", cf, store, "--target", NEW, "--probe-url", gone, "--deadline", "1", "--interval", "0.3")
    assert down.code == 1, down.error
    assert "no answer" in down.error

    requests_before = len(httpserver.log)
    api_mismatch = dns("verify", cf, store, "--target", OLD, *probe)
    assert api_mismatch.code == 3
    assert f"no CNAME record pointing at {OLD}" in api_mismatch.error
    assert len(httpserver.log) == requests_before  # no probe when the API already disagrees

    proxied_mismatch = dns("verify", cf, store, "--target", NEW, "--no-proxied", "--no-probe")
    assert proxied_mismatch.code == 3
    assert "proxied is True, expected False" in proxied_mismatch.error


def test_bad_token_is_a_one_line_usage_error_and_never_logged(cf: FakeCloudflare, store: str) -> None:
    cf.add_record(ZONE, "CNAME", NAME, OLD)
    bad_token = "cf-Wrong-0d9e3a77f1"
    run = dns(
        "cutover",
        cf,
        store,
        "--target",
        NEW,
        "--confirm",
        env={"CLOUDFLARE_API_TOKEN": bad_token, "CLOUDFLARE_LOG": "debug"},
    )
    assert run.code == 2
    assert "\n" not in run.error
    assert "Unable to authenticate request (code 10001)" in run.error
    assert "CLOUDFLARE_API_TOKEN" in run.error  # the hint
    assert bad_token not in run.stdout + run.stderr
    assert state(store) is None and cf.writes() == []


def test_token_without_dns_edit_gets_403_and_changes_nothing(cf: FakeCloudflare, store: str, tmp_path: Path) -> None:
    cf.add_record(ZONE, "CNAME", NAME, OLD)
    cf.add_token("cf-ReadOnly-5c2f7d1e", {ZONE_READ, READ})
    token_file = tmp_path / "token"
    token_file.write_text("cf-ReadOnly-5c2f7d1e\n")
    run = dns("cutover", cf, store, "--target", NEW, "--confirm", "--token-file", str(token_file))
    assert run.code == 2, run.error
    assert "HTTP 403: Authentication error (code 10000)" in run.error
    assert "cf-ReadOnly-5c2f7d1e" not in run.stdout + run.stderr
    assert address(cf) == [("CNAME", OLD, 1, False, None)]


def test_missing_zone_and_bad_names_are_usage_errors(cf: FakeCloudflare, store: str) -> None:
    cf.add_token("cf-OtherZone-91ab", {ZONE_READ, READ, EDIT}, zones={"other.org"})
    hidden = dns("cutover", cf, store, "--target", NEW, env={"CLOUDFLARE_API_TOKEN": "cf-OtherZone-91ab"})
    assert hidden.code == 2
    assert "zone example.com was not found" in hidden.error

    outside = run_step(
        "dns",
        ["verify", "--zone", ZONE, "--record", "app.other.org", "--target", NEW, "--api-base-url", cf.api_url],
        env={"CLOUDFLARE_API_TOKEN": TOKEN},
    )
    assert outside.code == 2 and "not inside --zone" in outside.error
    bad_target = dns("cutover", cf, store, "--target", "not a host!")
    assert bad_target.code == 2 and "neither an IP address nor a hostname" in bad_target.error
    proxied_ttl = dns("cutover", cf, store, "--target", NEW, "--proxied", "--ttl", "300")
    assert proxied_ttl.code == 2 and "TTL 1" in proxied_ttl.error
    no_token = run_step(
        "dns",
        ["verify", "--zone", ZONE, "--record", NAME, "--target", NEW, "--api-base-url", cf.api_url],
        env={"CLOUDFLARE_API_TOKEN": ""},
    )
    assert no_token.code == 2 and "Cloudflare API token is not set" in no_token.error
    assert [r for r in cf.requests if r.method != "GET"] == []


def test_rate_limit_is_retried_then_transient(cf: FakeCloudflare, store: str) -> None:
    cf.add_record(ZONE, "CNAME", NAME, OLD)
    cf.fail_next("GET", r"/zones/[^/]+/dns_records", 429, times=1, retry_after=1)
    ok = dns("cutover", cf, store, "--target", NEW, "--confirm")
    assert ok.code == 0, ok.error
    assert any(r.status == 429 for r in cf.requests)

    cf.fail_next("GET", r"/zones", 429, times=10, retry_after=1)
    limited = dns("verify", cf, store, "--target", NEW, "--no-probe")
    assert limited.code == 1
    assert "rate-limited" in limited.error and "code 971" in limited.error
    assert sum(1 for r in cf.requests if r.status == 429) == 1 + 2  # one retry with --max-retries 1
    listing = [r.query for r in cf.requests if r.path.endswith("/dns_records")][-1]
    assert sorted(listing) == [("name.exact", NAME), ("page", "1"), ("per_page", "100")]  # 4.x+ filter shape


def test_fake_speaks_the_sdk() -> None:
    """The fake's own contract: pagination, get/create/edit/update/delete and error envelopes."""
    with FakeCloudflare(default_per_page=2) as fake:
        fake.add_token(TOKEN)
        zone_id = fake.add_zone(ZONE)
        for i in range(5):
            fake.add_record(ZONE, "A", f"h{i}.{ZONE}", f"192.0.2.{i}")
        client = cloudflare.Cloudflare(api_token=TOKEN, base_url=fake.api_url, max_retries=0)
        assert len(list(client.dns.records.list(zone_id=zone_id))) == 5  # three pages of two
        page = client.dns.records.list(zone_id=zone_id, name={"exact": f"h3.{ZONE}"})
        assert [r.content for r in page] == ["192.0.2.3"]
        rec = client.dns.records.create(zone_id=zone_id, type="CNAME", name=f"www.{ZONE}", content=OLD, ttl=120)
        assert rec is not None
        edited = client.dns.records.edit(
            rec.id, zone_id=zone_id, type="CNAME", name=f"www.{ZONE}", content=NEW, ttl=120
        )
        assert edited is not None and edited.content == NEW and edited.ttl == 120
        replaced = client.dns.records.update(
            rec.id, zone_id=zone_id, type="CNAME", name=f"www.{ZONE}", content=OLD, ttl=1, proxied=True
        )
        assert replaced is not None and replaced.proxied is True
        got = client.dns.records.get(rec.id, zone_id=zone_id)
        assert got is not None and got.content == OLD
        with pytest.raises(cloudflare.BadRequestError) as conflict:
            client.dns.records.create(zone_id=zone_id, type="A", name=f"www.{ZONE}", content="192.0.2.9", ttl=1)
        assert conflict.value.body["errors"][0]["code"] == 81053  # type: ignore[index]
        deleted = client.dns.records.delete(rec.id, zone_id=zone_id)
        assert deleted is not None and deleted.id == rec.id
        with pytest.raises(cloudflare.NotFoundError):
            client.dns.records.get(rec.id, zone_id=zone_id)
        with pytest.raises(cloudflare.AuthenticationError):
            list(cloudflare.Cloudflare(api_token="nope", base_url=fake.api_url, max_retries=0).zones.list())


def test_preflight_refuses_a_name_that_already_points_at_the_target(cf: FakeCloudflare, store: str) -> None:
    cf.add_record(ZONE, "CNAME", NAME, OLD, proxied=True)
    assert dns("cutover", cf, store, "--target", NEW, "--if-at-target", "refuse").code == 0  # not live yet
    assert dns("cutover", cf, store, "--target", NEW, "--confirm").code == 0  # the cutover
    refused = dns("cutover", cf, store, "--target", NEW, "--if-at-target", "refuse", op="second-run")
    assert refused.code == 3, refused.stdout
    assert "\n" not in refused.error
    assert f"{NAME} already points at {NEW}" in refused.error and "if-target-live=proceed" in refused.error
    assert "remove the tenant-recreate package" in refused.error
    assert state(store, "second-run") is None
    proceed = dns("cutover", cf, store, "--target", NEW, "--if-at-target", "proceed", op="second-run")
    assert proceed.code == 0 and proceed.result["plan"]["patch"] == [], proceed.error


def test_rollback_unless_recorded_leaves_a_completed_cutover(cf: FakeCloudflare, store: str) -> None:
    cf.add_record(ZONE, "CNAME", NAME, OLD, proxied=True)
    assert dns("cutover", cf, store, "--target", NEW, "--confirm").code == 0
    done = run_step("dns", ["complete", "--tenant", TENANT, "--store", store, "--operation", OP, "--record", NAME])
    assert done.code == 0, done.stderr
    again = run_step("dns", ["complete", "--tenant", TENANT, "--store", store, "--operation", OP, "--record", NAME])
    assert again.result["completed_at"] == done.result["completed_at"]  # recorded once
    writes = len(cf.writes())
    kept = dns("rollback", cf, store, "--unless-recorded", "cutover-complete", "--confirm")
    assert kept.code == 0 and kept.result["rolled_back"] is False, kept.error
    assert [r[:2] for r in address(cf)] == [("CNAME", NEW)] and len(cf.writes()) == writes
    rolled = dns("rollback", cf, store, "--unless-recorded", "cutover-complete", "--confirm", op="another-op")
    assert rolled.code == 0 and rolled.result["rolled_back"] is False  # (another-op recorded no cutover)
    plain = dns("rollback", cf, store, "--confirm")  # without the option the recorded records come back
    assert plain.code == 0 and plain.result["rolled_back"] is True
    assert [r[:2] for r in address(cf)] == [("CNAME", OLD)]
