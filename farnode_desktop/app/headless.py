"""The node without a window: a live status line in the terminal; Ctrl-C stops it cleanly."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.node.controller import NodeController
from farnode_desktop.core.paths import AppPaths


def _fmt_uptime(s: float) -> str:
    s = int(s)
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


HEARTBEAT_S = 60.0  # without a terminal, an unchanged status is repeated this often (seconds)


def status_line(stats: C.NodeStats, state: C.NodeState, traffic=None) -> str:
    blocks = f"{stats.blocks[0]}-{stats.blocks[-1]} of {stats.total_blocks}" if stats.blocks else "-"
    parts = [
        f"{state.state.upper():<13}",
        f"blocks {blocks}",
        f"{stats.inference_tokens_per_s + stats.forward_tokens_per_s:7.1f} tok/s",
        f"served {stats.tokens_served} tok",
        f"requests {stats.requests}",
        f"up {_fmt_uptime(stats.uptime_s)}",
    ]
    if traffic is not None and traffic.requests:
        parts.append(f"checked {traffic.ok}/{traffic.requests} ok")
    line = " | ".join(parts)
    if state.message and state.state not in (C.ONLINE,):
        line += f" | {state.message}"
    return line


def run_headless(duration: float = 0.0, traffic: bool = True, json_events: bool = False) -> int:
    paths = AppPaths.default().ensure()
    bus = EventBus()
    node = NodeController(paths, bus)
    for w in node.settings_warnings:
        print(f"warning: {w}", file=sys.stderr)
    if not traffic:
        node.settings.network.demo_traffic_per_minute = 0
    tty = sys.stdout.isatty()
    if json_events:
        def dump(topic, payload):
            body = payload.__dict__ if hasattr(payload, "__dict__") else payload
            print(json.dumps({"topic": topic, **(body if isinstance(body, dict) else {"value": body})},
                             default=str), flush=True)
        bus.subscribe("node.*", dump)
    else:
        bus.subscribe("node.event", lambda _t, ev: print(("\r\033[K" if tty else "") + f"* {ev.message}",
                                                         flush=True))
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    where = "the local demo swarm (a private FarMesh network on this computer)" if node.is_local else \
        f"the FarMesh network ({node.settings.network.swarm})"
    print(f"FarNode node on {where}. Press Ctrl-C to stop.", flush=True)

    def progress(p: C.EngineProgress) -> None:
        msg = f"[engine set-up {p.percent:5.1f}%] {p.step}"
        print(("\r\033[K" + msg) if tty else msg, end="" if tty and not p.done else "\n", flush=True)

    starter = threading.Thread(target=lambda: _start(node, progress), daemon=True)
    starter.start()
    t_end = time.time() + duration if duration else None
    code = 0
    last_key: tuple = ()
    last_print = 0.0
    try:
        while not stop.wait(1.0):
            if t_end and time.time() >= t_end:
                break
            st = node.state
            if not json_events:
                stats = node.stats()
                tstats = node.traffic.stats if node.is_local else None
                line = status_line(stats, st, tstats)
                if tty:
                    print("\r\033[K" + line, end="", flush=True)
                elif st.state != C.PROVISIONING:
                    # A log file gets a line when something counted changes (not the uptime or the decaying
                    # rate), and a heartbeat once a minute.
                    key = (st.state, st.message, tuple(stats.blocks), stats.tokens_served, stats.requests,
                           (tstats.ok, tstats.requests) if tstats is not None else None)
                    if key != last_key or time.monotonic() - last_print >= HEARTBEAT_S:
                        print(line, flush=True)
                        last_key, last_print = key, time.monotonic()
            if st.state in (C.FAILED, C.HELD) and not starter.is_alive():
                print(f"\n{st.message}", file=sys.stderr)
                code = 1
                break
    finally:
        print("\nStopping ..." if tty else "Stopping ...", flush=True)
        node.stop()
        node.close()
        print("Stopped.", flush=True)
    return code


def _start(node: NodeController, progress) -> None:
    try:
        node.start(progress)
    except Exception as exc:  # shown through the FAILED state
        print(f"\n{getattr(exc, 'title', 'Error')}: {getattr(exc, 'message', exc)}", file=sys.stderr, flush=True)
