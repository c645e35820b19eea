"""Engine runtimes: command lines, path translation and parsing of wsl.exe / docker output (real samples in
fixtures/), plus real processes for the native runtime and the set-up step runner."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from farnode_desktop.core.engine_lock import (
    engine_requirement,
    env_folder_name,
    lock_digest,
    lock_path,
    read_lock,
)
from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.node.engine_venv import env_root
from farnode_desktop.core.node.runtimes import make_runtime, resolve_runtime_name
from farnode_desktop.core.node.runtimes.base import (
    STOP_LINE,
    EngineRuntimeError,
    NativeRuntime,
    SetupStep,
    decode_output,
    run_step,
    run_steps,
)
from farnode_desktop.core.node.runtimes.docker import (
    DockerRuntime,
    container_name,
    engine_image,
    parse_docker_version,
    parse_runtimes,
)
from farnode_desktop.core.node.runtimes.wsl import (
    Wsl2Runtime,
    WslDistro,
    choose_distro,
    parse_wsl_list,
    parse_wsl_status,
    windows_to_wsl_path,
)
from farnode_desktop.core.resources import engine_source_root
from farnode_desktop.core.settings import Settings, SettingsStore

FIX = Path(__file__).parent / "fixtures"


def fixture_text(name: str) -> str:
    return decode_output((FIX / name).read_bytes())


# ------------------------------------------------------------------------------------------- choice
@pytest.mark.parametrize("setting,platform,want", [
    ("auto", "linux", "native"), ("auto", "darwin", "native"), ("auto", "win32", "wsl2"),
    ("docker", "linux", "docker"), ("docker", "win32", "docker"), ("native", "linux", "native"),
    ("wsl2", "win32", "wsl2"),
])
def test_runtime_choice(setting, platform, want):
    assert resolve_runtime_name(setting, platform) == want


@pytest.mark.parametrize("setting,platform", [("native", "win32"), ("wsl2", "linux"), ("podman", "linux"), ("", "linux")])
def test_runtime_choice_refuses_impossible(setting, platform):
    with pytest.raises(FarNodeError) as exc:
        resolve_runtime_name(setting, platform)
    assert "Settings > Network" in exc.value.message


def test_runtime_setting_is_validated(tmp_path):
    store = SettingsStore(tmp_path / "settings.json")
    s = Settings()
    s.network.runtime = "docker"
    s.network.docker_image = "ghcr.io/me/farnode-engine:1.2"
    store.save(s)
    assert store.load().network.runtime == "docker"
    s.network.runtime = "kvm"
    with pytest.raises(FarNodeError, match="network.runtime"):
        store.save(s)
    raw = json.loads((tmp_path / "settings.json").read_text())
    raw["network"]["runtime"] = "kvm"
    raw["network"]["port"] = 40000
    (tmp_path / "settings.json").write_text(json.dumps(raw))
    with pytest.raises(FarNodeError, match="network.runtime must be auto, native, wsl2 or docker, not 'kvm'"):
        store.load()
    s = Settings()
    s.network.docker_image = "--privileged"
    assert any("docker_image" in p for p in s.validate())


def test_make_runtime_builds_each_kind(tmp_path, app_paths):
    class Eng:
        python = tmp_path / "venv" / "bin" / "python"

    native = make_runtime("native", engine=Eng(), platform="linux")
    assert isinstance(native, NativeRuntime) and native.python == str(Eng.python)
    assert isinstance(make_runtime("auto", platform="win32", variant="cuda"), Wsl2Runtime)
    docker = make_runtime("docker", paths=app_paths, platform="linux", variant="cpu")
    assert isinstance(docker, DockerRuntime) and docker.data_dir == str(app_paths.data_dir)


# ------------------------------------------------------------------------------------------- output decoding
def test_decode_output_utf16_with_and_without_bom_and_utf8():
    table = fixture_text("wsl_list_v.utf16bom")
    assert table.startswith("  NAME") and "\r" not in table and "\x00" not in table
    assert fixture_text("wsl_list_v_wsl1.utf16").startswith("  NAME")
    assert decode_output(b"Standardversion: 2\r\n") == "Standardversion: 2\n"
    assert decode_output("Wird ausgeführt".encode("utf-16-le")) == "Wird ausgeführt"
    assert decode_output(b"") == ""


# ------------------------------------------------------------------------------------------- WSL parsing
def test_wsl_list_parses_table_default_and_versions():
    distros = parse_wsl_list(fixture_text("wsl_list_v.utf16bom"))
    assert [d.name for d in distros] == ["Ubuntu-22.04", "docker-desktop", "docker-desktop-data", "Debian"]
    assert distros[0] == WslDistro("Ubuntu-22.04", "Running", 2, True)
    assert distros[3].version == 1 and not distros[3].default


def test_wsl_list_localised_and_empty():
    assert parse_wsl_list(fixture_text("wsl_list_v_de.utf16")) == [WslDistro("Ubuntu", "Wird ausgeführt", 2, True)]
    assert parse_wsl_list(fixture_text("wsl_list_v_empty.utf16")) == []
    assert parse_wsl_list("") == []


def test_wsl_status_installed_and_not():
    st = parse_wsl_status(fixture_text("wsl_status_ok.utf16bom"), 0)
    assert st.installed and st.default_distro == "Ubuntu-22.04" and st.default_version == 2
    st = parse_wsl_status(fixture_text("wsl_status_not_installed.utf16"), 0xFFFFFFFF)
    assert not st.installed and "not installed" in st.message
    assert not parse_wsl_status(fixture_text("wsl_status_not_installed.utf16"), 0).installed
    assert parse_wsl_status("Standardversion: 2\n", 0).installed  # localised but working


def test_choose_distro_prefers_wsl2_ubuntu_and_honours_a_name():
    distros = parse_wsl_list(fixture_text("wsl_list_v.utf16bom"))
    assert choose_distro(distros).name == "Ubuntu-22.04"
    assert choose_distro(distros, "debian").name == "Debian"
    assert choose_distro(distros, "Fedora") is None
    assert choose_distro(parse_wsl_list(fixture_text("wsl_list_v_wsl1.utf16"))).version == 1
    assert choose_distro([WslDistro("docker-desktop", "Stopped", 2, True)]) is None


@pytest.mark.parametrize("win,posix", [
    (r"C:\Users\Gamer\AppData\Local\farnode-desktop\models\demo", "/mnt/c/Users/Gamer/AppData/Local/farnode-desktop/models/demo"),
    ("D:\\", "/mnt/d"),
    (r"e:\Spiele\Mein Ordner\x.key", "/mnt/e/Spiele/Mein Ordner/x.key"),
    (r"\\wsl$\Ubuntu\opt\farnode\cache", "/opt/farnode/cache"),
    (r"\\wsl.localhost\Ubuntu\home", "/home"),
    ("/already/posix", "/already/posix"),
])
def test_windows_paths_become_wsl_paths(win, posix):
    assert windows_to_wsl_path(win, "Ubuntu") == posix


@pytest.mark.parametrize("bad", [r"\\nas\share\models", r"\\wsl$\Debian\opt", r"relative\path", "C:relative"])
def test_untranslatable_paths_are_refused_with_a_message(bad):
    with pytest.raises(FarNodeError):
        windows_to_wsl_path(bad, "Ubuntu")


# ------------------------------------------------------------------------------------------- WSL commands
@pytest.fixture
def wsl(tmp_path):
    host_env = {"SystemRoot": r"C:\Windows", "PATH": r"C:\Windows\System32", "FARNODE_SECRET_KEY": "0xdead",
                "PYTHONPATH": r"C:\app", "HF_HUB_OFFLINE": "1"}
    return Wsl2Runtime(source_root=r"C:\Program Files\FarNode Desktop\_internal\engine_src", variant="cuda",
                       host_env=host_env)


def test_wsl_spawn_spec(wsl):
    spec = wsl.spawn_spec("farnode_desktop.engine.launcher", [], {"FARNODE_NODE": "main"}, event_fd=7)
    a = spec.argv
    assert a[:8] == ["wsl.exe", "-d", "Ubuntu", "-u", "root", "--cd", "/opt/farnode/src", "--exec"]
    assert a[8] == "env"
    i = a.index("setsid")
    assignments = dict(x.split("=", 1) for x in a[9:i])
    assert assignments["PYTHONPATH"] == "/opt/farnode/src" and assignments["FARNODE_NODE"] == "main"
    assert assignments["HF_HUB_OFFLINE"] == "1" and "FARNODE_SECRET_KEY" not in assignments
    assert "SystemRoot" not in assignments  # the Windows env stays on Windows
    assert a[i:] == ["setsid", "-w", f"/opt/farnode/engine/{env_folder_name('cuda')}/venv/bin/python", "-m",
                     "farnode_desktop.engine.launcher", "--event-fd", "1"]
    assert spec.events_on_stdout and spec.pass_fds == () and spec.cwd is None
    assert "FARNODE_SECRET_KEY" not in spec.env and "PYTHONPATH" not in spec.env
    assert spec.env["SystemRoot"] == r"C:\Windows" and spec.env["WSL_UTF8"] == "1"
    assert "0xdead" not in " ".join(a)


def test_wsl_translates_the_launcher_config(wsl):
    cfg = {"model": r"C:\Users\G\AppData\Local\farnode-desktop\models\farmesh-demo-llama-v1",
           "identity_path": r"C:\Users\G\AppData\Local\farnode-desktop\run\identity-main.key",
           "cache_dir": r"C:\Users\G\AppData\Local\farnode-desktop\Cache\farmesh", "host": "127.0.0.1",
           "local_network": True, "port": 31337}
    out = wsl.translate_config(cfg)
    assert out["model"] == "/mnt/c/Users/G/AppData/Local/farnode-desktop/models/farmesh-demo-llama-v1"
    assert out["identity_path"].startswith("/mnt/c/Users/G/") and out["cache_dir"] == "/opt/farnode/cache"
    assert out["host"] == "127.0.0.1" and out["port"] == 31337 and cfg["cache_dir"].startswith("C:")
    public = wsl.translate_config({"model": "bigscience/bloom-560m", "host": "127.0.0.1"})
    assert public["model"] == "bigscience/bloom-560m" and public["host"] == "0.0.0.0"


def test_wsl_stop_strategy(wsl):
    st = wsl.stop_strategy(engine_pid=4242)
    assert st.stdin_line == STOP_LINE and st.signal is None and not st.kill_group
    assert st.fallback == (("wsl.exe", "-d", "Ubuntu", "-u", "root", "--exec", "kill", "-INT", "4242"),)
    assert st.kill_commands == (("wsl.exe", "-d", "Ubuntu", "-u", "root", "--exec", "kill", "-KILL", "--", "-4242"),)
    assert wsl.stop_strategy().fallback == ()


def test_wsl_setup_installs_a_distro_when_there_is_none(wsl):
    steps = wsl.setup_steps(distros=[])
    assert steps[0].argv == ("wsl.exe", "--install", "-d", "Ubuntu", "--no-launch")
    assert steps[1].argv[-2:] == ("--exec", "true")
    labels = [s.label for s in steps]
    assert labels.index("copying the engine files into WSL") < labels.index("creating the engine environment in WSL")
    copy = steps[labels.index("copying the engine files into WSL")].argv
    assert copy[-3:-1] == ("sh", "-c") and "'/mnt/c/Program Files/FarNode Desktop/_internal/engine_src/farnode_desktop'" in copy[-1]
    lock = read_lock(lock_path("cuda"))
    pips = [s for s in steps if s.label.startswith("installing ") and "pip" in s.argv]
    engine = lock[-1]
    assert engine.name == "farmesh" and engine.url
    # every package at its locked version; the engine from its pinned commit's source archive over HTTPS
    assert [s.argv[-1] for s in pips] == [r.spec for r in lock[:-1]] + [engine.archive_url]
    assert pips[-1].argv[-1] == f"https://github.com/QuantumLabs-Git/farmesh/archive/{engine.commit}.tar.gz"
    torch = next(s for s in pips if s.argv[-1].startswith("torch=="))
    assert "--no-deps" not in torch.argv and torch.weight == 40.0
    assert all("--no-deps" in s.argv for s in pips if s is not torch)
    assert "farnode_desktop.engine.probe" in steps[-2].argv
    assert json.loads(steps[-1].input) == {
        "lock": lock_digest(lock_path("cuda")), "variant": "cuda",
        "engine_source": {"kind": "archive", "where": engine.archive_url, "commit": engine.commit}}
    assert not any(s.check for s in steps)


def test_wsl_setup_reuses_and_converts_distros(wsl):
    steps = wsl.setup_steps(distros=parse_wsl_list(fixture_text("wsl_list_v.utf16bom")))
    assert wsl.distro == "Ubuntu-22.04" and not any("--install" in s.argv for s in steps)
    assert steps[0].argv[:3] == ("wsl.exe", "-d", "Ubuntu-22.04")
    old = Wsl2Runtime(source_root=r"C:\x", variant="cpu", host_env={})
    steps = old.setup_steps(distros=parse_wsl_list(fixture_text("wsl_list_v_wsl1.utf16")))
    assert steps[0].argv == ("wsl.exe", "--set-version", "Ubuntu", "2")
    assert all("--no-deps" in s.argv for s in steps if s.label.startswith("installing torch"))


def test_wsl_status_parsing(wsl):
    ok = (0, fixture_text("wsl_status_ok.utf16bom"))
    table = (0, fixture_text("wsl_list_v.utf16bom"))
    marker = (0, json.dumps({"lock": lock_digest(lock_path("cuda")), "variant": "cuda"}) + "\n")
    st = wsl.parse_status([ok, table, marker])
    assert st.available and st.engine_ready and st.details["distro"] == "Ubuntu-22.04"
    st = wsl.parse_status([ok, table, (0, '{"lock": "old"}')])
    assert st.available and not st.engine_ready and "not set up" in st.message
    st = wsl.parse_status([ok, table, (1, "cat: /opt/farnode/engine/cuda-v1/ready.json: No such file or directory")])
    assert not st.engine_ready
    st = wsl.parse_status([(1, fixture_text("wsl_status_not_installed.utf16"))])
    assert not st.available and "wsl --install" in st.message
    st = wsl.parse_status([ok, (0, fixture_text("wsl_list_v_empty.utf16"))])
    assert st.available and not st.engine_ready and "installs one" in st.message
    assert [s.argv[:2] for s in wsl.status_steps()][:2] == [("wsl.exe", "--status"), ("wsl.exe", "-l")]


# ------------------------------------------------------------------------------------------- Docker
@pytest.fixture
def docker(tmp_path):
    return DockerRuntime(source_root="/opt/FarNode/_internal/engine_src", data_dir="/home/g/.local/share/farnode-desktop",
                         variant="cuda", host_env={"PATH": "/usr/bin", "FARNODE_SECRET_X": "s", "HOME": "/home/g"})


def test_docker_spawn_spec(docker):
    spec = docker.spawn_spec("farnode_desktop.engine.launcher", [], {"A": "1"}, event_fd=9, ports=[31337])
    a = spec.argv
    assert a[:5] == ["docker", "run", "--rm", "-i", "--name"] and a[5] == "farnode-main" == spec.name
    assert a[a.index("--gpus") + 1] == "all" and a[a.index("--ipc") + 1] == "host"
    assert a[a.index("--stop-signal") + 1] == "SIGINT" and a[a.index("-p") + 1] == "31337:31337"
    vols = [a[i + 1] for i, x in enumerate(a) if x == "-v"]
    assert vols == ["farnode-cache:/cache", "/opt/FarNode/_internal/engine_src:/opt/farnode/src:ro",
                    "/home/g/.local/share/farnode-desktop:/farnode/data"]
    envs = dict(a[i + 1].split("=", 1) for i, x in enumerate(a) if x == "-e")
    assert envs["PYTHONPATH"] == "/opt/farnode/src" and envs["A"] == "1" and "FARNODE_SECRET_X" not in envs
    assert envs["FARMESH_CACHE"] == "/cache" and "PETALS_CACHE" not in envs  # the cache FarMesh reads
    image = engine_image("cuda")  # built here from the lock (tests/core/node/test_docker_image.py)
    assert a[a.index(image):] == [image, "python", "-m", "farnode_desktop.engine.launcher", "--event-fd", "1"]
    assert spec.events_on_stdout and spec.pass_fds == () and "FARNODE_SECRET_X" not in spec.env


def test_docker_cpu_no_gpus_local_publish_and_bad_input(tmp_path):
    rt = DockerRuntime(source_root="/s", data_dir="/d", variant="cpu", image="me/farnode-engine:1", publish_host="127.0.0.1",
                       host_env={})
    a = rt.spawn_spec("farnode_desktop.engine.traffic", [], None, None, ports=[8080], node_id="gpu-1").argv
    assert "--gpus" not in a and a[a.index("-p") + 1] == "127.0.0.1:8080:8080" and "me/farnode-engine:1" in a
    assert a[a.index("--name") + 1] == "farnode-gpu-1"
    with pytest.raises(FarNodeError):
        rt.spawn_spec("m", [], None, None, ports=[70000])
    with pytest.raises(FarNodeError):
        container_name("a b; rm -rf /")


def test_docker_translates_paths_into_its_mounts(docker):
    cfg = {"model": "/home/g/.local/share/farnode-desktop/models/demo", "identity_path":
           "/home/g/.local/share/farnode-desktop/run/identity-main.key", "cache_dir": "/home/g/.cache/x",
           "host": "127.0.0.1"}
    out = docker.translate_config(cfg)
    assert out == {"model": "/farnode/data/models/demo", "identity_path": "/farnode/data/run/identity-main.key",
                   "cache_dir": "/cache", "host": "0.0.0.0"}
    with pytest.raises(FarNodeError, match="outside the folders shared"):
        docker.translate_path("/mnt/models/x")
    win = DockerRuntime(source_root=r"C:\FarNode\_internal\engine_src", data_dir=r"C:\Users\G\AppData\Local\farnode-desktop",
                        host_env={})
    assert win.translate_path(r"C:\Users\G\AppData\Local\farnode-desktop\models\demo") == "/farnode/data/models/demo"
    assert win.translate_config({"model": "bigscience/bloom-560m"})["model"] == "bigscience/bloom-560m"


def test_docker_stop_strategy(docker):
    st = docker.stop_strategy(node_id="main")
    assert st.stdin_line == STOP_LINE and st.fallback == (("docker", "stop", "-t", "20", "farnode-main"),)
    assert st.kill_commands == (("docker", "rm", "-f", "farnode-main"),)


def test_docker_output_parsing():
    ok = parse_docker_version((FIX / "docker_version_ok.json").read_text(), 0)
    assert ok.reachable and ok.server_version == "28.2.2" and ok.platform.startswith("Docker Desktop")
    down = parse_docker_version((FIX / "docker_version_no_daemon.txt").read_text(), 1)
    assert not down.reachable and "Cannot connect to the Docker daemon" in down.message
    assert parse_runtimes((FIX / "docker_info_runtimes.json").read_text()) == {"io.containerd.runc.v2", "nvidia", "runc"}
    assert parse_runtimes("garbage") == set()


def test_docker_status_parsing(docker):
    ver = (0, (FIX / "docker_version_ok.json").read_text())
    rts = (0, (FIX / "docker_info_runtimes.json").read_text())
    labels = json.dumps({"farnode.lock": lock_digest(lock_path("cuda")),
                         "farnode.engine.commit": engine_requirement(read_lock(lock_path("cuda"))).commit})
    st = docker.parse_status([ver, rts, (0, f"sha256:7b1c0a9f {labels}\n")])
    assert st.available and not st.engine_ready and st.details["gpu"] and "not verified yet" in st.message
    st = docker.parse_status([ver, rts, (1, f"Error: No such image: {docker.image}")])
    assert st.available and not st.engine_ready and "not built yet" in st.message
    linux_no_gpu = (0, ver[1].replace("Docker Desktop 4.42.0 (195023)", "Docker Engine - Community"))
    st = docker.parse_status([linux_no_gpu, (0, '{"runc":{"path":"runc"}}'), (0, "sha256:1")])
    assert not st.engine_ready and "NVIDIA Container Toolkit" in st.message


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI on this machine")
def test_docker_status_against_the_real_cli(docker):
    """The real docker CLI: whatever the daemon's state, the parse gives a coherent answer."""
    rt = DockerRuntime(source_root="/s", data_dir="/d", host_env={})
    outputs = [(r.returncode, r.output) for r in (run_step(s) for s in rt.status_steps())]
    st = rt.parse_status(outputs)
    if outputs[0][0] != 0:
        assert not st.available and "Docker is not running" in st.message
    else:
        assert st.available


# ------------------------------------------------------------------------------------------- native, for real
def _engine_python() -> str:
    root = os.environ.get("FARNODE_ENGINE_ROOT")
    if root:
        for variant in ("cpu", "cuda"):
            py = env_root(Path(root), variant) / "venv" / "bin" / "python"
            if py.exists():
                return str(py)
    return sys.executable  # the launcher's start-up (config handshake) needs only the standard library


@pytest.mark.skipif(os.name == "nt", reason="native runtime is Linux/macOS")
@pytest.mark.parametrize("on_stdout", [False, True])
def test_native_spawn_spec_runs_the_real_launcher(on_stdout):
    """A launcher given a bad configuration reports a config failure on the event channel and exits 2,
    through both channel layouts a SpawnSpec can describe."""
    rt = NativeRuntime(_engine_python(), engine_source_root())
    r_fd = w_fd = None
    if not on_stdout:
        r_fd, w_fd = os.pipe()
    spec = rt.spawn_spec("farnode_desktop.engine.launcher", [], {"FARNODE_TEST": "1"}, w_fd)
    assert spec.events_on_stdout is on_stdout and spec.env["PYTHONPATH"] == str(engine_source_root())
    proc = subprocess.Popen(spec.argv, **spec.popen_kwargs())
    if w_fd is not None:
        os.close(w_fd)
    out, err = proc.communicate(b"this is not json\n", timeout=60)
    if on_stdout:
        events = out
    else:
        with os.fdopen(r_fd, "rb") as f:
            events = f.read()
    kinds = [json.loads(line) for line in events.splitlines() if line.strip()]
    assert proc.returncode == 2, err
    kinds = [k for k in kinds if k["e"] != "phase"]  # the start's timeline (its process phase) comes first
    assert kinds and kinds[0]["e"] == "failed" and kinds[0]["category"] == "config"
    st = rt.stop_strategy()
    assert st.signal == signal.SIGINT and st.stdin_line is None and st.kill_group  # one SIGINT, no "stop"


# ------------------------------------------------------------------------------------------- step runner, for real
def test_run_steps_progress_failures_and_checks():
    py = sys.executable
    seen = []
    steps = [SetupStep("saying hello", (py, "-c", "print('hello')"), weight=1),
             SetupStep("probing", (py, "-c", "import sys; sys.exit(3)"), check=True, weight=1),
             SetupStep("reading stdin", (py, "-c", "import sys; print(sys.stdin.read().upper())"), weight=2,
                       input=b"abc")]
    results = run_steps(steps, progress=seen.append)
    assert [r.returncode for r in results] == [0, 3, 0] and results[2].output.strip() == "ABC"
    assert [round(p.percent) for p in seen] == [0, 25, 50, 100] and seen[-1].done
    with pytest.raises(EngineRuntimeError) as exc:
        run_steps([SetupStep("installing torch", (py, "-c", "import sys; print('No space left on device'); sys.exit(1)"))])
    assert "installing torch" in exc.value.message and "No space left" in exc.value.message
    with pytest.raises(EngineRuntimeError, match="cancelled"):
        run_steps(steps, cancel=lambda: True)


def test_run_step_missing_program_and_timeout():
    assert run_step(SetupStep("x", ("/nonexistent/wsl.exe", "--status"))).returncode == 127
    res = run_step(SetupStep("slow", (sys.executable, "-c", "import time; time.sleep(5)"), timeout_s=0.5))
    assert res.returncode == 124 and "timed out" in res.output
