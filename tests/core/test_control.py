"""The control socket of a run folder: owner-only, one JSON request and answer per connection; the TCP
fallback (no Unix socket, or a path too long for one) refuses a request without its token."""

from __future__ import annotations

import json
import socket
import stat
import time

import pytest

from farnode_desktop.core import control
from farnode_desktop.core.control import ControlServer, NotRunning, request


@pytest.fixture
def served(tmp_path):
    servers = []

    def serve(run_dir):
        s = ControlServer(run_dir, {"status": lambda req: {"state": "online", "asked": req["cmd"]},
                                    "boom": lambda req: 1 / 0})
        s.start()
        servers.append(s)
        return s

    yield serve
    for s in servers:
        s.close()


def test_unix_socket_owner_only_and_answers(tmp_path, served):
    run = tmp_path / "data" / "run"
    with pytest.raises(NotRunning):
        request(run, "status")
    s = served(run)
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    assert stat.S_ISSOCK(s.path.stat().st_mode) and stat.S_IMODE(s.path.stat().st_mode) == 0o600
    assert request(run, "status") == {"state": "online", "asked": "status"}
    assert "unknown command 'nope'" in request(run, "nope")["error"]
    assert "ZeroDivisionError" not in request(run, "boom")["error"]  # a handler bug answers, the server lives
    assert request(run, "status")["state"] == "online"
    s.close()
    assert not s.path.exists()
    with pytest.raises(NotRunning):
        request(run, "status")


def test_a_socket_left_by_a_killed_app_is_replaced(tmp_path, served):
    run = tmp_path / "run"
    run.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(run / control.SOCKET_NAME))  # bound, never listening, like a killed app's
    stale.close()
    with pytest.raises(NotRunning):
        request(run, "status")
    served(run)
    assert request(run, "status")["state"] == "online"


def test_tcp_fallback_with_a_token(tmp_path, served, monkeypatch):
    run = tmp_path / ("x" * 120) / "run"  # too long for a Unix socket's path
    s = served(run)
    assert not s.path.exists()
    info = json.loads(s.tcp_info.read_text())
    assert stat.S_IMODE(s.tcp_info.stat().st_mode) == 0o600
    assert request(run, "status")["state"] == "online"
    with socket.create_connection(("127.0.0.1", info["port"]), timeout=5) as c:  # without the token
        c.sendall(b'{"cmd": "status"}\n')
        assert json.loads(c.makefile().readline()) == {"error": "wrong token"}


def _idle_clients(s: ControlServer, run, n: int, *, partial: bool = False) -> list[socket.socket]:
    """``n`` connections that connect (half of a request line at most) and then wait, as a stuck client does."""
    clients = []
    for _ in range(n):
        if s.path.exists():
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(str(s.path))
        else:
            c = socket.create_connection(("127.0.0.1", json.loads(s.tcp_info.read_text())["port"]), timeout=5)
        if partial:
            c.sendall(b'{"cmd": "sta')
        clients.append(c)
    return clients


@pytest.mark.parametrize("mode", ["unix", "tcp"])
def test_idle_connections_do_not_hold_up_status(tmp_path, served, mode):
    run = tmp_path / "run" if mode == "unix" else tmp_path / ("x" * 120) / "run"
    s = served(run)
    assert s.path.exists() == (mode == "unix")
    clients = _idle_clients(s, run, 5) + _idle_clients(s, run, 5, partial=True)
    try:
        for _ in range(3):
            started = time.monotonic()
            assert request(run, "status", timeout_s=2)["state"] == "online"
            assert time.monotonic() - started < 2
        # far more than it keeps waiting: the oldest make room, status still answers at once
        clients += _idle_clients(s, run, control.MAX_CONNECTIONS + 8)
        started = time.monotonic()
        assert request(run, "status", timeout_s=2)["state"] == "online"
        assert time.monotonic() - started < 2
        # every idle connection is closed by the server within its deadline (a read gives end of file)
        for c in clients:
            c.settimeout(control.REQUEST_DEADLINE_S + 3)
            assert c.recv(100) == b""
    finally:
        for c in clients:
            c.close()
