"""This node's servers on the network: who they are, which addresses to read the network through, and who
can reach them. The node controller hands in its running servers (:class:`RunningServer`); nothing here
starts or stops anything."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farnode_desktop.core.atomic import atomic_write_json
from farnode_desktop.core.settings import CUSTOM_SWARM, PUBLIC_SWARM, Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunningServer:
    """One of this node's servers that reported its peer and has not stopped."""

    node_id: str
    peer_id: str
    addrs: tuple[str, ...]
    config: dict = field(default_factory=dict)  # its launcher configuration (port, announce_maddrs)
    runtime: str = "native"
    reachability: Any = None  # the engine's own reachability check (direct, asked), or None yet


def my_peers(servers: list[RunningServer]) -> dict[str, dict]:
    """node_id -> {peer_id, addrs}."""
    return {s.node_id: {"peer_id": s.peer_id, "addrs": list(s.addrs)} for s in servers}


def network_peers(settings: Settings, servers: list[RunningServer]) -> list[str] | str:
    """Addresses to read the network through: this node's own servers, the custom network's peers; [] for the
    public network's bootstrap peers (the engine's). Where there is none on the local swarm or a custom
    network, a sentence saying so: those networks never fall back to the public one."""
    own = [a for s in servers for a in s.addrs]
    swarm = settings.network.swarm
    if swarm == CUSTOM_SWARM:
        peers = own + [p for p in settings.network.initial_peers if p not in own]
        return peers or ("No peer addresses for this network yet: add them in Settings > Network "
                         "(farnode-desktop settings set network.initial_peers ...).")
    if swarm == PUBLIC_SWARM:
        return own
    return own or "The local demo swarm runs while this node does: start contributing to see it here."


def reachability(servers: list[RunningServer], settings: Settings, view: Any = None) -> dict:
    """node_id -> ReachabilityStatus of each server, from the engine's own peer-to-peer check and the network
    view (``view``: the latest NetworkView, or None). Off the local swarm only: the caller asks."""
    from farnode_desktop.core.network.reachability import assess, fix_text

    out = {}
    for s in servers:
        ev = s.reachability
        mine = None
        if view is not None:
            mine = next((v for m in view.models for v in m.servers if v.peer_id == s.peer_id), None)
        announced = [a.split("/p2p/")[0] for a in s.addrs] or list(s.config.get("announce_maddrs") or [])
        fix = fix_text(int(s.config.get("port") or 0), announced, runtime=s.runtime,
                       announce_setting=settings.network.announce_address)
        out[s.node_id] = assess(engine_direct=ev.direct if ev else None, engine_asked=ev.asked if ev else 0,
                                using_relay=mine.using_relay if mine else None,
                                answered=mine.answered if mine else None, fix=fix)
    return out


def write_peers_file(path: Path, swarm: str, servers: list[RunningServer]) -> None:
    """Record the running servers for other processes (``farnode-desktop swarm``); none: the file goes."""
    peers = my_peers(servers)
    try:
        if peers:
            atomic_write_json(path, {"network": swarm, "servers": peers})
        else:
            path.unlink(missing_ok=True)
    except Exception as exc:  # noqa: BLE001 - only the swarm command reads it
        log.warning("could not record this node's peers: %s", exc)
