"""``farnode-desktop service install|remove|status``: run the headless node at boot or login, by the OS's own
service manager, behind one interface.

- Linux: a systemd *user* unit (``~/.config/systemd/user/farnode-node.service``): ``Restart=on-failure``,
  the data folder in its environment, logs to the journal, stopped with SIGINT (the node's clean stop).
  A user unit runs while the user is logged in; ``loginctl enable-linger`` makes it start at boot.
- Windows: a Task Scheduler task started at logon (like the app's own login start), restarted on failure.
- macOS: a LaunchAgent (``~/Library/LaunchAgents``), kept alive after a failure.

Each is a :class:`ServicePlan`: the files to write and the commands to run, so that tests check exactly what
would be installed on every OS. One service per data folder (a ``FARNODE_HOME`` gets its own name).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from xml.sax.saxutils import escape

from farnode_desktop.core.atomic import atomic_write_bytes, atomic_write_text
from farnode_desktop.core.errors import FarNodeError

#: Variables that choose the data folder (and, for developers, the shared engine environment).
CARRIED_ENV = ("FARNODE_HOME", "FARNODE_ENGINE_ROOT")


class ServiceError(FarNodeError):
    title = "Service problem"


@dataclass(frozen=True)
class ServicePlan:
    kind: str  # systemd | schtasks | launchd
    name: str
    files: dict[Path, str | bytes]
    install: list[list[str]]  # register (and enable at boot/login)
    start: list[list[str]]  # start it now
    remove: list[list[str]]
    status: list[list[str]]
    notes: list[str] = field(default_factory=list)


def node_command(executable: str | None = None, frozen: bool | None = None) -> list[str]:
    """The command that runs the headless node with this installation."""
    exe = executable or sys.executable
    frozen = getattr(sys, "frozen", False) if frozen is None else frozen
    return [exe, "node"] if frozen else [exe, "-m", "farnode_desktop", "node"]


def service_name(env: dict[str, str]) -> str:
    home = env.get("FARNODE_HOME")
    if not home:
        return "farnode-node"
    return "farnode-node-" + hashlib.sha1(str(Path(home).expanduser().resolve()).encode()).hexdigest()[:8]


def _systemd_quote(arg: str) -> str:
    """One ExecStart argument, quoted for systemd (``%`` is a specifier there: doubled)."""
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


def systemd_plan(command: list[str], env: dict[str, str], *, config_home: Path, data_folder: str) -> ServicePlan:
    name = service_name(env)
    unit = config_home / "systemd" / "user" / f"{name}.service"
    lines = [
        "[Unit]",
        f"Description=FarNode Desktop node (data folder {data_folder.replace('%', '%%')})",
        "",
        "[Service]",
        "Type=simple",
        "ExecStart=" + " ".join(_systemd_quote(a) for a in command),
        *[f"Environment={_systemd_quote(f'{k}={env[k]}')}" for k in CARRIED_ENV if env.get(k)],
        "Environment=PYTHONUNBUFFERED=1",
        "Restart=on-failure",
        "RestartSec=15",
        "RestartPreventExitStatus=2",  # a refusal (another instance, bad settings) does not heal by retrying
        "KillSignal=SIGINT",  # the node's clean stop: its blocks are announced offline
        "TimeoutStopSec=90",
        "StandardOutput=journal",
        "StandardError=journal",
        f"SyslogIdentifier={name}",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    ctl = ["systemctl", "--user"]
    user = env.get("USER") or "$USER"
    return ServicePlan(
        "systemd", name, {unit: "\n".join(lines)},
        install=[[*ctl, "daemon-reload"], [*ctl, "enable", f"{name}.service"]],
        start=[[*ctl, "start", f"{name}.service"]],
        remove=[[*ctl, "disable", "--now", f"{name}.service"], [*ctl, "daemon-reload"]],
        status=[[*ctl, "status", "--no-pager", f"{name}.service"]],
        notes=[f"Logs: journalctl --user -u {name} -f",
               f"A user service runs while you are logged in. To start it at boot without logging in, run "
               f"once: loginctl enable-linger {user}"],
    )


def schtasks_plan(command: list[str], env: dict[str, str], *, folder: Path, data_folder: str) -> ServicePlan:
    """Windows: a task at logon, restarted every minute after a failure (up to 999 times), no time limit."""
    name = service_name(env).replace("farnode-node", "FarNode node")
    xml_path = folder / f"{service_name(env)}-task.xml"
    exe, args = command[0], subprocess.list2cmdline(command[1:])
    env_note = "".join(f" {k}={env[k]}" for k in CARRIED_ENV if env.get(k))
    if env_note:  # a task has no environment of its own: the command sets it through cmd.exe
        sets = " && ".join(f'set "{k}={env[k]}"' for k in CARRIED_ENV if env.get(k))
        exe, args = "cmd.exe", f"/c {sets} && {subprocess.list2cmdline(command)}"
    xml = f"""<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo><Description>FarNode Desktop node (data folder {escape(data_folder)})</Description></RegistrationInfo>
  <Triggers><LogonTrigger><Enabled>true</Enabled></LogonTrigger></Triggers>
  <Principals><Principal id="Author"><LogonType>InteractiveToken</LogonType><RunLevel>LeastPrivilege</RunLevel></Principal></Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <RestartOnFailure><Interval>PT1M</Interval><Count>999</Count></RestartOnFailure>
    <Enabled>true</Enabled>
  </Settings>
  <Actions Context="Author"><Exec><Command>{escape(exe)}</Command><Arguments>{escape(args)}</Arguments></Exec></Actions>
</Task>
"""
    return ServicePlan(
        "schtasks", name, {xml_path: xml.encode("utf-16")},  # Task Scheduler reads UTF-16 (with its BOM)
        install=[["schtasks", "/Create", "/TN", name, "/XML", str(xml_path), "/F"]],
        start=[["schtasks", "/Run", "/TN", name]],
        remove=[["schtasks", "/End", "/TN", name], ["schtasks", "/Delete", "/TN", name, "/F"]],
        status=[["schtasks", "/Query", "/TN", name, "/V", "/FO", "LIST"]],
        notes=["The task starts when you log in to Windows (the engine itself runs in WSL2)."],
    )


def launchd_plan(command: list[str], env: dict[str, str], *, home: Path, log_dir: Path, uid: int,
                 data_folder: str) -> ServicePlan:
    name = service_name(env)
    label = "dev.farnode." + name.removeprefix("farnode-")
    plist = home / "Library" / "LaunchAgents" / f"{label}.plist"
    args = "".join(f"\n    <string>{escape(a)}</string>" for a in command)
    envs = "".join(f"\n    <key>{k}</key><string>{escape(env[k])}</string>" for k in CARRIED_ENV if env.get(k))
    text = f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key><string>{label}</string>
  <key>ProgramArguments</key>
  <array>{args}
  </array>
  <key>EnvironmentVariables</key>
  <dict>
    <key>PYTHONUNBUFFERED</key><string>1</string>{envs}
  </dict>
  <key>RunAtLoad</key><true/>
  <key>KeepAlive</key><dict><key>SuccessfulExit</key><false/></dict>
  <key>ThrottleInterval</key><integer>15</integer>
  <key>ExitTimeOut</key><integer>90</integer>
  <key>StandardOutPath</key><string>{escape(str(log_dir / (name + '.log')))}</string>
  <key>StandardErrorPath</key><string>{escape(str(log_dir / (name + '.log')))}</string>
</dict>
</plist>
"""
    domain = f"gui/{uid}"
    return ServicePlan(
        "launchd", label, {plist: text},
        install=[["launchctl", "bootstrap", domain, str(plist)]],  # RunAtLoad: this starts it too
        start=[],
        remove=[["launchctl", "bootout", f"{domain}/{label}"]],
        status=[["launchctl", "print", f"{domain}/{label}"]],
        notes=[f"Logs: {log_dir / (name + '.log')}"],
    )


def plan_for_this_system(platform: str | None = None) -> ServicePlan:
    from farnode_desktop.core.paths import AppPaths

    platform = platform or sys.platform
    env = dict(os.environ)
    paths = AppPaths.default()
    command = node_command()
    data = str(paths.data_dir)
    if platform == "win32":
        return schtasks_plan(command, env, folder=paths.config_dir, data_folder=data)
    if platform == "darwin":
        return launchd_plan(command, env, home=Path.home(), log_dir=paths.log_dir, uid=os.getuid(),
                            data_folder=data)
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return systemd_plan(command, env, config_home=config_home, data_folder=data)


def _run(cmd: list[str], out: IO[str]) -> tuple[int, str]:
    if shutil.which(cmd[0]) is None:
        return 127, f"{cmd[0]} is not installed"
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return 1, str(exc)
    return r.returncode, (r.stdout + r.stderr).strip()


def cli_service(action: str, *, start: bool = True, out: IO[str] | None = None,
                plan: ServicePlan | None = None) -> int:
    out = out or sys.stdout
    plan = plan or plan_for_this_system()
    if action == "install":
        for path, content in plan.files.items():
            if isinstance(content, bytes):
                atomic_write_bytes(path, content, mode=0o644)
            else:
                atomic_write_text(path, content, mode=0o644)
            print(f"Wrote {path}", file=out)
        install = plan.install + (plan.start if start else [])
        for cmd in install:
            code, text = _run(cmd, out)
            if code != 0:
                raise ServiceError(f"`{' '.join(cmd)}` failed ({text.splitlines()[-1] if text else code}). The "
                                   f"service file is in place: run that command yourself once the service "
                                   f"manager is available (for systemd: a user session, `systemctl --user`).")
        print(f"Installed the service {plan.name}" + (" and started it." if start else "."), file=out)
        for note in plan.notes:
            print(note, file=out)
        return 0
    if action == "remove":
        for cmd in plan.remove:
            _run(cmd, out)  # a service already stopped or gone: nothing to undo
        removed = False
        for path in plan.files:
            try:
                path.unlink()
                removed = True
                print(f"Removed {path}", file=out)
            except FileNotFoundError:
                pass
        if plan.kind == "systemd":
            _run(["systemctl", "--user", "daemon-reload"], out)
        print(f"The service {plan.name} is removed." if removed else f"No service {plan.name} was installed.",
              file=out)
        return 0
    if action == "status":
        installed = all(p.exists() for p in plan.files)
        print(f"Service {plan.name}: " + ("installed (" + ", ".join(str(p) for p in plan.files) + ")"
                                          if installed else "not installed"), file=out)
        code = 0
        if installed:
            for cmd in plan.status:
                code, text = _run(cmd, out)
                if text:
                    print(text, file=out)
        return 0 if installed else 1
    raise ServiceError(f"Unknown service action {action!r}.")
