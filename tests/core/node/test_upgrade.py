"""Upgrade in place: a data folder set up by the previous release (its engine: lock version 1, petals 2.2 with
transformers 4.34) gets FarMesh set up beside it; the old engine goes only once the new one is verified.

One data folder, as a user's would go through it:
1. The upgrade was cut short (the new environment holds every package but the engine itself) and the next
   start cannot finish it (the engine's archive is not there: an offline machine). The previous engine keeps
   serving, on the previous demo model, with real checked client traffic.
2. The next start can finish it: the engine goes in from its archive, the whole environment is verified
   (engine, version, source commit), the old environment is removed, and the node is online on FarMesh with
   the same identity. Settings, identity, metrics and the wallet's settings are untouched throughout.

The previous engine is a real one, built by tests/engine/previous_engine.py (scripts/test.sh runs it) from the
previous release's lock; the new environment's packages are hard links into the suite's shared environment
(installing them again would fetch them from the package index, and the tests do not leave this computer).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.engine_lock import LOCK_VERSION, SOURCE_ENV
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.node.controller import NodeController
from farnode_desktop.core.node.engine_venv import EngineEnv, env_root
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.settings import Settings, SettingsStore
from tests.support.ports import free_port
from tests.support.wait import wait_until

from .package_index import PackageIndex

pytestmark = pytest.mark.engine

WALLET = "0x00000000000000000000000000000000000a11ce"


@pytest.fixture(scope="session")
def previous_engine(engine_root) -> Path:
    root = engine_root / "cpu-v1"
    marker = root / "ready.json"
    if not marker.is_file() or json.loads(marker.read_text())["probe"]["engine"] != "petals":
        pytest.fail(f"No previous engine (lock version 1) in {root}: run scripts/test.sh, or "
                    f"`python tests/engine/previous_engine.py {engine_root}`.")
    return root


def _link_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, symlinks=True, copy_function=os.link)


def _node(paths: AppPaths) -> NodeController:
    return NodeController(paths, EventBus())


def _serve(node: NodeController, requests: int = 3):
    node.start()
    st = node.supervisor.wait_for({C.ONLINE, C.FAILED, C.HELD}, 240)
    assert st.state == C.ONLINE, st
    assert node.traffic.wait_for(lambda s: s.requests >= requests, 180), node.traffic.stats
    traffic = node.traffic.stats
    assert traffic.mismatches == 0 and traffic.errors == 0 and traffic.ok >= requests, traffic
    return node.stats()


def test_upgrade_in_place_keeps_the_previous_engine_until_the_new_one_is_verified(
        tmp_path, monkeypatch, engine_root, previous_engine, engine_archive):
    shared_v2 = env_root(engine_root, "cpu")
    tools = sorted((engine_root / "build-tools").glob("*.whl"))
    assert len(tools) >= 2, "run scripts/test.sh (it downloads the engine's build tools)"
    home = tmp_path / "home"
    monkeypatch.setenv("FARNODE_HOME", str(home))
    monkeypatch.delenv("FARNODE_ENGINE_ROOT")  # the user's own data folder holds its engines
    paths = AppPaths.default().ensure()
    assert paths.engine_root == paths.data_dir / "engine"

    # The data folder as the previous release left it.
    _link_tree(previous_engine, paths.engine_root / "cpu-v1")
    settings = Settings()
    settings.network.port = free_port()
    settings.network.demo_traffic_per_minute = 120
    settings.wallet.address = WALLET
    SettingsStore(paths.settings_file).save(settings)
    with sqlite3.connect(paths.metrics_db) as db:
        db.execute("CREATE TABLE samples (series TEXT, t REAL, value REAL)")
        db.execute("INSERT INTO samples VALUES ('tokens', 1.0, 42.0)")
    kept = {p: p.read_bytes() for p in (paths.settings_file, paths.metrics_db)}

    # 1. An upgrade cut short: the new environment has every package except the engine, and no marker.
    new_root = env_root(paths.engine_root, "cpu")  # <variant>-v<version>-<lock digest>
    _link_tree(shared_v2 / "venv", new_root / "venv")
    site = next((new_root / "venv").glob("lib/python3.*/site-packages"))
    for p in [*site.glob("farmesh"), *site.glob("farmesh-*.dist-info")]:
        shutil.rmtree(p)
    assert [r.name for r in EngineEnv(paths, "cpu").missing()] == ["farmesh"]
    monkeypatch.setenv(SOURCE_ENV, str(tmp_path / "not-downloaded" / "farmesh.tar.gz"))
    node = _node(paths)
    try:
        stats = _serve(node)
        status = node.engine.status()
        assert status.ready and status.lock_version == 1 and status.probe.engine == "petals"
        assert node.supervisor.config["model"].endswith("farmesh-demo-llama-v1")  # the Llama 2 style demo
        assert stats.tokens_served > 0
        old_peer = stats.peer_id
    finally:
        node.stop()
        node.close()
    assert (paths.engine_root / "cpu-v1" / "ready.json").is_file()  # nothing of the old engine was removed
    identity = paths.run_dir / "identity-main.key"
    kept[identity] = identity.read_bytes()

    # 2. The next start finishes the upgrade (the engine from its archive; its build tools from a local index).
    monkeypatch.setenv(SOURCE_ENV, str(engine_archive))
    index = PackageIndex(tmp_path / "index")
    (tmp_path / "index").mkdir()
    for w in tools:
        shutil.copy(w, tmp_path / "index" / w.name)
    for key, value in index.pip_env().items():
        monkeypatch.setenv(key, value)
    node = _node(paths)
    try:
        stats = _serve(node)
        status = node.engine.status()
        assert status.ready and status.lock_version == LOCK_VERSION and status.probe.engine == "farmesh"
        assert status.source_commit == "75a473e888c7bc20e7c28e96c3e0911c581bca1b"
        assert status.probe.transformers_version == "4.43.1"
        assert node.supervisor.config["model"].endswith("farmesh-demo-llama31-v2")  # the Llama 3.1 style demo
        assert stats.peer_id == old_peer  # the same node identity
    finally:
        node.stop()
        node.close()
        index.close()
    assert not (paths.engine_root / "cpu-v1").exists()
    assert not list(paths.engine_root.glob(".removing-*"))
    assert wait_until(lambda: all(p.read_bytes() == b for p, b in kept.items()), 1)
    assert SettingsStore(paths.settings_file).load().wallet.address == WALLET
