"""The network around the node, as its DHT tells it: models served, block coverage, servers. Pure data.

Built from the snapshots of the engine-side probe (``engine/swarm_probe.py``): the engine's model index
(``_farmesh.models``) and, per model, every server's announced record. Coverage counts servers that are
online; a joining server is listed but covers nothing yet.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

HF_PREFIX = "https://huggingface.co/"


@dataclass(frozen=True)
class ServerView:
    peer_id: str
    blocks: tuple[int, ...]
    state: str  # online | joining | offline
    throughput: float  # tokens/s it announced for its span
    public_name: str = ""
    version: str = ""
    using_relay: bool | None = None
    cache_tokens_left: int | None = None
    torch_dtype: str = ""
    quant_type: str = ""
    inference_rps: float | None = None
    forward_rps: float | None = None
    network_rps: float | None = None
    mine: bool = False  # one of this node's servers
    answered: bool | None = None  # called by the probe: did it answer (None: not called)

    @property
    def span(self) -> tuple[int, int]:
        return (min(self.blocks), max(self.blocks) + 1) if self.blocks else (0, 0)

    @property
    def online(self) -> bool:
        return self.state == "online"


@dataclass(frozen=True)
class ModelView:
    dht_prefix: str
    num_blocks: int
    repository: str  # https://huggingface.co/<id>, or "" for a model served from a folder
    servers: tuple[ServerView, ...]
    servers_per_block: tuple[int, ...] = field(default=())  # online servers
    throughput_per_block: tuple[float, ...] = field(default=())  # tokens/s, summed over online servers

    @property
    def model_id(self) -> str:
        """The Hugging Face id, when the model index names its repository there."""
        r = self.repository or ""
        return r[len(HF_PREFIX):].strip("/") if r.startswith(HF_PREFIX) else ""

    @property
    def name(self) -> str:
        return self.model_id or self.dht_prefix

    @property
    def complete(self) -> bool:
        """Every block is served by at least one online server: a client can generate through it."""
        return bool(self.servers_per_block) and min(self.servers_per_block) > 0

    @property
    def least_covered(self) -> tuple[int, int]:
        """The longest run of blocks with the least throughput (start, end): where a new server helps most."""
        return least_covered_span(self.throughput_per_block)

    @property
    def mine(self) -> tuple[tuple[int, int], ...]:
        return tuple(s.span for s in self.servers if s.mine and s.blocks)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model_id"], d["complete"] = self.model_id, self.complete
        d["least_covered"] = list(self.least_covered)
        start, end = self.least_covered
        d["least_covered_servers"] = min(self.servers_per_block[start:end], default=0)
        d["least_covered_throughput"] = min(self.throughput_per_block[start:end], default=0.0)
        d["mine"] = [list(s) for s in self.mine]
        return d


@dataclass(frozen=True)
class NetworkView:
    time: float
    models: tuple[ModelView, ...]
    my_peers: tuple[str, ...] = ()
    probe_peer: str = ""
    error: str = ""  # the last reading failed (the models are then from the reading before)

    def model(self, name: str) -> ModelView | None:
        for m in self.models:
            if name in (m.dht_prefix, m.model_id, m.repository):
                return m
        return None

    def my_servers(self) -> list[tuple[ModelView, ServerView]]:
        return [(m, s) for m in self.models for s in m.servers if s.mine]

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "probe_peer": self.probe_peer, "my_peers": list(self.my_peers),
                "error": self.error, "models": [m.to_dict() for m in self.models]}


def least_covered_span(values: tuple[float, ...] | list[float]) -> tuple[int, int]:
    if not values:
        return (0, 0)
    low = min(values)
    best, start = (0, 0), None
    for i, v in enumerate([*values, None]):
        if v is not None and v == low:
            start = i if start is None else start
        elif start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


def _server(raw: dict, mine: set[str], checks: dict) -> ServerView:
    peer = str(raw.get("peer_id", ""))
    check = checks.get(peer) or {}
    cache = raw.get("cache_tokens_left")  # as announced (the engine's rpc_info counts in other units)
    return ServerView(
        peer_id=peer, blocks=tuple(sorted(int(b) for b in raw.get("blocks") or [])), state=str(raw.get("state", "")),
        throughput=float(raw.get("throughput") or 0.0), public_name=str(raw.get("public_name") or ""),
        version=str(raw.get("version") or ""), using_relay=raw.get("using_relay"),
        cache_tokens_left=cache if isinstance(cache, int) else None, torch_dtype=str(raw.get("torch_dtype") or ""),
        quant_type=str(raw.get("quant_type") or ""), inference_rps=raw.get("inference_rps"),
        forward_rps=raw.get("forward_rps"), network_rps=raw.get("network_rps"), mine=peer in mine,
        answered=check.get("answered"))


def build_view(snapshot: dict, my_peers: set[str] | tuple[str, ...] = (), *, now: float | None = None) -> NetworkView:
    """A :class:`NetworkView` from one ``network`` event of the probe."""
    mine = set(my_peers)
    checks = snapshot.get("checks") or {}
    models = []
    for m in snapshot.get("models") or []:
        n = int(m.get("num_blocks") or 0)
        servers = tuple(_server(s, mine, checks) for s in m.get("servers") or [])
        count, tput = [0] * n, [0.0] * n
        for s in servers:
            if not s.online:
                continue
            for b in s.blocks:
                if 0 <= b < n:
                    count[b] += 1
                    tput[b] += s.throughput
        models.append(ModelView(dht_prefix=str(m.get("dht_prefix", "")), num_blocks=n,
                                repository=str(m.get("repository") or ""), servers=servers,
                                servers_per_block=tuple(count), throughput_per_block=tuple(tput)))
    return NetworkView(time=snapshot.get("t") or (now if now is not None else time.time()),
                       models=tuple(sorted(models, key=lambda m: m.name)), my_peers=tuple(sorted(mine)),
                       probe_peer=str(snapshot.get("peer_id") or ""))


# ---------------------------------------------------------------------------------------- the choice
@dataclass(frozen=True)
class Candidate:
    model_id: str
    fit_blocks: int  # blocks this node's GPUs hold of it (0: it does not fit)
    why_not: str = ""  # why it cannot be served here (gated, too large, unreadable config)


def choose_model(view: NetworkView, candidates: list[Candidate]) -> tuple[str, str]:
    """The model where this GPU adds the most, and why: among models that fit, the one whose least-covered
    blocks have the least throughput (a gap first); on a tie, the one where this node covers more of that
    span. ("", why) when none fits."""
    fits = {c.model_id: c for c in candidates if c.fit_blocks > 0 and not c.why_not}
    scored = []
    for m in view.models:
        c = fits.get(m.model_id)
        if c is None:
            continue
        start, end = m.least_covered
        low = min(m.throughput_per_block[start:end], default=0.0)
        covers = min(c.fit_blocks, end - start)
        scored.append((low, -covers / max(end - start, 1), m.model_id, m, c))
    if not scored:
        skipped = "; ".join(f"{c.model_id}: {c.why_not or 'does not fit'}" for c in candidates) or \
            "the network announces no model served from the Hugging Face hub"
        return "", f"no model of the network can be served here ({skipped})"
    low, _, model_id, m, c = sorted(scored, key=lambda t: t[:3])[0]
    start, end = m.least_covered
    servers = min(m.servers_per_block[start:end], default=0)
    state = "no server at all" if servers == 0 else f"{servers} server{'s' * (servers != 1)} ({low:.0f} tokens/s)"
    return model_id, (f"{model_id}: its least-covered blocks {start}-{end - 1} have {state}, and this node fits "
                      f"{c.fit_blocks} of its {m.num_blocks} blocks" + (
                          f" (compared with {len(scored) - 1} other model{'s' * (len(scored) != 2)} that fit)"
                          if len(scored) > 1 else ""))
