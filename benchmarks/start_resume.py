"""How long a start and a resume take until the node is online, against the bare engine's own start (issue 22).

The app's core (NodeController, as the headless mode drives it) serves the demo model on the local swarm:
- Start -> Online: ``start()`` (the app's checks and plan, then the launcher) until the server is online, then a
  user stop; ``--rounds`` times;
- Pause -> Resume -> Online: from online, ``pause()`` (the server stops; with the warm standby on, a launcher for
  the resume starts and imports the engine), ``--pause-s`` seconds of pause (a game is longer), then
  ``resume()`` until online; ``--rounds`` times;
- the bare engine: FarMesh's own ``run_server`` with the same model and arguments, started as a plain process
  until its runtime says ``Started`` (benchmarks/engine_overhead.py's BareServer), ``--rounds`` times.

Prints each round, then the medians with min-max, the ratios to the bare engine's start, and the median time of
each phase of a start and of a resume (the timeline the app records: ``status --json``'s ``start_timeline``).
Every mode reads the same cached throughput measurement (a warm-up start makes it). ``--no-standby`` measures
the resume without the warm standby (the app before it had one); ``--compare`` runs each resume round without
it, then with it, so that both are measured under the same load.

Usage: python benchmarks/start_resume.py [--rounds 5] [--pause-s 20] [--no-standby | --compare] [--no-bare]
(FARNODE_ENGINE_ROOT may point at a ready engine environment; otherwise the default one is used/set up.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_overhead import BareServer  # noqa: E402

from farnode_desktop.core import snapshots as C  # noqa: E402
from farnode_desktop.core.events import EventBus  # noqa: E402
from farnode_desktop.core.node.controller import NodeController  # noqa: E402
from farnode_desktop.core.paths import AppPaths  # noqa: E402
from farnode_desktop.core.ports import free_loopback_port as free_port  # noqa: E402
from farnode_desktop.core.settings import Settings  # noqa: E402

ONLINE_TIMEOUT_S = 300


def wait_online(node: NodeController, t0: float) -> float:
    st = node.supervisor.wait_for({C.ONLINE, C.FAILED, C.HELD}, ONLINE_TIMEOUT_S)
    if st.state != C.ONLINE:
        raise SystemExit(f"the node did not come online: {st}")
    return time.perf_counter() - t0


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} s  (min {min(values):.2f}, max {max(values):.2f})"


def phase_medians(timelines: list[list[dict]]) -> list[tuple[str, float, bool]]:
    """The median seconds of each phase over the rounds (phases in their order of the first round)."""
    order = [(p["phase"], bool(p.get("ahead"))) for p in timelines[0]]
    out = []
    for name, ahead in order:
        values = [sum(p["seconds"] for p in tl if p["phase"] == name and bool(p.get("ahead")) == ahead)
                  for tl in timelines]
        out.append((name, statistics.median(values), ahead))
    return out


def print_timeline(title: str, timelines: list[list[dict]]) -> None:
    print(f"\n{title} (median seconds per phase over {len(timelines)} rounds):")
    for name, seconds, ahead in phase_medians(timelines):
        print(f"  {name:14}{seconds:7.2f} s" + ("   (ahead: done by the standby during the pause)" if ahead else ""))


def stop_bare(server: BareServer) -> None:
    """SIGINT (the engine's clean stop), then the process group, as the app stops its servers."""
    import signal
    import subprocess

    server.proc.send_signal(signal.SIGINT)
    try:
        server.proc.wait(10)
    except subprocess.TimeoutExpired:
        print("  (the bare server did not stop within 10 s of SIGINT: its process group is killed)", flush=True)
    try:
        os.killpg(server.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pause-s", type=float, default=20.0, help="how long each pause lasts before the resume")
    ap.add_argument("--no-standby", action="store_true", help="resume without the warm standby launcher")
    ap.add_argument("--compare", action="store_true",
                    help="each resume round twice: without the standby (the app before it), then with it")
    ap.add_argument("--no-bare", action="store_true", help="skip the bare engine's starts")
    ap.add_argument("--timeline-json", help="also write every round's timeline to this file")
    args = ap.parse_args()
    os.environ["FARNODE_HOME"] = tempfile.mkdtemp(prefix="farnode-bench-")
    paths = AppPaths.default().ensure()
    settings = Settings()
    settings.network.port = free_port()
    bus = EventBus()
    node = NodeController(paths, bus, settings=settings)
    node.demo_traffic = False  # the figures are the server's; demo traffic would only load the CPUs
    node.warm_standby = not args.no_standby
    starts: list[float] = []
    resumes: list[float] = []
    bare: list[float] = []
    start_tl: list[list[dict]] = []
    resume_tl: list[list[dict]] = []
    cold: list[float] = []  # --compare: the resumes without the standby
    cold_tl: list[list[dict]] = []
    try:
        t0 = time.perf_counter()
        node.start()  # warm-up: the engine's check, the demo model, the throughput measurement (cached)
        print(f"warm-up start: online after {wait_online(node, t0):.2f} s "
              f"({node.engine.status().probe.summary if node.engine.status().probe else 'engine'})", flush=True)
        node.stop()

        for r in range(args.rounds):
            t0 = time.perf_counter()
            node.start()
            starts.append(wait_online(node, t0))
            start_tl.append(node.supervisor.timeline)
            print(f"start  {r + 1}: online after {starts[-1]:6.2f} s", flush=True)
            if r < args.rounds - 1:
                node.stop()

        for r in range(args.rounds):  # the node is online (the last start round)
            for standby in ((False, True) if args.compare else (not args.no_standby,)):
                node.warm_standby = standby
                node.pause("benchmark pause")
                time.sleep(args.pause_s)
                t0 = time.perf_counter()
                node.resume()
                took = wait_online(node, t0)
                (resumes if standby or not args.compare else cold).append(took)
                (resume_tl if standby or not args.compare else cold_tl).append(node.supervisor.timeline)
                print(f"resume {r + 1}: online after {took:6.2f} s (standby {'on' if standby else 'off'})",
                      flush=True)
        node.stop()

        if not args.no_bare:
            cfg = node.supervisor.config  # exactly what the app's last start ran with
            cfg["identity_path"] = str(paths.run_dir / "bare.key")
            for r in range(args.rounds):
                cfg["port"] = free_port()
                server = BareServer(node.engine, cfg)
                if not server.started.wait(ONLINE_TIMEOUT_S):
                    raise SystemExit("the bare server did not start")
                bare.append(server.online_s)
                stop_bare(server)
                print(f"bare   {r + 1}: online after {bare[-1]:6.2f} s", flush=True)
    finally:
        node.close()

    mode = "off and on, alternating" if args.compare else ("off" if args.no_standby else "on")
    print(f"\nmedians of {args.rounds} rounds on {os.cpu_count()} CPUs, demo model, warm standby {mode}, "
          f"pause {args.pause_s:.0f} s:")
    print(f"  Start -> Online            {summary(starts)}")
    if cold:
        print(f"  Pause -> Resume -> Online  {summary(cold)}   without the standby")
    print(f"  Pause -> Resume -> Online  {summary(resumes)}" + ("   with the standby" if cold else ""))
    if bare:
        b = statistics.median(bare)
        print(f"  bare engine start          {summary(bare)}")
        print(f"  ratio start/bare  {statistics.median(starts) / b:.2f}")
        if cold:
            print(f"  ratio resume/bare {statistics.median(cold) / b:.2f} without the standby")
        print(f"  ratio resume/bare {statistics.median(resumes) / b:.2f}")
    print_timeline("Start timeline", start_tl)
    if cold_tl:
        print_timeline("Resume timeline without the standby", cold_tl)
    print_timeline("Resume timeline", resume_tl)
    if args.timeline_json:
        import json

        Path(args.timeline_json).write_text(json.dumps({"start": start_tl, "resume": resume_tl,
                                                        "resume_without_standby": cold_tl}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
