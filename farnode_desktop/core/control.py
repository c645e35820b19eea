"""The running app's local control socket, so that ``farnode-desktop status`` in any shell can ask the app
core of a data folder how its node is doing, whichever face (window or headless) runs it.

A Unix socket ``<run folder>/control.sock``, reachable by its owner only (the run folder is made 0700 and
the socket 0600). Where Unix sockets are not available, or the folder's path is too long for one, a TCP
socket on 127.0.0.1 whose port and random token are in ``<run folder>/control.json`` (0600); a request
without the token is refused.

One request per connection: a JSON object on one line (``{"cmd": "status"}``), answered with one JSON object
on one line. One thread serves every connection at once through a selector: a client that connects and sends
nothing (or half a line) holds no one up; it is closed after ``REQUEST_DEADLINE_S``, and beyond
``MAX_CONNECTIONS`` waiting connections the oldest is closed first. Handlers run on the server's thread and
must be quick.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import selectors
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from farnode_desktop.core.atomic import atomic_write_json
from farnode_desktop.core.errors import FarNodeError

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
TCP_INFO_NAME = "control.json"
_MAX_UNIX_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS
_MAX_REQUEST = 64 * 1024
REQUEST_DEADLINE_S = 2.0  # a connection has this long to send its request line
MAX_CONNECTIONS = 32  # connections waiting for their request at once (the oldest is dropped beyond)
_SEND_TIMEOUT_S = 2.0  # to hand over an answer (a few KB: the socket's buffer takes it at once)

Handler = Callable[[dict], dict]


class NotRunning(FarNodeError):
    title = "No node running"


def _unix_ok(path: Path) -> bool:
    return hasattr(socket, "AF_UNIX") and len(os.fsencode(str(path))) <= _MAX_UNIX_PATH


class _Pending:
    """A connection that has not sent its whole request line yet."""

    __slots__ = ("conn", "data", "deadline")

    def __init__(self, conn: socket.socket, deadline: float) -> None:
        self.conn, self.data, self.deadline = conn, b"", deadline


class ControlServer:
    """Serves ``handlers[cmd](request)`` on the run folder's control socket from one daemon thread, every
    connection at once (a selector), each with a deadline for its request."""

    def __init__(self, run_dir: Path, handlers: dict[str, Handler]) -> None:
        self.run_dir = Path(run_dir)
        self.handlers = dict(handlers)
        self.path = self.run_dir / SOCKET_NAME
        self.tcp_info = self.run_dir / TCP_INFO_NAME
        self._sock: socket.socket | None = None
        self._token = ""
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        """Listen (the caller holds the data folder's instance lock: a socket left by a killed app is
        replaced). Returns at once."""
        if self._sock is not None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            os.chmod(self.run_dir, 0o700)
        except OSError:
            pass
        for stale in (self.path, self.tcp_info):
            try:
                stale.unlink()
            except FileNotFoundError:
                pass
        if _unix_ok(self.path):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(0o177)  # created 0600: never a moment readable by others
            try:
                sock.bind(str(self.path))
            finally:
                os.umask(old)
            os.chmod(self.path, 0o600)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            self._token = secrets.token_hex(16)
            atomic_write_json(self.tcp_info, {"port": sock.getsockname()[1], "token": self._token})
        sock.listen(64)
        sock.setblocking(False)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="farnode-control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            for path in (self.path, self.tcp_info):
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass

    def _serve(self) -> None:
        pending: dict[socket.socket, _Pending] = {}
        with selectors.DefaultSelector() as sel:
            sel.register(self._sock, selectors.EVENT_READ)
            try:
                while not self._stop.is_set():
                    now = time.monotonic()
                    timeout = min([p.deadline for p in pending.values()], default=now + 0.5) - now
                    for key, _ in sel.select(max(0.0, min(timeout, 0.5))):
                        if key.fileobj is self._sock:
                            self._accept(sel, pending)
                        else:
                            self._read(sel, pending, pending[key.fileobj])
                    now = time.monotonic()
                    for p in [p for p in pending.values() if p.deadline <= now]:
                        self._drop(sel, pending, p)  # too slow to ask: it holds no one else up
            finally:
                for p in list(pending.values()):
                    self._drop(sel, pending, p)

    def _accept(self, sel: selectors.BaseSelector, pending: dict) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # closed, or out of file descriptors: the next round tries again
                log.debug("control accept: %s", exc)
                return
            if len(pending) >= MAX_CONNECTIONS:  # the oldest waiting one makes room
                self._drop(sel, pending, min(pending.values(), key=lambda p: p.deadline))
            conn.setblocking(False)
            p = _Pending(conn, time.monotonic() + REQUEST_DEADLINE_S)
            pending[conn] = p
            sel.register(conn, selectors.EVENT_READ)

    def _read(self, sel: selectors.BaseSelector, pending: dict, p: _Pending) -> None:
        try:
            chunk = p.conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.debug("control connection: %s", exc)
            chunk = b""
        p.data += chunk
        if chunk and b"\n" not in p.data and len(p.data) < _MAX_REQUEST:
            return  # more to come
        sel.unregister(p.conn)
        del pending[p.conn]
        with p.conn as conn:
            try:
                conn.settimeout(_SEND_TIMEOUT_S)
                self._answer(conn, p.data)
            except OSError as exc:
                log.debug("control connection: %s", exc)

    @staticmethod
    def _drop(sel: selectors.BaseSelector, pending: dict, p: _Pending) -> None:
        sel.unregister(p.conn)
        del pending[p.conn]
        p.conn.close()

    def _answer(self, conn: socket.socket, data: bytes) -> None:
        try:
            req = json.loads(data.split(b"\n", 1)[0])
            if not isinstance(req, dict):
                raise ValueError("not an object")
        except ValueError:
            conn.sendall(b'{"error": "a request is one JSON object on one line"}\n')
            return
        if self._token and not hmac.compare_digest(str(req.get("token", "")), self._token):
            conn.sendall(b'{"error": "wrong token"}\n')
            return
        handler = self.handlers.get(str(req.get("cmd")))
        if handler is None:
            answer: dict = {"error": f"unknown command {req.get('cmd')!r}; known: {', '.join(self.handlers)}"}
        else:
            try:
                answer = handler(req)
            except Exception as exc:  # a bug must not end the server
                log.exception("control command %s failed", req.get("cmd"))
                answer = {"error": getattr(exc, "message", str(exc))}
        conn.sendall(json.dumps(answer, default=str).encode() + b"\n")


def request(run_dir: Path, cmd: str, timeout_s: float = 10.0, **args: Any) -> dict:
    """Ask the app of this run folder. Raises :class:`NotRunning` when none answers."""
    run_dir = Path(run_dir)
    path, info_file = run_dir / SOCKET_NAME, run_dir / TCP_INFO_NAME
    body = {"cmd": cmd, **args}
    try:
        if path.exists() and hasattr(socket, "AF_UNIX"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout_s)
                sock.connect(str(path))
            except OSError:
                sock.close()  # a socket file nobody listens on (a killed app's)
                raise
        elif info_file.exists():
            info = json.loads(info_file.read_text())
            body["token"] = info["token"]
            sock = socket.create_connection(("127.0.0.1", int(info["port"])), timeout=timeout_s)
        else:
            raise FileNotFoundError(path)
    except (OSError, ValueError, KeyError) as exc:
        raise NotRunning(f"No FarNode node is running on this data folder ({run_dir.parent}). Start one with "
                         "`farnode-desktop node` (or open the app).", detail=repr(exc)) from None
    with sock:
        try:
            sock.sendall(json.dumps(body).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            answer = json.loads(data)
        except (OSError, ValueError) as exc:
            raise NotRunning(f"The FarNode app of this data folder ({run_dir.parent}) did not answer ({exc}). "
                             "It may be starting or stopping; try again.") from None
    if not isinstance(answer, dict):
        raise NotRunning("The FarNode app of this data folder gave an answer that is not an object.")
    return answer
