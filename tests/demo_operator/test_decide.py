"""Who is paid: bindings signed with real eth-account keys, checked with core/payout/wallet.py."""

from __future__ import annotations

import time

from farnode_desktop.core.payout.served import AnnouncedPeer
from farnode_desktop.demo_operator.decide import decide
from tests.demo_operator.helpers import Server

CHAIN = 31337


def announced(server: Server, public_name: str | None = None, **kw) -> AnnouncedPeer:
    statement, signature = server.binding(CHAIN, **kw)
    return AnnouncedPeer(server.peer_id, server.address if public_name is None else public_name, statement,
                         signature, time.time())


def test_a_valid_binding_named_in_the_public_name_is_paid_to_its_wallet():
    s = Server.new()
    assert decide(s.peer_id, announced(s), CHAIN).wallet == s.address
    named = announced(s, public_name=f"Alice's 4090 ({s.address.lower()})")  # any case, inside a longer name
    assert decide(s.peer_id, named, CHAIN).wallet == s.address


def test_each_way_of_failing_is_paid_nothing_with_its_reason():
    s, other = Server.new(), Server.new()
    cases = {
        "no binding": None,
        "no binding:": AnnouncedPeer(s.peer_id, s.address, "", "", time.time()),
        "address mismatch: its public name names " + other.address: announced(s, public_name=other.address),
        "address mismatch: its public name 'fast node' names no wallet address": announced(s, public_name="fast node"),
        "address mismatch: its public name names " + s.address + ", its binding is signed by " + other.address:
            announced(s, public_name=s.address, address=other.address, signer_key=other.key),
        "invalid signature": announced(s, signer_key=other.key),
        "peer id mismatch": announced(s, peer_id=other.peer_id),
        "chain id mismatch": AnnouncedPeer(s.peer_id, s.address, *s.binding(CHAIN + 1), time.time()),
        "invalid binding": AnnouncedPeer(s.peer_id, s.address, "pay me\nplease", "0x" + "11" * 65, time.time()),
    }
    for reason, peer in cases.items():
        d = decide(s.peer_id, peer, CHAIN)
        assert d.wallet is None and d.reason.startswith(reason), (reason, d.reason)
    assert "create a wallet to be paid" in decide(s.peer_id, None, CHAIN).reason
