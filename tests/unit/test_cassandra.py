"""Unit tests of the Cassandra step's parsers, the tar stream lister and the local pod executor."""

from __future__ import annotations

import io
import json
import random
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from steps.cassandra import (
    ExecPipe,
    TarLister,
    group_snapshot_files,
    parse_node_info,
    parse_table_ids,
    schema_hash,
)
from steps.podexec import ExecResult, LocalExecutor, Pod, open_executor, parse_exec_status, selector_matches
from steps.runtime.errors import StepError, TransientError, UsageError


def _gnu_tar(tmp_path: Path, fmt: str) -> tuple[bytes, dict[str, int]]:
    """A real ``tar cf -`` of files with short, 100+ and 200+ character paths."""
    base = tmp_path / "src"
    files: dict[str, int] = {}
    rng = random.Random(4)
    for depth, name in enumerate(["a", "b" * 120, "c" * 90]):
        rel = Path("t-" + "0" * 32, "snapshots", "tag", *(["d" * 60] * depth), f"{name}-Data.db")
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        size = rng.randint(0, 5000)
        path.write_bytes(rng.randbytes(size))
        files[str(rel)] = size
    out = subprocess.run(
        ["tar", f"--format={fmt}", "-cf", "-", "-C", str(base), "t-" + "0" * 32],
        check=True,
        capture_output=True,
    ).stdout
    return out, files


@pytest.mark.parametrize("fmt", ["gnu", "pax", "ustar"])
def test_tar_lister_follows_real_tar_streams_in_any_chunking(tmp_path: Path, fmt: str) -> None:
    if fmt == "ustar":
        data, files = _gnu_tar(tmp_path, "gnu")
        files = {k: v for k, v in files.items() if len(k) <= 100}
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name, size in files.items():
                info = tarfile.TarInfo(name)
                info.size = size
                tar.addfile(info, io.BytesIO(b"x" * size))
        data = buf.getvalue()
    else:
        data, files = _gnu_tar(tmp_path, fmt)
    for seed in range(3):
        rng = random.Random(seed)
        lister = TarLister()
        pos = 0
        while pos < len(data):
            step = rng.choice([1, 7, 511, 512, 513, 4096, 70000])
            lister.feed(data[pos : pos + step])
            pos += step
        assert lister.finished
        assert dict(lister.files()) == files


def test_tar_lister_is_not_finished_on_a_truncated_stream(tmp_path: Path) -> None:
    data, _ = _gnu_tar(tmp_path, "gnu")
    lister = TarLister()
    lister.feed(data[: len(data) // 2])
    assert not lister.finished


def test_group_snapshot_files_rejects_foreign_paths() -> None:
    tag = "tdr-x"
    good = group_snapshot_files([(f"users-{'a' * 32}/snapshots/{tag}/mc-1-big-Data.db", 5)], tag)
    assert good == {"users": {"dir": f"users-{'a' * 32}", "files": [["mc-1-big-Data.db", 5]]}}
    with pytest.raises(StepError):
        group_snapshot_files([("etc/passwd", 5)], tag)


def test_parsers() -> None:
    info = parse_node_info("ID : abc\nData Center : dc1\nRack : r1\nToken : 5\nToken : -7\n")
    assert info == {"host_id": "abc", "dc": "dc1", "rack": "r1", "tokens": ["-7", "5"]}
    with pytest.raises(TransientError):
        parse_node_info("ID : abc\n")
    ids = parse_table_ids(
        "\n table_name | id\n------+-----\n users | 5bc52802-de25-11e4-8ab1-3d4f4e25bc2c\n\n(1 rows)\n"
    )
    assert ids == {"users": "5bc52802de2511e48ab13d4f4e25bc2c"}
    assert schema_hash("\nCREATE A;\n\n  CREATE B;  \n") == schema_hash("CREATE A;\nCREATE B;")
    assert schema_hash("CREATE A;") != schema_hash("CREATE B;")


def test_exec_status_from_the_error_channel() -> None:
    assert parse_exec_status('{"metadata":{},"status":"Success"}') == 0
    failure = {
        "status": "Failure",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "2"}]},
    }
    assert parse_exec_status(json.dumps(failure)) == 2
    with pytest.raises(TransientError, match="container not found"):
        parse_exec_status(json.dumps({"status": "Failure", "message": 'container not found ("x")'}))
    with pytest.raises(TransientError, match="without an exit status"):
        parse_exec_status("")


def test_selectors() -> None:
    assert selector_matches("app=cassandra", {"app": "cassandra", "x": "y"})
    assert not selector_matches("app=cassandra,tier!=db", {"app": "cassandra", "tier": "db"})
    assert selector_matches("app", {"app": ""})
    with pytest.raises(UsageError):
        selector_matches(",", {})
    with pytest.raises(UsageError):
        open_executor("docker")


def test_local_executor_streams_stdin_and_stdout_with_exit_codes(tmp_path: Path) -> None:
    pod_dir = tmp_path / "ns" / "p-0"
    (pod_dir / "bin").mkdir(parents=True)
    (pod_dir / "labels.json").write_text('{"app": "c"}')
    (tmp_path / "ns" / "other").mkdir()
    ex = LocalExecutor(tmp_path)
    pods = ex.list_pods("ns", "app=c")
    assert [p.name for p in pods] == ["p-0"]
    payload = random.Random(1).randbytes(3 * 2**20 + 17)
    got: list[bytes] = []
    result = ex.exec(pods[0], None, ["sh", "-c", "cat; echo oops >&2; exit 5"], stdout=got.append, stdin=[payload])
    assert result.returncode == 5 and "oops" in result.stderr
    assert b"".join(got) == payload
    assert ex.exec(pods[0], None, ["no-such-tool"]).returncode == 127
    assert ex.capture(pods[0], None, ["sh", "-c", "pwd"]).strip() == str(pod_dir)

    def bad_source() -> Iterator[bytes]:
        yield b"partial"
        raise TransientError("source broke")

    with pytest.raises(TransientError, match="source broke"):
        ex.exec(pods[0], None, ["sh", "-c", "cat >/dev/null"], stdin=bad_source())


def test_exec_pipe_raises_when_the_producer_failed() -> None:
    pipe = ExecPipe("tar in pod p")
    pipe.put(b"abc")
    pipe.put(ExecResult(2, "tar: boom"))
    assert pipe.read(2) == b"ab"
    assert pipe.read(10) == b"c"
    with pytest.raises(TransientError, match="tar in pod p failed with exit code 2: tar: boom"):
        pipe.read(10)
    ok = ExecPipe("x")
    ok.put(ExecResult(0, ""))
    assert ok.read(10) == b""


def test_pod_phase_is_read(tmp_path: Path) -> None:
    pod_dir = tmp_path / "ns" / "p-0"
    pod_dir.mkdir(parents=True)
    (pod_dir / "labels.json").write_text('{"app": "c"}')
    (pod_dir / "phase").write_text("Pending\n")
    assert LocalExecutor(tmp_path).list_pods("ns", "app=c") == [Pod("p-0", "ns", {"app": "c"}, "Pending")]
