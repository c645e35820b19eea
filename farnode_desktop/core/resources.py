"""Where the app finds its own files: in a source checkout, in an installed wheel and in the frozen app.

The one place that knows the three layouts, for the app's resources (the top-level ``resources/`` of the
checkout: icons and their sources, the desktop entry, the contract sources, the licences of these assets) and
for the engine-side source that the engine's interpreter runs.

Resources: ``<checkout>/resources`` from a source checkout (an editable install too);
``farnode_desktop/resources`` in an installed wheel (``setup.py``'s build copies them into the package);
``<bundle>/resources`` in the frozen app (``packaging/farnode.spec``). What is packaged is
:func:`packaged_resources`: everything under ``resources/`` except build outputs (``*/build/``).

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
RESOURCES_DIR = "resources"  # at the top of the checkout, inside the bundle and inside the installed package
_NOT_PACKAGED = ("build",)  # folder names under resources/ that hold build outputs, kept in the checkout only
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


def resources_dir(checkout: Path | None = None) -> Path:
    """The app's resources (see the module's docstring). ``checkout``: a source checkout's root, for the
    build (the spec, ``setup.py``)."""
    if checkout is not None:
        return Path(checkout) / RESOURCES_DIR
    frozen = bundle_dir()
    if frozen is not None:
        return frozen / RESOURCES_DIR
    package = Path(__file__).resolve().parents[1]
    installed = package / RESOURCES_DIR
    if installed.is_dir():  # an installed wheel
        return installed
    return package.parent / RESOURCES_DIR  # a source checkout


def packaged_resources(checkout: Path) -> list[Path]:
    """The files of ``<checkout>/resources`` that the wheel and the bundle carry, relative to it, sorted."""
    base = resources_dir(checkout)
    return sorted(p.relative_to(base) for p in base.rglob("*")
                  if p.is_file() and not set(p.relative_to(base).parts[:-1]) & set(_NOT_PACKAGED)
                  and "__pycache__" not in p.parts)


def reward_token_artifact() -> Path:
    """The reward token's ABI and bytecode (``resources/contracts/RewardToken.json``), deployed on the local chain."""
    return resources_dir() / "contracts" / "RewardToken.json"
