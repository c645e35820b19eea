"""The engine environment manager with a small real lock (pip against the real package index)."""

from __future__ import annotations

import pytest

from farnode_desktop.core.errors import DiskFullError, EngineEnvError
from farnode_desktop.core.node import engine_venv as engine_env
from farnode_desktop.core.node.engine_venv import EngineEnv, read_lock


@pytest.fixture
def tiny(app_paths, tmp_path, monkeypatch):
    monkeypatch.delenv("FARNODE_ENGINE_ROOT", raising=False)
    lock = tmp_path / "tiny.txt"
    lock.write_text("# two small pure-Python packages\nsix==1.17.0\nvarint==1.0.2\n")
    return EngineEnv(app_paths, "cpu", lock_file=lock)


def test_the_shipped_locks_pin_every_package():
    for variant in engine_env.VARIANTS:
        reqs = read_lock(engine_env.lock_path(variant))
        names = [r.name.lower() for r in reqs]
        assert {"torch", "petals", "hivemind", "transformers", "bitsandbytes"} <= set(names)
        assert all(r.version for r in reqs) and len(names) == len(set(names))


def test_install_reports_progress_and_resumes(tiny):
    seen = []
    calls = {"n": 0}

    def cancel_after_first() -> bool:
        calls["n"] += 1
        return calls["n"] > 1

    with pytest.raises(EngineEnvError, match="cancelled"):
        tiny.ensure(seen.append, cancel=cancel_after_first, verify=False)
    assert [r.name for r in tiny.missing()] == ["varint"]  # six went in before the cancel
    steps = [p.step for p in seen]
    assert steps[0] == "creating the engine environment" and steps[1].startswith("installing six 1.17.0 (1/2)")

    seen.clear()
    tiny.ensure(seen.append, verify=False)  # resumes: only what is missing
    assert [p.step for p in seen if p.step.startswith("installing")] == ["installing varint 1.0.2 (1/1)"]
    assert seen[-1].done and seen[-1].percent == 100.0
    assert tiny.missing() == []
    percents = [p.percent for p in seen]
    assert percents == sorted(percents)


def test_not_enough_disk_is_refused_before_writing(tiny, monkeypatch):
    monkeypatch.setitem(engine_env.NEEDED_BYTES, "cpu", 10**18)
    with pytest.raises(DiskFullError, match="Free some disk space"):
        tiny.ensure(verify=False)
    assert not tiny.venv.exists()


def test_unavailable_package_gives_a_clear_error(tiny, tmp_path):
    tiny.lock_file.write_text("six==0.0.0.404\n")
    with pytest.raises(EngineEnvError, match=r"six==0\.0\.0\.404 is not available"):
        tiny.ensure(verify=False)


def test_a_broken_venv_is_recreated(tiny):
    tiny.ensure(verify=False)
    tiny.python.unlink()  # e.g. its base Python was removed
    tiny.ensure(verify=False)
    assert tiny.python.exists() and tiny.missing() == []
