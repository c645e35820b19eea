"""What running the server through FarNode costs, against FarMesh's own ``run_server`` started bare.

Same engine environment, same demo model, same arguments, same client load (a real FarMesh client sending
greedy generations back to back), alternating runs. Prints time-to-online and client-side throughput of each
and their ratios. Targets: throughput ratio app/bare >= 0.97 and under 1 s of start-up.

On a noisy machine a round's throughput moves a lot (one run read 30-68 tokens/s for the same server), so the
figure is the median of per-round ratios (each round runs both, back to back, in alternating order), printed
with its spread: the range and the interquartile range, as a share of the median. With two cores or more the
server (its whole process tree, every thread) runs on one core and the client on another, so that they do not
take turns on the same core; ``--no-pin`` leaves placement to the kernel.

The bare server runs through the smallest possible wrapper: the hivemind re-export bridge (without it FarMesh
cannot import hivemind 1.1.12 at all), NAT traversal off and no PyPI version check (as the app does on the
local swarm: nothing leaves this computer). Both read the same cached throughput measurement, so neither
measures it during the runs.

Then a table of tokens/s per model family: a tiny model of each family the engine serves (Llama 2, Llama 3.1,
Mixtral, BLOOM; engine/make_model.py) served by the app's supervisor, generated through by a real client
(tests/engine/family_client.py), greedy tokens checked against plain transformers.

Usage: python benchmarks/engine_overhead.py [--rounds 8] [--requests 60] [--no-pin] [--families-only | --no-families]
(FARNODE_ENGINE_ROOT may point at a ready engine environment; otherwise the default one is used/set up.)
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from farnode_desktop.core import snapshots as C  # noqa: E402
from farnode_desktop.core.engine_lock import PACKAGE_ROOT
from farnode_desktop.core.events import EventBus  # noqa: E402
from farnode_desktop.core.node.demo_swarm import TrafficGenerator, ensure_demo_model, launcher_config  # noqa: E402
from farnode_desktop.core.node.engine_venv import EngineEnv
from farnode_desktop.core.node.runtimes.base import engine_subprocess_env  # noqa: E402
from farnode_desktop.core.node.supervisor import Supervisor  # noqa: E402
from farnode_desktop.core.paths import AppPaths  # noqa: E402
from farnode_desktop.core.settings import Settings  # noqa: E402

BARE = (
    "import sys, runpy\n"
    "from farnode_desktop.engine.compat import bridge_hivemind\n"
    "from farnode_desktop.engine.nat import disable_nat_traversal\n"
    "bridge_hivemind()\n"
    "disable_nat_traversal()\n"
    "import farmesh.cli.run_server as rs\n"
    "rs.validate_version = lambda: None\n"
    "sys.argv = ['run_server'] + sys.argv[1:]\n"
    "rs.main()\n"
)


def bare_argv(cfg: dict) -> list[str]:
    argv = [cfg["model"], "--dht_prefix", cfg["dht_prefix"], "--new_swarm", "--host_maddrs",
            f"/ip4/127.0.0.1/tcp/{cfg['port']}"]
    for key in ("device", "torch_dtype", "quant_type", "num_handlers", "block_indices", "cache_dir",
                "identity_path", "update_period"):
        argv += [f"--{key}", str(cfg[key])]
    return argv


class BareServer:
    def __init__(self, engine: EngineEnv, cfg: dict):
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen([str(engine.python), "-c", BARE, *bare_argv(cfg)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=engine_subprocess_env(),
                                     cwd=str(PACKAGE_ROOT.parent), start_new_session=True)
        self.online_s: float | None = None
        self.addrs: list[str] = []
        self.started = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            m = re.search(r"Running a server on \[(.*)\]", line)
            if m:
                self.addrs = [a.strip(" '\"") for a in m.group(1).split(",")]
            if line.rstrip().endswith("[INFO] Started") and self.online_s is None:
                self.online_s = time.perf_counter() - self.t0
                self.started.set()

    def stop(self) -> None:
        """SIGINT, as the app stops its server; one that has not exited 30 s later is killed with its group and
        said so (FarMesh's run_server can hang in its shutdown: the app's supervisor does the same)."""
        self.proc.send_signal(2)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            print("  (the bare server did not exit within 30 s of SIGINT: killed)", flush=True)
        finally:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait(10)


def placement() -> tuple[set[int], set[int]] | None:
    """(server cores, client cores): the last allowed core for the server, the one before it for the client;
    None with fewer than two cores or where the OS cannot pin (not Linux)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    return ({cores[-1]}, {cores[-2]}) if len(cores) >= 2 else None


def pin_tree(pid: int, cores: set[int]) -> int:
    """Pin every thread of ``pid`` and of its descendants to ``cores`` (threads and processes started later
    inherit it); the number of threads pinned. Threads that end meanwhile are skipped."""
    import psutil

    pinned = 0
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return 0
    for proc in procs:
        try:
            tids = [t.id for t in proc.threads()]
        except psutil.Error:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(tid, cores)
                pinned += 1
            except OSError:
                continue
    return pinned


def client_load(engine, bus, log_dir, model, addrs, dht_prefix, requests, cores: set[int] | None = None) -> float:
    """Tokens/s the client got (tokens sent to the server / time spent waiting on the server)."""
    lat: list[tuple[int, float]] = []
    sub = bus.subscribe("traffic.request", lambda _t, ev: lat.append((ev.tokens_sent, ev.latency_s)))
    gen = TrafficGenerator(engine, bus, log_dir)
    gen.start(model=model, initial_peers=addrs, dht_prefix=dht_prefix, rate_per_minute=0, count=requests,
              forward_every=0, max_new_tokens=16, prompt_len=8)
    if cores is not None and gen._proc is not None:
        pin_tree(gen._proc.pid, cores)
    ok = gen.wait_for(lambda s: s.requests + s.errors >= requests, 600)
    gen.stop()
    sub.close()
    if not ok or gen.stats.mismatches or gen.stats.errors:
        raise SystemExit(f"client load failed: {gen.stats}")
    warm = lat[2:]  # the first requests include route discovery
    return sum(t for t, _ in warm) / sum(s for _, s in warm)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--no-pin", action="store_true", help="leave the server and client where the kernel puts them")
    ap.add_argument("--families-only", action="store_true")
    ap.add_argument("--no-families", action="store_true")
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="farnode-bench-")
    os.environ["FARNODE_HOME"] = home
    paths = AppPaths.default().ensure()
    engine = EngineEnv(paths, "cpu")
    t0 = time.perf_counter()
    probe = engine.ensure()
    print(f"engine: {probe.summary} at {engine.venv} (ready after {time.perf_counter() - t0:.0f} s)", flush=True)
    if not args.families_only:
        overhead(args, paths, engine)
    if not args.no_families:
        families(paths, engine)
    return 0


def overhead(args, paths: AppPaths, engine: EngineEnv) -> None:
    model = ensure_demo_model(paths, engine)
    settings = Settings()
    settings.network.port = free_port()
    cfg = launcher_config(settings, paths, model_path=model)
    bus = EventBus()
    results: dict[str, dict[str, list[float]]] = {m: {"online": [], "tps": []} for m in ("app", "bare")}
    place = None if args.no_pin else placement()
    server_cores, client_cores = place if place else (None, None)
    print(f"server on core {sorted(server_cores)}, client on core {sorted(client_cores)}" if place else
          "server and client where the kernel puts them", flush=True)

    # Warm-up: measure and cache the throughput once (both modes then read the same cache entry).
    sup = Supervisor(engine, bus, log_dir=paths.log_dir, run_dir=paths.run_dir)
    sup.start(cfg)
    assert sup.wait_for(C.ONLINE, 300).state == C.ONLINE, sup.state
    sup.stop()

    for r in range(args.rounds):
        for mode in (("app", "bare") if r % 2 == 0 else ("bare", "app")):
            if mode == "app":
                t0 = time.perf_counter()
                sup.start(cfg)
                st = sup.wait_for({C.ONLINE, C.FAILED, C.HELD}, 300)
                online = time.perf_counter() - t0
                assert st.state == C.ONLINE, st
                if server_cores:
                    pin_tree(sup.pid, server_cores)
                addrs = list(sup.peer.addrs)
                tps = client_load(engine, bus, paths.log_dir, model, addrs, cfg["dht_prefix"], args.requests,
                                  client_cores)
                sup.stop()
            else:
                bare = BareServer(engine, cfg)
                assert bare.started.wait(300), "bare server did not start"
                online = bare.online_s
                if server_cores:
                    pin_tree(bare.proc.pid, server_cores)
                tps = client_load(engine, bus, paths.log_dir, model, bare.addrs, cfg["dht_prefix"], args.requests,
                                  client_cores)
                bare.stop()
            results[mode]["online"].append(online)
            results[mode]["tps"].append(tps)
            print(f"round {r + 1} {mode:4}: online after {online:6.2f} s, client throughput {tps:8.1f} tokens/s",
                  flush=True)
    sup.close()

    med = {m: {k: statistics.median(v) for k, v in d.items()} for m, d in results.items()}
    # Each round runs app and bare back to back: their ratio cancels most of the machine's slow drifts.
    paired = [a / b for a, b in zip(results["app"]["tps"], results["bare"]["tps"], strict=True)]
    ratio = statistics.median(paired)
    delta = statistics.median(a - b for a, b in zip(results["app"]["online"], results["bare"]["online"],
                                                        strict=True))
    print()
    print(f"{'':22}{'app':>12}{'bare':>12}{'app/bare':>10}")
    print(f"{'time to online (s)':22}{med['app']['online']:12.2f}{med['bare']['online']:12.2f}"
          f"{med['app']['online'] / med['bare']['online']:10.3f}")
    print(f"{'throughput (tokens/s)':22}{med['app']['tps']:12.1f}{med['bare']['tps']:12.1f}"
          f"{med['app']['tps'] / med['bare']['tps']:10.3f}")
    print(f"\nper-round throughput ratios app/bare: {', '.join(f'{r:.3f}' for r in paired)}")
    q1, _, q3 = statistics.quantiles(paired, n=4, method="inclusive") if len(paired) >= 2 else (ratio, 0, ratio)
    print(f"spread of the ratios: range {min(paired):.3f}-{max(paired):.3f} "
          f"({100 * (max(paired) - min(paired)) / ratio:.1f} % of the median), interquartile range "
          f"{q1:.3f}-{q3:.3f} ({100 * (q3 - q1) / ratio:.1f} % of the median; target < 5 %)")
    for mode in ("app", "bare"):
        tps = results[mode]["tps"]
        print(f"{mode} throughput per round: {min(tps):.1f}-{max(tps):.1f} tokens/s "
              f"(range {100 * (max(tps) - min(tps)) / statistics.median(tps):.0f} % of its median)")
    print(f"throughput cost of the app: {100 * (1 - ratio):+.2f} % (median of the per-round ratios; target < 3 %)")
    print(f"start-up cost of the app:   {delta:+.2f} s (median of the per-round differences; target < 1 s)")
    print(f"(medians of {args.rounds} alternating rounds, {args.requests} requests each, on {os.cpu_count()} CPUs)")
    print(f"throughput ratio app/bare: {ratio:.3f} (target >= 0.97)")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


FAMILIES = ("llama2", "llama31", "mixtral", "bloom")
CLIENT = Path(__file__).resolve().parents[1] / "tests" / "engine" / "family_client.py"


def families(paths: AppPaths, engine: EngineEnv, prompts: int = 4) -> None:
    """Tokens/s per model family: one server per family (the app's supervisor), a real client's greedy
    generations of 10 tokens (the first prompt, which finds the route, is left out)."""
    import json
    import signal

    bus = EventBus()
    rows = []
    for family in FAMILIES:
        model = paths.models_dir / f"tiny-{family}"
        subprocess.run([str(engine.python), "-m", "farnode_desktop.engine.make_model", str(model), "--family",
                        family], check=True, capture_output=True, env=engine_subprocess_env(),
                       cwd=str(PACKAGE_ROOT.parent))
        settings = Settings()
        settings.network.port = free_port()
        settings.network.dht_prefix = f"tiny-{family}"
        cfg = launcher_config(settings, paths, model_path=model)
        sup = Supervisor(engine, bus, log_dir=paths.log_dir, run_dir=paths.run_dir)
        t0 = time.perf_counter()
        sup.start(cfg)
        st = sup.wait_for({C.ONLINE, C.FAILED, C.HELD}, 300)
        online = time.perf_counter() - t0
        assert st.state == C.ONLINE, st
        log = paths.log_dir / f"client-{family}.log"
        with open(log, "w+") as out:
            proc = subprocess.Popen([str(engine.python), str(CLIENT), str(model), sup.peer.addrs[0],
                                     cfg["dht_prefix"], str(prompts)], stdout=out, stderr=subprocess.STDOUT,
                                    env=engine_subprocess_env(), cwd=str(PACKAGE_ROOT.parent),
                                    start_new_session=True)
            try:
                proc.wait(600)
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            out.seek(0)
            lines = [line for line in out.read().splitlines() if line.startswith("{")]
        sup.stop()
        sup.close()
        result = json.loads(lines[-1])
        exact = all(r["got"] == r["want"] for r in result["results"])
        tps = statistics.median(r["tokens_per_s"] for r in result["results"][1:])
        rows.append((family, online, tps, exact, result["block_params"]))
        print(f"{family}: online after {online:.1f} s, {tps:.1f} tokens/s, tokens equal: {exact}", flush=True)
    print()
    print(f"{'family':10}{'online (s)':>12}{'tokens/s':>10}{'exact':>7}{'block params':>14}")
    for family, online, tps, exact, params in rows:
        print(f"{family:10}{online:12.1f}{tps:10.1f}{'yes' if exact else 'NO':>7}{params:14d}")
    print(f"(tiny models: 4 blocks, hidden size 64, float32 on the CPU; {prompts - 1} prompts of 10 new tokens "
          f"each, median; {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    sys.exit(main())
