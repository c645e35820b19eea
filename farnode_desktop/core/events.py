"""A small, thread-safe, Qt-free event bus.

The core publishes on named topics (``node.state``, ``node.stats``, ``gpu.telemetry``, ...). Subscribers are
called synchronously on the publisher's thread; the GUI's adapter re-emits each event as a Qt signal so it
is handled on the GUI thread. A subscriber that raises is logged and never breaks the publisher.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[str, Any], None]


@dataclass(frozen=True)
class Subscription:
    bus: EventBus
    topic: str
    handler: Handler

    def close(self) -> None:
        self.bus.unsubscribe(self)


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: dict[str, tuple[Handler, ...]] = {}

    def subscribe(self, topic: str, handler: Handler) -> Subscription:
        """Call ``handler(topic, payload)`` for events on ``topic``; a topic ending in ``.*`` or ``*``
        alone matches by prefix."""
        with self._lock:
            self._subs[topic] = self._subs.get(topic, ()) + (handler,)
        return Subscription(self, topic, handler)

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            handlers = tuple(h for h in self._subs.get(sub.topic, ()) if h is not sub.handler)
            if handlers:
                self._subs[sub.topic] = handlers
            else:
                self._subs.pop(sub.topic, None)

    def _handlers_for(self, topic: str) -> list[Handler]:
        with self._lock:
            items = list(self._subs.items())
        out: list[Handler] = []
        for pattern, handlers in items:
            if pattern == topic or pattern == "*" or (
                pattern.endswith(".*") and topic.startswith(pattern[:-1])
            ):
                out.extend(handlers)
        return out

    def publish(self, topic: str, payload: Any = None) -> None:
        for handler in self._handlers_for(topic):
            try:
                handler(topic, payload)
            except Exception:  # a broken subscriber must not break the publisher
                log.exception("event handler for %s failed", topic)
