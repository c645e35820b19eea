"""anvil's installer against a real local HTTP server serving the real npm tarball."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from farnode_desktop.core.localchain.install import (
    ANVIL_VERSION,
    AnvilInstallError,
    install_anvil,
    installed_binary,
    tarball_url,
)
from tests.support.http_files import serve_bytes

REPO = Path(__file__).resolve().parents[3]


def _tarball() -> bytes:
    path = Path(os.environ.get("FARNODE_ANVIL_SOURCE") or REPO / "tools/foundry-rs-anvil-linux-amd64-1.7.1.tgz")
    if not path.is_file():
        pytest.skip(f"the anvil tarball {path} is missing: run scripts/system-deps.sh (npm pack)")
    return path.read_bytes()


KEY = "linux-amd64"
PATH = tarball_url(KEY, "")  # "/@foundry-rs/anvil-linux-amd64/-/anvil-linux-amd64-1.7.1.tgz"


def test_download_verifies_and_installs_a_binary_that_runs(tmp_path):
    data = _tarball()
    seen = []
    with serve_bytes(data, PATH) as served:
        got = install_anvil(tmp_path, source="", registry=served.url, key=KEY,
                            progress=lambda n, total: seen.append((n, total)))
    assert got.path == installed_binary(tmp_path, KEY) and got.path.is_file()
    assert seen[-1] == (len(data), len(data))
    out = subprocess.run([str(got.path), "--version"], capture_output=True, text=True, timeout=30)
    assert ANVIL_VERSION in out.stdout
    assert [p.name for p in got.path.parent.iterdir()] == ["anvil"]  # only the binary, no temp file


def test_tampered_tarball_is_refused_and_nothing_installed(tmp_path):
    data = bytearray(_tarball())
    data[len(data) // 2] ^= 0xFF
    with serve_bytes(bytes(data), PATH) as served, pytest.raises(AnvilInstallError, match="checksum"):
        install_anvil(tmp_path, source="", registry=served.url, key=KEY)
    assert not installed_binary(tmp_path, KEY).exists()
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_missing_tarball_says_so(tmp_path):
    with serve_bytes(b"", "/nothing-here") as served, pytest.raises(AnvilInstallError, match="HTTP 404"):
        install_anvil(tmp_path, source="", registry=served.url, key=KEY)
    assert not installed_binary(tmp_path, KEY).exists()


def test_offline_says_what_to_do(tmp_path):
    from tests.support.ports import free_port
    with pytest.raises(AnvilInstallError, match="FARNODE_ANVIL_SOURCE"):
        install_anvil(tmp_path, source="", registry=f"http://127.0.0.1:{free_port()}", key=KEY, timeout=5)


def test_local_source_installs(tmp_path):
    data = _tarball()
    src = tmp_path / "anvil.tgz"
    src.write_bytes(data)
    got = install_anvil(tmp_path / "root", source=str(src), key=KEY)
    assert got.path.is_file() and os.access(got.path, os.X_OK)
