"""A network descriptor: one JSON file that says everything a node needs to join a FarMesh network.

``{"farnode_network": 1, "name": ..., "initial_peers": [...], "dht_prefix": ..., "model": ...,
"payouts": {"rpc_url", "chain_id", "token_address", "payout_senders", "reward_per_1k_tokens",
"confirmations", "start_block"}}``. :func:`parse_descriptor` checks the file as a whole and reports every
problem, one line each; the field checks are the settings' own (a descriptor is turned into the
settings it would write, and those are validated), so a descriptor and hand-edited settings agree.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.settings import CUSTOM_SWARM, LOCAL_SWARM, ChainSettings, NetworkSettings, Settings

DESCRIPTOR_VERSION = 1
_TOP_KEYS = {"farnode_network", "name", "initial_peers", "dht_prefix", "model", "payouts"}
_PAYOUT_KEYS = {"rpc_url": str, "chain_id": int, "token_address": str, "payout_senders": list,
                "reward_per_1k_tokens": float, "confirmations": int, "start_block": int}


class DescriptorError(FarNodeError):
    """A descriptor that cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = list(problems)
        where = f" {source}" if source else ""
        super().__init__(f"The network file{where} cannot be used:\n" + "\n".join(self.problems)
                         + "\nNothing was changed.", title="Network file not valid")


@dataclass(frozen=True)
class NetworkDescriptor:
    name: str
    initial_peers: list[str] = field(default_factory=list)
    dht_prefix: str = ""
    model: str = ""
    payouts: ChainSettings = field(default_factory=ChainSettings)

    def apply(self, settings: Settings) -> Settings:
        """``settings`` with this network's values (everything else, the wallet included, kept)."""
        network = dataclasses.replace(settings.network, swarm=CUSTOM_SWARM, initial_peers=list(self.initial_peers),
                                      dht_prefix=self.dht_prefix, model=self.model)
        chain = dataclasses.replace(self.payouts, payout_senders=list(self.payouts.payout_senders))
        return dataclasses.replace(settings, network=network, chain=chain)


def parse_descriptor(text: str, source: str = "") -> NetworkDescriptor:
    """The descriptor in ``text``; raises :class:`DescriptorError` listing every problem found."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DescriptorError([f"it is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"],
                              source) from None
    if not isinstance(raw, dict):
        raise DescriptorError(["it must be a JSON object ({...})"], source)
    problems: list[str] = []
    version = raw.get("farnode_network")
    if version is None:
        raise DescriptorError(['it has no "farnode_network" version: is it a FarNode network file?'], source)
    if version != DESCRIPTOR_VERSION:
        raise DescriptorError([f'"farnode_network" {version!r} is a version this FarNode does not read (it reads '
                               f'{DESCRIPTOR_VERSION}): update FarNode or ask for a version {DESCRIPTOR_VERSION} '
                               "file"], source)
    problems += [f"unknown key {k!r}" for k in sorted(set(raw) - _TOP_KEYS)]
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append('"name" is missing: give the network a name')
        name = ""
    peers = raw.get("initial_peers", [])
    if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
        problems.append('"initial_peers" must be a list of multiaddr strings')
        peers = []
    elif not peers:
        problems.append('"initial_peers" is empty: a network file must name at least one peer to join')
    prefix, model = raw.get("dht_prefix", ""), raw.get("model", "")
    for key, value in (("dht_prefix", prefix), ("model", model)):
        if not isinstance(value, str):
            problems.append(f'"{key}" must be a string')
    prefix = prefix if isinstance(prefix, str) else ""
    model = model if isinstance(model, str) else ""
    pay = raw.get("payouts", {})
    chain_values: dict[str, Any] = {}
    if not isinstance(pay, dict):
        problems.append('"payouts" must be an object')
    else:
        problems += [f"unknown key 'payouts.{k}'" for k in sorted(set(pay) - set(_PAYOUT_KEYS))]
        for key, want in _PAYOUT_KEYS.items():
            if key not in pay:
                continue
            value = pay[key]
            ok = (isinstance(value, (int, float)) if want is float else isinstance(value, want)) \
                and not isinstance(value, bool)
            if want is list and ok:
                ok = all(isinstance(v, str) for v in value)
            if not ok:
                problems.append(f'"payouts.{key}" must be {"a list of addresses" if want is list else want.__name__}')
                continue
            chain_values[key] = float(value) if want is float else value
    chain = ChainSettings(**chain_values)
    network = NetworkSettings(swarm=CUSTOM_SWARM, initial_peers=peers, dht_prefix=prefix, model=model)
    problems += network.validate() + chain.validate()
    if problems:
        raise DescriptorError(problems, source)
    return NetworkDescriptor(name=name.strip(), initial_peers=peers, dht_prefix=prefix, model=model, payouts=chain)


def check_chain(descriptor: NetworkDescriptor, timeout_s: float = 5.0) -> list[str]:
    """The problems with the descriptor's payout chain as seen over its RPC (one JSON-RPC call, short
    timeout): unreachable, or a different chain id. Empty when there is no RPC URL or it is right."""
    from farnode_desktop.core.payout.chain import ChainClient, ChainError, ChainIdMismatchError, redact_url

    pay = descriptor.payouts
    if not pay.rpc_url:
        return []
    client = ChainClient(pay.rpc_url, timeout_s=timeout_s, max_attempts=1)
    try:
        client.check_chain_id(pay.chain_id)
    except ChainIdMismatchError as exc:
        return [f"payouts: {exc}"]
    except ChainError as exc:
        return [f"payouts: could not reach {redact_url(pay.rpc_url)} ({exc})"]
    finally:
        client.close()
    return []


MAX_DESCRIPTOR_BYTES = 1_000_000


def read_descriptor_file(path: Any) -> NetworkDescriptor:
    """The descriptor in the file at ``path``; :class:`DescriptorError` for an unreadable or bad file."""
    from pathlib import Path

    p = Path(path)
    try:
        data = p.read_bytes()[:MAX_DESCRIPTOR_BYTES + 1]
    except OSError as exc:
        raise DescriptorError([f"it cannot be read ({exc.strerror or exc})"], str(p)) from None
    if len(data) > MAX_DESCRIPTOR_BYTES:
        raise DescriptorError([f"it is larger than {MAX_DESCRIPTOR_BYTES} bytes: not a network file"], str(p))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DescriptorError(["it is not UTF-8 text"], str(p)) from None
    return parse_descriptor(text, str(p))


def joined_file(settings_file: Any) -> Any:
    """Where the name and source of the last joined network are kept (beside the settings file)."""
    from pathlib import Path

    return Path(settings_file).with_name("network.json")


def join(descriptor: NetworkDescriptor, source: str, settings_file: Any, *, check_config: Any = None,
         check_rpc: bool = True) -> Settings:
    """Check the model (with ``check_config``, see :func:`check_model`) and the chain (unless ``check_rpc``
    is False), then write the settings the descriptor gives and
    remember its name and source. Nothing is written when a check fails."""
    from farnode_desktop.core.settings import SettingsStore

    if check_rpc:
        problems = (check_model(descriptor, check_config) if check_config else []) + check_chain(descriptor)
        if problems:
            raise DescriptorError(problems, source)
    store = SettingsStore(settings_file)
    settings = descriptor.apply(store.load())
    store.save(settings)
    remember(descriptor, source, settings, settings_file)
    return settings


def remember(descriptor: NetworkDescriptor, source: str, settings: Settings, settings_file: Any) -> None:
    """Keep the joined network's name, source and values beside the settings (for :func:`show`)."""
    from farnode_desktop.core.atomic import atomic_write_json

    atomic_write_json(joined_file(settings_file), {"name": descriptor.name, "source": source,
                                                   "network": _network_part(settings)})


def _network_part(settings: Settings) -> dict[str, Any]:
    return {"initial_peers": list(settings.network.initial_peers), "dht_prefix": settings.network.dht_prefix,
            "model": settings.network.model, "chain": dataclasses.asdict(settings.chain)}


def show(settings: Settings, settings_file: Any, builtin: dict[str, Any] | None = None) -> dict[str, Any]:
    """The joined network's name and source, and which settings differ from what it gave (hand edits).
    ``builtin``: the embedded default's own descriptor, shown while the swarm is the local one."""
    if settings.network.swarm == LOCAL_SWARM and builtin is not None:
        return {"swarm": settings.network.swarm, "differs": [], **builtin}
    try:
        rec = json.loads(joined_file(settings_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        rec = None
    out: dict[str, Any] = {"swarm": settings.network.swarm, "name": None, "source": None, "differs": []}
    if isinstance(rec, dict) and settings.network.swarm == CUSTOM_SWARM:
        out["name"], out["source"] = rec.get("name"), rec.get("source")
        now, then = _network_part(settings), rec.get("network") or {}
        for key in ("initial_peers", "dht_prefix", "model"):
            if now[key] != then.get(key):
                out["differs"].append(f"network.{key}")
        for key, value in now["chain"].items():
            if value != (then.get("chain") or {}).get(key):
                out["differs"].append(f"chain.{key}")
    out.update(_network_part(settings))
    return out


def read_descriptor(source: str, *, timeout_s: float = 10.0) -> NetworkDescriptor:
    """The descriptor at ``source``: an http(s):// URL (fetched with a timeout and a size limit) or a file."""
    if not source.startswith(("http://", "https://")):
        return read_descriptor_file(source)
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(source, timeout=timeout_s) as resp:  # noqa: S310 (http(s) only, checked above)
            data = resp.read(MAX_DESCRIPTOR_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise DescriptorError([f"the server answered HTTP {exc.code} ({exc.reason}): check the link"], source) from None
    except (urllib.error.URLError, OSError) as exc:
        why = getattr(exc, "reason", exc)
        raise DescriptorError([f"could not fetch it ({why}): check the link and the connection"], source) from None
    if len(data) > MAX_DESCRIPTOR_BYTES:
        raise DescriptorError([f"it is larger than {MAX_DESCRIPTOR_BYTES} bytes: not a network file"], source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DescriptorError(["it is not UTF-8 text"], source) from None
    return parse_descriptor(text, source)


def check_model(descriptor: NetworkDescriptor, check_config: Any, hub: Any = None) -> list[str]:
    """The problems with the descriptor's model: a family the engine cannot serve, or a model that cannot be
    found, or none at all (a node joined from a file serves the model it names; only on the public network does
    the node choose one). A model whose configuration cannot be read now (offline) is said so, not passed as
    checked. Empty for a servable model. ``check_config(config, model)`` is
    core.node.model_support.check_model_config (passed in: core.node already imports this package)."""
    from farnode_desktop.core.errors import FarNodeError
    from farnode_desktop.core.models.hub import HubClient, HubOfflineError

    if not descriptor.model:
        return ["model: the file names no model, and a node cannot start on this network without one. Ask the "
                "network's operator for a file that names its model (a hub id such as org/name, or a folder)."]
    try:
        cfg = (hub or HubClient()).model_config(descriptor.model)
        check_config(cfg.config, descriptor.model)
    except HubOfflineError as exc:
        return [f"model: {descriptor.model} could not be checked (the Hugging Face hub cannot be reached): "
                f"{exc.message}"]
    except FarNodeError as exc:  # not servable, not found, gated
        return [f"model: {exc.message}"]
    return []
