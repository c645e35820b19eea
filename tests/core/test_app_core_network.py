"""AppCore.join_network / network_descriptor: the faces' way to join a network from its file."""
from __future__ import annotations

import json

import pytest

from farnode_desktop.core.app_core import AppCore
from farnode_desktop.core.network.descriptor import DescriptorError
from farnode_desktop.core.paths import AppPaths
from tests.gui.test_wizard_plans import LLAMA

PEER = "/ip4/127.0.0.1/tcp/31337/p2p/12D3KooWQ5vMGpGRtrFkaDrEWvMN9Vz3wUYBHozWctYfHZmVK7TX"


def test_join_network_saves_and_a_bad_chain_saves_nothing(tmp_path, anvil, monkeypatch):
    monkeypatch.setenv("FARNODE_HOME", str(tmp_path / "home"))
    paths = AppPaths.default().ensure()
    model = tmp_path / "lab-model"  # the file names its model (a folder: the hub is not reachable here)
    model.mkdir()
    (model / "config.json").write_text(json.dumps(LLAMA))
    f = tmp_path / "lab.json"
    d = {"farnode_network": 1, "name": "Lab", "initial_peers": [PEER], "model": str(model),
         "payouts": {"rpc_url": anvil.url, "chain_id": 5}}
    f.write_text(json.dumps(d))
    core = AppCore(paths, face="headless")
    try:
        with pytest.raises(DescriptorError) as info:
            core.join_network(str(f))
        assert "serves chain id 31337" in info.value.problems[0]
        assert not paths.settings_file.exists()
        d["payouts"]["chain_id"] = 31337
        f.write_text(json.dumps(d))
        assert core.join_network(str(f)).name == "Lab"
        assert core.settings.network.initial_peers == [PEER] and core.settings.chain.chain_id == 31337
        info = core.network_descriptor()
        assert info["name"] == "Lab" and info["source"] == str(f) and info["differs"] == []
    finally:
        core.close()
