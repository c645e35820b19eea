"""The Qt side of the core: bus events as Qt signals, and a task runner for blocking core calls.

:class:`BusBridge` subscribes to the core's :class:`~farnode_desktop.core.events.EventBus` and re-emits each
event as a signal; since the bridge lives on the GUI thread and the publishers run on worker threads, Qt
queues the delivery, so every slot runs on the GUI thread.

:class:`TaskRunner` runs callables on a few worker threads and hands results and errors back through signals
(Electrum's ``add(task, on_success, on_error)``). Unhandled errors go to :func:`errors.show_error`.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from farnode_desktop.core import topics as T
from farnode_desktop.core.events import EventBus, Subscription

log = logging.getLogger(__name__)
_RUNNERS = itertools.count(1)  # names each runner's threads apart

TOPICS = (T.NODE_OVERALL_STATE, T.NODE_OVERALL_STATS, T.NODE_EVENT, T.NODE_LOG, T.GPU_TELEMETRY,
          T.ENGINE_PROGRESS, T.POLICY_DECISION, T.EARNINGS_UPDATE, T.NETWORK_VIEW, T.NETWORK_ERROR,
          T.REACHABILITY_STATUS)


class BusBridge(QObject):
    """One signal per topic the GUI uses, plus ``event(topic, payload)`` for all of them."""

    event = Signal(str, object)
    state = Signal(object)  # NodeState: the node as a whole (topics.NODE_OVERALL_STATE)
    stats = Signal(object)  # NodeStats: summed over every server (topics.NODE_OVERALL_STATS)
    node_event = Signal(object)  # NodeEvent
    log_line = Signal(str)
    telemetry = Signal(object)  # tuple[GpuTelemetry, ...]
    progress = Signal(object)  # EngineProgress
    decision = Signal(object)  # policies.Decision
    earnings = Signal(object)  # EarningsSnapshot
    network = Signal(object)  # NetworkView
    network_error = Signal(str)
    reachability = Signal(object)  # dict node_id -> ReachabilityStatus

    def __init__(self, bus: EventBus, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._map = {T.NODE_OVERALL_STATE: self.state, T.NODE_OVERALL_STATS: self.stats,
                     T.NODE_EVENT: self.node_event, T.NODE_LOG: self.log_line, T.GPU_TELEMETRY: self.telemetry,
                     T.ENGINE_PROGRESS: self.progress, T.POLICY_DECISION: self.decision,
                     T.EARNINGS_UPDATE: self.earnings, T.NETWORK_VIEW: self.network,
                     T.NETWORK_ERROR: self.network_error, T.REACHABILITY_STATUS: self.reachability}
        self._subs: list[Subscription] = [bus.subscribe(t, self._relay) for t in TOPICS]

    def _relay(self, topic: str, payload: Any) -> None:  # runs on the publisher's thread
        try:
            sig = self._map.get(topic)
            if sig is not None:
                sig.emit(payload if topic not in (T.NODE_LOG, T.NETWORK_ERROR) else str(payload))
            self.event.emit(topic, payload)
        except RuntimeError:  # the bridge was deleted while a worker still published
            pass

    def close(self) -> None:
        for s in self._subs:
            s.close()
        self._subs.clear()


class TaskRunner(QObject):
    """Runs blocking callables off the GUI thread. ``on_done``/``on_error`` run on the GUI thread;
    without ``on_error`` an error is shown to the user (title + message, or a report dialog).

    One pair of signals carries every result (a task is a number and its two callbacks until its result
    is delivered): a Qt object per task, with the task's callbacks connected to it, was kept alive by the
    connection for the app's life, ~4.4 kB a task, and the dashboard alone runs two tasks every 5 s. The tasks run
    on a thread pool like the core's own (its threads are started as work comes and kept: a steady count)."""

    _done = Signal(int, object)
    _failed = Signal(int, object, str)  # task, exception, formatted traceback

    def __init__(self, parent: QObject | None = None, *, threads: int = 4,
                 default_error: Callable[[BaseException, str], None] | None = None) -> None:
        super().__init__(parent)
        self._prefix = f"farnode-task-{next(_RUNNERS)}"
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix=self._prefix)
        self._running: set[concurrent.futures.Future] = set()
        self._callbacks: dict[int, tuple[Callable[[Any], None] | None, Callable[[BaseException, str], None] | None]] = {}
        self._ids = itertools.count(1)
        self.default_error = default_error
        self._done.connect(self._deliver_done)
        self._failed.connect(self._deliver_failed)

    def run(self, fn: Callable[[], Any], on_done: Callable[[Any], None] | None = None,
            on_error: Callable[[BaseException, str], None] | None = None) -> None:
        task = next(self._ids)
        self._callbacks[task] = (on_done, on_error)
        try:
            future = self._pool.submit(self._work, task, fn)
        except RuntimeError:  # the app has quit: nothing is run any more
            del self._callbacks[task]
            log.info("a task given after the app quit was not run: %r", fn)
            return
        self._running.add(future)
        future.add_done_callback(self._running.discard)

    def _work(self, task: int, fn: Callable[[], Any]) -> None:  # on a worker thread
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the GUI thread, never swallowed
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            try:
                self._failed.emit(task, exc, tb)
            except RuntimeError:  # the runner was deleted meanwhile
                pass
            return
        try:
            self._done.emit(task, result)
        except RuntimeError:
            pass

    def _deliver_done(self, task: int, result: Any) -> None:
        on_done, _on_error = self._callbacks.pop(task, (None, None))
        if on_done is not None:
            on_done(result)

    def _deliver_failed(self, task: int, exc: BaseException, tb: str) -> None:
        _on_done, on_error = self._callbacks.pop(task, (None, None))
        handler = on_error or self.default_error
        if handler is None:
            log.error("background task failed:\n%s", tb)
        else:
            handler(exc, tb)

    @property
    def pending(self) -> int:
        """Tasks whose result has not been delivered yet (running, or waiting in the GUI thread's queue)."""
        return len(self._callbacks)

    @property
    def running(self) -> int:
        """Tasks still running on a worker thread (or waiting for one)."""
        return len(self._running)

    @property
    def threads(self) -> list[threading.Thread]:
        """The runner's worker threads that are alive."""
        return [t for t in threading.enumerate() if t.name.startswith(self._prefix + "_")]

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Wait for running tasks (tests, quit). True when all finished."""
        _done, not_done = concurrent.futures.wait(list(self._running), timeout=timeout_ms / 1000)
        return not not_done

    def close(self) -> None:
        """No new tasks; the worker threads end after the tasks already given."""
        self._pool.shutdown(wait=False)
