"""Soak benchmark: the app left running as users leave it (for weeks), measured minute by minute.

Starts the app on the embedded default (the local demo swarm with its client traffic) in each face asked for,
each on its own data folder: ``headless`` (``farnode-desktop node``) and ``window`` (``farnode-desktop gui`` on
a private Xvfb with a system tray). Every ``--cycle`` minutes (default 10) each node is paused for a minute and
resumed, through ``farnode-desktop pause`` / ``resume``. Every minute it samples, per face: the app process's
RSS and its anonymous part (its heap, without the shared libraries paged in), threads and open files, the CPU it
used since the last sample, the metrics database's file and its WAL apart, and every log the app and its children write (log folder and the local chain's). At the end it prints,
after the warm-up (default 10 minutes): growth per hour of each (least-squares slope over the samples), the
range, and the database (from its rows and retention) and the logs projected to 30 days against their budgets.
Beside RSS it reads, from the app's ``status``, its heap as its allocator counts it: the bytes in use and the free
bytes it holds (the app gives free memory back every 5 minutes), and the number of Python's live small objects
(its own arenas): a leak grows the first or the last, allocator retention the second.
Nothing is asserted: the figures are the result. Samples go to ``--csv`` too.
With ``--heaptrack`` each face runs under heaptrack, and the end adds where its heap grew after the warm-up, by
the stack that allocated it (benchmarks/heap_growth.py).

    PYTHONPATH=. .venv/bin/python benchmarks/soak.py [--minutes 120] [--faces headless,window]

Needs the engine environment (``FARNODE_ENGINE_ROOT``; scripts/test.sh sets one up in .engine/) and, for the
window, Xvfb and trayer.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import heap_growth  # noqa: E402
from farnode_desktop.core.control import NotRunning, request  # noqa: E402
from farnode_desktop.core.paths import AppPaths  # noqa: E402
from farnode_desktop.core.ports import free_loopback_port  # noqa: E402

FIELDS = ("rss_mb", "anon_mb", "heap_mb", "held_free_mb", "py_blocks", "threads", "open_files", "cpu_pct", "db_mb", "wal_mb",
          "logs_mb")
HOUR = 3600.0
DB_BUDGET_MB = 100.0  # the metrics database after 30 days online
LOGS_BUDGET_MB = 50.0  # all logs together after 30 days online
DAYS_30 = 30 * 24 * HOUR


def _size_mb(paths: list[Path]) -> float:
    total = 0
    for p in paths:
        if p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        elif p.exists():
            total += p.stat().st_size
    return total / 1e6


class Face:
    def __init__(self, face: str, root: Path, env: dict, heaptrack: bool = False):
        self.face = face
        self.heaptrack = heaptrack
        self.launched = 0.0  # monotonic time of the launch (heaptrack's clock starts there)
        self.home = root / face
        self.env = dict(env, FARNODE_HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / "xdg"))
        with _paths_of(self.home) as paths:
            self.paths = paths
        self.proc: subprocess.Popen | None = None
        self.app: psutil.Process | None = None  # the app's own process (inside heaptrack's script, with --heaptrack)
        self.cpu_last: tuple[float, float] | None = None
        self.samples: list[dict] = []

    def start(self, port: int) -> None:
        """Start the face with settings that skip the first-run wizard and start the node at launch, on its
        own port (two local swarms on this computer must not share one)."""
        config = self.home / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "settings.json").write_text(json.dumps({"network": {"port": port, "device": "cpu"}}))
        (config / "gui-state.json").write_text(json.dumps({"contributing": True}))
        cmd = [sys.executable, "-m", "farnode_desktop", "gui" if self.face == "window" else "node"]
        if self.heaptrack:
            cmd = ["heaptrack", "-o", str(self.home / "heaptrack"), *cmd]
        log = open(self.home / "stdout.log", "wb")  # noqa: SIM115 - kept open while the app runs
        self.launched = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        self.app = psutil.Process(self.proc.pid)
        if self.heaptrack:  # heaptrack's script runs the app as its child
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and self.proc.poll() is None:
                kids = [k for k in self.app.children(recursive=True) if "farnode_desktop" in " ".join(k.cmdline())]
                if kids:
                    self.app = kids[0]
                    break
                time.sleep(0.1)

    @property
    def recording(self) -> Path | None:
        """heaptrack's recording: .zst, or .gz where zstd is not installed."""
        return next(iter(sorted(self.home.glob("heaptrack.*"))), None)

    def status(self) -> dict:
        try:
            return request(self.paths.run_dir, "status", timeout_s=10)
        except NotRunning:
            return {}

    def state(self) -> str:
        return str(self.status().get("state") or "")

    def control(self, cmd: str) -> None:
        try:
            request(self.paths.run_dir, cmd, timeout_s=10)
        except NotRunning as exc:
            print(f"{self.face}: {cmd} not delivered: {exc.message}", flush=True)

    def sample(self, t: float) -> dict:
        p = self.app
        with p.oneshot():
            cpu = p.cpu_times()
            used = cpu.user + cpu.system
            mem = p.memory_info()
            # anon: the process's own memory (heap, stacks, mmaps); the rest of RSS is shared files (libraries,
            # fonts) paged in as code runs for the first time, which is not growth of what the app holds.
            anon = mem.rss - getattr(mem, "shared", 0)
            row = {"t_min": t / 60.0, "rss_mb": mem.rss / 1e6, "anon_mb": anon / 1e6, "threads": p.num_threads(),
                   "open_files": p.num_fds() if hasattr(p, "num_fds") else len(p.open_files())}
        now = time.monotonic()
        memory = self.status().get("app", {}).get("memory") or {}
        row["heap_mb"] = memory.get("heap_in_use_mb")  # None where the allocator does not tell (not glibc)
        row["held_free_mb"] = memory.get("held_free_mb")
        row["py_blocks"] = memory.get("python_blocks")  # Python's live objects (in its own arenas, not malloc's)
        row["cpu_pct"] = (100.0 * (used - self.cpu_last[1]) / (now - self.cpu_last[0])) if self.cpu_last else 0.0
        self.cpu_last = (now, used)
        db = self.paths.metrics_db
        row["db_mb"] = _size_mb([db])
        row["wal_mb"] = _size_mb([db.with_name(db.name + "-wal")])  # reused after each checkpoint: bounded
        row["logs_mb"] = _size_mb(self.log_files())
        self.samples.append(row)
        return row

    def log_files(self) -> list[Path]:
        """Every log the app and its children write: the log folder and the local chain's."""
        chain = self.paths.chain_dir
        return [*self.paths.log_dir.glob("*.log*"), *chain.glob("*.log*")] if chain.exists() else \
            [*self.paths.log_dir.glob("*.log*")]

    def db_projection(self, hours_run: float) -> tuple[float, str]:
        """The metrics database after 30 days, from what it holds now and its retention (raw samples 48 h,
        minute rollups 90 days, hour rollups for ever): rows per hour of each table times the hours each is
        kept within 30 days, at the bytes per row the file shows now. A straight line through the file's size
        would count the raw samples 30 days over although they are deleted after two."""
        import sqlite3

        from farnode_desktop.core.metrics.queries import MINUTE_KEEP_S, RAW_KEEP_S
        conn = sqlite3.connect(f"file:{self.paths.metrics_db}?mode=ro", uri=True)
        try:
            rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608 - fixed names
                    for t in ("raw", "roll_1m", "roll_1h", "events")}
            used = (conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count")
                    .fetchone()[0]) * conn.execute("PRAGMA page_size").fetchone()[0]
        finally:
            conn.close()
        total = sum(rows.values()) or 1
        per_row = used / total
        keep = {"raw": min(RAW_KEEP_S, DAYS_30), "roll_1m": min(MINUTE_KEEP_S, DAYS_30), "roll_1h": DAYS_30,
                "events": DAYS_30}
        projected = sum(rows[t] / hours_run * keep[t] / HOUR for t in rows) * per_row
        detail = ", ".join(f"{t} {rows[t] / hours_run:.0f}/h" for t in rows) + f"; {per_row:.0f} B per row"
        return projected / 1e6, detail

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.poll() if self.proc else None
        self.app.send_signal(signal.SIGINT)  # the app itself, not heaptrack's script around it
        try:
            return self.proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


@contextlib.contextmanager
def _paths_of(home: Path):
    saved = os.environ.get("FARNODE_HOME")
    os.environ["FARNODE_HOME"] = str(home)
    try:
        yield AppPaths.default().ensure()
    finally:
        if saved is None:
            os.environ.pop("FARNODE_HOME", None)
        else:
            os.environ["FARNODE_HOME"] = saved


def slope_per_hour(rows: list[dict], key: str) -> float:
    """Least-squares slope of ``key`` against time, per hour."""
    n = len(rows)
    if n < 2:
        return 0.0
    xs = [r["t_min"] / 60.0 for r in rows]
    ys = [r[key] for r in rows]
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


@contextlib.contextmanager
def display():
    """A private Xvfb with a tray for the window face."""
    for n in range(420, 480):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            break
    xvfb = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = dict(os.environ, DISPLAY=f":{n}")
    for _ in range(100):
        if subprocess.run(["xdpyinfo"], env=env, capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    tray = subprocess.Popen(["trayer", "--edge", "top", "--align", "right", "--widthtype", "request",
                             "--height", "24"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) \
        if shutil.which("trayer") else None
    try:
        yield f":{n}"
    finally:
        for p in (tray, xvfb):
            if p is not None:
                p.terminate()
                p.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=120.0, help="how long the app runs (default 120)")
    ap.add_argument("--warmup", type=float, default=10.0, help="minutes left out of the growth figures")
    ap.add_argument("--cycle", type=float, default=10.0, help="pause for a minute every this many minutes")
    ap.add_argument("--faces", default="headless,window", help="headless, window or both (comma-separated)")
    ap.add_argument("--heaptrack", action="store_true",
                    help="run each face under heaptrack and print where its heap grew after the warm-up, by "
                         "allocating stack (benchmarks/heap_growth.py)")
    ap.add_argument("--csv", default=str(REPO / "test-artifacts" / "soak.csv"), help="where the samples go")
    args = ap.parse_args()
    faces_asked = [f.strip() for f in args.faces.split(",") if f.strip()]
    if args.heaptrack and not shutil.which("heaptrack"):
        print("--heaptrack: heaptrack is not installed (Debian/Ubuntu: apt install heaptrack)", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="farnode-soak-"))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with contextlib.ExitStack() as stack:
        if "window" in faces_asked:
            env["DISPLAY"] = stack.enter_context(display())
            env["QT_QPA_PLATFORM"] = "xcb"
        faces = [Face(f, root, env, args.heaptrack) for f in faces_asked]
        for f in faces:
            f.home.mkdir(parents=True, exist_ok=True)
            f.start(free_loopback_port())
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and not all(f.state() == "online" for f in faces):
                time.sleep(2)
            print("online: " + ", ".join(f"{f.face}={f.state() or '?'}" for f in faces), flush=True)
            t0 = time.monotonic()
            next_sample, next_pause, paused_at = t0, t0 + args.cycle * 60, None
            while (now := time.monotonic()) - t0 < args.minutes * 60:
                if any(f.proc.poll() is not None for f in faces):
                    print("an app exited early: " + ", ".join(f"{f.face} {f.proc.poll()}" for f in faces))
                    break
                if now >= next_pause and paused_at is None:
                    for f in faces:
                        f.control("pause")
                    paused_at = now
                elif paused_at is not None and now - paused_at >= 60:
                    for f in faces:
                        f.control("resume")
                    paused_at, next_pause = None, now + args.cycle * 60
                if now >= next_sample:
                    for f in faces:
                        row = f.sample(now - t0)
                        heap = "" if row["heap_mb"] is None else f", heap {row['heap_mb']:6.1f} + free {row['held_free_mb']:5.1f}"
                        print(f"{f.face:8s} {row['t_min']:6.1f} min  rss {row['rss_mb']:7.1f} MB (anon {row['anon_mb']:6.1f}{heap})  threads "
                              f"{row['threads']:3d}  files {row['open_files']:4d}  cpu {row['cpu_pct']:5.1f} %  "
                              f"db {row['db_mb']:6.2f} MB  wal {row['wal_mb']:5.2f} MB  logs {row['logs_mb']:6.2f} MB  {f.state()}", flush=True)
                    next_sample += 60
                time.sleep(1)
            t_last = time.monotonic()  # before the stop: what the app frees as it quits is not growth
        finally:
            codes = {f.face: f.stop() for f in faces}
    print(f"stopped: {codes}")
    out = Path(args.csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, ["face", "t_min", *FIELDS])
        w.writeheader()
        for f in faces:
            for r in f.samples:
                w.writerow({"face": f.face, **r})
    for f in faces:
        rows = [r for r in f.samples if r["t_min"] >= args.warmup]
        if len(rows) < 2:
            print(f"{f.face}: too few samples after the {args.warmup:g}-minute warm-up")
            continue
        print(f"\n{f.face}: {len(rows)} samples from {rows[0]['t_min']:.0f} to {rows[-1]['t_min']:.0f} min")
        for key in FIELDS:
            have = [r for r in rows if r[key] is not None]
            if len(have) < 2:
                print(f"  {key:10s} not known here")
                continue
            vals = [r[key] for r in have]
            print(f"  {key:12s} {min(vals):9.2f} .. {max(vals):9.2f}   growth {slope_per_hour(have, key):+9.3f} /h")
        hours_run = max(f.samples[-1]["t_min"] / 60.0, 1e-6)
        db_30, detail = f.db_projection(hours_run)
        print(f"  metrics database after 30 days: {db_30:.1f} MB (budget {DB_BUDGET_MB:g} MB; {detail})")
        logs_30 = rows[-1]["logs_mb"] + max(slope_per_hour(rows, "logs_mb"), 0.0) * 24 * 30
        print(f"  logs after 30 days: {logs_30:.1f} MB at the measured rate (budget {LOGS_BUDGET_MB:g} MB)")
        for path in sorted(f.log_files()):
            print(f"    {path.relative_to(f.home)}: {path.stat().st_size / 1e3:.1f} kB")
        if f.heaptrack and f.recording is not None:
            print()
            heap_growth.report(f.recording, (t0 - f.launched) / 60 + args.warmup, (t_last - f.launched) / 60)
    print(json.dumps({"root": str(root), "csv": str(out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
