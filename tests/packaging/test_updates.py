"""Update check against a real HTTP server on the loopback interface."""

from __future__ import annotations

import http.server
import json
import logging
import socket
import threading

import pytest

from farnode_desktop.core.updates import UpdateInfo, check_for_update, is_newer, parse_document, parse_version


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, bytes]] = {}
    seen: list[dict] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        type(self).seen.append({"path": self.path, "ua": self.headers.get("User-Agent", "")})
        code, body = self.routes.get(self.path, (404, b"not found"))
        if code == 0:  # drop the connection without an answer
            self.close_connection = True
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.routes, _Handler.seen = {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler.routes
    httpd.shutdown()
    httpd.server_close()


def doc(**kw) -> bytes:
    return json.dumps({"version": "0.2.0", "url": "https://farnode.example/download", "notes": "Faster.", **kw}).encode()


def test_newer_version_is_reported(server):
    base, routes = server
    routes["/latest.json"] = (200, doc())
    info = check_for_update(base + "/latest.json", current="0.1.0")
    assert info == UpdateInfo("0.2.0", "https://farnode.example/download", "Faster.")
    assert _Handler.seen[0]["ua"] == "farnode-desktop/0.1.0"


@pytest.mark.parametrize("remote,current", [("0.1.0", "0.1.0"), ("0.1", "0.1.0"), ("0.0.9", "0.1.0"),
                                            ("1.0.0rc1", "1.0.0")])
def test_same_or_older_is_not_an_update(server, remote, current):
    base, routes = server
    routes["/v"] = (200, doc(version=remote))
    assert check_for_update(base + "/v", current=current) is None


@pytest.mark.parametrize("status,body,why", [
    (200, b"{not json", "not valid"), (200, b"[1, 2]", "not valid"), (200, doc(version=3), "not valid"),
    (200, doc(version="latest"), "not valid"), (200, doc(url="file:///etc/passwd"), "not valid"),
    (200, doc(url=None), "not valid"), (200, b"\xff\xfe\x00", "not valid"), (500, b"oops", "not reachable"),
    (404, b"", "not reachable"), (0, b"", "not reachable"), (200, b" " * 70000 + doc(), "larger than"),
])
def test_errors_are_quiet_and_logged(server, caplog, status, body, why):
    base, routes = server
    routes["/u"] = (status, body)
    with caplog.at_level(logging.WARNING, logger="farnode_desktop.core.updates"):
        assert check_for_update(base + "/u", current="0.1.0", timeout=5) is None
    assert why in caplog.text


def test_unreachable_server_and_off_switch(caplog):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with caplog.at_level(logging.WARNING, logger="farnode_desktop.core.updates"):
        assert check_for_update(f"http://127.0.0.1:{port}/latest.json", timeout=2) is None
        assert "not reachable" in caplog.text
        assert check_for_update("") is None
        assert check_for_update("ftp://x/latest.json") is None
        assert "not an http(s) address" in caplog.text


def test_version_ordering():
    assert is_newer("0.10.0", "0.9.9") and is_newer("1.0.0", "1.0.0rc2") and is_newer("1.0.0rc2", "1.0.0b5")
    assert is_newer("v2", "1.99") and not is_newer("1.0", "1.0.0") and is_newer("1.0.1", "1.0")
    assert is_newer("2.0.0-beta.2", "2.0.0-beta.1") and not is_newer("2.0.0.dev1", "2.0.0a1")
    assert parse_version("1.2.0") == parse_version("1.2")
    for bad in ("", "latest", "1..2", "1.2.x"):
        with pytest.raises(ValueError):
            parse_version(bad)
    with pytest.raises(ValueError):
        parse_document(b'{"version": "1.0"}')


def test_update_url_setting_is_validated(tmp_path):
    from farnode_desktop.core.settings import Settings

    s = Settings()
    assert s.updates.update_url == "" and not s.validate()
    s.updates.update_url = "https://farnode.example/latest.json"
    assert not s.validate()
    s.updates.update_url = "javascript:alert(1)"
    assert any("updates.update_url" in p for p in s.validate())
