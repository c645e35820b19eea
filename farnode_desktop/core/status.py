"""How the node is doing, in words a person reads and as data for scripts: the headless status line, the
``status`` command (through the control socket) and ``status --json`` share these."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from decimal import Decimal
from typing import Any

from farnode_desktop.core import snapshots as C


def blocks_text(stats: C.NodeStats) -> str:
    if not stats.blocks:
        return ""
    first, last = stats.blocks[0], stats.blocks[-1]
    span = f"block {first}" if first == last else f"blocks {first}-{last}"
    return f"{span} of {stats.total_blocks}" if stats.total_blocks else span


def describe(state: C.NodeState, stats: C.NodeStats) -> str:
    """The state in words: "Measuring throughput", "Online, serving blocks 0-3 of 4", "Paused: <why>"."""
    words = C.state_info(state.state).status
    if state.state == C.ONLINE and stats.blocks:
        return f"Online, serving {blocks_text(stats)}"
    if state.state == C.LOADING and state.message:
        return "Loading " + state.message.removeprefix("loading ")
    if state.state == C.PAUSED and state.message:
        return f"Paused: {state.message.removeprefix('Paused: ')}"
    return words


def start_timeline_text(timeline: list[dict]) -> str:
    """The last start in words, from its timeline (``status --json``'s ``start_timeline``): "online 4.7 s after
    the order; longest: imports 3.8 s", and what a standby launcher did ahead. Empty before any start."""
    waited = [p for p in timeline if not p.get("ahead")]
    if not waited:
        return ""
    last = waited[-1]
    if last.get("phase") != "announce":
        return f"in progress: {last.get('phase')} done {last.get('at_s', 0.0):.1f} s after the order"
    longest = max(waited, key=lambda p: p.get("seconds", 0.0))
    text = (f"online {last.get('at_s', 0.0):.1f} s after the order; longest: {longest.get('phase')} "
            f"{longest.get('seconds', 0.0):.1f} s")
    ahead = [p for p in timeline if p.get("ahead")]
    if ahead:
        text += (f" ({', '.join(str(p.get('phase')) for p in ahead)} "
                 f"{sum(p.get('seconds', 0.0) for p in ahead):.1f} s done ahead by the standby)")
    return text


def uptime_text(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def reachability_from_addresses(swarm_is_local: bool, addrs: list[str], state: str) -> dict:
    """Who can reach the node, from the addresses its server announced: ``scope`` is ``this computer``,
    ``local network``, ``internet`` or ``unknown`` (not announced yet), ``text`` says it in words."""
    if swarm_is_local:
        return {"scope": "this computer", "text": "this computer only (the local demo swarm)", "addresses": addrs}
    best, where = "", ""
    rank = {"this computer": 1, "local network": 2, "internet": 3}
    for a in addrs:
        parts = a.split("/")
        if len(parts) < 3 or parts[1] not in ("ip4", "ip6"):
            continue
        try:
            ip = ipaddress.ip_address(parts[2])
        except ValueError:
            continue
        scope = ("this computer" if ip.is_loopback else "local network" if ip.is_private or ip.is_link_local
                 else "internet")
        if rank[scope] > rank.get(best, 0):
            best, where = scope, a
    if not best:
        text = "not known yet (the node has not announced its addresses)" if state != C.ONLINE else \
            "unknown (no address announced)"
        return {"scope": "unknown", "text": text, "addresses": addrs}
    texts = {"internet": f"from the internet, at {where}", "local network": f"on the local network only, at {where}",
             "this computer": "this computer only (it announced loopback addresses only)"}
    return {"scope": best, "text": texts[best], "addresses": addrs}


def plain(value: Any) -> Any:
    """JSON-ready: dataclasses as objects, Decimals as numbers, non-finite floats as null."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def stats_fields(stats: C.NodeStats) -> dict:
    """The node's counters and rates as the ``node.stats`` JSON lines carry them, with their totals."""
    d = plain(stats)
    d.update(requests=stats.requests, tokens_served=stats.tokens_served,
             tokens_per_s=stats.inference_tokens_per_s + stats.forward_tokens_per_s)
    return d
