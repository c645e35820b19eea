"""Everything the app runs, assembled in one Qt-free object: the one composition root.

:class:`AppCore` owns the data folder's instance lock, the event bus, the node controller, the metrics store
and its recorder, the GPU telemetry sampler, the policy runner (pauses and manual pauses act on the node
through it) and the earnings sync. Both faces of the app build exactly this: the window
(:mod:`farnode_desktop.gui.app`) and the headless node (:mod:`farnode_desktop.app.headless`). A face builds
one, calls :meth:`AppCore.start`, drives it, and calls :meth:`AppCore.close` on quit.

Every method that can block (node start/stop, engine set-up, NVML inventory, database queries) says so;
the GUI runs those on its task runner, never on its own thread. Policy callbacks hand their work to a small
thread pool here so the policy thread keeps ticking while a node stops.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from farnode_desktop.core import report
from farnode_desktop.core import snapshots as C
from farnode_desktop.core import topics as T
from farnode_desktop.core.control import ControlServer
from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.gpu.inventory import TelemetrySampler, processes_for_policies, read_inventory
from farnode_desktop.core.gpu.nvml import Nvml
from farnode_desktop.core.gpu.report import GpuReport, gpu_report
from farnode_desktop.core.instance import InstanceLock
from farnode_desktop.core.localchain.effective import effective_settings
from farnode_desktop.core.localchain.payouts import DEMO_BATCH_INTERVAL_S, LocalPayouts
from farnode_desktop.core.logfiles import LogTrimmer
from farnode_desktop.core.memory import HeapKeeper
from farnode_desktop.core.metrics.recorder import MetricsRecorder
from farnode_desktop.core.metrics.store import MetricsStore
from farnode_desktop.core.metrics.today import TodaySummary, today
from farnode_desktop.core.network import peers
from farnode_desktop.core.node.controller import NodeController
from farnode_desktop.core.node.demo_swarm import TRAFFIC_LOG_NAME
from farnode_desktop.core.node.engine_venv import EngineStatus
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.payout.rate import EarningsRate
from farnode_desktop.core.payout.runner import EarningsRunner
from farnode_desktop.core.payout.wallet_service import WalletService
from farnode_desktop.core.policies.rules import PolicyRules
from farnode_desktop.core.policies.runner import PolicyInputs, PolicyRunner
from farnode_desktop.core.settings import Settings
from farnode_desktop.engine.protocol import ProbeResult

log = logging.getLogger(__name__)


class AppCore:
    """The app's running parts. Thread-safe where noted; built on any thread, closed once.

    Building one takes the data folder for this process (``face``: ``window`` or ``headless``, said to a
    second launch): it raises :class:`~farnode_desktop.core.instance.AlreadyRunning`, naming the holder,
    when another process runs on the same data folder. :meth:`close` gives the folder back.

    The faces reach the core only through this class's public methods and properties, the services named in
    :data:`SERVICES`, and the bus topics of :mod:`farnode_desktop.core.topics` (``bus.subscribe``); the node
    controller and the other parts are its own (tests/test_layers.py holds the faces to it)."""

    #: The parts a face may use directly: the event bus (to subscribe), the data folder's paths, the metrics
    #: store (the charts' queries), the earnings (the Earnings page) and the wallet (:class:`WalletService`).
    SERVICES = ("bus", "paths", "store", "earnings", "wallet")

    def __init__(self, paths: AppPaths, *, face: str = "window", bus: EventBus | None = None,
                 nvml: Nvml | None = None, policy_inputs: PolicyInputs | None = None,
                 node: NodeController | None = None, keystore: Any = None,
                 earnings_interval_s: float = 60.0, payout_interval_s: float = DEMO_BATCH_INTERVAL_S) -> None:
        self.paths = paths.ensure()
        self.face = face
        self.instance = InstanceLock(self.paths.run_dir)
        self.instance.acquire(face)
        try:
            self._build(bus, nvml, policy_inputs, node, keystore, earnings_interval_s, payout_interval_s)
        except BaseException:
            self.instance.release()
            raise

    def _build(self, bus: EventBus | None, nvml: Nvml | None, policy_inputs: PolicyInputs | None,
               node: NodeController | None, keystore: Any, earnings_interval_s: float,
               payout_interval_s: float) -> None:
        paths = self.paths
        self._first_run = not paths.settings_file.exists()
        self.bus = bus or EventBus()
        self.node = node or NodeController(self.paths, self.bus)
        self.store = MetricsStore(self.paths.metrics_db)
        self.recorder = MetricsRecorder(self.store, self.bus)
        self._nvml = nvml
        self.telemetry = TelemetrySampler(self.bus, nvml)
        self._workers = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="farnode-core")
        # what running earns per hour at the network's published rate: the profit pause's input
        # the embedded default's chain and payout service (started while the node serves the local swarm)
        self.local_payouts = LocalPayouts(self.paths, batch_interval_s=payout_interval_s)
        self._payouts_lock = threading.Lock()
        self._payouts_wanted = False
        # the logs children write straight into, kept within their size while they run for weeks
        self.log_trimmer = LogTrimmer(lambda: [self.paths.log_dir / TRAFFIC_LOG_NAME,
                                               *self.local_payouts.child_logs])
        # freed memory the allocator holds goes back to the system every few minutes (weeks of running)
        self.heap_keeper = HeapKeeper()
        self.earnings_rate = EarningsRate(self.bus, lambda: self.chain_settings().chain.reward_per_1k_tokens)
        inputs = policy_inputs if policy_inputs is not None else self._default_policy_inputs()
        self.policies = PolicyRunner(PolicyRules(self.node.settings.policies), self.bus,
                                     pause=self._policy_pause, resume=self._policy_resume, inputs=inputs)
        self.wallet = WalletService(self.node.store, lambda: self.node.settings.wallet.address,
                                    self._wallet_changed, keystore=keystore)
        self.earnings = EarningsRunner(self.paths.data_dir, self.bus, self.chain_settings,
                                       self.store.tokens_served_between, interval_s=earnings_interval_s)
        self.node.binding_signer = self._sign_binding
        # ``farnode-desktop status`` (and settings or wallet changes made from a shell) reach this core here.
        self.control = ControlServer(self.paths.run_dir, {"status": lambda _req: self.status_report(),
                                                          "reload-settings": lambda _req: self.reload_settings(),
                                                          "pause": self._control_pause,
                                                          "resume": self._control_resume})
        from farnode_desktop.core.network.monitor import NetworkMonitor

        # The network around the node, read from its DHT by an engine-side probe: while the node serves off
        # the local swarm (for its reachability) and while the Network page is open.
        self.network = NetworkMonitor(
            self.bus, lambda: self.node.supervisor.runtime, self.paths.log_dir,
            peers=lambda: peers.network_peers(self.node.settings, self.node.running_servers()),
            mine=lambda: {s.peer_id for s in self.node.running_servers()},
            nat_traversal=lambda: not self.node.is_local
            and self.node.settings.network.nat_traversal)
        self._closed = False
        self._close_lock = threading.Lock()
        self._sub = self.bus.subscribe(T.NODE_STATE, self._on_state)
        self._net_subs = [self.bus.subscribe(T.NETWORK_VIEW, self._on_reachability_input),
                          self.bus.subscribe(T.NODE_REACHABILITY, self._on_reachability_input)]

    def _default_policy_inputs(self) -> PolicyInputs:
        try:
            return PolicyInputs.for_this_system(gpu_processes=self._gpu_processes,
                                                own_pids=self.node.node_pids,
                                                earnings_per_hour=self.earnings_rate.per_hour,
                                                contributing_gpus=lambda: self.node.settings.gpus.contributing)
        except Exception:  # a platform provider that cannot load must not stop the app
            log.exception("policy inputs for this system are not available")
            return PolicyInputs(gpu_processes=self._gpu_processes, own_pids=self.node.node_pids,
                                earnings_per_hour=self.earnings_rate.per_hour)

    def _gpu_processes(self) -> list:
        """Processes on the GPUs, for the policies, less the node's own (its server processes and every
        process they started: the policy runner itself leaves out only the pids the supervisors know)."""
        procs = processes_for_policies(self._nvml)
        if not procs:
            return procs
        import psutil

        own: set[int] = set()
        for pid in self.node.node_pids():
            own.add(pid)
            try:
                own.update(c.pid for c in psutil.Process(pid).children(recursive=True))
            except psutil.Error:
                continue
        return [p for p in procs if p.pid not in own]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the background samplers (telemetry 1 Hz, policies 1 Hz). Returns at once."""
        self.telemetry.start()
        self.policies.start()
        self.earnings.start()
        self.log_trimmer.start()
        self.heap_keeper.start()
        self._follow_local_payouts()
        try:
            self.control.start()
        except OSError as exc:  # the app runs without it; `status` says none runs
            log.warning("the control socket in %s could not be opened: %s", self.paths.run_dir, exc)

    def close(self) -> None:
        """Stop the node (blocks up to its stop timeout), the samplers, and flush the metrics. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._sub.close()
        for sub in self._net_subs:
            sub.close()
        self.network.close()
        self.policies.stop()
        self.earnings_rate.close()
        self.telemetry.stop()
        self.earnings.stop()
        self.log_trimmer.stop()
        self.heap_keeper.stop()
        try:
            self.node.stop()
        finally:
            self._stop_local_payouts()
            self.node.close()
            self._workers.shutdown(wait=True, cancel_futures=True)
            self.recorder.close()
            self.store.close()
            self.control.close()
            self.instance.release()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def first_run(self) -> bool:
        """No settings file was there when the app started, and none has been saved since."""
        return self._first_run

    # ------------------------------------------------------------------ the node
    @property
    def settings(self) -> Settings:
        return self.node.settings

    @property
    def state(self) -> C.NodeState:
        return self.node.state

    def stats(self) -> C.NodeStats:
        """The node's numbers, summed over every server (one per GPU)."""
        return self.node.stats()

    @property
    def is_local(self) -> bool:
        """The node runs on the local demo swarm."""
        return self.node.is_local

    @property
    def settings_notes(self) -> list[str]:
        """What the settings file holds that this version does not use (kept in the file)."""
        return list(self.node.settings_notes)

    @property
    def last_plan(self) -> Any:
        """The :class:`~farnode_desktop.core.node.plan.NodePlan` of the last start, or None."""
        return self.node.plan

    def node_pids(self) -> list[int]:
        """The pids of the node's server processes."""
        return self.node.node_pids()

    def traffic_stats(self) -> Any:
        """The local swarm's demo traffic so far (``TrafficStats``), None off the local swarm."""
        return self.node.traffic.stats if self.node.is_local else None

    def without_demo_traffic(self) -> None:
        """This run sends no demo traffic to the local swarm (``node --no-traffic``); the settings stay."""
        self.node.demo_traffic = False

    def is_running(self) -> bool:
        """The user has the node contributing (or starting, or paused by a policy)."""
        return self.node.state.state in C.RUNNING_STATES

    def start_node(self, progress: Callable[[C.EngineProgress], None] | None = None) -> C.NodeState:
        """Start contributing. BLOCKS: engine set-up (minutes the first time), then the server start.
        A manual pause ends; when another policy holds the node paused, it starts paused."""
        self.policies.manual_resume()  # Start ends a manual pause
        self.policies.tick_once()
        self._follow_local_payouts(starting=True)
        try:
            state = self.node.start(progress)
        except Exception:
            if self.node.state.state == C.PROVISIONING:  # failed before the server started: back to Stopped
                self.node.stop()
            raise
        decision = self.policies.last_decision
        if decision is not None and not decision.run:  # another policy holds the node paused
            self.node.pause("; ".join(decision.reasons))
            state = self.node.state
        return state

    def stop_node(self) -> C.NodeState:
        """Stop contributing. BLOCKS until the server has left (seconds)."""
        self.policies.manual_resume()  # a stopped node is not "paused"
        return self.node.stop()

    def pause_for(self, seconds: float | None) -> None:
        """Pause for ``seconds`` (None: until resumed). Returns at once; the policy thread acts."""
        self.policies.manual_pause(seconds)

    def resume_now(self) -> None:
        """End a manual pause. Returns at once."""
        self.policies.manual_resume()

    def _control_pause(self, req: dict) -> dict:
        """``farnode-desktop pause [--minutes N]`` from a shell (a game's launch script, say)."""
        seconds = req.get("seconds")
        self.pause_for(None if seconds is None else float(seconds))
        return {"paused": True, "seconds": seconds}

    def _control_resume(self, _req: dict) -> dict:
        self.resume_now()
        return {"resumed": True}

    def _policy_pause(self, reason: str, drain_s: float) -> None:
        self._submit(self.node.pause, reason, drain_s)

    def _policy_resume(self, reason: str) -> None:
        self._submit(self.node.resume, reason)

    def _submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._closed:
            return
        try:
            self._workers.submit(self._logged, fn, *args)
        except RuntimeError:  # shut down meanwhile
            pass

    @staticmethod
    def _logged(fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            log.exception("%s failed", getattr(fn, "__name__", fn))
            raise exc

    def _on_state(self, _topic: str, state: C.NodeState) -> None:
        if self._closed:
            return
        serving = bool(self.node.running_servers())  # a server on the network (also while it moves blocks)
        self.network.watch("node", serving and not self.node.is_local)
        if not serving:
            self.bus.publish(T.REACHABILITY_STATUS, {})

    # ------------------------------------------------------------------ the network around the node
    def reachability(self) -> dict:
        """node_id -> ReachabilityStatus of each server serving off the local swarm (empty otherwise)."""
        if self.node.is_local:
            return {}
        return peers.reachability(self.node.running_servers(), self.node.settings, self.network.latest)

    def _on_reachability_input(self, _topic: str, _payload: Any) -> None:
        self.bus.publish(T.REACHABILITY_STATUS, self.reachability())

    @property
    def network_view(self) -> Any:
        """The latest :class:`~farnode_desktop.core.network.view.NetworkView` read, or None."""
        return self.network.latest

    def watch_network(self, on: bool) -> None:
        """The Network page is shown (on) or hidden: keep the network view fresh meanwhile. Returns at once."""
        self.network.watch("page", on)

    # ------------------------------------------------------------------ status (any thread, quick)
    def status_report(self) -> dict:
        """How the node is doing, for ``farnode-desktop status [--json]`` (see :mod:`core.report`)."""
        return report.status_report(face=self.face, data_dir=self.paths.data_dir, node=self.node,
                                    reachability=self.reachability(), decision=self.policies.last_decision,
                                    earnings=self.earnings, local_chain=self.local_chain_status(),
                                    memory=self._memory_report())

    def _memory_report(self) -> dict | None:
        try:
            return self.heap_keeper.report()
        except Exception:  # noqa: BLE001 - the status answers without it
            log.exception("the app's memory figures could not be read")
            return None

    # ------------------------------------------------------------------ the local chain and its payouts
    def chain_settings(self) -> Settings:
        """The settings the earnings are read with: the local chain's while the node serves the local swarm and
        that chain runs (nothing written to the settings file), else the user's."""
        return effective_settings(self.node.settings, self.local_payouts.info, self.local_payouts.rate_per_1k_tokens)

    def local_chain_status(self) -> dict | None:
        """The local chain and its payout service (``status --json``); None off the local swarm."""
        return self.local_payouts.status() if self.node.is_local else None

    def _follow_local_payouts(self, starting: bool = False) -> None:
        """Run the local chain and payout service while the local swarm is the network (from the node's first
        start on: before it, there is nothing to pay or to show), stop them otherwise. Returns at once: the
        start (an anvil download the first time) runs on its own thread."""
        with self._payouts_lock:
            want = (self.node.is_local and not self._closed
                    and (starting or self._payouts_wanted or self.paths.chain_dir.exists()))
            if want == self._payouts_wanted and (not want or self.local_payouts.info is not None):
                return
            self._payouts_wanted = want
        threading.Thread(target=self._local_payouts_step, args=(want,), daemon=True,
                         name="farnode-local-chain").start()

    def _local_payouts_step(self, want: bool) -> None:
        if not want:
            self.local_payouts.stop()
            self.earnings.sync_now()
            return
        try:
            self.local_payouts.ensure()
        except FarNodeError as exc:
            log.warning("the local chain cannot run, so nothing is paid on the embedded default: %s", exc.message)
            return
        if self._closed:
            self.local_payouts.stop()
            return
        self.earnings.sync_now()

    def _stop_local_payouts(self) -> None:
        with self._payouts_lock:
            self._payouts_wanted = False
        self.local_payouts.stop()

    def _sign_binding(self, peer_id: str) -> tuple[str, str] | None:
        """The wallet binding a server announces for ``peer_id`` (BLOCKING: the keyring); None without a wallet
        or a chain (the node is then not paid: status says so)."""
        settings = self.chain_settings()
        if not settings.wallet.address or settings.chain.chain_id is None:
            return None
        signed = self.wallet.manager.sign_node_binding(peer_id, chain_id=settings.chain.chain_id)
        return signed.statement, signed.signature

    def reload_settings(self) -> dict:
        """The settings file changed from a shell (``settings set``, ``wallet``): take it. Policies and the
        earnings sync follow at once; the node's network settings at its next start."""
        from farnode_desktop.core.errors import SettingsError
        from farnode_desktop.core.settings import SettingsStore

        try:
            settings = SettingsStore(self.paths.settings_file).load()
        except SettingsError as exc:  # damaged: the node keeps the settings it has, the shell hears why
            return {"ok": False, "warnings": [exc.message]}
        old = self.node.settings
        self.node.settings = settings
        self.policies.update_settings(settings.policies)
        if (old.chain, old.wallet) != (settings.chain, settings.wallet):
            self.earnings.sync_now()
        self._follow_local_payouts()
        return {"ok": True, "restart_needed": old.network != settings.network}

    # ------------------------------------------------------------------ settings
    def save_settings(self, settings: Settings) -> None:
        """Validate and save (raises SettingsError with what to fix); apply policies and start-at-login.
        Network changes apply at the next start. Quick (a file write, maybe the login entry)."""
        old = self.node.settings
        self.node.save_settings(settings)
        self.policies.update_settings(settings.policies)
        if (old.chain, old.wallet) != (settings.chain, settings.wallet):
            self.earnings.sync_now()
        self._follow_local_payouts()
        if (old.policies.start_at_login, old.policies.start_minimized) != (
                settings.policies.start_at_login, settings.policies.start_minimized) or self._first_run:
            from farnode_desktop.core.policies.platform import apply_start_at_login

            try:
                apply_start_at_login(settings.policies.start_at_login, settings.policies.start_minimized)
            except OSError as exc:
                from farnode_desktop.core.errors import FarNodeError

                raise FarNodeError(f"The settings were saved, but the start-at-login entry could not be "
                                   f"changed ({exc}). Check that your autostart folder is writable.",
                                   title="Start at login") from exc
        self._first_run = False

    def join_network(self, source: str, *, save: bool = True) -> Any:
        """Read and check a network file or link (model, payout chain; seconds: not on the GUI thread) and,
        with ``save``, write the settings it gives and remember it. Returns the NetworkDescriptor; raises
        DescriptorError (one problem per line in ``.problems``) and writes nothing when it is not usable."""
        from farnode_desktop.core.network import descriptor as D
        from farnode_desktop.core.node.model_support import check_model_config

        desc = D.read_descriptor(source)
        problems = D.check_model(desc, check_model_config) + D.check_chain(desc)
        if problems:
            raise D.DescriptorError(problems, source)
        if save:
            settings = desc.apply(self.settings)
            self.save_settings(settings)
            D.remember(desc, source, settings, self.paths.settings_file)
        return desc

    def network_descriptor(self) -> dict:
        """The joined network's name and source, its values, and the settings edited since (``differs``)."""
        from farnode_desktop.core.localchain.effective import builtin_network
        from farnode_desktop.core.network.descriptor import show

        return show(self.settings, self.paths.settings_file,
                    builtin_network(self.paths.chain_dir, self.local_payouts.rate_per_1k_tokens))

    def set_gpu_contributing(self, uuid: str, on: bool, all_uuids: list[str]) -> Settings:
        """Turn one GPU's contribution on/off and save. An empty list means "every eligible GPU", so the
        first change writes the full list out. Returns the saved settings."""
        current = list(self.settings.gpus.contributing) or list(all_uuids)
        chosen = [u for u in current if u != uuid] + ([uuid] if on else [])
        chosen = [u for u in all_uuids if u in chosen]  # keep the GPUs' order
        new = replace(self.settings, gpus=replace(self.settings.gpus, contributing=chosen))
        self.save_settings(new)
        return new

    # ------------------------------------------------------------------ wallet (BLOCKING: the keyring)
    def _wallet_changed(self) -> None:
        """The wallet manager saved the settings file itself: take its address, keep everything else."""
        address = self.node.store.load().wallet.address
        self.node.settings = replace(self.node.settings, wallet=replace(self.node.settings.wallet,
                                                                        address=address))
        self.earnings.sync_now()

    # ------------------------------------------------------------------ reads (may block: off the GUI thread)
    def gpu_report(self) -> GpuReport:
        """Read the GPU inventory (NVML, tens of ms) and size each GPU for the model served (the local
        swarm's demo model; elsewhere the model is known when the node starts)."""
        from farnode_desktop.core.node.demo_swarm import demo_model_path

        cfg = demo_model_path(self.paths) / "config.json" if self.node.is_local else None
        return gpu_report(self._nvml, self.settings, cfg)

    def today(self, now: float | None = None) -> TodaySummary:
        """Tokens, requests and earnings since local midnight (SQLite reads, milliseconds)."""
        return today(self.store, time.time() if now is None else now)

    def log_tail(self, max_lines: int = 2000) -> list[str]:
        """The last lines of the node's log file (blocking file read)."""
        return report.log_tail(self.node.supervisor.log_path, max_lines)

    def log_search(self, text: str, max_lines: int = 1000) -> list[str]:
        """The last lines of the node's log files that contain ``text`` (blocking file reads)."""
        return report.log_search(self.node.supervisor.log_path, text, max_lines)

    def diagnostics(self, extra_lines: list[str] | None = None) -> str:
        """A text bundle for a bug report: versions, settings and the last log lines, secrets redacted."""
        try:
            engine = self.node.engine.status().to_dict()
        except Exception as exc:
            engine = {"error": str(exc)}
        lines = list(extra_lines) if extra_lines is not None else self.log_tail(300)
        return report.diagnostics(state=self.state, engine=engine,
                                  inventory=read_inventory(self._nvml, with_processes=False),
                                  settings=self.settings.to_dict(), lines=lines)

    def engine_status(self) -> EngineStatus:
        """The engine environment's status (reads its folder; milliseconds to a second)."""
        return self.node.engine.status()

    def repair_engine(self, progress: Callable[[C.EngineProgress], None] | None = None) -> ProbeResult | None:
        """Create/repair the engine environment. BLOCKS for minutes; reports through ``progress``, or by
        default on the bus (``topics.ENGINE_PROGRESS``)."""
        return self.node.engine.ensure(progress or (lambda p: self.bus.publish(T.ENGINE_PROGRESS, p)))

    # ------------------------------------------------------------------ the Hugging Face token (BLOCKING: keyring)
    def hf_token_present(self) -> bool:
        """The OS keyring holds a Hugging Face token."""
        return self.node.hf_tokens_store().has()

    def save_hf_token(self, token: str) -> None:
        self.node.hf_tokens_store().set(token)

    def remove_hf_token(self) -> None:
        self.node.hf_tokens_store().remove()

    def log_path(self) -> Path:
        return self.node.supervisor.log_path
