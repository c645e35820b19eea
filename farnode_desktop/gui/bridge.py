"""The Qt side of the core: bus events as Qt signals, and a task runner for blocking core calls.

:class:`BusBridge` subscribes to the core's :class:`~farnode_desktop.core.events.EventBus` and re-emits each
event as a signal; since the bridge lives on the GUI thread and the publishers run on worker threads, Qt
queues the delivery, so every slot runs on the GUI thread.

:class:`TaskRunner` runs callables on a ``QThreadPool`` and hands results and errors back through signals
(Electrum's ``add(task, on_success, on_error)``). Unhandled errors go to :func:`errors.show_error`.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from farnode_desktop.core import topics as T
from farnode_desktop.core.events import EventBus, Subscription

log = logging.getLogger(__name__)

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


class _Signals(QObject):
    done = Signal(object)
    failed = Signal(object, str)  # exception, formatted traceback


class _Task(QRunnable):
    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__()
        self.fn = fn
        self.signals = _Signals()
        self.setAutoDelete(False)  # the runner keeps it until its signal was delivered

    def run(self) -> None:
        try:
            result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the GUI thread, never swallowed
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            try:
                self.signals.failed.emit(exc, tb)
            except RuntimeError:
                pass
            return
        try:
            self.signals.done.emit(result)
        except RuntimeError:
            pass


class TaskRunner(QObject):
    """Runs blocking callables off the GUI thread. ``on_done``/``on_error`` run on the GUI thread;
    without ``on_error`` an error is shown to the user (title + message, or a report dialog)."""

    def __init__(self, parent: QObject | None = None, *, threads: int = 4,
                 default_error: Callable[[BaseException, str], None] | None = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self._tasks: set[_Task] = set()
        self.default_error = default_error

    def run(self, fn: Callable[[], Any], on_done: Callable[[Any], None] | None = None,
               on_error: Callable[[BaseException, str], None] | None = None) -> None:
        task = _Task(fn)
        self._tasks.add(task)

        def finished(result: Any) -> None:
            self._tasks.discard(task)
            if on_done is not None:
                on_done(result)

        def failed(exc: BaseException, tb: str) -> None:
            self._tasks.discard(task)
            handler = on_error or self.default_error
            if handler is None:
                log.error("background task failed:\n%s", tb)
            else:
                handler(exc, tb)

        task.signals.done.connect(finished)
        task.signals.failed.connect(failed)
        self.pool.start(task)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Wait for running tasks (tests, quit). True when all finished."""
        return self.pool.waitForDone(timeout_ms)
