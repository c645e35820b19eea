"""Values that cross module boundaries (event payloads), and the event topics they travel on.

All are immutable snapshots so they can be handed to other threads (the metrics writer, the GUI) safely.

They travel on the event bus under the topics of :mod:`farnode_desktop.core.topics`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Node lifecycle states, in the order a healthy start passes through them.
STOPPED = "stopped"
PROVISIONING = "provisioning"  # engine environment / model being prepared
STARTING = "starting"
MEASURING = "measuring_throughput"
LOADING = "loading_blocks"
JOINING = "joining"
ONLINE = "online"
REBALANCING = "rebalancing"
STOPPING = "stopping"
RESTARTING = "restarting"  # crashed; waiting for the back-off before the next start
HELD = "held"  # too many crashes: on hold until the user acts
FAILED = "failed"  # a start failed for a reason that a retry will not fix (bad settings, port in use ...)
PAUSED = "paused"  # left the network on purpose (policies, manual pause)

ACTIVE_STATES = frozenset({PROVISIONING, STARTING, MEASURING, LOADING, JOINING, ONLINE, REBALANCING})


@dataclass(frozen=True)
class NodeState:
    node_id: str  # "main" for a single node; "gpu-<uuid>" per GPU when several serve
    state: str
    message: str = ""  # plain-language detail for the user (why it failed, what to do)
    category: str = ""  # failure category: port_in_use, bootstrap, model, gated, oom_at_load, disk_full, crash ...
    time: float = 0.0


@dataclass(frozen=True)
class NodeStats:
    """One node's numbers at ``time`` (epoch seconds). Counters are cumulative since the node's server
    process started; they go back to 0 when it restarts (``run_id`` changes)."""

    time: float
    node_id: str
    run_id: str
    state: str
    peer_id: str = ""
    blocks: tuple[int, ...] = ()
    total_blocks: int = 0
    uptime_s: float = 0.0
    inference_sessions: int = 0
    inference_steps: int = 0
    inference_tokens: int = 0
    forward_requests: int = 0
    forward_tokens: int = 0
    backward_requests: int = 0
    backward_tokens: int = 0
    reported_throughput: float = 0.0  # tokens/s the server announces to the swarm
    inference_rps: float = 0.0  # measured, per block
    forward_rps: float = 0.0
    network_rps: float = 0.0
    # Rates over the last few seconds, computed by the supervisor from the counters:
    inference_tokens_per_s: float = 0.0
    forward_tokens_per_s: float = 0.0

    @property
    def requests(self) -> int:
        return self.inference_sessions + self.forward_requests + self.backward_requests

    @property
    def tokens_served(self) -> int:
        return self.inference_tokens + self.forward_tokens + self.backward_tokens


@dataclass(frozen=True)
class NodeEvent:
    time: float
    node_id: str
    kind: str  # start, online, stop, crash, restart, hold, pause, resume, payout, error
    message: str = ""
    data: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GpuTelemetry:
    """One GPU's sample. ``None`` means "not available" on this GPU/driver (stored as NULL, shown n/a)."""

    time: float
    index: int
    uuid: str
    gpu_util_pct: float | None = None
    mem_util_pct: float | None = None
    mem_used_mib: float | None = None
    mem_total_mib: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    fan_pct: float | None = None
    sm_clock_mhz: float | None = None
    lost: bool = False


@dataclass(frozen=True)
class EngineProgress:
    percent: float
    step: str  # e.g. "installing torch 2.13.0+cpu (3/61)"
    done: bool = False
    error: str = ""
