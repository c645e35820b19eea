"""``farnode-desktop service``: what each OS's service manager gets (files and commands), the systemd unit
checked by systemd itself, and install/status/remove on this machine (no systemd user manager runs here:
install says what to do and the unit stays for when there is one)."""

from __future__ import annotations

import json
import os
import plistlib
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from farnode_desktop.app.service import launchd_plan, node_command, schtasks_plan, service_name, systemd_plan

from .conftest import REPO

COMMAND = [sys.executable, "-m", "farnode_desktop", "node"]


def unit_value(text: str, key: str) -> list[str]:
    return [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith(key + "=")]


def systemd_words(value: str) -> list[str]:
    """A unit's ExecStart/Environment value split as systemd does (our quoting: double quotes, %%)."""
    return [w.replace("%%", "%") for w in shlex.split(value)]


def test_systemd_user_unit(tmp_path):
    home = tmp_path / "my data"
    plan = systemd_plan(COMMAND, {"FARNODE_HOME": str(home), "USER": "alice"}, config_home=tmp_path / "cfg",
                        data_folder=str(home / "data"))
    (path, text), = plan.files.items()
    assert path == tmp_path / "cfg" / "systemd" / "user" / f"{service_name({'FARNODE_HOME': str(home)})}.service"
    assert plan.name.startswith("farnode-node-") and service_name({}) == "farnode-node"
    assert systemd_words(unit_value(text, "ExecStart")[0]) == COMMAND
    envs = [systemd_words(v)[0] for v in unit_value(text, "Environment")]
    assert f"FARNODE_HOME={home}" in envs
    for line in ("Restart=on-failure", "KillSignal=SIGINT", "StandardOutput=journal", "StandardError=journal",
                 "WantedBy=default.target", "RestartPreventExitStatus=2"):
        assert line in text.splitlines()
    assert plan.install == [["systemctl", "--user", "daemon-reload"],
                            ["systemctl", "--user", "enable", f"{plan.name}.service"]]
    assert plan.start == [["systemctl", "--user", "start", f"{plan.name}.service"]]
    assert ["systemctl", "--user", "disable", "--now", f"{plan.name}.service"] in plan.remove
    assert any("loginctl enable-linger alice" in n for n in plan.notes)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not installed here")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    plan = systemd_plan(COMMAND, {"FARNODE_HOME": str(tmp_path / "h")}, config_home=tmp_path / "cfg",
                        data_folder=str(tmp_path / "h" / "data"))
    (path, text), = plan.files.items()
    path.parent.mkdir(parents=True)
    path.write_text(text)
    runtime = tmp_path / "runtime"  # a user manager's runtime folder (none here: no login session)
    runtime.mkdir(mode=0o700)
    r = subprocess.run(["systemd-analyze", "verify", "--user", str(path)], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "cfg"),
                                            XDG_RUNTIME_DIR=str(runtime)))
    if r.returncode != 0 and "--user" in r.stderr:  # an older systemd-analyze without --user
        r = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    problems = [ln for ln in (r.stdout + r.stderr).splitlines() if path.name in ln or "farnode" in ln.lower()]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr


def test_windows_task(tmp_path):
    env = {"FARNODE_HOME": r"C:\Users\a b\FarNode"}
    cmd = [r"C:\Program Files\FarNode\farnode-desktop.exe", "node"]
    plan = schtasks_plan(cmd, env, folder=tmp_path, data_folder=r"C:\Users\a b\FarNode\data")
    (path, content), = plan.files.items()
    assert content.startswith(b"\xff\xfe")  # UTF-16 with its BOM, as Task Scheduler writes its own
    ns = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
    root = ET.fromstring(content)
    assert root.find("t:Triggers/t:LogonTrigger", ns) is not None
    assert root.find("t:Settings/t:RestartOnFailure/t:Count", ns).text == "999"
    assert root.find("t:Settings/t:ExecutionTimeLimit", ns).text == "PT0S"
    assert root.find("t:Actions/t:Exec/t:Command", ns).text == "cmd.exe"
    args = root.find("t:Actions/t:Exec/t:Arguments", ns).text
    assert 'set "FARNODE_HOME=C:\\Users\\a b\\FarNode"' in args
    assert '"C:\\Program Files\\FarNode\\farnode-desktop.exe" node' in args
    assert plan.install == [["schtasks", "/Create", "/TN", plan.name, "/XML", str(path), "/F"]]
    assert plan.start == [["schtasks", "/Run", "/TN", plan.name]]
    assert ["schtasks", "/Delete", "/TN", plan.name, "/F"] in plan.remove
    bare = schtasks_plan(cmd, {}, folder=tmp_path, data_folder="d")
    root = ET.fromstring(next(iter(bare.files.values())))
    assert root.find("t:Actions/t:Exec/t:Command", ns).text == cmd[0] and bare.name == "FarNode node"


def test_macos_launch_agent(tmp_path):
    plan = launchd_plan(COMMAND, {"FARNODE_HOME": "/Users/a/FarNode"}, home=tmp_path, log_dir=tmp_path / "logs",
                        uid=501, data_folder="/Users/a/FarNode/data")
    (path, content), = plan.files.items()
    assert path.parent == tmp_path / "Library" / "LaunchAgents" and path.suffix == ".plist"
    d = plistlib.loads(content.encode())
    assert d["Label"] == plan.name and d["ProgramArguments"] == COMMAND
    assert d["EnvironmentVariables"]["FARNODE_HOME"] == "/Users/a/FarNode"
    assert d["RunAtLoad"] is True and d["KeepAlive"] == {"SuccessfulExit": False}
    assert plan.install == [["launchctl", "bootstrap", "gui/501", str(path)]]
    assert plan.remove == [["launchctl", "bootout", f"gui/501/{plan.name}"]]


def test_node_command_frozen_and_not():
    assert node_command("/opt/farnode/farnode-desktop", frozen=True) == ["/opt/farnode/farnode-desktop", "node"]
    assert node_command("/usr/bin/python3", frozen=False) == ["/usr/bin/python3", "-m", "farnode_desktop", "node"]


def test_install_status_remove_here(tmp_path):
    env = dict(os.environ, FARNODE_HOME=str(tmp_path / "h"), XDG_CONFIG_HOME=str(tmp_path / "cfg"),
               PYTHONPATH=str(REPO))
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)  # no user manager to talk to, as on a bare server

    def run(*args):
        return subprocess.run([sys.executable, "-m", "farnode_desktop", "service", *args], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=60)

    units = tmp_path / "cfg" / "systemd" / "user"
    r = run("status")
    assert r.returncode == 1 and "not installed" in r.stdout
    r = run("install")
    unit = next(units.glob("farnode-node-*.service"))
    if r.returncode == 0:  # a machine with a user manager: it is installed and running
        run("remove")
        pytest.skip("this machine has a systemd user manager; the unit was installed and removed")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "systemctl --user daemon-reload" in r.stderr and "The service file is in place" in r.stderr
    assert f"FARNODE_HOME={tmp_path / 'h'}" in unit.read_text()
    assert "installed" in run("status").stdout
    r = run("remove")
    assert r.returncode == 0 and "is removed" in r.stdout and not unit.exists()


@pytest.mark.engine
def test_the_units_command_starts_the_node(home, engine_root, free_port):
    """The unit's ExecStart and Environment, run as systemd would run them: the node comes online on the
    unit's data folder (asked with `status --json`), and the unit's KillSignal (SIGINT) stops it cleanly."""
    import signal
    import time

    from farnode_desktop.core.control import NotRunning, request

    from .conftest import paths_of, write_settings

    write_settings(home, {"network": {"port": free_port, "demo_traffic_per_minute": 0}})
    plan = systemd_plan(COMMAND, {"FARNODE_HOME": str(home)}, config_home=home / "xdg",
                        data_folder=str(home / "data"))
    text = next(iter(plan.files.values()))
    argv = systemd_words(unit_value(text, "ExecStart")[0])
    env = {k: v for k, v in os.environ.items() if k != "FARNODE_HOME"}
    env.update(dict(systemd_words(v)[0].split("=", 1) for v in unit_value(text, "Environment")))
    env.update(FARNODE_ENGINE_ROOT=str(engine_root), PYTHONPATH=str(REPO))
    assert env["FARNODE_HOME"] == str(home)
    proc = subprocess.Popen(argv, env=env, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, report = time.time() + 240, {}
        while time.time() < deadline and proc.poll() is None:
            try:
                report = request(paths_of(home).run_dir, "status")
            except NotRunning:
                report = {}
            if report.get("state") == "online":
                break
            time.sleep(0.5)
        assert report.get("state") == "online", report
        assert report["app"]["pid"] == proc.pid and report["app"]["face"] == "headless"
        assert report["words"] == "Online, serving blocks 0-3 of 4"
        proc.send_signal(getattr(signal, unit_value(text, "KillSignal")[0]))
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert out.rstrip().endswith("Stopped.")


# What the node would use, read by the app's own functions in whatever process runs it.
PROBE = """
import json, os, farnode_desktop
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.models import hub
from farnode_desktop.core.node.engine_venv import EngineEnv
from farnode_desktop.core.engine_lock import pip_install_options, Requirement
p = AppPaths.default()
print(json.dumps({"package": farnode_desktop.__file__, "data": str(p.data_dir), "settings": str(p.settings_file),
                  "logs": str(p.log_dir), "engine_root": str(p.engine_root), "hf_cache": os.path.abspath(hub.hub_cache_dir()),
                  "hf_endpoint": hub.hub_endpoint(), "hf_offline": hub.hub_offline(),
                  "engine_source": str(EngineEnv(p, "cpu").local_source()),
                  "torch_pip_options": pip_install_options(Requirement("torch", "2.13.0+cpu"), "cpu")}))
"""


def test_the_installed_unit_finds_what_the_installing_shell_found(tmp_path):
    """`service install` from a shell with relative paths in its environment (FARNODE_HOME=mynode and the
    like): the unit, run as systemd runs it (`env -i`, only its own Environment= lines and the manager's
    HOME and PATH, from $HOME), reaches the same data folder, Hugging Face cache and hub, engine source and
    engine root, and imports the same app; no secret of the shell is in the unit."""
    shell_dir, home = tmp_path / "work", tmp_path / "home"
    shell_dir.mkdir()
    home.mkdir()
    (shell_dir / "engine").mkdir()
    (shell_dir / "engine" / "farmesh.tar.gz").write_bytes(b"")
    base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "USER": "alice", "LANG": "C.UTF-8"}
    shell = dict(base, FARNODE_HOME="mynode", HF_HOME="hf", FARNODE_ENGINE_SOURCE="engine/farmesh.tar.gz",
                 FARNODE_ENGINE_ROOT="~/../work/shared-engine", HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_OFFLINE="1",
                 FARNODE_TORCH_INDEX="", XDG_CONFIG_HOME=str(tmp_path / "cfg"),
                 PYTHONPATH=os.path.relpath(REPO, shell_dir),
                 HF_TOKEN="hf_secret_token_do_not_carry", FARNODE_WALLET_PRIVATE_KEY="0x" + "ab" * 32)
    r = subprocess.run([sys.executable, "-m", "farnode_desktop", "service", "install", "--no-start"], env=shell,
                       cwd=shell_dir, capture_output=True, text=True, timeout=120)
    units = list((tmp_path / "cfg" / "systemd" / "user").glob("farnode-node-*.service"))
    assert len(units) == 1, r.stdout + r.stderr
    text = units[0].read_text()
    if r.returncode == 0:  # a machine with a user manager: enabled there; undone at once
        subprocess.run([sys.executable, "-m", "farnode_desktop", "service", "remove"], env=shell, cwd=shell_dir,
                       capture_output=True, timeout=120)
    assert "hf_secret_token" not in text and "ab" * 32 not in text and "PRIVATE_KEY" not in text
    argv = systemd_words(unit_value(text, "ExecStart")[0])
    unit_env = [systemd_words(v)[0] for v in unit_value(text, "Environment")]
    assert argv[1:] == ["-m", "farnode_desktop", "node"]

    def as_the_shell(*args):
        out = subprocess.run([sys.executable, *args], env=shell, cwd=shell_dir, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def as_the_unit(*args):
        out = subprocess.run(["env", "-i", *[f"{k}={v}" for k, v in base.items()], *unit_env, argv[0], *args],
                             cwd=home, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout

    seen = json.loads(as_the_shell("-c", PROBE))
    assert json.loads(as_the_unit("-c", PROBE)) == seen
    assert seen["data"] == str(shell_dir / "mynode" / "data") and seen["hf_cache"] == str(shell_dir / "hf" / "hub")
    assert seen["engine_source"] == str(shell_dir / "engine" / "farmesh.tar.gz")
    assert seen["engine_root"] == str(shell_dir / "shared-engine") and seen["torch_pip_options"] == ["--no-deps"]
    assert seen["hf_offline"] is True and seen["hf_endpoint"] == "http://127.0.0.1:9"
    assert seen["package"] == str(REPO / "farnode_desktop" / "__init__.py")
    # the app's own commands, run the unit's way (its ExecStart with another command than `node`)
    assert as_the_unit(*argv[1:3], "settings", "path") == as_the_shell(*argv[1:3], "settings", "path")
    assert as_the_unit(*argv[1:3], "plan", "--json") == as_the_shell(*argv[1:3], "plan", "--json")


def test_windows_and_macos_carry_the_same_variables(tmp_path):
    from farnode_desktop.app.service import carried_env

    env = carried_env({"FARNODE_HOME": "mynode", "HF_HUB_CACHE": "~/hub", "HF_ENDPOINT": "http://127.0.0.1:9",
                       "FARNODE_TORCH_INDEX": "", "HF_TOKEN": "hf_secret", "PYTHONPATH": "src"},
                      cwd=str(tmp_path), frozen=True)
    assert env == {"FARNODE_HOME": str(tmp_path / "mynode"), "HF_HUB_CACHE": str(Path.home() / "hub"),
                   "HF_ENDPOINT": "http://127.0.0.1:9", "FARNODE_TORCH_INDEX": ""}
    task = schtasks_plan(["farnode-desktop.exe", "node"], env, folder=tmp_path, data_folder="d")
    args = ET.fromstring(next(iter(task.files.values()))).find(
        "t:Actions/t:Exec/t:Arguments", {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}).text
    for k, v in env.items():
        assert f'set "{k}={v}"' in args
    agent = launchd_plan(COMMAND, env, home=tmp_path, log_dir=tmp_path, uid=501, data_folder="d")
    assert plistlib.loads(next(iter(agent.files.values())).encode())["EnvironmentVariables"] == \
        dict(env, PYTHONUNBUFFERED="1")
