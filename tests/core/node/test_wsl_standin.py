"""The stand-in wsl.exe (tests/support/wsl_standin) behaves as WSL does where the app relies on it, and the WSL
runtime reads it: UTF-16 listings, distributions missing, WSL 1, stopped or cold, WSLENV the only way in,
drive paths, and a Linux process that outlives a killed wsl.exe with its standard input closed."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from farnode_desktop.core.node.runtimes.base import SetupStep, decode_output, run_step
from farnode_desktop.core.node.runtimes.wsl import Wsl2Runtime, parse_wsl_list, parse_wsl_status
from tests.support.wait import wait_until
from tests.support.wsl_standin import WslStandin


@pytest.fixture
def machine(tmp_path):
    m = WslStandin(tmp_path / "pc")
    yield m
    m.kill_everything()


def runtime_for(m: WslStandin, **env) -> Wsl2Runtime:
    host = {"PATH": os.environ["PATH"], "FARNODE_WINDOWS_DRIVES": f"c={m.drive_c};d={m.drive_d}", **env}
    return Wsl2Runtime(source_root="/nowhere", variant="cpu", host_env=host, wsl=str(m.exe))


def wsl(m: WslStandin, *args, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(m.exe), *args], capture_output=True, timeout=60,
                          env={"PATH": os.environ["PATH"], **(env or {})}, **kw)


def test_listings_are_utf16_as_windows_prints_them(machine):
    machine.add_distro("Ubuntu-22.04", version=2, state="Running", default=True)
    machine.add_distro("docker-desktop", version=2, state="Stopped", default=False)
    raw = wsl(machine, "--list", "--verbose").stdout
    assert raw[1:2] == b"\x00" and b"\r\x00\n\x00" in raw  # UTF-16LE, CRLF
    distros = parse_wsl_list(decode_output(raw))
    assert [(d.name, d.state, d.version, d.default) for d in distros] == [
        ("Ubuntu-22.04", "Running", 2, True), ("docker-desktop", "Stopped", 2, False)]
    status = wsl(machine, "--status")
    assert status.stdout[1:2] == b"\x00"
    assert parse_wsl_status(decode_output(status.stdout), status.returncode).default_distro == "Ubuntu-22.04"
    utf8 = wsl(machine, "-l", "-v", env={"WSL_UTF8": "1"}).stdout
    assert b"\x00" not in utf8 and b"Ubuntu-22.04" in utf8


def test_first_start_states_each_get_their_message(tmp_path):
    """Not installed, no distribution, WSL 1, stopped: what the runtime's status says over the stand-in."""
    def status(m):
        rt = runtime_for(m)
        return rt.parse_status([(r.returncode, r.output) for r in (run_step(s) for s in rt.status_steps())])

    absent = WslStandin(tmp_path / "a", installed=False)
    st = status(absent)
    assert not st.available and "wsl --install" in st.message

    empty = WslStandin(tmp_path / "b")
    st = status(empty)
    assert st.available and not st.engine_ready and "No Ubuntu distribution" in st.message
    steps = runtime_for(empty).setup_steps("cpu", distros=[])
    assert steps[0].argv[1:4] == ("--install", "-d", "Ubuntu")

    old = WslStandin(tmp_path / "c")
    old.add_distro("Ubuntu", version=1)
    st = status(old)
    assert "WSL 1" in st.message and "converts it to WSL 2" in st.message
    listed = parse_wsl_list(decode_output(wsl(old, "-l", "-v").stdout))
    convert = runtime_for(old).setup_steps("cpu", distros=listed)[0]
    assert run_step(convert).returncode == 0 and old.state()["version"] == 2

    stopped = WslStandin(tmp_path / "d")
    stopped.add_distro("Ubuntu", state="Stopped")
    st = status(stopped)  # reading ready.json starts it
    assert st.available and not st.engine_ready and st.message == "The engine is not set up in WSL yet."
    assert stopped.state()["state"] == "Running"
    # the set-up installs a missing distribution, which the next status sees
    res = run_step(steps[0].__class__(steps[0].label, (str(empty.exe), *steps[0].argv[1:])))
    assert res.returncode == 0 and "has been installed" in res.output
    assert "No Ubuntu" not in status(empty).message


def test_a_cold_start_delays_the_first_call_only(tmp_path):
    m = WslStandin(tmp_path / "pc", cold_start_s=2.0)
    m.add_distro("Ubuntu")
    t0 = time.monotonic()
    assert wsl(m, "--status").returncode == 0
    first = time.monotonic() - t0
    t0 = time.monotonic()
    assert wsl(m, "--status").returncode == 0
    assert first >= 2.0 and time.monotonic() - t0 < 1.5


def test_only_wslenv_variables_cross_and_paths_map_to_the_drives(machine):
    machine.add_distro("Ubuntu")
    folder = machine.drive_path(r"C:\Users\Jöns Smith\AppData\Local")
    folder.mkdir(parents=True)
    (folder / "x.txt").write_text("hello från C")
    (machine.drive_d / "Data Folder").mkdir()
    (machine.drive_d / "Data Folder" / "y.txt").write_text("D too")
    rt = runtime_for(machine)
    inside = rt.translate_path(folder / "x.txt")
    assert inside == "/mnt/c/Users/Jöns Smith/AppData/Local/x.txt"
    assert rt.translate_path(machine.drive_d / "Data Folder") == "/mnt/d/Data Folder"
    done = wsl(machine, *rt.wsl_cmd("cat", inside, "/mnt/d/Data Folder/y.txt")[1:])
    assert done.returncode == 0 and done.stdout.decode() == "hello från CD too"
    env = {"SHARED": "yes", "NOT_SHARED": "no", "WSLENV": "SHARED"}
    out = wsl(machine, "-d", "Ubuntu", "--exec", "env", env=env).stdout.decode()
    assert "SHARED=yes" in out and "NOT_SHARED" not in out and "WSL_DISTRO_NAME=Ubuntu" in out
    # `--` hands the joined line to the shell (arguments with spaces split again); --exec keeps them
    split = wsl(machine, "-d", "Ubuntu", "--", "printf", "'%s|'", "a b").stdout.decode()
    kept = wsl(machine, "-d", "Ubuntu", "--exec", "printf", "%s|", "a b").stdout.decode()
    assert split == "a|b|" and kept == "a b|"
    assert wsl(machine, "-d", "Nope", "--exec", "true").returncode != 0


def _settled(machine, program: str) -> list[int] | None:
    """The processes inside once ``program`` runs there and the set stays the same for 0.3 s; else None."""
    before = machine.inside_pids()
    if not any(c.startswith(program + " ") for c in machine.inside_cmdlines()):
        return None
    time.sleep(0.3)
    return before if machine.inside_pids() == before else None


def test_a_killed_wsl_exe_leaves_its_linux_process_running_with_stdin_closed(machine, tmp_path):
    machine.add_distro("Ubuntu")
    flag = machine.drive_c / "eof.txt"
    script = ("import sys, time\nsys.stdin.buffer.read()\nopen(sys.argv[1], 'w').write('eof')\n"
              "time.sleep(300)\n")
    proc = subprocess.Popen([str(machine.exe), "-d", "Ubuntu", "--exec", "python3", "-c", script,
                             "/mnt/c/eof.txt"], stdin=subprocess.PIPE, start_new_session=True)
    inner = wait_until(lambda: _settled(machine, "python3"), 30)  # its start done (under load, a while)
    assert inner
    assert os.getsid(inner[0]) != os.getsid(proc.pid)  # a session of its own: taskkill /t does not reach it
    os.killpg(proc.pid, signal.SIGKILL)  # taskkill /f /t of wsl.exe
    proc.wait()
    proc.stdin.close()
    assert wait_until(flag.exists, 15)
    assert machine.inside_pids() == inner  # and it keeps running (microsoft/WSL#2496)
    assert wsl(machine, "--terminate", "Ubuntu").returncode == 0
    assert machine.inside_pids() == [] and machine.state()["state"] == "Stopped"


def test_shutdown_ends_everything_and_the_next_call_is_cold_again(machine):
    machine.add_distro("Ubuntu")
    machine.write_config(cold_start_s=1.0)
    proc = subprocess.Popen([str(machine.exe), "-d", "Ubuntu", "--exec", "sleep", "300"], stdin=subprocess.DEVNULL)
    assert wait_until(lambda: machine.inside_pids(), 30)
    assert wsl(machine, "--shutdown").returncode == 0
    assert proc.wait(10) != 0 and machine.inside_pids() == []
    t0 = time.monotonic()
    wsl(machine, "-d", "Ubuntu", "--exec", "true")
    assert time.monotonic() - t0 >= 1.0 and machine.state()["state"] == "Running"


def test_a_step_over_the_standin_runs_as_the_runtime_builds_it(machine):
    machine.add_distro("Ubuntu")
    rt = runtime_for(machine)
    res = run_step(SetupStep("writing", rt.sh("cat > /opt/farnode-test.txt"), input=b"x\n"))
    assert res.returncode == 0
    assert (machine.home / "distros" / "Ubuntu" / "rootfs" / "opt" / "farnode-test.txt").read_text() == "x\n"
