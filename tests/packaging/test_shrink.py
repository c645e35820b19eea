"""packaging/shrink.py on the real libraries of this environment: ICU's data package reduced and relinked,
and the page-alignment check that keeps binutils' strip away from patchelf-edited libraries."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("shrink", REPO / "packaging" / "shrink.py")
shrink = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shrink)


def _pyside_lib(pattern: str) -> Path:
    PySide6 = pytest.importorskip("PySide6")
    found = sorted((Path(PySide6.__file__).parent / "Qt" / "lib").glob(pattern))
    if not found:
        pytest.skip(f"no {pattern} in this PySide6")
    return found[0]


def test_icu_data_reduced_keeps_every_item_qt_uses_and_relinks(tmp_path):
    if not all(shutil.which(t) for t in ("as", "ld")):
        pytest.skip("binutils (as, ld) not installed")
    lib = _pyside_lib("libicudata.so.*")
    data = lib.read_bytes()
    symbol, offset, size = shrink.find_data_symbol(data)
    dat = data[offset:offset + size]
    items = dict(shrink.common_data_items(dat))
    small = shrink.reduce_common_data(dat, shrink.icu_item_unused)
    kept = dict(shrink.common_data_items(small))
    assert set(kept) == {n for n in items if not shrink.icu_item_unused(n)}
    assert any("/coll/" in n for n in kept) and any("/zone/" in n for n in kept)
    assert not any("/brkitr/" in n or "/translit/" in n for n in kept)
    original = {n: (s, e) for n, s, e in shrink._toc(dat)[1]}
    for name, start, end in shrink._toc(small)[1]:  # each kept item byte-for-byte the same, 16-byte aligned
        src = original[name]
        assert small[start:end].rstrip(b"\0") == dat[src[0]:src[1]].rstrip(b"\0") and start % 16 == 0
    out = tmp_path / lib.name
    shrink.build_data_library(small, symbol, lib.name, out)
    new = out.read_bytes()
    sym2, off2, size2 = shrink.find_data_symbol(new)
    assert (sym2, size2) == (symbol, len(small)) and new[off2:off2 + size2] == small and off2 % 16 == 0
    assert shrink.loads_aligned(new)
    soname = subprocess.run(["readelf", "-d", str(out)], capture_output=True, text=True).stdout
    assert f"[{lib.name}]" in soname
    assert len(new) < 0.7 * len(data)


def test_qt_calls_no_icu_service_beyond_the_kept_data():
    lib_dir = _pyside_lib("libQt6Core.so.*").parent
    calls = shrink.icu_calls(lib_dir.glob("libQt6*.so*"))
    assert calls and all(c.startswith(shrink.ICU_ALLOWED_CALLS) for c in calls), sorted(calls)


def test_alignment_check_refuses_what_the_loader_refuses(tmp_path):
    numpy = pytest.importorskip("numpy")
    libs = sorted((Path(numpy.__file__).parent.parent / "numpy.libs").glob("libscipy_openblas*.so"))
    if not libs or not shutil.which("strip"):
        pytest.skip("no auditwheel-repaired OpenBLAS or no strip here")
    assert shrink.loads_aligned(libs[0].read_bytes())
    copy = tmp_path / libs[0].name
    shutil.copyfile(libs[0], copy)
    subprocess.run(["strip", "--strip-unneeded", str(copy)], check=True, capture_output=True)
    assert not shrink.loads_aligned(copy.read_bytes())  # the loader says "not page-aligned" for this one
    probe = subprocess.run([sys.executable, "-c", f"import ctypes; ctypes.CDLL({str(copy)!r})"], capture_output=True,
                           text=True)
    assert probe.returncode != 0 and "page-aligned" in probe.stderr
