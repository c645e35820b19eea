"""Whether a server is paid, and to which wallet: only to the wallet it announced with a valid signed binding.

A server announces (``ServedLedger.peer``) its public name and a statement binding its peer id to a wallet,
signed by that wallet's key (``core/payout/wallet.py``). It is paid only when all of these hold:
- it announced a binding at all (else: "create a wallet to be paid");
- the signature is the wallet's, over the canonical statement ("invalid signature");
- the statement names this server's peer id ("peer id mismatch") and this chain ("chain id mismatch");
- its public name names the same wallet address ("address mismatch"): a public name showing an address that
  the binding does not prove, or a binding signed by another wallet than the one the name shows (the wallet
  changed after announcing), is paid nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from farnode_desktop.core.eth_address import checksum
from farnode_desktop.core.payout.served import AnnouncedPeer
from farnode_desktop.core.payout.wallet import WalletError, parse_binding_statement, verify_node_binding

_ADDRESS_IN_NAME = re.compile(r"(?<![0-9a-zA-Z])0[xX][0-9a-fA-F]{40}(?![0-9a-zA-Z])")


@dataclass(frozen=True)
class Decision:
    peer_id: str
    wallet: str | None  # None: not paid
    reason: str  # why, for the log


def _failure_kind(statement: str, peer_id: str, chain_id: int) -> str:
    try:
        fields = parse_binding_statement(statement)
    except WalletError:
        return "invalid binding"
    if fields.get("Peer ID") != peer_id:
        return "peer id mismatch"
    if fields.get("Chain ID") != str(chain_id):
        return "chain id mismatch"
    return "invalid signature"


def decide(peer_id: str, peer: AnnouncedPeer | None, chain_id: int) -> Decision:
    if peer is None or not peer.statement or not peer.signature:
        return Decision(peer_id, None, "no binding: it announces no wallet binding (create a wallet to be paid)")
    try:
        address = verify_node_binding(peer.statement, peer.signature, expected_peer_id=peer_id,
                                      expected_chain_id=chain_id)
    except WalletError as e:
        return Decision(peer_id, None, f"{_failure_kind(peer.statement, peer_id, chain_id)}: {e.message}")
    named = {checksum(m) for m in _ADDRESS_IN_NAME.findall(peer.public_name)}
    if not named:
        return Decision(peer_id, None, f"address mismatch: its public name {peer.public_name[:80]!r} names no "
                                       f"wallet address, its binding names {address}")
    if named != {address}:
        return Decision(peer_id, None, f"address mismatch: its public name names {', '.join(sorted(named))}, "
                                       f"its binding is signed by {address}")
    return Decision(peer_id, address, f"valid binding to {address}")
