from __future__ import annotations

import threading

from farnode_desktop.core.events import EventBus


def test_topics_prefixes_and_unsubscribe():
    bus = EventBus()
    got = []
    a = bus.subscribe("node.state", lambda t, p: got.append(("a", t, p)))
    bus.subscribe("node.*", lambda t, p: got.append(("b", t, p)))
    bus.subscribe("*", lambda t, p: got.append(("c", t, p)))
    bus.publish("node.state", 1)
    bus.publish("gpu.telemetry", 2)
    a.close()
    bus.publish("node.state", 3)
    assert got == [("a", "node.state", 1), ("b", "node.state", 1), ("c", "node.state", 1),
                   ("c", "gpu.telemetry", 2), ("b", "node.state", 3), ("c", "node.state", 3)]


def test_a_failing_subscriber_does_not_break_the_publisher(caplog):
    bus = EventBus()
    got = []
    bus.subscribe("x", lambda t, p: 1 / 0)
    bus.subscribe("x", lambda t, p: got.append(p))
    bus.publish("x", 5)
    assert got == [5] and "event handler for x failed" in caplog.text


def test_publish_from_many_threads():
    bus = EventBus()
    count = [0]
    lock = threading.Lock()

    def inc(_t, _p):
        with lock:
            count[0] += 1

    bus.subscribe("t", inc)
    threads = [threading.Thread(target=lambda: [bus.publish("t") for _ in range(500)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count[0] == 2000
