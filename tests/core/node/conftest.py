"""Fixtures for the node tests: a real package index on 127.0.0.1 for engine set-ups."""

from __future__ import annotations

import pytest

from .package_index import PackageIndex, make_wheel

# Two small packages the test locks pin; "slow" carries 4 MB so that, served at 1 MB/s, its download lasts.
PACKAGES = {"farnode-probe-a": "1.0", "farnode-probe-b": "2.0"}


@pytest.fixture
def package_index(tmp_path, monkeypatch):
    """pip in this test (and in processes it starts) installs from a local index only."""
    wheels = tmp_path / "wheels"
    for name, version in PACKAGES.items():
        make_wheel(wheels, name, version)
    make_wheel(wheels, "farnode-probe-slow", "3.0", payload_bytes=4_000_000)
    index = PackageIndex(wheels)
    for key, value in index.pip_env().items():
        monkeypatch.setenv(key, value)
    yield index
    index.close()


@pytest.fixture
def build_tools(package_index):
    """The local index also serves setuptools and wheel, which pip needs to build the engine's source archive
    (scripts/test.sh downloads them next to the shared engine environment before the tests run)."""
    import os
    import shutil
    from pathlib import Path

    from tests.support import REPO

    folder = Path(os.environ.get("FARNODE_ENGINE_ROOT") or REPO / ".engine") / "build-tools"
    wheels = sorted(folder.glob("setuptools-*.whl")) + sorted(folder.glob("wheel-*.whl"))
    if len(wheels) < 2:
        pytest.fail(f"No setuptools and wheel wheels in {folder}: run scripts/test.sh (it downloads them), or "
                    f"`pip download --no-deps -d {folder} setuptools wheel`.")
    for w in wheels:
        shutil.copy(w, package_index.folder / w.name)
    return package_index
