"""Fixtures for the core tests: a real package index on 127.0.0.1 for engine set-ups."""

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
