"""Where the engine source and resources are found from a source checkout (the frozen case is exercised
by test_bundle.py), and the frozen `launcher` command's engine lookup."""

from __future__ import annotations

from pathlib import Path

import pytest

from farnode_desktop.core import bundle
from farnode_desktop.core.engine_env import LOCKS_DIR, PACKAGE_ROOT
from farnode_desktop.core.errors import FarNodeError

REPO = Path(__file__).resolve().parents[2]


def test_source_checkout_paths():
    assert not bundle.is_frozen() and bundle.bundle_dir() is None
    assert bundle.engine_source_root() == REPO and bundle.engine_package_root() == REPO / "farnode_desktop"
    assert PACKAGE_ROOT == REPO / "farnode_desktop" and LOCKS_DIR.is_dir()
    assert (bundle.resources_dir() / "icons" / "app" / "farnode-desktop.svg").is_file()


def test_engine_files_are_exactly_the_engine_side():
    files = {p.as_posix() for p in bundle.engine_files(REPO)}
    assert {"farnode_desktop/__init__.py", "farnode_desktop/engine/launcher.py", "farnode_desktop/engine/channel.py",
            "farnode_desktop/engine/locks/cpu.txt", "farnode_desktop/engine/locks/cuda.txt"} <= files
    assert not any(f.startswith(("farnode_desktop/core", "farnode_desktop/gui")) for f in files)


def test_source_digest_changes_with_the_sources(tmp_path):
    for rel in ("farnode_desktop/engine/launcher.py", "packaging/farnode.spec", "packaging/farnode_entry.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    first = bundle.source_digest(tmp_path)
    assert bundle.source_digest(tmp_path) == first
    (tmp_path / "farnode_desktop" / "engine" / "launcher.py").write_text("y")
    second = bundle.source_digest(tmp_path)
    assert second != first
    (tmp_path / "packaging" / "shrink.py").write_text("z")  # the spec's post-build step counts too
    assert bundle.source_digest(tmp_path) != second


def test_launcher_command_needs_an_engine_and_an_engine_module(farnode_home, monkeypatch, tmp_path):
    with pytest.raises(ValueError):
        bundle.launcher_command("farnode_desktop.core.cli", [])
    monkeypatch.setenv("FARNODE_ENGINE_ROOT", str(tmp_path / "no-engine"))
    with pytest.raises(FarNodeError, match="engine setup"):
        bundle.launcher_command("farnode_desktop.engine.launcher", ["--event-fd", "1"])
    fake = tmp_path / "engines" / "cpu-v1" / "venv" / "bin"
    fake.mkdir(parents=True)
    (fake / "python").write_text("")
    monkeypatch.setenv("FARNODE_ENGINE_ROOT", str(tmp_path / "engines"))
    cmd, env = bundle.launcher_command("farnode_desktop.engine.launcher", ["--event-fd", "1"])
    assert cmd == [str(fake / "python"), "-m", "farnode_desktop.engine.launcher", "--event-fd", "1"]
    assert env["PYTHONPATH"] == str(REPO)
