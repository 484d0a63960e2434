"""Property-based bad input: config loader, run ids, manifest parsing, step flags, aside names.

Whatever the input, the result is either success or a one-line error with exit 2 or 3 — never a
traceback or another exception type.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steps.catalog import cli as catalog_cli
from steps.postgres import _ASIDE_RE, aside_name
from steps.runtime import run
from steps.runtime.errors import ExitCode, IntegrityError, UsageError
from steps.storage.catalog import run_id_time
from steps.storage.manifest import parse_manifest, parse_run_record
from workflows.config import DEFAULT, ConfigError, TenantConfig, parse_config

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(["", "s3://", "0 3 * * *", "Etc/UTC", "aws:kms", "-1", "true"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    return out


DEFAULT_DICT = DEFAULT.model_dump(mode="json")
PATHS = [p for p in _paths(DEFAULT_DICT) if p]


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    """The default config with a few keys replaced by junk, or junk keys added."""
    data: dict[str, Any] = json.loads(json.dumps(DEFAULT_DICT))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        node = data
        for key in path[:-1]:
            node = node[key] if isinstance(node, dict) and key in node else {}
        if isinstance(node, dict):
            if draw(st.booleans()):
                node[path[-1]] = draw(values)
            else:
                node[draw(st.text(min_size=1, max_size=10))] = draw(values)
    return data


def _assert_one_line(message: str) -> None:
    assert message and "\n" not in message and "Traceback" not in message


@settings(max_examples=150, deadline=None)
@given(mutated_configs())
def test_config_loader_accepts_or_gives_one_line(data: dict[str, Any]) -> None:
    try:
        parsed = parse_config(data, "t.yaml")
    except ConfigError as exc:
        _assert_one_line(str(exc))
        assert str(exc).startswith("t.yaml: ")
    else:
        assert isinstance(parsed, TenantConfig)


@settings(max_examples=100, deadline=None)
@given(values)
def test_config_loader_on_arbitrary_documents(data: Any) -> None:
    try:
        parse_config(data, "t.yaml")
    except ConfigError as exc:
        _assert_one_line(str(exc))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200))
def test_config_loader_on_arbitrary_text(tmp_path: Path, text: str) -> None:
    from workflows.config import load_config

    f = tmp_path / "c.yaml"
    f.write_text(text, encoding="utf-8")
    try:
        load_config(f)
    except ConfigError as exc:
        _assert_one_line(str(exc))


@given(st.text(max_size=40))
def test_run_id_parsing_never_crashes(text: str) -> None:
    try:
        run_id_time(text)
    except UsageError as exc:
        assert exc.exit_code == ExitCode.USAGE
        _assert_one_line(exc.one_line())


manifest_like = st.fixed_dictionaries(
    {},
    optional={
        "format": st.sampled_from([1, 2, "1"]),
        "tenant": st.text(max_size=5),
        "run_id": st.text(max_size=5),
        "component": st.text(max_size=5),
        "started_at": st.sampled_from(["2026-11-21T03:00:00Z", "yesterday", 5]),
        "finished_at": st.sampled_from(["2026-11-21T03:00:00Z", None]),
        "objects": st.lists(st.dictionaries(st.sampled_from(["name", "size", "sha256", "x"]), scalars), max_size=2),
        "extra": values,
    },
)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=200), manifest_like.map(lambda d: json.dumps(d).encode())))
def test_manifest_and_run_record_parsing_is_integrity_error_or_valid(data: bytes) -> None:
    for parse in (parse_manifest, parse_run_record):
        try:
            parse(data, "store/key")
        except IntegrityError as exc:
            assert exc.exit_code == ExitCode.INTEGRITY
            _assert_one_line(exc.one_line())


ACTIONS = ["list", "latest", "verify", "seal", "prune", "freshness", "lifecycle", "new-run-id", "resolve", "bogus"]
FLAG_VALUES = {
    "--tenant": ["acme", "Bad Tenant", "", "x" * 60],
    "--store": ["file://{tmp}/s", "ftp://x", "s3://", "file://relative", "s3://UPPER/x", ""],
    "--run-id": ["latest", "20261121T030000Z-abcdef", "nope", "20261399T999999Z-zzzzzz"],
    "--components": ["postgres", "", ",,", "a,b"],
    "--max-age": ["26h", "0h", "-5m", "soon", "1d"],
    "--older-than-days": ["15", "-1", "x"],
    "--min-complete": ["3", "-2", "many"],
    "--part-size-mib": ["16", "1", "99999", "x"],
    "--sse": ["AES256", "aws:kms", "rot13"],
}


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(ACTIONS),
    st.lists(st.tuples(st.sampled_from(sorted(FLAG_VALUES)), st.integers(0, 5)), max_size=5),
    st.booleans(),
)
def test_catalog_flags_never_traceback(action: str, flags: list[tuple[str, int]], confirm: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        argv = [action]
        for flag, i in flags:
            options = FLAG_VALUES[flag]
            argv += [flag, options[i % len(options)].format(tmp=tmp)]
        if confirm:
            argv.append("--confirm")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_:
            run(catalog_cli, argv)
        code = exit_.value.code
        assert code in (0, 2, 3), (argv, code, out.getvalue(), err.getvalue())
        assert "Traceback" not in err.getvalue()
        result = json.loads(out.getvalue().strip().splitlines()[-1])
        assert result["exit_code"] == code
        if code:
            _assert_one_line(result["error"])


def test_default_config_roundtrips_through_yaml() -> None:
    assert parse_config(yaml.safe_load(yaml.safe_dump(DEFAULT_DICT))) == DEFAULT


pg_names = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=63
).filter(lambda n: len(n.encode()) <= 63)


@given(pg_names, pg_names)
def test_aside_names_fit_postgres_and_never_collide_or_pass_for_a_database(db: str, other: str) -> None:
    prior, stale = aside_name(db), aside_name(db, "stale")
    for name in (prior, stale):
        assert len(name.encode()) <= 63  # NAMEDATALEN - 1: PostgreSQL would truncate a longer one silently
        assert _ASIDE_RE.match(name)  # so backups and the plan never take it for a tenant database
    assert prior.startswith("tdr_prior_") and stale.startswith("tdr_stale_") and prior != stale
    if other != db:  # one per database, even when two long names share their first 50 bytes
        assert aside_name(other) != prior
