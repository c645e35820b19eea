"""Can other peers reach this node? Direct, through a relay, unreachable or unknown, and what to do about it.

Two sources, neither of them the network's central reachability service (it may be down; nothing here
waits on it):

- the engine's own peer-to-peer check (``Reachability`` events of the launcher): peers of the network are
  asked to dial this server on a fresh connection. ``True``: they reached it directly; ``False``: they
  could not (the engine then serves through relays, if there are any); ``None``: nobody could be asked yet;
- the network view (``engine/swarm_probe.py``): this node's own record (``using_relay``) and whether the
  server answered a fresh call from the probe, made to the addresses the server announced.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

DIRECT, RELAY, UNREACHABLE, UNKNOWN = "direct", "relay", "unreachable", "unknown"


@dataclass(frozen=True)
class ReachabilityStatus:
    state: str  # direct | relay | unreachable | unknown
    detail: str  # what was found, in words
    fix: str = ""  # what to do (unreachable, relay)

    @property
    def words(self) -> str:
        return {DIRECT: "reachable directly", RELAY: "reachable through a relay only",
                UNREACHABLE: "not reachable by other peers", UNKNOWN: "reachability not known yet"}[self.state]


def fix_text(port: int, announced: list[str] | tuple[str, ...] = (), *, runtime: str = "native",
             platform: str | None = None, announce_setting: str = "") -> str:
    """What the user does so that peers reach the node: the port to forward, the firewall rule, and under
    WSL2 the port proxy or WSL's mirrored networking."""
    platform = platform or sys.platform
    where = f" at {', '.join(announced)}" if announced else ""
    parts = [f"Other peers could not open a connection to this node{where}."]
    if port:
        parts.append(f"Forward TCP port {port} on your router to this computer (the router's port forwarding "
                     "page; or enable UPnP there), and allow incoming TCP connections on port "
                     f"{port} in the firewall (Linux: sudo ufw allow {port}/tcp; Windows, as administrator: "
                     f"New-NetFirewallRule -DisplayName FarNode -Direction Inbound -Protocol TCP -LocalPort {port} "
                     "-Action Allow).")
    else:
        parts.append("The node uses a random port: set a fixed port in Settings > Network, forward it on your "
                     "router to this computer and allow it in the firewall.")
    if runtime == "wsl2" or platform == "win32":
        p = port or "<port>"
        parts.append("The engine runs inside WSL2, behind Windows: forward the port from Windows into WSL "
                     f"(as administrator: netsh interface portproxy add v4tov4 listenaddress=0.0.0.0 "
                     f"listenport={p} connectaddress=<the address `wsl hostname -I` prints> connectport={p}), or "
                     "turn on WSL's mirrored networking ([wsl2] networkingMode=mirrored in "
                     "%UserProfile%\\.wslconfig, then `wsl --shutdown`).")
    if announce_setting:
        parts.append(f"Check the announced address in Settings > Network ({announce_setting}): it must be an "
                     "address other peers can reach this computer at (its public address or name).")
    return " ".join(parts)


def assess(*, engine_direct: bool | None, engine_asked: int = 0, using_relay: bool | None = None,
           answered: bool | None = None, fix: str = "") -> ReachabilityStatus:
    """Combine the engine's check and the network view into one status."""
    if engine_direct is True:
        return ReachabilityStatus(DIRECT, f"{engine_asked or 'the'} peer{'s' * (engine_asked != 1)} of the network "
                                          "reached this node directly")
    if engine_direct is False:
        if answered and using_relay:
            return ReachabilityStatus(RELAY, "peers could not reach this node directly; it serves through a relay "
                                             "(slower for its clients)", fix)
        return ReachabilityStatus(UNREACHABLE, "peers of the network could not reach this node directly"
                                  + ("" if answered is None else " and it did not answer a fresh connection"
                                     if not answered else ""), fix)
    if answered is False:
        return ReachabilityStatus(UNREACHABLE, "a fresh connection to the address this node announces was not "
                                               "answered", fix)
    return ReachabilityStatus(UNKNOWN, "no other peer could check it yet (it answers again once peers join)"
                              if answered is None else "no other peer could check it yet; this computer "
                                                       "reached it at its announced address")
