"""A real node on the local swarm, driven through the app's core, with real client traffic through it."""

from __future__ import annotations

import pytest

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.node.controller import NodeController
from farnode_desktop.core.settings import Settings
from tests.support.ports import port_is_free
from tests.support.processes import group_members
from tests.support.wait import wait_until

pytestmark = pytest.mark.engine


def test_node_serves_checked_traffic_and_stops_clean(engine_paths, bus, free_port):
    settings = Settings()
    settings.network.port = free_port
    settings.network.demo_traffic_per_minute = 120  # a request every 0.5 s
    states: list[str] = []
    bus.subscribe("node.state", lambda _t, s: states.append(s.state))
    node = NodeController(engine_paths, bus, settings=settings)
    try:
        node.start()
        assert node.supervisor.wait_for({C.ONLINE, C.FAILED, C.HELD}, 120).state == C.ONLINE, node.state
        launcher_pid = node.supervisor.pid
        assert launcher_pid

        # Real client generations through the swarm, each checked against the same model run locally.
        assert node.traffic.wait_for(lambda s: s.requests >= 6, 120), node.traffic.stats
        node.traffic.stop()
        traffic = node.traffic.stats
        assert traffic.mismatches == 0 and traffic.errors == 0, traffic
        assert traffic.ok == traffic.requests >= 6

        # Events arrived in order: starting ... online, with each loading step in between.
        order = [s for s in states if s in (C.PROVISIONING, C.STARTING, C.MEASURING, C.JOINING, C.LOADING,
                                            C.ONLINE)]
        dedup = [s for i, s in enumerate(order) if i == 0 or order[i - 1] != s]
        assert dedup == [C.PROVISIONING, C.STARTING, C.MEASURING, C.JOINING, C.LOADING, C.ONLINE], states

        stats = node.stats()
        assert stats.blocks == (0, 1, 2, 3) and stats.total_blocks == 4
        assert stats.peer_id and node.supervisor.peer.addrs[0].endswith(stats.peer_id)
        # Tokens counted inside the server (inference and forward) equal what the client sent.
        assert wait_until(lambda: node.stats().tokens_served == traffic.tokens_sent, 5), \
            (node.stats(), traffic)
        # The served ledger holds each request's tokens per server: here the one server on every route, with
        # what it counted itself (the demo payout service pays from these rows).
        from farnode_desktop.core.payout.served import ServedLedger

        ledger = ServedLedger(engine_paths.served_ledger)
        try:
            assert ledger.totals() == {stats.peer_id: traffic.tokens_sent}, (ledger.totals(), traffic)
            assert len({r.request_id for r in ledger.rows_after(0)}) == traffic.requests
            # The server was seen on the routes; this node has no wallet, so it announced no binding.
            peer = ledger.peer(stats.peer_id)
            assert peer is not None and peer.statement == "" and peer.signature == "", peer
        finally:
            ledger.close()
        stats = node.stats()
        assert stats.inference_sessions >= 1 and stats.inference_tokens > 0
        assert stats.forward_requests >= 1 and stats.forward_tokens > 0  # every 5th request is a forward pass
        assert stats.reported_throughput > 0 and stats.inference_rps > 0
    finally:
        final = node.stop()
        node.close()
    assert final.state == C.STOPPED
    assert states[-1] == C.STOPPED
    # Nothing of the node is left (handlers, DHT process, p2pd), and the port is free again.
    assert wait_until(lambda: not group_members(launcher_pid), 5), group_members(launcher_pid)
    assert port_is_free(free_port)
    assert not node.supervisor.pid_file.exists()
    log_text = node.supervisor.log_path.read_text()
    assert "Started" in log_text and "are offline" in log_text  # clean stop: blocks announced offline


def test_demo_traffic_stops_once_when_a_stop_and_state_changes_race(engine_paths, bus, free_port):
    """The user's stop, the state change to STOPPING and closing the app all stop the demo traffic, from
    different threads at the same moment; a traffic start that lost the race to a stop starts nothing."""
    import threading

    settings = Settings()
    settings.network.port = free_port
    settings.network.demo_traffic_per_minute = 120
    node = NodeController(engine_paths, bus, settings=settings)
    errors: list[BaseException] = []

    def stop_traffic() -> None:
        try:
            node.traffic.stop()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    try:
        node.start()
        assert node.supervisor.wait_for({C.ONLINE, C.FAILED, C.HELD}, 120).state == C.ONLINE, node.state
        assert node.traffic.wait_for(lambda s: s.requests >= 1, 120), node.traffic.stats
        racers = [threading.Thread(target=stop_traffic) for _ in range(4)]
        for t in racers:
            t.start()
        final = node.stop()
        for t in racers:
            t.join(30)
        assert not errors, errors
        assert final.state == C.STOPPED and not node.traffic.running
        node._start_traffic()  # what a traffic-start thread that saw ONLINE just before the stop does
        assert not node.traffic.running
    finally:
        node.stop()
        node.close()
    assert not node.traffic.running
