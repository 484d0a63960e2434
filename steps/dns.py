"""``python -m steps.dns cutover|rollback|verify|complete``: move a Cloudflare DNS name to a new load balancer.

The step manages the *address records* of one exact name: its A, AAAA and CNAME records (other
types such as TXT or MX on the name are never touched). ``cutover`` makes them exactly one record
pointing at ``--target`` (a hostname gives a CNAME, an IPv4/IPv6 address an A/AAAA record), after
recording the previous address records write-once under the operation id; with ``--if-at-target
refuse`` (a DR preflight) it stops with exit 3 when the name already points at the target. ``rollback``
makes them exactly the recorded records again. ``complete`` records that the operation's cutover
passed its system tests, after which its rollback (``--unless-recorded cutover-complete``) changes
nothing. All changes of one run go in one atomic batch request (deletes, then patches, then creates),
so a CNAME replacing A records never leaves the name empty. The API token comes from
``CLOUDFLARE_API_TOKEN`` or ``--token-file``; it needs Zone:Read and DNS:Edit on the zone.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click
import cloudflare

from steps.runtime import (
    IntegrityError,
    TransientError,
    UsageError,
    action,
    component,
    confirm_option,
    get_logger,
    read_secret,
    write_output,
)
from steps.storage.catalog import Catalog
from steps.storage.manifest import utcnow
from steps.storage.options import catalog_options
from steps.validate import HttpCheck, probe_options, raise_for_checks, run_checks, tls_verify

F = TypeVar("F", bound=Callable[..., Any])

COMPONENT = "dns"
DEFAULT_API = "https://api.cloudflare.com/client/v4"
ADDRESS_TYPES = ("A", "AAAA", "CNAME")
AUTO_TTL = 1
MIN_TTL, MAX_TTL = 30, 86400
COMPLETE = "cutover-complete"  # the state record `complete` writes
DEFAULT_TTL = 60
PER_PAGE = 100
# Cloudflare error codes that mean "the records changed underneath us": a re-run converges.
CONFLICT_CODES = {81053, 81054, 81057, 81058}
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9-]{1,63}$")
_RECORD_RE = re.compile(r"^(\*\.)?([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9-]{1,63}$")

cli = component(COMPONENT, "Cloudflare DNS: cut a record over to a new load balancer, verify it, roll it back.")


# ---- records and plans --------------------------------------------------------------------------


@dataclass(frozen=True)
class DnsRecord:
    """An address record as the API returns it (and as it is recorded for rollback)."""

    id: str
    type: str
    name: str
    content: str
    ttl: int
    proxied: bool
    comment: str | None = None
    tags: tuple[str, ...] = ()

    @classmethod
    def from_api(cls, obj: Any) -> DnsRecord:
        """From an SDK record model."""
        data = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
        return cls.from_dict(data, "the Cloudflare API")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> DnsRecord:
        """From a recorded (or API) dict; integrity error when fields are missing."""
        try:
            return cls(
                id=str(data["id"]),
                type=str(data["type"]),
                name=str(data["name"]).lower().rstrip("."),
                content=str(data["content"]),
                ttl=int(data.get("ttl") or AUTO_TTL),
                proxied=bool(data.get("proxied") or False),
                comment=data.get("comment") or None,
                tags=tuple(data.get("tags") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"a DNS record from {where} is malformed ({exc!r})") from exc

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "id": self.id,
            "type": self.type,
            "name": self.name,
            "content": self.content,
            "ttl": self.ttl,
            "proxied": self.proxied,
            "comment": self.comment,
            "tags": list(self.tags),
        }

    def brief(self) -> str:
        """``CNAME old-lb.example.net (proxied, ttl 1)``."""
        return f"{self.type} {self.content} ({'proxied' if self.proxied else 'dns-only'}, ttl {self.ttl})"


@dataclass(frozen=True)
class Desired:
    """A record that must exist after the change."""

    type: str
    content: str
    ttl: int
    proxied: bool
    comment: str | None = None
    tags: tuple[str, ...] = ()
    exact: bool = False  # rollback: the comment must match too
    prefer_id: str | None = None  # rollback: patch this record back if it still exists

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"type": self.type, "content": self.content, "ttl": self.ttl, "proxied": self.proxied}


@dataclass
class Plan:
    """What one run changes: deletes, then patches, then creates (one atomic batch)."""

    keep: list[DnsRecord] = field(default_factory=list)
    deletes: list[DnsRecord] = field(default_factory=list)
    patches: list[tuple[DnsRecord, Desired]] = field(default_factory=list)
    posts: list[Desired] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing to change."""
        return not (self.deletes or self.patches or self.posts)

    def describe(self) -> dict[str, Any]:
        """JSON form for results and logs."""
        return {
            "keep": [r.brief() for r in self.keep],
            "delete": [r.as_dict() for r in self.deletes],
            "patch": [{"id": r.id, "from": r.brief(), "to": w.as_dict()} for r, w in self.patches],
            "create": [w.as_dict() for w in self.posts],
        }


def same_content(rtype: str, a: str, b: str) -> bool:
    """Addresses compare as IPs, hostnames case-insensitively without a trailing dot."""
    if rtype in ("A", "AAAA"):
        try:
            return ipaddress.ip_address(a) == ipaddress.ip_address(b)
        except ValueError:
            return a == b
    return a.lower().rstrip(".") == b.lower().rstrip(".")


def _attrs_match(rec: DnsRecord, want: Desired) -> bool:
    if rec.ttl != want.ttl or rec.proxied != want.proxied:
        return False
    return not want.exact or rec.comment == (want.comment or None)


def plan_changes(current: list[DnsRecord], desired: list[Desired]) -> Plan:
    """The smallest change that turns ``current`` address records into exactly ``desired``."""
    plan = Plan()
    unused = list(current)
    pending: list[Desired] = []
    for want in desired:
        match = next((r for r in unused if r.type == want.type and same_content(r.type, r.content, want.content)), None)
        if match is None:
            pending.append(want)
            continue
        unused.remove(match)
        if _attrs_match(match, want):
            plan.keep.append(match)
        else:
            plan.patches.append((match, want))
    for want in pending:
        same_type = [r for r in unused if r.type == want.type]
        match = next((r for r in same_type if r.id == want.prefer_id), same_type[0] if same_type else None)
        if match is None:
            plan.posts.append(want)
        else:
            unused.remove(match)
            plan.patches.append((match, want))
    plan.deletes = unused
    return plan


def target_type(target: str) -> str:
    """``A`` for an IPv4 address, ``AAAA`` for IPv6, ``CNAME`` for a hostname; usage error otherwise."""
    try:
        return "A" if ipaddress.ip_address(target).version == 4 else "AAAA"
    except ValueError:
        pass
    if not _HOSTNAME_RE.match(target.rstrip(".")):
        raise UsageError(f"--target {target!r} is neither an IP address nor a hostname")
    return "CNAME"


def desired_for(target: str, proxied: bool | None, ttl: int | None, previous: list[DnsRecord], comment: str) -> Desired:
    """The record cutover wants; proxied and TTL default to the previous record's."""
    rtype = target_type(target)
    if proxied is None:
        proxied = previous[0].proxied if previous else True
    if ttl is None:
        ttl = AUTO_TTL if proxied else next((r.ttl for r in previous if not r.proxied), DEFAULT_TTL)
    if proxied and ttl != AUTO_TTL:
        raise UsageError(f"--ttl {ttl} with --proxied", hint="proxied records always have TTL 1 (automatic)")
    if ttl != AUTO_TTL and not MIN_TTL <= ttl <= MAX_TTL:
        raise UsageError(f"--ttl {ttl} is out of range", hint=f"use 1 (automatic) or {MIN_TTL}..{MAX_TTL}")
    content = target.rstrip(".").lower() if rtype == "CNAME" else target
    return Desired(type=rtype, content=content, ttl=ttl, proxied=proxied, comment=comment)


def state_name(record: str) -> str:
    """The state record name of a DNS name: ``dns-<record>``."""
    return "dns-" + re.sub(r"[^A-Za-z0-9._-]", "_", record)


# ---- Cloudflare API -----------------------------------------------------------------------------


def describe_api_error(exc: cloudflare.APIStatusError) -> str:
    """``403: Authentication error (code 10000)`` from a Cloudflare error envelope."""
    body = exc.body
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        parts = [f"{e.get('message', '?')} (code {e.get('code', '?')})" for e in errors if isinstance(e, dict)]
        return f"HTTP {exc.status_code}: " + "; ".join(parts)
    return f"HTTP {exc.status_code}: {' '.join(str(exc.message).split())[:200]}"


def _codes(exc: cloudflare.APIStatusError) -> set[int]:
    body = exc.body
    errors = body.get("errors") if isinstance(body, dict) else None
    return {int(e["code"]) for e in errors or [] if isinstance(e, dict) and str(e.get("code", "")).isdigit()}


class CloudflareDns:
    """The address records of one name in one zone, through the official SDK."""

    def __init__(self, token: str, base_url: str, zone: str, record: str, max_retries: int, timeout: float) -> None:
        self.zone = zone
        self.record = record
        self.base_url = base_url
        self.client = cloudflare.Cloudflare(
            api_token=token, base_url=base_url, max_retries=max_retries, timeout=timeout
        )
        self._zone_id: str | None = None

    @contextlib.contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Translate SDK errors into the step contract (401/403 -> 2, 429/5xx/network -> 1, 400 -> 2)."""
        try:
            yield
        except (cloudflare.AuthenticationError, cloudflare.PermissionDeniedError) as exc:
            raise UsageError(
                f"Cloudflare rejected the API token while {what}: {describe_api_error(exc)}",
                hint=f"the token needs Zone:Read and DNS:Edit on {self.zone}; "
                "check CLOUDFLARE_API_TOKEN or --token-file",
            ) from exc
        except cloudflare.RateLimitError as exc:
            raise TransientError(
                f"Cloudflare rate-limited {what}: {describe_api_error(exc)}",
                hint="the API allows 1200 requests per 5 minutes per token; Argo retries the step",
            ) from exc
        except cloudflare.APIConnectionError as exc:  # includes timeouts
            raise TransientError(
                f"cannot reach the Cloudflare API at {self.base_url} while {what}: {type(exc).__name__}",
                hint="check egress to the API (proxy, NetworkPolicy); Argo retries the step",
            ) from exc
        except cloudflare.APIStatusError as exc:
            status = exc.status_code
            if status >= 500 or status in (404, 408, 409) or _codes(exc) & CONFLICT_CODES:
                raise TransientError(
                    f"Cloudflare failed {what}: {describe_api_error(exc)}",
                    hint="the records may have changed meanwhile; a re-run re-reads them and converges",
                ) from exc
            raise UsageError(f"Cloudflare refused {what}: {describe_api_error(exc)}", hint="check the flags") from exc

    @property
    def zone_id(self) -> str:
        """The id of ``--zone`` (usage error when the token cannot see such a zone)."""
        if self._zone_id is None:
            with self.errors(f"looking up zone {self.zone}"):
                zones = self.client.zones.list(name=self.zone, per_page=50).result  # names are unique
                found = [z.id for z in zones if z.name.lower() == self.zone]
            if not found:
                raise UsageError(
                    f"zone {self.zone} was not found in Cloudflare",
                    hint="check --zone, and that the token has Zone:Read on it",
                )
            self._zone_id = found[0]
        return self._zone_id

    def all_records(self) -> list[DnsRecord]:
        """Every record named exactly ``record`` (all pages; stops at a short page, no extra request)."""
        zone_id = self.zone_id
        found: list[DnsRecord] = []
        number = 1
        with self.errors(f"listing DNS records of {self.record}"):
            while True:
                page = self.client.dns.records.list(
                    zone_id=zone_id, name={"exact": self.record}, per_page=PER_PAGE, page=number
                )
                found += [DnsRecord.from_api(r) for r in page.result]
                total = getattr(page.result_info, "total_pages", None)
                if len(page.result) < PER_PAGE or (isinstance(total, int) and number >= total):
                    break
                number += 1
        return sorted((r for r in found if r.name == self.record), key=lambda r: (r.type, r.id))

    def records(self) -> list[DnsRecord]:
        """The address (A/AAAA/CNAME) records named exactly ``record``."""
        return [r for r in self.all_records() if r.type in ADDRESS_TYPES]

    def apply(self, plan: Plan) -> None:
        """Send the plan as one atomic batch (Cloudflare runs deletes, patches, puts, then posts)."""

        def body(want: Desired) -> dict[str, Any]:
            out: dict[str, Any] = {
                "type": want.type,
                "name": self.record,
                "content": want.content,
                "ttl": want.ttl,
                "proxied": want.proxied,
            }
            if want.comment or want.exact:
                out["comment"] = want.comment or ""
            return out

        deletes: Any = [{"id": r.id} for r in plan.deletes]
        patches: Any = [{"id": r.id, **body(w)} for r, w in plan.patches]
        posts: Any = [{**body(w), **({"tags": list(w.tags)} if w.tags else {})} for w in plan.posts]
        zone_id = self.zone_id
        with self.errors(f"changing DNS records of {self.record}"):
            self.client.dns.records.batch(zone_id=zone_id, deletes=deletes, patches=patches, posts=posts)


def dns_options(fn: F) -> F:
    """``--zone --record --api-base-url --token-file --max-retries --api-timeout``; pass ``api``."""

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        zone = str(kwargs.pop("zone")).lower().rstrip(".")
        record = str(kwargs.pop("record")).lower().rstrip(".")
        if not _RECORD_RE.match(record) or not _HOSTNAME_RE.match(zone):
            raise UsageError(f"--record {record!r} or --zone {zone!r} is not a DNS name")
        if record != zone and not record.endswith("." + zone):
            raise UsageError(
                f"--record {record} is not inside --zone {zone}", hint=f"give the full name, e.g. app.{zone}"
            )
        token = read_secret(what="Cloudflare API token", env="CLOUDFLARE_API_TOKEN", file=kwargs.pop("token_file"))
        assert token is not None
        kwargs["api"] = CloudflareDns(
            token,
            kwargs.pop("api_base_url").rstrip("/"),
            zone,
            record,
            max_retries=kwargs.pop("max_retries"),
            timeout=kwargs.pop("api_timeout"),
        )
        return fn(**kwargs)

    options = [
        click.option("--zone", envvar="TENANT_DR_DNS_ZONE", required=True, help="Zone name, e.g. example.com."),
        click.option(
            "--record", envvar="TENANT_DR_DNS_RECORD", required=True, help="Exact record name, e.g. app.example.com."
        ),
        click.option(
            "--api-base-url",
            envvar="CLOUDFLARE_API_BASE_URL",
            default=DEFAULT_API,
            show_default=True,
            help="Cloudflare API v4 base URL (tests point it at a fake).",
        ),
        click.option(
            "--token-file",
            envvar="CLOUDFLARE_API_TOKEN_FILE",
            default=None,
            type=click.Path(dir_okay=False),
            help="File holding the API token (else env CLOUDFLARE_API_TOKEN).",
        ),
        click.option(
            "--max-retries",
            type=click.IntRange(0, 10),
            default=3,
            show_default=True,
            help="SDK retries on 429/5xx/network errors.",
        ),
        click.option("--api-timeout", type=float, default=30, show_default=True, help="Seconds per API call."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


def target_options(fn: F) -> F:
    """``--target --proxied/--no-proxied``."""
    fn = click.option(
        "--proxied/--no-proxied",
        default=None,
        help="Proxy through Cloudflare (default: as the previous record; true if there was none).",
    )(fn)
    return click.option(
        "--target",
        envvar="TENANT_DR_DNS_TARGET",
        required=True,
        help="New load balancer: a hostname (CNAME) or an IPv4/IPv6 address (A/AAAA).",
    )(fn)


def operation_option(fn: F) -> F:
    """``--operation`` (env ``TENANT_DR_OPERATION``)."""
    return click.option(
        "--operation",
        envvar="TENANT_DR_OPERATION",
        required=True,
        help="Id of the DR operation (e.g. the Argo workflow name); the previous record is recorded under it once.",
    )(fn)


def unless_recorded_option(fn: F) -> F:
    """``--unless-recorded NAME``: for rollback handlers, do nothing once the operation recorded NAME."""
    return click.option(
        "--unless-recorded",
        "unless_recorded",
        default=None,
        metavar="NAME",
        help=f"Exit 0 without changes when the operation has state record NAME (e.g. {COMPLETE}: the cutover "
        "passed its system tests, so a later failure must not roll it back).",
    )(fn)


def _check_after(api: CloudflareDns, desired: list[Desired], what: str) -> None:
    leftover = plan_changes(api.records(), desired)
    if not leftover.empty:
        raise TransientError(
            f"after {what} the records of {api.record} still differ: {leftover.describe()}",
            hint="someone else changed them meanwhile; a re-run converges",
        )


# ---- actions ------------------------------------------------------------------------------------


@action(cli)
@catalog_options
@operation_option
@dns_options
@target_options
@click.option("--ttl", type=int, default=None, help="TTL: 1 = automatic (required when proxied); default as before.")
@click.option(
    "--if-at-target",
    type=click.Choice(["proceed", "refuse"]),
    default="proceed",
    show_default=True,
    help="refuse: exit 3 when the name already points at --target (a DR preflight: the target tenant is "
    "live and the run would overwrite it); proceed: plan/change as usual.",
)
@confirm_option
def cutover(
    catalog: Catalog,
    tenant: str,
    operation: str,
    api: CloudflareDns,
    target: str,
    proxied: bool | None,
    ttl: int | None,
    if_at_target: str,
    confirm: bool,
) -> dict[str, Any]:
    """Record the current address records, then point the name at --target (plan only without --confirm)."""
    log = get_logger()
    name = state_name(api.record)
    catalog.state_key(operation, name)  # validates the operation id before any API call
    everything = api.all_records()
    current = [r for r in everything if r.type in ADDRESS_TYPES]
    want = desired_for(target, proxied, ttl, current, f"tenant-dr cutover {operation}")
    live = [r for r in current if r.type == want.type and same_content(r.type, r.content, want.content)]
    if live and if_at_target == "refuse":
        raise IntegrityError(
            f"{api.record} already points at {target} ({live[0].brief()}): the target tenant is live, and this "
            "run would overwrite its data",
            hint="after a completed recreate remove the tenant-recreate package; to run anyway (deliberately "
            "rebuilding the live tenant) pass --if-at-target proceed (workflow parameter if-target-live=proceed)",
        )
    blocking = [r.type for r in everything if r.type not in ADDRESS_TYPES]
    if want.type == "CNAME" and blocking:
        raise IntegrityError(
            f"{api.record} also has {', '.join(sorted(set(blocking)))} records, which cannot coexist with a CNAME",
            hint="point --target at an IP address (A/AAAA), or move those records first",
        )
    plan = plan_changes(current, [want])
    previous = {
        "zone": api.zone,
        "zone_id": api.zone_id,
        "record": api.record,
        "absent": not current,
        "records": [r.as_dict() for r in current],
        "recorded_at": utcnow().isoformat(),
    }
    result: dict[str, Any] = {
        "zone": api.zone,
        "record": api.record,
        "operation": operation,
        "target": want.as_dict(),
        "plan": plan.describe(),
    }
    if not confirm:
        write_output("previous-record", previous)
        log.info("plan only (pass --confirm to change DNS)", plan=plan.describe())
        return {**result, "previous": previous, "changed": False, "dry_run": True}
    recorded = catalog.record_once(operation, name, previous)
    if recorded.get("record") != api.record or recorded.get("zone") != api.zone:
        raise IntegrityError(
            f"state {operation}/{name} was recorded for {recorded.get('record')} in {recorded.get('zone')}",
            hint="use another --operation id",
        )
    write_output("previous-record", recorded)
    log.info("previous record recorded", key=catalog.state_key(operation, name), records=recorded["records"])
    if plan.empty:
        log.info("already pointing at the target; nothing to change", target=want.as_dict())
    else:
        log.info("changing DNS", plan=plan.describe())
        api.apply(plan)
        _check_after(api, [want], "the cutover")
    write_output("changed", "true" if not plan.empty else "false")
    return {**result, "previous": recorded, "changed": not plan.empty, "dry_run": False}


@action(cli)
@catalog_options
@operation_option
@dns_options
@unless_recorded_option
@confirm_option
def rollback(
    catalog: Catalog, tenant: str, operation: str, api: CloudflareDns, unless_recorded: str | None, confirm: bool
) -> dict[str, Any]:
    """Restore exactly the address records recorded by the operation's cutover (plan only without --confirm)."""
    log = get_logger()
    name = state_name(api.record)
    if unless_recorded and catalog.get_state(operation, unless_recorded) is not None:
        log.info(f"operation recorded {unless_recorded}; not rolling back", operation=operation)
        write_output("rolled-back", "false")
        return {"record": api.record, "operation": operation, "rolled_back": False, "reason": unless_recorded}
    recorded = catalog.get_state(operation, name)
    if recorded is None:
        log.warning("no cutover recorded for this operation; DNS was never changed by it", operation=operation)
        write_output("rolled-back", "false")
        return {"record": api.record, "operation": operation, "rolled_back": False, "reason": "no cutover recorded"}
    if recorded.get("record") != api.record or recorded.get("zone") != api.zone:
        raise UsageError(
            f"operation {operation} recorded {recorded.get('record')} in zone {recorded.get('zone')}",
            hint="pass the same --zone and --record as the cutover",
        )
    where = catalog.state_key(operation, name)
    previous = [DnsRecord.from_dict(d, where) for d in recorded.get("records", [])]
    desired = [
        Desired(r.type, r.content, r.ttl, r.proxied, r.comment, r.tags, exact=True, prefer_id=r.id) for r in previous
    ]
    plan = plan_changes(api.records(), desired)
    result: dict[str, Any] = {
        "record": api.record,
        "operation": operation,
        "restore_to": "absent" if not previous else [r.brief() for r in previous],
        "plan": plan.describe(),
    }
    if not confirm:
        log.info("plan only (pass --confirm to roll back)", plan=plan.describe())
        return {**result, "rolled_back": False, "dry_run": True}
    if plan.empty:
        log.info("records already as recorded; nothing to change")
    else:
        log.info("rolling back DNS", plan=plan.describe())
        api.apply(plan)
        _check_after(api, desired, "the rollback")
    write_output("rolled-back", "true")
    return {**result, "rolled_back": True, "changed": not plan.empty, "dry_run": False}


@action(cli)
@catalog_options
@operation_option
@click.option("--record", "record", required=True, help="The name the operation cut over, e.g. app.example.com.")
def complete(catalog: Catalog, tenant: str, operation: str, record: str) -> dict[str, Any]:
    """Record that the operation's cutover passed its system tests (state record cutover-complete, once)."""
    stored = catalog.record_once(
        operation, COMPLETE, {"record": record.lower().rstrip("."), "completed_at": utcnow().isoformat()}
    )
    get_logger().info("cutover recorded complete: rollbacks of this operation change nothing", record=stored)
    return {"operation": operation, "record": stored["record"], "completed_at": stored["completed_at"]}


@action(cli)
@dns_options
@target_options
@click.option("--probe/--no-probe", default=True, show_default=True, help="Also probe the name over HTTP.")
@click.option("--probe-url", envvar="TENANT_DR_DNS_PROBE_URL", default=None, help="Probe this URL instead.")
@click.option("--probe-scheme", type=click.Choice(["https", "http"]), default="https", show_default=True)
@click.option("--probe-path", envvar="TENANT_DR_DNS_PROBE_PATH", default="/", show_default=True)
@click.option("--probe-status", type=int, default=200, show_default=True, help="Expected HTTP status.")
@click.option(
    "--probe-body-contains",
    envvar="TENANT_DR_DNS_PROBE_MARKER",
    default=None,
    help="A marker the body must contain (e.g. one that identifies the new load balancer).",
)
@probe_options
def verify(
    api: CloudflareDns,
    target: str,
    proxied: bool | None,
    probe: bool,
    probe_url: str | None,
    probe_scheme: str,
    probe_path: str,
    probe_status: int,
    probe_body_contains: str | None,
    deadline: float,
    interval: float,
    request_timeout: float,
    ca_file: str | None,
    insecure: bool,
) -> dict[str, Any]:
    """Check through the API that the name points only at --target, then probe it over HTTP."""
    rtype = target_type(target)
    current = api.records()
    matching = [r for r in current if r.type == rtype and same_content(rtype, r.content, target)]
    others = [r.brief() for r in current if r not in matching]
    problems = []
    if not matching:
        problems.append(f"no {rtype} record pointing at {target}")
    if others:
        problems.append(f"other address records: {', '.join(others)}")
    if proxied is not None and matching and matching[0].proxied != proxied:
        problems.append(f"proxied is {matching[0].proxied}, expected {proxied}")
    if problems:
        raise IntegrityError(
            f"{api.record} in Cloudflare: {'; '.join(problems)}",
            hint="run the cutover (or roll back) again; the API state does not fix itself",
        )
    result: dict[str, Any] = {"record": api.record, "api": matching[0].as_dict()}
    if not probe:
        return {**result, "probe": None}
    if not probe_path.startswith("/"):
        raise UsageError(f"--probe-path {probe_path!r} must start with '/'")
    url = probe_url or f"{probe_scheme}://{api.record}{probe_path}"
    markers = (probe_body_contains,) if probe_body_contains else ()
    checks = [HttpCheck("probe", url, expect_status=(probe_status,), body_contains=markers)]
    results = run_checks(
        checks,
        deadline_s=deadline,
        interval_s=interval,
        request_timeout_s=request_timeout,
        verify=tls_verify(ca_file, insecure),
    )
    raise_for_checks(results, "DNS probes", deadline)
    return {**result, "probe": results[0].as_dict()}


if __name__ == "__main__":
    from steps.runtime import run

    run(cli)
