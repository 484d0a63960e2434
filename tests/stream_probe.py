"""Test helper process: stream N MiB of synthetic data into a catalog as one component backup.

``python -m tests.stream_probe --store URL --tenant T --run-id R --mib N [--fail-after MIB]``
prints one JSON line with the manifest summary and this process's peak RSS. ``--fail-after`` makes
the producer die part-way (like a pg_dump killed mid-stream): the upload of what was produced
completes, the producer's exit code is checked, and no manifest is written. The store's part size
and buffer come from ``TENANT_DR_PART_SIZE_MIB`` / ``TENANT_DR_MAX_BUFFER_MIB`` as in the step CLIs.
A step error (e.g. the store cannot be reached) prints ``{"error", "exit_code"}`` and exits with the
step contract's code, as ``main()`` of a step would.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from steps.runtime.errors import StepError
from steps.storage import open_store
from steps.storage.catalog import Catalog
from steps.storage.manifest import ComponentManifest, utcnow
from tests.harness import vm_hwm_mb

# The producer is a separate process writing to a pipe, exactly like pg_dump or tar would.
PRODUCER = r"""
import os, sys
mib, fail_after = int(sys.argv[1]), int(sys.argv[2])
text = (b"INSERT INTO t VALUES (42, 'some fairly repetitive row text');\n" * 9000)[: 1 << 19]
out = sys.stdout.buffer
for i in range(mib):
    if fail_after and i >= fail_after:
        sys.stderr.write("producer: simulated crash\n")
        os._exit(1)
    out.write(os.urandom(1 << 19) + text)
out.flush()
"""


def main() -> int:
    """Run the probe."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--tenant", required=True)
    ap.add_argument("--run-id", required=True)
    ap.add_argument("--mib", type=int, required=True)
    ap.add_argument("--fail-after", type=int, default=0)
    ap.add_argument("--component", default="probe")
    args = ap.parse_args()

    store = open_store(
        args.store,
        part_size_mib=int(os.environ.get("TENANT_DR_PART_SIZE_MIB", "16")),
        max_buffer_mib=int(os.environ.get("TENANT_DR_MAX_BUFFER_MIB", "64")),
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, str(args.mib), str(args.fail_after)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    result: dict[str, Any]
    try:
        result = backup(Catalog(store, args.tenant), args, proc)
    except StepError as exc:
        result = {"error": exc.one_line(), "exit_code": int(exc.exit_code)}
    finally:
        proc.kill()
        proc.wait()
    print(json.dumps(result))
    return int(result.get("exit_code", 0 if result.get("producer_exit") == 0 else 1))


def backup(catalog: Catalog, args: argparse.Namespace, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """Stream the producer's output into the catalog; write the manifest only if the producer succeeded."""
    assert proc.stdout is not None
    started = utcnow()
    record = catalog.put_object(args.run_id, args.component, catalog.new_attempt(), "data.bin.zst", proc.stdout)
    code = proc.wait()
    result: dict[str, Any] = {
        "producer_exit": code,
        "raw_size": record.raw_size,
        "size": record.size,
        "peak_rss_mb": vm_hwm_mb(),
        "manifest": False,
    }
    if code == 0:  # the step contract: never write a manifest after a failed producer
        manifest = ComponentManifest(
            tenant=args.tenant,
            run_id=args.run_id,
            component=args.component,
            started_at=started,
            finished_at=utcnow(),
            objects=[record],
        )
        result["manifest"] = catalog.write_manifest(manifest)
    return result


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
