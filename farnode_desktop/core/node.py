"""The node as the app sees it: settings + engine environment + supervised server(s) + demo traffic.

:class:`NodeController` is the one object the GUI, the headless mode and the tests drive. Every method may
block (engine set-up takes minutes, a stop seconds): the GUI calls them off its thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from farnode_desktop.core import contracts as C
from farnode_desktop.core.engine_env import EngineEnv, choose_variant
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.local_swarm import TrafficGenerator, ensure_demo_model, launcher_config
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.settings import LOCAL_SWARM, Settings, SettingsStore
from farnode_desktop.core.supervisor import RestartPolicy, Supervisor

log = logging.getLogger(__name__)


class NodeController:
    def __init__(self, paths: AppPaths, bus: EventBus | None = None, *, settings: Settings | None = None,
                 restart_policy: RestartPolicy | None = None, engine: EngineEnv | None = None):
        self.paths = paths.ensure()
        self.bus = bus or EventBus()
        self.store = SettingsStore(paths.settings_file)
        self.settings = settings if settings is not None else self.store.load()
        self.settings_warnings = list(self.store.warnings)
        self.engine = engine or EngineEnv(paths, choose_variant(paths, self.settings.network.device
                                                                if self.settings.network.device != "auto"
                                                                else "auto"))
        self.restart_policy = restart_policy
        self.supervisor = self._make_supervisor("main")
        self.traffic = TrafficGenerator(self.engine, self.bus, paths.log_dir)
        self._model_path: Path | None = None
        self._lock = threading.RLock()
        self._paused_reason = ""
        self._user_wants_running = False
        self._sub = self.bus.subscribe("node.state", self._on_state)

    def _make_supervisor(self, node_id: str) -> Supervisor:
        return Supervisor(self.engine, self.bus, node_id=node_id, log_dir=self.paths.log_dir,
                          run_dir=self.paths.run_dir, policy=self.restart_policy)

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> C.NodeState:
        if self._paused_reason and self.supervisor.state.state == C.STOPPED:
            return C.NodeState(self.supervisor.node_id, C.PAUSED, self._paused_reason)
        return self.supervisor.state

    def stats(self) -> C.NodeStats:
        return self.supervisor.stats()

    @property
    def is_local(self) -> bool:
        return self.settings.network.swarm == LOCAL_SWARM

    # ------------------------------------------------------------------ actions
    def prepare(self, progress: Callable[[C.EngineProgress], None] | None = None) -> None:
        """Set up the engine environment (minutes the first time) and the demo model."""
        report = progress or (lambda p: self.bus.publish("engine.progress", p))
        self.engine.ensure(report)
        if self.is_local:
            self._model_path = ensure_demo_model(self.paths, self.engine)

    def start(self, progress: Callable[[C.EngineProgress], None] | None = None) -> C.NodeState:
        with self._lock:
            self._user_wants_running = True
            self._paused_reason = ""
            if self.supervisor.state.state in (C.HELD, C.FAILED):
                self.supervisor.reset_hold()
            self.supervisor._set_state(C.PROVISIONING) if self.supervisor.state.state == C.STOPPED else None
        try:
            self.prepare(progress)
        except Exception as exc:
            message = getattr(exc, "message", str(exc))
            self.supervisor._set_state(C.FAILED, message=message, category="engine_missing")
            raise
        cfg = launcher_config(self.settings, self.paths, model_path=self._model_path)
        with self._lock:
            if not self._user_wants_running:
                self.supervisor._set_state(C.STOPPED)
                return self.supervisor.state
            return self.supervisor.start(cfg)

    def stop(self) -> C.NodeState:
        with self._lock:
            self._user_wants_running = False
            self._paused_reason = ""
        self.traffic.stop()
        state = self.supervisor.stop()
        return state

    def pause(self, reason: str, drain_s: float = 0.0) -> None:
        """Leave the network on purpose (policies, manual pause); :meth:`resume` re-joins."""
        with self._lock:
            if not self._user_wants_running:
                return
            self._paused_reason = reason or "paused"
        self.traffic.stop()
        self.supervisor.stop()
        self.bus.publish("node.state", self.state)

    def resume(self, reason: str = "") -> None:
        with self._lock:
            if not self._user_wants_running or not self._paused_reason:
                return
            self._paused_reason = ""
        cfg = launcher_config(self.settings, self.paths, model_path=self._model_path)
        self.supervisor.start(cfg)

    def save_settings(self, settings: Settings) -> None:
        self.store.save(settings)
        self.settings = settings

    def node_pids(self) -> list[int]:
        pid = self.supervisor.pid
        return [pid] if pid else []

    def close(self) -> None:
        self._sub.close()
        self.traffic.stop()
        self.supervisor.close()

    # ------------------------------------------------------------------ demo traffic
    def _on_state(self, _topic: str, state: C.NodeState) -> None:
        if state.state == C.ONLINE and self.is_local and self.settings.network.demo_traffic_per_minute > 0:
            threading.Thread(target=self._start_traffic, daemon=True, name="traffic-start").start()
        elif state.state in (C.STOPPING, C.RESTARTING, C.FAILED, C.HELD):
            threading.Thread(target=self.traffic.stop, daemon=True, name="traffic-stop").start()

    def _start_traffic(self) -> None:
        peer = self.supervisor.peer
        if not peer.get("addrs") or self._model_path is None:
            return
        self.traffic.start(model=self._model_path, initial_peers=peer["addrs"],
                           dht_prefix=launcher_config(self.settings, self.paths,
                                                      model_path=self._model_path)["dht_prefix"],
                           rate_per_minute=self.settings.network.demo_traffic_per_minute)
