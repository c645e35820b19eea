"""Where a process's heap grew between two moments of its life, by allocation stack, from a heaptrack recording.

heaptrack (KDE; Debian package ``heaptrack``) records every malloc, free and C++ new of a process with the
stack that made it. Its own tools report the peak and what was still allocated at exit; an app that frees
everything when it quits shows neither its growth while it ran. This reads the recording back (the
``.zst`` or ``.gz`` file ``heaptrack -o NAME`` writes) and replays it: which allocations were live at minute
``--from`` and at minute ``--to`` (heaptrack's clock: from the process's start), and prints the live heap
per minute and the difference grouped by the stack that allocated it (allocator frames left out).

This sees what malloc sees: C and C++ (Qt, SQLite, numpy's data) and the large Python objects; Python's
small objects live in its own arenas (256 KiB mappings, not malloc), which ``tracemalloc`` sees instead.

numpy keeps up to 7 freed data blocks of each size under 1024 bytes for reuse (its allocator's cache:
``NBUCKETS 1024``, ``NCACHE 7`` in numpy's ``alloc.c``): malloc sees those as live, ``tracemalloc`` as freed.
They are counted apart: a cache that fills once per block size, at most 7 x (1 + 2 + ... + 1023) bytes
(3.67 MB), so growth there stops by itself.

    python benchmarks/heap_growth.py RECORDING.zst --from 15 --to 55 [--depth 4] [--stacks 5]

``benchmarks/soak.py --heaptrack`` records its faces this way and prints this report for its run.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gzip
import io
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Frames that only pass an allocation on; a stack is shown from the first frame that is not one of them.
ALLOCATOR_FRAMES = ("malloc", "calloc", "realloc", "free", "posix_memalign", "aligned_alloc", "memalign", "valloc",
                    "operator new", "heaptrack", "__libc_", "_int_", "PyMem_", "_PyMem_", "PyObject_Malloc",
                    "_PyObject_Malloc", "pymalloc_", "PyObject_Realloc", "_PyObject_Realloc", "PyDataMem_", "default_malloc",
                    "default_calloc", "default_realloc", "_npy_alloc_cache", "npy_alloc_cache", "sqlite3Malloc",
                    "sqlite3Realloc", "sqlite3MemMalloc", "sqlite3MemRealloc", "sqlite3DbMallocRaw",
                    "QArrayData::allocate", "QArrayData::reallocateUnaligned")
NUMPY_DATA = "PyDataMem_UserNEW"  # every numpy array's data goes through it
NUMPY_CACHED_BELOW = 1024  # bytes: sizes numpy's data cache keeps (NBUCKETS)
NUMPY_CACHE_PER_SIZE = 7  # NCACHE
NUMPY_CACHE_MAX = NUMPY_CACHE_PER_SIZE * sum(range(1, NUMPY_CACHED_BELOW))


@dataclass
class Recording:
    """A heaptrack recording replayed up to the moments asked for (seconds since the process started)."""

    strings: list[str] = field(default_factory=lambda: [""])
    ips: list[list[str]] = field(default_factory=lambda: [[]])  # per instruction pointer: ip, module, frames
    traces: list[tuple[int, int]] = field(default_factory=lambda: [(0, 0)])  # (ip index, parent trace)
    infos: list[tuple[int, int]] = field(default_factory=list)  # allocation kinds: (size, trace)
    live_at: dict[float, list[int]] = field(default_factory=dict)  # moment -> live count of each kind
    per_minute: list[tuple[float, float]] = field(default_factory=list)  # (minute, live bytes)
    end_s: float = 0.0
    command: str = ""
    _format: int = 3  # heaptrack's file format version (its "v" line)

    @classmethod
    def read(cls, path: Path, moments: list[float]) -> Recording:
        rec = cls()
        pending = sorted(moments)
        live: list[int] = []
        sizes: list[int] = []
        total = 0
        next_minute = 60_000
        now = 0
        with _lines(path) as lines:
            for raw in lines:
                c = raw[:1]
                if c == b"+":
                    k = int(raw[2:], 16)
                    live[k] += 1
                    total += sizes[k]
                elif c == b"-":
                    k = int(raw[2:], 16)
                    live[k] -= 1
                    total -= sizes[k]
                elif c == b"t":
                    ip, parent = raw[2:].split()
                    rec.traces.append((int(ip, 16), int(parent, 16)))
                elif c == b"a":
                    size, trace = raw[2:].split()
                    rec.infos.append((int(size, 16), int(trace, 16)))
                    sizes.append(int(size, 16))
                    live.append(0)
                elif c == b"i":
                    rec.ips.append(raw[2:].decode("ascii", "replace").split())
                elif c == b"s":
                    text = raw[2:].decode("utf-8", "replace").rstrip("\n")
                    # file format 3 writes "s <hex length> <text>"; format 2 "s <text>"
                    rec.strings.append(text.split(" ", 1)[1] if rec._format >= 3 else text)
                elif c == b"c":
                    now = int(raw[2:], 16)
                    while now >= next_minute:
                        rec.per_minute.append((next_minute / 60_000, total))
                        next_minute += 60_000
                    while pending and now >= pending[0] * 1000:
                        rec.live_at[pending.pop(0)] = list(live)
                elif c == b"v":
                    parts = raw[2:].split()
                    rec._format = int(parts[1], 16) if len(parts) > 1 else 1
                elif c == b"X":
                    rec.command = raw[2:].decode("utf-8", "replace").strip()
        rec.end_s = now / 1000
        for m in pending:  # asked for past the end: what was live at the end
            rec.live_at[m] = list(live)
        return rec

    def frames(self, trace: int, limit: int = 64) -> list[str]:
        """The stack of ``trace``, innermost first, as ``function [library]`` (inlined frames included)."""
        out: list[str] = []
        while trace and len(out) < limit:
            ip_index, trace = self.traces[trace]
            ip = self.ips[ip_index]
            module = self.strings[int(ip[1], 16)].rsplit("/", 1)[-1] if len(ip) > 1 else "?"
            names = [self.strings[int(ip[k], 16)] for k in range(2, len(ip), 3)]
            for name in [n for n in names if n] or [f"0x{ip[0]}"]:
                out.append(f"{name} [{module}]")
        return out

    def caller(self, trace: int, depth: int) -> str:
        """The first ``depth`` frames of ``trace`` past the allocator's own."""
        fs = self.frames(trace)
        # past the outermost allocator frame near the top (a library's unnamed inner functions sit between)
        inner = [j for j, f in enumerate(fs[:8]) if f.startswith(ALLOCATOR_FRAMES)]
        i = min(inner[-1] + 1, len(fs) - 1) if inner else 0
        return " < ".join(fs[i:i + depth])

    def is_numpy_data(self, trace: int) -> bool:
        return any(f.startswith(NUMPY_DATA) for f in self.frames(trace, 4))


@dataclass
class Growth:
    before: int  # live bytes at the first moment
    after: int
    numpy_small_before: int  # numpy's data blocks under 1024 bytes (its cache and live small arrays)
    numpy_small_after: int
    numpy_small_sizes: int  # distinct sizes of those at the second moment
    by_stack: list[tuple[str, int, int]]  # (stack, bytes, allocations), most grown first


def growth(rec: Recording, t1: float, t2: float, depth: int = 4) -> Growth:
    a, b = rec.live_at[t1], rec.live_at[t2]
    before = after = np_before = np_after = 0
    np_sizes: set[int] = set()
    grown: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    numpy_trace: dict[int, bool] = {}  # per trace: many allocation kinds (sizes) share one
    callers: dict[int, str] = {}
    for k, (size, trace) in enumerate(rec.infos):
        na = a[k] if k < len(a) else 0
        nb = b[k] if k < len(b) else 0
        before += na * size
        after += nb * size
        if size < NUMPY_CACHED_BELOW and (na or nb):
            if trace not in numpy_trace:
                numpy_trace[trace] = rec.is_numpy_data(trace)
            if numpy_trace[trace]:
                np_before += na * size
                np_after += nb * size
                if nb:
                    np_sizes.add(size)
                continue
        if na != nb:
            if trace not in callers:
                callers[trace] = rec.caller(trace, depth)
            key = callers[trace]
            grown[key] += (nb - na) * size
            count[key] += nb - na
    stacks = sorted(((k, v, count[k]) for k, v in grown.items()), key=lambda r: -r[1])
    return Growth(before, after, np_before, np_after, len(np_sizes), stacks)


def report(path: Path, t1_min: float, t2_min: float, *, depth: int = 4, top: int = 15, out=sys.stdout) -> Growth:
    rec = Recording.read(path, [t1_min * 60, t2_min * 60])
    g = growth(rec, t1_min * 60, t2_min * 60, depth)
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(f"{path.name}: {rec.command} (recorded for {rec.end_s / 60:.1f} min)")
    if rec.end_s < t2_min * 60:
        p(f"  the recording ends at minute {rec.end_s / 60:.1f}: 'to' is its end")
    p("  live heap per minute (MB): " + " ".join(f"{m:.0f}:{v / 1e6:.2f}" for m, v in rec.per_minute))
    hours = max((min(t2_min * 60, rec.end_s) - t1_min * 60) / 3600, 1e-9)
    p(f"  minute {t1_min:g} -> {t2_min:g}: {g.before / 1e6:.2f} -> {g.after / 1e6:.2f} MB live, "
      f"{(g.after - g.before) / 1e6:+.3f} MB ({(g.after - g.before) / 1e6 / hours:+.2f} MB/h)")
    p(f"  of which numpy's small data blocks (its cache of freed blocks, at most {NUMPY_CACHE_PER_SIZE} per size "
      f"under {NUMPY_CACHED_BELOW} B, {NUMPY_CACHE_MAX / 1e6:.2f} MB in all, and live small arrays): "
      f"{g.numpy_small_before / 1e3:.0f} -> {g.numpy_small_after / 1e3:.0f} kB, {g.numpy_small_sizes} sizes")
    rest = sum(v for _k, v, _n in g.by_stack)
    p(f"  the rest, by allocating stack ({rest / 1e3:+.1f} kB):")
    for key, v, n in g.by_stack[:top]:
        p(f"    {v / 1e3:+9.1f} kB {n:+7d}  {key}")
    shrunk = [r for r in g.by_stack[top:] if r[1] < 0][-3:]  # the most shrunk, unless listed above
    for key, v, n in shrunk:
        p(f"    {v / 1e3:+9.1f} kB {n:+7d}  {key}")
    return g


@contextlib.contextmanager
def _lines(path: Path) -> Iterator[io.BufferedReader]:
    """The recording's lines (bytes). A recording still being written reads up to its last complete frame."""
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as fh:
            yield fh
        return
    if path.suffix != ".zst":
        with open(path, "rb") as fh:
            yield fh
        return
    proc = subprocess.Popen(["zstd", "-dcq", str(path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            bufsize=1 << 20)
    try:
        yield proc.stdout
    finally:
        proc.stdout.close()
        proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recording", type=Path)
    ap.add_argument("--from", dest="t1", type=float, default=10.0, help="minute of the first moment (default 10)")
    ap.add_argument("--to", dest="t2", type=float, default=1e9, help="minute of the second (default: the end)")
    ap.add_argument("--depth", type=int, default=4, help="frames of each stack shown (default 4)")
    ap.add_argument("--stacks", type=int, default=15, help="how many stacks are listed (default 15)")
    args = ap.parse_args()
    report(args.recording, args.t1, args.t2, depth=args.depth, top=args.stacks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
