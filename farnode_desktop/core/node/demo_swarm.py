"""The embedded default: a private FarMesh swarm on this machine, a demo model, and real client traffic.

- :func:`ensure_demo_model` generates the small demo model once per data folder (in the engine
  environment, deterministic: same seed, same bytes), so nothing is downloaded.
- :func:`launcher_config` turns the settings into the launcher's configuration for any network (the local
  swarm, the public one or a custom list of peers).
- :class:`TrafficGenerator` runs a real FarMesh client (engine environment) that sends generations through
  the swarm at a configured rate and checks every answer against the same model run locally.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from farnode_desktop.core import process_tree
from farnode_desktop.core.errors import EngineEnvError, SettingsError
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.node.engine_venv import EngineEnv
from farnode_desktop.core.node.model_support import check_model_dir
from farnode_desktop.core.node.runtimes.base import EngineRuntime
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.payout.served import LedgerError, ServedLedger
from farnode_desktop.core.settings import LOCAL_SWARM, PUBLIC_SWARM, Settings
from farnode_desktop.engine import protocol as P

log = logging.getLogger(__name__)

DEMO_MODEL_DIR = "farmesh-demo-llama31-v2"  # engine/make_model.py DEMO_MODEL_NAME (Llama 3.1 style)
DEMO_DHT_PREFIX = "farmesh-demo"
LOOPBACK_MBPS = 10_000.0  # what the local swarm's server reports as its network: loopback is no bottleneck


# The previous engine (lock version 1, petals 2.2 with transformers 4.34) cannot load a Llama 3.1 config: while
# it still serves after a failed upgrade, the local swarm runs the previous (Llama 2 style) demo model.
PREVIOUS_DEMO_MODEL_DIR = "farmesh-demo-llama-v1"


def demo_model_path(paths: AppPaths, *, previous_engine: bool = False) -> Path:
    return paths.models_dir / (PREVIOUS_DEMO_MODEL_DIR if previous_engine else DEMO_MODEL_DIR)


def ensure_demo_model(paths: AppPaths, engine: EngineEnv | EngineRuntime, *,
                      cancel: Callable[[], bool] | None = None, previous_engine: bool | None = None) -> Path:
    """Generate the demo model if it is not there yet (in the engine, through its runtime; ``cancel()``
    stops it at once). Returns its folder. ``previous_engine``: the previous lock version's engine runs
    (after a failed upgrade; taken from the EngineEnv when one is given)."""
    if previous_engine is None:
        previous_engine = isinstance(engine, EngineEnv) and bool(engine.previous_version)
    target = demo_model_path(paths, previous_engine=previous_engine)
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    runtime = engine.runtime() if isinstance(engine, EngineEnv) else engine
    spec = runtime.command_spec("farnode_desktop.engine.make_model", [runtime.translate_path(target), "--family",
                                                                       "llama2" if previous_engine else "llama31"])
    done = process_tree.run(spec.argv, timeout=600, cancel=cancel, env=spec.env, cwd=spec.cwd)
    out = done.output.decode(errors="replace")
    if done.cancelled:
        shutil.rmtree(str(target) + ".tmp", ignore_errors=True)
        raise EngineEnvError("Making the demo model was cancelled. Start again to make it.",
                             title="Engine set-up cancelled")
    if done.returncode != 0:
        raise EngineEnvError("The demo model could not be generated: "
                             f"{(out.strip().splitlines() or ['unknown error'])[-1]}. Repair the engine "
                             "with `farnode-desktop engine setup`.", detail=out[-2000:])
    return target


def folder_dht_prefix(folder: Path) -> str:
    """The DHT prefix of a model served from a folder with no prefix set: its folder's name, as FarMesh turns a
    hub id into one ('.' to '-'), with anything else a prefix cannot hold also made '-'. Every node that has
    the model in a folder of the same name finds the others."""
    name = re.sub(r"[^A-Za-z0-9_-]", "-", folder.expanduser().resolve().name).strip("-")
    return (name or "model")[:100]


def launcher_config(settings: Settings, paths: AppPaths, *, node_id: str = "main",
                    model_path: Path | None = None, model: str | None = None) -> dict:
    """The launcher's configuration (see engine/launcher.py) for these settings; ``model``: the model to
    serve when the app chose it (the public network with no model set)."""
    net = settings.network
    local = net.swarm == LOCAL_SWARM
    model = str(model_path) if (local and model_path) else (model or net.model)
    if not model:
        raise SettingsError("No model is set for this network. Choose one in Settings > Network.")
    check_model_dir(model)  # a model family the engine cannot serve is refused before anything starts
    public_name = net.public_name or settings.wallet.address
    device = net.device if net.device != "auto" else "cpu"
    cfg = {
        "model": model,
        "host": net.host or ("127.0.0.1" if local else "0.0.0.0"),
        "port": net.port,
        "device": device,
        "num_handlers": net.num_handlers,
        "identity_path": str(paths.run_dir / f"identity-{node_id}.key"),
        "cache_dir": str(paths.engine_cache_dir),
        "public_name": public_name or None,
    }
    if local:
        # Nothing of the local swarm leaves this computer: no NAT port mapping, AutoNAT or relays for its
        # p2pd, no speed test or version check, and the engine refuses any connection outside loopback.
        cfg.update(new_swarm=True, dht_prefix=net.dht_prefix or DEMO_DHT_PREFIX, local_network=True,
                   nat_traversal=False, network_checks=False, network_mbps=LOOPBACK_MBPS,
                   torch_dtype="float32", quant_type="none", update_period=30)
    else:
        cfg.update(nat_traversal=net.nat_traversal, network_checks=not net.metered)
        if net.metered:
            cfg["network_mbps"] = net.bandwidth_mbps
        if net.dht_prefix:
            cfg["dht_prefix"] = net.dht_prefix
        elif Path(model).expanduser().is_dir():  # FarMesh derives a prefix from a hub id only, never a folder
            cfg["dht_prefix"] = folder_dht_prefix(Path(model))
        if net.swarm != PUBLIC_SWARM:
            if net.initial_peers:
                cfg["initial_peers"] = list(net.initial_peers)
            else:  # a custom network with no peers yet: this node starts it, the others join its address
                cfg["new_swarm"] = True
    if local:
        # The only server of a private swarm serves every block; fixed indices also skip FarMesh's random
        # 0-5 s block-selection delay, which only matters when many servers start at once.
        cfg["block_indices"] = f"0:{net.num_blocks or _num_layers(Path(model))}"
    elif net.num_blocks:
        cfg["num_blocks"] = net.num_blocks
    elif device == "cpu":
        cfg["num_blocks"] = 1
    if net.quantization != "auto" and not local:
        cfg["quant_type"] = net.quantization
    return cfg


def _num_layers(model_dir: Path) -> int:
    try:
        config = json.loads((model_dir / "config.json").read_text())
        return int(config.get("num_hidden_layers") or config["n_layer"])  # n_layer: BLOOM's name for it
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 1


@dataclass(frozen=True)
class TrafficStats:
    requests: int = 0
    ok: int = 0
    mismatches: int = 0
    errors: int = 0
    tokens_sent: int = 0
    ready: bool = False
    last_error: str = ""


TRAFFIC_LOG_NAME = "traffic.log"  # kept within its size by the app's log trimmer (core/logfiles.py)


class TrafficGenerator:
    """A real FarMesh client process sending checked requests to the local swarm."""

    def __init__(self, engine: EngineEnv | EngineRuntime, bus: EventBus, log_dir: Path,
                 served_ledger: Path | None = None):
        """``served_ledger``: where each finished request's tokens per server are recorded for the demo
        payout service (None: not recorded)."""
        self.served_ledger_path = Path(served_ledger) if served_ledger is not None else None
        self._ledger: ServedLedger | None = None
        self._run_id = ""
        self.runtime = engine.runtime() if isinstance(engine, EngineEnv) else engine
        self.bus = bus
        self.log_path = Path(log_dir) / TRAFFIC_LOG_NAME
        self._proc: subprocess.Popen | None = None
        self._tree: process_tree.ProcessTree | None = None
        self._stats = TrafficStats()
        self._lock = threading.Lock()
        self._op_lock = threading.Lock()  # one start or stop at a time (state changes and the user race)
        self._threads: list[threading.Thread] = []

    @property
    def stats(self) -> TrafficStats:
        return self._stats

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, *, model: Path, initial_peers: list[str], dht_prefix: str | None, rate_per_minute: float,
              count: int = 0, max_new_tokens: int = 12, prompt_len: int = 6, forward_every: int = 5,
              seed: int = 0, wanted: Callable[[], bool] | None = None) -> None:
        """Start the client on the local swarm (loopback only, no NAT traversal). ``wanted`` is asked under
        the same lock as :meth:`stop` takes: a stop that came first wins, one that comes later stops it."""
        with self._op_lock:
            if self.running or (wanted is not None and not wanted()):
                return
            self._start(model, initial_peers, dht_prefix, rate_per_minute, count, max_new_tokens, prompt_len,
                        forward_every, seed)

    def _start(self, model: Path, initial_peers: list[str], dht_prefix: str | None, rate_per_minute: float,
               count: int, max_new_tokens: int, prompt_len: int, forward_every: int, seed: int) -> None:
        self._stats = TrafficStats()
        self._run_id = uuid.uuid4().hex[:12]  # request numbers restart with each client: ids must not repeat
        cfg = P.TrafficConfig(model=self.runtime.translate_path(model), initial_peers=tuple(initial_peers),
                              dht_prefix=dht_prefix,
                              rate_per_minute=rate_per_minute, count=count, max_new_tokens=max_new_tokens,
                              prompt_len=prompt_len, forward_every=forward_every, seed=seed,
                              nat_traversal=False, local_network=True)
        native = self.runtime.name == "native"
        r_fd, w_fd = os.pipe() if native else (None, None)
        spec = self.runtime.spawn_spec("farnode_desktop.engine.traffic", [], None, w_fd, node_id="traffic")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed here after the start
        kwargs = spec.popen_kwargs()
        if not spec.events_on_stdout:
            kwargs.update(stdout=logf, stderr=subprocess.STDOUT)
        else:
            kwargs.update(stderr=logf)
        try:
            self._proc, self._tree = process_tree.spawn(spec.argv, **kwargs)
        finally:
            if w_fd is not None:
                os.close(w_fd)
            logf.close()
        events = self._proc.stdout if spec.events_on_stdout else os.fdopen(r_fd, "rb", buffering=0)
        self._proc.stdin.write((cfg.to_json() + "\n").encode())
        self._proc.stdin.flush()
        t = threading.Thread(target=self._read, args=(events,), daemon=True, name="traffic-events")
        t.start()
        self._threads = [t]

    def _read(self, events) -> None:
        def bad(line: bytes, why: str) -> None:
            log.warning("unreadable event from the demo client (%s): %r", why, line)

        with events as pipe:
            for ev in P.iter_events(pipe, bad):
                self._on_event(ev)

    def _on_event(self, ev: P.Event) -> None:
        s = self._stats
        with self._lock:
            if isinstance(ev, P.Ready):
                s = replace(s, ready=True)
            elif isinstance(ev, P.Request):
                s = replace(s, requests=s.requests + 1, ok=s.ok + ev.ok, mismatches=s.mismatches + (not ev.ok),
                            tokens_sent=s.tokens_sent + ev.tokens_sent)
            elif isinstance(ev, P.Error):
                s = replace(s, errors=s.errors + 1, last_error=ev.message[:300])
            self._stats = s
        if isinstance(ev, P.Request) and ev.served:
            self._record_served(ev)
        elif isinstance(ev, P.ServerAnnounce) and ev.peer_id:
            self._note_peer(ev)
        if isinstance(ev, (P.Request, P.Error, P.Mismatch)):
            self.bus.publish(f"traffic.{ev.KIND}", ev)  # the typed event
        if isinstance(ev, P.Mismatch):
            log.error("the swarm's answer differs from the local model's: request %s", ev.n)

    def _record_served(self, ev: P.Request) -> None:
        """One finished request's tokens per server into the served ledger (the demo payout service pays
        from it). A malformed count is logged and skipped; a ledger that cannot be written is logged."""
        if self.served_ledger_path is None:
            return
        served = {str(k): v for k, v in (ev.served or {}).items()
                  if isinstance(v, int) and not isinstance(v, bool) and v > 0}
        if len(served) != len(ev.served or {}):
            log.warning("request %s: dropped malformed token counts %r", ev.n, ev.served)
        if not served:
            return
        try:
            if self._ledger is None:
                self._ledger = ServedLedger(self.served_ledger_path)
            self._ledger.record(f"{self._run_id}:{ev.n}", time.time(), served)
        except (LedgerError, OSError) as exc:
            log.error("could not record request %s in the served ledger: %s", ev.n, exc)

    def _note_peer(self, ev: P.ServerAnnounce) -> None:
        """What a server on the demo routes announces (public name, signed wallet binding) into the served
        ledger; the payout service checks the signature before it pays."""
        if self.served_ledger_path is None:
            return
        try:
            if self._ledger is None:
                self._ledger = ServedLedger(self.served_ledger_path)
            self._ledger.note_peer(ev.peer_id, ev.public_name, ev.statement, ev.signature, time.time())
        except (LedgerError, OSError) as exc:
            log.error("could not note server %s in the served ledger: %s", ev.peer_id, exc)

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate(self._stats):
                return True
            if self._proc is not None and self._proc.poll() is not None:
                time.sleep(0.2)
                return predicate(self._stats)
            time.sleep(0.1)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        with self._op_lock:
            proc = self._proc
            if proc is None:
                return
            try:
                proc.stdin.write(P.STOP_LINE)
                proc.stdin.close()
            except (OSError, ValueError):  # it exited and its pipe is gone, or the pipe was closed already
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            if self._tree is not None:
                self._tree.kill()  # its client-side p2pd too
            proc.wait()
            for t in self._threads:
                t.join(2)
            if self._ledger is not None and not any(t.is_alive() for t in self._threads):
                self._ledger.close()  # the event reader is done with it
                self._ledger = None
            self._proc = None
            self._tree = None
