"""Real ephemeral servers for tests: PostgreSQL (initdb + pg_ctl), Redis (redis-server), S3 (moto).

Each server listens on 127.0.0.1 on a free port, lives in a temporary directory and is stopped by
its fixture. Step CLIs are run as real subprocesses with :func:`run_step`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
_SECRET_ENV = re.compile(r"(PASSWORD|TOKEN|SECRET)", re.IGNORECASE)
KNOWN_SECRETS: set[str] = set()


def register_test_secret(value: str | None) -> None:
    """Every step run in the suite is checked for this value in its output (see :func:`run_step`)."""
    if value and len(value) >= 6:
        KNOWN_SECRETS.add(value)


def assert_no_secret(where: str, text: str, extra: set[str] | None = None) -> None:
    """Fail the test if a known secret appears in ``text``."""
    for secret in KNOWN_SECRETS | (extra or set()):
        if secret in text:
            raise AssertionError(f"secret value leaked into {where}")


PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vm_hwm_mb(pid: int | str = "self") -> float:
    """Peak RSS (``VmHWM``) of a live process, in MB; 0 when it is gone.

    ``ru_maxrss`` is no good for a child: Linux keeps the pre-``execve`` high-water mark, so a child
    forked from a large pytest worker reports the worker's size. ``VmHWM`` belongs to the new image.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def wait_port(port: int, timeout: float = 20.0) -> None:
    """Block until something accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL binary (newest installed major first, then PATH)."""
    for directory in PG_BIN_DIRS:
        if (directory / name).exists():
            return str(directory / name)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found; install PostgreSQL server binaries")
    return found


def _as_postgres_user(argv: list[str]) -> list[str]:
    """initdb/postgres refuse to run as root: drop to the ``postgres`` user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster with a password-protected ``postgres`` superuser."""

    port: int
    datadir: Path
    password: str
    user: str = "postgres"
    host: str = "127.0.0.1"

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq DSN (password included: for test code only, never for step args)."""
        return f"host={self.host} port={self.port} user={self.user} password={self.password} dbname={dbname}"

    def env(self) -> dict[str, str]:
        """libpq env vars for CLI tools."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGPASSWORD": self.password}

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL with psql and return its unaligned output."""
        out = subprocess.run(
            [pg_bin("psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dbname, "-c", sql],
            env={**os.environ, **self.env()},
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()


@contextlib.contextmanager
def postgres_server(password: str = "pg-Secret-9f3b2a") -> Iterator[PostgresServer]:
    """Start PostgreSQL with initdb + pg_ctl on a free port; stop and delete it afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="tdr-pg-"))
    datadir, pwfile = tmp / "data", tmp / "pw"
    register_test_secret(password)
    pwfile.write_text(password)
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    os.chmod(tmp, 0o700)
    port = free_port()
    subprocess.run(
        _as_postgres_user(
            [
                pg_bin("initdb"),
                "-D",
                str(datadir),
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]
        ),
        check=True,
        capture_output=True,
    )
    opts = (
        f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off "
        "-c synchronous_commit=off -c max_connections=60"
    )
    subprocess.run(
        _as_postgres_user([pg_bin("pg_ctl"), "-D", str(datadir), "-o", opts, "-l", str(tmp / "log"), "-w", "start"]),
        check=True,
        capture_output=True,
    )
    try:
        yield PostgresServer(port=port, datadir=datadir, password=password)
    finally:
        subprocess.run(
            _as_postgres_user([pg_bin("pg_ctl"), "-D", str(datadir), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class RedisServer:
    """A throwaway redis-server."""

    port: int
    password: str | None
    proc: subprocess.Popen[bytes] = field(repr=False)
    dir: Path = field(repr=False)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>`` (no password: that comes from REDIS_PASSWORD)."""
        return f"redis://127.0.0.1:{self.port}"

    def client(self, db: int = 0) -> Any:
        """A redis-py client."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, db=db)


@contextlib.contextmanager
def redis_server(password: str | None = "rd-Secret-77c1e0", config: str = "") -> Iterator[RedisServer]:
    """Start ``redis-server`` on a free port with persistence off (plus ``config`` lines); stop it afterwards."""
    binary = shutil.which("redis-server")
    if not binary:
        raise RuntimeError("redis-server not found; run the README's test command (it installs it)")
    register_test_secret(password)
    tmp = Path(tempfile.mkdtemp(prefix="tdr-redis-"))
    port = free_port()
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp),
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
    ]
    conf = tmp / "redis.conf"
    conf.write_text((f"requirepass {password}\n" if password else "") + config)  # keeps the password out of argv
    proc = subprocess.Popen([binary, str(conf), *argv[1:]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield RedisServer(port=port, password=password, proc=proc, dir=tmp)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class S3Server:
    """moto in server mode: a real HTTP S3 endpoint on 127.0.0.1."""

    endpoint: str

    def client(self) -> Any:
        """A boto3 S3 client for the endpoint."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """Run moto's S3 server in a subprocess (its own process, like a real endpoint)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, timeout=30)
        yield S3Server(endpoint=f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class StepRun:
    """The outcome of one step subprocess."""

    code: int
    result: dict[str, Any]
    logs: list[dict[str, Any]]
    stdout: str
    stderr: str
    peak_rss_mb: float = 0.0

    @property
    def error(self) -> str:
        """The one-line error of a failed step."""
        return str(self.result.get("error", ""))


def run_step(
    module: str,
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    input_bytes: bytes | None = None,
) -> StepRun:
    """Run ``python -m steps.<module> *args`` and parse its JSON result and log lines."""
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("STEP_OUTPUT_DIR", tempfile.mkdtemp(prefix="tdr-out-"))
    full_env["PYTHONPATH"] = str(REPO)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"steps.{module}", *args],
            env=full_env,
            stdout=out,
            stderr=err,
            stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
            cwd=REPO,
        )
        if input_bytes is not None:
            assert proc.stdin is not None
            proc.stdin.write(input_bytes)
            proc.stdin.close()
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        peak = [0.0]
        done = threading.Event()

        def sample() -> None:  # VmHWM is monotonic: the last reading before exit is (almost) the peak
            while not done.is_set():
                peak[0] = max(peak[0], vm_hwm_mb(proc.pid))
                done.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            _, status, _ = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            done.set()
            sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    # No step may ever print a secret: check every run's stdout, stderr and output files against the
    # secrets the suite knows and the secret-looking env vars this run was given.
    given = {v for k, v in (env or {}).items() if _SECRET_ENV.search(k) and len(v) >= 6}
    assert_no_secret(f"the output of steps.{module} {' '.join(args[:1])}", stdout + stderr, given)
    out_dir = Path(full_env["STEP_OUTPUT_DIR"])
    if out_dir.is_dir():
        for f in out_dir.iterdir():
            if f.is_file():
                assert_no_secret(f"output parameter {f.name}", f.read_text(errors="replace"), given)
    return parsed_run(proc.returncode, stdout, stderr, peak[0])


def parsed_run(code: int, stdout: str, stderr: str, peak_rss_mb: float = 0.0) -> StepRun:
    """A step's outcome from its exit code and output: the JSON result line and the JSON log lines."""
    logs = []
    for line in stderr.splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            logs.append(json.loads(line))
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    result: dict[str, Any] = {}
    if lines:
        with contextlib.suppress(json.JSONDecodeError):
            result = json.loads(lines[-1])
    return StepRun(code, result, logs, stdout, stderr, peak_rss_mb=peak_rss_mb)
