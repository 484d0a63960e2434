"""A fake of the API server's pods/exec websocket endpoint, for the real ``kubernetes`` client.

It speaks the wire protocol the client sees from a real API server: ``GET
/api/v1/namespaces/<ns>/pods/<pod>/exec?command=…&stdin=…`` upgraded to a websocket (RFC 6455 handshake,
bearer token checked), the subprotocol negotiated from the client's offer (``v4.channel.k8s.io`` by
default; ``v5.channel.k8s.io`` when listed in ``protocols``, with its stdin close signal ``[255, 0]``),
binary frames whose first byte is the channel (0 stdin, 1 stdout, 2 stderr, 3 status), masked frames
from the client, a ``v1.Status`` on channel 3 when the command ends (``Success``, or ``Failure`` /
``NonZeroExitCode`` with an ``ExitCode`` cause) and then a close frame. The fake waits for the client's
close before dropping the TCP connection, like a server that completes the close handshake.

Each exec runs ``handler(session)`` in the connection's thread; it returns the exit code. See
:class:`ExecSession` for what a handler can do (write stdout/stderr, read stdin, cut the connection,
raise :class:`ExecFailure`, return ``None`` for a close without a status). Ready-made handlers:
:func:`run_command` runs the requested argv as a local process; :func:`from_chunks` streams what a
generator yields. Stdout is sent in frames of at most ``frame_size`` bytes, as fast as TCP takes them
or throttled to ``rate`` bytes/s; the stdin queue is bounded, so a handler that does not read stdin
pushes back on the client through TCP, as a real pod does.

Unthrottled, the frames of one write go out in one ``sendall``, and the status and the close frame
always share one: over TLS (``tls=True``: a self-signed certificate that the kubeconfig carries as CA)
one record then holds several frames. Faults: ``deny = True`` answers the handshake 403 like RBAC;
:meth:`ExecSession.drop` cuts the TCP connection mid-stream.

Usage::

    with FakeKubeExec(from_chunks(lambda call: [b"x" * 100])) as fake:
        executor = KubernetesExecutor(str(fake.kubeconfig(tmp_path / "kc")))
        executor.exec(Pod("cassandra-0", "atlas"), "cassandra", ["tar", "cf", "-", "data"], stdout=...)
        fake.calls  # one ExecCall per exec: argv, protocol, stdin/stdout byte counts and sha256
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import queue
import re
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, Self
from urllib.parse import parse_qs, urlsplit

V4 = "v4.channel.k8s.io"
V5 = "v5.channel.k8s.io"
TOKEN = "fake-exec-token-51c2"
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_EXEC_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/exec$")
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_STDIN, _STDOUT, _STDERR, _STATUS, _CLOSE_SIGNAL = 0, 1, 2, 3, 255

Handler = Callable[["ExecSession"], int | None]


class ExecFailure(Exception):
    """Raised by a handler: a ``Failure`` status without an exit code (e.g. "container not found")."""


class Dropped(Exception):
    """Raised by :meth:`ExecSession.drop`: the connection is cut without status or close frame."""


class ClientGone(Exception):
    """The client closed the websocket or the connection while the handler was still running."""


def encode_frame(payload: bytes, opcode: int = _OP_BINARY) -> bytes:
    """One final, unmasked server frame."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return head + payload


def status_payload(command: list[str], code: int) -> bytes:
    """The ``v1.Status`` the API server sends on channel 3 when the command exits with ``code``."""
    if code == 0:
        return json.dumps({"metadata": {}, "status": "Success"}).encode()
    return json.dumps(
        {
            "metadata": {},
            "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command {command}, "
            f"exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
        }
    ).encode()


@dataclass
class ExecCall:
    """One exec request as the fake saw it, and what went over the wire."""

    namespace: str
    pod: str
    container: str | None
    command: list[str]
    stdin: bool
    protocol: str
    stdin_bytes: int = 0
    stdin_closed: bool = False  # the v5 close signal for channel 0 arrived
    stdout_bytes: int = 0
    exit_code: int | None = None
    dropped: bool = False
    _stdin_hash: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)
    _stdout_hash: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)

    @property
    def stdin_sha256(self) -> str:
        """sha256 of every stdin byte received."""
        return self._stdin_hash.hexdigest()

    @property
    def stdout_sha256(self) -> str:
        """sha256 of every stdout byte sent."""
        return self._stdout_hash.hexdigest()


class _Wire:
    """The server side of one connection: the HTTP head, then websocket frames, over a (TLS) socket."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        self._buf = b""

    def _fill(self) -> None:
        data = self.conn.recv(1 << 16)
        if not data:
            raise ConnectionError("the client closed the connection")
        self._buf += data

    def read_http_head(self) -> bytes:
        while b"\r\n\r\n" not in self._buf:
            self._fill()
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        return head

    def recv_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def recv_frame(self) -> tuple[int, bytes]:
        """One client frame: (opcode, unmasked payload). The client never fragments its messages."""
        b0, b1 = self.recv_exact(2)
        size = b1 & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self.recv_exact(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self.recv_exact(8))
        mask = self.recv_exact(4) if b1 & 0x80 else b""
        payload = self.recv_exact(size)
        if mask and size:
            key = (mask * (size // 4 + 1))[:size]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
        return b0 & 0x0F, payload

    def send(self, data: bytes) -> None:
        with self._lock:
            self.conn.sendall(data)


class ExecSession:
    """What a handler gets for one exec: the request, stdout/stderr writers, stdin, faults."""

    def __init__(self, wire: _Wire, call: ExecCall, frame_size: int, rate: float | None) -> None:
        self.call = call
        self.frame_size = frame_size
        self.rate = rate
        self.finished = threading.Event()  # the handler returned: stdin from now on is discarded
        self.client_closed = threading.Event()
        self._wire = wire
        self._stdin: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
        self._eof = False
        self._t0 = time.monotonic()
        self._paced = 0

    def stdout(self, data: bytes) -> None:
        """Send ``data`` on channel 1 (raises :class:`ClientGone` once the client has gone)."""
        self.call.stdout_bytes += len(data)
        self.call._stdout_hash.update(data)
        self._write(_STDOUT, data)

    def stderr(self, data: bytes) -> None:
        """Send ``data`` on channel 2."""
        self._write(_STDERR, data)

    def read_stdin(self) -> bytes:
        """The next stdin chunk; ``b""`` at EOF (the v5 close signal, or the client closed)."""
        if self._eof:
            return b""
        item = self._stdin.get()
        if item is None:
            self._eof = True
            return b""
        return item

    def read_stdin_exact(self, n: int) -> bytes:
        """Exactly ``n`` stdin bytes (fewer only at EOF)."""
        parts: list[bytes] = []
        need = n
        while need > 0 and (chunk := self.read_stdin()):
            parts.append(chunk[:need])  # a real process would leave the rest unread; so does this
            need -= len(chunk)
        return b"".join(parts)

    def drop(self) -> NoReturn:
        """Cut the TCP connection now: no status, no close frame (like a kubelet or API server dying)."""
        raise Dropped

    def _write(self, channel: int, data: bytes) -> None:
        frames = [
            encode_frame(bytes([channel]) + data[i : i + self.frame_size]) for i in range(0, len(data), self.frame_size)
        ]
        if self.rate is None:
            self._send(b"".join(frames))
            return
        for frame in frames:
            self._send(frame)
            self._paced += len(frame)
            ahead = self._paced / self.rate - (time.monotonic() - self._t0)
            if ahead > 0:
                time.sleep(ahead)

    def _send(self, data: bytes) -> None:
        if self.client_closed.is_set():
            raise ClientGone
        try:
            self._wire.send(data)
        except OSError as exc:
            raise ClientGone from exc

    def _put(self, item: bytes | None) -> None:
        while not self.finished.is_set():
            try:
                self._stdin.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read_client(self) -> None:
        """Reader thread: stdin frames into the bounded queue, the v5 close signal, the client's close."""
        try:
            while True:
                opcode, payload = self._wire.recv_frame()
                if opcode == _OP_CLOSE:
                    return
                if opcode == _OP_PING:
                    self._wire.send(encode_frame(payload, _OP_PONG))
                elif opcode in (_OP_BINARY, _OP_TEXT) and payload:
                    channel, data = payload[0], payload[1:]
                    if channel == _STDIN and data:
                        self.call.stdin_bytes += len(data)
                        self.call._stdin_hash.update(data)
                        self._put(data)
                    elif channel == _CLOSE_SIGNAL and self.call.protocol == V5 and data[:1] == bytes([_STDIN]):
                        self.call.stdin_closed = True
                        self._put(None)
        except (OSError, ValueError, struct.error):
            return
        finally:
            self.client_closed.set()
            self._put(None)


def run_command(cwd: Path | None = None) -> Handler:
    """A handler that runs the requested argv as a local process, piping stdin, stdout and stderr."""

    def handler(session: ExecSession) -> int:
        call = session.call
        try:
            proc = subprocess.Popen(
                call.command,
                cwd=cwd,
                stdin=subprocess.PIPE if call.stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
            )
        except FileNotFoundError as exc:
            raise ExecFailure(
                f'failed to exec in container: exec: "{call.command[0]}": executable file not found in $PATH'
            ) from exc
        assert proc.stdout is not None and proc.stderr is not None
        err_fd = proc.stderr.fileno()

        def pump_stdin() -> None:
            assert proc.stdin is not None
            try:
                while chunk := session.read_stdin():
                    proc.stdin.write(chunk)
            except (BrokenPipeError, ValueError):
                pass  # the command exited without reading everything
            finally:
                with contextlib.suppress(OSError):
                    proc.stdin.close()

        def pump_stderr() -> None:
            with contextlib.suppress(ClientGone):
                while chunk := os.read(err_fd, 1 << 16):
                    session.stderr(chunk)

        err_thread = threading.Thread(target=pump_stderr, daemon=True)
        err_thread.start()
        if call.stdin:
            threading.Thread(target=pump_stdin, daemon=True).start()  # may wait for EOF that v4 never sends
        try:
            while chunk := os.read(proc.stdout.fileno(), 1 << 16):
                session.stdout(chunk)
        except ClientGone:
            proc.kill()
            raise
        finally:
            code = proc.wait()
            err_thread.join()
        return code

    return handler


def from_chunks(chunks: Callable[[ExecCall], Iterable[bytes]], exit_code: int = 0, stderr: bytes = b"") -> Handler:
    """A handler that sends what ``chunks(call)`` yields on stdout, then ``stderr``, and exits ``exit_code``."""

    def handler(session: ExecSession) -> int:
        for chunk in chunks(session.call):
            session.stdout(chunk)
        if stderr:
            session.stderr(stderr)
        return exit_code

    return handler


def _self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is also the CA in the kubeconfig) and its key."""
    import ipaddress
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-kube-exec")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class FakeKubeExec:
    """The pods/exec endpoint on a free 127.0.0.1 port, served by threads; use as a context manager."""

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        protocols: tuple[str, ...] = (V4,),
        frame_size: int = 32 * 1024,
        rate: float | None = None,
        tls: bool = False,
        token: str = TOKEN,
    ) -> None:
        self.handler = handler or run_command()
        self.protocols = protocols
        self.frame_size = frame_size
        self.rate = rate
        self.tls = tls
        self.token = token
        self.deny = False
        self.calls: list[ExecCall] = []
        self._listener: socket.socket | None = None
        self._ssl: ssl.SSLContext | None = None
        self._cert: Path | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()

    @property
    def base_url(self) -> str:
        """``http(s)://127.0.0.1:<port>``."""
        assert self._listener is not None, "fake not started"
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._listener.getsockname()[1]}"

    def kubeconfig(self, path: Path, token: str | None = None) -> Path:
        """Write a bearer-token kubeconfig for this endpoint (with its CA when serving TLS)."""
        cluster: dict[str, str] = {"server": self.base_url}
        if self._cert is not None:
            cluster["certificate-authority-data"] = base64.b64encode(self._cert.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "users": [{"name": "fake", "user": {"token": token or self.token}}],
        }
        path.write_text(json.dumps(config), encoding="utf-8")
        return path

    def start(self) -> Self:
        """Listen on a free port and accept connections in a background thread."""
        if self.tls:
            self._tmp = tempfile.TemporaryDirectory(prefix="fake-kube-exec-")
            self._cert, key = _self_signed_cert(Path(self._tmp.name))
            self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ssl.load_cert_chain(self._cert, key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop accepting and cut every open connection."""
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
        for conn in list(self._conns):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        self._conns.add(conn)
        try:
            if self._ssl is not None:
                conn = self._ssl.wrap_socket(conn, server_side=True)
            self._serve(_Wire(conn))
        except (OSError, ValueError):
            pass  # the client went away during the handshake
        finally:
            self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # also wakes the reader thread blocked in recv()
            conn.close()

    def _respond(self, wire: _Wire, code: int, reason: str, message: str) -> None:
        body = json.dumps(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": reason.replace(" ", ""),
                "code": code,
            }
        ).encode()
        wire.send(
            f"HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n".encode()
            + body
        )

    def _serve(self, wire: _Wire) -> None:
        request_line, *lines = wire.read_http_head().decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines if ":" in ln)}
        url = urlsplit(target)
        match = _EXEC_PATH.match(url.path)
        if method != "GET" or match is None or headers.get("upgrade", "").lower() != "websocket":
            self._respond(wire, 404, "Not Found", f"the server could not find the requested resource {url.path}")
            return
        if headers.get("authorization") != f"Bearer {self.token}":
            self._respond(wire, 401, "Unauthorized", "Unauthorized")
            return
        namespace, pod = match.groups()
        if self.deny:
            self._respond(
                wire,
                403,
                "Forbidden",
                f'pods "{pod}" is forbidden: User "system:serviceaccount:argo:tenant-dr" cannot create '
                f'resource "pods/exec" in API group "" in the namespace "{namespace}"',
            )
            return
        offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
        protocol = next((p for p in self.protocols if p in offered), None)
        if protocol is None:
            self._respond(wire, 400, "Bad Request", f"no supported subprotocol in {offered}")
            return
        query = parse_qs(url.query)
        call = ExecCall(
            namespace=namespace,
            pod=pod,
            container=query.get("container", [None])[0],
            command=query.get("command", []),
            stdin=query.get("stdin", ["false"])[0] == "true",
            protocol=protocol,
        )
        self.calls.append(call)
        accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + _GUID).digest()).decode()
        wire.send(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n".encode()
        )
        session = ExecSession(wire, call, self.frame_size, self.rate)
        threading.Thread(target=session.read_client, daemon=True).start()
        status: bytes | None = None
        try:
            call.exit_code = self.handler(session)
            if call.exit_code is not None:
                status = status_payload(call.command, call.exit_code)
        except Dropped:
            call.dropped = True
            return
        except ClientGone:
            return
        except ExecFailure as exc:
            status = json.dumps({"metadata": {}, "status": "Failure", "message": str(exc)}).encode()
        finally:
            session.finished.set()
        ending = encode_frame(bytes([_STATUS]) + status) if status is not None else b""
        with contextlib.suppress(OSError):  # one write: over TLS one record holds the status and the close
            wire.send(ending + encode_frame(struct.pack("!H", 1000), _OP_CLOSE))
        session.client_closed.wait(60)  # stop() ends the wait of a client that never closes
