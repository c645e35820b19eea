"""Nothing of the local swarm leaves this computer: its p2pd daemons run without NAT port mapping, AutoNAT or
relays and only on loopback addresses, its server runs no speed test and no version check, and the engine
refuses any contact outside loopback (engine/loopback.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.node.controller import NodeController
from farnode_desktop.core.node.demo_swarm import LOOPBACK_MBPS
from farnode_desktop.core.settings import Settings
from tests.support.network_watch import NetworkWatch, p2pd_problems

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.engine
def test_every_p2pd_of_the_local_swarm_stays_on_loopback(engine_paths, bus, free_port):
    """The server (its DHT and its reachability probe) and the demo client, as the app runs them."""
    settings = Settings()
    settings.network.port = free_port
    settings.network.demo_traffic_per_minute = 60
    watch = NetworkWatch(interval=0.05).start()  # often enough to see the short-lived ones too
    node = NodeController(engine_paths, bus, settings=settings)
    try:
        node.start()
        assert node.supervisor.wait_for({C.ONLINE, C.FAILED, C.HELD}, 150).state == C.ONLINE, node.state
        assert node.traffic.wait_for(lambda s: s.ok >= 1, 90), node.traffic.stats
        stats = node.stats()
    finally:
        node.stop()
        node.close()
        watch.stop()
    cmdlines = list(watch.p2pd.values())
    servers = [c for c in cmdlines if f"-hostAddrs=/ip4/127.0.0.1/tcp/{free_port}" in c]
    clients = [c for c in cmdlines if any(a.startswith("-bootstrapPeers=/ip4/127.0.0.1/") for a in c)
               and "-dhtClient=1" in c]
    assert servers and clients, cmdlines
    for c in cmdlines:
        assert p2pd_problems(c) == [], c
    assert watch.outside == []
    # No speed test: the server reports the network the app configured for loopback, not a measured one.
    assert stats.network_rps == pytest.approx(LOOPBACK_MBPS * 1e6 / (64 * 16))
    log = node.supervisor.log_path.read_text()
    assert "Running a server on" in log and "speedtest" not in log.lower() and "pypi" not in log.lower()
    assert "refused a network contact" not in log


def test_a_p2pd_with_nat_traversal_or_outside_addresses_is_caught():
    """The check the whole test suite runs on every p2pd it sees, given a deliberate violation."""
    good = ["p2pd", "-natPortMap=0", "-autonat=0", "-relay=0", "-autoRelay=0",
            "-hostAddrs=/ip4/127.0.0.1/tcp/5000", "-bootstrapPeers=/ip4/127.0.0.1/tcp/5001/p2p/12D3KooWX"]
    assert p2pd_problems(good) == []
    # every interface, announced on loopback only (a custom network's plan run in the tests)
    assert p2pd_problems([*good[:5], "-hostAddrs=/ip4/0.0.0.0/tcp/5000", "-announceAddrs=/ip4/127.0.0.1/tcp/5000"]) == []
    bad = ["p2pd", "-natPortMap=1", "-autonat=0", "-relay=1", "-hostAddrs=/ip4/0.0.0.0/tcp/5000,/ip6/::1/tcp/1",
           "-bootstrapPeers=/ip4/203.0.113.7/tcp/31337/p2p/12D3KooWX"]
    assert p2pd_problems(bad) == ["-natPortMap is not off", "-relay is not off", "-autoRelay is not off",
                                  "-hostAddrs has /ip4/0.0.0.0/tcp/5000",
                                  "-bootstrapPeers has /ip4/203.0.113.7/tcp/31337/p2p/12D3KooWX"]


GUARDED = r"""
import json, os, socket, sys
from farnode_desktop.engine.loopback import guard
guard(who="probe")
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = "ok"
    except PermissionError as exc:
        out[name] = "refused"
    except OSError as exc:
        out[name] = f"oserror {exc.errno}"
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
attempt("loopback", lambda: socket.create_connection(server.getsockname(), timeout=5).close())
attempt("localhost name", lambda: socket.getaddrinfo("localhost", 80))
attempt("outside address", lambda: socket.create_connection(("192.0.2.1", 443), timeout=5))
attempt("outside name", lambda: socket.getaddrinfo("pypi.org", 443))
attempt("udp outside", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("198.51.100.1", 53)))
attempt("unix", lambda: socket.socketpair()[0].close())
pid = os.fork()
if pid == 0:  # a forked child (the server's DHT process, its handlers) keeps the guard
    try:
        socket.create_connection(("192.0.2.1", 80), timeout=5)
        os._exit(1)
    except PermissionError:
        os._exit(0)
_, status = os.waitpid(pid, 0)
out["forked child"] = "refused" if os.waitstatus_to_exitcode(status) == 0 else "not refused"
print(json.dumps(out))
"""


def test_the_loopback_guard_refuses_outside_contacts_and_records_them(tmp_path):
    record = tmp_path / "egress.jsonl"
    env = {**os.environ, "FARNODE_EGRESS_LOG": str(record), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", GUARDED], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"loopback": "ok", "localhost name": "ok", "outside address": "refused",
                                      "outside name": "refused", "udp outside": "refused", "unix": "ok",
                                      "forked child": "refused"}
    attempts = [json.loads(line) for line in record.read_text().splitlines()]
    assert [a["destination"] for a in attempts] == ["192.0.2.1:443", "pypi.org (name lookup)", "198.51.100.1:53",
                                                     "192.0.2.1:80"]
    assert all(a["who"] == "probe" for a in attempts) and "refused a network contact" in out.stderr
