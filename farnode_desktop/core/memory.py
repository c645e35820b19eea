"""The app's own memory over weeks: what its allocator holds, and handing back what it holds unused.

The app runs for weeks. On Linux (glibc) ``malloc`` keeps what the app frees for reuse: in the main heap and in
one arena per thread that allocated (the window runs some twenty threads: Qt's, the samplers', the task
runner's). Only free memory at the very top of the main heap goes back to the system by itself, so a heap that
was larger once, or whose free space lies between blocks still in use, stays in the resident size although
nothing uses it; over hours that reads as growth. ``malloc_trim(0)`` walks every arena and gives the whole
free pages inside them back (``MADV_DONTNEED``), which costs a few milliseconds.

:class:`HeapKeeper` does that every few minutes on a thread of its own and writes one log line each time with
the figures (resident size, heap in use, free memory held, what was given back), so that a user's log shows
how the app's memory went. Where the allocator is another (Windows' heap gives back by itself, macOS's
zones) only the resident size is read and nothing is trimmed: :func:`allocator` picks the implementation.
This module is the only one that calls into the C library's allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
import threading
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("farnode.memory")

#: How often the keeper hands free memory back and logs the figures.
TRIM_INTERVAL_S = 300.0


@dataclass(frozen=True)
class HeapStats:
    """One reading, in bytes. ``in_use``/``free_held`` are None where the allocator does not tell."""

    rss: int
    anon: int | None = None  # the resident part that is not a file's (heap, stacks): what a leak grows
    in_use: int | None = None  # allocated and not freed, small blocks and mapped ones together
    free_held: int | None = None  # freed, kept by the allocator for reuse

    def describe(self) -> str:
        mb = 1e6
        parts = [f"resident {self.rss / mb:.1f} MB"]
        if self.anon is not None:
            parts.append(f"anonymous {self.anon / mb:.1f} MB")
        if self.in_use is not None:
            parts.append(f"heap in use {self.in_use / mb:.1f} MB")
        if self.free_held is not None:
            parts.append(f"held free {self.free_held / mb:.1f} MB")
        return ", ".join(parts)


class Allocator(Protocol):
    def stats(self) -> HeapStats: ...

    def trim(self) -> bool:
        """Hand free memory back to the system; True when the allocator can and did."""
        ...


def _proc_status() -> tuple[int, int | None]:
    """(resident, anonymous resident) of this process, in bytes."""
    if sys.platform.startswith("linux"):
        rss = anon = None
        try:
            with open("/proc/self/status", encoding="ascii", errors="replace") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1]) * 1024
                    elif line.startswith("RssAnon:"):
                        anon = int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        if rss is not None:
            return rss, anon
    import psutil

    return psutil.Process().memory_info().rss, None


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


class GlibcAllocator:
    """glibc's malloc (2.33 or later, for ``mallinfo2``, whose fields do not wrap at 4 GB)."""

    def __init__(self, libc: ctypes.CDLL) -> None:
        self._mallinfo2 = libc.mallinfo2
        self._mallinfo2.restype = _MallInfo2
        self._mallinfo2.argtypes = []
        self._trim = libc.malloc_trim
        self._trim.restype = ctypes.c_int
        self._trim.argtypes = [ctypes.c_size_t]

    def stats(self) -> HeapStats:
        rss, anon = _proc_status()
        info = self._mallinfo2()
        # uordblks: small blocks in use in every arena; hblkhd: the large blocks malloc mapped one by one
        return HeapStats(rss=rss, anon=anon, in_use=info.uordblks + info.hblkhd, free_held=info.fordblks)

    def trim(self) -> bool:
        self._trim(0)
        return True


class OtherAllocator:
    """An allocator this module does not know: the resident size only, and nothing to trim."""

    def stats(self) -> HeapStats:
        rss, anon = _proc_status()
        return HeapStats(rss=rss, anon=anon)

    def trim(self) -> bool:
        return False


def allocator() -> Allocator:
    """The allocator of this process: glibc's where it runs (Linux, also inside WSL2), else the plain one."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None)  # the C library this interpreter runs on
            if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallinfo2") and \
                    hasattr(libc, "malloc_trim"):
                return GlibcAllocator(libc)
        except OSError:
            pass
    return OtherAllocator()


class HeapKeeper:
    """Every ``interval_s``: read the figures, hand free memory back, log both (one line)."""

    def __init__(self, alloc: Allocator | None = None, *, interval_s: float = TRIM_INTERVAL_S) -> None:
        self.allocator = alloc if alloc is not None else allocator()
        self.interval_s = interval_s
        self.last: HeapStats | None = None  # after the last trim
        self.given_back = 0  # bytes, by all trims so far
        self.trims = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="farnode-heap-keeper", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def trim_now(self) -> tuple[HeapStats, HeapStats]:
        """Trim once; the figures before and after (logged)."""
        before = self.allocator.stats()
        trimmed = self.allocator.trim()
        after = self.allocator.stats() if trimmed else before
        self.last = after
        if trimmed:
            given = max((before.anon or before.rss) - (after.anon or after.rss), 0)
            self.given_back += given
            self.trims += 1
            log.info("memory: %s; %.1f MB given back to the system", after.describe(), given / 1e6)
        else:
            log.info("memory: %s", after.describe())
        return before, after

    def report(self) -> dict:
        """The figures now (a fresh reading: no trim), for ``status --json``: MB, None where not known."""
        now = self.allocator.stats()

        def mb(v: int | None) -> float | None:
            return None if v is None else round(v / 1e6, 2)

        # Python's own small objects live in its arenas (mapped apart from malloc's heap): their count is what
        # a leak of Python objects grows
        return {"resident_mb": mb(now.rss), "anonymous_mb": mb(now.anon), "heap_in_use_mb": mb(now.in_use),
                "held_free_mb": mb(now.free_held), "given_back_mb": mb(self.given_back), "trims": self.trims,
                "python_blocks": sys.getallocatedblocks(), "text": now.describe()}

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.trim_now()
            except Exception:  # a reading that fails must not end the keeper (or the app)
                log.exception("the memory figures could not be read")
