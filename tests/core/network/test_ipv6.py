"""A node listening on ::1 (IPv6 loopback) serves a real FarMesh client over IPv6 on this computer."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.processes import cmdline, descendants, name

from .conftest import make_node, node_settings, run_client, start

pytestmark = pytest.mark.engine


def _has_ipv6_loopback() -> bool:
    try:
        out = subprocess.run(["ip", "-6", "addr", "show", "dev", "lo"], capture_output=True, text=True, timeout=10)
    except OSError:
        return False
    return "::1/128" in out.stdout


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this computer has no IPv6 loopback (::1)")
def test_a_node_on_ipv6_loopback_serves_a_client(tmp_path, network_env):
    node = make_node(tmp_path, "six", node_settings(peers=[], blocks=8, host="::1"))
    port = node.core.settings.network.port
    try:
        start(node)
        cfg = node.sup.config
        assert cfg["host"] == "::1" and cfg["announce_maddrs"] == [f"/ip6/::1/tcp/{port}"]
        assert node.node.plan.servers[0].listen == (f"/ip6/::1/tcp/{port}",)
        assert node.addrs and all(a.startswith(f"/ip6/::1/tcp/{port}/p2p/") for a in node.addrs), node.addrs
        daemons = [p for p in descendants(node.sup.pid) if name(p) == "p2pd"]
        assert any(f"-hostAddrs=/ip6/::1/tcp/{port}" in cmdline(d).split() for d in daemons)
        out = run_client([[1, 15, 300, 42]], node.addrs, new_tokens=4)
        assert "error" not in out and out["remote"] == out["local"], out
    finally:
        node.core.close()
