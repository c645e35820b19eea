"""Runs the engine-side network probe (``engine/swarm_probe.py``) and publishes what it reads.

Reading the DHT needs hivemind, which lives only in the engine's environment: the probe runs there, through
the same runtime seam as the servers (native venv, WSL2 or Docker), and writes JSON lines; this module turns
them into :class:`~farnode_desktop.core.network.view.NetworkView` values on the bus (topic
:data:`TOPIC_VIEW`). One long-lived probe process reads every ``interval`` seconds (importing the engine
costs seconds); it is restarted only when the peers it joins through change.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from farnode_desktop.core import process_tree
from farnode_desktop.core import topics as T
from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.network.view import NetworkView, build_view
from farnode_desktop.engine.protocol import STOP_LINE

log = logging.getLogger(__name__)

TOPIC_VIEW = T.NETWORK_VIEW  # payload: NetworkView
TOPIC_ERROR = T.NETWORK_ERROR  # payload: str (what went wrong, what to do)
PROBE_MODULE = "farnode_desktop.engine.swarm_probe"


class NetworkProbeError(FarNodeError):
    title = "Network not readable"


_TREES: dict[int, process_tree.ProcessTree] = {}  # probe pid -> its process tree, until _end()


def _spawn(runtime, config: dict, log_path: Path) -> subprocess.Popen:
    spec = runtime.spawn_spec(PROBE_MODULE, [], {}, None, node_id="network-probe")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    kw = spec.popen_kwargs()
    logf = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed here once it started
    try:
        kw["stderr"] = logf
        proc, tree = process_tree.spawn(spec.argv, **kw)
    finally:
        logf.close()
    _TREES[proc.pid] = tree
    proc.stdin.write((json.dumps(config) + "\n").encode())
    proc.stdin.flush()
    return proc


def _end(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    try:
        proc.stdin.write(STOP_LINE)
        proc.stdin.close()
    except (OSError, ValueError):
        pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    tree = _TREES.pop(proc.pid, None)
    if tree is not None:
        tree.kill()  # its p2pd too
    elif proc.poll() is None:
        proc.kill()
    proc.wait()


def read_once(runtime, *, initial_peers: list[str], my_peers: set[str] | tuple[str, ...] = (),
              nat_traversal: bool = True, check: list[str] | None = None, timeout: float = 45.0,
              log_path: Path) -> NetworkView:
    """One reading of the network (blocking: the engine's import and the DHT's start take seconds).
    Raises :class:`NetworkProbeError` when none of the initial peers answers or the probe fails."""
    proc = _spawn(runtime, {"initial_peers": list(initial_peers), "interval": 0, "nat_traversal": nat_traversal,
                            "check": list(check or []), "timeout": min(timeout, 60)}, log_path)
    view: NetworkView | None = None
    failure = ""
    deadline = time.monotonic() + timeout + 60
    try:
        for raw in proc.stdout:
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            kind = ev.get("e")
            if kind == "network":
                view = build_view(ev, my_peers)
            elif kind in ("failed", "error"):
                failure = _failure_text(ev)
            if time.monotonic() > deadline:
                break
    finally:
        _end(proc)
        proc.stdout.close()  # by its reader, never while another thread reads it
    if view is None:
        raise NetworkProbeError(failure or f"The network probe ended without reading the network (see {log_path}).")
    return view


def _failure_text(ev: dict) -> str:
    if ev.get("category") == "bootstrap":
        tried = ", ".join(ev.get("tried") or []) or "none"
        return (f"None of the network's initial peers answered (tried: {tried}). Check the internet connection "
                "and the peer addresses in Settings > Network.")
    return f"Reading the network failed: {ev.get('message', '')[:300]}"


class NetworkMonitor:
    """Keeps one probe running while :meth:`watch` holds it on; publishes each reading on the bus.

    ``peers()`` returns the addresses to join through ([] for the engine's public bootstrap peers), or a
    sentence saying why there is nothing to read (the local swarm or a custom network without addresses:
    those never fall back to the public network); ``mine()``
    this node's server peer ids (highlighted, and called directly by the probe as any peer would)."""

    def __init__(self, bus: EventBus, runtime_factory: Callable[[], object], log_dir: Path, *,
                 peers: Callable[[], list[str]], mine: Callable[[], set[str]],
                 nat_traversal: Callable[[], bool] = lambda: True, interval_s: float = 10.0):
        self.bus = bus
        self.runtime_factory = runtime_factory
        self.log_path = Path(log_dir) / "network-probe.log"
        self.peers, self.mine, self.nat_traversal = peers, mine, nat_traversal
        self.interval_s = interval_s
        self.latest: NetworkView | None = None
        self.last_error = ""
        self._holders: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def watch(self, holder: str, on: bool) -> None:
        """``holder`` (the Network page, the online node ...) wants readings or no longer does."""
        with self._lock:
            (self._holders.add if on else self._holders.discard)(holder)
            want = bool(self._holders)
            if want and not self.running:
                self._stop.clear()
                self._thread = threading.Thread(target=self._loop, daemon=True, name="network-monitor")
                self._thread.start()
            elif not want and self.running:
                self._stop.set()
                proc = self._proc
                if proc is not None:
                    threading.Thread(target=_end, args=(proc,), daemon=True).start()

    def close(self) -> None:
        with self._lock:
            self._holders.clear()
            self._stop.set()
            proc, thread = self._proc, self._thread
        if proc is not None:
            _end(proc)
        if thread is not None:
            thread.join(15)

    def _loop(self) -> None:
        while not self._stop.is_set():
            found = self.peers()
            if isinstance(found, str):  # nothing to read the network through, and why (never the public one)
                if found != self.last_error:
                    self._error(found)
                self._stop.wait(2)
                continue
            peers = list(found)
            mine = set(self.mine())
            try:
                proc = _spawn(self.runtime_factory(), {
                    "initial_peers": peers, "interval": self.interval_s, "nat_traversal": self.nat_traversal(),
                    "check": sorted(mine), "timeout": 15}, self.log_path)
            except (OSError, FarNodeError) as exc:
                self._error(f"The network probe could not start ({getattr(exc, 'message', exc)}). Repair the "
                            "engine in Settings > Engine.")
                self._stop.wait(30)
                continue
            self._proc = proc
            restart = threading.Event()
            watcher = threading.Thread(target=self._watch_inputs, args=(peers, mine, restart, proc), daemon=True)
            watcher.start()
            readings = 0
            for raw in proc.stdout:
                try:
                    ev = json.loads(raw)
                except ValueError:
                    continue
                kind = ev.get("e")
                if kind == "network":
                    readings += 1
                    view = build_view(ev, self.mine())
                    self.latest, self.last_error = view, ""
                    self.bus.publish(TOPIC_VIEW, view)
                elif kind in ("failed", "error"):
                    self._error(_failure_text(ev))
            _end(proc)
            proc.stdout.close()  # by its reader, never while another thread reads it
            self._proc = None
            restart.set()
            if not self._stop.is_set():  # a probe that never read the network waits longer before the next try
                self._stop.wait(2 if readings else 15)

    def _watch_inputs(self, peers: list[str], mine: set[str], done: threading.Event,
                      proc: subprocess.Popen) -> None:
        """Restart the probe when the peers to join through or this node's servers change."""
        while not done.wait(2):
            now = self.peers()
            if isinstance(now, str) or set(now) != set(peers) or set(self.mine()) != mine:
                try:
                    proc.stdin.write(b"stop\n")
                    proc.stdin.flush()
                except (OSError, ValueError):
                    pass
                return

    def _error(self, text: str) -> None:
        self.last_error = text
        log.warning("network probe: %s", text)
        self.bus.publish(TOPIC_ERROR, text)
