"""Where the engine source and resources are found from a source checkout (the frozen case is exercised
by test_bundle.py), and the frozen `launcher` command's engine lookup."""

from __future__ import annotations

from pathlib import Path

import pytest

from farnode_desktop.app import frozen
from farnode_desktop.core import resources
from farnode_desktop.core.engine_lock import LOCKS_DIR, PACKAGE_ROOT, env_folder_name
from farnode_desktop.core.errors import FarNodeError

REPO = Path(__file__).resolve().parents[2]


def test_source_checkout_paths():
    assert not resources.is_frozen() and resources.bundle_dir() is None
    assert resources.engine_source_root() == REPO and resources.engine_package_root() == REPO / "farnode_desktop"
    assert PACKAGE_ROOT == REPO / "farnode_desktop" and LOCKS_DIR.is_dir()
    assert (resources.resources_dir() / "icons" / "app" / "farnode-desktop.svg").is_file()


def test_engine_files_are_exactly_the_engine_side():
    files = {p.as_posix() for p in resources.engine_files(REPO)}
    assert {"farnode_desktop/__init__.py", "farnode_desktop/engine/launcher.py", "farnode_desktop/engine/channel.py",
            "farnode_desktop/engine/locks/cpu.txt", "farnode_desktop/engine/locks/cuda.txt"} <= files
    assert not any(f.startswith(("farnode_desktop/core", "farnode_desktop/gui")) for f in files)


def test_source_digest_changes_with_the_sources(tmp_path):
    for rel in ("farnode_desktop/engine/launcher.py", "packaging/farnode.spec", "packaging/farnode_entry.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    first = frozen.source_digest(tmp_path)
    assert frozen.source_digest(tmp_path) == first
    (tmp_path / "farnode_desktop" / "engine" / "launcher.py").write_text("y")
    second = frozen.source_digest(tmp_path)
    assert second != first
    (tmp_path / "packaging" / "shrink.py").write_text("z")  # the spec's post-build step counts too
    assert frozen.source_digest(tmp_path) != second


def test_launcher_command_needs_an_engine_and_an_engine_module(farnode_home, monkeypatch, tmp_path):
    with pytest.raises(ValueError):
        frozen.launcher_command("farnode_desktop.app.cli", [])
    monkeypatch.setenv("FARNODE_ENGINE_ROOT", str(tmp_path / "no-engine"))
    with pytest.raises(FarNodeError, match="engine setup"):
        frozen.launcher_command("farnode_desktop.engine.launcher", ["--event-fd", "1"])
    fake = tmp_path / "engines" / env_folder_name("cpu") / "venv" / "bin"
    fake.mkdir(parents=True)
    (fake / "python").write_text("")
    monkeypatch.setenv("FARNODE_ENGINE_ROOT", str(tmp_path / "engines"))
    cmd, env = frozen.launcher_command("farnode_desktop.engine.launcher", ["--event-fd", "1"])
    assert cmd == [str(fake / "python"), "-m", "farnode_desktop.engine.launcher", "--event-fd", "1"]
    assert env["PYTHONPATH"] == str(REPO)
