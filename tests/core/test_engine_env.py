"""The engine environment manager with a small real lock: real pip, against a real (local) package index."""

from __future__ import annotations

import pytest

from farnode_desktop.core.errors import DiskFullError, EngineEnvError
from farnode_desktop.core.node import engine_venv as engine_env
from farnode_desktop.core.node.engine_venv import EngineEnv, read_lock


@pytest.fixture
def tiny(app_paths, tmp_path, monkeypatch, package_index):
    monkeypatch.delenv("FARNODE_ENGINE_ROOT", raising=False)
    lock = tmp_path / "tiny.txt"
    lock.write_text("# two small pure-Python packages\nfarnode-probe-a==1.0\nfarnode-probe-b==2.0\n")
    return EngineEnv(app_paths, "cpu", lock_file=lock)


def test_the_shipped_locks_pin_every_package():
    for variant in engine_env.VARIANTS:
        reqs = read_lock(engine_env.lock_path(variant))
        names = [r.name.lower() for r in reqs]
        assert {"torch", "hivemind", "transformers", "bitsandbytes"} <= set(names)
        assert all(r.version for r in reqs) and len(names) == len(set(names))


def test_install_reports_progress_and_resumes(tiny):
    seen = []

    def cancel_once_a_is_in() -> bool:
        return "farnode-probe-a" in tiny.installed()

    with pytest.raises(EngineEnvError, match="cancelled"):
        tiny.ensure(seen.append, cancel=cancel_once_a_is_in, verify=False)
    assert [r.name for r in tiny.missing()] == ["farnode-probe-b"]  # a went in before the cancel
    steps = [p.step for p in seen]
    assert steps[0] == "creating the engine environment" and steps[1].startswith("installing farnode-probe-a 1.0 (1/2)")

    seen.clear()
    tiny.ensure(seen.append, verify=False)  # resumes: only what is missing
    assert [p.step for p in seen if p.step.startswith("installing")] == ["installing farnode-probe-b 2.0 (1/1)"]
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
    tiny.lock_file.write_text("farnode-probe-a==0.0.404\n")
    with pytest.raises(EngineEnvError, match=r"farnode-probe-a==0\.0\.404 is not available"):
        tiny.ensure(verify=False)


def test_a_broken_venv_is_recreated(tiny):
    tiny.ensure(verify=False)
    tiny.python.unlink()  # e.g. its base Python was removed
    tiny.ensure(verify=False)
    assert tiny.python.exists() and tiny.missing() == []


def test_an_install_cut_short_is_not_counted(tiny):
    """pip killed mid-install leaves a dist-info folder without its RECORD (written last): still missing."""
    tiny.ensure(verify=False)
    record = next(tiny.site_packages().glob("farnode_probe_b-2.0.dist-info")) / "RECORD"
    record.unlink()
    assert [r.name for r in tiny.missing()] == ["farnode-probe-b"]
    tiny.ensure(verify=False)
    assert tiny.missing() == [] and record.is_file()
