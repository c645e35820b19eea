"""Three app nodes on this computer form one custom network and serve a hub model, as users would build it;
a real FarMesh client generates through it; every node's network view, `swarm --json` and reachability.

The tests run in file order on one network (module scope); the last ones stop a node and add others."""

from __future__ import annotations

import os

import pytest

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.network.reachability import DIRECT, UNREACHABLE
from tests.support.processes import cmdline, descendants, name
from tests.support.wait import wait_until

from .conftest import (
    BLOCKS_PER_NODE,
    MODEL_ID,
    make_node,
    node_settings,
    run_client,
    start,
    swarm_json,
)

pytestmark = pytest.mark.engine
PROMPTS = [[1, 15, 300, 42], [1, 999, 3, 3, 7, 500], [1, 64]]


def _model(view):
    return next(m for m in view.models if m.model_id == MODEL_ID)


def _view_with(node, predicate, timeout=60):
    """The node's network view (its monitor reads the DHT every few seconds) once ``predicate`` holds."""
    return wait_until(lambda: node.core.network.latest if node.core.network.latest is not None
                      and predicate(node.core.network.latest) else None, timeout)


def test_three_nodes_each_serve_part_of_the_blocks(three_nodes):
    a, b, c = three_nodes
    assert len({n.peer_id for n in three_nodes}) == 3
    assert len({n.sup.config["port"] for n in three_nodes}) == 3
    assert len({n.sup.config["identity_path"] for n in three_nodes}) == 3
    served = [set(n.sup.stats().blocks) for n in three_nodes]
    assert all(len(s) == BLOCKS_PER_NODE for s in served), served  # the engine picked which ones
    assert set().union(*served) == set(range(8))
    for n in three_nodes:
        cfg = n.sup.config
        assert cfg["model"] == MODEL_ID and cfg["torch_dtype"] == "float32" and "block_indices" not in cfg
        assert cfg["announce_maddrs"] == [f"/ip4/127.0.0.1/tcp/{cfg['port']}"] and cfg["nat_traversal"] is False
        assert n.node.plan.servers[0].listen == (f"/ip4/127.0.0.1/tcp/{cfg['port']}",)
    assert a.sup.config.get("new_swarm") and b.sup.config["initial_peers"] == a.addrs
    # every p2pd of the network stays on loopback, without NAT port mapping, AutoNAT or relays
    for n in three_nodes:
        daemons = [p for p in descendants(n.sup.pid) if name(p) == "p2pd"]
        assert daemons
        for d in daemons:
            cmd = cmdline(d)
            assert "-natPortMap=0" in cmd or "-natPortMap" not in cmd, cmd
            assert "-autonat=1" not in cmd and "-relay=1" not in cmd, cmd


def test_a_real_client_generates_the_local_models_tokens(three_nodes):
    a, b, c = three_nodes
    view = _view_with(a, lambda v: _model(v).complete and len([s for s in _model(v).servers if s.online]) == 3)
    assert view is not None
    out = run_client(PROMPTS, b.addrs)
    assert "error" not in out, out
    assert out["remote"] == out["local"] and len(out["remote"]) == len(PROMPTS)
    assert all(len(r) == len(p) + 8 for r, p in zip(out["remote"], PROMPTS, strict=True))


def test_network_view_lists_every_server_and_swarm_json_matches_each_node(three_nodes):
    by_peer = {n.peer_id: n for n in three_nodes}
    for n in three_nodes:
        view = _view_with(n, lambda v: len([s for s in _model(v).servers if s.online]) == 3)
        assert view is not None, f"{n.name} never saw three servers"
        m = _model(view)
        assert m.complete and m.num_blocks == 8 and sum(m.servers_per_block) == 3 * BLOCKS_PER_NODE
        assert {s.peer_id for s in m.servers if s.online} == set(by_peer)
        for s in m.servers:
            assert set(s.blocks) == set(by_peer[s.peer_id].sup.stats().blocks)
            assert s.version and s.torch_dtype == "float32" and s.quant_type == "none" and s.throughput > 0
            assert s.mine == (s.peer_id == n.peer_id)
        # the command line, run on that node's data folder as a user would
        data = swarm_json(n)
        assert data["network"] == "custom" and data["my_peers"] == [n.peer_id]
        (model,) = [x for x in data["models"] if x["model_id"] == MODEL_ID]
        mine = [s for s in model["servers"] if s["mine"]]
        assert [s["peer_id"] for s in mine] == [n.peer_id]
        assert mine[0]["blocks"] == list(n.sup.stats().blocks) and mine[0]["state"] == "online"
        assert mine[0]["answered"] is True  # the probe, a fresh peer, called it at its announced address
        assert model["mine"] == [[min(n.sup.stats().blocks), max(n.sup.stats().blocks) + 1]]
        assert len([s for s in model["servers"] if s["state"] == "online"]) == 3 and model["complete"]


def test_every_node_is_reachable_directly(three_nodes):
    for n in three_nodes:  # the node that started the network learns it once the others can ask
        status = wait_until(lambda n=n: n.core.reachability().get("main")
                            if n.core.reachability().get("main") and n.core.reachability()["main"].state != "unknown"
                            else None, 120)
        assert status is not None and status.state == DIRECT, (n.name, n.core.reachability())
        assert status.fix == ""


@pytest.mark.display
@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs an X display (scripts/test.sh starts Xvfb)")
def test_network_page_draws_every_server_and_the_coverage(three_nodes, qtbot, artifacts_dir, request):
    """The window's Network page for node B under the real display (Xvfb in scripts/test.sh)."""
    from farnode_desktop.gui.bridge import BusBridge, TaskRunner
    from farnode_desktop.gui.main_window import MainWindow

    a, b, c = three_nodes
    bridge = BusBridge(b.core.bus)
    tasks = TaskRunner()
    request.addfinalizer(tasks.close)  # (after the test's other finalizers: its window is gone by then)
    window = MainWindow(b.core, bridge, tasks)
    qtbot.addWidget(window)
    window.resize(1060, 900)
    window.show()
    qtbot.waitExposed(window)
    window.show_page("Network")
    page = window.network_page
    qtbot.waitUntil(lambda: page.cards and len([s for s in page.cards[0].model.servers if s.online]) == 3,
                    timeout=60_000)
    card = page.cards[0]
    m = card.model
    assert m.model_id == MODEL_ID and card.table.rowCount() == len(m.servers)
    assert list(card.chart.bars.opts["height"]) == list(m.servers_per_block)
    assert list(card.chart.line.getData()[1]) == list(m.throughput_per_block)
    rows = {card.table.item(r, 0).toolTip(): r for r in range(card.table.rowCount())}
    mine = rows[b.peer_id]
    assert "(this node)" in card.table.item(mine, 0).text() and card.table.item(mine, 0).font().bold()
    assert card.table.item(mine, 2).text() == f"{min(b.sup.stats().blocks)}–{max(b.sup.stats().blocks)}"
    qtbot.wait(500)
    assert window.grab().save(str(artifacts_dir / "gui-network-three-nodes.png"))
    window.network_page.hide()
    bridge.close()
    tasks.wait(5000)


def test_a_node_announcing_an_address_nothing_listens_on_is_unreachable(three_nodes, tmp_path):
    a = three_nodes[0]
    # It listens on 127.0.0.1 and announces 127.0.0.2 (loopback too, but nothing listens there).
    d = make_node(tmp_path, "D", node_settings(peers=a.addrs, blocks=2, announce_address="127.0.0.2"))
    port = d.core.settings.network.port
    try:
        start(d)
        assert d.sup.config["announce_maddrs"] == [f"/ip4/127.0.0.2/tcp/{port}"]
        status = wait_until(lambda: d.core.reachability().get("main")
                            if d.core.reachability().get("main") and d.core.reachability()["main"].state == UNREACHABLE
                            else None, 120)
        assert status is not None, d.core.reachability()
        assert d.sup.reachability is not None and d.sup.reachability.direct is False  # the engine's own check
        assert f"127.0.0.2/tcp/{port}" in status.fix and f"Forward TCP port {port} on your router" in status.fix
        assert f"sudo ufw allow {port}/tcp" in status.fix and "Settings > Network (127.0.0.2)" in status.fix
    finally:
        d.core.close()


def test_stopping_a_node_changes_every_other_view_within_a_minute(three_nodes):
    a, b, c = three_nodes
    c.core.stop_node()
    assert c.sup.state.state == C.STOPPED
    first = {}
    for n in (a, b):  # C's blocks were announced offline: the others' views drop it
        view = _view_with(n, lambda v: c.peer_id not in {s.peer_id for s in _model(v).servers if s.online}, 60)
        assert view is not None, f"{n.name}'s view: {n.core.network.latest}"
        m = first[n.name] = _model(view)
        online = [s for s in m.servers if s.online]
        assert {s.peer_id for s in online} <= {a.peer_id, b.peer_id}
        assert m.servers_per_block == tuple(sum(i in s.blocks for s in online) for i in range(8))
        assert m.complete == (min(m.servers_per_block) > 0)
    # Generation: through the blocks the remaining servers hold. Where a block has no server, the engine's
    # own error says which; the engine also moves servers to uncovered blocks (rebalancing) on its own.
    before = _model(a.core.network.latest)
    out = run_client(PROMPTS[:1], a.addrs)
    after = _model(a.core.network.latest)
    if "error" in out:
        assert "No servers holding blocks" in out["error"], out
        assert not before.complete or not after.complete, (before, after)
    else:
        assert out["remote"] == out["local"], out
    # once the remaining servers cover every block again, generation succeeds
    view = _view_with(a, lambda v: _model(v).complete and {s.peer_id for s in _model(v).servers if s.online}
                      == {a.peer_id, b.peer_id}, 240)
    assert view is not None, f"the two remaining servers never covered every block: {a.core.network.latest}"
    out = run_client(PROMPTS[1:2], b.addrs)
    assert "error" not in out and out["remote"] == out["local"], out
