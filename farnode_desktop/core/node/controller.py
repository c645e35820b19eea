"""The node as the app sees it: settings + engine environment + supervised server(s) + demo traffic.

:class:`NodeController` is the one object the GUI, the headless mode and the tests drive. Every method may
block (engine set-up takes minutes, a stop seconds): the GUI calls them off its thread.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from farnode_desktop.core import snapshots as C
from farnode_desktop.core import topics as T
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.network.peers import RunningServer, write_peers_file
from farnode_desktop.core.node.demo_swarm import TrafficGenerator, demo_model_path, ensure_demo_model
from farnode_desktop.core.node.engine_venv import EngineEnv, choose_variant
from farnode_desktop.core.node.supervisor import RestartPolicy, Supervisor
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.settings import LOCAL_SWARM, Settings, SettingsStore

log = logging.getLogger(__name__)
SETUP_UNWIND_S = 10.0  # a cancelled set-up's processes are killed at once; this bounds the wait for it


@dataclass(frozen=True)
class ServerSpec:
    """One server subprocess the node runs: its launcher configuration and environment overrides."""

    node_id: str
    config: dict
    env: dict = field(default_factory=dict)
    reason: str = ""


def start_failure_category(exc: BaseException) -> str:
    """The failure category of a start refused before any engine process ran."""
    from farnode_desktop.core.errors import DiskFullError, EngineEnvError
    from farnode_desktop.core.models.hub import GatedModelError, HubError, TokenRejectedError
    from farnode_desktop.core.node.model_support import ModelNotSupportedError
    from farnode_desktop.engine.protocol import Category

    if isinstance(exc, ModelNotSupportedError):
        return Category.MODEL_UNSUPPORTED
    if isinstance(exc, GatedModelError | TokenRejectedError):
        return Category.GATED
    if isinstance(exc, HubError):  # not found, offline: what the message says
        return Category.MODEL
    if isinstance(exc, DiskFullError) or (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)):
        return Category.DISK_FULL
    if isinstance(exc, EngineEnvError | OSError):
        return Category.ENGINE_MISSING
    return Category.CONFIG  # settings, no model set, no plan


class NodeController:
    def __init__(self, paths: AppPaths, bus: EventBus | None = None, *, settings: Settings | None = None,
                 restart_policy: RestartPolicy | None = None, engine: EngineEnv | None = None,
                 nvml=None):
        self.paths = paths.ensure()
        self.bus = bus or EventBus()
        self.store = SettingsStore(paths.settings_file)
        # a damaged settings file raises DamagedSettings: the app does not start on defaults in its place
        self.settings = settings if settings is not None else self.store.load()
        self.settings_notes = list(self.store.notes)  # unknown keys in the file (kept there, not used)
        # device "cpu"/"cuda" picks that engine build; "auto" follows the NVIDIA driver
        self.engine = engine or EngineEnv(paths, choose_variant(paths, self.settings.network.device),
                                          source=self.settings.engine.source)
        self.restart_policy = restart_policy
        self.nvml = nvml  # None: the real NVML (tests pass one over a fake pynvml)
        self.supervisor = self._make_supervisor("main")
        self.supervisors: dict[str, Supervisor] = {"main": self.supervisor}
        self.plan_notes: list[str] = []
        self.traffic = TrafficGenerator(self.supervisor.runtime, self.bus, paths.log_dir,
                                        served_ledger=paths.served_ledger)
        self._model_path: Path | None = None
        self._model_config = None  # ModelConfig of a public/custom network's model (read by prepare())
        self._chosen_why = ""  # the public network with no model set: why the app chose the one it serves
        self.plan = None  # the NodePlan of the last start
        self.hf_tokens = None  # HfTokenStore, made on first use (the keyring may be slow)
        self._lock = threading.RLock()
        self._setup_cancel = threading.Event()  # set: the set-up in progress (if any) must end now
        self._setup_idle = threading.Event()  # set: no set-up in progress
        self._setup_idle.set()
        self._paused_reason = ""
        self._user_wants_running = False
        self.demo_traffic = True  # False: this run sends no demo traffic (``node --no-traffic``)
        # peer id -> the signed wallet binding (statement, signature) a server announces, or None (no wallet);
        # set by the app core, which owns the wallet and knows the chain in use
        self.binding_signer: Callable[[str], tuple[str, str] | None] | None = None
        self.warm_standby = True  # a pause keeps a standby launcher per server for a fast resume
        self._subs = [self.bus.subscribe(T.NODE_STATE, self._on_state),
                      self.bus.subscribe(T.NODE_STATS, self._on_stats)]

    def _make_supervisor(self, node_id: str) -> Supervisor:
        from farnode_desktop.core.node.runtimes import make_runtime

        runtime = make_runtime(self.settings.network.runtime, engine=self.engine, paths=self.paths,
                               variant=self.engine.variant, docker_image=self.settings.network.docker_image,
                               engine_source=self.settings.engine.source)
        return Supervisor(self.engine, self.bus, node_id=node_id, log_dir=self.paths.log_dir,
                          run_dir=self.paths.run_dir, policy=self.restart_policy, runtime=runtime)

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> C.NodeState:
        if self._paused_reason and self.supervisor.state.state == C.STOPPED:
            return C.NodeState(self.supervisor.node_id, C.PAUSED, self._paused_reason)
        return self.supervisor.state

    def stats(self) -> C.NodeStats:
        """The first server's stats, with counters, rates and throughput summed over every server."""
        main = self.supervisor.stats()
        others = [s.stats() for s in self.supervisors.values() if s is not self.supervisor]
        if not others:
            return main
        summed = {f: getattr(main, f) + sum(getattr(o, f) for o in others) for f in C.SUMMED_STATS}
        blocks = tuple(sorted(set(main.blocks).union(*(o.blocks for o in others))))
        return replace(main, blocks=blocks, **summed)

    @property
    def is_local(self) -> bool:
        return self.settings.network.swarm == LOCAL_SWARM

    # ------------------------------------------------------------------ actions
    def prepare(self, progress: Callable[[C.EngineProgress], None] | None = None) -> None:
        """Set up the engine environment (minutes the first time) and the demo model. :meth:`stop` and
        :meth:`close` cancel it: its processes (pip, the probe) are killed at once and the next start
        continues where it stopped."""
        report = progress or (lambda p: self.bus.publish(T.ENGINE_PROGRESS, p))
        cancel = self._setup_cancel.is_set
        runtime = self.supervisor.runtime
        if runtime.name == "native":
            self._ensure_engine(report, cancel)
        else:
            self._prepare_runtime(runtime, report, cancel)
        if self.is_local:
            previous = bool(self.engine.previous_version)
            if not (demo_model_path(self.paths, previous_engine=previous) / "model.safetensors").is_file():
                # the first start's few seconds after a ready engine: say what they are
                report(C.EngineProgress(100.0, "making the demo model (first start only, a few seconds)"))
            self._model_path = ensure_demo_model(self.paths, runtime, cancel=cancel, previous_engine=previous)
        elif not self.settings.network.model.strip() and self.settings.network.swarm == "public":
            from farnode_desktop.core.node.plan import choose_public_model

            self._model_config, self._chosen_why = choose_public_model(
                self.settings, self.supervisor.runtime, nvml=self.nvml, token=self.hf_token,
                log_path=self.paths.log_dir / "network-probe.log")
        else:
            from farnode_desktop.core.models.hub import HubClient

            self._model_config = HubClient(self.hf_token).model_config(self.settings.network.model)
            self._chosen_why = ""

    def hf_tokens_store(self):
        """The HfTokenStore (the Hugging Face token in the OS keyring)."""
        if self.hf_tokens is None:
            from farnode_desktop.core.models.hf_token import HfTokenStore

            self.hf_tokens = HfTokenStore()
        return self.hf_tokens

    def hf_token(self) -> str | None:
        """The Hugging Face token (the OS keyring's, else HF_TOKEN from the app's environment), or None.
        Reads the keyring (blocking)."""
        return self.hf_tokens_store().read()

    def _engine_secrets(self) -> dict:
        """What the engine gets through its control pipe only: the Hugging Face token for a hub model."""
        from farnode_desktop.core.models.hub import is_hub_id

        model = self._model_config.model if self._model_config is not None else self.settings.network.model
        if self.is_local or not is_hub_id(model):
            return {}
        token = self.hf_token()
        return {"hf_token": token} if token else {}

    def _ensure_engine(self, report, cancel) -> None:
        """Set up (or upgrade) the engine environment. When an upgrade to a new lock version fails (offline,
        disk full, cut short), the previous version's environment, which is removed only after the new one
        is verified, keeps serving until the next start tries again."""
        from farnode_desktop.core.errors import DiskFullError, EngineEnvError

        try:
            self.engine.ensure(report, cancel=cancel)
        except (EngineEnvError, DiskFullError) as exc:
            if cancel() or not self.engine.fall_back_to_previous():
                raise
            log.warning("engine upgrade failed (%s); running the previous engine in %s", exc, self.engine.venv)
            for sup in self.supervisors.values():
                if sup.runtime.name == "native":
                    sup.runtime.python = str(self.engine.python)
            probe = self.engine.status().probe
            report(C.EngineProgress(100.0, f"the engine update did not complete ({exc.message}); running the "
                                           f"previous engine ({probe.summary if probe else self.engine.venv}) "
                                           "until it does", done=True))

    def _prepare_runtime(self, runtime, report, cancel) -> None:
        """WSL2 / Docker: the runtime's own status and set-up commands (resumable), with progress."""
        from farnode_desktop.core.errors import EngineEnvError
        from farnode_desktop.core.node.runtimes.base import run_steps

        outputs = [(r.returncode, r.output) for r in run_steps(runtime.status_steps(), cancel=cancel)]
        status = runtime.parse_status(outputs)
        if not status.available:
            raise EngineEnvError(status.message, title=f"{runtime.name} is not ready")
        if status.engine_ready:
            return
        if runtime.name == "wsl2":
            from farnode_desktop.core.node.runtimes.wsl import parse_wsl_list

            steps = runtime.setup_steps(self.engine.variant,
                                        distros=parse_wsl_list(outputs[1][1]) if len(outputs) > 1 else [])
        else:
            steps = runtime.setup_steps(self.engine.variant)
        runtime.after_setup(run_steps(steps, progress=report, cancel=cancel))

    def start(self, progress: Callable[[C.EngineProgress], None] | None = None) -> C.NodeState:
        ordered_at = time.time()
        with self._lock:
            self._user_wants_running = True
            self._paused_reason = ""
            if self.supervisor.state.state in (C.HELD, C.FAILED):
                self.supervisor.reset_hold()
            if self.supervisor.state.state == C.STOPPED:
                self.supervisor.set_state(C.PROVISIONING)
            self._setup_cancel.clear()
            self._setup_idle.clear()
        try:
            self.prepare(progress)
            specs = self.server_specs()  # the plan: a model the engine cannot serve is refused here
        except Exception as exc:
            if self._setup_cancel.is_set():  # stopped during set-up: not a failure
                self.supervisor.set_state(C.STOPPED, message="engine set-up stopped; it continues at the next start")
                return self.supervisor.state
            message = getattr(exc, "message", str(exc))
            self.supervisor.set_state(C.FAILED, message=message, category=start_failure_category(exc))
            raise
        finally:
            self._setup_idle.set()
        with self._lock:
            if not self._user_wants_running:
                self.supervisor.set_state(C.STOPPED)
                return self.supervisor.state
        return self._start_specs(specs, ordered_at=ordered_at)

    def server_specs(self) -> list[ServerSpec]:
        """The servers to run: one per contributing GPU (pinned with CUDA_VISIBLE_DEVICES, its own port),
        or one on the CPU when no GPU can serve (see :mod:`farnode_desktop.core.node.plan`)."""
        plan = self.make_plan()
        self.plan = plan
        self.plan_notes = [plan.dtype_reason, plan.announce_reason, *plan.notes]
        return [ServerSpec(s.node_id, dict(s.config), dict(s.env), s.reason) for s in plan.servers]

    def make_plan(self):
        """The node's plan for the current settings (reads NVML; the model's configuration must have been
        read by :meth:`prepare` for a public or custom network)."""
        from farnode_desktop.core.node.plan import plan_for

        return plan_for(self.settings, self.paths, nvml=self.nvml, model=self._model_config,
                        model_path=self._model_path, token=self.hf_token, chosen_why=self._chosen_why)

    def _start_specs(self, specs: list[ServerSpec], *, ordered_at: float | None = None) -> C.NodeState:
        """Start every server. On the local swarm the first one founds the swarm and the others join it.
        ``ordered_at``: when the start was ordered (the first server's timeline counts from there)."""
        for spec in specs:
            if spec.node_id not in self.supervisors:
                self.supervisors[spec.node_id] = self._make_supervisor(spec.node_id)
        for node_id in [n for n in self.supervisors if n not in {s.node_id for s in specs}]:
            sup = self.supervisors.pop(node_id)
            sup.close()
        self.supervisor = self.supervisors[specs[0].node_id]
        first = self.supervisor.start(specs[0].config, specs[0].env, secrets=self._engine_secrets,
                                     binding=self.binding_signer, ordered_at=ordered_at)
        if len(specs) > 1:
            threading.Thread(target=self._start_followers, args=(specs,), daemon=True,
                             name="node-followers").start()
        return first

    def _start_followers(self, specs: list[ServerSpec]) -> None:
        lead = self.supervisors[specs[0].node_id]
        for spec in specs[1:]:
            cfg = dict(spec.config)
            if cfg.get("new_swarm"):  # the local swarm: join the first server's DHT
                deadline = threading.Event()
                for _ in range(600):
                    if lead.peer.addrs or not self._user_wants_running:
                        break
                    deadline.wait(0.2)
                if not lead.peer.addrs:
                    return
                cfg.pop("new_swarm")
                cfg["initial_peers"] = list(lead.peer.addrs)
            if self._user_wants_running:
                self.supervisors[spec.node_id].start(cfg, spec.env, secrets=self._engine_secrets,
                                                     binding=self.binding_signer)

    def stop(self) -> C.NodeState:
        with self._lock:
            was = self.state.state
            self._user_wants_running = False
            self._paused_reason = ""
        if C.state_info(was).running:
            # Say so at once: the set-up's unwinding, the demo traffic's and the servers' stops take seconds,
            # and a paused node has no server whose stop would say it. The supervisor's stop ends in STOPPED.
            self.supervisor.set_state(C.STOPPING)
        self._cancel_setup()
        self.traffic.stop()
        self._stop_all()
        for s in self.supervisors.values():  # stopped by the user: no warm standby held for a start
            s.drop_standby()
        return self.supervisor.state

    def _stop_all(self) -> None:
        others = [threading.Thread(target=s.stop, daemon=True) for s in self.supervisors.values()
                  if s is not self.supervisor]
        for t in others:
            t.start()
        self.supervisor.stop()
        for t in others:
            t.join()

    def pause(self, reason: str, drain_s: float = 0.0) -> None:
        """Leave the network on purpose (policies, manual pause); :meth:`resume` re-joins. With ``drain_s``,
        inference sessions that are open get up to that long to finish first (no new work is refused
        meanwhile: the swarm routes new sessions elsewhere once the blocks are announced offline)."""
        with self._lock:
            if not self._user_wants_running:
                return
            self._paused_reason = reason or "paused"
        self.traffic.stop()
        deadline = time.time() + drain_s
        while time.time() < deadline and any(s.open_sessions() for s in self.supervisors.values()):
            time.sleep(0.2)
        self._stop_all()
        with self._lock:
            paused = bool(self._paused_reason) and self._user_wants_running
        if paused and self.warm_standby:
            # The resume skips the interpreter's start and the engine's imports: each server's launcher for it
            # is started now and waits, holding no model and no GPU memory (see Supervisor.keep_standby).
            for s in list(self.supervisors.values()):
                s.keep_standby()
        self.bus.publish(T.NODE_STATE, self.state)

    def resume(self, reason: str = "") -> None:
        ordered_at = time.time()
        with self._lock:
            if not self._user_wants_running or not self._paused_reason:
                return
            self._paused_reason = ""
        self._start_specs(self.server_specs(), ordered_at=ordered_at)

    def save_settings(self, settings: Settings) -> None:
        from farnode_desktop.core.errors import SettingsError
        from farnode_desktop.core.settings import ignored_changes

        ignored = [] if settings.validate() else ignored_changes(self.settings, settings)  # invalid: save says
        if ignored:
            raise SettingsError("; ".join(ignored) + ".")
        self.store.save(settings)
        self.settings = settings
        self.engine.source = settings.engine.source  # used at the next set-up or repair

    def node_pids(self) -> list[int]:
        return [s.pid for s in self.supervisors.values() if s.pid]

    def states(self) -> dict[str, C.NodeState]:
        return {node_id: s.state for node_id, s in self.supervisors.items()}

    def _cancel_setup(self) -> None:
        """End an engine set-up in progress (its processes are killed) and wait until it has unwound."""
        self._setup_cancel.set()
        if not self._setup_idle.wait(SETUP_UNWIND_S):
            log.warning("the engine set-up did not end within %.0f s of being cancelled", SETUP_UNWIND_S)

    def close(self) -> None:
        with self._lock:
            self._user_wants_running = False
        self._cancel_setup()
        self.traffic.stop()
        self._stop_all()
        for s in self.supervisors.values():
            s.close()
        for sub in self._subs:  # last: the faces hear the final state
            sub.close()

    # ------------------------------------------------------------------ demo traffic
    # ------------------------------------------------------------------ the network around the node
    @property
    def peers_file(self) -> Path:
        """This node's servers on the network (peer ids, addresses) while they run, for other processes
        (``farnode-desktop swarm``)."""
        return self.paths.run_dir / "peers.json"

    def running_servers(self) -> list[RunningServer]:
        """The servers that reported their peer and have not stopped (see :mod:`core.network.peers`)."""
        return [RunningServer(n, s.peer.peer_id, tuple(s.peer.addrs), dict(s.config), s.runtime.name, s.reachability)
                for n, s in list(self.supervisors.items())
                if s.peer.peer_id and s.state.state not in (C.STOPPED, C.FAILED, C.HELD)]

    # ------------------------------------------------------------------ events
    def _on_state(self, _topic: str, state: C.NodeState) -> None:
        self.bus.publish(T.NODE_OVERALL_STATE, self.state)
        if state.state in (C.ONLINE, C.STOPPED, C.FAILED, C.HELD):
            write_peers_file(self.peers_file, self.settings.network.swarm, self.running_servers())
        if state.node_id != self.supervisor.node_id:
            return  # the demo traffic follows the first server
        if (state.state == C.ONLINE and self.is_local and self.demo_traffic
                and self.settings.network.demo_traffic_per_minute > 0):
            threading.Thread(target=self._start_traffic, daemon=True, name="traffic-start").start()
        elif state.state in (C.STOPPING, C.RESTARTING, C.FAILED, C.HELD):
            threading.Thread(target=self.traffic.stop, daemon=True, name="traffic-stop").start()

    def _on_stats(self, _topic: str, _stats: C.NodeStats) -> None:
        self.bus.publish(T.NODE_OVERALL_STATS, self.stats())

    def _start_traffic(self) -> None:
        peer = self.supervisor.peer
        if not peer.addrs or self._model_path is None:
            return
        self.traffic.start(model=self._model_path, initial_peers=list(peer.addrs),
                           dht_prefix=self.supervisor.config.get("dht_prefix"),
                           rate_per_minute=self.settings.network.demo_traffic_per_minute,
                           wanted=self._traffic_wanted)

    def _traffic_wanted(self) -> bool:
        """Still worth starting the demo traffic: asked under the traffic's start/stop lock, after a stop or
        pause has already cleared what the user wants (so a start that lost the race does nothing)."""
        with self._lock:
            if not self._user_wants_running or self._paused_reason:
                return False
        return self.supervisor.state.state == C.ONLINE
