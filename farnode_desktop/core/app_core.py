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
import datetime as dt
import json
import logging
import os
import platform
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from farnode_desktop import APP_NAME, __version__
from farnode_desktop.core import snapshots as C
from farnode_desktop.core import topics as T
from farnode_desktop.core.control import ControlServer
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.gpu.inventory import (
    GpuInventory,
    TelemetrySampler,
    processes_for_policies,
    read_inventory,
)
from farnode_desktop.core.gpu.nvml import Nvml
from farnode_desktop.core.instance import InstanceLock
from farnode_desktop.core.metrics.recorder import MetricsRecorder
from farnode_desktop.core.metrics.store import MetricsStore
from farnode_desktop.core.node.controller import NodeController
from farnode_desktop.core.node.engine_venv import EngineStatus
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.payout.rate import EarningsRate
from farnode_desktop.core.payout.runner import EarningsRunner
from farnode_desktop.core.policies.rules import PolicyEngine
from farnode_desktop.core.policies.runner import PolicyInputs, PolicyRunner
from farnode_desktop.core.settings import Settings
from farnode_desktop.core.status import (
    describe,
    plain,
    reachability_from_addresses,
    stats_fields,
    uptime_text,
)
from farnode_desktop.engine.protocol import ProbeResult

log = logging.getLogger(__name__)

#: States in which the node counts as "running" for the user (Stop is offered).

_SECRET_KEYS = re.compile(r"(private[_ ]?key|secret|phrase|mnemonic|password|seed)", re.I)
_HEX_KEY = re.compile(r"\b(0x)?[0-9a-fA-F]{64}\b")


@dataclass(frozen=True)
class GpuReport:
    """What the GPUs page shows: the inventory and, per GPU, whether it can serve and why."""

    inventory: GpuInventory
    eligibility: dict[str, tuple[bool, str]]  # uuid -> (eligible, plain reason)
    contributing: tuple[str, ...]  # settings.gpus.contributing (empty: every eligible GPU)


@dataclass(frozen=True)
class WalletInfo:
    address: str  # checksummed payout address, "" when there is no wallet
    has_key: bool  # the OS keyring holds its key
    qr_png: bytes  # QR code of the address (PNG), b"" without a wallet


@dataclass(frozen=True)
class TodaySummary:
    """Totals since local midnight (tokens and requests served; earnings in reward tokens, or None)."""

    tokens: float
    requests: float
    earnings: float | None


def local_midnight(now: float) -> float:
    """Epoch seconds of the last local midnight before ``now``."""
    d = dt.datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    return d.timestamp()


def redact(text: str) -> str:
    """Remove what looks like a private key (64 hex digits) from free text."""
    return _HEX_KEY.sub("<redacted>", text)


def redact_settings(d: Any) -> Any:
    """A copy of a settings dict with any secret-looking field blanked (settings should hold none)."""
    if isinstance(d, dict):
        return {k: ("<redacted>" if _SECRET_KEYS.search(str(k)) else redact_settings(v)) for k, v in d.items()}
    if isinstance(d, list):
        return [redact_settings(v) for v in d]
    if isinstance(d, str):
        return redact(d)
    return d


class AppCore:
    """The app's running parts. Thread-safe where noted; built on any thread, closed once.

    Building one takes the data folder for this process (``face``: ``window`` or ``headless``, said to a
    second launch): it raises :class:`~farnode_desktop.core.instance.AlreadyRunning`, naming the holder,
    when another process runs on the same data folder. :meth:`close` gives the folder back."""

    def __init__(self, paths: AppPaths, *, face: str = "window", bus: EventBus | None = None,
                 nvml: Nvml | None = None, policy_inputs: PolicyInputs | None = None,
                 node: NodeController | None = None, keystore: Any = None,
                 earnings_interval_s: float = 60.0) -> None:
        self.paths = paths.ensure()
        self.face = face
        self.instance = InstanceLock(self.paths.run_dir)
        self.instance.acquire(face)
        try:
            self._build(bus, nvml, policy_inputs, node, keystore, earnings_interval_s)
        except BaseException:
            self.instance.release()
            raise

    def _build(self, bus: EventBus | None, nvml: Nvml | None, policy_inputs: PolicyInputs | None,
               node: NodeController | None, keystore: Any, earnings_interval_s: float) -> None:
        paths = self.paths
        self.first_run = not paths.settings_file.exists()
        self.bus = bus or EventBus()
        self.node = node or NodeController(self.paths, self.bus)
        self.store = MetricsStore(self.paths.metrics_db)
        self.recorder = MetricsRecorder(self.store, self.bus)
        self._nvml = nvml
        self.telemetry = TelemetrySampler(self.bus, nvml)
        self._workers = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="farnode-core")
        # what running earns per hour at the network's published rate: the profit pause's input
        self.earnings_rate = EarningsRate(self.bus, lambda: self.node.settings.chain.reward_per_1k_tokens)
        inputs = policy_inputs if policy_inputs is not None else self._default_policy_inputs()
        self.policies = PolicyRunner(PolicyEngine(self.node.settings.policies), self.bus,
                                     pause=self._policy_pause, resume=self._policy_resume, inputs=inputs)
        self._keystore = keystore
        self._wallet: Any = None  # WalletManager, built on first use (eth-account takes ~1 s to import)
        self.earnings = EarningsRunner(self.paths.data_dir, self.bus, lambda: self.node.settings,
                                       self.store.tokens_served_between, interval_s=earnings_interval_s)
        # ``farnode-desktop status`` (and settings or wallet changes made from a shell) reach this core here.
        self.control = ControlServer(self.paths.run_dir, {"status": lambda _req: self.status_report(),
                                                          "reload-settings": lambda _req: self.reload_settings()})
        from farnode_desktop.core.network.monitor import NetworkMonitor

        # The network around the node, read from its DHT by an engine-side probe: while the node serves off
        # the local swarm (for its reachability) and while the Network page is open.
        self.network = NetworkMonitor(
            self.bus, lambda: self.node.supervisor.runtime, self.paths.log_dir, peers=self.node.network_peers,
            mine=self.node.my_peer_ids, nat_traversal=lambda: not self.node.is_local
            and self.node.settings.network.nat_traversal)
        self._closed = False
        self._close_lock = threading.Lock()
        self.last_error: C.NodeState | None = None
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
        try:
            self.node.stop()
        finally:
            self.node.close()
            self._workers.shutdown(wait=True, cancel_futures=True)
            self.recorder.close()
            self.store.close()
            self.control.close()
            self.instance.release()

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ the node
    @property
    def settings(self) -> Settings:
        return self.node.settings

    @property
    def state(self) -> C.NodeState:
        return self.node.state

    def resolve_state(self, state: C.NodeState) -> C.NodeState:
        """The state to show for a ``node.state`` event: the controller's current view (its first server;
        a server stopped for a pause reads as PAUSED even when its STOPPED event arrives late)."""
        return self.node.state

    def resolve_stats(self, _stats: C.NodeStats) -> C.NodeStats:
        """The stats to show for a ``node.stats`` event: summed over every server (one per GPU)."""
        return self.node.stats()

    def is_running(self) -> bool:
        """The user has the node contributing (or starting, or paused by a policy)."""
        return self.node.state.state in C.RUNNING_STATES

    def start_node(self, progress: Callable[[C.EngineProgress], None] | None = None) -> C.NodeState:
        """Start contributing. BLOCKS: engine set-up (minutes the first time), then the server start.
        A manual pause ends; when another policy holds the node paused, it starts paused."""
        self.last_error = None
        self.policies.manual_resume()  # Start ends a manual pause
        self.policies.tick_once()
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
        if state.state in (C.FAILED, C.HELD):
            self.last_error = state
        if self._closed:
            return
        serving = bool(self.node.my_peer_ids())  # a server on the network (also while it moves blocks)
        self.network.watch("node", serving and not self.node.is_local)
        if not serving:
            self.bus.publish(T.REACHABILITY_STATUS, {})

    # ------------------------------------------------------------------ the network around the node
    def reachability(self) -> dict:
        """node_id -> ReachabilityStatus of each server serving off the local swarm (empty otherwise)."""
        return self.node.reachability(self.network.latest)

    def _on_reachability_input(self, _topic: str, _payload: Any) -> None:
        self.bus.publish(T.REACHABILITY_STATUS, self.reachability())

    def watch_network(self, on: bool) -> None:
        """The Network page is shown (on) or hidden: keep the network view fresh meanwhile. Returns at once."""
        self.network.watch("page", on)

    # ------------------------------------------------------------------ status (any thread, quick)
    def status_report(self) -> dict:
        """How the node is doing, for ``farnode-desktop status [--json]``: state in words, blocks, tokens/s,
        requests, uptime, reachability, earnings, and which process runs it."""
        st, stats = self.node.state, self.node.stats()
        peer = self.node.supervisor.peer
        net = self.settings.network
        report: dict = {
            "time": time.time(),
            "app": {"pid": os.getpid(), "face": self.face, "version": __version__,
                    "data_folder": str(self.paths.data_dir)},
            "state": st.state, "words": describe(st, stats), "message": st.message,
            # the model served: the local swarm serves its demo model, whatever network.model holds for later
            "network": {"swarm": net.swarm, "port": net.port,
                        "model": "(the embedded demo model)" if self.node.is_local else
                        (self.node.plan.model if self.node.plan is not None else net.model)},
            "node": stats_fields(stats),
            "uptime": uptime_text(stats.uptime_s),
            "peer_id": peer.peer_id,
            "reachability": self._reachability_report(list(peer.addrs), st.state),
            "policy": list(self.policies.last_decision.reasons) if self.policies.last_decision else [],
        }
        if self.node.is_local:
            report["demo_traffic"] = plain(self.node.traffic.stats)
        if not self.earnings.configured():
            report["earnings"] = {"configured": False,
                                  "text": "not set up (a payout wallet and the chain settings are needed)"}
        else:
            snap = self.earnings.latest
            report["earnings"] = {"configured": True, **(plain(snap) if snap is not None else
                                                         {"text": "not synced yet"})}
        return report

    def _reachability_report(self, addrs: list[str], state: str) -> dict:
        """Who can reach the node: what the network probe found (off the local swarm, once it ran), else
        what the announced addresses say."""
        report = reachability_from_addresses(self.node.is_local, addrs, state)
        found = self.reachability().get(self.node.supervisor.node_id) if not self.node.is_local else None
        if found is not None and found.state != "unknown":
            report.update(probe=found.state, text=f"{found.words}: {found.detail}", fix=found.fix)
        return report

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
        if (old.policies.start_at_login, old.policies.start_minimized) != (
                settings.policies.start_at_login, settings.policies.start_minimized) or self.first_run:
            from farnode_desktop.core.policies.platform import apply_start_at_login

            try:
                apply_start_at_login(settings.policies.start_at_login, settings.policies.start_minimized)
            except OSError as exc:
                from farnode_desktop.core.errors import FarNodeError

                raise FarNodeError(f"The settings were saved, but the start-at-login entry could not be "
                                   f"changed ({exc}). Check that your autostart folder is writable.",
                                   title="Start at login") from exc
        self.first_run = False

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

    @property
    def wallet(self) -> Any:
        """The :class:`~farnode_desktop.core.payout.wallet.WalletManager` (imported on first use, off the GUI
        thread: eth-account takes about a second to import)."""
        if self._wallet is None:
            from farnode_desktop.core.payout.keys import KeysProcess
            from farnode_desktop.core.payout.wallet import WalletManager

            # Key arithmetic in a helper process: eth-account would hold ~30 MB for the app's whole life.
            self._wallet = WalletManager(self.node.store, self._keystore, keys=KeysProcess())
        return self._wallet

    def wallet_info(self) -> WalletInfo:
        """The payout address ("" when none), whether the keyring holds its key, and its QR code (PNG).
        Reads the keyring."""
        address = self.settings.wallet.address
        if not address:
            return WalletInfo("", False, b"")
        from farnode_desktop.core.payout.wallet import address_qr

        return WalletInfo(address, self.wallet.has_key(), address_qr(address, scale=6))

    def wallet_create(self) -> Any:
        """A new wallet (``NewWallet``); its phrase is in the result only (show it once, then drop it)."""
        new = self.wallet.create()
        self._wallet_changed()
        return new

    def wallet_import_key(self, key: str) -> str:
        address = self.wallet.import_private_key(key)
        self._wallet_changed()
        return address

    def wallet_import_phrase(self, phrase: str) -> str:
        address = self.wallet.import_phrase(phrase)
        self._wallet_changed()
        return address

    def wallet_export_key(self) -> str:
        """The private key; call only after the user explicitly confirmed."""
        return self.wallet.export_private_key(confirm=True)

    def wallet_remove(self) -> str:
        """Remove the wallet; call only after the user explicitly confirmed."""
        address = self.wallet.remove(confirm=True)
        self._wallet_changed()
        return address

    # ------------------------------------------------------------------ reads (may block: off the GUI thread)
    def gpu_report(self) -> GpuReport:
        """Read the GPU inventory (NVML, tens of ms) and size each GPU for the current model."""
        inv = read_inventory(self._nvml)
        elig: dict[str, tuple[bool, str]] = {}
        if inv.gpus:
            try:
                from farnode_desktop.core.gpu.sizing import ModelSpec, recommend
                from farnode_desktop.core.node.demo_swarm import demo_model_path

                cfg = demo_model_path(self.paths) / "config.json"
                if self.node.is_local and cfg.is_file():
                    rec = recommend(inv, self.settings, ModelSpec.from_config_file(cfg))
                    elig = {s.uuid: (s.eligible, s.reason) for s in rec.sizings}
            except Exception as exc:  # sizing is advice: show the GPU anyway
                log.warning("GPU sizing failed: %s", exc)
            for g in inv.gpus:
                elig.setdefault(g.uuid, (not g.lost, "lost: restart the computer" if g.lost else
                                         "the number of blocks is decided when the node starts"))
        return GpuReport(inv, elig, tuple(self.settings.gpus.contributing))

    def today(self, now: float | None = None) -> TodaySummary:
        """Tokens, requests and earnings since local midnight (SQLite reads, milliseconds)."""
        now = time.time() if now is None else now
        t0 = local_midnight(now)
        tokens = self.store.tokens_served_between(t0, now + 1)
        requests = self.store.sum_between("requests", t0, now + 1)
        earnings = None
        if self.store.series_names("earnings.total"):
            day = self.store.daily_totals("earnings.total", 1, how="increase")
            earnings = day[-1][1] if day else 0.0
        return TodaySummary(tokens, requests, earnings)

    def log_tail(self, max_lines: int = 2000) -> list[str]:
        """The last lines of the node's log file (blocking file read)."""
        path = self.node.supervisor.log_path
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 400_000))
                data = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        return data.splitlines()[-max_lines:]

    def diagnostics(self, extra_lines: list[str] | None = None) -> str:
        """A text bundle for a bug report: versions, settings and the last log lines, secrets redacted.
        Never contains the wallet key or phrase (they live in the OS keyring and are not read here)."""
        engine = {}
        try:
            engine = self.node.engine.status().to_dict()
        except Exception as exc:
            engine = {"error": str(exc)}
        inv = read_inventory(self._nvml, with_processes=False)
        info = {
            "app": f"{APP_NAME} {__version__}",
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "state": self.state.__dict__,
            "engine": {k: v for k, v in engine.items() if k != "missing"},
            "gpus": [g.name for g in inv.gpus] or inv.error,
            "driver": inv.driver_version,
            "settings": redact_settings(self.settings.to_dict()),
        }
        lines = list(extra_lines) if extra_lines is not None else self.log_tail(300)
        body = json.dumps(info, indent=2, default=str)
        return redact(f"{body}\n\n--- last {len(lines)} log lines ---\n" + "\n".join(lines[-300:]))

    def engine_status(self) -> EngineStatus:
        """The engine environment's status (reads its folder; milliseconds to a second)."""
        return self.node.engine.status()

    def repair_engine(self, progress: Callable[[C.EngineProgress], None]) -> ProbeResult | None:
        """Create/repair the engine environment. BLOCKS for minutes; reports through ``progress``."""
        return self.node.engine.ensure(progress)

    def log_path(self) -> Path:
        return self.node.supervisor.log_path
