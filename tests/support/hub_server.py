"""A real HTTP server on 127.0.0.1 that answers like the Hugging Face hub (the internet is what tests fake).

It serves ``/{repo}/resolve/{revision}/{file}`` (GET and HEAD, with the hub's ``X-Repo-Commit``, ``ETag`` and
``X-Error-Code`` headers) and ``/api/whoami-v2``, with the hub's status codes:

- unknown repository: 401 ``RepoNotFound`` without a valid token, 404 ``RepoNotFound`` with one;
- gated repository: 401 ``GatedRepo`` without a token, 403 ``GatedRepo`` when the token's account has not
  accepted the licence;
- a token the hub does not know: 401 (``Invalid credentials in Authorization header``);
- a file the repository lacks: 404 ``EntryNotFound``.

Every request is recorded (method, path, Authorization header) so tests can see what was sent. ``redirects``
maps a path to a ``Location`` the server answers with a 302 (another host's URL, or a path on this one), as the
hub does for renamed repositories and files kept on its CDN. ``host`` is the loopback address it listens on.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class FakeRepo:
    files: dict[str, bytes]
    gated: bool = False
    accepted: set[str] = field(default_factory=set)  # account names that accepted the licence
    commit: str = ""

    def __post_init__(self) -> None:
        if not self.commit:
            digest = hashlib.sha1(b"".join(sorted(self.files.values()))).hexdigest()
            self.commit = digest

    @classmethod
    def from_folder(cls, folder: Path, **kw) -> FakeRepo:
        return cls({p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}, **kw)


@dataclass
class Seen:
    method: str
    path: str
    authorization: str


class FakeHub:
    def __init__(self, repos: dict[str, FakeRepo] | None = None, tokens: dict[str, str] | None = None, *,
                 host: str = "127.0.0.1"):
        self.repos = dict(repos or {})
        self.redirects: dict[str, str] = {}
        self.tokens = dict(tokens or {})  # token -> account name
        self.requests: list[Seen] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                hub._answer(self, head=True)

            def do_GET(self) -> None:  # noqa: N802
                hub._answer(self, head=False)

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="fake-hub")

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def seen(self, path_part: str = "") -> list[Seen]:
        return [r for r in list(self.requests) if path_part in r.path]

    # ------------------------------------------------------------------------------------------------
    def _answer(self, h: http.server.BaseHTTPRequestHandler, *, head: bool) -> None:
        auth = h.headers.get("Authorization", "")
        self.requests.append(Seen(h.command, h.path, auth))
        token = auth[7:] if auth.startswith("Bearer ") else ""
        account = self.tokens.get(token) if token else None
        path = h.path.split("?", 1)[0]
        if path in self.redirects:
            return self._send(h, 302, b"", head=head, headers={"Location": self.redirects[path]})
        if token and account is None:
            return self._send(h, 401, b'{"error":"Invalid credentials in Authorization header"}', head=head)
        if path == "/api/whoami-v2":
            if account is None:
                return self._send(h, 401, b'{"error":"Invalid credentials in Authorization header"}', head=head)
            return self._send(h, 200, json.dumps({"name": account, "type": "user"}).encode(), head=head)
        parts = path.strip("/").split("/")
        if "resolve" not in parts:
            return self._send(h, 404, b'{"error":"Not found"}', head=head)
        i = parts.index("resolve")
        repo_id, revision, filename = "/".join(parts[:i]), parts[i + 1], "/".join(parts[i + 2:])
        repo = self.repos.get(repo_id)
        if repo is None:
            code = 404 if account else 401
            return self._send(h, code, b'{"error":"Repository Not Found"}', head=head,
                              headers={"X-Error-Code": "RepoNotFound",
                                       "X-Error-Message": "Repository not found"})
        if repo.gated and account not in repo.accepted:
            code = 403 if account else 401
            return self._send(h, code, b'{"error":"Access to this model is restricted"}', head=head,
                              headers={"X-Error-Code": "GatedRepo",
                                       "X-Error-Message": "Access to model is restricted"})
        if revision not in ("main", repo.commit):
            return self._send(h, 404, b'{"error":"Revision Not Found"}', head=head,
                              headers={"X-Error-Code": "RevisionNotFound"})
        data = repo.files.get(filename)
        if data is None:
            return self._send(h, 404, b'{"error":"Entry not found"}', head=head,
                              headers={"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.commit})
        etag = hashlib.sha256(data).hexdigest()
        return self._send(h, 200, data, head=head, content_type="application/octet-stream",
                          headers={"X-Repo-Commit": repo.commit, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"})

    @staticmethod
    def _send(h, code: int, body: bytes, *, head: bool, headers: dict | None = None,
              content_type: str = "application/json") -> None:
        h.send_response(code)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if not head:
            h.wfile.write(body)
