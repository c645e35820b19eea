"""Install anvil (the local Ethereum JSON-RPC node) from its npm-registry tarball, checksum checked.

The tarball of ``@foundry-rs/anvil-<platform>`` holds ``package/bin/anvil`` (``anvil.exe`` on Windows); only
that file is extracted. The registry's sha512 ``dist.integrity`` of each platform's tarball is pinned here,
so a tampered or substituted tarball is refused and nothing is installed. ``FARNODE_ANVIL_SOURCE`` names a
local .tgz to install from instead of the registry (offline machines, CI).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import platform
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from farnode_desktop.core.errors import FarNodeError

ANVIL_VERSION = "1.7.1"
REGISTRY = "https://registry.npmjs.org"
MAX_TARBALL_BYTES = 64 * 1024 * 1024  # the linux-amd64 tarball is about 19 MB
SOURCE_ENV = "FARNODE_ANVIL_SOURCE"

# sha512 dist.integrity from https://registry.npmjs.org/@foundry-rs/anvil-<platform>/1.7.1
INTEGRITY = {
    "linux-amd64": "sha512-+XmShybEaxfCrr0OUUZwYEy2OnYZt5pHH9TzBtLv3+VrK0O/ANuNSVEahqNhKHlgX7GRJ59383ofNhxkRWIYTg==",
    "darwin-arm64": "sha512-JNeu3+A3f/npXLn8SR8EahVcqE7BpO9VQZMcPvSIy27/RNc1GsoEBvSLR99aSvt8sGKWAgNg/EzrtjAPq6mxcA==",
    "darwin-amd64": "sha512-OgwzwY+FsGrsPyDv4mmbhOwARO8s37YHrm2qaNzgSH4VlKnXgJCrnoT7bpgOhLyBPtxXjBT8L2E3b79deesXRg==",
    "win32-amd64": "sha512-IeuBcmQ+AQKUxXA77czSVIfpST+KLBdXaL71JlK/h6e0DoP2CYnmVZn8WE/fuQfjAU2zaWw7PDXmq1kedbIUGA==",
}


class AnvilInstallError(FarNodeError):
    title = "Local chain could not be installed"


def platform_key() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "arm64": "arm64", "aarch64": "arm64"}.get(machine, machine)
    system = {"linux": "linux", "darwin": "darwin", "win32": "win32"}.get(sys.platform, sys.platform)
    return f"{system}-{arch}"


def binary_name(key: str) -> str:
    return "anvil.exe" if key.startswith("win32") else "anvil"


def tarball_url(key: str, registry: str = REGISTRY) -> str:
    return f"{registry}/@foundry-rs/anvil-{key}/-/anvil-{key}-{ANVIL_VERSION}.tgz"


@dataclass(frozen=True)
class Installed:
    path: Path
    version: str


def installed_binary(root: Path, key: str | None = None) -> Path:
    key = key or platform_key()
    return Path(root) / "anvil" / ANVIL_VERSION / binary_name(key)


def _check_integrity(data: bytes, key: str) -> None:
    expected = INTEGRITY.get(key)
    if expected is None:
        raise AnvilInstallError(f"No anvil build is known for this platform ({key}).")
    got = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")
    if got != expected:
        raise AnvilInstallError(
            "The downloaded anvil package does not match its published checksum, so it was not installed. "
            "Try again later or from another network.", detail=f"expected {expected}, got {got}")


def _download(url: str, progress: Callable[[int, int | None], None] | None, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - https registry or test server
            total = resp.headers.get("Content-Length")
            total_n = int(total) if total and total.isdigit() else None
            if total_n is not None and total_n > MAX_TARBALL_BYTES:
                raise AnvilInstallError(f"The anvil package is larger than expected ({total_n} bytes); refused.")
            buf = io.BytesIO()
            while True:
                chunk = resp.read(256 * 1024)
                if not chunk:
                    break
                buf.write(chunk)
                if buf.tell() > MAX_TARBALL_BYTES:
                    raise AnvilInstallError("The anvil package is larger than expected; refused.")
                if progress is not None:
                    progress(buf.tell(), total_n)
            return buf.getvalue()
    except urllib.error.HTTPError as e:
        raise AnvilInstallError(f"The anvil package could not be downloaded (HTTP {e.code} from {url}).") from e
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise AnvilInstallError(
            "The anvil package could not be downloaded: no connection to the package registry. "
            f"Check the internet connection, or set {SOURCE_ENV} to a downloaded .tgz.",
            detail=str(e)) from e


def _extract_binary(data: bytes, key: str) -> bytes:
    member_name = f"package/bin/{binary_name(key)}"
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            member = tar.getmember(member_name)
            f = tar.extractfile(member)
            if f is None:
                raise KeyError(member_name)
            return f.read()
    except (tarfile.TarError, KeyError, EOFError) as e:
        raise AnvilInstallError(f"The anvil package has no {member_name}.") from e


def install_anvil(root: Path, *, source: str | None = None, registry: str = REGISTRY,
                  progress: Callable[[int, int | None], None] | None = None,
                  timeout: float = 30.0, key: str | None = None) -> Installed:
    """Install anvil under ``root/anvil/<version>/`` unless it is there; return its path.

    ``source`` (default: $FARNODE_ANVIL_SOURCE) is a local .tgz; otherwise the tarball is downloaded from
    ``registry``. The tarball's sha512 must equal the pinned registry integrity; the binary is written to a
    temporary file in the target folder and renamed into place, so a failure leaves nothing installed.
    """
    key = key or platform_key()
    target = installed_binary(root, key)
    if target.is_file():
        return Installed(target, ANVIL_VERSION)
    source = source if source is not None else os.environ.get(SOURCE_ENV) or None
    if source:
        try:
            data = Path(source).read_bytes()
        except OSError as e:
            raise AnvilInstallError(f"The anvil package {source} ({SOURCE_ENV}) could not be read: {e.strerror}.") from e
    else:
        data = _download(tarball_url(key, registry), progress, timeout)
    _check_integrity(data, key)
    binary = _extract_binary(data, key)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".anvil.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(binary)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o755)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise AnvilInstallError(
            f"anvil could not be written to {target.parent}: {e.strerror}. Free some disk space and try again.",
            detail=str(e)) from e
    return Installed(target, ANVIL_VERSION)
