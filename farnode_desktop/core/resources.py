"""Where the app finds its own files, in a source checkout and in the frozen (PyInstaller) app.

The one place that knows both layouts: the app's resources (icons, desktop entry, ...) and the
engine-side source that the engine's interpreter runs.

The engine's interpreter runs ``python -m farnode_desktop.engine.*`` with ``PYTHONPATH`` set to the folder
that contains ``farnode_desktop/``. In a source checkout that is the repository; in the frozen app the
modules are inside the executable's archive, so the spec (``packaging/farnode.spec``) also copies the
engine-side files as plain data into ``<bundle>/engine_src/farnode_desktop/``:
``__init__.py``, ``engine/*.py`` and ``engine/locks/*.txt``. That folder holds nothing else, so the engine's
interpreter never picks up the GUI bundle's compiled extensions through ``PYTHONPATH``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ENGINE_SRC_DIR = "engine_src"  # inside the bundle (sys._MEIPASS)
# The files the engine needs, relative to the folder that contains farnode_desktop/ (globs).
ENGINE_FILES = ("farnode_desktop/__init__.py", "farnode_desktop/engine/*.py", "farnode_desktop/engine/locks/*.txt")


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def bundle_dir() -> Path | None:
    """The frozen app's data folder (PyInstaller's ``sys._MEIPASS``); None when running from source."""
    meipass = getattr(sys, "_MEIPASS", None)
    return Path(meipass) if is_frozen() and meipass else None


def engine_source_root() -> Path:
    """The folder to put on the engine's ``PYTHONPATH`` (it contains ``farnode_desktop/``)."""
    frozen = bundle_dir()
    if frozen is not None:
        return frozen / ENGINE_SRC_DIR
    return Path(__file__).resolve().parents[2]


def engine_package_root() -> Path:
    """``farnode_desktop/`` as the engine sees it (``engine/launcher.py``, ``engine/locks/*.txt`` below it)."""
    return engine_source_root() / "farnode_desktop"


def engine_files(root: Path | None = None) -> list[Path]:
    """Every engine-side file under ``root`` (default: :func:`engine_source_root`), relative to it, sorted.

    Used by the spec to collect them and by the runtimes that copy them elsewhere (WSL2, Docker)."""
    base = root or engine_source_root()
    out: set[Path] = set()
    for pattern in ENGINE_FILES:
        out.update(p.relative_to(base) for p in base.glob(pattern) if p.is_file())
    return sorted(out)


def resources_dir() -> Path:
    """The app's resources (icons, ...): ``farnode_desktop/resources`` in a checkout and in the bundle."""
    frozen = bundle_dir()
    if frozen is not None:
        return frozen / "farnode_desktop" / "resources"
    return Path(__file__).resolve().parents[1] / "resources"
