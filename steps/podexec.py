"""Running commands in pods: a small executor interface, a Kubernetes and a local implementation.

``KubernetesExecutor`` opens the pods/exec websocket of the API server with ``kubernetes.stream``
(``binary=True`` so tar and SSTable bytes are not decoded, ``_preload_content=False`` so it returns the
open connection) and then reads it one websocket frame at a time: each stdout frame goes straight to the
consumer, so memory stays bounded however many GiB a ``tar`` streams. ``WSClient.update()`` is not used:
it reads every frame already waiting into one growing buffer per channel before returning. The exit code
comes from the error channel (a ``v1.Status``). Stdin is closed with the ``v5.channel.k8s.io`` close
signal; ``v4.channel.k8s.io`` has none, so there a command fed on stdin must stop reading by itself
(``tar x`` does at its end-of-archive marker). Tested through the real client against a websocket-level
fake of the endpoint (``tests/fakes/kube_exec.py``).

``LocalExecutor`` maps each pod to a directory ``<root>/<namespace>/<pod>/`` (labels in
``labels.json``) and runs the same argv there with ``subprocess``, ``PATH`` prefixed by the pod's
``bin/`` so stand-in tools (``nodetool``, ``cqlsh``) are found. It exists for tests and drills; the
child gets a minimal environment, like a real pod would (the step's secrets are not inherited).
"""

from __future__ import annotations

import abc
import contextlib
import functools
import json
import os
import selectors
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steps.runtime.errors import TransientError, UsageError

Consumer = Callable[[bytes], None]
STDERR_TAIL = 4000
_READ = 1 << 20
_STDIN_FRAME = 256 * 1024


@dataclass(frozen=True)
class Pod:
    """A pod found by a label selector."""

    name: str
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    phase: str = "Running"


@dataclass(frozen=True)
class ExecResult:
    """How one exec ended: exit code and the tail of stderr."""

    returncode: int
    stderr: str

    def check(self, what: str) -> None:
        """Raise a one-line :class:`TransientError` when the command failed."""
        if self.returncode != 0:
            tail = " | ".join(ln.strip() for ln in self.stderr.splitlines() if ln.strip())[-600:]
            raise TransientError(f"{what} failed with exit code {self.returncode}: {tail or 'no stderr'}")


class _Tail:
    """Keeps the last few KiB written to it (stderr)."""

    def __init__(self) -> None:
        self._buf = b""

    def add(self, data: bytes) -> None:
        self._buf = (self._buf + data)[-STDERR_TAIL:]

    def text(self) -> str:
        return self._buf.decode("utf-8", "replace")


class PodExecutor(abc.ABC):
    """Lists pods and runs argv in them, streaming stdin and stdout as bytes."""

    @abc.abstractmethod
    def list_pods(self, namespace: str, selector: str) -> list[Pod]:
        """Pods of ``namespace`` matching the label ``selector``, sorted by name."""

    @abc.abstractmethod
    def exec(
        self,
        pod: Pod,
        container: str | None,
        argv: Sequence[str],
        *,
        stdout: Consumer | None = None,
        stdin: Iterable[bytes] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run ``argv`` in ``pod``; every stdout chunk goes to ``stdout``; ``stdin`` chunks are fed in.

        Returns the exit code; raises :class:`TransientError` when the exec itself breaks
        (connection lost, timeout) and :class:`UsageError` when the pod/container cannot be used.
        """

    def capture(
        self,
        pod: Pod,
        container: str | None,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        what: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Run a short command and return its stdout as text; fail on a non-zero exit."""
        chunks: list[bytes] = []
        result = self.exec(
            pod,
            container,
            argv,
            stdout=chunks.append,
            stdin=None if stdin is None else [stdin],
            timeout=timeout,
        )
        result.check(f"{what or argv[0]} in pod {pod.name}")
        return b"".join(chunks).decode("utf-8", "replace")


def parse_selector(selector: str) -> list[tuple[str, str, str | None]]:
    """``a=b,c!=d,e`` -> ``[(a, '=', b), (c, '!=', d), (e, 'exists', None)]``; usage error if malformed."""
    terms: list[tuple[str, str, str | None]] = []
    for raw in selector.split(","):
        term = raw.strip()
        if not term:
            continue
        if "!=" in term:
            key, value = term.split("!=", 1)
            terms.append((key.strip(), "!=", value.strip()))
        elif "==" in term or "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            terms.append((key.strip(), "=", value.strip()))
        elif term.replace("-", "").replace(".", "").replace("/", "").replace("_", "").isalnum():
            terms.append((term, "exists", None))
        else:
            raise UsageError(f"label selector {selector!r} is not supported", hint="use key=value[,key2=value2]")
    if not terms:
        raise UsageError("label selector is empty", hint="pass e.g. --selector app=cassandra")
    return terms


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Whether ``labels`` satisfy an equality-based label ``selector``."""
    for key, op, value in parse_selector(selector):
        if op == "exists" and key not in labels:
            return False
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and labels.get(key) == value:
            return False
    return True


# ---- Kubernetes ---------------------------------------------------------------------------------


def parse_exec_status(raw: str | bytes) -> int:
    """Exit code from the exec error channel (a ``v1.Status``); :class:`TransientError` if it is no exit code."""
    import yaml

    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        status = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        status = None
    if not isinstance(status, dict):
        raise TransientError("pod exec ended without an exit status (connection lost?)")
    if status.get("status") == "Success":
        return 0
    details = status.get("details") or {}
    for cause in details.get("causes") or []:
        if cause.get("reason") == "ExitCode":
            with contextlib.suppress(TypeError, ValueError):
                return int(cause.get("message"))
    raise TransientError(f"pod exec failed: {status.get('message') or status.get('reason') or text.strip()[:300]}")


def _exec_error(where: str, exc: Exception, api_error: Callable[[str, Exception], Exception]) -> Exception:
    """Websocket failures arrive as ``ApiException(status=0)``: 401/403 handshakes are RBAC, the rest transient."""
    status = getattr(exc, "status", None)
    reason = " ".join(str(getattr(exc, "reason", "") or exc).split())
    if status != 0:
        return api_error(where, exc)
    if "Handshake status 401" in reason or "Handshake status 403" in reason:
        return UsageError(f"{where}: forbidden ({reason[:200]})", hint="the ServiceAccount needs pods/exec create")
    return TransientError(f"{where}: exec connection failed ({reason[:300]})")


class _ExecStream:
    """An open pods/exec websocket, read one frame at a time.

    Channel 1 (stdout) goes to the consumer as each frame arrives, channel 2 (stderr) into a tail,
    channel 3 (the ``v1.Status``) is kept for the exit code, until the CLOSE frame. Errors raised by the
    consumer or the stdin source propagate unchanged; a broken connection is a :class:`TransientError`.
    """

    def __init__(self, ws: Any, where: str, stdout: Consumer | None, timeout: float | None) -> None:
        self.ws = ws
        self.where = where
        self.stdout = stdout
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.err = _Tail()
        self.status = b""
        self.closed = False
        self._selector = selectors.DefaultSelector()
        self._selector.register(ws.sock.sock, selectors.EVENT_READ)

    def _left(self) -> float | None:
        """Seconds until the deadline (``None`` without one); raises once it has passed."""
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TransientError(
                f"{self.where} did not finish within {self.timeout:.0f}s",
                hint="raise --exec-timeout if the command is only slow",
            )
        return left

    def _ready(self, wait: float | None) -> bool:
        """Whether a frame can be read within ``wait`` seconds."""
        raw = self.ws.sock.sock
        if isinstance(raw, ssl.SSLSocket) and raw.pending():
            return True  # already decrypted bytes are invisible to select()
        return bool(self._selector.select(wait))

    def read_frame(self, wait: float | None) -> None:
        """Handle the next frame if one starts arriving within ``wait`` seconds."""
        from websocket import ABNF, WebSocketException

        if not self._ready(wait):
            return
        try:
            self.ws.sock.settimeout(self._left())  # also bounds a frame that stops half-way
            opcode, frame = self.ws.sock.recv_data_frame(True)
        except (WebSocketException, OSError) as exc:
            self._left()  # a timeout at the deadline is reported as the timeout
            if self.status:  # the exit status is the server's last message: only the close was lost
                self.closed = True
                return
            raise TransientError(
                f"{self.where}: exec stream broke ({type(exc).__name__}: {exc})",
                hint="the connection to the API server or kubelet was lost; Argo retries the step",
            ) from exc
        if opcode == ABNF.OPCODE_CLOSE:
            self.closed = True
        elif opcode in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT) and frame.data:
            channel, payload = frame.data[0], frame.data[1:]
            if channel == 1 and payload and self.stdout is not None:
                self.stdout(payload)
            elif channel == 2:
                self.err.add(payload)
            elif channel == 3:
                self.status += payload

    def _send(self, send: Callable[[], object]) -> bool:
        """Run one write on the websocket; ``False`` if the connection is gone."""
        from websocket import WebSocketException

        try:
            self.ws.sock.settimeout(self._left())
            send()
        except (WebSocketException, OSError):
            return False
        return True

    def feed(self, chunks: Iterable[bytes]) -> None:
        """Write ``chunks`` to stdin in 256 KiB frames, handling frames that arrive in between, then EOF.

        Stops early when the command has exited (e.g. ``tar x`` at the end of the archive) or the
        connection is gone; :meth:`wait_closed` then tells which. EOF is ``close_channel(0)``: the
        ``v5.channel.k8s.io`` close signal, a no-op on ``v4.channel.k8s.io``, which has none.
        """
        for chunk in chunks:
            for start in range(0, len(chunk), _STDIN_FRAME):
                while not self.closed and self._ready(0):
                    self.read_frame(0)
                piece = bytes(chunk[start : start + _STDIN_FRAME])
                if self.closed or not self._send(functools.partial(self.ws.write_stdin, piece)):
                    return
        self._send(functools.partial(self.ws.close_channel, 0))

    def wait_closed(self) -> int:
        """Handle frames until the CLOSE frame; the command's exit code."""
        while not self.closed:
            self.read_frame(self._left())
        return parse_exec_status(self.status)

    def close(self) -> None:
        """Close the websocket (handshake if still open) and its socket."""
        self._selector.close()
        with contextlib.suppress(Exception):
            self.ws.close()
        with contextlib.suppress(Exception):
            self.ws.sock.shutdown()


class KubernetesExecutor(PodExecutor):
    """Pod exec through the Kubernetes API (in-cluster or a kubeconfig)."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None) -> None:
        from kubernetes import client

        from steps.kubeapi import load_api_client

        self.api_client = load_api_client(kubeconfig, context)
        self.core = client.CoreV1Api(self.api_client)

    def list_pods(self, namespace: str, selector: str) -> list[Pod]:
        """See :meth:`PodExecutor.list_pods`."""
        from steps.kubeapi import api_error

        parse_selector(selector)
        try:
            items = self.core.list_namespaced_pod(namespace, label_selector=selector).items
        except Exception as exc:
            raise api_error(f"list pods {selector!r} in namespace {namespace}", exc) from exc
        pods: list[Pod] = []
        for item in items:
            meta = item.metadata
            if meta is None or not meta.name or meta.deletion_timestamp:
                continue
            phase = (item.status.phase if item.status else None) or "Unknown"
            pods.append(Pod(name=meta.name, namespace=namespace, labels=dict(meta.labels or {}), phase=phase))
        return sorted(pods, key=lambda p: p.name)

    def exec(
        self,
        pod: Pod,
        container: str | None,
        argv: Sequence[str],
        *,
        stdout: Consumer | None = None,
        stdin: Iterable[bytes] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """See :meth:`PodExecutor.exec`."""
        from kubernetes.stream import stream

        from steps.kubeapi import api_error

        where = f"exec {argv[0]} in pod {pod.namespace}/{pod.name}"
        kwargs: dict[str, Any] = {
            "command": list(argv),
            "stdin": stdin is not None,
            "stdout": True,
            "stderr": True,
            "tty": False,
            "binary": True,
            "_preload_content": False,
        }
        if container:
            kwargs["container"] = container
        try:
            ws = stream(self.core.connect_get_namespaced_pod_exec, pod.name, pod.namespace, **kwargs)
        except Exception as exc:
            raise _exec_error(where, exc, api_error) from exc
        conn = _ExecStream(ws, where, stdout, timeout)
        try:
            if stdin is not None:
                conn.feed(stdin)
            code = conn.wait_closed()
        finally:
            conn.close()
        return ExecResult(code, conn.err.text())


# ---- local --------------------------------------------------------------------------------------

_POD_ENV_KEEP = ("LANG", "LC_ALL", "TZ", "TMPDIR")


class LocalExecutor(PodExecutor):
    """Pods are directories ``<root>/<namespace>/<pod>/`` holding ``labels.json``; exec = subprocess there."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise UsageError(f"local executor root {root} is not a directory", hint="use --executor local:/path")
        self.root = root

    def pod_dir(self, pod: Pod) -> Path:
        """The directory standing in for ``pod``'s filesystem (commands run there)."""
        return self.root / pod.namespace / pod.name

    def list_pods(self, namespace: str, selector: str) -> list[Pod]:
        """See :meth:`PodExecutor.list_pods`."""
        parse_selector(selector)
        pods: list[Pod] = []
        ns_dir = self.root / namespace
        if not ns_dir.is_dir():
            return []
        for child in sorted(ns_dir.iterdir()):
            meta = child / "labels.json"
            if not meta.is_file():
                continue
            labels = json.loads(meta.read_text(encoding="utf-8"))
            if selector_matches(selector, labels):
                phase_file = child / "phase"
                phase = phase_file.read_text(encoding="utf-8").strip() if phase_file.exists() else "Running"
                pods.append(Pod(name=child.name, namespace=namespace, labels=labels, phase=phase))
        return pods

    def _env(self, pod: Pod) -> dict[str, str]:
        directory = self.pod_dir(pod)
        env = {k: os.environ[k] for k in _POD_ENV_KEEP if k in os.environ}
        env.update(
            PATH=f"{directory / 'bin'}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
            HOME=str(directory),
            POD_NAME=pod.name,
            POD_NAMESPACE=pod.namespace,
        )
        return env

    def exec(
        self,
        pod: Pod,
        container: str | None,
        argv: Sequence[str],
        *,
        stdout: Consumer | None = None,
        stdin: Iterable[bytes] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """See :meth:`PodExecutor.exec`."""
        directory = self.pod_dir(pod)
        if not directory.is_dir():
            raise UsageError(f"pod {pod.namespace}/{pod.name} not found under {self.root}")
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=directory,
                env=self._env(pod),
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except FileNotFoundError:
            return ExecResult(127, f"{argv[0]}: executable file not found in $PATH")
        err = _Tail()
        feed_errors: list[BaseException] = []
        assert proc.stdout is not None and proc.stderr is not None
        out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()

        def read_err() -> None:
            while chunk := os.read(err_fd, _READ):
                err.add(chunk)

        def feed(chunks: Iterable[bytes]) -> None:
            assert proc.stdin is not None
            try:
                for chunk in chunks:
                    proc.stdin.write(chunk)
            except (BrokenPipeError, ValueError):
                pass  # the command exited early; its exit code tells whether that was fine
            except BaseException as exc:  # the source failed (e.g. checksum): re-raised by exec()
                feed_errors.append(exc)
                proc.kill()
            finally:
                with contextlib.suppress(BrokenPipeError, ValueError):
                    proc.stdin.close()

        threads = [threading.Thread(target=read_err, daemon=True)]
        if stdin is not None:
            threads.append(threading.Thread(target=feed, args=(stdin,), daemon=True))
        timer = threading.Timer(timeout, proc.kill) if timeout else None
        for thread in threads:
            thread.start()
        if timer is not None:
            timer.start()
        try:
            while chunk := os.read(out_fd, _READ):
                if stdout is not None:
                    stdout(chunk)
        except BaseException:
            proc.kill()
            raise
        finally:
            code = proc.wait()
            if timer is not None:
                timer.cancel()
            for thread in threads:
                thread.join()
        if feed_errors:
            raise feed_errors[0]
        return ExecResult(code, err.text())


def open_executor(spec: str, kubeconfig: str | None = None, context: str | None = None) -> PodExecutor:
    """``kubernetes`` (default) or ``local:/path/to/root``."""
    if spec == "kubernetes":
        return KubernetesExecutor(kubeconfig, context)
    if spec.startswith("local:") and len(spec) > len("local:"):
        return LocalExecutor(Path(spec.removeprefix("local:")))
    raise UsageError(f"executor {spec!r} is unknown", hint="use 'kubernetes' or 'local:/path/to/root'")


__all__ = [
    "ExecResult",
    "KubernetesExecutor",
    "LocalExecutor",
    "Pod",
    "PodExecutor",
    "open_executor",
    "parse_exec_status",
    "parse_selector",
    "selector_matches",
]
