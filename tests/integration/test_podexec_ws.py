"""``KubernetesExecutor`` through the real ``kubernetes`` client against a websocket-level fake of pods/exec."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from steps.podexec import KubernetesExecutor, Pod
from steps.runtime.errors import ExitCode, TransientError, UsageError
from tests.fakes.kube_exec import V4, V5, ExecSession, FakeKubeExec, Handler, from_chunks, run_command

pytestmark = pytest.mark.timeout(180)

POD = Pod("cassandra-0", "atlas")
MiB = 1 << 20


def executor(fake: FakeKubeExec, tmp_path: Path) -> KubernetesExecutor:
    return KubernetesExecutor(str(fake.kubeconfig(tmp_path / "kubeconfig")))


def distinct_mib(count: int) -> Iterator[bytes]:
    """``count`` MiB of random-looking data, every MiB different."""
    block = os.urandom(MiB)
    for i in range(count):
        yield i.to_bytes(8, "big") + block[8:]


def test_large_stream_reaches_the_consumer_frame_by_frame(tmp_path: Path) -> None:
    total_mib = 64
    sizes: list[int] = []
    digest = hashlib.sha256()

    def consume(chunk: bytes) -> None:  # slower than the network, like zstd + an S3 upload
        sizes.append(len(chunk))
        digest.update(chunk)
        time.sleep(0.001)

    with FakeKubeExec(from_chunks(lambda call: distinct_mib(total_mib))) as fake:
        ex = executor(fake, tmp_path)
        tracemalloc.start()
        try:
            started = time.monotonic()
            result = ex.exec(POD, "cassandra", ["tar", "cf", "-", "data"], stdout=consume, timeout=600)
            elapsed = time.monotonic() - started
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    call = fake.calls[0]
    assert (call.namespace, call.pod, call.container, call.command) == (
        "atlas",
        "cassandra-0",
        "cassandra",
        ["tar", "cf", "-", "data"],
    )
    assert (result.returncode, sum(sizes), digest.hexdigest()) == (0, total_mib * MiB, call.stdout_sha256)
    stats = f"{len(sizes)} chunks, max {max(sizes)} B, peak {peak / MiB:.1f} MiB traced, {elapsed:.1f} s"
    assert max(sizes) <= MiB, stats
    assert peak < 16 * MiB, stats
    assert elapsed < 60, stats


def test_non_zero_exit_reports_the_code_and_the_stderr_tail(tmp_path: Path) -> None:
    script = 'echo partial; head -c 100000 /dev/zero | tr "\\0" x >&2; echo "tar: ks: Cannot open" >&2; exit 2'
    chunks: list[bytes] = []
    with FakeKubeExec(run_command(tmp_path)) as fake:
        result = executor(fake, tmp_path).exec(POD, None, ["sh", "-c", script], stdout=chunks.append, timeout=60)
    assert (result.returncode, b"".join(chunks)) == (2, b"partial\n")
    assert result.stderr.endswith("tar: ks: Cannot open\n") and len(result.stderr) <= 4000
    with pytest.raises(TransientError, match=r"exit code 2: .*tar: ks: Cannot open"):
        result.check("tar of ks in pod cassandra-0")


def test_failure_without_exit_code_is_transient(tmp_path: Path) -> None:
    with FakeKubeExec(run_command(tmp_path)) as fake, pytest.raises(TransientError) as caught:
        executor(fake, tmp_path).exec(POD, "cassandra", ["no-such-tool"], timeout=60)
    assert "pod exec failed: failed to exec in container" in caught.value.one_line()


def drop_after_8_mib(session: ExecSession) -> int:
    for chunk in distinct_mib(8):
        session.stdout(chunk)
    session.drop()


def close_without_status(session: ExecSession) -> None:
    for chunk in distinct_mib(8):
        session.stdout(chunk)


@pytest.mark.parametrize(
    ("handler", "message"),
    [(drop_after_8_mib, "exec stream broke"), (close_without_status, "ended without an exit status")],
    ids=["dropped", "closed-without-status"],
)
def test_connection_lost_mid_stream_is_transient(tmp_path: Path, handler: Handler, message: str) -> None:
    received: list[int] = []
    with FakeKubeExec(handler) as fake, pytest.raises(TransientError) as caught:
        executor(fake, tmp_path).exec(
            POD, "cassandra", ["tar", "cf", "-", "x"], stdout=lambda c: received.append(len(c))
        )
    assert message in caught.value.one_line() and "\n" not in caught.value.one_line()
    assert caught.value.exit_code == ExitCode.TRANSIENT
    assert sum(received) <= 8 * MiB


def archive(tmp_path: Path) -> tuple[bytes, dict[str, bytes]]:
    files = {"ks/t-1/nb-1-big-Data.db": os.urandom(3 * MiB + 17), "ks/t-1/nb-1-big-TOC.txt": b"Data.db\n"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue(), files


def odd_chunks(data: bytes) -> Iterator[bytes]:
    """``data`` in uneven chunks, some above the 256 KiB stdin frame."""
    sizes = [1, 700_000, 65_536, 3, 1_000_000]
    pos = 0
    while pos < len(data):
        size = sizes[pos % len(sizes)]
        yield data[pos : pos + size]
        pos += size


@pytest.mark.parametrize("protocol", [V4, V5])
def test_stdin_tar_arrives_intact(tmp_path: Path, protocol: str) -> None:
    data, files = archive(tmp_path)
    target = tmp_path / "stage"
    target.mkdir()
    with FakeKubeExec(run_command(tmp_path), protocols=(protocol,)) as fake:
        result = executor(fake, tmp_path).exec(
            POD, "cassandra", ["tar", "xf", "-", "-C", str(target)], stdin=odd_chunks(data), timeout=60
        )
    call = fake.calls[0]
    assert (result.returncode, call.protocol, call.stdin) == (0, protocol, True)
    assert (call.stdin_bytes, call.stdin_sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert call.stdin_closed is (protocol == V5)  # v4 has no close signal: tar stops at its end-of-archive
    for name, content in files.items():
        assert (target / name).read_bytes() == content


def test_stdin_eof_reaches_the_command_on_v5(tmp_path: Path) -> None:
    data = b"".join(distinct_mib(5))
    out: list[bytes] = []
    with FakeKubeExec(run_command(tmp_path), protocols=(V5, V4)) as fake:
        result = executor(fake, tmp_path).exec(
            POD, None, ["sha256sum"], stdout=out.append, stdin=odd_chunks(data), timeout=60
        )
    assert result.returncode == 0 and fake.calls[0].stdin_closed
    assert b"".join(out).split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_command_that_stops_reading_stdin_early_succeeds(tmp_path: Path) -> None:
    out: list[bytes] = []
    with FakeKubeExec(run_command(tmp_path)) as fake:
        result = executor(fake, tmp_path).exec(
            POD, None, ["head", "-c", "1000"], stdout=out.append, stdin=distinct_mib(64), timeout=60
        )
    assert (result.returncode, len(b"".join(out))) == (0, 1000)
    assert fake.calls[0].stdin_bytes < 64 * MiB


def test_tls_frames_buffered_in_the_ssl_layer_are_read(tmp_path: Path) -> None:
    sizes: list[int] = []
    with FakeKubeExec(from_chunks(lambda call: distinct_mib(2)), tls=True, frame_size=100) as fake:
        started = time.monotonic()
        result = executor(fake, tmp_path).exec(
            POD, "cassandra", ["tar", "cf", "-", "x"], stdout=lambda c: sizes.append(len(c)), timeout=20
        )
        elapsed = time.monotonic() - started
    assert (result.returncode, sum(sizes), max(sizes)) == (0, 2 * MiB, 100)
    assert elapsed < 5  # status and close share one TLS record: without pending() the close is not seen


def test_stream_slower_than_the_timeout_is_transient(tmp_path: Path) -> None:
    with FakeKubeExec(from_chunks(lambda call: distinct_mib(8)), rate=MiB) as fake:
        started = time.monotonic()
        with pytest.raises(TransientError, match=r"did not finish within 1s"):
            executor(fake, tmp_path).exec(POD, "cassandra", ["tar", "cf", "-", "x"], stdout=lambda c: None, timeout=1)
    assert time.monotonic() - started < 8


def test_forbidden_handshake_is_a_usage_error(tmp_path: Path) -> None:
    with FakeKubeExec() as fake:
        fake.deny = True
        with pytest.raises(UsageError, match=r"forbidden.*Handshake status 403") as caught:
            executor(fake, tmp_path).exec(POD, "cassandra", ["nodetool", "status"], timeout=10)
    assert caught.value.exit_code == ExitCode.USAGE and not fake.calls


def test_consumer_errors_propagate_unchanged(tmp_path: Path) -> None:
    class UploadStopped(Exception):
        """The consumer's own error (e.g. the uploader went away)."""

    def consume(chunk: bytes) -> None:
        raise UploadStopped("upload aborted")

    with FakeKubeExec(from_chunks(lambda call: distinct_mib(32))) as fake, pytest.raises(UploadStopped):
        executor(fake, tmp_path).exec(POD, "cassandra", ["tar", "cf", "-", "x"], stdout=consume, timeout=60)
