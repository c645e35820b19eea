"""``farnode-desktop plan``, ``swarm`` and ``hf-token``: the node's plan, the network around it, the token."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.settings import Settings, SettingsStore


def _settings(paths: AppPaths, out: TextIO) -> Settings:
    store = SettingsStore(paths.settings_file)
    settings = store.load()  # a damaged file: DamagedSettings, which the command line prints
    for note in store.notes:
        print(f"warning: {note}", file=sys.stderr)
    return settings


def cli_plan(*, as_json: bool = False, nvml=None, paths: AppPaths | None = None, out: TextIO | None = None,
             token=None) -> int:
    """Print what the node would run with the current settings: each planned server's GPU, device, blocks,
    quantization, dtype, cache, listen and announce addresses, model and reason."""
    from farnode_desktop.core.node.plan import format_plan, plan_for

    out = out or sys.stdout
    paths = (paths or AppPaths.default()).ensure()
    settings = _settings(paths, out)
    if token is None:
        from farnode_desktop.core.models.hf_token import HfTokenStore

        token = HfTokenStore().read
    plan = plan_for(settings, paths, nvml=nvml, token=token)
    if as_json:
        print(json.dumps(plan.to_dict(), indent=2), file=out)
    else:
        for line in format_plan(plan):
            print(line, file=out)
    return 0


def cli_hf_token(action: str, *, paths: AppPaths | None = None, out: TextIO | None = None,
                 stdin: TextIO | None = None, store=None) -> int:
    """``set`` (reads the token from standard input, never from the command line), ``status``, ``remove``."""
    from farnode_desktop.core.models.hf_token import HfTokenStore, clean_token
    from farnode_desktop.core.models.hub import HubClient, HubOfflineError

    out = out or sys.stdout
    store = store or HfTokenStore()
    if action == "status":
        print("A Hugging Face token is in the keyring." if store.has() else
              "No Hugging Face token is in the keyring.", file=out)
        return 0
    if action == "remove":
        print("Removed the Hugging Face token from the keyring." if store.remove() else
              "There was no Hugging Face token in the keyring.", file=out)
        return 0
    stdin = stdin or sys.stdin
    if stdin.isatty():
        import getpass

        text = getpass.getpass("Hugging Face access token (input hidden): ")
    else:
        text = stdin.readline()
    token = clean_token(text)
    try:
        name = HubClient().whoami(token)
        who = f" (account {name})" if name else ""
    except HubOfflineError:
        who = " (not checked: the hub cannot be reached now)"
    store.set(token)
    print(f"Saved the Hugging Face token in the keyring{who}.", file=out)
    return 0


def _read_peers_file(paths: AppPaths) -> dict:
    try:
        data = json.loads((paths.run_dir / "peers.json").read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def format_view(view, network: str) -> list[str]:
    """The network view as lines of text (``farnode-desktop swarm``)."""
    import time as _time

    lines = [f"Network: {network}, read {_time.strftime('%H:%M:%S', _time.localtime(view.time))}"
             + (f"; this node: {', '.join(p[:12] + '…' for p in view.my_peers)}" if view.my_peers else "")]
    if not view.models:
        lines.append("No model is served on this network right now.")
    for m in view.models:
        servers = [s for s in m.servers if s.state != "offline"]
        whole = "every block is served" if m.complete else "SOME BLOCKS HAVE NO SERVER: generation fails"
        lines.append(f"Model {m.name} ({m.dht_prefix}): {m.num_blocks} blocks, {len(servers)} servers, {whole}")
        lines.append("  servers per block: " + " ".join(f"{i}:{n}" for i, n in enumerate(m.servers_per_block)))
        start, end = m.least_covered
        low = min(m.throughput_per_block[start:end], default=0.0)
        n = min(m.servers_per_block[start:end], default=0)
        lines.append(f"  least covered: blocks {start}-{end - 1} ({n} server{'s' * (n != 1)}, {low:.0f} tokens/s)")
        for s in m.servers:
            a, b = s.span
            relay = "relay" if s.using_relay else "direct" if s.using_relay is False else "?"
            cache = f"cache {s.cache_tokens_left} tokens" if s.cache_tokens_left is not None else "cache ?"
            answered = "" if s.answered is None else ("  answers" if s.answered else "  NOT ANSWERING")
            lines.append(f"  {'*' if s.mine else ' '} {s.peer_id}  blocks {a}-{b - 1}  {s.state}  "
                         f"v{s.version or '?'}  {relay}  {s.throughput:.0f} tokens/s  {cache}"
                         f"{'  ' + s.public_name if s.public_name else ''}{answered}"
                         f"{'  (this node)' if s.mine else ''}")
    return lines


def cli_swarm(*, as_json: bool = False, paths: AppPaths | None = None, out: TextIO | None = None,
              timeout: float = 60.0) -> int:
    """Read the network this node's settings name (through this node's own servers when they run) and
    print its models, their block coverage and servers; this node's servers are marked."""
    from farnode_desktop.core.errors import FarNodeError
    from farnode_desktop.core.network.monitor import read_once
    from farnode_desktop.core.node.engine_venv import EngineEnv, choose_variant
    from farnode_desktop.core.node.runtimes import make_runtime
    from farnode_desktop.core.settings import CUSTOM_SWARM, LOCAL_SWARM

    out = out or sys.stdout
    paths = (paths or AppPaths.default()).ensure()
    settings = _settings(paths, out)
    net = settings.network
    running = _read_peers_file(paths).get("servers") or {}
    own = [a for p in running.values() for a in p.get("addrs", [])]
    mine = {p["peer_id"] for p in running.values() if p.get("peer_id")}
    peers = own + [p for p in (net.initial_peers if net.swarm == CUSTOM_SWARM else []) if p not in own]
    if net.swarm == CUSTOM_SWARM and not peers:
        raise FarNodeError("No peer addresses for this network: set them with `farnode-desktop settings set "
                           "network.initial_peers ...`, then run `farnode-desktop swarm` again.",
                           title="No network to read")
    if net.swarm == LOCAL_SWARM and not peers:
        raise FarNodeError("The local demo swarm exists only while this node runs. Start the node, then run "
                           "`farnode-desktop swarm` again.", title="No network to read")
    engine = EngineEnv(paths, choose_variant(paths, net.device))
    runtime = make_runtime(net.runtime, engine=engine, paths=paths, variant=engine.variant,
                           docker_image=net.docker_image)
    view = read_once(runtime, initial_peers=peers, my_peers=mine,
                     nat_traversal=net.swarm != LOCAL_SWARM and net.nat_traversal,
                     check=sorted(mine), timeout=timeout, log_path=paths.log_dir / "swarm-command.log")
    if as_json:
        print(json.dumps(dict(view.to_dict(), network=net.swarm), indent=2), file=out)
    else:
        for line in format_view(view, net.swarm):
            print(line, file=out)
    return 0


def cli_network(action: str, source: str = "", *, as_json: bool = False, paths: AppPaths | None = None,
                out: TextIO | None = None) -> int:
    """``network join FILE|URL`` (check it, write the settings it gives) and ``network show [--json]``."""
    from farnode_desktop.core.network.descriptor import DescriptorError, join, read_descriptor, show
    from farnode_desktop.core.node.model_support import check_model_config

    out = out or sys.stdout
    paths = (paths or AppPaths.default()).ensure()
    if action == "join":
        try:
            desc = read_descriptor(source)
            join(desc, source, paths.settings_file, check_config=check_model_config)
        except DescriptorError as exc:
            print(exc.message, file=sys.stderr)
            return 2
        print(f"Joined the network {desc.name!r}: {len(desc.initial_peers)} peer(s), model "
              f"{desc.model or '(chosen by the node)'}. Settings saved.", file=out)
        return 0
    from farnode_desktop.core.localchain.effective import builtin_network
    from farnode_desktop.core.localchain.payouts import DEMO_RATE_PER_1K_TOKENS

    info = show(_settings(paths, out), paths.settings_file, builtin_network(paths.chain_dir, DEMO_RATE_PER_1K_TOKENS))
    if as_json:
        print(json.dumps(info, indent=2), file=out)
        return 0
    print(f"Network: {info['name'] or '(none joined from a file)'} ({info['swarm']} swarm)", file=out)
    if info["source"]:
        print(f"From: {info['source']}", file=out)
    print(f"Peers: {len(info['initial_peers'])}; model: {info['model'] or '(automatic)'}; DHT prefix: "
          f"{info['dht_prefix'] or '(automatic)'}", file=out)
    chain = info["chain"]
    if chain.get("rpc_url"):
        print(f"Payouts: chain {chain['chain_id']} at {chain['rpc_url']}, token {chain['token_address'] or '?'}, "
              f"{chain['reward_per_1k_tokens']:g} per 1,000 tokens served, {chain['confirmations']} confirmation(s)",
              file=out)
    else:
        print(f"Payouts: {info.get('chain_note') or 'no payout chain set'}", file=out)
    for key in info["differs"]:
        print(f"Differs from the network file: {key}", file=out)
    return 0
