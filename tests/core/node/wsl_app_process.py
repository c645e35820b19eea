"""The app's process on the Windows path, for tests: the core (AppCore, headless) with the platform seam set to
Windows (FARNODE_PLATFORM=win32, the engine runtime ``auto`` so WSL2, over the stand-in wsl.exe named by
FARNODE_WSL_EXE), on the local swarm with demo traffic. It prints one JSON line per step on stdout and takes
commands on stdin: ``pause``, ``resume``, ``stop``, ``start``, ``quit`` (the tray's Quit). Killed, it leaves what a killed app
leaves."""

import json
import sys
import time

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.app_core import AppCore
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.node.controller import NodeController
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.settings import Settings


def say(**kw) -> None:
    print(json.dumps(kw), flush=True)


def online(core: AppCore, timeout: float = 300) -> bool:
    state = core.node.supervisor.wait_for({C.ONLINE, C.FAILED, C.HELD}, timeout)
    if state.state != C.ONLINE:
        say(error=state.message, state=state.state)
        return False
    run = core.node.supervisor._run
    say(online=True, runtime=core.node.supervisor.runtime.name, host_pid=core.node.supervisor.pid,
        engine_pid=run.engine_pid if run else None)
    return True


def traffic(core: AppCore, n: int, before=None) -> None:
    """Wait for ``n`` checked requests of the demo client (a new one when ``before``, the last one's stats)."""
    gen = core.node.traffic
    deadline = time.time() + 180
    while time.time() < deadline and (gen._stats is before or gen._stats.requests < n):
        time.sleep(0.2)
    s = gen.stats
    say(traffic={"requests": s.requests, "ok": s.ok, "mismatches": s.mismatches, "errors": s.errors})


settings = Settings()
settings.network.port = int(sys.argv[1])
settings.network.demo_traffic_per_minute = 60
paths = AppPaths.default().ensure()
bus = EventBus()
progress: list[str] = []
core = AppCore(paths, face="headless", bus=bus, node=NodeController(paths, bus, settings=settings))
core.start()
say(started=True, runtime=core.node.supervisor.runtime.name, data=str(paths.data_dir))
try:
    core.start_node(lambda p: progress.append(p.step))
except Exception as exc:  # noqa: BLE001 - reported to the test, which reads the message
    say(error=getattr(exc, "message", str(exc)), progress=progress)
    core.close()
    sys.exit(1)
say(progress=progress)
if not online(core):
    core.close()
    sys.exit(1)
traffic(core, 2)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "pause":
        core.pause_for(None)
        core.node.supervisor.wait_for({C.STOPPED}, 60)
        deadline = time.time() + 30
        while core.node.state.state != C.PAUSED and time.time() < deadline:
            time.sleep(0.1)
        say(paused=core.node.state.state)
    elif cmd == "resume":
        before = core.node.traffic._stats
        core.resume_now()
        if online(core):
            traffic(core, 1, before)  # a new client: its counts start again
    elif cmd == "stop":
        say(stopped=core.stop_node().state)
    elif cmd == "start":
        core.start_node()
        if online(core):
            traffic(core, 1)
    elif cmd == "quit":
        core.close()
        say(quit=core.node.state.state)
        break
