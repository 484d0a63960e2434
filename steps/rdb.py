"""Key counts by type, read from a Redis RDB stream as it passes through (used by ``steps.redis``).

``RdbCounter`` is fed the RDB bytes chunk by chunk and skips over every value without decoding it,
so counting costs one pass over the bytes already being uploaded instead of a ``SCAN`` + ``TYPE``
round trip per key. The counts describe the snapshot exactly: keys whose TTL had already passed
when the RDB was written (``ctime``) are counted apart, as a live server would no longer show them.

Anything the reader does not understand (a newer RDB version, module values or aux data, an unknown
type or opcode, a key larger than the buffer limit, a count that disagrees with the RDB's own
``RESIZEDB`` sizes) makes it give up with a reason instead of guessing; the caller then counts with
``SCAN``. Memory is bounded by ``max_buffer`` plus one chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Value types (rdb.h) and the name ``TYPE`` reports for each. Module values (6, 7) and hashes with
# field TTLs (22-25, Redis >= 7.4) are not read: their layout is module-defined or not needed yet.
TYPE_NAMES: dict[int, str] = {
    0: "string",
    1: "list",
    2: "set",
    3: "zset",
    4: "hash",
    5: "zset",
    9: "hash",
    10: "list",
    11: "set",
    12: "zset",
    13: "hash",
    14: "list",
    15: "stream",
    16: "hash",
    17: "zset",
    18: "list",
    19: "stream",
    20: "set",
    21: "stream",
}
_BLOB_TYPES = frozenset({9, 10, 11, 12, 13, 16, 17, 20})  # one string: ziplist, listpack, intset, zipmap
_OP_FUNCTION2 = 0xF5
_OP_IDLE = 0xF8
_OP_FREQ = 0xF9
_OP_AUX = 0xFA
_OP_RESIZEDB = 0xFB
_OP_EXPIRETIME_MS = 0xFC
_OP_EXPIRETIME = 0xFD
_OP_SELECTDB = 0xFE
_OP_EOF = 0xFF
MAX_RDB_VERSION = 12  # Redis 7.4 and 8.x; a newer format may change a layout read here
DEFAULT_MAX_BUFFER = 32 << 20
_NO_COUNTS = [0] * 256


class Unsupported(Exception):
    """The stream holds something this reader does not parse; counts must come from elsewhere."""


class _Short(Exception):
    """The buffered bytes end inside the current entry."""


@dataclass
class DbCounts:
    """Counts of one database in the snapshot."""

    keys: int = 0
    expires: int = 0
    expired: int = 0
    types: dict[str, int] = field(default_factory=dict)
    resize_keys: int | None = None
    resize_expires: int | None = None


def _length(buf: bytearray, pos: int) -> tuple[int, int]:
    """Decode an RDB length at ``pos``: ``(value, next position)``."""
    b = buf[pos]
    kind = b >> 6
    if kind == 0:
        return b & 0x3F, pos + 1
    if kind == 1:
        return ((b & 0x3F) << 8) | buf[pos + 1], pos + 2
    if b == 0x80:
        if pos + 5 > len(buf):
            raise _Short
        return int.from_bytes(buf[pos + 1 : pos + 5], "big"), pos + 5
    if b == 0x81:
        if pos + 9 > len(buf):
            raise _Short
        return int.from_bytes(buf[pos + 1 : pos + 9], "big"), pos + 9
    raise Unsupported(f"unexpected length encoding 0x{b:02x}")


def _skip_string(buf: bytearray, pos: int) -> int:
    """Position after the string at ``pos`` (raw, integer-encoded or LZF-compressed)."""
    b = buf[pos]
    kind = b >> 6
    if kind == 0:
        return pos + 1 + (b & 0x3F)
    if kind == 1:
        return pos + 2 + (((b & 0x3F) << 8) | buf[pos + 1])
    if kind == 3:
        enc = b & 0x3F
        if enc == 0:
            return pos + 2
        if enc == 1:
            return pos + 3
        if enc == 2:
            return pos + 5
        if enc == 3:
            clen, pos = _length(buf, pos + 1)
            _, pos = _length(buf, pos)
            return pos + clen
        raise Unsupported(f"unknown string encoding {enc}")
    n, pos = _length(buf, pos)
    return pos + n


def _string(buf: bytearray, pos: int) -> tuple[bytes, int]:
    """A short raw or integer-encoded string (AUX fields) and the next position."""
    b = buf[pos]
    if b >> 6 == 3 and (b & 0x3F) < 3:
        size = 1 << (b & 0x3F)
        if pos + 1 + size > len(buf):
            raise _Short
        return str(int.from_bytes(buf[pos + 1 : pos + 1 + size], "little", signed=True)).encode(), pos + 1 + size
    end = _skip_string(buf, pos)
    if end > len(buf):
        raise _Short
    if b >> 6 == 3:
        return b"", end  # compressed AUX value: not needed
    start = end - (_length(buf, pos)[0])
    return bytes(buf[start:end]), end


def _skip_strings(buf: bytearray, pos: int, count: int) -> int:
    for _ in range(count):
        pos = _skip_string(buf, pos)
    return pos


def _skip_stream(buf: bytearray, pos: int, kind: int) -> int:
    nodes, pos = _length(buf, pos)
    pos = _skip_strings(buf, pos, 2 * nodes)
    for _ in range(3 + (5 if kind >= 19 else 0)):  # length, last id; v2+: first id, max deleted id, added
        pos = _length(buf, pos)[1]
    groups, pos = _length(buf, pos)
    for _ in range(groups):
        pos = _skip_string(buf, pos)
        for _ in range(2 + (1 if kind >= 19 else 0)):  # last id; v2+: entries read
            pos = _length(buf, pos)[1]
        pel, pos = _length(buf, pos)
        for _ in range(pel):
            pos = _length(buf, pos + 24)[1]  # 16-byte id, 8-byte delivery time, delivery count
        consumers, pos = _length(buf, pos)
        for _ in range(consumers):
            pos = _skip_string(buf, pos) + (16 if kind >= 21 else 8)  # seen time; v3+: active time
            owned, pos = _length(buf, pos)
            pos += 16 * owned
    return pos


def _skip_value(buf: bytearray, pos: int, kind: int) -> int:
    """Position after a value of type ``kind`` starting at ``pos``."""
    if kind == 0 or kind in _BLOB_TYPES:
        return _skip_string(buf, pos)
    if kind in (1, 2, 14):
        n, pos = _length(buf, pos)
        return _skip_strings(buf, pos, n)
    if kind == 4:
        n, pos = _length(buf, pos)
        return _skip_strings(buf, pos, 2 * n)
    if kind == 18:
        n, pos = _length(buf, pos)
        for _ in range(n):
            pos = _skip_string(buf, _length(buf, pos)[1])  # container kind, then the node
        return pos
    if kind == 5:
        n, pos = _length(buf, pos)
        for _ in range(n):
            pos = _skip_string(buf, pos) + 8  # member, binary double score
        return pos
    if kind == 3:
        n, pos = _length(buf, pos)
        for _ in range(n):
            pos = _skip_string(buf, pos)
            size = buf[pos]
            pos += 1 if size >= 253 else 1 + size  # score as a length-prefixed string
        return pos
    if kind in (15, 19, 21):
        return _skip_stream(buf, pos, kind)
    raise Unsupported(f"value type {kind} is not read ({'module' if kind in (6, 7) else 'unknown'} type)")


class RdbCounter:
    """Feed RDB bytes with :meth:`feed`; :meth:`result` gives per-database counts or raises ``Unsupported``.

    A key whose TTL ends at or before ``now_ms`` (default: the RDB's ``ctime``, i.e. the snapshot) is
    counted as expired rather than live.
    """

    def __init__(self, max_buffer: int = DEFAULT_MAX_BUFFER, now_ms: int | None = None) -> None:
        self.max_buffer = max_buffer
        self.version: int | None = None
        self.aux: dict[str, str] = {}
        self.dbs: dict[int, DbCounts] = {}
        self.failure: str | None = None
        self.ended = False
        self._buf = bytearray()
        self._db: DbCounts | None = None
        self._by_type: list[int] = list(_NO_COUNTS)
        self._expire_at: int | None = None
        self._expired = 0
        self._expires = 0
        self._now_ms = now_ms

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the RDB; never raises (a failure is kept for :meth:`result`)."""
        if self.failure is not None or self.ended:
            return
        self._buf += chunk
        try:
            self._parse()
        except Unsupported as exc:
            self._fail(str(exc))
        except (IndexError, ValueError) as exc:
            self._fail(f"malformed RDB: {exc}")
        else:
            if len(self._buf) > self.max_buffer:
                self._fail(f"an entry is larger than {self.max_buffer >> 20} MiB")

    def _fail(self, reason: str) -> None:
        self.failure = reason
        self._buf = bytearray()

    def _parse(self) -> None:
        buf = self._buf
        if self.version is None:
            if len(buf) < 9:
                return
            if buf[:5] != b"REDIS" or not buf[5:9].isdigit():
                raise Unsupported(f"not an RDB (header {bytes(buf[:9])!r})")
            self.version = int(buf[5:9])
            if self.version > MAX_RDB_VERSION:
                raise Unsupported(f"RDB version {self.version} is newer than this reader knows ({MAX_RDB_VERSION})")
            del buf[:9]
        pos = 0
        end = len(buf)
        by_type = self._by_type
        try:
            while pos < end:
                start = pos
                op = buf[pos]
                if op < 0xF0:
                    # Hot path: key (usually a short raw string) and value, inlined for strings.
                    b = buf[pos + 1]
                    pos = pos + 2 + b if b < 0x40 else _skip_string(buf, pos + 1)
                    if op == 0:
                        b = buf[pos]
                        pos = pos + 1 + b if b < 0x40 else _skip_string(buf, pos)
                    else:
                        pos = _skip_value(buf, pos, op)
                    if pos > end:
                        raise _Short
                    by_type[op] += 1
                    if self._expire_at is not None:
                        self._note_expire(op)
                elif op == _OP_EXPIRETIME_MS:
                    if pos + 9 > end:
                        raise _Short
                    self._expire_at = int.from_bytes(buf[pos + 1 : pos + 9], "little")
                    pos += 9
                elif op == _OP_EXPIRETIME:
                    if pos + 5 > end:
                        raise _Short
                    self._expire_at = 1000 * int.from_bytes(buf[pos + 1 : pos + 5], "little")
                    pos += 5
                elif op in (_OP_FREQ, _OP_IDLE):
                    pos = pos + 2 if op == _OP_FREQ else _length(buf, pos + 1)[1]
                    if pos > end:
                        raise _Short
                elif op == _OP_SELECTDB:
                    number, pos = _length(buf, pos + 1)
                    self._select(number)
                elif op == _OP_RESIZEDB:
                    keys, pos = _length(buf, pos + 1)
                    expires, pos = _length(buf, pos)
                    db = self._current()
                    db.resize_keys, db.resize_expires = keys, expires
                elif op == _OP_AUX:
                    name, pos = _string(buf, pos + 1)
                    value, pos = _string(buf, pos)
                    self.aux[name.decode(errors="replace")] = value.decode(errors="replace")
                elif op == _OP_FUNCTION2:
                    pos = _skip_string(buf, pos + 1)
                    if pos > end:
                        raise _Short
                elif op == _OP_EOF:
                    self._select(None)
                    self.ended = True
                    pos = end
                else:
                    raise Unsupported(f"unknown RDB opcode 0x{op:02x}")
        except (_Short, IndexError):
            pos = start
        del buf[:pos]

    def _note_expire(self, op: int) -> None:
        """Count the key just read as one with a TTL, and as gone if the TTL had passed at save time."""
        at = self._expire_at or 0
        self._expire_at = None
        if self._now_ms is None:
            self._now_ms = 1000 * int(self.aux.get("ctime", "0") or 0)
        self._expires += 1
        if at <= self._now_ms:
            self._expired += 1
            self._by_type[op] -= 1

    def _current(self) -> DbCounts:
        if self._db is None:
            raise Unsupported("RESIZEDB before SELECTDB")
        return self._db

    def _select(self, number: int | None) -> None:
        """Close the current database's tallies and start ``number``'s."""
        if self._db is not None:
            db = self._db
            types: dict[str, int] = {}
            for kind, count in enumerate(self._by_type):
                if count:
                    name = TYPE_NAMES[kind]
                    types[name] = types.get(name, 0) + count
            db.types = {name: types[name] for name in sorted(types)}
            db.keys = sum(types.values())
            db.expired = self._expired
            db.expires = self._expires - self._expired
        self._by_type[:] = _NO_COUNTS  # in place: _parse holds a reference
        self._expired = self._expires = 0
        self._expire_at = None
        if number is not None:
            if number in self.dbs:
                raise Unsupported(f"database {number} appears twice")
            self._db = self.dbs[number] = DbCounts()

    def result(self) -> dict[str, dict[str, Any]]:
        """Per database (as ``"0"``): live ``keys``, ``types``, ``expires`` and ``expired_at_save``.

        Raises ``Unsupported`` with the reason when the stream could not be counted completely.
        """
        if self.failure is not None:
            raise Unsupported(self.failure)
        if not self.ended:
            raise Unsupported("the RDB ended before its EOF opcode")
        out: dict[str, dict[str, Any]] = {}
        for number, db in sorted(self.dbs.items()):
            stored = db.keys + db.expired
            if db.resize_keys is not None and db.resize_keys != stored:
                raise Unsupported(f"db{number}: read {stored} keys, the RDB says {db.resize_keys}")
            if db.resize_expires is not None and db.resize_expires != db.expires + db.expired:
                raise Unsupported(f"db{number}: read {db.expires + db.expired} TTLs, the RDB says {db.resize_expires}")
            if db.keys or db.expired:
                out[str(number)] = {
                    "keys": db.keys,
                    "types": db.types,
                    "expires": db.expires,
                    "expired_at_save": db.expired,
                }
        return out
