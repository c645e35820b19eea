"""Start at login: the real XDG autostart entry in a temporary HOME, the macOS LaunchAgent file, and the
pure parts of the Windows Run key."""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys

import pytest

from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.policies.platform import apply_start_at_login, launch_command
from farnode_desktop.core.policies.platform.linux import XdgAutostart, desktop_exec_quote, desktop_exec_split
from farnode_desktop.core.policies.platform.macos import (
    LAUNCH_AGENT_LABEL,
    MacLaunchAgent,
    launch_agent_plist,
)
from farnode_desktop.core.policies.platform.windows import (
    run_command_line,
    split_command_line,
    startup_approved,
)


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return h


def test_xdg_entry_is_written_detected_and_removed(home, tmp_path, monkeypatch):
    xdg = tmp_path / "xdg-config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    entry = XdgAutostart()
    path = xdg / "autostart" / "farnode-desktop.desktop"
    assert entry.location == str(path)
    assert not entry.is_enabled() and entry.command() is None and not entry.is_minimized()

    apply_start_at_login(True, minimized=True, entry=entry)
    assert path.is_file()
    text = path.read_text()
    assert text.startswith("[Desktop Entry]\n") and "Type=Application\n" in text and "Name=FarNode Desktop" in text
    assert entry.is_enabled()
    assert entry.command() == launch_command(True)
    assert entry.is_minimized()

    apply_start_at_login(True, minimized=False, entry=entry)  # replaced, not duplicated
    assert entry.command() == launch_command(False) and not entry.is_minimized()
    assert len(list(path.parent.iterdir())) == 1

    apply_start_at_login(False, minimized=False, entry=entry)
    assert not path.exists() and not entry.is_enabled()
    entry.disable()  # nothing there: no error


def test_xdg_entry_removed_or_switched_off_outside_the_app(home):
    entry = XdgAutostart()
    path = home / ".config" / "autostart" / "farnode-desktop.desktop"  # no XDG_CONFIG_HOME: ~/.config
    entry.enable(launch_command(True))
    assert path.is_file() and entry.is_enabled()

    path.unlink()  # the user deleted it in a file manager
    assert not entry.is_enabled()

    entry.enable(launch_command(True))
    original = path.read_text()
    path.write_text(original + "Hidden=true\n")  # how "remove" works in some desktop settings
    assert not entry.is_enabled()
    path.write_text(original.replace("X-GNOME-Autostart-enabled=true", "X-GNOME-Autostart-enabled=false"))
    assert not entry.is_enabled()  # GNOME Tweaks' switch
    path.write_bytes(b"\xff\xfe not text")
    assert not entry.is_enabled() and entry.command() is None
    path.write_text("[Desktop Entry]\nType=Application\n")  # no Exec line
    assert not entry.is_enabled()


def test_xdg_relative_config_home_is_ignored(home, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")  # the spec says: ignore it
    assert XdgAutostart().path == home / ".config" / "autostart" / "farnode-desktop.desktop"


def test_xdg_entry_runs_the_app(home):
    """The Exec line, read back as a desktop environment would, starts this app (asked for --version)."""
    entry = XdgAutostart()
    entry.enable(launch_command(True))
    cmd = entry.command()
    assert cmd[-2:] == ["gui", "--minimized"]
    out = subprocess.run(cmd[:-2] + ["--version"], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert out.returncode == 0, out.stderr
    assert "FarNode Desktop" in out.stdout


def test_xdg_write_failure_is_a_clear_error(home):
    (home / ".config").mkdir()
    (home / ".config" / "autostart").write_text("a file where the folder should be")
    with pytest.raises(FarNodeError) as err:
        XdgAutostart().enable(launch_command(True))
    assert "autostart" in err.value.message


@pytest.mark.parametrize("args", [
    ["/usr/bin/python3", "-m", "farnode_desktop", "gui", "--minimized"],
    ["/home/Jo Doe/My Apps/python3", "-m", "farnode_desktop"],
    ['/opt/we"ird/$HOME/`x`/back\\slash/100%/py', "gui"],
    ["/tmp/semi;colon & pipe|<>~*?#()", "tab\there"],
    ["/opt/π-app/python"],
])
def test_desktop_exec_quoting_round_trips(args):
    line = desktop_exec_quote(args)
    assert "\n" not in line
    assert desktop_exec_split(line) == args


def test_desktop_exec_quoting_follows_the_spec():
    assert desktop_exec_quote(["/a b/c", "x"]) == '"/a b/c" x'
    assert desktop_exec_quote(["/a/$x"]) == '"/a/\\\\$x"'  # \$ in Exec quoting, then \\ as a string escape
    assert desktop_exec_quote(["50%"]) == "50%%"
    with pytest.raises(FarNodeError):
        desktop_exec_quote(["/a\nb"])
    with pytest.raises(FarNodeError):
        desktop_exec_quote([""])


# ---- macOS LaunchAgent ----------------------------------------------------------------------------------

def test_launch_agent_file(tmp_path):
    agent = MacLaunchAgent(home=tmp_path)
    path = tmp_path / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT_LABEL}.plist"
    assert agent.location == str(path) and not agent.is_enabled()
    cmd = ["/Applications/FarNode Desktop.app/Contents/MacOS/FarNode Desktop", "gui", "--minimized"]
    agent.enable(cmd)
    data = plistlib.loads(path.read_bytes())
    assert data["Label"] == LAUNCH_AGENT_LABEL
    assert data["ProgramArguments"] == cmd
    assert data["RunAtLoad"] is True and data["KeepAlive"] is False
    assert agent.is_enabled() and agent.command() == cmd and agent.is_minimized()

    data["Disabled"] = True
    path.write_bytes(plistlib.dumps(data))
    assert not agent.is_enabled()
    path.write_text("<plist>broken")
    assert not agent.is_enabled() and agent.command() is None
    agent.disable()
    assert not path.exists()
    agent.disable()


def test_launch_agent_plist_is_valid_xml():
    raw = launch_agent_plist(["/usr/bin/python3", "-m", "farnode_desktop", "gui"])
    assert raw.startswith(b"<?xml") and b"<key>ProgramArguments</key>" in raw


# ---- Windows Run key: the pure parts ---------------------------------------------------------------------

@pytest.mark.parametrize("args,line", [
    (["C:\\Python311\\pythonw.exe", "-m", "farnode_desktop", "gui", "--minimized"],
     "C:\\Python311\\pythonw.exe -m farnode_desktop gui --minimized"),
    (["C:\\Program Files\\FarNode Desktop\\FarNode Desktop.exe", "gui"],
     '"C:\\Program Files\\FarNode Desktop\\FarNode Desktop.exe" gui'),
    (["C:\\dir with space\\", "x"], '"C:\\dir with space\\\\" x'),
    (['C:\\a"b\\py.exe'], 'C:\\a\\"b\\py.exe'),
])
def test_run_key_command_line(args, line):
    assert run_command_line(args) == line
    assert split_command_line(line) == args


def test_run_key_rejects_unwritable_arguments():
    with pytest.raises(FarNodeError):
        run_command_line(["C:\\x\ny.exe"])


@pytest.mark.parametrize("data,on", [
    (None, True),
    (b"", True),
    (bytes([2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), True),
    (bytes([6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), True),
    (bytes([3, 0, 0, 0, 0x10, 0x2e, 0x8a, 0x1b, 0x4c, 0x2f, 0xd9, 0x01]), False),  # switched off + timestamp
    (bytes([7, 0, 0, 0]), False),
    ("02", True),  # not binary: ignored
])
def test_windows_startup_approved(data, on):
    assert startup_approved(data) is on


# ---- the launch command ----------------------------------------------------------------------------------

def test_launch_command_variants(tmp_path):
    assert launch_command(True, executable="/venv/bin/python", frozen=False, platform="linux") == [
        "/venv/bin/python", "-m", "farnode_desktop", "gui", "--minimized"]
    assert launch_command(False, executable="/venv/bin/python", frozen=False, platform="linux") == [
        "/venv/bin/python", "-m", "farnode_desktop", "gui"]
    assert launch_command(True, executable="C:\\FarNode\\FarNode.exe", frozen=True, platform="win32") == [
        "C:\\FarNode\\FarNode.exe", "gui", "--minimized"]
    py = tmp_path / "python.exe"
    py.write_text("")
    # Without pythonw.exe beside it, python.exe is used; with it, the windowless one.
    assert launch_command(False, executable=str(py), frozen=False, platform="win32")[0] == str(py)
    (tmp_path / "pythonw.exe").write_text("")
    assert launch_command(False, executable=str(py), frozen=False, platform="win32")[0] == str(
        tmp_path / "pythonw.exe")
