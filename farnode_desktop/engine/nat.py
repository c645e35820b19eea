"""NAT traversal off for every libp2p daemon (p2pd) an engine process starts.

hivemind starts p2pd with NAT port mapping (UPnP / NAT-PMP: it asks the router to open a port), AutoNAT and
circuit relays on by default, and FarMesh passes relays on for servers. On a swarm that lives on this computer
(the local demo swarm) none of that has a purpose, and asking the user's router to map a port for it is wrong.
:func:`disable_nat_traversal` forces them off in ``hivemind.P2P.create``, the one place every p2pd is
started from (the server's DHT, its reachability probe, a client's DHT). Processes forked afterwards (the
server's DHT process) inherit it.
"""

from __future__ import annotations

NO_NAT_TRAVERSAL = {"nat_port_map": False, "auto_nat": False, "use_relay": False, "use_auto_relay": False}


def disable_nat_traversal() -> None:
    from hivemind.p2p import P2P

    create = P2P.create.__func__
    if getattr(create, "_farnode_no_nat", False):
        return

    async def create_without_nat_traversal(cls, *args, **kwargs):
        kwargs.update(NO_NAT_TRAVERSAL)
        return await create(cls, *args, **kwargs)

    create_without_nat_traversal._farnode_no_nat = True
    P2P.create = classmethod(create_without_nat_traversal)
