"""Shared helpers of the benchmark scripts (not collected by pytest)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
)


_LOAD_AT_START = os.getloadavg()  # this module is imported when a benchmark starts


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall seconds of ``fn()`` and its result."""
    start = time.monotonic()
    result = fn()
    return time.monotonic() - start, result


def shell(cmd: str, env: dict[str, str] | None = None) -> None:
    """Run a shell pipeline with ``pipefail``; raise on failure."""
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], env={**os.environ, **(env or {})}, check=True)


def median(values: list[float]) -> float:
    """Median rounded to 0.01."""
    return round(statistics.median(values), 2)


def machine() -> dict[str, Any]:
    """Facts about the machine the numbers come from."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "mem_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "loadavg_at_start": _LOAD_AT_START,
    }


def report(name: str, data: dict[str, Any]) -> None:
    """Print the results as JSON and keep a copy under tests/bench/results/."""
    data = {"benchmark": name, "machine": machine(), **data, "loadavg_at_end": os.getloadavg()}
    text = json.dumps(data, indent=2, default=str)
    out = REPO / "tests" / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(text + "\n")
    print(text)
