"""The node without a window: the same :class:`AppCore` as the window (instance lock, policies, metrics,
earnings sync, the node), a live status line in the terminal or JSON Lines with ``--json``; Ctrl-C stops
it cleanly."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
import threading
import time
from typing import IO, Any

from farnode_desktop.core import snapshots as C
from farnode_desktop.core import topics as T
from farnode_desktop.core.app_core import AppCore
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.status import describe, stats_fields, uptime_text

HEARTBEAT_S = 60.0  # without a terminal, an unchanged status is repeated this often (seconds)
#: What ``--json`` writes: the node's states, stats, events and log lines, the policies' decisions, engine
#: set-up progress and earnings.
JSON_TOPICS = ("node.*", T.POLICY_DECISION, T.ENGINE_PROGRESS, T.EARNINGS_UPDATE)
STATE_WIDTH = 34  # the state column: "Online, serving blocks 10-23 of 80" fits


def status_line(stats: C.NodeStats, state: C.NodeState, traffic=None, *, colour: bool = False) -> str:
    """One line in plain words with aligned columns: state, tokens/s, tokens served, requests, uptime (and
    on the local swarm how many answers the demo client checked). Colour only when ``colour``."""
    words = describe(state, stats)
    if len(words) > STATE_WIDTH:
        words = words[:STATE_WIDTH - 1] + "…"
    cell = f"{words:<{STATE_WIDTH}}"
    if colour:
        code = C.state_info(state.state).ansi
        cell = f"\033[{code}m{cell}\033[0m"
    rate = stats.inference_tokens_per_s + stats.forward_tokens_per_s
    parts = [cell, f"{rate:8.1f} tok/s", f"served {stats.tokens_served:>9,} tok", f"{stats.requests:>6,} requests",
             f"up {uptime_text(stats.uptime_s)}"]
    if traffic is not None and traffic.requests:
        parts.append(f"checked {traffic.ok}/{traffic.requests} ok")
    line = "  ".join(parts)
    if state.message and state.state not in (C.ONLINE, C.PAUSED, C.LOADING):
        line += f"  ({state.message})"
    return line


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: dataclasses as objects, tuples as lists, non-finite floats as null
    (strict JSON has no NaN or Infinity), anything else unknown as its text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


class JsonLines:
    """JSON Lines on a text stream, from any thread: each object is one complete line, written by one
    ``write`` call under a lock, then flushed, so that lines of different threads never mix."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, obj: dict) -> None:
        line = json.dumps(jsonable(obj), separators=(",", ":"), allow_nan=False) + "\n"
        with self._lock:
            self._stream.write(line)
            self._stream.flush()

    def event(self, topic: str, payload: Any) -> None:
        # node.stats: with the totals a script wants, exactly as `status --json` gives them ("node")
        body = stats_fields(payload) if isinstance(payload, C.NodeStats) else jsonable(payload)
        self.write({"topic": topic, **(body if isinstance(body, dict) else {"value": body})})


def run_headless(duration: float = 0.0, traffic: bool = True, json_events: bool = False,
                 out: IO[str] | None = None) -> int:
    """Run the node until Ctrl-C/SIGTERM (or ``duration`` seconds). Raises
    :class:`~farnode_desktop.core.instance.AlreadyRunning` when this data folder is in use."""
    out = out or sys.stdout
    paths = AppPaths.default().ensure()
    core = AppCore(paths, face="headless")
    tty = out.isatty() and not json_events
    jl = JsonLines(out) if json_events else None
    # In --json mode stdout carries JSON Lines only; words go to stderr.
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if jl else (
        lambda text: print(text, file=out, flush=True))
    try:
        for w in core.settings_notes:
            print(f"warning: {w}", file=sys.stderr, flush=True)
        if not traffic:
            core.without_demo_traffic()
        if jl is not None:
            for topic in JSON_TOPICS:
                core.bus.subscribe(topic, jl.event)
        else:
            core.bus.subscribe(T.NODE_EVENT, lambda _t, ev: print(("\r\033[K" if tty else "") + f"* {ev.message}",
                                                                 file=out, flush=True))
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        where = "the local demo swarm (a private FarMesh network on this computer)" if core.is_local else \
            f"the FarMesh network ({core.settings.network.swarm})"
        say(f"FarNode node on {where}. Press Ctrl-C to stop.")

        def progress(p: C.EngineProgress) -> None:
            if jl is not None:
                jl.event(T.ENGINE_PROGRESS, p)
                return
            msg = f"[engine set-up {p.percent:5.1f}%] {p.step}"
            print(("\r\033[K" + msg) if tty else msg, end="" if tty and not p.done else "\n", file=out,
                  flush=True)

        core.start()
        start_errors: list[str] = []
        starter = threading.Thread(target=_start, args=(core, progress, start_errors), daemon=True,
                                   name="headless-start")
        starter.start()
        code = _loop(core, starter, start_errors, stop, duration, out, tty, quiet=jl is not None)
    finally:
        say("\nStopping ..." if tty else "Stopping ...")
        core.close()
        say("Stopped.")
    return code


def _loop(core: AppCore, starter: threading.Thread, start_errors: list[str], stop: threading.Event,
          duration: float, out: IO[str], tty: bool, quiet: bool) -> int:
    t_end = time.time() + duration if duration else None
    last_key: tuple = ()
    last_print = 0.0
    while not stop.wait(1.0):
        if t_end and time.time() >= t_end:
            return 0
        st = core.state
        if not quiet:
            stats = core.stats()
            tstats = core.traffic_stats()
            line = status_line(stats, st, tstats, colour=tty and _colour_ok())
            if tty:
                print("\r\033[K" + line, end="", file=out, flush=True)
            elif st.state != C.PROVISIONING:
                # A log file gets a line when something counted changes (not the uptime or the decaying
                # rate), and a heartbeat once a minute.
                key = (st.state, st.message, tuple(stats.blocks), stats.tokens_served, stats.requests,
                       (tstats.ok, tstats.requests) if tstats is not None else None)
                if key != last_key or time.monotonic() - last_print >= HEARTBEAT_S:
                    print(line, file=out, flush=True)
                    last_key, last_print = key, time.monotonic()
        if st.state in (C.FAILED, C.HELD) and not starter.is_alive():
            # a node that cannot start ends with one plain line and a non-zero exit (a service manager sees it)
            print(("\n" if tty else "") + f"The node could not start: {st.message}", file=sys.stderr, flush=True)
            return 1
        if st.state == C.STOPPED and not starter.is_alive() and start_errors:
            print(("\n" if tty else "") + f"The node could not start: {start_errors[0]}", file=sys.stderr,
                  flush=True)
            return 1
    return 0


def _start(core: AppCore, progress, errors: list[str]) -> None:
    try:
        core.start_node(progress)
    except Exception as exc:  # noqa: BLE001 - the loop ends the node with it (FAILED state, or this)
        errors.append(getattr(exc, "message", None) or str(exc) or type(exc).__name__)


def _colour_ok() -> bool:
    import os

    return not os.environ.get("NO_COLOR") and os.environ.get("TERM", "") != "dumb"
