"""One engine set-up at a time, between real processes: a second set-up waits for the first and installs
nothing twice; a removal is refused while a set-up runs or while a process runs from the environment; each
lock gets its own folder; a full disk during the engine's download says so and leaves no partial file."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from farnode_desktop.core import engine_lock
from farnode_desktop.core.engine_lock import LOCK_VERSION, Requirement, lock_digest
from farnode_desktop.core.errors import DiskFullError, EngineBusy
from farnode_desktop.core.node import engine_venv as engine_env
from farnode_desktop.core.node.engine_venv import EngineEnv, env_root
from tests.support import REPO
from tests.support.http_files import serve_bytes
from tests.support.wait import wait_until

SETUP = r"""
import sys
from pathlib import Path
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.node.engine_venv import EngineEnv
env = EngineEnv(AppPaths.default().ensure(), "cpu", lock_file=Path(sys.argv[1]))
env.ensure(lambda p: print(p.step, flush=True), verify=False)
print("done", flush=True)
"""


@pytest.fixture
def slow_lock(tmp_path, package_index, monkeypatch):
    """A lock whose middle package (4 MB) downloads at 1 MB/s: a set-up that lasts a few seconds."""
    monkeypatch.delenv("FARNODE_ENGINE_ROOT", raising=False)
    package_index.rate = 1_000_000
    lock = tmp_path / "slow.txt"
    lock.write_text("farnode-probe-a==1.0\nfarnode-probe-slow==3.0\nfarnode-probe-b==2.0\n")
    return lock


def _setup_process(lock: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SETUP, str(lock)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))


def _read_until(proc: subprocess.Popen, prefix: str, lines: list[str]) -> None:
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith(prefix):
            return
    raise AssertionError(f"the set-up ended before {prefix!r}: {lines}")


def test_a_second_setup_waits_for_the_first_and_installs_nothing_twice(app_paths, slow_lock):
    first = _setup_process(slow_lock)
    first_lines: list[str] = []
    _read_until(first, "installing 3 packages with uv", first_lines)  # the first is mid-download
    second = _setup_process(slow_lock)
    out2, _ = second.communicate(timeout=120)
    out1 = "\n".join(first_lines) + first.communicate(timeout=120)[0]
    assert first.returncode == 0, out1
    assert second.returncode == 0, out2
    assert f"waiting for an engine set-up, process {first.pid}" in out2
    assert "installing" not in out2  # it found everything the first one installed
    assert out2.rstrip().endswith("done")
    env = EngineEnv(app_paths, "cpu", lock_file=slow_lock)
    assert env.missing() == [] and env.installed()["farnode-probe-slow"] == "3.0"


def test_two_threads_of_one_app_set_up_one_after_the_other(app_paths, slow_lock):
    """The window's Repair button while the node's own start sets the engine up (one EngineEnv, two threads):
    the second waits for the first instead of installing beside it."""
    import threading

    env = EngineEnv(app_paths, "cpu", lock_file=slow_lock)
    seen: dict[str, list[str]] = {"first": [], "second": []}
    errors = []

    def setup(name: str) -> None:
        try:
            env.ensure(lambda p: seen[name].append(p.step), verify=False)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    first = threading.Thread(target=setup, args=("first",))
    first.start()
    assert wait_until(lambda: any(s.startswith("installing 3 packages with uv") for s in seen["first"]), 60)
    second = threading.Thread(target=setup, args=("second",))
    second.start()
    first.join(120)
    second.join(120)
    assert not errors, errors
    assert any(s.startswith("waiting for an engine set-up") for s in seen["second"]), seen["second"]
    assert not any(s.startswith("installing") for s in seen["second"]), seen["second"]
    assert env.missing() == []


def test_removal_is_refused_during_a_setup_and_while_a_process_runs_from_the_environment(app_paths, slow_lock):
    env = EngineEnv(app_paths, "cpu", lock_file=slow_lock)
    setup = _setup_process(slow_lock)
    lines: list[str] = []
    _read_until(setup, "installing 3 packages with uv", lines)
    with pytest.raises(EngineBusy, match=rf"an engine set-up, process {setup.pid}"):
        env.remove()
    out, _ = setup.communicate(timeout=120)
    assert setup.returncode == 0, out
    assert env.missing() == []

    # A server of a running node runs the environment's interpreter: the environment stays whole.
    user = subprocess.Popen([str(env.python), "-c", "import time; time.sleep(120)"])
    try:
        assert wait_until(lambda: env.users(), 10)
        with pytest.raises(EngineBusy, match=rf"in use by 1 running process\(es\) \(pid {user.pid}\)"):
            env.remove()
        assert env.missing() == [] and env.python.exists()
    finally:
        user.kill()
        user.wait()
    env.remove()
    assert not env.root.exists() and not list(app_paths.engine_root.glob(".removing-*"))


def test_the_cli_refuses_to_remove_an_engine_in_use(app_paths, tmp_path, monkeypatch):
    """`farnode-desktop engine remove` with a process running from the environment: exit code 2, one line
    saying what to do, the environment untouched."""
    monkeypatch.delenv("FARNODE_ENGINE_ROOT", raising=False)  # never the suite's shared engine
    root = env_root(app_paths.engine_root, "cpu")
    python = root / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    user = subprocess.Popen([str(python), "-c", "import time; time.sleep(120)"])
    try:
        done = subprocess.run([sys.executable, "-m", "farnode_desktop", "engine", "remove", "--variant", "cpu"],
                              capture_output=True, text=True, cwd=REPO, timeout=60,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
    finally:
        user.kill()
        user.wait()
    assert done.returncode == 2, done
    assert done.stderr.strip().splitlines() == [
        f"Engine environment busy: The engine environment {root} is in use by 1 running process(es) "
        f"(pid {user.pid}): a node is serving from it. Stop the node (or quit FarNode), then remove the engine."]
    assert python.is_symlink()


def test_each_lock_has_its_own_folder_and_an_earlier_releases_folder_is_adopted(app_paths, tmp_path, monkeypatch):
    monkeypatch.delenv("FARNODE_ENGINE_ROOT", raising=False)
    lock = tmp_path / "lock.txt"
    lock.write_text("farnode-probe-a==1.0\n")
    first = EngineEnv(app_paths, "cpu", lock_file=lock).root
    assert first.name == f"cpu-v{LOCK_VERSION}-{lock_digest(lock)[:12]}"
    lock.write_text("farnode-probe-a==1.1\n")  # a changed lock, the same lock version: another folder
    assert EngineEnv(app_paths, "cpu", lock_file=lock).root != first

    # An environment an earlier release made as cpu-v<version>, verified for this very lock: used in place.
    legacy = app_paths.engine_root / f"cpu-v{LOCK_VERSION}"
    legacy.mkdir(parents=True)
    (legacy / "ready.json").write_text(f'{{"lock": "{lock_digest(lock)}"}}')
    assert EngineEnv(app_paths, "cpu", lock_file=lock).root == legacy
    (legacy / "ready.json").write_text('{"lock": "0123456789abcdef"}')  # for another lock: not ours
    assert EngineEnv(app_paths, "cpu", lock_file=lock).root.name.startswith(f"cpu-v{LOCK_VERSION}-")


def test_disk_needed_follows_the_variant_and_what_is_installed(app_paths, monkeypatch):
    monkeypatch.delenv("FARNODE_ENGINE_ROOT", raising=False)
    cuda = EngineEnv(app_paths, "cuda")
    assert not cuda.venv.exists() and cuda.needed_bytes() == engine_env.NEEDED_BYTES["cuda"] == 8_000_000_000
    torch = next(r for r in engine_lock.read_lock(cuda.lock_file) if r.name == "torch")
    site = cuda.venv / "lib" / "python3.11" / "site-packages" / f"torch-{torch.version}.dist-info"
    site.mkdir(parents=True)
    (site / "RECORD").write_text("")
    assert cuda.needed_bytes() == 8_000_000_000 - 6_500_000_000  # torch and its CUDA wheels are in
    cpu = EngineEnv(app_paths, "cpu")
    assert cpu.needed_bytes() == 2_500_000_000


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB file system (tmpfs): it fills up for real."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    where = tmp_path / "small-disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], check=True)
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_while_downloading_the_engine_says_so_and_leaves_no_partial_file(
        tiny_disk, app_paths, monkeypatch, engine_archive):
    commit = "75a473e888c7bc20e7c28e96c3e0911c581bca1b"
    data = engine_archive.read_bytes()
    assert len(data) > 64 * 1024
    monkeypatch.setenv("FARNODE_ENGINE_ROOT", str(tiny_disk))
    env = EngineEnv(app_paths, "cpu")
    req = Requirement("farmesh", "2.3.0.dev2", f"git+https://github.com/QuantumLabs-Git/farmesh.git@{commit}")
    with serve_bytes(data) as served:
        with pytest.raises(DiskFullError, match=r"could not be downloaded into .*: disk full\. Free some") as e:
            env._download_archive(req, f"{served.url}/archive/{commit}.tar.gz")
    assert isinstance(e.value.__cause__, OSError) and e.value.__cause__.errno == errno.ENOSPC
    assert "internet" not in e.value.message
    assert list((env.root / "downloads").iterdir()) == []  # no .part left behind


