"""The wire protocol between the app and the processes it runs in the engine's environment.

Standard library only: the launcher and the demo client import it inside the engine's interpreter, and the app
(``core/node``) imports it as the one module of the engine side it may use. Every name that crosses the seam
is spelled here once: event kinds and their fields, the server's lifecycle states, the request counters,
failure categories, exit codes, the control command, and the typed results the app reads.

Transport. An engine process reads its configuration as the first line of standard input (one JSON object)
and commands on the lines after it (:data:`STOP_COMMAND`, :func:`binding_command`); end of file there means the
app is gone. It writes
events as JSON lines on its event pipe: one object per line, ``"e"`` the kind and ``"t"`` epoch seconds, each
line one ``os.write`` shorter than :data:`PIPE_BUF` so that forked processes can share the pipe.

Events are frozen dataclasses (:class:`Event` subclasses). The engine side builds them and sends them with
``EventWriter.send`` (``channel.py``); the app side gets them back from :func:`iter_events`, typed, with
unknown kinds as :class:`Unknown` (a newer engine side may add kinds; the app ignores what it does not know).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

PROTOCOL = 1  # the version a launcher reports in its hello; bump on an incompatible change
PIPE_BUF = 4096  # every event line is one write shorter than this (atomic on a pipe)
STOP_COMMAND = "stop"  # on the control pipe (standard input): stop cleanly
STOP_LINE = (STOP_COMMAND + "\n").encode()
BINDING_COMMAND = "binding"  # on the control pipe: ``binding {"statement": ..., "signature": ...}``
MAX_COMMAND_LINE = 16384  # a longer command line is dropped whole


def binding_command(statement: str, signature: str) -> bytes:
    """The control line that hands a server its signed wallet binding (public: a statement and its signature)."""
    return (BINDING_COMMAND + " " + json.dumps({"statement": statement, "signature": signature}) + "\n").encode()


def parse_binding_command(payload: str) -> tuple[str, str] | None:
    """(statement, signature) from a binding command's JSON payload; None when it is not one."""
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    statement, signature = value.get("statement"), value.get("signature")
    if not isinstance(statement, str) or not isinstance(signature, str) or not statement or not signature:
        return None
    return statement, signature


class ExitCode(enum.IntEnum):
    """How an engine process ended (its exit status)."""

    OK = 0  # stopped cleanly
    CRASH = 1  # a failure a restart may fix
    CONFIG = 2  # the configuration was missing or rejected
    START_FAILED = 3  # a start failure a retry will not fix (see :data:`START_FAILURES`)


class Category:
    """Failure categories of a :class:`Failed` event (the app turns each into a message that says what to do)."""

    PORT_IN_USE = "port_in_use"
    BOOTSTRAP = "bootstrap"  # none of the initial peers answered
    MODEL = "model"  # the model could not be found or loaded
    GATED = "gated"  # a gated model, and no Hugging Face token (or one without access) to read it
    MODEL_UNSUPPORTED = "model_unsupported"  # a model family the engine cannot serve (Falcon today)
    OOM_AT_LOAD = "oom_at_load"
    OOM = "oom"
    DISK_FULL = "disk_full"  # no room for the blocks' weights (the engine's cache) or the app's files
    CONFIG = "config"
    ENGINE_MISSING = "engine_missing"  # the engine environment is missing or broken
    CRASH = "crash"
    STOP_TIMEOUT = "stop_timeout"  # the app's own: the server did not stop in time


# Model families FarMesh knows but cannot serve, and why: the app refuses a model folder of these before
# starting (core/node/model_support.py), the launcher refuses a hub model of these as soon as the engine has
# read its config (engine/hooks.py).
BROKEN_FAMILIES = {
    "falcon": ("FarMesh's Falcon support is broken on the transformers version it runs on (4.43): its server "
               "fails while starting and its client cannot generate (the engine's open issue 608). Choose a "
               "Llama, Mixtral or BLOOM model instead."),
}

# Failures a restart will not fix: the launcher exits with ExitCode.START_FAILED and the app does not retry.
START_FAILURES = frozenset({Category.PORT_IN_USE, Category.MODEL, Category.GATED, Category.MODEL_UNSUPPORTED, Category.CONFIG,
                            Category.OOM_AT_LOAD, Category.DISK_FULL, Category.ENGINE_MISSING})


class ServerState:
    """The server's lifecycle as the launcher reports it in :class:`State` events."""

    STARTING = "starting"
    MEASURING_THROUGHPUT = "measuring_throughput"
    LOADING_BLOCKS = "loading_blocks"
    JOINING = "joining"
    ONLINE = "online"
    REBALANCING = "rebalancing"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True, kw_only=True)
class CounterValues:
    """The per-request counters a server keeps: the one list of their names (:data:`COUNTER_FIELDS`). A
    server reports them as deltas (:class:`Counters`), the app sums them into each node's stats."""

    inference_sessions: int = 0
    inference_sessions_closed: int = 0
    inference_steps: int = 0
    inference_tokens: int = 0
    forward_requests: int = 0
    forward_tokens: int = 0
    backward_requests: int = 0
    backward_tokens: int = 0

    def counter_values(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTER_FIELDS}


COUNTER_FIELDS = tuple(f.name for f in dataclasses.fields(CounterValues))


class ProtocolError(ValueError):
    """A line that is not a well-formed event."""


# ---------------------------------------------------------------------------------------------- events
@dataclass(frozen=True)
class Event:
    KIND: ClassVar[str] = ""
    t: float = 0.0

    def to_dict(self) -> dict:
        """The JSON object on the wire (fields that are None are left out)."""
        out = {"e": self.KIND}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


# The launcher (a block server) -------------------------------------------------------------------------
@dataclass(frozen=True)
class Hello(Event):
    """First event of a launcher: its pid as it sees itself (differs from the host's under WSL2/Docker)."""

    KIND: ClassVar[str] = "hello"
    pid: int = 0
    protocol: int = PROTOCOL
    python: str = ""


@dataclass(frozen=True)
class EngineInfo(Event):
    """The engine the launcher imported."""

    KIND: ClassVar[str] = "engine"
    engine: str = ""
    engine_version: str = ""
    engine_commit: str | None = None  # the source commit pip recorded (a Git install); None from an archive
    torch_version: str = ""
    transformers_version: str = ""
    cuda: bool = False


@dataclass(frozen=True)
class State(Event):
    """A lifecycle step (:class:`ServerState`); ``loading_blocks`` carries block, index and total, ``joining``
    the blocks about to be served, ``stopping`` the reason."""

    KIND: ClassVar[str] = "state"
    state: str = ""
    block: int | None = None
    index: int | None = None
    total: int | None = None
    blocks: tuple[int, ...] | None = None
    reason: str | None = None  # stopping: why


@dataclass(frozen=True)
class Peer(Event):
    """The server's peer id and its multiaddrs (each ending in ``/p2p/<peer id>``)."""

    KIND: ClassVar[str] = "peer"
    peer_id: str = ""
    addrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Throughput(Event):
    """What the server reports to the swarm (tokens/s) and what it measured."""

    KIND: ClassVar[str] = "throughput"
    throughput: float | None = None
    inference_rps: float | None = None
    forward_rps: float | None = None
    network_rps: float | None = None


@dataclass(frozen=True)
class Blocks(Event):
    KIND: ClassVar[str] = "blocks"
    blocks: tuple[int, ...] = ()
    total_blocks: int = 0
    dht_prefix: str | None = None


@dataclass(frozen=True)
class Counters(Event, CounterValues):
    """Counter deltas since the last one from process ``pid``."""

    KIND: ClassVar[str] = "counters"
    pid: int = 0

    def deltas(self) -> dict[str, int]:
        return self.counter_values()


@dataclass(frozen=True)
class Failed(Event):
    """Why the server failed (:class:`Category`), in words, and a technical detail (a traceback's end)."""

    KIND: ClassVar[str] = "failed"
    category: str = Category.CRASH
    message: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Reachability(Event):
    """Whether other peers reach this server directly, by the engine's own peer-to-peer check: peers of the
    network are asked to dial it on a fresh connection. ``direct`` None: no peer could be asked (a node that
    starts a network, before anyone joins). ``via``: ``start`` (the engine's check before it joins) or
    ``peers`` (asked again while it serves); ``asked``: how many peers answered the question."""

    KIND: ClassVar[str] = "reachability"
    direct: bool | None = None
    via: str = ""
    asked: int = 0


class StartPhase:
    """The phases of a start, in order (:class:`Phase` events name them). Each one ends where the next begins,
    so their seconds add up to the whole start."""

    PROCESS = "process"  # the process's creation to the launcher's first line (the interpreter's start)
    IMPORTS = "imports"  # the engine, torch, transformers (peft, bitsandbytes: no CUDA GPU) imported, hooks installed
    ENGINE_SETUP = "engine_setup"  # the bootstrap peers' check, the engine's arguments, the model's config, reachability
    DHT_JOIN = "dht_join"  # the server's DHT node started and joined the swarm
    THROUGHPUT = "throughput"  # the throughput check (FarMesh's cached measurement, or a new one)
    BLOCK_CHOICE = "block_choice"  # memory sizing and the choice of blocks (the swarm's DHT read)
    MODEL_LOAD = "model_load"  # the blocks loaded and converted
    ANNOUNCE = "announce"  # handlers and runtime started, the blocks announced online


PHASES = (StartPhase.PROCESS, StartPhase.IMPORTS, StartPhase.ENGINE_SETUP, StartPhase.DHT_JOIN, StartPhase.THROUGHPUT,
          StartPhase.BLOCK_CHOICE, StartPhase.MODEL_LOAD, StartPhase.ANNOUNCE)


@dataclass(frozen=True)
class Phase(Event):
    """One phase of a start is over (:data:`PHASES`): how long it took, ending at ``t``. ``ahead``: done by a
    standby launcher before its start order came (not part of that start's wait)."""

    KIND: ClassVar[str] = "phase"
    phase: str = ""
    seconds: float = 0.0
    ahead: bool = False


@dataclass(frozen=True)
class Exit(Event):
    KIND: ClassVar[str] = "exit"
    code: int = 0


# The demo client (engine/traffic.py) ---------------------------------------------------------------------
@dataclass(frozen=True)
class Ready(Event):
    """The client reached the swarm and loaded the model it checks answers against."""

    KIND: ClassVar[str] = "ready"


@dataclass(frozen=True)
class Request(Event):
    """One checked request: ``kind`` generate or forward; ``tokens_sent`` as counted where each inference step
    leaves the client (the server must count the same)."""

    KIND: ClassVar[str] = "request"
    n: int = 0
    kind: str = ""
    ok: bool = False
    tokens_sent: int = 0
    new_tokens: int = 0
    prompt_tokens: int = 0
    latency_s: float = 0.0
    # Tokens each server on the route processed for this request, by peer id (re-routed steps included);
    # None from an older client that did not count them.
    served: dict | None = None


@dataclass(frozen=True)
class Mismatch(Event):
    """The swarm's answer differed from the local model's (token ids; None for forward passes)."""

    KIND: ClassVar[str] = "mismatch"
    n: int = 0
    kind: str = ""
    prompt: list | None = None
    got: list | None = None
    want: list | None = None


@dataclass(frozen=True)
class Error(Event):
    """A request failed (``n`` set), or the client could not go on (``fatal``)."""

    KIND: ClassVar[str] = "error"
    message: str = ""
    n: int | None = None
    kind: str | None = None
    detail: str = ""
    fatal: bool = False


@dataclass(frozen=True)
class ServerAnnounce(Event):
    """What a server on the client's routes announces: its public name (its DHT server info) and its signed
    wallet binding (engine/binding.py; empty strings when it announced none). Signatures are checked by the
    app, not here."""

    KIND: ClassVar[str] = "server_announce"
    peer_id: str = ""
    public_name: str = ""
    statement: str = ""
    signature: str = ""


@dataclass(frozen=True)
class BindingAnnounced(Event):
    """The server stored (or failed to store) its wallet binding in the DHT; sent after every attempt."""

    KIND: ClassVar[str] = "binding_announced"
    stored: bool = False
    error: str = ""


@dataclass(frozen=True)
class Done(Event):
    KIND: ClassVar[str] = "done"
    requests: int = 0


@dataclass(frozen=True)
class Unknown(Event):
    """An event of a kind this side does not know (kept, not an error)."""

    kind: str = ""
    fields: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"e": self.kind, **self.fields}


EVENT_TYPES: dict[str, type[Event]] = {cls.KIND: cls for cls in (
    Hello, EngineInfo, State, Phase, Peer, Throughput, Blocks, Counters, Failed, Reachability, Exit,
    Ready, Request, Mismatch, Error, ServerAnnounce, BindingAnnounced, Done)}

_SCALARS: dict[str, Callable] = {"int": int, "float": float, "str": str, "bool": bool}


def _convert(annotation: str, value):
    """A decoded JSON value as the field's annotated type (the annotations above are strings)."""
    base = annotation.replace(" | None", "")
    if value is None:
        if base != annotation:
            return None
        raise TypeError("null for a required field")
    if base in _SCALARS:
        if base in ("int", "float") and isinstance(value, bool):
            raise TypeError("a boolean where a number belongs")
        if base == "bool" and not isinstance(value, bool):
            raise TypeError("not a boolean")
        if base == "str" and not isinstance(value, str):
            raise TypeError("not a string")
        return _SCALARS[base](value)
    if base.startswith("tuple["):
        item = _SCALARS[base[len("tuple["):].split(",")[0]]
        if not isinstance(value, list):
            raise TypeError("not a list")
        return tuple(item(v) for v in value)
    return value


def decode(obj: dict) -> Event:
    """A decoded JSON object as its typed event (:class:`Unknown` for a kind not listed here). Fields this
    side does not know are ignored; a field of the wrong type raises :class:`ProtocolError`."""
    kind = obj.get("e")
    if not isinstance(kind, str):
        raise ProtocolError("an event without a kind")
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        return Unknown(t=float(obj.get("t") or 0.0), kind=kind,
                       fields={k: v for k, v in obj.items() if k not in ("e", "t")})
    return _build(cls, obj, kind)


def _build(cls, obj: dict, what: str):
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in obj:
            try:
                values[f.name] = _convert(f.type, obj[f.name])
            except (TypeError, ValueError, KeyError) as exc:
                raise ProtocolError(f"{what}.{f.name}: {exc} ({obj[f.name]!r:.80})") from None
    try:
        return cls(**values)
    except TypeError as exc:  # a required field is missing
        raise ProtocolError(f"{what}: {exc}") from None


def encode(event: Event) -> bytes:
    """One event as its line on the wire (newline included), shortened to stay under :data:`PIPE_BUF`."""
    fields = event.to_dict()
    line = json.dumps(fields, separators=(",", ":"), default=str)
    if len(line) >= PIPE_BUF - 1:  # keep each write atomic: shorten the free text
        for key in ("detail", "message", "addrs", "prompt", "got", "want"):
            if key in fields:
                fields[key] = str(fields[key])[:512]
        line = json.dumps(fields, separators=(",", ":"), default=str)[: PIPE_BUF - 2]
    return (line + "\n").encode()


def iter_events(stream, on_bad_line: Callable[[bytes, str], None] | None = None) -> Iterator[Event]:
    """The typed events an engine process writes on ``stream`` (a binary file), until it ends. A line that is
    not a well-formed event is passed to ``on_bad_line(line, why)`` and skipped."""
    buf = b""
    while True:
        chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
        if not chunk:
            return
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ProtocolError("not a JSON object")
                yield decode(obj)
            except ValueError as exc:  # json's errors and ProtocolError
                if on_bad_line is not None:
                    on_bad_line(line[:200], str(exc))


# ---------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class ProbeResult:
    """What ``engine/probe.py`` found in an engine environment (one JSON line on its standard output)."""

    engine: str
    engine_version: str
    engine_commit: str | None = None  # the source commit pip recorded (a Git install); None from an archive
    hivemind_version: str = ""
    torch_version: str = ""
    transformers_version: str = ""
    torch_cuda: str | None = None
    cuda_available: bool = False
    python: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, obj: dict) -> ProbeResult:
        """From a probe's output or a stored marker; raises :class:`ProtocolError` when it is not one."""
        if not isinstance(obj, dict) or not isinstance(obj.get("engine"), str):
            raise ProtocolError("not an engine probe result")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in names})

    @property
    def summary(self) -> str:
        """``farmesh 2.3.0.dev2, torch 2.13.0+cpu, transformers 4.43.1``."""
        return (f"{self.engine} {self.engine_version}, torch {self.torch_version}"
                + (f", transformers {self.transformers_version}" if self.transformers_version else ""))


# ---------------------------------------------------------------------------------------------- configurations
@dataclass(frozen=True)
class TrafficConfig:
    """The demo client's configuration (the first line of its standard input)."""

    model: str
    initial_peers: tuple[str, ...]
    dht_prefix: str | None = None
    rate_per_minute: float = 12.0
    count: int = 0  # stop after this many requests (0: until stopped)
    max_new_tokens: int = 16
    prompt_len: int = 8
    forward_every: int = 0  # every n-th request is a plain forward pass (0: never)
    seed: int = 0
    nat_traversal: bool = True  # False: its p2pd maps no port, runs no AutoNAT and uses no relay
    local_network: bool = False  # True: the swarm is on loopback; contacts outside it are refused

    def to_json(self) -> str:
        return json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()})

    @classmethod
    def from_dict(cls, obj) -> TrafficConfig:
        if not isinstance(obj, dict):
            raise ProtocolError("the traffic configuration is not a JSON object")
        return _build(cls, obj, "traffic config")


# ---------------------------------------------------------------------------------------------- addresses
WILDCARD_HOSTS = ("", "0.0.0.0", "::")  # every interface


def _bare_host(host: str) -> str:
    h = str(host).strip()
    return h[1:-1] if h.startswith("[") and h.endswith("]") else h


def tcp_maddr(host: str, port: int) -> str:
    """The TCP multiaddr of a host: ``/ip4/`` or ``/ip6/`` for an address (an IPv6 zone as ``/ip6zone/``),
    ``/dns/`` for a host name. The one place the app and the launcher spell addresses for the engine."""
    import ipaddress

    h = _bare_host(host)
    address, _, zone = h.partition("%")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"/dns/{h.rstrip('.')}/tcp/{int(port)}"
    if ip.version == 4:
        return f"/ip4/{ip}/tcp/{int(port)}"
    return (f"/ip6zone/{zone}" if zone else "") + f"/ip6/{ip}/tcp/{int(port)}"


def resolve_host(name: str) -> list[str]:
    """The addresses of a host name, as this computer resolves it (``/etc/hosts``, then DNS), in order, once
    each. Raises ``OSError`` when it has none."""
    import socket

    seen: list[str] = []
    for *_, sockaddr in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM):
        if sockaddr[0] not in seen:
            seen.append(sockaddr[0])
    return seen


def listen_maddrs(host: str, port: int, resolve: Callable[[str], list[str]] | None = None) -> list[str]:
    """The multiaddrs to listen on for a host: IPv4 and IPv6 for a wildcard (as FarMesh does by default), the
    address itself, or a host name's addresses through ``resolve`` (libp2p listens on addresses, not names;
    without ``resolve`` the name is kept as ``/dns/``, for display)."""
    h = _bare_host(host)
    if h in WILDCARD_HOSTS:
        return [f"/ip4/0.0.0.0/tcp/{int(port)}", f"/ip6/::/tcp/{int(port)}"]
    maddr = tcp_maddr(h, port)
    if not maddr.startswith("/dns/") or resolve is None:
        return [maddr]
    return [tcp_maddr(a, port) for a in resolve(h)]
