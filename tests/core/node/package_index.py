"""A real package index on 127.0.0.1 (PEP 503 "simple" pages and wheel files) for pip in tests.

The internet is what tests fake: pip installs from here, never from PyPI. The wheels are made here (a package
with one module and, optionally, a block of incompressible bytes so that a download takes a while), and the
server can hand out files slowly (``rate`` bytes per second) so that a test can interrupt pip mid-download.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import re
import threading
import time
import urllib.parse
import zipfile
from pathlib import Path


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def make_wheel(folder: Path, name: str, version: str, *, payload_bytes: int = 0, requires: tuple[str, ...] = ()
               ) -> Path:
    """A pure-Python wheel ``name==version`` whose module ``name`` (underscored) has ``VERSION``; ``requires``:
    its dependencies (``Requires-Dist``), as torch's CUDA build names its nvidia-* wheels."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}"
    files: dict[str, bytes] = {f"{module}/__init__.py": f"VERSION = {version!r}\n".encode()}
    if payload_bytes:
        files[f"{module}/payload.bin"] = os.urandom(payload_bytes)
    files[f"{dist}.dist-info/METADATA"] = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                           + "".join(f"Requires-Dist: {r}\n" for r in requires)).encode()
    files[f"{dist}.dist-info/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: farnode-tests\nRoot-Is-Purelib: true\n"
                                        b"Tag: py3-none-any\n")
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name_in_zip, data in files.items():
            z.writestr(name_in_zip, data)
    return path


class PackageIndex:
    """Serves the wheels in ``folder`` at ``url`` (``.../simple/``) until :meth:`close`."""

    def __init__(self, folder: Path, *, rate: float = 0.0):
        self.folder = Path(folder)
        self.rate = rate  # bytes per second for files (0: as fast as it goes)
        self.requests: list[str] = []
        self.closing = False
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802 - uv asks a file's size first (range requests), as indexes answer
                self._head = True
                try:
                    self.do_GET()
                finally:
                    self._head = False

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                index.requests.append(self.path)
                parts = [urllib.parse.unquote(p) for p in self.path.split("?")[0].split("/") if p]  # torch-2.13.0%2Bcpu
                if parts == ["simple"]:
                    names = sorted({_norm(w.name.split("-")[0]) for w in index.folder.glob("*.whl")})
                    self._send(200, "".join(f'<a href="/simple/{n}/">{n}</a>\n' for n in names).encode())
                elif len(parts) == 2 and parts[0] == "simple":
                    links = []
                    for w in sorted(index.folder.glob("*.whl")):
                        if _norm(w.name.split("-")[0]) == _norm(parts[1]):
                            digest = hashlib.sha256(w.read_bytes()).hexdigest()
                            links.append(f'<a href="/files/{urllib.parse.quote(w.name)}#sha256={digest}">{w.name}</a>\n')
                    if links:
                        self._send(200, ("<html><body>\n" + "".join(links) + "</body></html>\n").encode())
                    else:
                        self._send(404, b"not found\n")
                elif len(parts) == 2 and parts[0] == "files" and (index.folder / parts[1]).is_file():
                    self._send(200, (index.folder / parts[1]).read_bytes(), "application/octet-stream",
                               slow=True)
                else:
                    self._send(404, b"not found\n")

            def _send(self, code: int, body: bytes, ctype: str = "text/html", slow: bool = False) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if getattr(self, "_head", False):
                    return
                if not (slow and index.rate):
                    self.wfile.write(body)
                    return
                step = max(int(index.rate / 20), 1)
                try:
                    for i in range(0, len(body), step):
                        if index.closing:
                            break
                        self.wfile.write(body[i:i + step])
                        time.sleep(step / index.rate)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # pip was stopped mid-download

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple/"
        self._thread = threading.Thread(target=self.server.serve_forever, name="package-index", daemon=True)
        self._thread.start()

    def pip_env(self) -> dict[str, str]:
        """Environment variables that make pip use this index and nothing else (no config files, no cache)."""
        return {"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": self.url, "PIP_EXTRA_INDEX_URL": "",
                "PIP_FIND_LINKS": "", "PIP_NO_CACHE_DIR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "PIP_CONSTRAINT": "", "PIP_RETRIES": "0", "FARNODE_TORCH_INDEX": ""}

    def close(self) -> None:
        self.closing = True
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
