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
    COPY_CONFLICT,
    COPY_NEW_SCRIPT,
    GENERATION_GAP,
    PREPARE_IMPORT_SCRIPT,
    ExecPipe,
    TarLister,
    group_snapshot_files,
    is_stale_snapshot,
    parse_node_info,
    parse_ring,
    parse_snapshot_tags,
    parse_table_ids,
    refresh_names,
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


def test_parse_ring_reads_every_data_center() -> None:
    text = """Datacenter: dc1
===============
Status=Up/Down
|/ State=Normal/Leaving/Joining/Moving
--  Address    Load       Tokens  Owns (effective)  Host ID                               Rack
UN  10.0.0.1   1.21 MiB   16      66.7%             AAA1b7c1-6049-4a08-ad3e-3697a0e30e10  rack1
DN  10.0.0.2   ?          16      66.7%             5bc52802-de25-11e4-8ab1-3d4f4e25bc2c  rack1

Datacenter: dc2
===============
--  Address    Load       Tokens  Owns (effective)  Host ID                               Rack
UJ  10.1.0.1   96.3 KiB   16      ?                 0f0e0d0c-0b0a-4908-8706-050403020100  r2
"""
    assert parse_ring(text) == [
        {"state": "UN", "address": "10.0.0.1", "host_id": "aaa1b7c1-6049-4a08-ad3e-3697a0e30e10"},
        {"state": "DN", "address": "10.0.0.2", "host_id": "5bc52802-de25-11e4-8ab1-3d4f4e25bc2c"},
        {"state": "UJ", "address": "10.1.0.1", "host_id": "0f0e0d0c-0b0a-4908-8706-050403020100"},
    ]
    assert parse_ring("nodetool: Failed to connect to '127.0.0.1:7199'") == []


def test_parse_snapshot_tags() -> None:
    v3 = "\n".join(
        [
            "Snapshot Details: ",
            "Snapshot name Keyspace name Column family name True size Size on disk",
            "tdr-old       atlas         users              0 bytes   1.2 KiB     ",
            "tdr-old       atlas         events             0 bytes   3 MiB       ",
            "manual        audit         log                0 bytes   13 bytes    ",
            "",
            "Total TrueDiskSpaceUsed: 0 bytes",
            "",
        ]
    )
    v4 = "\n".join(
        [
            "Snapshot Details: ",
            "Snapshot name Keyspace name Column family name True size Size on disk Creation time   Expiration time",
            "tdr-x         atlas         users              0 bytes   1.2 KiB      2026-01-01T03:00:00.000Z",
            "",
            "Total TrueDiskSpaceUsed: 0 bytes",
        ]
    )
    assert parse_snapshot_tags(v3) == {"tdr-old", "manual"}
    assert parse_snapshot_tags(v4) == {"tdr-x"}
    assert parse_snapshot_tags("Snapshot Details: \nThere are no snapshots\n") == set()


def test_stale_snapshots_are_tdr_ones_not_newer_than_the_run() -> None:
    run, own = "20260101T030000Z-c0ffee", "tdr-20260101t030000z-c0ffee-a12345678"
    assert is_stale_snapshot("tdr-old", run, own)  # no run time in it
    assert is_stale_snapshot("tdr-20251231t030000z-0badc0-a0000beef", run, own)  # an older run
    assert is_stale_snapshot("tdr-20260101t030000z-c0ffee-a0000beef", run, own)  # an earlier attempt of this run
    assert not is_stale_snapshot(own, run, own)
    assert not is_stale_snapshot("tdr-20260102t030000z-0badc0-a0000beef", run, own)  # a newer run
    assert not is_stale_snapshot("truncated-1767236400000-users", run, own)
    assert not is_stale_snapshot("before-upgrade", run, own)


def test_refresh_names_keep_components_together_above_the_live_generations() -> None:
    comps = ["Data.db", "Index.db", "TOC.txt"]
    backed_up = [f"mc-{g}-big-{c}" for g in (1, 2) for c in comps] + ["nb-3fw2_0tv2_1f6hs2ftzj9n8f0ldw-big-Data.db"]
    names = refresh_names(backed_up, ["mc-1-big-Data.db", "mc-7-big-Data.db", "mc-7-big-TOC.txt", "junk.txt"])
    base = 7 + GENERATION_GAP
    assert names == {
        **{f"mc-1-big-{c}": f"mc-{base}-big-{c}" for c in comps},
        **{f"mc-2-big-{c}": f"mc-{base + 1}-big-{c}" for c in comps},
        "nb-3fw2_0tv2_1f6hs2ftzj9n8f0ldw-big-Data.db": "nb-3fw2_0tv2_1f6hs2ftzj9n8f0ldw-big-Data.db",
    }
    assert refresh_names(["mc-1-big-Data.db"], [])["mc-1-big-Data.db"] == f"mc-{GENERATION_GAP}-big-Data.db"
    with pytest.raises(StepError, match="not supported"):
        refresh_names(["a=b-Data.db"], [])


def _run_sh(script: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", script, "tenant-dr", *args], cwd=cwd, capture_output=True, text=True)


def test_copy_script_claims_every_name_or_copies_nothing(tmp_path: Path) -> None:
    src, dst = tmp_path / "staged", tmp_path / "live"
    src.mkdir()
    dst.mkdir()
    for name in ("mc-1-big-Data.db", "mc-1-big-TOC.txt"):
        (src / name).write_bytes(name.encode() * 1000)
    (dst / "mc-1-big-Data.db").write_bytes(b"flushed after truncate")
    (dst / "mc-9-big-TOC.txt").write_bytes(b"taken")
    pairs = ["mc-1-big-Data.db=mc-8-big-Data.db", "mc-1-big-TOC.txt=mc-9-big-TOC.txt"]
    refused = _run_sh(COPY_NEW_SCRIPT, tmp_path, "staged", "live", *pairs)
    assert refused.returncode == COPY_CONFLICT and refused.stderr.strip() == "mc-9-big-TOC.txt"
    assert sorted(f.name for f in dst.iterdir()) == ["mc-1-big-Data.db", "mc-9-big-TOC.txt"]  # claim undone
    assert (dst / "mc-9-big-TOC.txt").read_bytes() == b"taken"
    pairs[1] = "mc-1-big-TOC.txt=mc-8-big-TOC.txt"
    done = _run_sh(COPY_NEW_SCRIPT, tmp_path, "staged", "live", *pairs)
    assert done.returncode == 0, done.stderr
    assert (dst / "mc-8-big-Data.db").read_bytes() == (src / "mc-1-big-Data.db").read_bytes()
    assert (dst / "mc-8-big-TOC.txt").read_bytes() == (src / "mc-1-big-TOC.txt").read_bytes()
    assert (dst / "mc-1-big-Data.db").read_bytes() == b"flushed after truncate"
    (src / "mc-1-big-TOC.txt").unlink()  # a copy that fails half-way leaves nothing behind
    pairs = ["mc-1-big-Data.db=mc-10-big-Data.db", "mc-1-big-TOC.txt=mc-10-big-TOC.txt"]
    assert _run_sh(COPY_NEW_SCRIPT, tmp_path, "staged", "live", *pairs).returncode == 1
    assert not list(dst.glob("mc-10-*"))


def test_prepare_import_drops_index_dirs_and_cassandra_files(tmp_path: Path) -> None:
    snap = tmp_path / "users-0" / "snapshots" / "tdr-x"
    (snap / ".users_name_idx").mkdir(parents=True)
    (snap / ".users_name_idx" / "nb-1-big-Data.db").write_bytes(b"i")
    for name in ("nb-1-big-Data.db", "nb-1-big-TOC.txt", "manifest.json", "schema.cql"):
        (snap / name).write_bytes(b"x")
    assert _run_sh(PREPARE_IMPORT_SCRIPT, tmp_path, str(snap)).returncode == 0
    assert sorted(f.name for f in snap.iterdir()) == ["nb-1-big-Data.db", "nb-1-big-TOC.txt"]
