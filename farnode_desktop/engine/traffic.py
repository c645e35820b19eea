"""Real client traffic for the local demo swarm: a FarMesh client that checks every answer.

Run by the app in the engine environment: ``python -m farnode_desktop.engine.traffic --event-fd N`` with its
configuration (protocol.TrafficConfig) as the first line of stdin. It loads the same model locally, sends greedy
generations (and now and then a plain forward pass) through the swarm at the configured rate, and compares:
generated tokens must be identical, forward outputs within float tolerance. Events (protocol.py): Ready,
Request, Mismatch, Error, Done. ``tokens_sent`` is counted inside the client at the point where each inference step leaves for a
server, so the app can check it against what the server counted. Stops on ``stop``, at the end of stdin or when
the event pipe's reader is gone (channel.ControlPipe).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
import traceback

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from farnode_desktop.engine import protocol as P  # noqa: E402
from farnode_desktop.engine.channel import ControlPipe, EventWriter, kill_process_group_except_self  # noqa: E402

STOP_GRACE_S = 8.0  # after a stop request, an unfinished request gets this long before the process exits
APP_GONE_GRACE_S = 1.0  # the same when the app is gone (its control or event pipe closed)


def run(w: EventWriter, cfg: P.TrafficConfig, stop: threading.Event) -> int:
    from farnode_desktop.engine.compat import import_engine

    if cfg.local_network:
        from farnode_desktop.engine.loopback import guard

        guard(who="traffic")
    engine = import_engine()
    if not cfg.nat_traversal:
        from farnode_desktop.engine.nat import disable_nat_traversal

        disable_nat_traversal()
    import importlib

    import torch

    torch.manual_seed(cfg.seed)
    from transformers import AutoModelForCausalLM

    sent = {"tokens": 0}
    per_server: dict[str, int] = {}  # this request's tokens by the peer id of the server they went to
    forward_tokens = {"n": 0}  # while a forward pass runs: the tokens each span of its route receives
    session_mod = importlib.import_module(f"{engine.__name__}.client.inference_session")
    server_session = session_mod._ServerInferenceSession
    orig_step = server_session.step

    def step(self, inputs, *args, **kwargs):
        out = orig_step(self, inputs, *args, **kwargs)
        # The engine checks that the output has the shape of what this step sent (the whole history on a
        # session's first step with this server, the new tokens after): batch x tokens x hidden.
        n_tokens = int(out.shape[0]) * int(out.shape[1])
        sent["tokens"] += n_tokens
        peer = str(self.span.peer_id)
        per_server[peer] = per_server.get(peer, 0) + n_tokens
        return out

    server_session.step = step
    # A forward pass reports each span that answered (sequential_autograd.sequential_forward) here, with its
    # server's peer id; re-routed spans after a failure report the server that did answer.
    manager_cls = importlib.import_module(f"{engine.__name__}.client.routing.sequence_manager").RemoteSequenceManager
    orig_success = manager_cls.on_request_success

    def on_request_success(self, peer_id):
        if forward_tokens["n"]:
            peer = str(peer_id)
            per_server[peer] = per_server.get(peer, 0) + forward_tokens["n"]
        return orig_success(self, peer_id)

    manager_cls.on_request_success = on_request_success

    model_path = cfg.model
    local = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch.float32)
    local.eval()
    remote = engine.AutoDistributedModelForCausalLM.from_pretrained(
        model_path, initial_peers=list(cfg.initial_peers), dht_prefix=cfg.dht_prefix,
        torch_dtype=torch.float32,
    )
    remote.eval()
    w.send(P.Ready())
    # The engine's client closes a forgotten _ServerInferenceSession in __del__ by running a coroutine on its
    # RemoteExpertWorker event loop and waiting for it. If the cyclic garbage collector happens to run on
    # that loop's own thread, the wait never ends (seen here: the 5th back-to-back generation hung). So the
    # collector runs only here, on the main thread, between requests.
    gc.disable()
    rate = cfg.rate_per_minute
    interval = 60.0 / rate if rate > 0 else 0.0
    count, max_new, prompt_len, forward_every = cfg.count, cfg.max_new_tokens, cfg.prompt_len, cfg.forward_every
    vocab = int(local.config.vocab_size)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = 0
    announced: dict[str, tuple] = {}  # peer id -> what was last emitted for it
    next_at = time.monotonic()
    while not stop.is_set() and (count == 0 or n < count):
        wait = next_at - time.monotonic()
        if wait > 0 and stop.wait(wait):
            break
        next_at = max(next_at + interval, time.monotonic())
        n += 1
        gc.collect()
        ids = torch.randint(3, vocab, (1, prompt_len), generator=gen)
        kind = "forward" if forward_every and n % forward_every == 0 else "generate"
        t0 = time.perf_counter()
        before = sent["tokens"]
        per_server.clear()
        try:
            with torch.inference_mode():
                if kind == "generate":
                    got = remote.generate(ids, max_new_tokens=max_new, do_sample=False)
                    latency = time.perf_counter() - t0
                    want = local.generate(ids, max_new_tokens=max_new, do_sample=False)
                    ok = bool(torch.equal(got, want))
                    new_tokens = int(got.shape[1] - ids.shape[1])
                    tokens_sent = sent["tokens"] - before
                else:
                    forward_tokens["n"] = int(ids.numel())
                    try:
                        got = remote(ids).logits
                    finally:
                        forward_tokens["n"] = 0
                    latency = time.perf_counter() - t0
                    want = local(ids).logits
                    ok = bool(torch.allclose(got, want, atol=1e-4, rtol=1e-4))
                    new_tokens = 0
                    tokens_sent = int(ids.numel())
        except Exception as exc:  # noqa: BLE001 - the app shows it; the generator keeps going
            w.send(P.Error(n=n, kind=kind, message=f"{type(exc).__name__}: {exc}",
                           detail=traceback.format_exc()[-1500:]))
            continue
        w.send(P.Request(n=n, kind=kind, ok=ok, tokens_sent=tokens_sent, new_tokens=new_tokens,
                         prompt_tokens=prompt_len, latency_s=round(latency, 4), served=dict(per_server)))
        _announce_servers(w, remote, cfg.dht_prefix, set(per_server), announced)
        if not ok:
            w.send(P.Mismatch(n=n, kind=kind, prompt=ids.tolist(), got=got.tolist() if kind == "generate" else None,
                              want=want.tolist() if kind == "generate" else None))
    w.send(P.Done(requests=n))
    try:
        remote.transformer.h.sequence_manager.shutdown()
    except Exception:
        pass
    return 0


def _announce_servers(w: EventWriter, remote, dht_prefix: str | None, peers: set[str],
                      announced: dict[str, tuple]) -> None:
    """Emit a ServerAnnounce for each server in ``peers`` whose public name or wallet binding changed since
    it was last emitted. A DHT that cannot be read is skipped quietly:
    the next request asks again."""
    if not peers or not dht_prefix:
        return
    from farnode_desktop.engine.binding import read_bindings

    try:
        manager = remote.transformer.h.sequence_manager
        bindings = read_bindings(manager.dht, dht_prefix)
        names: dict[str, str] = {}
        for info in manager.state.sequence_info.block_infos:
            for peer_id, server in info.servers.items():
                if server.public_name:
                    names[str(peer_id)] = str(server.public_name)
    except Exception:  # noqa: BLE001 - the swarm's view is best effort between requests
        return
    for peer in sorted(peers):
        statement, signature = bindings.get(peer, ("", ""))
        now = (names.get(peer, ""), statement, signature)
        if announced.get(peer) != now:
            announced[peer] = now
            w.send(P.ServerAnnounce(peer_id=peer, public_name=now[0], statement=statement, signature=signature))


def _stop(stop: threading.Event, why: str = "") -> None:
    """Ask the request loop to end; a request that is still stuck after STOP_GRACE_S seconds (its server
    went away mid-request) is not waited for: nobody is left to wait for its answer. When the app is gone
    (under WSL2: its wsl.exe was killed), nobody reads any answer: the client ends after APP_GONE_GRACE_S."""
    stop.set()
    time.sleep(APP_GONE_GRACE_S if why.startswith("the app is gone") else STOP_GRACE_S)
    kill_process_group_except_self()
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="farnode-traffic")
    ap.add_argument("--event-fd", type=int, required=True)
    args = ap.parse_args(argv)
    w = EventWriter(args.event_fd)
    control = ControlPipe.from_stdin(w)
    try:
        cfg = P.TrafficConfig.from_dict(control.read_config())
    except P.ProtocolError as exc:
        w.send(P.Error(message=f"no valid configuration on stdin ({exc})", fatal=True))
        return P.ExitCode.CONFIG
    stop = threading.Event()
    control.start(lambda why: _stop(stop, why))  # stop, end of stdin, or the event pipe's reader gone
    try:
        return run(w, cfg, stop)
    except Exception as exc:  # noqa: BLE001
        w.send(P.Error(message=f"{type(exc).__name__}: {exc}", detail=traceback.format_exc()[-2000:], fatal=True))
        return P.ExitCode.CRASH


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    kill_process_group_except_self()  # the client's own p2pd
    os._exit(int(code))  # the client's DHT threads must not keep the process alive
