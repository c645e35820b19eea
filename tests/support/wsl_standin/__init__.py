"""A faithful stand-in for ``wsl.exe`` (see wsl.py) and the test-side helpers around it.

:class:`WslStandin` makes a "Windows machine": folders standing for drives C: and D:, a ``wsl.exe``
script (what the app's WSL runtime is pointed to through ``FARNODE_WSL_EXE``), distributions as folders,
and reads back what crossed it (``calls()``) and what runs inside (``inside_pids()``).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from tests.support.wsl_standin.wsl import MARK, inside_pids, kill_inside

SCRIPT = Path(__file__).with_name("wsl.py")
__all__ = ["MARK", "WslStandin", "inside_pids"]


class WslStandin:
    def __init__(self, root: Path, *, installed: bool = True, cold_start_s: float = 0.0, install_s: float = 0.0,
                 default_version: int = 2):
        self.root = Path(root)
        self.home = self.root / "wsl-home"
        self.drive_c = self.root / "drive-c"
        self.drive_d = self.root / "drive-d"
        for folder in (self.home / "distros", self.drive_c, self.drive_d):
            folder.mkdir(parents=True, exist_ok=True)
        self.write_config(drives={"c": str(self.drive_c), "d": str(self.drive_d)}, installed=installed,
                          vm_running=cold_start_s <= 0, cold_start_s=cold_start_s, install_s=install_s,
                          default_version=default_version)
        self.exe = self.root / "wsl.exe"
        self.exe.write_text(f"#!/bin/sh\nexec {sys.executable} {SCRIPT} --home '{self.home}' \"$@\"\n")
        self.exe.chmod(0o755)

    # ------------------------------------------------------------------ set-up of the "machine"
    def write_config(self, **changes) -> None:
        path = self.home / "config.json"
        config = json.loads(path.read_text()) if path.exists() else {}
        config.update(changes)
        path.write_text(json.dumps(config))

    def config(self) -> dict:
        return json.loads((self.home / "config.json").read_text())

    def add_distro(self, name: str = "Ubuntu", *, version: int = 2, state: str = "Stopped",
                   default: bool = True) -> Path:
        folder = self.home / "distros" / name
        (folder / "rootfs" / "opt").mkdir(parents=True, exist_ok=True)
        (folder / "state.json").write_text(json.dumps({"name": name, "version": version, "state": state,
                                                       "default": default}))
        return folder

    def provision_engine(self, name: str, engine_dir: str, venv: Path, source_root: Path, marker: dict) -> None:
        """What a finished engine set-up leaves in a distribution: the engine's source, its venv (here: the
        test suite's engine venv, linked) and ready.json. ``engine_dir``: the runtime's ``engine_dir``."""
        opt = self.home / "distros" / name / "rootfs" / "opt"
        target = opt / engine_dir.lstrip("/").removeprefix("opt/")
        target.mkdir(parents=True, exist_ok=True)
        if not (target / "venv").exists():
            (target / "venv").symlink_to(venv)
        src = opt / "farnode" / "src"
        if not (src / "farnode_desktop").exists():
            shutil.copytree(source_root / "farnode_desktop", src / "farnode_desktop",
                            ignore=shutil.ignore_patterns("__pycache__", "gui", "app"))
        (target / "ready.json").write_text(json.dumps(marker))

    def state(self, name: str = "Ubuntu") -> dict:
        return json.loads((self.home / "distros" / name / "state.json").read_text())

    def drive_path(self, windows: str) -> Path:
        """The folder standing for a Windows path (``C:\\Users\\x`` -> <drive-c>/Users/x)."""
        letter, _, rest = windows.partition(":")
        base = {"c": self.drive_c, "d": self.drive_d}[letter.lower()]
        return base.joinpath(*[p for p in rest.replace("\\", "/").split("/") if p])

    # ------------------------------------------------------------------ what crossed it, what runs inside
    def calls(self) -> list[dict]:
        log = self.home / "log.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]

    def inside_pids(self, name: str = "Ubuntu") -> list[int]:
        return inside_pids(self.home / "distros" / name)

    def inside_cmdlines(self, name: str = "Ubuntu") -> list[str]:
        out = []
        for pid in self.inside_pids(name):
            try:
                out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
        return out

    def wait_empty(self, name: str = "Ubuntu", timeout: float = 15.0) -> float:
        """Seconds until nothing runs inside the distribution; raises after ``timeout``."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if not self.inside_pids(name):
                return time.monotonic() - t0
            time.sleep(0.1)
        raise AssertionError(f"still running inside {name} after {timeout:.0f} s: {self.inside_cmdlines(name)}")

    def kill_everything(self) -> None:
        """Test clean-up: every process inside every distribution."""
        for distro in (self.home / "distros").iterdir():
            kill_inside(distro, rounds=50)
