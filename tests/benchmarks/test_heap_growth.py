"""benchmarks/heap_growth.py against real heaptrack recordings of a small Python program: the growth between two
moments is found at the stack that made it, what was freed is gone, numpy's cached small blocks are counted
apart."""

from __future__ import annotations

import importlib.util
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("heap_growth", REPO / "benchmarks" / "heap_growth.py")
heap_growth = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("heap_growth", heap_growth)  # its dataclasses look their module up there
_spec.loader.exec_module(heap_growth)

pytestmark = pytest.mark.skipif(shutil.which("heaptrack") is None,
                                reason="heaptrack is not installed (scripts/system-deps.sh installs it)")

# Moments are marked by the program itself (heaptrack's clock starts with the process, so sleeps would
# drift with the machine's load): it allocates a marker block of a size nothing else uses at each step.
PROGRAM = r"""
import ctypes, sys, time
libc = ctypes.CDLL(None)  # malloc as the process resolves it: heaptrack's
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def mark(n):
    libc.free(libc.malloc(1_000_000 + n))
    time.sleep(0.3)
def hold_blocks():
    return [libc.malloc(250_000) for _ in range(4)]
import numpy as np
mark(1)
held = hold_blocks()
for n in range(1, 300):  # arrays of 299 small sizes, each freed at once: numpy keeps their blocks
    a = np.ones(n, dtype=np.uint8)
    del a
mark(2)
libc.free(held.pop())
mark(3)
"""


def _record(tmp_path: Path) -> Path:
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    subprocess.run(["heaptrack", "-o", str(tmp_path / "rec"), sys.executable, str(script)], check=True,
                   capture_output=True, timeout=120)
    (rec,) = [p for p in tmp_path.iterdir() if p.name.startswith("rec.")]
    return rec


def _marks(path: Path, rec: heap_growth.Recording) -> dict[int, float]:
    """The seconds at which each marker block was allocated (read from the recording's own clock)."""
    marks: dict[int, float] = {}
    now = 0.0
    infos = rec.infos
    with heap_growth._lines(path) as lines:
        for raw in lines:
            if raw[:1] == b"c":
                now = int(raw[2:], 16) / 1000
            elif raw[:1] == b"+":
                size = infos[int(raw[2:], 16)][0]
                if 1_000_000 < size < 1_000_010:
                    marks.setdefault(size - 1_000_000, now)
    return marks


def test_growth_between_two_moments_is_found_at_its_stack(tmp_path):
    path = _record(tmp_path)
    marks = _marks(path, heap_growth.Recording.read(path, []))
    assert sorted(marks) == [1, 2, 3], marks
    # a moment just after each marker: the step before it is done
    t1, t2, t3 = (marks[k] + 0.15 for k in (1, 2, 3))
    rec = heap_growth.Recording.read(path, [t1, t2, t3])
    assert rec.command.endswith("program.py")
    assert rec.end_s >= t3

    g = heap_growth.growth(rec, t1, t2, depth=6)
    held = [s for s in g.by_stack if s[1] == 1_000_000]
    assert held, g.by_stack[:5]
    assert held[0][2] == 4  # four blocks
    assert "ffi_call" in held[0][0] or "ctypes" in held[0][0], held[0][0]  # called through ctypes, not malloc
    assert not held[0][0].startswith("malloc"), "the allocator's own frames are left out"
    assert g.after - g.before >= 1_000_000
    # numpy's freed small blocks: kept by its cache, one or more per size, and not listed as stacks
    assert g.numpy_small_after - g.numpy_small_before >= sum(range(1, 300)) * 0.9
    assert g.numpy_small_sizes >= 290
    assert not any("PyDataMem" in s[0] for s in g.by_stack)

    g = heap_growth.growth(rec, t2, t3, depth=6)
    freed = [s for s in g.by_stack if s[1] == -250_000]
    assert freed and freed[0][2] == -1

    out = io.StringIO()
    heap_growth.report(path, t1 / 60, t2 / 60, out=out)
    text = out.getvalue()
    assert "live heap per minute" in text and "+1000.0 kB" in text and "numpy's small data blocks" in text


def test_a_recording_read_past_its_end_gives_what_was_live_at_the_end(tmp_path):
    path = _record(tmp_path)
    rec = heap_growth.Recording.read(path, [0.0, 1e6])
    g = heap_growth.growth(rec, 0.0, 1e6)
    assert g.before < g.after  # the program exits with its three blocks and numpy's cache still allocated
    assert any(s[1] == 750_000 and s[2] == 3 for s in g.by_stack), g.by_stack[:5]
