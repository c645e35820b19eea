"""Builds the previous release's engine environment (lock version 1: petals 2.2.0.post1, transformers 4.34)
for the upgrade test, the way that release did: a venv under ``<engine root>/cpu-v1``, the v1 lock
(``fixtures/cpu-lock-v1.txt``, that release's ``engine/locks/cpu.txt``) installed package by package with
``--no-deps``, verified by importing the engine, and its ``ready.json`` marker in that release's format.

Run by scripts/test.sh before the tests (it downloads packages): ``python tests/engine/previous_engine.py ROOT``.
Does nothing when a ready one is there. About 1.5 GB and a minute or two.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOCK = HERE / "fixtures" / "cpu-lock-v1.txt"
REPO = HERE.parents[1]


def build(engine_root: Path) -> Path:
    root = engine_root / "cpu-v1"
    marker = root / "ready.json"
    if marker.is_file():
        return root
    venv = root / "venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], check=True)
    for line in LOCK.read_text().splitlines():
        spec = line.split("#", 1)[0].strip()
        if spec:
            subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                            "--progress-bar", "off", "-q", "--no-deps", spec], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore")
    out = subprocess.run([str(python), "-m", "farnode_desktop.engine.probe"], check=True, capture_output=True,
                         text=True, env=env, cwd=str(REPO)).stdout
    probe = json.loads(out.strip().splitlines()[-1])
    assert probe["engine"] == "petals", probe
    marker.write_text(json.dumps({"lock": hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16], "variant": "cpu",
                                  "verified_at": time.time(), "probe": probe}, indent=2, sort_keys=True))
    return root


if __name__ == "__main__":
    print(build(Path(sys.argv[1]).resolve()))
