"""Reads the network around the node from its DHT and reports it as JSON lines (the app's network view).

Run by the app in the engine environment, never by hand:
``python -m farnode_desktop.engine.swarm_probe --event-fd N`` with its configuration as the first line of
standard input (JSON):

- ``initial_peers``: multiaddrs to join the network through; empty: the engine's public bootstrap peers;
- ``interval``: seconds between two snapshots (0: one snapshot, then exit);
- ``nat_traversal`` (default true): false turns NAT port mapping, AutoNAT and relays off for its p2pd;
- ``check``: peer ids whose servers this probe calls directly (``rpc_info``), as any other peer of the
  network would: whether they answer, and their live cache;
- ``timeout``: seconds for joining the network and for each call.

Later lines of standard input: ``stop``; end of file there also stops it. Events (one JSON object per line,
``"e"`` the kind, ``"t"`` epoch seconds):

- ``hello``: ``engine``, ``public_peers`` (the engine's bootstrap addresses for the public network);
- ``network``: one snapshot: ``peer_id`` (this probe's), ``models`` (per model in the engine's model index:
  ``dht_prefix``, ``num_blocks``, ``repository`` and ``servers``, each server with its ``peer_id``, ``blocks``
  (indices it announced), ``state`` (offline, joining, online) and what it announced: ``throughput``,
  ``start_block``, ``end_block``, ``public_name``, ``version``, ``using_relay``, ``cache_tokens_left``,
  ``torch_dtype``, ``quant_type``, ``inference_rps``, ``forward_rps``, ``network_rps``), and ``checks``
  (per checked peer id: ``answered`` and, when it did, ``cache_tokens_left`` and ``version``);
- ``failed``: ``category`` (``bootstrap`` when none of the initial peers answered), ``message``.

Standard library and the engine only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

_STATES = {0: "offline", 1: "joining", 2: "online"}


class Output:
    def __init__(self, fd: int):
        self.fd = fd
        self.lock = threading.Lock()

    def emit(self, kind: str, **fields) -> None:
        fields["e"], fields["t"] = kind, time.time()
        data = (json.dumps(fields, separators=(",", ":"), default=str) + "\n").encode()
        with self.lock:
            try:
                os.write(self.fd, data)
            except OSError:
                os._exit(0)  # the app is gone


def watch_stdin(stop: threading.Event) -> None:
    """``stop`` or end of file on standard input (the app is gone) ends the probe."""
    buf = b""
    while True:
        try:
            chunk = os.read(0, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            break
        buf = (buf + chunk)[-64:]
        if b"stop" in buf:
            break
    stop.set()


def model_index_key(engine_name: str) -> str:
    return f"_{engine_name}.models"


def read_models(dht, engine, timeout: float) -> list[dict]:
    """Every model in the engine's model index, with the servers of each of its blocks."""
    import importlib

    dht_utils = importlib.import_module(f"{engine.__name__}.utils.dht")
    index = dht.get(model_index_key(engine.__name__), latest=True, return_future=True).result(timeout)
    models = []
    entries = index.value if index is not None and isinstance(index.value, dict) else {}
    for prefix, item in sorted(entries.items()):
        info = getattr(item, "value", item)
        if not isinstance(info, dict):
            continue
        try:
            num_blocks = int(info.get("num_blocks") or 0)
        except (TypeError, ValueError):
            continue
        if num_blocks <= 0 or num_blocks > 10_000:
            continue
        uids = [f"{prefix}.{i}" for i in range(num_blocks)]
        infos = dht_utils.get_remote_module_infos(dht, uids, latest=True, return_future=True).result(timeout)
        records: dict[str, list] = {}
        for block, module in enumerate(infos):
            for peer_id, si in module.servers.items():
                records.setdefault(peer_id.to_base58(), []).append((block, si))
        # A server that moved to other blocks still has records of its old ones, announced offline: it is
        # shown in its liveliest state, with the blocks of that state.
        servers: dict[str, dict] = {}
        for pid, recs in records.items():
            best = max(_state_value(si) for _, si in recs)
            first = next(si for _, si in recs if _state_value(si) == best)
            servers[pid] = {"peer_id": pid, "blocks": [b for b, si in recs if _state_value(si) == best],
                            **_server_fields(first)}
        models.append({"dht_prefix": prefix, "num_blocks": num_blocks, "repository": info.get("repository"),
                       "servers": sorted(servers.values(), key=lambda s: (min(s["blocks"]), s["peer_id"]))})
    return models


def _state_value(si) -> int:
    return int(getattr(si.state, "value", si.state))


def _server_fields(si) -> dict:
    state = getattr(si.state, "value", si.state)
    out = {"state": _STATES.get(state, str(state)), "throughput": float(si.throughput)}
    for name in ("start_block", "end_block", "public_name", "version", "using_relay", "cache_tokens_left",
                 "torch_dtype", "quant_type", "inference_rps", "forward_rps", "network_rps"):
        value = getattr(si, name, None)
        out[name] = value
    return out


_P2P = []  # the probe's one handle on its DHT's p2p daemon, made on first use


def check_servers(dht, engine, peers: list[str], models: list[dict], timeout: float) -> dict[str, dict]:
    """Call ``rpc_info`` on each server as a client of the network would: a fresh connection from this probe
    to the addresses the server announced."""
    if not peers:
        return {}
    import importlib

    from hivemind import MSGPackSerializer, PeerID
    from hivemind.moe.client.remote_expert_worker import RemoteExpertWorker
    from hivemind.proto import runtime_pb2

    handler = importlib.import_module(f"{engine.__name__}.server.handler")
    uid_of = {}
    for m in models:
        for s in m["servers"]:
            if s["blocks"]:
                uid_of.setdefault(s["peer_id"], f"{m['dht_prefix']}.{s['blocks'][0]}")
    if not _P2P:
        _P2P.append(RemoteExpertWorker.run_coroutine(dht.replicate_p2p()))
    p2p = _P2P[0]
    out = {}
    for peer in peers:
        uid = uid_of.get(peer)
        if uid is None:
            out[peer] = {"answered": None, "why": "it announces no block"}
            continue

        async def call(peer=peer, uid=uid):
            stub = handler.TransformerConnectionHandler.get_stub(p2p, PeerID.from_base58(peer))
            return await stub.rpc_info(runtime_pb2.ExpertUID(uid=uid), timeout=timeout)

        try:
            response = RemoteExpertWorker.run_coroutine(call())
            info = MSGPackSerializer.loads(response.serialized_info)
            out[peer] = {"answered": True, "cache_tokens_left": info.get("cache_tokens_available"),
                         "version": info.get("version"), "dht_client_mode": info.get("dht_client_mode")}
        except Exception as exc:  # noqa: BLE001 - not answering is the result
            out[peer] = {"answered": False, "why": f"{type(exc).__name__}: {exc}"[:300]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="farnode-swarm-probe")
    ap.add_argument("--event-fd", type=int, required=True)
    args = ap.parse_args(argv)
    fd = args.event_fd
    if fd == 1:  # events own stdout; anything else printed goes to stderr
        fd = os.dup(1)
        os.dup2(2, 1)
    out = Output(fd)
    line = b""
    while not line.endswith(b"\n"):
        b = os.read(0, 1)
        if not b:
            break
        line += b
    try:
        config = json.loads(line or b"{}")
    except ValueError:
        config = None
    if not isinstance(config, dict):
        out.emit("failed", category="config", message="the probe got no valid configuration on stdin")
        return 2
    stop = threading.Event()
    threading.Thread(target=watch_stdin, args=(stop,), daemon=True, name="probe-stdin").start()

    from farnode_desktop.engine.compat import import_engine

    engine = import_engine()
    import importlib

    constants = importlib.import_module(f"{engine.__name__}.constants")
    public = list(getattr(constants, "PUBLIC_INITIAL_PEERS", []))
    out.emit("hello", engine=engine.__name__, engine_version=getattr(engine, "__version__", "?"),
             public_peers=public)
    peers = list(config.get("initial_peers") or public)
    timeout = float(config.get("timeout") or 15)
    nat = bool(config.get("nat_traversal", True))
    from hivemind import DHT

    try:
        dht = DHT(initial_peers=peers, client_mode=True, start=True, num_workers=8, startup_timeout=timeout,
                  use_relay=nat, use_auto_relay=False, nat_port_map=nat, auto_nat=nat)
    except Exception as exc:  # noqa: BLE001 - every failure reaches the app with a category
        text = f"{type(exc).__name__}: {exc}"
        bootstrap = "bootstrap" in text.lower() or "initial_peers" in text.lower() or "failed to connect" in text
        out.emit("failed", category="bootstrap" if bootstrap else "crash", message=text[:1500], tried=peers)
        return 3
    interval = float(config.get("interval") or 0)
    check = [str(p) for p in config.get("check") or []]
    import faulthandler

    try:
        while True:
            started = time.monotonic()
            # A reading that hangs (a DHT query without a deadline) ends the process with its stacks in the
            # log; the app starts a new probe.
            faulthandler.dump_traceback_later(3 * timeout + 30, exit=True)
            try:
                models = read_models(dht, engine, timeout)
                checks = check_servers(dht, engine, check, models, timeout)
                out.emit("network", peer_id=str(dht.peer_id), models=models, checks=checks)
            except Exception as exc:  # noqa: BLE001 - one failed reading; the next one may work
                out.emit("error", message=f"{type(exc).__name__}: {exc}"[:1500])
            faulthandler.cancel_dump_traceback_later()
            if interval <= 0 or stop.wait(max(0.0, interval - (time.monotonic() - started))):
                break
    finally:
        try:
            dht.shutdown()
        except Exception:  # noqa: BLE001
            pass
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
