"""The engine environment manager with a small real lock: real pip, against a real (local) package index."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from farnode_desktop.core import engine_lock
from farnode_desktop.core.engine_lock import read_lock
from farnode_desktop.core.errors import DiskFullError, EngineEnvError
from farnode_desktop.core.node import engine_venv as engine_env
from farnode_desktop.core.node.engine_venv import EngineEnv
from tests.support.http_files import serve_bytes
from tests.support.ports import free_port


@pytest.fixture
def tiny(app_paths, tmp_path, monkeypatch, package_index):
    monkeypatch.delenv("FARNODE_ENGINE_ROOT", raising=False)
    lock = tmp_path / "tiny.txt"
    lock.write_text("# two small pure-Python packages\nfarnode-probe-a==1.0\nfarnode-probe-b==2.0\n")
    return EngineEnv(app_paths, "cpu", lock_file=lock)


def test_the_shipped_locks_pin_every_package():
    for variant in engine_env.VARIANTS:
        reqs = read_lock(engine_lock.lock_path(variant))
        names = [r.name.lower() for r in reqs]
        assert {"torch", "farmesh", "hivemind", "transformers", "bitsandbytes"} <= set(names)
        assert all(r.version for r in reqs) and len(names) == len(set(names))


def test_install_reports_progress_and_resumes(tiny):
    """One uv run installs the lock; each package is reported once its RECORD is written; a set-up cancelled
    before it ends leaves nothing running, and the next one installs only what is missing."""
    seen = []
    with pytest.raises(EngineEnvError, match="cancelled"):
        tiny.ensure(seen.append, cancel=lambda: tiny.python.exists(), verify=False)
    assert [p.step for p in seen] == ["creating the engine environment"]

    seen.clear()
    tiny.ensure(seen.append, verify=False)
    steps = [p.step for p in seen]
    assert steps[0] == "creating the engine environment"
    assert steps[1] == "installing 2 packages with uv (farnode-probe-a, farnode-probe-b)"
    assert sorted(s for s in steps if s.startswith("installed ")) == [
        "installed farnode-probe-a 1.0 (1/2)", "installed farnode-probe-b 2.0 (2/2)"] or sorted(
        s for s in steps if s.startswith("installed ")) == [
        "installed farnode-probe-a 1.0 (2/2)", "installed farnode-probe-b 2.0 (1/2)"]
    assert tiny.missing() == []

    site = tiny.site_packages()
    (next(site.glob("farnode_probe_b-*.dist-info")) / "RECORD").unlink()  # b's install was cut short
    assert [r.name for r in tiny.missing()] == ["farnode-probe-b"]
    seen.clear()
    tiny.ensure(seen.append, verify=False)  # resumes: only what is missing
    assert [p.step for p in seen if p.step.startswith("install")] == [
        "installing farnode-probe-b 2.0 (1/1)", "installed farnode-probe-b 2.0 (1/1)"]
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


# ---------------------------------------------------------------------------------------------- the engine's source

PINNED = "75a473e888c7bc20e7c28e96c3e0911c581bca1b"


def test_the_lock_pins_farmesh_from_its_git_source_and_petals_is_gone():
    for variant in engine_env.VARIANTS:
        reqs = read_lock(engine_lock.lock_path(variant))
        eng = engine_lock.engine_requirement(reqs)
        assert (eng.name, eng.version, eng.commit) == ("farmesh", "2.3.0.dev2", PINNED)
        assert eng.url == f"git+https://github.com/QuantumLabs-Git/farmesh.git@{PINNED}"
        assert eng.archive_url == f"https://github.com/QuantumLabs-Git/farmesh/archive/{PINNED}.tar.gz"
        assert reqs[-1] == eng  # installed last, on top of its dependencies
        assert "petals" not in {r.name.lower() for r in reqs}
        versions = {r.name.lower(): r.version for r in reqs}
        torch = "2.13.0+cpu" if variant == "cpu" else "2.13.0"  # PyTorch's CPU build; PyPI's CUDA build
        assert (versions["transformers"], versions["hivemind"], versions["torch"]) == ("4.43.1", "1.1.12", torch)


def test_pip_takes_torch_of_the_cpu_variant_from_pytorchs_cpu_index():
    """PyPI's torch 2.13.0 is the CUDA build; installed with --no-deps (as the CPU lock does) it fails to import
    (libcudnn.so.9 missing). The CPU variant pins the +cpu build and asks PyTorch's CPU index for it."""
    reqs = {r.name: r for r in read_lock(engine_lock.lock_path("cpu"))}
    cuda = {r.name: r for r in read_lock(engine_lock.lock_path("cuda"))}
    opts = engine_lock.pip_install_options
    assert reqs["torch"].spec == "torch==2.13.0+cpu"
    assert opts(reqs["torch"], "cpu", {}) == ["--no-deps", "--extra-index-url", "https://download.pytorch.org/whl/cpu"]
    assert opts(reqs["torch"], "cpu", {"FARNODE_TORCH_INDEX": "http://mirror.lan/cpu"})[-1] == "http://mirror.lan/cpu"
    assert opts(reqs["torch"], "cpu", {"FARNODE_TORCH_INDEX": ""}) == ["--no-deps"]  # pip's own configuration
    assert opts(cuda["torch"], "cuda", {}) == []  # with its nvidia-* dependencies, from PyPI
    assert all(opts(r, v, {}) == ["--no-deps"] for v, lock in (("cpu", reqs), ("cuda", cuda))
               for r in lock.values() if r.name != "torch")


def test_the_shared_archive_carries_the_pinned_commit(engine_archive):
    assert engine_lock.archive_commit(engine_archive) == PINNED


def _lock_with_engine(tmp_path, url: str):
    lock = tmp_path / "engine-lock.txt"
    lock.write_text(f"farnode-probe-a==1.0\nfarmesh==2.3.0.dev2 @ {url}\n")
    return lock


@pytest.fixture
def tiny_engine(app_paths, tmp_path, monkeypatch, build_tools):
    """A two-line lock (a small package from the local index, and the engine itself): installs in seconds;
    not verified (no torch)."""
    monkeypatch.delenv("FARNODE_ENGINE_ROOT", raising=False)
    monkeypatch.delenv(engine_lock.SOURCE_ENV, raising=False)
    lock = _lock_with_engine(tmp_path, f"git+https://github.com/QuantumLabs-Git/farmesh.git@{PINNED}")
    return EngineEnv(app_paths, "cpu", lock_file=lock)


def _record(env: EngineEnv) -> dict:
    import json

    return json.loads((env.root / env.SOURCE_RECORD).read_text())


def test_the_engine_installs_from_a_local_archive_with_its_commit_recorded(tiny_engine, engine_archive, monkeypatch):
    monkeypatch.setenv(engine_lock.SOURCE_ENV, str(engine_archive))
    tiny_engine.ensure(verify=False)
    assert tiny_engine.installed()["farmesh"] == "2.3.0.dev2" and tiny_engine.missing() == []
    assert _record(tiny_engine) == {"kind": "local", "where": str(engine_archive.resolve()), "commit": PINNED}
    assert (next(tiny_engine.site_packages().glob("farmesh/server/server.py"))).is_file()


def test_the_setting_names_the_local_source_and_a_wrong_or_missing_one_is_refused_first(tiny_engine, tmp_path):
    tiny_engine.source = str(tmp_path / "nowhere.tar.gz")
    with pytest.raises(EngineEnvError, match=r"nowhere\.tar\.gz \(from the engine source setting\) does not exist"):
        tiny_engine.ensure(verify=False)
    assert not tiny_engine.venv.exists()
    # an archive of another commit (git archive writes the commit into the header)
    import subprocess

    repo = tmp_path / "other"
    repo.mkdir()
    (repo / "x.txt").write_text("x")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    other = tmp_path / "other.tar.gz"
    subprocess.run([*git, "archive", "-o", str(other), "HEAD"], check=True)
    tiny_engine.source = str(other)
    with pytest.raises(EngineEnvError, match=f"holds farmesh commit [0-9a-f]{{40}}, but .* needs commit {PINNED}"):
        tiny_engine.ensure(verify=False)
    assert not tiny_engine.venv.exists()


def _git_repo_of(archive, where):
    """A real Git repository holding the archive's files, and its commit."""
    import subprocess
    import tarfile

    where.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(where, filter="data")
    src = next(where.iterdir())
    git = ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "farmesh"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    return src, commit


def test_the_engine_installs_from_git_at_the_locked_commit(app_paths, tmp_path, monkeypatch, engine_archive,
                                                            build_tools):
    """The users' path, with git: pip clones the engine's Git URL at the full commit id (a local repository
    stands in for the one on GitHub) and the commit pip recorded is checked and kept."""
    monkeypatch.delenv("FARNODE_ENGINE_ROOT", raising=False)
    monkeypatch.delenv(engine_lock.SOURCE_ENV, raising=False)
    src, commit = _git_repo_of(engine_archive, tmp_path / "git")
    env = EngineEnv(app_paths, "cpu", lock_file=_lock_with_engine(tmp_path, f"git+file://{src}@{commit}"))
    env.ensure(verify=False)
    assert _record(env) == {"kind": "git", "where": f"git+file://{src}@{commit}", "commit": commit}
    assert env.missing() == []


def test_without_git_the_commits_archive_is_downloaded(app_paths, tmp_path, monkeypatch, engine_archive,
                                                         build_tools):
    """No git on the machine: the commit's source archive comes over HTTP(S) (a local server answers like
    GitHub's archive URL), its header's commit is checked, then pip installs it."""
    monkeypatch.delenv("FARNODE_ENGINE_ROOT", raising=False)
    monkeypatch.delenv(engine_lock.SOURCE_ENV, raising=False)
    monkeypatch.setattr(engine_env.shutil, "which", lambda name: None if name == "git" else "/usr/bin/" + name)
    archive = f"/QuantumLabs-Git/farmesh/archive/{PINNED}.tar.gz"
    with serve_bytes(engine_archive.read_bytes(), archive) as served:
        url = f"git+{served.url}/QuantumLabs-Git/farmesh.git@{PINNED}"
        env = EngineEnv(app_paths, "cpu", lock_file=_lock_with_engine(tmp_path, url))
        env.ensure(verify=False)
    assert served.hits == [archive]
    assert _record(env)["kind"] == "archive" and _record(env)["commit"] == PINNED
    assert env.installed()["farmesh"] == "2.3.0.dev2" and env.missing() == []


def test_an_install_cut_short_is_not_counted(tiny):
    """pip killed mid-install leaves a dist-info folder without its RECORD (written last): still missing."""
    tiny.ensure(verify=False)
    record = next(tiny.site_packages().glob("farnode_probe_b-2.0.dist-info")) / "RECORD"
    record.unlink()
    assert [r.name for r in tiny.missing()] == ["farnode-probe-b"]
    tiny.ensure(verify=False)
    assert tiny.missing() == [] and record.is_file()


def test_no_connection_to_the_git_source_says_what_to_do(app_paths, tmp_path, monkeypatch, build_tools):
    monkeypatch.delenv("FARNODE_ENGINE_ROOT", raising=False)
    monkeypatch.delenv(engine_lock.SOURCE_ENV, raising=False)
    port = free_port()  # nothing listens there
    url = f"git+http://127.0.0.1:{port}/QuantumLabs-Git/farmesh.git@{PINNED}"
    env = EngineEnv(app_paths, "cpu", lock_file=_lock_with_engine(tmp_path, url))
    with pytest.raises(EngineEnvError) as ei:
        env.ensure(verify=False)
    assert f"no connection to its Git source (http://127.0.0.1:{port}/QuantumLabs-Git/farmesh)" in ei.value.message
    assert "set the engine source to a local archive" in ei.value.message
    assert env.missing() and [r.name for r in env.missing()] == ["farmesh"]  # the rest went in; it resumes


def _sha256(path) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_tampered_wheel_is_refused_by_its_hash(tiny, package_index):
    """The lock carries each file's sha256: a wheel on the index that differs (a tampered mirror) is refused
    and nothing of the lock is installed."""
    wheels = package_index.folder
    a, b = sorted(wheels.glob("farnode_probe_a-*.whl"))[0], sorted(wheels.glob("farnode_probe_b-*.whl"))[0]
    locked = _sha256(b)
    tiny.lock_file.write_text(f"farnode-probe-a==1.0 --hash={_sha256(a)}\nfarnode-probe-b==2.0 --hash={locked}\n")
    assert engine_lock.lock_is_hashed(read_lock(tiny.lock_file))
    with open(b, "ab") as f:  # a byte more: still a valid zip to most readers, but not the locked file
        f.write(b"\0")
    with pytest.raises(EngineEnvError, match="does not match the hash the engine lock records") as err:
        tiny.ensure(verify=False)
    assert err.value.title == "Engine package refused"
    assert not any(n.startswith("farnode-probe") for n in tiny.installed())  # nothing, not even the good one

    b.unlink()
    from tests.core.node.package_index import make_wheel

    # a new build of the same version: other bytes, other hash (a payload, since two builds of the same files
    # within zip's 2-second timestamps would be the same bytes)
    assert _sha256(make_wheel(wheels, "farnode-probe-b", "2.0", payload_bytes=16)) != locked
    with pytest.raises(EngineEnvError, match="does not match the hash"):
        tiny.ensure(verify=False)


def test_the_lock_with_hashes_installs_with_uv_and_with_pip(tiny, package_index, monkeypatch):
    wheels = package_index.folder
    a, b = sorted(wheels.glob("farnode_probe_a-*.whl"))[0], sorted(wheels.glob("farnode_probe_b-*.whl"))[0]
    tiny.lock_file.write_text(f"farnode-probe-a==1.0 \\\n    --hash={_sha256(a)}\nfarnode-probe-b==2.0 --hash={_sha256(b)}\n")
    tiny.ensure(verify=False)
    assert tiny.missing() == []


def _bundled_wheels() -> set[str]:
    """name-version of the wheels ensurepip of this Python installs (pip; setuptools before 3.12)."""
    import ensurepip

    return {"-".join(w.name.split("-")[:2]) for w in (Path(ensurepip.__file__).parent / "_bundled").glob("*.whl")}


def _venv_packages(env: EngineEnv) -> set[str]:
    return {"-".join(d.name[: -len(".dist-info")].split("-")[:2]) for d in env.site_packages().glob("*.dist-info")}


def test_uv_makes_the_venv_with_the_pip_python_m_venv_would_put_in_it(tiny, monkeypatch):
    """uv makes the environment (a fraction of ensurepip's time) with ensurepip's own wheels in it, offline:
    the same pip and setuptools as ``python -m venv`` gives, and pip runs."""
    monkeypatch.setenv("UV_CACHE_DIR", str(tiny.root / "empty-uv-cache"))  # nothing cached: from the wheels only
    tiny.ensure(verify=False)
    assert "uv = " in (tiny.venv / "pyvenv.cfg").read_text()
    bundled = _bundled_wheels()
    assert any(b.startswith("pip-") for b in bundled)
    assert _venv_packages(tiny) == bundled | {"farnode_probe_a-1.0", "farnode_probe_b-2.0"}
    done = subprocess.run([str(tiny.python), "-m", "pip", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith(f"pip {next(b for b in bundled if b.startswith('pip-'))[4:]} ")


def test_where_uv_cannot_make_the_venv_python_m_venv_does(tiny, monkeypatch, caplog):
    """A uv that fails at ``uv venv`` (an old uv, a Python it does not accept) costs nothing but the time:
    ``python -m venv`` makes the environment, uv still installs the lock."""
    real = engine_env.find_uv()
    standin = tiny.root / "uv-without-venv"
    tiny.root.mkdir(parents=True, exist_ok=True)
    standin.write_text(f'#!/bin/sh\nif [ "$1" = venv ]; then echo "error: no venv here" >&2; exit 2; fi\n'
                       f'exec "{real}" "$@"\n')
    standin.chmod(0o755)
    monkeypatch.setenv(engine_env.UV_ENV, str(standin))
    seen = []
    with caplog.at_level("WARNING"):
        tiny.ensure(seen.append, verify=False)
    assert "uv could not make the engine's environment (error: no venv here)" in caplog.text
    assert "uv = " not in (tiny.venv / "pyvenv.cfg").read_text()  # python -m venv's
    assert [p.step for p in seen][1] == "installing 2 packages with uv (farnode-probe-a, farnode-probe-b)"
    assert tiny.missing() == [] and _venv_packages(tiny) >= _bundled_wheels()


def test_without_uv_the_setup_falls_back_to_pip_and_says_so(tiny, monkeypatch):
    monkeypatch.setenv(engine_env.UV_ENV, str(tiny.root / "no-uv-here"))
    assert engine_env.find_uv() is None
    seen = []
    tiny.ensure(seen.append, verify=False)
    steps = [p.step for p in seen]
    assert steps[1] == (f"{engine_env.UV_ENV} names no usable uv binary: installing with pip, package by package "
                        "(slower)")
    assert [s for s in steps if s.startswith("installing farnode")] == [
        "installing farnode-probe-a 1.0 (1/2)", "installing farnode-probe-b 2.0 (2/2)"]
    assert tiny.missing() == []


def test_pips_configured_indexes_become_uv_options(tmp_path, monkeypatch):
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://mirror.example/simple\nfind-links = /srv/wheels\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_NO_CACHE_DIR"):
        monkeypatch.delenv(key, raising=False)
    assert engine_env.pip_config_options() == ["--index-url", "https://mirror.example/simple",
                                               "--find-links", "/srv/wheels"]
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "https://a.example/simple https://b.example/simple")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple/")  # the environment wins over pip.conf
    assert engine_env.pip_config_options() == ["--index-url", "http://127.0.0.1:9/simple/",
                                               "--extra-index-url", "https://a.example/simple",
                                               "--extra-index-url", "https://b.example/simple",
                                               "--find-links", "/srv/wheels"]


def test_the_cuda_variants_lock_installs_with_uv_torch_with_its_nvidia_wheels(app_paths, tmp_path, monkeypatch,
                                                                               package_index):
    """The CUDA variant's shape, against a local index of small stand-in wheels (the real ones are several GB):
    torch is installed with its dependencies (the nvidia-* runtime wheels its CUDA build requires, which the
    lock does not pin) in uv's torch run, checked against the lock's hash; the rest with --no-deps in one run,
    hash-checked; a tampered torch is refused."""
    monkeypatch.delenv("FARNODE_ENGINE_ROOT", raising=False)
    # The stand-ins take a few hundred kB, not the real variant's 8 GB: the disk check (tested in
    # test_engine_lock.py) is told so, or a CI machine with less free space refuses the set-up before it starts.
    monkeypatch.setitem(engine_env.NEEDED_BYTES, "cuda", 200_000_000)
    from tests.core.node.package_index import make_wheel

    wheels = package_index.folder
    torch = make_wheel(wheels, "torch", "2.13.0", requires=("nvidia-cublas-cu12==12.8.4.1",
                                                            "nvidia-cudnn-cu12==9.10.2.21"))
    make_wheel(wheels, "nvidia-cublas-cu12", "12.8.4.1", payload_bytes=200_000)
    make_wheel(wheels, "nvidia-cudnn-cu12", "9.10.2.21", requires=("nvidia-cublas-cu12",))
    a, b = sorted(wheels.glob("farnode_probe_a-*.whl"))[0], sorted(wheels.glob("farnode_probe_b-*.whl"))[0]
    lock = tmp_path / "cuda.txt"
    lock.write_text(f"torch==2.13.0 \\\n    --hash={_sha256(torch)}\nfarnode-probe-a==1.0 --hash={_sha256(a)}\n"
                    f"farnode-probe-b==2.0 --hash={_sha256(b)}\n")
    env = EngineEnv(app_paths, "cuda", lock_file=lock)
    seen = []
    env.ensure(seen.append, verify=False)
    have = env.installed()
    assert {"torch", "nvidia-cublas-cu12", "nvidia-cudnn-cu12", "farnode-probe-a", "farnode-probe-b"} <= set(have)
    assert env.missing() == []
    steps = [p.step for p in seen]
    assert "installing torch 2.13.0 (1/3)" in steps and "installing 2 packages with uv (farnode-probe-a, " \
        "farnode-probe-b)" in steps, steps

    env.remove()
    with open(torch, "ab") as f:  # a tampered torch on the mirror
        f.write(b"\0")
    fresh = EngineEnv(app_paths, "cuda", lock_file=lock)
    with pytest.raises(EngineEnvError, match="does not match the hash"):
        fresh.ensure(verify=False)
    assert "torch" not in fresh.installed()
