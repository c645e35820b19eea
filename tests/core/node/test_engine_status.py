"""The engine environment the suite shares is FarMesh at the pinned commit, and the app says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from farnode_desktop.core.engine_lock import engine_requirement, lock_path, read_lock

pytestmark = pytest.mark.engine


def test_engine_status_names_farmesh_its_commit_torch_and_transformers(engine, engine_paths):
    pinned = engine_requirement(read_lock(lock_path("cpu")))
    proc = subprocess.run([sys.executable, "-m", "farnode_desktop", "engine", "status", "--variant", "cpu"],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    st = json.loads(proc.stdout)
    assert st["ready"] and st["lock_version"] == 2
    assert (st["engine"], st["engine_version"], st["source_commit"]) == ("farmesh", "2.3.0.dev2", pinned.commit)
    assert st["torch_version"].startswith("2.13.0") and st["transformers_version"] == "4.43.1"
    # verifying imports the engine and checks its name, version and source commit again
    probe = engine.verify()
    assert (probe.engine, probe.engine_version, probe.transformers_version) == ("farmesh", "2.3.0.dev2", "4.43.1")
