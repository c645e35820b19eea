"""A fast stand-in for the engine's launcher: a real process that speaks the launcher's protocol.

Run by the supervisor through the native runtime (``python -m tests.core.node.fake_launcher --event-fd N``) with
the standard library only. It uses the engine side's own channel (control pipe, signals, event writer), so it
starts, reports and stops the way the launcher does, in a fraction of a second instead of 20 s. What it does
comes from its configuration (the first line of standard input, as for the launcher):

- ``online_after_s``: seconds between ``starting`` and ``online`` (default 0.05);
- ``crash_after_s``: once online, exit with code 1 (a crash) after this many seconds;
- ``fail``: a failure category to report at start, then exit with code 3 (a start failure);
- ``children``: how many helper processes to start in its group (like the server's DHT and p2pd), which it
  leaves running when it crashes, so the supervisor must remove them.

A ``binding`` command on its control pipe is parsed as the launcher parses it; the fake logs what it got
(``fake launcher: binding for <peer id> signed <signature>``) and reports it stored, as the DHT would.

It reports its start's phases with the launcher's own clock (engine/launcher.py's StartClock), and with
``--standby`` it "imports" (0.3 s) before it reads its configuration, and exits quietly when its control pipe
closes first, as the launcher's warm standby does.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading

from farnode_desktop.engine import protocol as P
from farnode_desktop.engine.channel import ControlPipe, EventWriter
from farnode_desktop.engine.launcher import StartClock

STANDBY_IMPORT_S = 0.3


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--event-fd", type=int, required=True)
    ap.add_argument("--standby", action="store_true")
    args = ap.parse_args()
    fd = args.event_fd
    if fd == 1:
        fd = os.dup(1)
        os.dup2(2, 1)
    w = EventWriter(fd)
    clock = StartClock(w, ahead=args.standby)
    clock.mark(P.StartPhase.PROCESS)
    control = ControlPipe.from_stdin(w)
    if args.standby:
        threading.Event().wait(STANDBY_IMPORT_S)
        clock.mark(P.StartPhase.IMPORTS)
    config = control.read_config()
    if config is None and args.standby:
        return P.ExitCode.OK
    clock.order_received()
    if config is None:
        w.send(P.Failed(category=P.Category.CONFIG, message="no configuration"))
        return P.ExitCode.CONFIG
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    control.watch_signals()
    control.on_command = lambda name, payload: _binding(w, name, payload)
    control.start(lambda _why: stop.set())
    w.send(P.Hello(pid=os.getpid(), python=sys.version.split()[0]))
    w.send(P.State(state=P.ServerState.STARTING))
    if config.get("fail"):
        w.send(P.Failed(category=config["fail"], message=f"fake failure: {config['fail']}"))
        return P.ExitCode.START_FAILED
    if not args.standby:
        clock.mark(P.StartPhase.IMPORTS)
    children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
                for _ in range(int(config.get("children", 0)))]
    for phase in (P.StartPhase.ENGINE_SETUP, P.StartPhase.DHT_JOIN, P.StartPhase.THROUGHPUT,
                  P.StartPhase.BLOCK_CHOICE):
        clock.mark(phase)
    if stop.wait(float(config.get("online_after_s", 0.05))):
        return _stopped(w, children)
    clock.mark(P.StartPhase.MODEL_LOAD)
    w.send(P.Peer(peer_id="12D3KooWFake", addrs=(f"/ip4/127.0.0.1/tcp/{config.get('port', 0)}/p2p/12D3KooWFake",)))
    w.send(P.Blocks(blocks=(0, 1), total_blocks=2, dht_prefix="fake"))
    clock.mark(P.StartPhase.ANNOUNCE)
    w.send(P.State(state=P.ServerState.ONLINE))
    w.send(P.Counters(pid=os.getpid(), inference_sessions=1, inference_steps=2, inference_tokens=7))
    crash_after = config.get("crash_after_s")
    if stop.wait(float(crash_after) if crash_after is not None else None):
        return _stopped(w, children)
    print("fake launcher: crashing on purpose", file=sys.stderr, flush=True)
    os._exit(P.ExitCode.CRASH)  # like a crash: its children are left behind


def _binding(w: EventWriter, name: str, payload: str) -> None:
    if name != P.BINDING_COMMAND:
        return
    got = P.parse_binding_command(payload)
    if got is None:
        w.send(P.BindingAnnounced(stored=False, error="the app sent a malformed binding"))
        return
    peer = next((line.split(": ", 1)[1] for line in got[0].splitlines() if line.startswith("Peer ID: ")), "?")
    print(f"fake launcher: binding for {peer} signed {got[1]}", file=sys.stderr, flush=True)
    w.send(P.BindingAnnounced(stored=True))


def _stopped(w: EventWriter, children: list[subprocess.Popen]) -> int:
    w.send(P.State(state=P.ServerState.STOPPING))
    for c in children:
        c.kill()
        c.wait()
    w.send(P.State(state=P.ServerState.STOPPED))
    w.send(P.Exit(code=P.ExitCode.OK))
    return P.ExitCode.OK


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(int(code))
