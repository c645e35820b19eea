"""Addresses for the engine: listen and announce multiaddrs for IPv4, IPv6 and host names (one helper, used by
the plan, the launcher and what `plan` shows), and the announce decision on a custom network whose peers are
on the LAN or on the internet (pure logic: routing answers are given, nothing is sent)."""

from __future__ import annotations

import socket

import pytest

from farnode_desktop.core.models.hub import ModelConfig
from farnode_desktop.core.node.plan import announce_host, make_plan, route_announce
from farnode_desktop.core.settings import CUSTOM_SWARM, PUBLIC_SWARM, Settings
from farnode_desktop.engine import protocol as P
from farnode_desktop.engine.launcher import Launcher, preflight
from tests.support.hf_models import MIXTRAL_8X7B

PEER_ID = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"


def test_multiaddrs_for_every_kind_of_host():
    assert P.tcp_maddr("10.0.0.5", 31337) == "/ip4/10.0.0.5/tcp/31337"
    assert P.tcp_maddr("::", 31337) == "/ip6/::/tcp/31337"
    assert P.tcp_maddr("::1", 1) == P.tcp_maddr("[::1]", 1) == "/ip6/::1/tcp/1"
    assert P.tcp_maddr("2001:DB8:0::7", 1) == "/ip6/2001:db8::7/tcp/1"
    assert P.tcp_maddr("fe80::1%eth0", 1) == "/ip6zone/eth0/ip6/fe80::1/tcp/1"
    assert P.tcp_maddr("my-host.example", 1) == P.tcp_maddr("my-host.example.", 1) == "/dns/my-host.example/tcp/1"
    # listening: both wildcards, as FarMesh does by default; a name is listened on at its addresses
    for wildcard in ("", "0.0.0.0", "::", "[::]"):
        assert P.listen_maddrs(wildcard, 5) == ["/ip4/0.0.0.0/tcp/5", "/ip6/::/tcp/5"]
    assert P.listen_maddrs("::1", 5) == ["/ip6/::1/tcp/5"]
    assert P.listen_maddrs("my-host.example", 5) == ["/dns/my-host.example/tcp/5"]  # shown; not resolved
    local = P.listen_maddrs("localhost", 5, resolve=P.resolve_host)  # /etc/hosts: no DNS server asked
    assert local and set(local) <= {"/ip4/127.0.0.1/tcp/5", "/ip6/::1/tcp/5"}


def _plan(tmp_path, monkeypatch, swarm=PUBLIC_SWARM, **net):
    from farnode_desktop.core.paths import AppPaths

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    s = Settings()
    s.network.swarm, s.network.model, s.network.port = swarm, "mistralai/Mixtral-8x7B-v0.1", 31337
    for k, v in net.items():
        setattr(s.network, k, v)
    paths = AppPaths(tmp_path / "c", tmp_path / "d", tmp_path / "l", tmp_path / "k")
    plan = make_plan(s, paths, inventory=None, model=ModelConfig(s.network.model, MIXTRAL_8X7B, "cache"))
    (server,) = plan.servers
    return plan, server


def test_plan_and_launcher_arguments_for_ipv6_and_host_names(tmp_path, monkeypatch):
    _, server = _plan(tmp_path, monkeypatch, host="::")
    assert server.listen == ("/ip4/0.0.0.0/tcp/31337", "/ip6/::/tcp/31337") and server.announce == ()
    argv = Launcher(None, server.config).argv()
    i = argv.index("--host_maddrs")
    assert argv[i + 1:i + 3] == ["/ip4/0.0.0.0/tcp/31337", "/ip6/::/tcp/31337"]
    _, server = _plan(tmp_path, monkeypatch, host="::1")
    assert server.listen == server.announce == ("/ip6/::1/tcp/31337",)
    argv = Launcher(None, server.config).argv()
    assert argv[argv.index("--host_maddrs") + 1] == "/ip6/::1/tcp/31337"
    assert argv[argv.index("--announce_maddrs") + 1] == "/ip6/::1/tcp/31337"
    _, server = _plan(tmp_path, monkeypatch, CUSTOM_SWARM, announce_address="my-host.example")
    assert server.announce == ("/dns/my-host.example/tcp/31337",) == tuple(server.config["announce_maddrs"])
    _, server = _plan(tmp_path, monkeypatch, host="localhost")
    assert server.listen == ("/dns/localhost/tcp/31337",) and server.announce == ("/dns/localhost/tcp/31337",)
    argv = Launcher(None, server.config).argv()  # the engine gets addresses it can listen on
    i = argv.index("--host_maddrs")
    listen = argv[i + 1:argv.index("--announce_maddrs")]
    assert listen and set(listen) <= {"/ip4/127.0.0.1/tcp/31337", "/ip6/::1/tcp/31337"}


def test_launcher_checks_the_port_on_ipv6_too():
    with socket.socket(socket.AF_INET6) as s:  # a free port on ::1
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    cfg = {"model": "org/model", "host": "::1", "port": port}
    assert preflight(cfg) is None  # before: "port ... is already in use" for any IPv6 address
    with socket.socket(socket.AF_INET6) as holder:
        holder.bind(("::1", port))
        holder.listen()
        failed = preflight(cfg)
        assert failed is not None and failed.category == P.Category.PORT_IN_USE
    assert preflight(dict(cfg, host="::")) is None


def _peer(ip: str) -> str:
    return f"/ip{6 if ':' in ip else 4}/{ip}/tcp/31337/p2p/{PEER_ID}"


def test_announce_follows_where_the_peers_are():
    routes = {"192.168.1.10": "192.168.1.20", "127.0.0.1": "127.0.0.1", "93.184.216.34": "192.168.1.20",
              "2606:4700::1111": "fd00::2", "100.100.1.1": "100.64.0.7"}
    # peers on the LAN, on this computer, on a VPN's shared address space: the address that reaches them
    assert route_announce([_peer("192.168.1.10")], routes.get)[0] == "192.168.1.20"
    assert route_announce([_peer("127.0.0.1")], routes.get)[0] == "127.0.0.1"
    assert route_announce([_peer("100.100.1.1")], routes.get)[0] == "100.64.0.7"
    # peers on the internet, this computer behind a router: no private address; the engine announces what
    # its peers see, and the reason says what to do when they cannot reach it
    for peers in ([_peer("93.184.216.34")], [_peer("192.168.1.10"), _peer("93.184.216.34")],
                  [_peer("2606:4700::1111")]):
        host, why = route_announce(peers, routes.get)
        assert host is None, peers
        assert "on the internet" in why and "announce address in Settings > Network" in why
        assert "forward its port" in why
    # a computer with a public address (no NAT) announces it
    assert route_announce([_peer("93.184.216.34")], {"93.184.216.34": "198.51.100.1"}.get)[0] is None  # TEST-NET
    assert route_announce([_peer("93.184.216.34")], {"93.184.216.34": "93.184.216.99"}.get)[0] == "93.184.216.99"
    host, _ = route_announce([_peer("2606:4700::1111")], {"2606:4700::1111": "2a01:4f8::7"}.get)
    assert host == "2a01:4f8::7" and P.tcp_maddr(host, 1) == "/ip6/2a01:4f8::7/tcp/1"
    # peers by host name: nothing to route; the engine decides
    host, why = route_announce([f"/dns/peers.example.org/tcp/31337/p2p/{PEER_ID}"], routes.get)
    assert host is None and "peers.example.org" in why


def test_custom_network_on_loopback_still_announces_its_route():
    s = Settings()
    s.network.swarm, s.network.initial_peers = CUSTOM_SWARM, [_peer("127.0.0.1")]
    assert announce_host(s)[0] == "127.0.0.1"  # a real routing look-up, on loopback only


@pytest.mark.parametrize("host", ["::", "::1", "my-host.example", "localhost"])
def test_settings_take_ipv6_and_host_names(host):
    s = Settings()
    s.network.host = s.network.announce_address = host
    assert not [p for p in s.validate() if "network.host" in p or "announce_address" in p]
