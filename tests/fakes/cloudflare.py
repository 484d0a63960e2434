"""A stateful HTTP-level fake of the Cloudflare v4 API (zones and DNS records) for the real SDK.

The official ``cloudflare`` Python SDK talks to it over HTTP (``base_url=fake.api_url``). It answers
like the API: ``{"success", "errors", "messages", "result"}`` envelopes, ``result_info`` pagination,
bearer-token authentication (401 for an unknown token, 403 for a token without the permission or the
zone), Cloudflare's record rules (a CNAME cannot share its name with other records, identical records
are refused, A/AAAA content must be an address, TTL 1 or 30..86400, proxied records get TTL 1), and the
atomic ``dns_records/batch`` endpoint (deletes, patches, puts, posts; all or nothing).

Tests seed and inspect state with :meth:`FakeCloudflare.add_zone`, :meth:`add_record` and
:meth:`records`, read :attr:`requests` (never with the Authorization header) and inject faults with
:meth:`fail_next` (e.g. 429 with ``retry-after``, 500).
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.wrappers import Request, Response

from tests.fakes._served import ServedFake

API_PREFIX = "/client/v4"
READ, EDIT = "dns:read", "dns:edit"
ZONE_READ = "zone:read"
ALL_PERMISSIONS = frozenset({ZONE_READ, READ, EDIT})
PROXIABLE = ("A", "AAAA", "CNAME")
_FILTER_OPS: dict[str, Callable[[str, str], bool]] = {
    "exact": lambda have, want: have == want,
    "contains": lambda have, want: want in have,
    "startswith": lambda have, want: have.startswith(want),
    "endswith": lambda have, want: have.endswith(want),
}


class CfError(Exception):
    """An error answered in Cloudflare's envelope."""

    def __init__(self, status: int, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


@dataclass
class Token:
    """An API token: its permissions and (optionally) the only zones it may touch."""

    permissions: frozenset[str] = ALL_PERMISSIONS
    zones: frozenset[str] | None = None


@dataclass
class Fault:
    """A scripted failure for the next ``times`` matching requests."""

    method: str
    path_regex: str
    status: int
    times: int
    code: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    """One request as the fake saw it (no Authorization header)."""

    method: str
    path: str
    query: list[tuple[str, str]]
    body: Any
    status: int = 0


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeCloudflare(ServedFake):
    """Cloudflare's API behind a real HTTP server on 127.0.0.1 (use as a context manager)."""

    def __init__(self, tokens: dict[str, Token] | None = None, *, default_per_page: int = 100) -> None:
        self.tokens: dict[str, Token] = tokens if tokens is not None else {}
        self.default_per_page = default_per_page
        self.zones: dict[str, dict[str, Any]] = {}  # id -> zone
        self.dns: dict[str, dict[str, dict[str, Any]]] = {}  # zone id -> record id -> record
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.lock = threading.RLock()

    # ---- lifecycle: ServedFake (start/stop/context manager) ----------------------------------------

    @property
    def api_url(self) -> str:
        """``http://127.0.0.1:<port>/client/v4`` (the SDK's ``base_url``)."""
        return self.base_url + API_PREFIX

    # ---- seeding and inspection --------------------------------------------------------------------

    def add_token(
        self, token: str, permissions: set[str] | frozenset[str] = ALL_PERMISSIONS, zones: set[str] | None = None
    ) -> None:
        """Accept ``token`` with these permissions (``zone:read dns:read dns:edit``), optionally only on ``zones``."""
        with self.lock:
            self.tokens[token] = Token(frozenset(permissions), frozenset(zones) if zones is not None else None)

    def add_zone(self, name: str) -> str:
        """Create an active zone; return its id."""
        with self.lock:
            zone_id = uuid.uuid4().hex
            self.zones[zone_id] = {
                "id": zone_id,
                "name": name,
                "status": "active",
                "paused": False,
                "type": "full",
                "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
                "account": {"id": "0" * 32, "name": "test account"},
                "created_on": _now(),
                "modified_on": _now(),
            }
            self.dns[zone_id] = {}
            return zone_id

    def zone_id(self, name: str) -> str:
        """The id of zone ``name``."""
        return str(next(z["id"] for z in self.zones.values() if z["name"] == name))

    def add_record(
        self,
        zone: str,
        rtype: str,
        name: str,
        content: str,
        *,
        ttl: int = 1,
        proxied: bool = False,
        comment: str | None = None,
        tags: list[str] | None = None,
    ) -> dict[str, Any]:
        """Create a record directly (bypassing auth, but with the API's validation); return a copy."""
        with self.lock:
            zone_id = self.zone_id(zone)
            body = {"type": rtype, "name": name, "content": content, "ttl": ttl, "proxied": proxied}
            if comment is not None:
                body["comment"] = comment
            if tags:
                body["tags"] = tags
            store = self.dns[zone_id]
            rec = self._new_record(zone_id, body)
            self._check_conflicts(store, rec)
            store[rec["id"]] = rec
            return copy.deepcopy(rec)

    def remove_records(self, zone: str, name: str) -> None:
        """Delete every record named ``name`` directly (bypassing auth), e.g. to reset a test world."""
        with self.lock:
            store = self.dns[self.zone_id(zone)]
            for rid in [rid for rid, rec in store.items() if rec["name"] == name]:
                del store[rid]

    def records(self, zone: str, name: str | None = None) -> list[dict[str, Any]]:
        """Copies of the zone's records (only ``name``'s if given), sorted by type and content."""
        with self.lock:
            recs = self.dns[self.zone_id(zone)].values()
            chosen = [copy.deepcopy(r) for r in recs if name is None or r["name"] == name]
        return sorted(chosen, key=lambda r: (r["type"], r["content"], r["id"]))

    def writes(self) -> list[Recorded]:
        """Requests that could change state (POST, PATCH, PUT, DELETE)."""
        return [r for r in self.requests if r.method in ("POST", "PATCH", "PUT", "DELETE")]

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        times: int = 1,
        code: int | None = None,
        message: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next ``times`` requests matching ``method`` and the path (below /client/v4) with an error."""
        defaults = {429: (971, "Please wait and consider throttling your request speed"), 500: (10000, "Internal")}
        dcode, dmessage = defaults.get(status, (10000, f"injected {status}"))
        headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
        with self.lock:
            self.faults.append(Fault(method, path_regex, status, times, code or dcode, message or dmessage, headers))

    # ---- HTTP --------------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self._handle(request)
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        query = parse_qsl(request.query_string.decode(), keep_blank_values=True)
        raw = request.get_data()
        body: Any = None
        rec = Recorded(request.method, request.path, query, None)
        with self.lock:
            self.requests.append(rec)
        try:
            if raw:
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise CfError(400, 6007, f"Malformed JSON in request body: {exc}") from exc
            rec.body = body
            if not request.path.startswith(API_PREFIX + "/"):
                raise CfError(404, 7000, "No route for that URI")
            path = request.path[len(API_PREFIX) :]
            with self.lock:
                self._inject_fault(request.method, path)
                token = self._authenticate(request)
                status, payload = self._route(request.method, path, query, body, token)
        except CfError as exc:
            rec.status = exc.status
            envelope = {
                "success": False,
                "errors": [{"code": exc.code, "message": exc.message}],
                "messages": [],
                "result": None,
            }
            response = Response(json.dumps(envelope), status=exc.status, content_type="application/json")
            for k, v in exc.headers.items():
                response.headers[k] = v
            return response
        rec.status = status
        return Response(json.dumps(payload), status=status, content_type="application/json")

    def _inject_fault(self, method: str, path: str) -> None:
        for fault in self.faults:
            if fault.times > 0 and fault.method == method and re.fullmatch(fault.path_regex, path):
                fault.times -= 1
                raise CfError(fault.status, fault.code, fault.message, fault.headers)

    def _authenticate(self, request: Request) -> Token:
        header = request.headers.get("Authorization", "")
        if not header:
            raise CfError(400, 9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers")
        if not header.startswith("Bearer "):
            raise CfError(400, 6111, "Invalid format for Authorization header")
        token = self.tokens.get(header[len("Bearer ") :])
        if token is None:
            raise CfError(401, 10001, "Unable to authenticate request")
        return token

    @staticmethod
    def _need(token: Token, permission: str, zone: dict[str, Any] | None = None) -> None:
        if permission not in token.permissions or (
            zone is not None and token.zones is not None and zone["name"] not in token.zones
        ):
            raise CfError(403, 10000, "Authentication error")

    # ---- routing -----------------------------------------------------------------------------------

    def _route(self, method: str, path: str, query: list[tuple[str, str]], body: Any, token: Token) -> tuple[int, Any]:
        q = dict(query)
        if path == "/zones" and method == "GET":
            self._need(token, ZONE_READ)
            zones = [
                z
                for z in self.zones.values()
                if (token.zones is None or z["name"] in token.zones) and ("name" not in q or z["name"] == q["name"])
            ]
            return self._paged(sorted(zones, key=lambda z: z["name"]), q)
        match = re.fullmatch(r"/zones/([^/]+)(/dns_records(?:/([^/]+))?)?", path)
        if not match:
            raise CfError(404, 7000, "No route for that URI")
        zone = self.zones.get(match.group(1))
        if zone is None:
            raise CfError(404, 7003, "Could not route to /zones, perhaps your object identifier is invalid?")
        sub, rec_id = match.group(2), match.group(3)
        if sub is None:
            if method != "GET":
                raise CfError(405, 10405, "Method not allowed")
            self._need(token, ZONE_READ, zone)
            return 200, self._ok(zone)
        store = self.dns[zone["id"]]
        if method == "GET":
            self._need(token, READ, zone)
        else:
            self._need(token, EDIT, zone)
        if rec_id == "batch" and method == "POST":
            return 200, self._ok(self._batch(zone["id"], body or {}))
        if rec_id is None:
            if method == "GET":
                return self._paged(self._filter(store.values(), query), q)
            if method == "POST":
                rec = self._new_record(zone["id"], self._body(body))
                self._check_conflicts(store, rec)
                store[rec["id"]] = rec
                return 200, self._ok(rec)
            raise CfError(405, 10405, "Method not allowed")
        existing = store.get(rec_id)
        if existing is None:
            raise CfError(404, 81044, "Record does not exist.")
        if method == "GET":
            return 200, self._ok(existing)
        if method == "DELETE":
            del store[rec_id]
            return 200, self._ok({"id": rec_id})
        if method in ("PATCH", "PUT"):
            updated = self._changed(zone["id"], existing, self._body(body), replace=method == "PUT")
            self._check_conflicts(store, updated)
            store[rec_id] = updated
            return 200, self._ok(updated)
        raise CfError(405, 10405, "Method not allowed")

    @staticmethod
    def _ok(result: Any) -> dict[str, Any]:
        return {"success": True, "errors": [], "messages": [], "result": copy.deepcopy(result)}

    def _paged(self, items: list[dict[str, Any]], q: dict[str, str]) -> tuple[int, Any]:
        try:
            page = int(float(q.get("page", 1)))
            per_page = int(float(q.get("per_page", self.default_per_page)))
        except ValueError as exc:
            raise CfError(400, 1004, "Invalid page or per_page") from exc
        if page < 1 or not 1 <= per_page <= 5000:
            raise CfError(400, 1004, "Invalid page or per_page")
        chunk = items[(page - 1) * per_page : page * per_page]
        total_pages = max(1, -(-len(items) // per_page))
        return 200, {
            **self._ok(chunk),
            "result_info": {
                "page": page,
                "per_page": per_page,
                "count": len(chunk),
                "total_count": len(items),
                "total_pages": total_pages,
            },
        }

    @staticmethod
    def _filter(records: Any, query: list[tuple[str, str]]) -> list[dict[str, Any]]:
        out = list(records)
        for key, value in query:
            field_name, _, op = key.partition(".")
            if field_name in ("name", "content", "comment"):
                op = op or "exact"
                if op not in _FILTER_OPS:
                    raise CfError(400, 1004, f"Invalid filter {key}")
                test = _FILTER_OPS[op]
                out = [r for r in out if test(str(r.get(field_name) or "").lower(), value.lower())]
            elif key == "type":
                out = [r for r in out if r["type"] == value]
            elif key == "proxied":
                out = [r for r in out if r["proxied"] == (value == "true")]
        return sorted(out, key=lambda r: (r["type"], r["name"], r["content"]))

    @staticmethod
    def _body(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise CfError(400, 9207, "Request body is invalid.")
        return body

    # ---- record rules ------------------------------------------------------------------------------

    def _validated(self, zone_id: str, rec: dict[str, Any]) -> dict[str, Any]:
        zone_name = self.zones[zone_id]["name"]
        for key in ("type", "name", "content"):
            if not rec.get(key):
                raise CfError(400, 9000 + len(key), f"DNS record {key} is required")
        rec["name"] = str(rec["name"]).lower().rstrip(".")
        if rec["name"] != zone_name and not rec["name"].endswith("." + zone_name):
            raise CfError(400, 9007, "Content for the name is not within the zone")
        ttl = rec.get("ttl", 1)
        if not isinstance(ttl, int) or (ttl != 1 and not 30 <= ttl <= 86400):
            raise CfError(400, 9021, "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.")
        if rec.get("proxied") and rec["type"] not in PROXIABLE:
            raise CfError(400, 9004, "This record type cannot be proxied.")
        if rec["type"] in ("A", "AAAA"):
            try:
                ip = ipaddress.ip_address(rec["content"])
            except ValueError as exc:
                raise CfError(400, 9005, f"Content for {rec['type']} record must be a valid IP address.") from exc
            if (ip.version == 4) != (rec["type"] == "A"):
                raise CfError(400, 9005, f"Content for {rec['type']} record is invalid.")
        if rec["type"] == "CNAME":
            rec["content"] = str(rec["content"]).lower().rstrip(".")
        rec["proxied"] = bool(rec.get("proxied", False))
        rec["ttl"] = 1 if rec["proxied"] else ttl
        rec["proxiable"] = rec["type"] in PROXIABLE
        rec["comment"] = rec.get("comment") or None
        rec["tags"] = list(rec.get("tags") or [])
        return rec

    def _new_record(self, zone_id: str, body: dict[str, Any]) -> dict[str, Any]:
        allowed = {"type", "name", "content", "ttl", "proxied", "comment", "tags", "settings"}
        rec = {k: v for k, v in body.items() if k in allowed and k != "settings"}
        rec = self._validated(zone_id, rec)
        now = _now()
        rec.update({"id": uuid.uuid4().hex, "created_on": now, "modified_on": now, "meta": {}, "settings": {}})
        return rec

    def _changed(
        self, zone_id: str, existing: dict[str, Any], body: dict[str, Any], *, replace: bool
    ) -> dict[str, Any]:
        fields = {"type", "name", "content", "ttl", "proxied", "comment", "tags"}
        if replace:
            new = {k: body[k] for k in fields if k in body}
        else:
            new = {k: existing[k] for k in fields if k in existing}
            new.update({k: body[k] for k in fields if k in body})
        new = self._validated(zone_id, new)
        new.update(
            {
                "id": existing["id"],
                "created_on": existing["created_on"],
                "modified_on": _now(),
                "meta": {},
                "settings": {},
            }
        )
        return new

    @staticmethod
    def _check_conflicts(store: dict[str, dict[str, Any]], rec: dict[str, Any]) -> None:
        for other in store.values():
            if other["id"] == rec["id"] or other["name"] != rec["name"]:
                continue
            if rec["type"] == "CNAME" or other["type"] == "CNAME":
                raise CfError(400, 81053, "An A, AAAA, or CNAME record with that host already exists.")
            if other["type"] == rec["type"] and other["content"] == rec["content"]:
                raise CfError(400, 81058, "An identical record already exists.")

    def _batch(self, zone_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Deletes, patches, puts, posts in that order, on a copy: all or nothing."""
        work = copy.deepcopy(self.dns[zone_id])
        out: dict[str, list[dict[str, Any]]] = {"deletes": [], "patches": [], "puts": [], "posts": []}
        for item in body.get("deletes") or []:
            rec = work.pop(str(item.get("id")), None)
            if rec is None:
                raise CfError(400, 81044, "Record does not exist.")
            out["deletes"].append(rec)
        for key, replace in (("patches", False), ("puts", True)):
            for item in body.get(key) or []:
                existing = work.get(str(item.get("id")))
                if existing is None:
                    raise CfError(400, 81044, "Record does not exist.")
                updated = self._changed(zone_id, existing, item, replace=replace)
                self._check_conflicts(work, updated)
                work[updated["id"]] = updated
                out[key].append(updated)
        for item in body.get("posts") or []:
            rec = self._new_record(zone_id, self._body(item))
            self._check_conflicts(work, rec)
            work[rec["id"]] = rec
            out["posts"].append(rec)
        self.dns[zone_id] = work
        return out
