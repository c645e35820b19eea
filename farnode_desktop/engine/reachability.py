"""Asks peers of the network whether they reach this server, with the engine's own peer-to-peer check.

Each peer asked dials this server on a fresh connection of its own (the engine's reachability service, which
every directly reachable server runs) and says whether the server answered. This is what the engine does
once before a server joins (``check_direct_reachability``); the launcher asks again while the server runs,
because a node that starts a network has nobody to ask at first, and a router or firewall may change.
Runs inside the DHT's process (``DHT.run_coroutine``). Standard library and the engine only.
"""

from __future__ import annotations

import importlib

MAX_PEERS = 5


async def ask_peers_to_check(_dht, node, max_peers: int = MAX_PEERS) -> tuple[bool | None, int]:
    """(reachable directly: True/False, None when no peer answered the question; how many answered)."""
    from farnode_desktop.engine.compat import import_engine

    reach = importlib.import_module(f"{import_engine().__name__}.server.reachability")
    protocol = reach.ReachabilityProtocol(probe=node.protocol.p2p)
    successes = asked = 0
    for peer in list(node.protocol.routing_table.peer_id_to_uid.keys()):
        if peer == node.peer_id:
            continue
        answer = await protocol.call_check(remote_peer=peer, check_peer=node.peer_id)
        if answer is None:  # that peer could not check (it runs no reachability service)
            continue
        successes += bool(answer)
        asked += 1
        if asked >= max_peers:
            break
    return (successes / asked >= 0.5 if asked else None), asked
