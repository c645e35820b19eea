"""The app's settings: typed, validated, saved atomically; a damaged file is never moved, replaced or run on
defaults: every reader refuses it, saying which file, where and how to fix it.

Secrets never live here: the wallet's key is in the OS keyring, the settings hold its address only.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from farnode_desktop.core.atomic import atomic_write_json
from farnode_desktop.core.errors import SettingsError
from farnode_desktop.core.schedule import ScheduleError, parse_window

SCHEMA_VERSION = 2  # 2: network.host "" means automatic (version 1 saved the loopback default for every network)

LOCAL_SWARM = "local"
PUBLIC_SWARM = "public"
CUSTOM_SWARM = "custom"


@dataclass
class NetworkSettings:
    """Which FarMesh network the node joins and what it serves."""

    swarm: str = LOCAL_SWARM  # local | public | custom
    # empty: the embedded demo model (local swarm); the model the GPU helps most (public); else a Hugging Face
    # model id (org/name) or a folder on this computer
    model: str = ""
    # custom network: multiaddrs with /p2p/<peer id> of its members; empty: this node starts a new network
    initial_peers: list[str] = field(default_factory=list)
    dht_prefix: str = ""  # empty: derived from the model: by the engine from a hub id, from a folder its name
    port: int = 31337  # TCP port of the server (0: pick a free one)
    host: str = ""  # listen address; empty: 127.0.0.1 on the local swarm, every interface (0.0.0.0) otherwise
    # the address other peers reach this node at (public IP or DNS name, or a LAN address); empty: automatic
    announce_address: str = ""
    public_name: str = ""  # empty: the payout wallet address, when there is one
    num_blocks: int = 0  # 0: sized automatically
    quantization: str = "auto"  # auto | nf4 | int8 | none
    # public/custom network: UPnP/NAT-PMP port mapping, AutoNAT and relays for the node's p2p daemons; off for
    # a network that lives on a LAN or on this computer (and in tests). The local swarm never uses them.
    nat_traversal: bool = True
    torch_dtype: str = "auto"  # auto (the model's own dtype on a GPU, float32 on the CPU) | float32 | float16 | bfloat16
    device: str = "auto"  # auto | cpu | cuda
    num_handlers: int = 2
    # Local demo swarm: rate of the built-in client traffic (requests per minute; 0 turns it off).
    demo_traffic_per_minute: float = 12.0
    runtime: str = "auto"  # where the engine runs: auto | native | wsl2 | docker (see core/node/runtimes)
    docker_image: str = ""  # docker runtime: empty = the image set-up builds from the engine lock (see runtimes/docker.py)
    # A metered link: the server runs no speed test and no version check, and reports the bandwidth below
    # instead of a measured one. The local swarm never runs them (nothing of it leaves this computer).
    metered: bool = False
    bandwidth_mbps: float = 100.0

    def validate(self) -> list[str]:
        problems = []
        if self.swarm not in (LOCAL_SWARM, PUBLIC_SWARM, CUSTOM_SWARM):
            problems.append(f"network.swarm must be local, public or custom, not {self.swarm!r}")
        if not (0 <= self.port <= 65535):
            problems.append(f"network.port must be between 0 and 65535, not {self.port}")
        if self.num_blocks < 0:
            problems.append("network.num_blocks must not be negative")
        if self.quantization not in ("auto", "nf4", "int8", "none"):
            problems.append(f"network.quantization must be auto, nf4, int8 or none, not {self.quantization!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"network.device must be auto, cpu or cuda, not {self.device!r}")
        if self.torch_dtype not in ("auto", "float32", "float16", "bfloat16"):
            problems.append(f"network.torch_dtype must be auto, float32, float16 or bfloat16, not {self.torch_dtype!r}")
        if self.device == "cpu" and self.torch_dtype == "float16":
            problems.append("network.torch_dtype float16 does not run on the CPU: choose auto, float32 or bfloat16")
        for p in self.initial_peers:
            why = multiaddr_problem(p)
            if why:
                problems.append(f"peer address {p!r} is not a multiaddr with a /p2p/<peer id> part (like "
                                f"/ip4/203.0.113.5/tcp/31337/p2p/12D3KooW...): {why}")
        if any(c.isspace() or c == "/" for c in self.host):
            problems.append(f"network.host {self.host!r} is not an IP address")
        if any(c.isspace() or c == "/" for c in self.announce_address):
            problems.append(f"network.announce_address {self.announce_address!r} is not an IP address or host name")
        if self.dht_prefix and not _DHT_PREFIX.match(self.dht_prefix):
            problems.append(f"network.dht_prefix {self.dht_prefix!r} is not one FarMesh can use: letters, digits, "
                            "'-', '_' and '/' only (no '.' or spaces), at most 100 characters")
        if len(self.public_name) > MAX_PUBLIC_NAME or any(not c.isprintable() for c in self.public_name):
            problems.append(f"network.public_name must be at most {MAX_PUBLIC_NAME} printable characters "
                            f"(it has {len(self.public_name)})")
        if not (1 <= self.num_handlers <= 64):
            problems.append("network.num_handlers must be between 1 and 64")
        if not (0 < self.bandwidth_mbps <= 1_000_000):
            problems.append("network.bandwidth_mbps must be a positive number of Mbit/s")
        if self.demo_traffic_per_minute < 0:
            problems.append("network.demo_traffic_per_minute must not be negative")
        if self.runtime not in ("auto", "native", "wsl2", "docker"):
            problems.append(f"network.runtime must be auto, native, wsl2 or docker, not {self.runtime!r}")
        if self.docker_image and (any(c.isspace() for c in self.docker_image) or self.docker_image.startswith("-")):
            problems.append(f"network.docker_image {self.docker_image!r} is not an image name")
        return problems


_BASE58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]+$")
# FarMesh names a block "{dht_prefix}.{index}" and joins block names with spaces: neither may be in a prefix.
_DHT_PREFIX = re.compile(r"^[A-Za-z0-9_/-]{1,100}$")
MAX_PUBLIC_NAME = 64  # what the swarm's monitors and leaderboards show of a server's name


def address_problem(name: str, value: str) -> str:
    """What is wrong with an Ethereum address setting (empty is "not set"), or "" when it is right: 0x and 40
    hex digits; mixed case must be its EIP-55 checksum (a typo in a checksummed address is caught)."""
    from farnode_desktop.core.eth_address import checksum

    if not value:
        return ""
    if not value.startswith("0x"):
        return f"{name} {value!r} is not an address (0x and 40 hex digits)"
    try:
        right = checksum(value)
    except ValueError:
        return f"{name} {value!r} is not an address (0x and 40 hex digits)"
    if value[2:] not in (value[2:].lower(), value[2:].upper()) and value != right:
        return f"{name} {value!r} has a wrong checksum (a mistyped character?): check it against its source"
    return ""
_DNS_NAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+$")


def multiaddr_problem(addr: str) -> str:
    """What is wrong with a peer's multiaddr (``/ip4/<ip>/tcp/<port>/p2p/<peer id>``, also ip6, dns, dns4,
    dns6, udp, quic, quic-v1), or "" when it looks right."""
    import ipaddress

    if not addr.startswith("/"):
        return "it must start with /"
    parts = addr.split("/")[1:]
    if parts and parts[-1] == "":
        parts.pop()
    if not parts:
        return "it is empty"
    i, seen_host, seen_p2p = 0, False, False
    while i < len(parts):
        proto = parts[i]
        if proto in ("quic", "quic-v1"):
            i += 1
            continue
        if i + 1 >= len(parts):
            return f"/{proto} has no value"
        value = parts[i + 1]
        if proto in ("ip4", "ip6"):
            try:
                ipaddress.IPv4Address(value) if proto == "ip4" else ipaddress.IPv6Address(value)
            except ValueError:
                return f"{value!r} is not an {'IPv4' if proto == 'ip4' else 'IPv6'} address"
            seen_host = True
        elif proto in ("dns", "dns4", "dns6"):
            if not _DNS_NAME.match(value):
                return f"{value!r} is not a host name"
            seen_host = True
        elif proto in ("tcp", "udp"):
            if not (value.isdigit() and 0 < int(value) <= 65535):
                return f"{value!r} is not a port number (1-65535)"
        elif proto == "p2p":
            if not (_BASE58.match(value) and 40 <= len(value) <= 60):
                return f"{value!r} is not a peer id (a base58 string such as 12D3KooW... or Qm...)"
            seen_p2p = True
        else:
            return f"/{proto} is not a protocol FarMesh peers use"
        i += 2
    if not seen_p2p:
        return "it has no /p2p/<peer id> part"
    if not seen_host:
        return "it has no /ip4, /ip6 or /dns address"
    return ""


@dataclass
class EngineSettings:
    """Where the engine (FarMesh) is installed from."""

    # empty: FarMesh's Git source at the commit the app's lock pins; else a local source archive
    # (.tar.gz/.zip, e.g. `git archive` of that commit) or wheel, for offline machines
    source: str = ""

    def validate(self) -> list[str]:
        if self.source and not self.source.lower().endswith((".tar.gz", ".tgz", ".tar", ".zip", ".whl")):
            return [f"engine.source must be a source archive (.tar.gz, .zip) or a wheel (.whl), not {self.source!r}"]
        return []


@dataclass
class GpuSettings:
    contributing: list[str] = field(default_factory=list)  # GPU UUIDs the user lets contribute; empty: all eligible
    reserve_vram_mib: int = 1024  # VRAM left free for the desktop and games

    def validate(self) -> list[str]:
        return [] if self.reserve_vram_mib >= 0 else ["gpus.reserve_vram_mib must not be negative"]


@dataclass
class WalletSettings:
    address: str = ""  # checksummed payout address; the key is only in the OS keyring

    def validate(self) -> list[str]:
        problem = address_problem("wallet.address", self.address)
        return [problem] if problem else []


@dataclass
class ChainSettings:
    rpc_url: str = ""
    chain_id: int = 0
    token_address: str = ""
    payout_senders: list[str] = field(default_factory=list)
    confirmations: int = 12
    reward_per_1k_tokens: float = 0.0  # in reward-token units, for the unpaid estimate
    start_block: int = 0

    def validate(self) -> list[str]:
        from urllib.parse import urlsplit

        problems = []
        if self.rpc_url:
            parts = urlsplit(self.rpc_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problems.append(f"chain.rpc_url must be an http:// or https:// address of a JSON-RPC node, not "
                                f"{self.rpc_url!r}")
        if not (0 <= self.chain_id <= MAX_CHAIN_ID):
            problems.append(f"chain.chain_id must be a positive whole number (0: not set), not {self.chain_id}")
        for name, value in (("chain.token_address", self.token_address),
                            *(("chain.payout_senders", a) for a in self.payout_senders)):
            problem = address_problem(name, value)
            if problem:
                problems.append(problem)
        if self.start_block < 0:
            problems.append("chain.start_block must not be negative")
        if self.confirmations < 0:
            problems.append("chain.confirmations must not be negative")
        if self.reward_per_1k_tokens < 0:
            problems.append("chain.reward_per_1k_tokens must not be negative")
        return problems


MAX_CHAIN_ID = 4503599627370476  # EIP-2294's largest chain id

# Processes that use a little GPU memory on every desktop; never a reason to pause.
DEFAULT_GPU_PROGRAM_IGNORE = ["Xorg", "Xwayland", "gnome-shell", "kwin_x11", "kwin_wayland", "plasmashell",
                              "dwm.exe", "explorer.exe", "csrss.exe", "WindowServer"]


@dataclass
class PolicySettings:
    """When the node contributes (see core.policies) and how the app starts. Durations in seconds."""

    pause_for_gpu_programs: bool = True  # another process uses the GPU above a threshold
    gpu_program_min_mem_mib: int = 1024  # 0: memory is not a criterion
    gpu_program_min_util_pct: float = 30.0  # 0: utilisation is not a criterion
    gpu_program_ignore: list[str] = field(default_factory=lambda: list(DEFAULT_GPU_PROGRAM_IGNORE))
    pause_for_programs: bool = False  # one of ``programs`` (executable names) is running
    programs: list[str] = field(default_factory=list)
    pause_for_steam_games: bool = True
    idle_only: bool = False  # run only when the user has been idle ``idle_minutes``
    idle_minutes: float = 10.0
    schedule_enabled: bool = False  # run only inside the weekly windows of ``schedule``
    schedule: list[str] = field(default_factory=list)  # e.g. "mon-fri 22:00-07:00", "weekends 00:00-24:00"
    temperature_pause: bool = True  # pause at temperature_high_c, resume below temperature_low_c (°C)
    temperature_high_c: float = 85.0
    temperature_low_c: float = 75.0
    profit_pause: bool = False  # pause when earnings/h < power x electricity price
    electricity_price_per_kwh: float = 0.0  # in the currency of the earnings estimate
    min_run_s: float = 60.0
    min_pause_s: float = 120.0
    drain_s: float = 20.0  # on a pause: wait up to this long for open inference sessions to finish
    start_at_login: bool = False
    start_minimized: bool = True  # when started at login: straight to the tray

    def validate(self) -> list[str]:
        problems = []
        if self.gpu_program_min_mem_mib < 0:
            problems.append("policies.gpu_program_min_mem_mib must not be negative")
        if not (0 <= self.gpu_program_min_util_pct <= 100):
            problems.append("policies.gpu_program_min_util_pct must be between 0 and 100")
        if self.pause_for_gpu_programs and self.gpu_program_min_mem_mib == 0 and self.gpu_program_min_util_pct == 0:
            problems.append("policies: pausing for GPU programs needs a memory or a utilisation threshold above 0")
        if self.pause_for_programs and not any(p.strip() for p in self.programs):
            problems.append("policies.programs is empty: list the programs to pause for, or turn it off")
        if not (0 < self.idle_minutes <= 24 * 60):
            problems.append("policies.idle_minutes must be more than 0 and at most 1440")
        for w in self.schedule:
            try:
                parse_window(w)
            except ScheduleError as exc:
                problems.append(f"policies.schedule: {exc}")
        if self.schedule_enabled and not self.schedule:
            problems.append("policies.schedule is empty: add a window such as 'mon-fri 22:00-07:00' or turn "
                            "the schedule off")
        if not (20 <= self.temperature_low_c < self.temperature_high_c <= 120):
            problems.append("policies: the resume temperature must be below the pause temperature, both "
                            "between 20 and 120 °C")
        if not (0 <= self.electricity_price_per_kwh < 1e6):
            problems.append("policies.electricity_price_per_kwh must not be negative")
        for name in ("min_run_s", "min_pause_s"):
            if not (0 <= getattr(self, name) <= 86400):
                problems.append(f"policies.{name} must be between 0 and 86400 seconds")
        if not (0 <= self.drain_s <= 600):
            problems.append("policies.drain_s must be between 0 and 600 seconds")
        return problems


@dataclass
class UpdateSettings:
    update_url: str = ""  # JSON {version, url, notes} telling the newest version; empty: never check

    def validate(self) -> list[str]:
        from urllib.parse import urlsplit

        if not self.update_url:
            return []
        parts = urlsplit(self.update_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return [f"updates.update_url must be an http(s) address, not {self.update_url!r}"]
        return []


@dataclass
class Settings:
    network: NetworkSettings = field(default_factory=NetworkSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    gpus: GpuSettings = field(default_factory=GpuSettings)
    wallet: WalletSettings = field(default_factory=WalletSettings)
    chain: ChainSettings = field(default_factory=ChainSettings)
    policies: PolicySettings = field(default_factory=PolicySettings)
    updates: UpdateSettings = field(default_factory=UpdateSettings)

    def validate(self) -> list[str]:
        problems: list[str] = []
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            # NaN and infinities pass every comparison a section makes: no setting takes one
            problems += [f"{f.name}.{g.name} must be a finite number, not {getattr(section, g.name)}"
                         for g in dataclasses.fields(section)
                         if isinstance(getattr(section, g.name), float) and not math.isfinite(getattr(section, g.name))]
            problems += section.validate()
        return problems

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["schema_version"] = SCHEMA_VERSION
        return d


def _coerce(section_cls: type, raw: Any, section: str, problems: list[str]) -> Any:
    default = section_cls()
    if not isinstance(raw, dict):
        problems.append(f"section {section!r} is not an object ({{...}})")
        return default
    hints = get_type_hints(section_cls)
    kwargs = {}
    for f in dataclasses.fields(section_cls):
        if f.name not in raw:
            continue
        value, want = raw[f.name], hints[f.name]
        origin = getattr(want, "__origin__", want)
        ok = (
            (origin is list and isinstance(value, list) and all(isinstance(x, str) for x in value))
            or (want is float and isinstance(value, (int, float)) and not isinstance(value, bool))
            or (want is int and isinstance(value, int) and not isinstance(value, bool))
            or (want is str and isinstance(value, str))
            or (want is bool and isinstance(value, bool))
        )
        if ok:
            kwargs[f.name] = float(value) if want is float else value
        else:
            problems.append(f"{section}.{f.name} takes {_type_name(want)}, not {json.dumps(value)}")
    return section_cls(**kwargs)


def _migrate(raw: dict[str, Any]) -> None:
    """Bring a file saved by an older version up to :data:`SCHEMA_VERSION` (in place)."""
    version = raw.get("schema_version", 1)
    net = raw.get("network")
    if isinstance(version, int) and version < 2 and isinstance(net, dict) and net.get("host") == "127.0.0.1":
        net["host"] = ""  # version 1 saved its loopback default even for public networks


# ---------------------------------------------------------------------------------------- the schema
def setting_types() -> dict[str, Any]:
    """Every setting by its dotted name (``network.port``) and its type (str, int, float, bool, list[str])."""
    out: dict[str, Any] = {}
    for section in dataclasses.fields(Settings):
        cls = get_type_hints(Settings)[section.name]
        for name, want in get_type_hints(cls).items():
            out[f"{section.name}.{name}"] = want
    return out


def section_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Settings)]


def closest_name(name: str, candidates: list[str]) -> str:
    """The candidate that ``name`` most likely misspells ("" when none is close)."""
    found = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if not found and "." in name:  # a right section with a wrong key, or the reverse
        section, _, key = name.partition(".")
        keys = [c for c in candidates if c.startswith(section + ".")]
        found = difflib.get_close_matches(name, keys, n=1, cutoff=0.4)
    return found[0] if found else ""


def _type_name(want: Any) -> str:
    if getattr(want, "__origin__", None) is list:
        return "a list of texts"
    return {str: "a text", int: "a whole number", float: "a number", bool: "true or false"}[want]


def unknown_setting_error(key: str) -> SettingsError:
    known = list(setting_types()) + section_names()
    near = closest_name(key, known)
    hint = f" Did you mean {near}?" if near else " `farnode-desktop settings get` lists them all."
    return SettingsError(f"There is no setting called {key}.{hint}", title="Unknown setting")


def parse_setting(key: str, values: list[str]) -> Any:
    """The typed value of setting ``key`` from command-line words: a list takes every word (or one JSON
    list), a boolean true/false/yes/no/on/off/1/0, numbers as written. Raises :class:`SettingsError`."""
    types = setting_types()
    if key not in types:
        raise unknown_setting_error(key)
    want = types[key]
    if getattr(want, "__origin__", None) is list:
        if len(values) == 1 and values[0].strip().startswith("["):
            try:
                parsed = json.loads(values[0])
            except ValueError:
                parsed = None
            if not (isinstance(parsed, list) and all(isinstance(v, str) for v in parsed)):
                raise SettingsError(f"{key} takes a list of texts; {values[0]!r} is not a JSON list of texts.",
                                    title="Wrong type")
            return parsed
        return [v for v in values if v != ""]
    if len(values) != 1:
        raise SettingsError(f"{key} takes one value ({_type_name(want)}), not {len(values)}.", title="Wrong type")
    text = values[0].strip()
    if want is bool:
        low = text.lower()
        if low in ("true", "yes", "on", "1"):
            return True
        if low in ("false", "no", "off", "0"):
            return False
    elif want is int:
        try:
            return int(text)
        except ValueError:
            pass
    elif want is float:
        try:
            value = float(text)
            if value == value and value not in (float("inf"), float("-inf")):
                return value
        except ValueError:
            pass
    else:
        return values[0]
    raise SettingsError(f"{key} takes {_type_name(want)}; {values[0]!r} is not one.", title="Wrong type")


def get_setting(settings: Settings, key: str) -> Any:
    """The value of a setting (``network.port``) or a section (``network``, as a dict)."""
    section, _, name = key.partition(".")
    if section not in section_names() or (name and f"{section}.{name}" not in setting_types()):
        raise unknown_setting_error(key)
    part = getattr(settings, section)
    return getattr(part, name) if name else dataclasses.asdict(part)


def with_setting(settings: Settings, key: str, value: Any) -> Settings:
    """A copy of ``settings`` with one setting changed (not validated: the store's save does that)."""
    if key not in setting_types():
        raise unknown_setting_error(key)
    section, _, name = key.partition(".")
    return dataclasses.replace(settings, **{section: dataclasses.replace(getattr(settings, section),
                                                                      **{name: value})})


def default_setting(key: str) -> Any:
    return get_setting(Settings(), key)


def unknown_keys(raw: dict[str, Any]) -> dict[str, Any]:
    """The parts of a settings file that no setting reads: ``{key: value}`` at the top level and
    ``{"section.key": value}`` inside known sections."""
    out: dict[str, Any] = {}
    known = set(setting_types())
    for k, v in raw.items():
        if k == "schema_version":
            continue
        if k not in section_names():
            out[k] = v
        elif isinstance(v, dict):
            out.update({f"{k}.{sub}": sv for sub, sv in v.items() if f"{k}.{sub}" not in known})
    return out


def ignored_changes(old: Settings, new: Settings) -> list[str]:
    """Changes that would not take effect where they are made, each with where it applies: refused by
    ``settings set``/``unset``/``edit`` and the window alike. A value already in the file is kept (it applies
    again when the user moves to the network it belongs to)."""
    o, n = old.network, new.network
    problems = []
    if n.swarm == LOCAL_SWARM:
        for key, what in (("model", "the model to serve"), ("initial_peers", "the network's peer addresses"),
                          ("quantization", "the quantization of a GPU's blocks")):
            if getattr(n, key) != getattr(o, key) and getattr(n, key) != getattr(NetworkSettings(), key):
                problems.append(f"network.{key} ({what}) applies to the public and custom networks; the local "
                                "demo swarm serves the app's own demo model on this computer. Set network.swarm "
                                "to custom or public first")
    return problems


def check_settings(raw: Any) -> tuple[Settings, list[str]]:
    """A settings file's content as :class:`Settings`, and every problem in it (wrong types, invalid values),
    without resetting anything: for an edit that is saved only when it has none."""
    if not isinstance(raw, dict):
        return Settings(), ["the top level must be an object ({...})"]
    raw = json.loads(json.dumps(raw))  # a copy: _migrate changes it in place
    _migrate(raw)
    problems: list[str] = []
    hints = get_type_hints(Settings)
    settings = Settings(**{f.name: _coerce(hints[f.name], raw.get(f.name, {}), f.name, problems)
                           for f in dataclasses.fields(Settings)})
    return settings, problems + settings.validate()


class DamagedSettings(SettingsError):
    """The settings file cannot be used as it is. Nothing reads it on defaults and nothing replaces it: the
    message names the file, where it is damaged (line and column) or which values are wrong, and the fix."""

    title = "Settings file damaged"

    def __init__(self, path: Path, what: str):
        self.path = Path(path)
        super().__init__(f"The settings file {self.path} {what}. Nothing was changed and the node does not start "
                         "on it: fix it with `farnode-desktop settings edit` (or a text editor), or delete it to "
                         "start again from the default settings.")


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def parse_settings_text(text: str, path: Path) -> dict[str, Any]:
    """A settings file's text as a JSON object, strictly (no NaN or Infinity, which JSON does not have);
    raises :class:`DamagedSettings` saying where it is damaged."""
    if not text.strip():
        raise DamagedSettings(path, "is empty")
    try:
        raw = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise DamagedSettings(path, f"is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except ValueError as exc:  # NaN, Infinity, -Infinity
        found = re.search(re.escape(str(exc)), text)
        pos = found.start() if found else 0
        line, col = text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1
        raise DamagedSettings(path, f"has {exc} at line {line}, column {col}, which is not a JSON number") from None
    if not isinstance(raw, dict):
        raise DamagedSettings(path, "is not a JSON object ({...}) at its top level")
    return raw


class SettingsStore:
    """Loads and saves :class:`Settings` at one path.

    ``load()`` raises :class:`DamagedSettings` for a file that is not valid JSON, or holds values that are not
    valid: the file is left exactly as it is, and nothing runs on defaults in its place (a public contributor
    would stop earning without a word). Keys that no setting reads (a typo, or a setting of a newer version)
    are listed in ``self.notes`` with their closest valid name, and kept in the file by every save.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.notes: list[str] = []

    def load(self) -> Settings:
        self.notes = []
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return Settings()
        except OSError as exc:
            raise SettingsError(f"The settings file {self.path} cannot be read ({exc.strerror or exc}). Check its "
                                "permissions; nothing was changed.", title="Settings file unreadable") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise DamagedSettings(self.path, f"is not UTF-8 text (byte {exc.start}, line {line})") from None
        raw = parse_settings_text(text, self.path)
        known = list(setting_types()) + section_names()
        for key in unknown_keys(raw):
            near = closest_name(key, known)
            self.notes.append(f"{self.path.name}: unknown setting {key!r}"
                              + (f" (did you mean {near!r}?)" if near else "")
                              + "; it is kept in the file but not used.")
        settings, problems = check_settings(raw)
        if problems:
            raise DamagedSettings(self.path, "has values that cannot be used: " + "; ".join(problems))
        return settings

    def save(self, settings: Settings) -> None:
        problems = settings.validate()
        if problems:
            raise SettingsError("These settings are not valid: " + "; ".join(problems)
                                + ". Correct them and save again.")
        data = settings.to_dict()
        for key, value in self._unknown_on_disk().items():  # never drop what this version does not know
            section, dot, sub = key.partition(".")
            if dot and isinstance(data.get(section), dict):
                data[section].setdefault(sub, value)
            elif not dot:
                data.setdefault(key, value)
        atomic_write_json(self.path, data)

    def _unknown_on_disk(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return {}
        return unknown_keys(raw) if isinstance(raw, dict) else {}
