"""A custom network serving a model from a folder, with no DHT prefix set: FarMesh derives a prefix from a hub id
only (a folder gave `TypeError: argument of type 'NoneType' is not iterable`, three crashes, then a hold). The
app derives one from the folder's name, and the node comes online under it."""

from __future__ import annotations

import shutil

import pytest

from farnode_desktop.core.node.demo_swarm import folder_dht_prefix

from .conftest import make_node, node_settings, start

pytestmark = pytest.mark.engine


def test_a_model_folder_without_a_prefix_serves_under_its_folders_name(tmp_path, network_env, tiny_model_dir):
    folder = tmp_path / "models" / "Tiny Llama 3.1 (8 blocks)"
    shutil.copytree(tiny_model_dir, folder)
    assert folder_dht_prefix(folder) == "Tiny-Llama-3-1--8-blocks"
    node = make_node(tmp_path / "net", "solo", node_settings(peers=[], model=str(folder), dht_prefix=""))
    try:
        start(node)
        assert node.sup.config["dht_prefix"] == "Tiny-Llama-3-1--8-blocks"
    finally:
        node.core.close()
