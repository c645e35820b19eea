"""What the node will run, decided before it runs.

For the current settings, the model's configuration (a Hugging Face id read through
:mod:`farnode_desktop.core.models.hub`, or a folder) and the GPUs (NVML), :func:`make_plan` returns one
:class:`PlannedServer` per contributing GPU, or one on the CPU: device (``cuda`` pinned to one GPU through
``CUDA_VISIBLE_DEVICES``), how many blocks (the engine picks which ones, within that count, unless the
user fixed them), quantization, dtype, attention cache, the addresses it listens on and announces, and why.
``farnode-desktop plan`` prints it; :class:`~farnode_desktop.core.node.controller.NodeController` starts it.

- **Addresses.** Only the local demo swarm stays on loopback. A public or custom network listens on every
  interface, IPv4 and IPv6, unless the user set a listen address (an IPv4 or IPv6 address, or a host name). Other peers must dial the announced address: the user's
  ``announce_address`` when set; else the listen address when it is a specific one; else, on a custom
  network, the address this computer uses to reach its first peer (a LAN address for peers on the LAN,
  127.0.0.1 for peers on this computer), unless a peer is on the internet and that address is a private one
  (see :func:`route_announce`); else (the public network, or a node that starts a new network)
  the engine announces its interfaces and what its peers observe, and the reachability check says whether
  that works.
- **dtype.** The model's own (config.json ``torch_dtype``) on a GPU, float16 instead of bfloat16 when one
  of the GPUs predates bfloat16 (compute capability < 8.0), float32 on the CPU; the same for every server
  the app starts. The engine's own ``auto`` would turn a float32 model into bfloat16 on one node and not on
  another, and the chain's answers would no longer match the model.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

from farnode_desktop.core.gpu.inventory import GpuInventory
from farnode_desktop.core.models.hub import ModelConfig, cached_weights, hub_cache_dir
from farnode_desktop.core.node.demo_swarm import launcher_config
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.settings import CUSTOM_SWARM, LOCAL_SWARM, Settings
from farnode_desktop.engine.protocol import WILDCARD_HOSTS, listen_maddrs, tcp_maddr

MIN_CC_BF16 = (8, 0)  # Ampere: the first GPUs that compute in bfloat16


@dataclass(frozen=True)
class PlannedServer:
    """One server process of the plan: what it serves, where, and why."""

    node_id: str
    device: str  # "cuda" (cuda:0 of the one GPU it sees) or "cpu"
    gpu: str  # "GPU 0: NVIDIA GeForce RTX 4090" or "CPU"
    gpu_uuid: str
    num_blocks: int  # how many blocks it serves (the engine chooses which, unless block_indices is set)
    block_indices: str  # "start:end" when fixed (the local swarm, or the user's choice), else ""
    quantization: str  # none | int8 | nf4
    torch_dtype: str
    attn_cache_tokens: int  # 0: the engine's default
    listen: tuple[str, ...]  # multiaddrs it listens on
    announce: tuple[str, ...]  # multiaddrs it announces; empty: the engine announces what it sees
    model: str
    reason: str
    config: dict = field(hash=False, compare=False)  # the launcher's configuration
    env: dict = field(hash=False, compare=False)  # environment overrides (CUDA_VISIBLE_DEVICES)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["listen"], d["announce"] = list(self.listen), list(self.announce)
        d.pop("config")
        return d


@dataclass(frozen=True)
class NodePlan:
    network: str  # local | public | custom
    model: str
    model_source: str  # demo | folder | cache | hub | unknown
    dtype_reason: str
    announce_reason: str
    servers: tuple[PlannedServer, ...]
    notes: tuple[str, ...] = ()
    initial_peers: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"network": self.network, "model": self.model, "model_source": self.model_source,
                "dtype_reason": self.dtype_reason, "announce_reason": self.announce_reason,
                "initial_peers": list(self.initial_peers), "notes": list(self.notes),
                "servers": [s.to_dict() for s in self.servers]}


# ------------------------------------------------------------------------------------------ decisions
def choose_dtype(settings: Settings, model_dtype: str, device: str,
                 capabilities: list[tuple[int, int] | None] | None = None) -> tuple[str, str]:
    """The dtype every server of this node computes in, and why."""
    wanted = settings.network.torch_dtype
    if wanted != "auto":
        return wanted, f"{wanted}, as set in Settings > Network"
    if device == "cpu":
        return "float32", "float32: the CPU computes in float32"
    dtype = model_dtype if model_dtype in ("float16", "bfloat16", "float32") else "float16"
    why = f"{dtype}, the model's own dtype" if model_dtype == dtype else \
        "float16 (the model's config names no dtype)"
    if dtype == "bfloat16" and any(cc is None or cc < MIN_CC_BF16 for cc in (capabilities or [])):
        return "float16", ("float16: the model is bfloat16, but a GPU older than compute capability 8.0 "
                           "cannot compute in bfloat16")
    return dtype, why


def _peer_ips(peers: list[str]) -> list[str]:
    """The IP addresses of the peers given as ``/ip4/`` or ``/ip6/`` multiaddrs, in order."""
    out = []
    for p in peers:
        parts = p.strip("/").split("/")
        if parts[:1] == ["ip6zone"]:
            parts = parts[2:]
        if len(parts) >= 2 and parts[0] in ("ip4", "ip6"):
            out.append(parts[1])
    return out


def _on_the_internet(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_global
    except ValueError:
        return False


def route_announce(peers: list[str], source_for) -> tuple[str | None, str]:
    """On a custom network with initial ``peers``: the address to announce (None: the engine decides) and
    why. ``source_for(ip)`` is the local address this computer sends from to reach ``ip`` (the routing
    table's choice, :func:`source_address`).

    Peers on this computer or the local network (loopback, private, link-local, shared address space) dial
    the address this computer reaches them from. When any peer is on the internet, a private source address
    (behind a router) is of no use to it: the engine announces this computer's addresses and the public one
    its peers observe, and the reachability check says whether that works (else: announce address, with the
    port forwarded). A public source address (no NAT) is announced as it is."""
    ips = _peer_ips(peers)
    if not ips:
        named = [p for p in peers if p.strip("/").split("/")[0].startswith("dns")]
        where = f" ({named[0].split('/')[2]})" if named and len(named[0].split("/")) > 2 else ""
        return None, (f"the network's peers are named by host name{where}: the engine announces this "
                      "computer's addresses and those its peers see; the reachability check tells whether "
                      "peers reach it")
    public = [ip for ip in ips if _on_the_internet(ip)]
    if public:
        src = source_for(public[0])
        if src and _on_the_internet(src):
            return src, f"{src}, this computer's public address, from which it reaches the network ({public[0]})"
        return None, (f"the network's peers are on the internet ({public[0]}), and this computer reaches them "
                      f"from {src or 'an address behind a router'}, which they cannot dial: the engine announces "
                      "the public address its peers see. If the reachability check says peers cannot reach "
                      "this node, forward its port on your router and set your public address as the announce "
                      "address in Settings > Network")
    src = source_for(ips[0])
    if src:
        return src, f"{src}, the address this computer reaches the network's first peer ({ips[0]}) from"
    return None, ("the engine announces this computer's addresses and those its peers see; the reachability "
                  "check tells whether peers reach it")


def source_address(peer_ip: str) -> str | None:
    """The local address this computer sends from to reach ``peer_ip`` (the routing table's choice; a UDP
    socket's connect sends nothing)."""
    family = socket.AF_INET6 if ":" in peer_ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((peer_ip, 9))
            return s.getsockname()[0]
    except OSError:
        return None


def listen_host(settings: Settings) -> str:
    net = settings.network
    return net.host or ("127.0.0.1" if net.swarm == LOCAL_SWARM else "0.0.0.0")


def announce_host(settings: Settings) -> tuple[str | None, str]:
    """The address to announce (None: the engine decides) and why."""
    net = settings.network
    host = listen_host(settings)
    if net.swarm == LOCAL_SWARM:
        return None, "the local swarm stays on this computer (127.0.0.1)"
    if net.announce_address:
        return net.announce_address, f"{net.announce_address}, as set in Settings > Network"
    if host not in WILDCARD_HOSTS:
        return host, f"{host}, the address it listens on (Settings > Network)"
    if net.swarm == CUSTOM_SWARM:
        if not net.initial_peers:
            return None, ("this node starts a new network: it announces its interfaces' addresses; share its "
                          "address with the other members")
        return route_announce(list(net.initial_peers), source_address)
    return None, ("the engine announces this computer's addresses and those its peers see; the reachability "
                  "check tells whether peers reach it")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------ the plan
def make_plan(settings: Settings, paths: AppPaths, *, inventory: GpuInventory | None,
              model: ModelConfig | None = None, model_path: Path | None = None, chosen_why: str = "") -> NodePlan:
    """The node's plan. ``inventory``: the GPUs (None or empty: the CPU); ``model``: the model's
    configuration for a public or custom network; ``model_path``: the demo model on the local swarm."""
    from farnode_desktop.core.gpu.sizing import ModelSpec, recommend

    net = settings.network
    local = net.swarm == LOCAL_SWARM
    base = launcher_config(settings, paths, model_path=model_path, model=model.model if model else None)
    notes: list[str] = []
    config_dict = model.config if model is not None else None
    if config_dict is None and model_path is not None and (Path(model_path) / "config.json").is_file():
        import json

        config_dict = json.loads((Path(model_path) / "config.json").read_text())
    spec = None
    if config_dict is not None:
        try:
            spec = ModelSpec.from_config_dict(config_dict, name=net.model or (model_path and Path(model_path).name))
        except Exception as exc:  # noqa: BLE001 - not Llama-style: the engine sizes it itself
            notes.append(f"blocks are sized by the engine ({getattr(exc, 'message', exc)})")
    model_dtype = spec.torch_dtype if spec else str((config_dict or {}).get("torch_dtype") or "")

    # -- devices: one server per contributing GPU, else one on the CPU
    gpu_plans = []
    cpu_reason = ""
    if net.device == "cpu":
        cpu_reason = "the CPU was chosen in Settings > Network"
    elif inventory is None or not inventory.gpus:
        cpu_reason = (inventory.error if inventory is not None else "") or "no NVIDIA GPU was found"
    elif spec is None:
        cpu_reason = "the model's size is unknown, so no GPU plan could be made"
    else:
        caps = [g.compute_capability for g in inventory.gpus if not g.lost]
        dtype, _ = choose_dtype(settings, model_dtype, "cuda", caps)
        rec = recommend(inventory, settings, spec, dtype=dtype)
        notes += [rec.variant.reason, *rec.notes]
        gpu_plans = list(rec.plans)
        if not gpu_plans:
            cpu_reason = rec.summary
    device = "cuda" if gpu_plans else "cpu"
    caps = [g.compute_capability for g in inventory.gpus if not g.lost] if (inventory and gpu_plans) else []
    dtype, dtype_reason = choose_dtype(settings, model_dtype, device, caps)
    host = listen_host(settings)
    announce, announce_reason = announce_host(settings)
    # A hub model whose weights are already in the Hugging Face cache is served from there (nothing is
    # downloaded again); otherwise the engine downloads the blocks it serves into the app's own cache.
    weights_cached = bool(model is not None and model.source != "folder" and cached_weights(model.model))
    if weights_cached:
        notes.append(f"the model's weights are read from the Hugging Face cache ({hub_cache_dir()})")

    servers: list[PlannedServer] = []
    total = spec.num_layers if spec else int((config_dict or {}).get("num_hidden_layers") or 0)
    if gpu_plans:
        units = [(p.node_id, "cuda", f"GPU {p.gpu_index}: {_gpu_name(inventory, p.gpu_index)}", p.gpu_uuid,
                  p.num_blocks, p.quantization, p.attn_cache_tokens, p.port, dict(p.env), p.reason)
                 for p in gpu_plans]
    else:
        blocks = net.num_blocks or (total if local else 1)
        why = f"on the CPU: {cpu_reason}"
        if not local and not net.num_blocks:
            why += "; 1 block (a CPU is slow: set the number of blocks in Settings > Network to serve more)"
        units = [("main", "cpu", "CPU", "", blocks, "none", 0, net.port, {}, why)]
    for node_id, dev, gpu_name, uuid, blocks, quant, tokens, port, env, reason in units:
        if announce is not None and not port:
            port = _free_port()  # an announced address needs a fixed port
        cfg = dict(base, device=dev, torch_dtype=dtype, port=port, host=host,
                   identity_path=str(paths.run_dir / f"identity-{node_id}.key"))
        if weights_cached:
            cfg["cache_dir"] = str(hub_cache_dir())
        if total and blocks:
            blocks = min(blocks, total)
        if local:
            cfg["block_indices"] = f"0:{blocks or total}"
            cfg.pop("num_blocks", None)
        else:
            cfg.pop("block_indices", None)
            cfg["num_blocks"] = blocks
        if dev == "cuda":
            cfg["quant_type"] = quant
            cfg["attn_cache_tokens"] = tokens
        elif not local:
            cfg["quant_type"] = "none"
        announce_maddrs = [tcp_maddr(announce, port)] if announce is not None else []
        if announce_maddrs:
            cfg["announce_maddrs"] = announce_maddrs
        else:
            cfg.pop("announce_maddrs", None)
        servers.append(PlannedServer(
            node_id=node_id, device=dev, gpu=gpu_name, gpu_uuid=uuid, num_blocks=blocks,
            block_indices=cfg.get("block_indices", ""), quantization=cfg.get("quant_type") or "none",
            torch_dtype=dtype, attn_cache_tokens=tokens, listen=tuple(listen_maddrs(host, port)),
            announce=tuple(announce_maddrs), model=str(cfg["model"]), reason=reason, config=cfg, env=env))
    source = "demo" if local else (model.source if model is not None else "unknown")
    if chosen_why:
        notes.insert(0, f"model chosen by the app: {chosen_why}")
    peers = tuple(base.get("initial_peers") or ())
    return NodePlan(network=net.swarm, model=str(base["model"]), model_source=source, dtype_reason=dtype_reason,
                    announce_reason=announce_reason, servers=tuple(servers), notes=tuple(notes),
                    initial_peers=peers)


def _gpu_name(inventory: GpuInventory | None, index: int) -> str:
    for g in (inventory.gpus if inventory else ()):
        if g.index == index:
            return g.name
    return "?"



def plan_for(settings: Settings, paths: AppPaths, *, nvml=None, model: ModelConfig | None = None,
             model_path: Path | None = None, token=None, chosen_why: str = "") -> NodePlan:
    """The plan for these settings, reading what it needs: the GPUs (NVML, unless the CPU is chosen) and
    the model's configuration (public/custom network: the Hugging Face cache or the hub, with ``token()``
    for gated models; raises a HubError that says what to do). Blocking (NVML, maybe the network)."""
    from farnode_desktop.core.gpu.inventory import read_inventory

    inventory = read_inventory(nvml, with_processes=True) if settings.network.device != "cpu" else None
    if settings.network.swarm == LOCAL_SWARM:
        if model_path is None:
            from farnode_desktop.core.node.demo_swarm import demo_model_path

            model_path = demo_model_path(paths)
    elif model is None:
        from farnode_desktop.core.errors import SettingsError
        from farnode_desktop.core.models.hub import HubClient

        if not settings.network.model.strip():
            raise SettingsError("No model is set for this network. Choose one in Settings > Network"
                                + (" (or start the node: on the public network it picks the model where this "
                                   "GPU helps most)." if settings.network.swarm == "public" else "."))
        model = HubClient(token).model_config(settings.network.model)
    return make_plan(settings, paths, inventory=inventory, model=model, model_path=model_path, chosen_why=chosen_why)


def format_plan(plan: NodePlan) -> list[str]:
    """The plan as lines of text (``farnode-desktop plan``)."""
    lines = [f"Network: {plan.network}" + (f" (initial peers: {', '.join(plan.initial_peers)})"
                                           if plan.initial_peers else ""),
             f"Model: {plan.model} ({plan.model_source})",
             f"dtype: {plan.dtype_reason}",
             f"Announced address: {plan.announce_reason}"]
    for s in plan.servers:
        blocks = f"blocks {s.block_indices}" if s.block_indices else f"{s.num_blocks} blocks (the engine picks which)"
        lines.append(f"Server {s.node_id}: {s.gpu}, device {s.device}"
                     + (f" (CUDA_VISIBLE_DEVICES={s.env['CUDA_VISIBLE_DEVICES']})" if s.env.get(
                         "CUDA_VISIBLE_DEVICES") else ""))
        lines.append(f"    {blocks}, quantization {s.quantization}, {s.torch_dtype}, attention cache "
                     f"{s.attn_cache_tokens or 'engine default'}" + (" tokens" if s.attn_cache_tokens else ""))
        lines.append(f"    listens on {', '.join(s.listen)}; announces "
                     f"{', '.join(s.announce) if s.announce else 'what the engine sees'}")
        lines.append(f"    why: {s.reason}")
    for n in plan.notes:
        lines.append(f"note: {n}")
    return lines


def choose_public_model(settings: Settings, runtime, *, nvml=None, token=None, log_path: Path
                        ) -> tuple[ModelConfig, str]:
    """The public network with no model set: read the network (the engine's probe through ``runtime``), and
    pick the model where this node's GPUs add the most (it fits, and its blocks are the least covered).
    Returns (ModelConfig, why). Blocking (the probe: seconds; the hub). ``token``: a callable giving the
    Hugging Face token, or None."""
    import logging

    from farnode_desktop.core.errors import FarNodeError
    from farnode_desktop.core.gpu.inventory import read_inventory
    from farnode_desktop.core.gpu.sizing import ModelSpec, recommend
    from farnode_desktop.core.models.hub import HubClient
    from farnode_desktop.core.network.monitor import read_once
    from farnode_desktop.core.network.view import Candidate, choose_model

    view = read_once(runtime, initial_peers=[], nat_traversal=settings.network.nat_traversal, log_path=log_path)
    hub = HubClient(token)
    inventory = read_inventory(nvml, with_processes=True) if settings.network.device != "cpu" else None
    configs, candidates = {}, []
    for m in view.models:
        if not m.model_id:
            continue
        try:
            cfg = hub.model_config(m.model_id)
            spec = ModelSpec.from_config_dict(cfg.config, name=m.model_id)
        except FarNodeError as exc:
            candidates.append(Candidate(m.model_id, 0, exc.message))
            continue
        configs[m.model_id] = cfg
        if inventory is None or not inventory.gpus:
            fit = settings.network.num_blocks or 1  # the CPU serves what the settings say
        else:
            dtype, _ = choose_dtype(settings, spec.torch_dtype, "cuda", [g.compute_capability for g in inventory.gpus])
            fit = sum(p.num_blocks for p in recommend(inventory, settings, spec, dtype=dtype).plans)
        candidates.append(Candidate(m.model_id, fit, "" if fit else "it does not fit in this GPU's free memory"))
    model_id, why = choose_model(view, candidates)
    if not model_id:
        raise FarNodeError(f"FarNode could not choose a model: {why}. Choose one in Settings > Network.",
                           title="No model to serve")
    logging.getLogger(__name__).info("model chosen for the public network: %s", why)
    return configs[model_id], why
