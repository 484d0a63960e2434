"""Tenant config: the embedded default, strictness, and one-line errors with exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from workflows.config import DEFAULT, ConfigError, TenantConfig, dump_config, load_config, parse_config


def tenant_dr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from workflows.cli import main; main()", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_default_is_the_seed_topology() -> None:
    c = DEFAULT
    assert c.components.elasticsearch.url == "http://atlas-elasticsearch-master.atlas:9200"
    assert (c.components.cassandra.namespace, c.components.cassandra.selector) == ("atlas", "app=cassandra")
    assert c.components.cassandra.keyspaces == ["atlas"]
    assert (c.components.postgres.host, c.components.postgres.port) == ("postgresql.postgresql", 5432)
    assert c.components.postgres.databases == ["atlan", "auxiliary", "caspian", "keycloak", "ranger"]
    assert c.components.argo.namespace == "argo"
    assert [(w.kind, w.name) for w in c.fence] == [
        ("statefulset", "keycloak"),
        ("statefulset", "ranger"),
        ("deployment", "hermes"),
        ("deployment", "auxiliary"),
        ("deployment", "caspian"),
        ("deployment", "user-service"),
        ("deployment", "atlas"),
    ]
    assert (c.schedule.cron, c.schedule.timezone) == ("0 3 * * *", "Etc/UTC")
    assert (c.retention.days, c.retention.min_complete) == (15, 3)
    assert c.freshness.max_age_hours == 26
    assert c.components.enabled() == ["elasticsearch", "cassandra", "postgres", "redis", "argo"]


def test_show_prints_the_effective_config_that_loads_back(tmp_path: Path) -> None:
    out = tenant_dr("config", "show")
    assert out.returncode == 0, out.stderr
    data = yaml.safe_load(out.stdout)
    assert TenantConfig.model_validate(data) == DEFAULT
    # and the printed YAML is itself a valid config file
    f = tmp_path / "c.yaml"
    f.write_text(out.stdout)
    assert load_config(f) == DEFAULT


def test_partial_file_fills_defaults(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text("name: beta\ncomponents:\n  cassandra: {enabled: false}\nstore: {url: 's3://bkp-bucket/x/'}\n")
    c = load_config(f)
    assert c.name == "beta"
    assert c.store.url == "s3://bkp-bucket/x"
    assert c.components.enabled() == ["elasticsearch", "postgres", "redis", "argo"]
    assert c.components.postgres.port == 5432


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("store:\n  urll: s3://a-b/c\n", "store.urll: unknown key"),
        ("components:\n  postgres:\n    port: abc\n", "components.postgres.port"),
        ("components:\n  postgres:\n    port: 70000\n", "components.postgres.port"),
        ("store:\n  url: ftp://x\n", "store.url: must be s3://bucket/prefix"),
        ("schedule:\n  cron: '0 3 * *'\n", "schedule.cron"),
        ("schedule:\n  timezone: Mars/Olympus\n", "schedule.timezone"),
        ("name: Bad_Name\n", "name"),
        ("store:\n  sse: {mode: 'aws:kms'}\n", "kms_key_id"),
        ("cluster: {mode: kubeconfig}\n", "cluster"),
        ("dns: {zone: example.com, record: app.other.org}\n", "not inside zone"),
        ("fence:\n  - {kind: daemonset, name: x}\n", "fence.0.kind"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("name: [unclosed\n", "not valid YAML"),
        (
            "components: {elasticsearch: {enabled: false}, cassandra: {enabled: false}, postgres: {enabled: false},"
            " redis: {enabled: false}, argo: {enabled: false}}\n",
            "at least one component",
        ),
    ],
)
def test_bad_file_gives_one_line_naming_the_field_and_exit_2(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=None) as err:
        load_config(f)
    assert needle in str(err.value)
    out = tenant_dr("config", "show", "--config", str(f))
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ") and str(f) in lines[0] and needle in lines[0]


def test_missing_file_is_exit_2(tmp_path: Path) -> None:
    out = tenant_dr("config", "show", "--config", str(tmp_path / "nope.yaml"))
    assert out.returncode == 2
    assert "cannot read" in out.stderr and "Traceback" not in out.stderr


def test_dump_is_stable() -> None:
    assert dump_config(DEFAULT) == dump_config(parse_config(yaml.safe_load(dump_config(DEFAULT))))
