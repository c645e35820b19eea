"""The platform seam set to Windows (FARNODE_PLATFORM=win32) on this machine: the engine runtime ``auto`` is WSL2
through the configured wsl.exe, the service plan is a Task Scheduler task, and no secret of the app's
environment reaches the task's command line."""

from __future__ import annotations

from farnode_desktop.app.service import plan_for_this_system
from farnode_desktop.core.node.runtimes import make_runtime, resolve_runtime_name
from farnode_desktop.core.policies.platform import launch_command

SECRET = "0x" + "5eC7e7" * 10 + "abcd"


def test_the_windows_seam(monkeypatch, farnode_home, tmp_path):
    monkeypatch.setenv("FARNODE_PLATFORM", "win32")
    monkeypatch.setenv("FARNODE_WSL_EXE", str(tmp_path / "wsl.exe"))
    monkeypatch.setenv("FARNODE_SECRET_KEY", SECRET)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert resolve_runtime_name("auto") == "wsl2"
    rt = make_runtime("auto")
    assert rt.name == "wsl2" and rt.wsl == str(tmp_path / "wsl.exe")
    assert rt.status_steps()[0].argv[0] == str(tmp_path / "wsl.exe")

    plan = plan_for_this_system()
    assert plan.kind == "schtasks" and plan.install[0][0] == "schtasks"
    text = "".join(v.decode("utf-16") if isinstance(v, bytes) else v for v in plan.files.values())
    assert "<LogonTrigger>" in text and SECRET not in text and "FARNODE_HOME" in text
    assert SECRET not in repr(plan.install + plan.start + plan.status)
    assert launch_command(True, executable="C:\\FarNode\\python.exe", frozen=False)[-2:] == ["gui", "--minimized"]

    monkeypatch.delenv("FARNODE_PLATFORM")
    assert resolve_runtime_name("auto") == "native"
