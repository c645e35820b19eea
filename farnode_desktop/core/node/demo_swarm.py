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
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from farnode_desktop.core.errors import EngineEnvError, SettingsError
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.node.engine_venv import PACKAGE_ROOT, EngineEnv, engine_subprocess_env
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.settings import LOCAL_SWARM, PUBLIC_SWARM, Settings
from farnode_desktop.engine import protocol as P

log = logging.getLogger(__name__)

DEMO_MODEL_DIR = "farmesh-demo-llama-v1"
DEMO_DHT_PREFIX = "farmesh-demo"
LOOPBACK_MBPS = 10_000.0  # what the local swarm's server reports as its network: loopback is no bottleneck


def demo_model_path(paths: AppPaths) -> Path:
    return paths.models_dir / DEMO_MODEL_DIR


def ensure_demo_model(paths: AppPaths, engine: EngineEnv) -> Path:
    """Generate the demo model if it is not there yet. Returns its folder."""
    target = demo_model_path(paths)
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([str(engine.python), "-m", "farnode_desktop.engine.make_model", str(target)],
                          capture_output=True, text=True, timeout=600, env=engine_subprocess_env(),
                          cwd=str(PACKAGE_ROOT.parent))
    if proc.returncode != 0:
        raise EngineEnvError("The demo model could not be generated: "
                             f"{(proc.stderr.strip().splitlines() or ['unknown error'])[-1]}. Repair the engine "
                             "with `farnode-desktop engine setup`.", detail=proc.stderr[-2000:])
    return target


def launcher_config(settings: Settings, paths: AppPaths, *, node_id: str = "main",
                    model_path: Path | None = None, model: str | None = None) -> dict:
    """The launcher's configuration (see engine/launcher.py) for these settings; ``model``: the model to
    serve when the app chose it (the public network with no model set)."""
    net = settings.network
    local = net.swarm == LOCAL_SWARM
    model = str(model_path) if (local and model_path) else (model or net.model)
    if not model:
        raise SettingsError("No model is set for this network. Choose one in Settings > Network.")
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
        if net.swarm != PUBLIC_SWARM:
            if net.initial_peers:
                cfg["initial_peers"] = list(net.initial_peers)
            else:  # a custom network with no peers yet: this node starts it, the others join its address
                cfg["new_swarm"] = True
    if local:
        # The only server of a private swarm serves every block; fixed indices also skip Petals' random
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
        return int(json.loads((model_dir / "config.json").read_text())["num_hidden_layers"])
    except (OSError, ValueError, KeyError):
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


class TrafficGenerator:
    """A real FarMesh client process sending checked requests to the local swarm."""

    def __init__(self, engine: EngineEnv, bus: EventBus, log_dir: Path):
        self.engine = engine
        self.bus = bus
        self.log_path = Path(log_dir) / "traffic.log"
        self._proc: subprocess.Popen | None = None
        self._stats = TrafficStats()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    @property
    def stats(self) -> TrafficStats:
        return self._stats

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, *, model: Path, initial_peers: list[str], dht_prefix: str | None, rate_per_minute: float,
              count: int = 0, max_new_tokens: int = 12, prompt_len: int = 6, forward_every: int = 5,
              seed: int = 0) -> None:
        """Start the client on the local swarm (loopback only, no NAT traversal)."""
        if self.running:
            return
        self._stats = TrafficStats()
        cfg = P.TrafficConfig(model=str(model), initial_peers=tuple(initial_peers), dht_prefix=dht_prefix,
                              rate_per_minute=rate_per_minute, count=count, max_new_tokens=max_new_tokens,
                              prompt_len=prompt_len, forward_every=forward_every, seed=seed,
                              nat_traversal=False, local_network=True)
        r_fd, w_fd = os.pipe()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(
                [str(self.engine.python), "-m", "farnode_desktop.engine.traffic", "--event-fd", str(w_fd)],
                stdin=subprocess.PIPE, stdout=logf, stderr=subprocess.STDOUT, pass_fds=(w_fd,),
                start_new_session=True, env=engine_subprocess_env(), cwd=str(PACKAGE_ROOT.parent))
        finally:
            os.close(w_fd)
            logf.close()
        self._proc.stdin.write((cfg.to_json() + "\n").encode())
        self._proc.stdin.flush()
        t = threading.Thread(target=self._read, args=(r_fd,), daemon=True, name="traffic-events")
        t.start()
        self._threads = [t]

    def _read(self, fd: int) -> None:
        def bad(line: bytes, why: str) -> None:
            log.warning("unreadable event from the demo client (%s): %r", why, line)

        with os.fdopen(fd, "rb", buffering=0) as pipe:
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
        if isinstance(ev, (P.Request, P.Error, P.Mismatch)):
            self.bus.publish(f"traffic.{ev.KIND}", ev)  # the typed event
        if isinstance(ev, P.Mismatch):
            log.error("the swarm's answer differs from the local model's: request %s", ev.n)

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
        proc = self._proc
        if proc is None:
            return
        try:
            proc.stdin.write(b"stop\n")
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its client-side p2pd too
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        for t in self._threads:
            t.join(2)
        self._proc = None
