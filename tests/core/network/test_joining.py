"""Joining a network whose peers do not answer: the node says so within a minute, naming the addresses it
tried, instead of retrying silently."""

from __future__ import annotations

import time

import pytest

from farnode_desktop.core import snapshots as C
from tests.support.ports import free_port
from tests.support.wait import wait_until

from .conftest import make_node, node_settings

pytestmark = pytest.mark.engine
PEER_ID = "QmaYDmEyxx3iRKBmQ2pPBC17DWVrc7KanrFH5ZER2o3qDx"


def test_no_initial_peer_answers(tmp_path, network_env):
    dead = [f"/ip4/127.0.0.1/tcp/{free_port()}/p2p/{PEER_ID}", f"/ip4/127.0.0.1/tcp/{free_port()}/p2p/{PEER_ID}"]
    node = make_node(tmp_path, "lonely", node_settings(peers=dead))
    try:
        started = time.monotonic()
        node.core.start_node()
        state = wait_until(lambda: node.sup.state if node.sup.state.category == "bootstrap" else None, 60)
        assert state is not None, node.sup.state
        assert time.monotonic() - started < 60
        assert state.state in (C.RESTARTING, C.HELD)
        assert "None of the network's initial peers answered" in state.message
        assert all(addr in state.message for addr in dead), state.message
        assert "initial peers in Settings > Network" in state.message
    finally:
        node.core.close()
