"""``python -m steps.catalog``: list runs, resolve latest, verify, seal, prune, lifecycle, freshness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click

from steps.runtime import (
    IntegrityError,
    Progress,
    UsageError,
    action,
    component,
    confirm_option,
    get_logger,
    tenant_option,
    write_output,
)
from steps.storage import stream
from steps.storage.catalog import Catalog, check_tenant, new_run_id
from steps.storage.options import catalog_options

cli = component("catalog", "Backup catalog of one tenant: runs, latest complete run, seal, prune.")


@action(cli, "list")
@catalog_options
def list_runs(catalog: Catalog, tenant: str) -> dict[str, Any]:
    """List every run of the tenant, oldest first, with completeness and components."""
    runs = [r.as_dict() for r in catalog.list_runs()]
    write_output("runs", runs)
    return {"tenant": tenant, "runs": runs}


@action(cli)
@catalog_options
@click.option("--component", default=None, help="Newest run containing this component instead of newest complete.")
def latest(catalog: Catalog, tenant: str, component: str | None) -> dict[str, Any]:
    """Resolve the newest complete run (or the newest run with --component's manifest)."""
    run_id = catalog.resolve("latest", component)
    write_output("run-id", run_id)
    return {"tenant": tenant, "run_id": run_id}


@action(cli, "new-run-id")
@tenant_option
def new_run_id_action(tenant: str) -> dict[str, Any]:
    """Generate a fresh run id (output ``run-id``) for every component of one backup run."""
    check_tenant(tenant)
    run_id = new_run_id()
    write_output("run-id", run_id)
    return {"tenant": tenant, "run_id": run_id}


@action(cli)
@catalog_options
@click.option("--run-id", envvar="TENANT_DR_RUN_ID", default="latest", show_default=True, help="Run id or 'latest'.")
def resolve(catalog: Catalog, tenant: str, run_id: str) -> dict[str, Any]:
    """Resolve 'latest' to the newest complete run, or check that an explicit run exists (output ``run-id``)."""
    resolved = catalog.resolve(run_id)
    write_output("run-id", resolved)
    return {"tenant": tenant, "requested": run_id, "run_id": resolved}


@action(cli)
@catalog_options
@click.option("--run-id", envvar="TENANT_DR_RUN_ID", required=True, help="Run to seal.")
@click.option("--components", required=True, help="Comma-separated components that must all be complete.")
def seal(catalog: Catalog, tenant: str, run_id: str, components: str) -> dict[str, Any]:
    """Write RUN.json if every listed component's manifest exists (exit 3 otherwise)."""
    names = [c.strip() for c in components.split(",") if c.strip()]
    record = catalog.seal(run_id, names)
    write_output("run-id", run_id)
    return {"tenant": tenant, "run_id": run_id, "components": sorted(record.components)}


@action(cli)
@catalog_options
@click.option("--run-id", envvar="TENANT_DR_RUN_ID", default="latest", show_default=True, help="Run to verify.")
@click.option("--components", default=None, help="Comma-separated components (default: every component of the run).")
def verify(catalog: Catalog, tenant: str, run_id: str, components: str | None) -> dict[str, Any]:
    """Read every object of a run and check sizes and sha256 against its manifests (exit 3 on mismatch)."""
    names = [c.strip() for c in components.split(",") if c.strip()] if components else None
    resolved = catalog.resolve(run_id, names[0] if names and len(names) == 1 else None)
    info = next(r for r in catalog.list_runs() if r.run_id == resolved)
    wanted = names or sorted(info.components)
    missing = sorted(set(wanted) - info.components)
    if missing:
        raise IntegrityError(
            f"run {resolved} has no manifest for {', '.join(missing)}",
            hint=f"it has: {', '.join(sorted(info.components)) or 'nothing'}",
        )
    checked: dict[str, int] = {}
    total = 0
    for comp in wanted:
        manifest = catalog.read_manifest(resolved, comp)
        for record in manifest.objects:
            key = catalog.object_key(manifest, record)
            with Progress(f"verify {comp}/{record.name}", total=record.raw_size) as progress:
                stream.verify(catalog.store, key, record, progress=progress)
            total += record.size
        checked[comp] = len(manifest.objects)
    write_output("run-id", resolved)
    return {"tenant": tenant, "run_id": resolved, "verified_objects": checked, "bytes": total}


@action(cli)
@catalog_options
@click.option("--older-than-days", envvar="TENANT_DR_RETENTION_DAYS", type=int, default=15, show_default=True)
@click.option(
    "--min-complete",
    envvar="TENANT_DR_MIN_COMPLETE",
    type=int,
    default=3,
    show_default=True,
    help="Always keep this many newest complete runs, however old.",
)
@confirm_option
def prune(catalog: Catalog, tenant: str, older_than_days: int, min_complete: int, confirm: bool) -> dict[str, Any]:
    """Delete runs older than the retention; without --confirm only print what would go."""
    plan = catalog.prune_plan(older_than_days, min_complete)
    doomed = [r.run_id for r in plan.delete]
    result: dict[str, Any] = {
        "tenant": tenant,
        "delete": doomed,
        "kept": len(plan.keep),
        "protected_by_min_complete": plan.protected,
        "dry_run": not confirm,
    }
    if not confirm:
        get_logger().info("plan only (pass --confirm to delete)", delete=doomed)
        return result
    result["objects_deleted"] = catalog.delete_runs(plan.delete)
    return result


# How much longer than the prune retention a lifecycle expiry must be. The rule deletes by object age
# and knows nothing of min_complete: it would delete the newest complete runs that prune keeps once
# backups have failed for N days. N >= retention + a week means it only ever deletes what prune
# missed (prune not running) and leaves a week-long outage of the daily backup beyond the retention
# before the last complete runs go; lifecycle's daily, midnight-rounded evaluation uses up one day of it.
EXPIRY_MARGIN_DAYS = 7


@action(cli)
@catalog_options
@click.option(
    "--expire-days",
    type=int,
    default=0,
    show_default=True,
    help="Also expire runs/ after N days via a lifecycle rule (0 = no expiry rule: recommended, prune does "
    f"retention). The rule ignores --min-complete, so N must be >= --retention-days + {EXPIRY_MARGIN_DAYS}. "
    "The rule never covers es-repository/.",
)
@click.option(
    "--retention-days",
    envvar="TENANT_DR_RETENTION_DAYS",
    type=int,
    default=15,
    show_default=True,
    help="The prune retention (catalog prune --older-than-days) that --expire-days must stay above.",
)
@confirm_option
def lifecycle(catalog: Catalog, tenant: str, expire_days: int, retention_days: int, confirm: bool) -> dict[str, Any]:
    """Ensure bucket default encryption and a lifecycle rule for <tenant>/runs/ (aborts stale uploads)."""
    if expire_days < 0 or retention_days < 0:
        raise UsageError("--expire-days and --retention-days must be >= 0")
    floor = retention_days + EXPIRY_MARGIN_DAYS
    if 0 < expire_days < floor:
        raise UsageError(
            f"--expire-days {expire_days} is too close to the {retention_days}-day retention: a lifecycle rule "
            "ignores min_complete and would delete the last complete runs once backups fail that long",
            hint=f"use 0 (prune does retention; the rule only aborts stale uploads) or at least {floor}",
        )
    store = catalog.store
    sse = getattr(getattr(store, "settings", None), "sse", None) or "AES256"
    kms = getattr(getattr(store, "settings", None), "kms_key_id", None)
    plan = {
        "encryption": sse,
        "rule": f"tenant-dr-{tenant}-runs",
        "prefix": catalog.runs_prefix,
        "expire_days": expire_days or None,
        "excluded": catalog.es_repository_path + "/",
    }
    if not confirm:
        return {"tenant": tenant, "plan": plan, "dry_run": True}
    done = [
        store.ensure_encryption(sse, kms),
        store.ensure_lifecycle(catalog.runs_prefix, expire_days or None, f"tenant-dr-{tenant}-runs"),
    ]
    return {"tenant": tenant, "plan": plan, "done": done, "dry_run": False}


@action(cli)
@catalog_options
@click.option("--max-age", default="26h", show_default=True, help="Oldest acceptable complete run: 26h, 90m, 2d.")
def freshness(catalog: Catalog, tenant: str, max_age: str) -> dict[str, Any]:
    """Exit 3 when the newest complete run is older than --max-age (or there is none)."""
    limit = parse_duration(max_age)
    run, age = catalog.freshness()
    if run is None or age is None:
        raise IntegrityError(
            f"tenant {tenant!r} has no complete backup in {catalog.store.url}",
            hint="check the backup-all workflow and its CronWorkflow",
        )
    age_h = round(age.total_seconds() / 3600, 2)
    write_output("age-hours", str(age_h))
    write_output("run-id", run.run_id)
    if age > limit:
        raise IntegrityError(
            f"newest complete backup {run.run_id} of tenant {tenant!r} is {age_h}h old (limit {max_age})",
            hint="the daily backup is failing or not scheduled; see docs/runbooks/daily-backup-failed.md",
        )
    return {"tenant": tenant, "run_id": run.run_id, "age_hours": age_h, "max_age": max_age}


def parse_time(text: str, what: str) -> datetime:
    """An RFC 3339 UTC time as Argo writes it (``2026-11-21T03:00:00Z``); usage error otherwise."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"{what} {text!r} is not an RFC 3339 time", hint="e.g. 2026-11-21T03:00:00Z") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@action(cli)
@catalog_options
@click.option("--operation", envvar="TENANT_DR_OPERATION", required=True, help="DR operation id (workflow name).")
@click.option("--created", required=True, help="When the workflow was created (RFC 3339): the RTO clock starts here.")
@click.option("--phase", "phases", multiple=True, help="NAME=START,END (RFC 3339), in order; repeatable.")
@click.option("--exclude", multiple=True, help="Phase not counted in the RTO (e.g. the approval wait); repeatable.")
def timings(
    catalog: Catalog, tenant: str, operation: str, created: str, phases: tuple[str, ...], exclude: tuple[str, ...]
) -> dict[str, Any]:
    """Record a DR run's phase timings and its RTO in the store (outputs ``timings``, ``rto-seconds``)."""
    start = parse_time(created, "--created")
    rows: list[dict[str, Any]] = []
    for item in phases:
        name, sep, span = item.partition("=")
        begin, comma, end = span.partition(",")
        if not sep or not comma or not name.strip():
            raise UsageError(f"--phase {item!r} is not NAME=START,END")
        t0, t1 = parse_time(begin, f"--phase {name} start"), parse_time(end, f"--phase {name} end")
        if t1 < t0 or t0 < start:
            raise UsageError(f"--phase {item!r}: times out of order (created {created})")
        rows.append({"phase": name.strip(), "started": begin, "finished": end, "seconds": (t1 - t0).total_seconds()})
    if not rows:
        raise UsageError("no --phase given")
    unknown = sorted(set(exclude) - {r["phase"] for r in rows})
    if unknown:
        raise UsageError(f"--exclude {', '.join(unknown)}: no such phase")
    finished = max(parse_time(r["finished"], "end") for r in rows)
    total = (finished - start).total_seconds()
    excluded = sum(r["seconds"] for r in rows if r["phase"] in exclude)
    report = {
        "operation": operation,
        "created": created,
        "finished": finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "phases": rows,
        "total_seconds": total,
        "excluded": sorted(exclude),
        "rto_seconds": total - excluded,
    }
    stored = catalog.record_once(operation, "timings", report)
    for row in stored["phases"]:
        get_logger().info("phase", phase=row["phase"], seconds=row["seconds"])
    write_output("timings", stored)
    write_output("rto-seconds", str(stored["rto_seconds"]))
    return {"tenant": tenant, **stored}


def parse_duration(text: str) -> timedelta:
    """``26h``, ``90m``, ``2d``, ``3600s`` -> timedelta; usage error otherwise."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value, unit = text[:-1], text[-1:]
    if unit not in units or not value.isdigit() or int(value) <= 0:
        raise UsageError(f"duration {text!r} is invalid", hint="use a positive number with s, m, h or d, e.g. 26h")
    return timedelta(seconds=int(value) * units[unit])


if __name__ == "__main__":
    from steps.runtime import run

    run(cli)
