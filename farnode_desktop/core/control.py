"""The running app's local control socket, so that ``farnode-desktop status`` in any shell can ask the app
core of a data folder how its node is doing, whichever face (window or headless) runs it.

A Unix socket ``<run folder>/control.sock``, reachable by its owner only (the run folder is made 0700 and
the socket 0600). Where Unix sockets are not available, or the folder's path is too long for one, a TCP
socket on 127.0.0.1 whose port and random token are in ``<run folder>/control.json`` (0600); a request
without the token is refused.

One request per connection: a JSON object on one line (``{"cmd": "status"}``), answered with one JSON object
on one line. Handlers run on the server's thread and must be quick.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import socket
import threading
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

Handler = Callable[[dict], dict]


class NotRunning(FarNodeError):
    title = "No node running"


def _unix_ok(path: Path) -> bool:
    return hasattr(socket, "AF_UNIX") and len(os.fsencode(str(path))) <= _MAX_UNIX_PATH


class ControlServer:
    """Serves ``handlers[cmd](request)`` on the run folder's control socket from one daemon thread."""

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
        sock.listen(8)
        sock.settimeout(0.5)
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
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    conn.settimeout(5)
                    self._answer(conn)
                except OSError as exc:
                    log.debug("control connection: %s", exc)

    def _answer(self, conn: socket.socket) -> None:
        data = b""
        while b"\n" not in data and len(data) < _MAX_REQUEST:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
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
