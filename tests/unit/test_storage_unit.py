"""Pure storage logic: URLs, run ids, part sizing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from steps.runtime.errors import ExitCode, UsageError
from steps.storage import open_store, parse_store_url
from steps.storage.base import READ_CHUNK, MiB, read_exactly
from steps.storage.catalog import RUN_ID_RE, new_run_id, run_id_time
from steps.storage.s3 import MAX_PARTS, capacity, part_size_for

TiB = 2**40


def test_default_part_size_fits_a_tebibyte_in_10000_parts() -> None:
    assert capacity(16 * MiB) >= TiB
    assert part_size_for(1, 16 * MiB) == 16 * MiB
    assert part_size_for(5000, 16 * MiB) == 16 * MiB
    assert part_size_for(5001, 16 * MiB) == 32 * MiB
    assert part_size_for(MAX_PARTS, 16 * MiB) <= 5 * 1024 * MiB


def test_part_growth_threshold_and_step_are_parameters() -> None:
    sizes = [part_size_for(n, 5 * MiB, after=2, every=1) for n in range(1, 6)]
    assert sizes == [5 * MiB, 5 * MiB, 10 * MiB, 20 * MiB, 40 * MiB]
    assert part_size_for(7, MiB, after=3, every=2) == 4 * MiB


class Trickle:
    """A pipe that returns at most ``step`` bytes per read."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step = data, step

    def read(self, n: int = -1, /) -> bytes:
        chunk, self.data = self.data[: min(n, self.step)], self.data[min(n, self.step) :]
        return chunk


def test_read_exactly_fills_a_part_from_short_reads_and_stops_at_the_end() -> None:
    data = bytes(range(256)) * (3 * READ_CHUNK // 256)
    source = Trickle(data, 100_000)
    assert read_exactly(source, 2 * READ_CHUNK + 5) == data[: 2 * READ_CHUNK + 5]
    assert read_exactly(source, 2 * READ_CHUNK) == data[2 * READ_CHUNK + 5 :]
    assert read_exactly(source, READ_CHUNK) == b""


@pytest.mark.parametrize(
    ("url", "scheme", "bucket", "prefix"),
    [
        ("s3://my-bucket/a/b/", "s3", "my-bucket", "a/b"),
        ("s3://my-bucket", "s3", "my-bucket", ""),
        ("file:///var/backups", "file", "", ""),
    ],
)
def test_good_urls(url: str, scheme: str, bucket: str, prefix: str) -> None:
    parsed = parse_store_url(url)
    assert (parsed.scheme, parsed.bucket, parsed.prefix) == (scheme, bucket, prefix)


@pytest.mark.parametrize(
    "url",
    ["", "ftp://x/y", "s3://", "s3://Bad_Bucket/x", "file://relative/path", "s3://ok-bucket/a/../b", "/just/path"],
)
def test_bad_urls_are_usage_errors(url: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_store_url(url)
    assert err.value.exit_code == ExitCode.USAGE
    assert "hint" in err.value.one_line()


def test_kms_without_key_and_bad_sse_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        open_store("s3://my-bucket/x", sse="aws:kms")
    with pytest.raises(UsageError):
        open_store("s3://my-bucket/x", sse="rot13")


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1)),
    st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=3000)),
)
def test_run_ids_sort_by_time(t1: datetime, delta: timedelta) -> None:
    a = new_run_id(t1.replace(tzinfo=UTC))
    b = new_run_id((t1 + delta).replace(tzinfo=UTC))
    assert RUN_ID_RE.match(a) and RUN_ID_RE.match(b)
    assert a < b
    assert run_id_time(a) == t1.replace(tzinfo=UTC, microsecond=0)


def test_run_ids_are_unique() -> None:
    now = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
    assert len({new_run_id(now) for _ in range(2000)}) > 1990


@pytest.mark.parametrize("bad", ["latest-ish", "20261321T030000Z-abcdef", "20261121T030000Z-ABCDEF", ""])
def test_malformed_run_ids_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError):
        run_id_time(bad)
