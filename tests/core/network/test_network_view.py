"""The network view's arithmetic: coverage per block, the least-covered span, this node's servers, the model
choice for the public network. (The snapshots have the shape the engine-side probe writes; the probe itself
runs against real servers in tests/engine/test_network.py.)"""

from __future__ import annotations

from farnode_desktop.core.network.view import Candidate, build_view, choose_model, least_covered_span


def _server(peer, blocks, state="online", throughput=100.0, **kw):
    return {"peer_id": peer, "blocks": list(blocks), "state": state, "throughput": throughput,
            "start_block": min(blocks), "end_block": max(blocks) + 1, "version": "2.3.0.dev2",
            "using_relay": False, "cache_tokens_left": 4096, **kw}


SNAPSHOT = {"e": "network", "t": 1000.0, "peer_id": "probe", "models": [
    {"dht_prefix": "Meta-Llama-3-1-8B-hf", "num_blocks": 8, "repository": "https://huggingface.co/meta-llama/Meta-Llama-3.1-8B",
     "servers": [_server("A", range(0, 5)), _server("B", range(3, 8), throughput=50.0),
                 _server("C", range(0, 8), state="joining"), _server("D", range(5, 8), state="offline")]},
    {"dht_prefix": "mixtral-hf", "num_blocks": 4, "repository": "https://huggingface.co/mistralai/Mixtral-8x7B-v0.1",
     "servers": [_server("E", range(0, 2), throughput=10.0)]},
], "checks": {"A": {"answered": True}, "B": {"answered": False}}}


def test_coverage_counts_online_servers_only():
    view = build_view(SNAPSHOT, {"A"})
    llama = view.model("meta-llama/Meta-Llama-3.1-8B")
    assert llama.servers_per_block == (1, 1, 1, 2, 2, 1, 1, 1)
    assert llama.throughput_per_block == (100, 100, 100, 150, 150, 50, 50, 50)
    assert llama.complete and llama.least_covered == (5, 8)
    assert [s.peer_id for s in llama.servers if s.mine] == ["A"] and llama.mine == ((0, 5),)
    assert {s.peer_id: s.answered for s in llama.servers} == {"A": True, "B": False, "C": None, "D": None}
    mixtral = view.model("mixtral-hf")
    assert not mixtral.complete and mixtral.least_covered == (2, 4) and mixtral.model_id == "mistralai/Mixtral-8x7B-v0.1"
    d = view.to_dict()
    assert d["my_peers"] == ["A"] and d["models"][1]["least_covered_servers"] == 0
    assert d["models"][0]["complete"] and d["models"][0]["mine"] == [[0, 5]]


def test_least_covered_span_prefers_the_longest_run():
    assert least_covered_span([3, 1, 1, 2, 1]) == (1, 3)
    assert least_covered_span([0, 0, 0]) == (0, 3)
    assert least_covered_span([]) == (0, 0)


def test_choose_model_where_this_gpu_adds_the_most():
    view = build_view(SNAPSHOT)
    model, why = choose_model(view, [Candidate("meta-llama/Meta-Llama-3.1-8B", 8),
                                     Candidate("mistralai/Mixtral-8x7B-v0.1", 2)])
    assert model == "mistralai/Mixtral-8x7B-v0.1"  # blocks 2-3 have no server at all
    assert "least-covered blocks 2-3 have no server at all" in why and "fits 2 of its 4 blocks" in why
    # a model that does not fit, or cannot be read, is never chosen
    model, why = choose_model(view, [Candidate("meta-llama/Meta-Llama-3.1-8B", 3),
                                     Candidate("mistralai/Mixtral-8x7B-v0.1", 0, "gated: accept the licence")])
    assert model == "meta-llama/Meta-Llama-3.1-8B" and "blocks 5-7 have 1 server (50 tokens/s)" in why
    model, why = choose_model(view, [Candidate("mistralai/Mixtral-8x7B-v0.1", 0)])
    assert model == "" and "does not fit" in why


def test_the_local_swarm_or_a_custom_network_without_addresses_is_never_read_through_the_public_one(app_paths,
                                                                                                   tmp_path):
    """With nothing to join through, the Network page used to start a probe with no initial peers, which the
    engine takes as its public bootstrap peers. Now the monitor starts no probe and says why."""
    import time

    from farnode_desktop.core.events import EventBus
    from farnode_desktop.core.network import peers
    from farnode_desktop.core.network.monitor import NetworkMonitor
    from farnode_desktop.core.node.controller import NodeController
    from farnode_desktop.core.settings import Settings

    bus = EventBus()
    node = NodeController(app_paths, bus, settings=Settings())

    def network_peers():
        return peers.network_peers(node.settings, node.running_servers())

    try:
        assert "start contributing" in network_peers()  # the local swarm, not running
        node.settings.network.swarm = "custom"
        assert "Settings > Network" in network_peers()
        node.settings.network.initial_peers = ["/ip4/127.0.0.1/tcp/9/p2p/QmX"]
        assert network_peers() == ["/ip4/127.0.0.1/tcp/9/p2p/QmX"]
        node.settings.network.swarm = "public"
        assert network_peers() == []  # the engine's bootstrap peers: only when the user chose them
        node.settings.network.swarm = "local"

        def no_runtime():
            raise AssertionError("a probe was started")

        monitor = NetworkMonitor(bus, no_runtime, tmp_path, peers=network_peers,
                                 mine=lambda: {s.peer_id for s in node.running_servers()})
        monitor.watch("page", True)
        deadline = time.time() + 5
        while not monitor.last_error and time.time() < deadline:
            time.sleep(0.05)
        assert "start contributing" in monitor.last_error
        monitor.close()
    finally:
        node.close()
