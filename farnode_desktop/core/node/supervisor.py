"""Supervises one engine process (the launcher running a FarMesh block server): start, stop, restart.

Qt-free; this module owns the subprocess control of node processes. The launcher reports over a pipe in
the wire protocol (``farnode_desktop/engine/protocol.py``), read here as typed events; its log (stderr and stdout) goes to a rotating file
and to ``node.log`` events. States, stats and lifecycle events are published on the :class:`EventBus`
(topics in :mod:`farnode_desktop.core.snapshots`).

Stopping: SIGINT to the server's main process (FarMesh's clean path: blocks are announced offline), wait,
then SIGKILL to the whole process group. Crashes restart with a growing back-off; too many crashes in a
window put the node on hold with a message. Processes left by an earlier run of the app that was killed
are found through a pid file and removed before a new start.

Start timeline: the launcher reports each phase of a start (``phase`` events: process, imports, engine set-up,
DHT join, throughput, block choice, model load, announce); :attr:`Supervisor.timeline` keeps them for the
current start, with when each ended after the start order, and each goes to the node's log as one line.

Warm standby (:meth:`Supervisor.keep_standby`): a launcher started ahead with ``--standby`` imports the engine,
torch and transformers, then waits on its control pipe for its configuration, the start order, holding no model
and no GPU memory. The next :meth:`Supervisor.start` with the same environment hands it the configuration
instead of starting a new process, so that start skips the interpreter's start and the imports. A standby
exits when its control pipe closes (the app is gone); :meth:`Supervisor.drop_standby` and :meth:`close` end it.
"""

from __future__ import annotations

import collections
import json
import logging
import logging.handlers
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from farnode_desktop.core import process_tree
from farnode_desktop.core import snapshots as C
from farnode_desktop.core import topics as T
from farnode_desktop.core.atomic import atomic_write_json
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.node.engine_venv import EngineEnv
from farnode_desktop.core.node.runtimes.base import EngineRuntime, NativeRuntime, without_secrets
from farnode_desktop.core.resources import engine_source_root
from farnode_desktop.engine import protocol as P

log = logging.getLogger(__name__)
LAUNCHER_MODULE = "farnode_desktop.engine.launcher"
PREPARE_PHASE = "prepare"  # the app's own first phase of a start: set-up checks and the plan, before the launcher

_LAUNCHER_STATES = {
    P.ServerState.STARTING: C.STARTING, P.ServerState.MEASURING_THROUGHPUT: C.MEASURING,
    P.ServerState.LOADING_BLOCKS: C.LOADING, P.ServerState.JOINING: C.JOINING, P.ServerState.ONLINE: C.ONLINE,
    P.ServerState.REBALANCING: C.REBALANCING, P.ServerState.STOPPING: C.STOPPING,
}


@dataclass(frozen=True)
class RestartPolicy:
    delays_s: tuple[float, ...] = (2.0, 5.0, 15.0, 30.0, 60.0)  # back-off after the 1st, 2nd, ... crash
    max_crashes: int = 3  # this many crashes within window_s puts the node on hold
    window_s: float = 240.0

    def delay(self, n_recent: int) -> float:
        return self.delays_s[min(max(n_recent - 1, 0), len(self.delays_s) - 1)]


@dataclass
class _Run:
    """One launcher process."""

    proc: subprocess.Popen
    tree: process_tree.ProcessTree  # the launcher and everything it started (the stop helper)
    run_id: str
    started: float
    event_source: object  # a readable binary file: the event pipe, or the process's stdout
    log_source: object  # its log: stdout (events on a pipe) or stderr (events on stdout)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(P.COUNTER_FIELDS, 0))
    failure: P.Failed | None = None
    got_hello: bool = False
    stop_requested: bool = False
    engine_pid: int | None = None  # the launcher's pid as it sees itself (differs under WSL2/Docker)
    stdin_lock: threading.Lock = field(default_factory=threading.Lock)  # a stop's write vs. the exit's close


@dataclass
class _Standby:
    """A launcher started ahead (``--standby``), waiting for its configuration."""

    proc: subprocess.Popen
    tree: process_tree.ProcessTree
    event_source: object
    log_source: object
    key: tuple
    spawned: float


def failure_message(category: str, config: dict, detail: str = "", log_path: Path | None = None) -> str:
    """The plain-language message for a failure category: what happened, then what to do."""
    port = config.get("port")
    see_log = f" The details are in the log ({log_path})." if log_path else ""
    if category == P.Category.PORT_IN_USE:
        return (f"Port {port} is already used by another program (or by a FarNode node that is still "
                "running). Close that program, or choose another port in Settings > Network.")
    if category == P.Category.BOOTSTRAP:
        tried = ""
        if "(tried:" in detail:
            tried = " (" + detail[detail.index("(tried:") + 1:].rstrip(")").strip() + ")"
        else:
            peers = config.get("initial_peers") or []
            tried = f" (tried: {', '.join(peers)})" if peers else " (tried: the engine's public bootstrap peers)"
        return (f"None of the network's initial peers answered{tried}. Check your internet connection and the "
                "initial peers in Settings > Network.")
    if category == P.Category.MODEL:
        return (f"The model {config.get('model')!r} could not be loaded ({detail.strip()[:200]}). Check the "
                "model name or folder in Settings > Network.")
    if category == P.Category.GATED:  # the launcher says whether it had a token
        from farnode_desktop.core.models.hub import gated_model_message

        return gated_model_message(str(config.get("model") or "This model"), with_token=detail == "with a token")
    if category == P.Category.MODEL_UNSUPPORTED:
        return f"{detail.strip()[:400]} Change the model in Settings > Network."
    if category in (P.Category.OOM_AT_LOAD, P.Category.OOM):
        if str(config.get("device") or "cpu").startswith("cuda"):
            return ("The GPU ran out of memory while loading blocks. Serve fewer blocks (Settings > GPUs) or close "
                    "programs that use the GPU, then start again.")
        return ("This computer ran out of memory (RAM) while loading blocks. Close other programs or serve fewer "
                "blocks (Settings > GPUs and blocks > Blocks to serve), then start again.")
    if category == P.Category.DISK_FULL:
        where = config.get("cache_dir") or "the engine's cache"
        return (f"The disk is full: the model's blocks do not fit in {where}. Free some disk space there, then "
                "start again." + see_log)
    if category == P.Category.ENGINE_MISSING:
        return ("The engine environment is missing or broken. Open Settings > Engine and repair it (or run "
                "`farnode-desktop engine setup`)." + see_log)
    if category == P.Category.CONFIG:
        return f"The node's settings were rejected ({detail.strip()[:200]}). Check Settings > Network." + see_log
    if category == P.Category.STOP_TIMEOUT:
        return "The server did not stop in time and was ended." + see_log
    return f"The server stopped unexpectedly{(' (' + detail.strip()[:200] + ')') if detail else ''}." + see_log


class Supervisor:
    """State machine over one launcher subprocess. Thread-safe; every method returns quickly except
    :meth:`stop` (bounded by its timeout)."""

    def __init__(self, engine: EngineEnv, bus: EventBus, *, node_id: str = "main", log_dir: Path,
                 run_dir: Path, policy: RestartPolicy | None = None, stop_timeout_s: float = 30.0,
                 runtime: EngineRuntime | None = None, launcher: str = LAUNCHER_MODULE):
        self.engine = engine
        # Where the engine runs: this machine's engine venv (native), WSL2 or Docker (core/node/runtimes).
        self.runtime = runtime or NativeRuntime(engine.python, engine_source_root())
        self.launcher = launcher  # the module the runtime runs (tests run a fast stand-in that speaks its protocol)
        self.bus = bus
        self.node_id = node_id
        self.policy = policy or RestartPolicy()
        self.stop_timeout_s = stop_timeout_s
        self.log_dir = Path(log_dir)
        self.run_dir = Path(run_dir)
        self.log_path = self.log_dir / f"node-{node_id}.log"
        self.pid_file = self.run_dir / f"node-{node_id}.json"
        self._lock = threading.RLock()
        self._state = C.NodeState(node_id, C.STOPPED, time=time.time())
        self._run: _Run | None = None
        self._config: dict = {}
        self._secrets: Callable[[], dict] | None = None
        self._binding_for: Callable[[str], tuple[str, str] | None] | None = None
        self._binding: P.BindingAnnounced | None = None
        self._reachability: P.Reachability | None = None
        self._env_extra: dict[str, str] = {}
        self._crashes: collections.deque[float] = collections.deque()
        self._restart_timer: threading.Timer | None = None
        self._want_running = False
        self._peer = P.Peer()
        self._blocks: tuple[int, ...] = ()
        self._total_blocks = 0
        self._throughput = P.Throughput()
        self._online_since = 0.0  # when the current run last came online (epoch s); 0 when not online
        self._rate_window: collections.deque[tuple[float, int, int]] = collections.deque(maxlen=16)
        self._timeline: list[dict] = []  # the phases of the current (or last) start, see :attr:`timeline`
        self._ordered_at = 0.0  # when the current start was ordered (epoch s)
        self._standby: _Standby | None = None
        self._ticker: threading.Thread | None = None
        self._ticker_stop = threading.Event()
        self._logger = self._make_file_logger()

    # ------------------------------------------------------------------ public API
    @property
    def state(self) -> C.NodeState:
        return self._state

    @property
    def peer(self) -> P.Peer:
        """The server's peer id and addresses (empty until the launcher reported them)."""
        return self._peer

    @property
    def reachability(self) -> P.Reachability | None:
        """The engine's last answer to "do other peers reach this server directly?" (None: not asked yet)."""
        return self._reachability

    @property
    def config(self) -> dict:
        """A copy of the launcher configuration of the current (or last) start."""
        return dict(self._config)

    @property
    def timeline(self) -> list[dict]:
        """The phases of the current (or last) start, in order: ``phase``, ``seconds`` it took, ``at_s`` (when
        it ended, in seconds after the start order) and ``ahead`` (done by a standby before the order: not part
        of the wait)."""
        with self._lock:
            return [dict(p) for p in self._timeline]

    @property
    def pid(self) -> int | None:
        run = self._run
        return run.proc.pid if run else None

    @property
    def binding(self) -> P.BindingAnnounced | None:
        """The server's last attempt to announce its wallet binding (None: none made in this run)."""
        return self._binding

    def start(self, config: dict, env_extra: dict[str, str] | None = None, *,
              secrets: Callable[[], dict] | None = None,
              binding: Callable[[str], tuple[str, str] | None] | None = None,
              ordered_at: float | None = None) -> C.NodeState:
        """Start the node with a launcher configuration. Returns the new state (or the current one if it is
        already running). ``secrets()`` is called at every spawn for values (the Hugging Face token) that
        go to the launcher with its configuration through the control pipe only: they are never kept in
        :attr:`config`, written to a file or put on a command line or in the environment. ``binding(peer_id)``
        is called once the server reports its peer id: the signed wallet binding (statement, signature) it
        then announces in the DHT, or None (no wallet). ``ordered_at``: when the start was ordered (epoch s),
        when the app did work of its own before this call (the timeline's ``prepare`` phase)."""
        with self._lock:
            if self._run is not None or self._state.state == C.RESTARTING:
                return self._state
            now = time.time()
            self._ordered_at = ordered_at if ordered_at is not None else now
            self._timeline = []
            if ordered_at is not None:
                self._add_phase(PREPARE_PHASE, now - ordered_at, now, ahead=False)
            self._config = dict(config)
            self._secrets = secrets
            self._binding_for = binding
            self._env_extra = dict(env_extra or {})
            self._want_running = True
            self._crashes.clear()
            return self._spawn()

    def stop(self, timeout: float | None = None) -> C.NodeState:
        """Stop cleanly (SIGINT, wait), then kill the process group. Always ends in STOPPED."""
        timeout = self.stop_timeout_s if timeout is None else timeout
        with self._lock:
            self._want_running = False
            if self._restart_timer:
                self._restart_timer.cancel()
                self._restart_timer = None
            run = self._run
            if run is None:
                if self._state.state != C.STOPPED:
                    self._set_state(C.STOPPED)
                return self._state
            run.stop_requested = True
            self._set_state(C.STOPPING)
        self._stop_run(run, timeout)
        # The waiter thread finishes the bookkeeping; wait for it so callers see STOPPED.
        deadline = time.time() + 10
        while self._run is run and time.time() < deadline:
            time.sleep(0.02)
        with self._lock:  # the waiter clears _run and sets STOPPED under the lock: read them together
            return self._state

    def _stop_run(self, run: _Run, timeout: float) -> None:
        """The runtime's clean stop (SIGINT natively: blocks announced offline), then harder steps."""
        strategy = self.runtime.stop_strategy(run.engine_pid, self.node_id)
        if strategy.stdin_line:
            with run.stdin_lock:
                try:
                    if not run.proc.stdin.closed:
                        run.proc.stdin.write(strategy.stdin_line)
                        run.proc.stdin.flush()
                except OSError:
                    pass
        if strategy.signal is not None:
            try:
                run.proc.send_signal(strategy.signal)
            except ProcessLookupError:
                pass
        if not self._wait(run, min(timeout, strategy.grace_s)) and strategy.fallback:
            for cmd in strategy.fallback:
                self._run_quietly(cmd)
            self._wait(run, strategy.fallback_grace_s)
        if run.proc.poll() is None:
            self._logger.warning("the server did not stop in time; killing it")
        if strategy.kill_group:
            run.tree.kill()
        elif run.proc.poll() is None:
            run.proc.kill()
        for cmd in strategy.kill_commands:
            self._run_quietly(cmd)
        run.proc.wait()

    @staticmethod
    def _wait(run: _Run, timeout: float) -> bool:
        try:
            run.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def _run_quietly(self, cmd) -> None:
        try:
            done = process_tree.run(cmd, timeout=30, env=without_secrets())  # wsl.exe, docker: no secret crosses
        except OSError as exc:
            self._logger.warning("stop command %s failed: %s", cmd[0], exc)
            return
        if done.returncode in (124, 127):
            self._logger.warning("stop command %s failed: %s", cmd[0], done.output[-300:].decode(errors="replace"))

    def reset_hold(self) -> None:
        """Leave the HELD/FAILED state (the user acknowledged the message)."""
        with self._lock:
            if self._state.state in (C.HELD, C.FAILED) and self._run is None:
                self._crashes.clear()
                self._set_state(C.STOPPED)

    def stats(self) -> C.NodeStats:
        run = self._run
        now = time.time()
        counters = dict(run.counters) if run else dict.fromkeys(P.COUNTER_FIELDS, 0)
        inf_rate = fwd_rate = 0.0
        if len(self._rate_window) >= 2:
            t0, i0, f0 = self._rate_window[0]
            t1, i1, f1 = self._rate_window[-1]
            if t1 > t0:
                inf_rate, fwd_rate = (i1 - i0) / (t1 - t0), (f1 - f0) / (t1 - t0)
        return C.NodeStats(
            time=now, node_id=self.node_id, run_id=run.run_id if run else "", state=self._state.state,
            peer_id=self._peer.peer_id, blocks=self._blocks, total_blocks=self._total_blocks,
            uptime_s=(now - self._online_since) if run and self._online_since else 0.0,
            reported_throughput=self._throughput.throughput or 0.0,
            inference_rps=self._throughput.inference_rps or 0.0,
            forward_rps=self._throughput.forward_rps or 0.0,
            network_rps=self._throughput.network_rps or 0.0,
            inference_tokens_per_s=max(inf_rate, 0.0), forward_tokens_per_s=max(fwd_rate, 0.0),
            **counters,
        )

    def open_sessions(self) -> int:
        """Inference sessions open on the server right now (opened minus finished)."""
        run = self._run
        if run is None:
            return 0
        return max(run.counters["inference_sessions"] - run.counters["inference_sessions_closed"], 0)

    def wait_for(self, states: set[str] | str, timeout: float) -> C.NodeState:
        """Block until the state is one of ``states`` (tests, headless start-up). Returns the state."""
        want = {states} if isinstance(states, str) else set(states)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self._state.state in want:
                return self._state
            time.sleep(0.05)
        return self._state

    # ------------------------------------------------------------------ spawning
    def _spawn(self) -> C.NodeState:
        self.cleanup_leftovers()
        native = isinstance(self.runtime, NativeRuntime)
        if native and not Path(self.runtime.python).exists():
            return self._fail(P.Category.ENGINE_MISSING, "")
        self._set_state(C.STARTING)
        standby = self._take_standby()
        if standby is not None:
            proc, tree, events, logs = standby.proc, standby.tree, standby.event_source, standby.log_source
            self._logger.info("start: a standby launcher (pid %d, started %.1f s ago) takes the start order",
                              proc.pid, time.time() - standby.spawned)
        else:
            try:
                proc, tree, events, logs = self._spawn_process([])
            except OSError as exc:
                return self._fail(P.Category.ENGINE_MISSING, str(exc))
        run = _Run(proc=proc, tree=tree, run_id=uuid.uuid4().hex[:12], started=time.time(), event_source=events,
                   log_source=logs)
        self._run = run
        self._peer, self._blocks, self._total_blocks, self._throughput = P.Peer(), (), 0, P.Throughput()
        self._binding = None
        self._reachability = None
        self._rate_window.clear()
        self._write_pid_file(proc.pid)
        try:
            line = dict(self.runtime.translate_config(self._config))
            if self._secrets is not None:
                line.update(self._secrets())
            proc.stdin.write((json.dumps(line) + "\n").encode())
            proc.stdin.flush()  # stdin stays open: it is the launcher's control pipe
            del line
        except OSError:
            pass
        self._emit_event("start", f"node starting (pid {proc.pid})", pid=proc.pid, run_id=run.run_id)
        for target, name in ((self._read_events, "events"), (self._read_log, "log"), (self._wait_exit, "wait")):
            threading.Thread(target=target, args=(run,), daemon=True, name=f"node-{self.node_id}-{name}").start()
        self._ensure_ticker()
        return self._state

    def _spawn_process(self, args: list[str]):
        """Start a launcher process: (process, its tree, its event source, its log source)."""
        native = isinstance(self.runtime, NativeRuntime)
        r_fd, w_fd = os.pipe() if native else (None, None)
        spec = self.runtime.spawn_spec(self.launcher, args, self._env_extra, w_fd,
                                       ports=[int(self._config.get("port") or 0)], node_id=self.node_id)
        try:
            proc, tree = process_tree.spawn(spec.argv, **spec.popen_kwargs())
        except OSError:
            for fd in (r_fd, w_fd):
                if fd is not None:
                    os.close(fd)
            raise
        if w_fd is not None:
            os.close(w_fd)
        if spec.events_on_stdout:
            events, logs = proc.stdout, proc.stderr
            if r_fd is not None:
                os.close(r_fd)
        else:
            events, logs = os.fdopen(r_fd, "rb", buffering=0), proc.stdout
        return proc, tree, events, logs

    # ------------------------------------------------------------------ warm standby
    def _standby_key(self, env_extra: dict[str, str]) -> tuple:
        return (getattr(self.runtime, "python", None), self.launcher, tuple(sorted(env_extra.items())))

    @property
    def has_standby(self) -> bool:
        """Whether a standby launcher is waiting (alive) for the next start."""
        sb = self._standby
        return sb is not None and sb.proc.poll() is None

    def keep_standby(self, env_extra: dict[str, str] | None = None) -> bool:
        """Start a warm standby launcher for the next start (``env_extra``: that start's environment; default:
        the last start's), unless one is waiting already. Native runtime only (WSL2 and Docker start their
        engine through their own tools). Returns whether a standby is waiting."""
        env = dict(self._env_extra if env_extra is None else env_extra)
        with self._lock:
            if not isinstance(self.runtime, NativeRuntime) or not Path(self.runtime.python).exists():
                return False
            key = self._standby_key(env)
            if self._standby is not None:
                if self._standby.key == key and self._standby.proc.poll() is None:
                    return True
                self._drop_standby_locked()
            saved, self._env_extra = self._env_extra, env
            try:
                proc, tree, events, logs = self._spawn_process(["--standby"])
            except OSError as exc:
                self._logger.warning("could not start a standby launcher: %s", exc)
                return False
            finally:
                self._env_extra = saved
            self._standby = _Standby(proc, tree, events, logs, key, time.time())
            self._logger.info("standby launcher started (pid %d): it imports the engine and waits for a start",
                              proc.pid)
            return True

    def drop_standby(self) -> None:
        """End the standby launcher, if any (it holds nothing: no server, no network, no GPU memory)."""
        with self._lock:
            self._drop_standby_locked()

    def _drop_standby_locked(self) -> None:
        sb, self._standby = self._standby, None
        if sb is None:
            return
        try:
            sb.proc.stdin.close()  # its control pipe: a standby exits at its end
        except OSError:
            pass
        sb.tree.kill()
        sb.proc.wait()
        for source in (sb.event_source, sb.log_source):
            try:
                source.close()
            except OSError:
                pass

    def _take_standby(self) -> _Standby | None:
        """The waiting standby, when it fits this start (same launcher, same environment) and is alive."""
        sb = self._standby
        if sb is None:
            return None
        if sb.key != self._standby_key(self._env_extra) or sb.proc.poll() is not None:
            self._drop_standby_locked()
            return None
        self._standby = None
        return sb

    # ------------------------------------------------------------------ phases
    def _add_phase(self, phase: str, seconds: float, t: float, *, ahead: bool) -> None:
        entry = {"phase": phase, "seconds": round(seconds, 3), "at_s": round(t - self._ordered_at, 3)}
        if ahead:
            entry["ahead"] = True
        self._timeline.append(entry)
        self._logger.info("start phase %-12s %6.2f s%s", phase, seconds,
                          " (done ahead, by the standby launcher)" if ahead else f" (at {entry['at_s']:.2f} s)")

    def _fail(self, category: str, detail: str) -> C.NodeState:
        message = failure_message(category, self._config, detail, self.log_path)
        self._want_running = False
        self._set_state(C.FAILED, message=message, category=category)
        self._emit_event("error", message, category=category)
        return self._state

    # ------------------------------------------------------------------ threads
    def _read_events(self, run: _Run) -> None:
        def bad(line: bytes, why: str) -> None:
            self._logger.warning("unreadable event from the engine (%s): %r", why, line)

        with run.event_source as pipe:
            for ev in P.iter_events(pipe, bad):
                self._on_event(run, ev)

    def _on_event(self, run: _Run, ev: P.Event) -> None:
        if isinstance(ev, P.Hello):
            run.got_hello = True
            run.engine_pid = ev.pid
            if self._run is run and not isinstance(self.runtime, NativeRuntime):
                # the pid inside WSL2 / the container: what the next start ends if this app dies with it running
                self._write_pid_file(run.proc.pid, engine_pid=ev.pid)
        elif isinstance(ev, P.State):
            state = _LAUNCHER_STATES.get(ev.state)
            if state and not (run.stop_requested and state != C.STOPPING) and self._run is run:
                detail = ""
                if state == C.LOADING:
                    detail = f"loading block {ev.block} ({ev.index} of {ev.total})"
                self._set_state(state, message=detail)
                if state == C.ONLINE:
                    self._emit_event("online", f"serving blocks {list(self._blocks)}", blocks=list(self._blocks),
                                     peer_id=self._peer.peer_id)
        elif isinstance(ev, P.Phase):
            with self._lock:
                if self._run is run and not any(p["phase"] == P.StartPhase.ANNOUNCE for p in self._timeline):
                    self._add_phase(ev.phase, ev.seconds, ev.t, ahead=ev.ahead)
                    if ev.phase == P.StartPhase.ANNOUNCE:
                        self._logger.info("start: online %.2f s after the start order", ev.t - self._ordered_at)
        elif isinstance(ev, P.Peer):
            self._peer = ev
            if ev.peer_id and self._binding_for is not None:
                threading.Thread(target=self._send_binding, args=(run, ev.peer_id, self._binding_for),
                                 daemon=True, name=f"farnode-binding-{self.node_id}").start()
        elif isinstance(ev, P.BindingAnnounced):
            if self._binding is None or self._binding.stored != ev.stored or self._binding.error != ev.error:
                if ev.stored:
                    self._logger.info("wallet binding announced in the DHT")
                else:
                    self._logger.warning("wallet binding not announced: %s", ev.error or "the DHT refused it")
            self._binding = ev
        elif isinstance(ev, P.Blocks):
            self._blocks = ev.blocks
            self._total_blocks = ev.total_blocks
        elif isinstance(ev, P.Throughput):
            self._throughput = ev
        elif isinstance(ev, P.Counters):
            for k, v in ev.deltas().items():
                run.counters[k] += v
        elif isinstance(ev, P.Failed):
            run.failure = ev
            self._logger.error("engine reported a failure: %s: %s", ev.category, ev.message)
        elif isinstance(ev, P.Reachability):
            if ev.direct is not None or self._reachability is None or self._reachability.direct is None:
                self._reachability = ev  # a definite answer is kept until the next definite one
            self.bus.publish(T.NODE_REACHABILITY, (self.node_id, self._reachability))

    def _send_binding(self, run: _Run, peer_id: str, binding_for: Callable[[str], tuple[str, str] | None]) -> None:
        """Sign the wallet binding for ``peer_id`` (the keyring: off the event reader) and hand it to the
        server on its control pipe."""
        try:
            signed = binding_for(peer_id)
        except Exception as exc:  # noqa: BLE001 - the node serves on; it is only not paid
            self._logger.warning("the wallet binding could not be signed: %s", exc)
            self._binding = P.BindingAnnounced(stored=False, error=f"not signed: {exc}")
            return
        if signed is None:
            return
        with run.stdin_lock:
            try:
                if run.proc.stdin is not None and not run.proc.stdin.closed and not run.stop_requested:
                    run.proc.stdin.write(P.binding_command(*signed))
                    run.proc.stdin.flush()
            except (OSError, ValueError):
                pass  # the launcher is gone: its exit is reported by the waiter

    def _read_log(self, run: _Run) -> None:
        with run.log_source:
            for raw in iter(run.log_source.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip()
                if not line:
                    continue
                self._logger.info(line)
                self.bus.publish(T.NODE_LOG, line)

    def _wait_exit(self, run: _Run) -> None:
        code = run.proc.wait()
        run.tree.kill(wait=False)  # nothing of this run outlives it (handlers, DHT, p2pd)
        with run.stdin_lock:
            try:
                run.proc.stdin.close()  # the control pipe: nobody reads it any more
            except OSError:  # its buffered bytes could not be written: nobody reads them either
                pass
        time.sleep(0.05)  # let the event reader drain the last lines
        with self._lock:
            if self._run is not run:
                return
            self._run = None
            self._remove_pid_file()
            if run.stop_requested or not self._want_running:
                self._set_state(C.STOPPED)
                self._emit_event("stop", "node stopped", exit_code=code)
                return
            category = run.failure.category if run.failure else ""
            detail = run.failure.message if run.failure else ""
            if not run.got_hello and code >= 0:  # it exited by itself before saying hello: no usable engine
                category, detail = P.Category.ENGINE_MISSING, f"the engine exited with code {code} before it started"
            if code in (P.ExitCode.CONFIG, P.ExitCode.START_FAILED) or category == P.Category.ENGINE_MISSING:
                self._fail(category or P.Category.CONFIG, detail)
                return
            # A crash: restart with back-off, or hold after too many.
            now = time.time()
            self._crashes.append(now)
            while self._crashes and now - self._crashes[0] > self.policy.window_s:
                self._crashes.popleft()
            n = len(self._crashes)
            why = failure_message(category or P.Category.CRASH, self._config, detail or f"exit code {code}", self.log_path)
            self._emit_event("crash", why, exit_code=code, crashes=n)
            unreachable = category == P.Category.BOOTSTRAP  # the network did not answer: not a crash
            minutes = f"{self.policy.window_s / 60:.0f} minutes"
            if n >= self.policy.max_crashes:
                self._want_running = False
                msg = (f"{why} Tried {n} times in {minutes}; press Start to try again." if unreachable else
                       f"The node crashed {n} times in {minutes} and is on hold. Last problem: {why} Press Start "
                       "to try again.")
                self._set_state(C.HELD, message=msg, category=category or P.Category.CRASH)
                self._emit_event("hold", msg)
                return
            delay = self.policy.delay(n)
            self._set_state(C.RESTARTING, message=f"{why} Trying again in {delay:.0f} s." if unreachable else
                            f"restarting in {delay:.0f} s after a crash: {why}", category=category or P.Category.CRASH)
            self._restart_timer = threading.Timer(delay, self._restart)
            self._restart_timer.daemon = True
            self._restart_timer.start()

    def _restart(self) -> None:
        with self._lock:
            self._restart_timer = None
            if not self._want_running or self._run is not None:
                return
            self._emit_event("restart", "restarting the node after a crash")
            self._ordered_at, self._timeline = time.time(), []
            self._spawn()

    def _ensure_ticker(self) -> None:
        if self._ticker and self._ticker.is_alive():
            return
        self._ticker_stop.clear()
        self._ticker = threading.Thread(target=self._tick_loop, daemon=True, name=f"node-{self.node_id}-stats")
        self._ticker.start()

    def _tick_loop(self) -> None:
        while not self._ticker_stop.wait(1.0):
            run = self._run
            if run is not None:
                self._rate_window.append((time.time(), run.counters["inference_tokens"],
                                          run.counters["forward_tokens"] + run.counters["backward_tokens"]))
            self.bus.publish(T.NODE_STATS, self.stats())
            if run is None and self._state.state in (C.STOPPED, C.FAILED, C.HELD):
                return

    # ------------------------------------------------------------------ helpers
    def set_state(self, state: str, *, message: str = "", category: str = "") -> None:
        """Publish a state the supervisor does not see itself (the controller's provisioning step)."""
        self._set_state(state, message=message, category=category)

    def _set_state(self, state: str, *, message: str = "", category: str = "") -> None:
        now = time.time()
        if state == C.ONLINE and self._state.state != C.ONLINE:
            self._online_since = now
        elif state != C.ONLINE:
            self._online_since = 0.0
        self._state = C.NodeState(self.node_id, state, message, category, now)
        self.bus.publish(T.NODE_STATE, self._state)

    def _emit_event(self, kind: str, message: str, **data) -> None:
        self.bus.publish(T.NODE_EVENT, C.NodeEvent(time.time(), self.node_id, kind, message, data))

    def _make_file_logger(self) -> logging.Logger:
        logger = logging.getLogger(f"farnode.node.{self.node_id}.{id(self)}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(self.log_path, maxBytes=5_000_000, backupCount=3,
                                                       encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        return logger

    def close(self) -> None:
        """Stop the node, end its standby and release the log file."""
        self.stop()
        self.drop_standby()
        self._ticker_stop.set()
        for h in list(self._logger.handlers):
            h.close()
            self._logger.removeHandler(h)

    def _write_pid_file(self, pid: int, engine_pid: int | None = None) -> None:
        tree = self._run.tree if self._run is not None else None
        info = {"pid": pid, "grouped": bool(tree and tree.grouped), "started": tree.started if tree else time.time(),
                "port": self._config.get("port"), "app_pid": os.getpid(), "app_started": process_tree.created_at(os.getpid()),
                "app_mark": process_tree.start_mark(os.getpid()), "runtime": self.runtime.name}
        if engine_pid is not None:
            info["engine_pid"] = int(engine_pid)
        atomic_write_json(self.pid_file, info)

    def _remove_pid_file(self) -> None:
        try:
            self.pid_file.unlink()
        except FileNotFoundError:
            pass

    def cleanup_leftovers(self) -> int:
        """Kill what an earlier, killed run of the app left behind (its pid file names the launcher's process
        tree). Only when the app that recorded it is dead: a live app (another process on this data folder, or
        this one) still owns its node. Returns how many processes were killed."""
        try:
            info = json.loads(self.pid_file.read_text())
            pid = int(info["pid"])
            tree = process_tree.ProcessTree(pid, grouped=bool(info.get("grouped", True)),
                                         started=float(info.get("started") or 0.0))
        except (OSError, ValueError, KeyError, TypeError):
            return 0
        if self._run is not None and self._run.proc.pid == pid:
            return 0
        if recorded_app_alive(info):
            log.warning("the node processes of launcher %d in %s belong to a running app (pid %s): left alone",
                        pid, self.pid_file, info.get("app_pid"))
            return 0
        import psutil

        victims = []
        for p in tree.members():
            try:
                cmd = " ".join(p.cmdline() or [])
            except psutil.Error:
                continue
            if p.pid != os.getpid() and ("farnode_desktop.engine" in cmd or "p2pd" in cmd or "python" in cmd):
                victims.append(p)
        if victims:
            log.warning("removing %d processes left by an earlier run (launcher %d)", len(victims), pid)
            tree.kill()
        inside = 0
        engine_pid = info.get("engine_pid")
        if isinstance(engine_pid, int) and info.get("runtime", self.runtime.name) == self.runtime.name:
            # WSL2: killing wsl.exe (above) leaves the Linux processes it started running (microsoft/WSL#2496)
            for cmd in self.runtime.leftover_commands(engine_pid):
                log.warning("ending what an earlier run left inside %s (launcher %d there)", self.runtime.name,
                            engine_pid)
                self._run_quietly(cmd)
                inside = 1
        self._remove_pid_file()
        return len(victims) + inside


def recorded_app_alive(info: dict) -> bool:
    """Whether the app that wrote a pid file (``app_pid``, ``app_mark``) still runs. A file without
    ``app_pid`` was written before apps recorded themselves: its app is taken as gone; one without
    ``app_mark`` (an older version) is checked by the wall-clock start time ``app_started``."""
    try:
        app_pid = int(info["app_pid"])
    except (KeyError, TypeError, ValueError):
        return False
    mark = info.get("app_mark")
    if isinstance(mark, str):
        return process_tree.started_as(app_pid, mark)
    started = process_tree.created_at(app_pid)
    if started is None:
        return False
    recorded = info.get("app_started")
    if isinstance(recorded, (int, float)) and abs(started - recorded) > 1.0:
        return False  # the pid was reused by another process
    return True
