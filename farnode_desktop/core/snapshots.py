"""Values that cross module boundaries (event payloads), and the event topics they travel on.

All are immutable snapshots so they can be handed to other threads (the metrics writer, the GUI) safely.

They travel on the event bus under the topics of :mod:`farnode_desktop.core.topics`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from farnode_desktop.engine.protocol import COUNTER_FIELDS, CounterValues

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

# How a state is drawn (tray icon, dot colour, terminal colour): one kind per meaning.
ICON_STOPPED, ICON_STARTING, ICON_ONLINE, ICON_PAUSED, ICON_ERROR = "stopped", "starting", "online", "paused", "error"
ICON_KINDS = (ICON_STOPPED, ICON_STARTING, ICON_ONLINE, ICON_PAUSED, ICON_ERROR)
KIND_COLOURS = {ICON_STOPPED: "#7f8c8d", ICON_STARTING: "#e0a100", ICON_ONLINE: "#27ae60", ICON_PAUSED: "#2e86de",
                ICON_ERROR: "#d63031"}
#: The same meanings on a terminal (ANSI colour codes).
KIND_ANSI = {ICON_STOPPED: "90", ICON_STARTING: "33", ICON_ONLINE: "32", ICON_PAUSED: "34", ICON_ERROR: "31"}


@dataclass(frozen=True)
class StateInfo:
    """Everything the app says about one node state, in one place."""

    name: str  # the state itself, as NodeState.state carries it
    code: int  # stored in the ``node_state`` metrics series: higher = further along a healthy start
    status: str  # the status line and ``status`` command ("Online", "Loading blocks")
    words: str  # the window and the tray ("Online: contributing")
    icon: str  # one of the ICON_* kinds
    active: bool  # a server process is (being) brought up or serves
    running: bool  # the user's toggle reads "Stop": active, or paused/restarting on the way back

    @property
    def colour(self) -> str:
        return KIND_COLOURS[self.icon]

    @property
    def ansi(self) -> str:
        return KIND_ANSI[self.icon]


def _info(name: str, code: int, status: str, words: str, icon: str, active: bool, running: bool | None = None
          ) -> StateInfo:
    return StateInfo(name, code, status, words, icon, active, active if running is None else running)


STATES: dict[str, StateInfo] = {i.name: i for i in (
    _info(STOPPED, 0, "Stopped", "Stopped", ICON_STOPPED, False),
    _info(FAILED, 1, "Could not start", "Could not start", ICON_ERROR, False),
    _info(HELD, 2, "On hold after crashes", "On hold after crashes", ICON_ERROR, False),
    _info(PAUSED, 3, "Paused", "Paused", ICON_PAUSED, False, running=True),
    _info(RESTARTING, 4, "Restarting after a crash", "Restarting after a crash…", ICON_STARTING, False,
          running=True),
    _info(STOPPING, 5, "Stopping", "Stopping…", ICON_STARTING, False),
    _info(PROVISIONING, 6, "Setting up the engine", "Setting up the engine…", ICON_STARTING, True),
    _info(STARTING, 7, "Starting", "Starting…", ICON_STARTING, True),
    _info(MEASURING, 8, "Measuring throughput", "Starting: measuring speed…", ICON_STARTING, True),
    _info(LOADING, 9, "Loading blocks", "Starting: loading blocks…", ICON_STARTING, True),
    _info(JOINING, 10, "Joining the network", "Starting: joining the network…", ICON_STARTING, True),
    _info(REBALANCING, 11, "Online, moving to other blocks", "Online: moving to other blocks", ICON_ONLINE, True),
    _info(ONLINE, 12, "Online", "Online: contributing", ICON_ONLINE, True),
)}

#: What the app sums over several servers: the counters, and the rates computed from them.
SUMMED_STATS = (*COUNTER_FIELDS, "reported_throughput", "inference_tokens_per_s", "forward_tokens_per_s")

ACTIVE_STATES = frozenset(i.name for i in STATES.values() if i.active)
RUNNING_STATES = frozenset(i.name for i in STATES.values() if i.running)


def state_info(state: str) -> StateInfo:
    """The state's description; a state this version does not know reads as a transition in its own name."""
    info = STATES.get(state)
    if info is None:
        plain = state.replace("_", " ").capitalize()
        info = StateInfo(state, 0, plain, plain, ICON_STARTING, False, False)
    return info


@dataclass(frozen=True)
class NodeState:
    node_id: str  # "main" for a single node; "gpu-<uuid>" per GPU when several serve
    state: str
    message: str = ""  # plain-language detail for the user (why it failed, what to do)
    category: str = ""  # failure category: port_in_use, bootstrap, model, gated, oom_at_load, disk_full, crash ...
    time: float = 0.0


@dataclass(frozen=True)
class NodeStats(CounterValues):
    """One node's numbers at ``time`` (epoch seconds). The counters (:class:`CounterValues`, the engine's own
    list) are cumulative since the node's server process started; they go back to 0 when it restarts
    (``run_id`` changes)."""

    time: float
    node_id: str
    run_id: str
    state: str
    peer_id: str = ""
    blocks: tuple[int, ...] = ()
    total_blocks: int = 0
    uptime_s: float = 0.0
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
