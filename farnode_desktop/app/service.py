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

#: Variables the app reads that a service must see as the installing shell saw them: the data folder, the
#: platform folders it falls back to, the Hugging Face cache, hub and offline mode, where the engine comes
#: from, and (not frozen) where Python finds this package. Never secrets (HF_TOKEN, keys): see SECRET_ENV_RE.
CARRIED_ENV = ("FARNODE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME",
               "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ENDPOINT", "HF_HUB_OFFLINE",
               "FARNODE_ENGINE_SOURCE", "FARNODE_TORCH_INDEX", "FARNODE_ENGINE_ROOT", "FARNODE_ENGINE_PYTHON",
               "FARNODE_ENGINE_VARIANT", "PYTHONPATH")
#: Those holding a path (a service runs from another folder: made absolute when it is installed).
PATH_ENV = {"FARNODE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "HF_HOME",
            "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "FARNODE_ENGINE_SOURCE", "FARNODE_ENGINE_ROOT",
            "FARNODE_ENGINE_PYTHON"}
#: Those whose empty value means something (an empty torch index: pip's own configuration only).
EMPTY_MEANS = {"FARNODE_TORCH_INDEX"}


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


def carried_env(env: dict[str, str], *, cwd: str | None = None, frozen: bool | None = None) -> dict[str, str]:
    """The variables of ``env`` a service gets (:data:`CARRIED_ENV`), paths made absolute against ``cwd`` (the
    installing shell's folder) with ``~`` expanded, so the service, started from another folder by the
    service manager, finds the same data folder, caches and engine source. Frozen apps carry no PYTHONPATH."""
    from farnode_desktop.core.node.runtimes.base import SECRET_ENV_RE

    cwd = cwd or os.getcwd()
    frozen = getattr(sys, "frozen", False) if frozen is None else frozen

    def absolute(value: str) -> str:
        return os.path.normpath(os.path.join(cwd, os.path.expanduser(value)))

    out: dict[str, str] = {}
    for key in CARRIED_ENV:
        value = env.get(key)
        if value is None or (value == "" and key not in EMPTY_MEANS) or SECRET_ENV_RE.search(key):
            continue
        if key == "PYTHONPATH":
            if frozen:
                continue
            value = os.pathsep.join(absolute(p) for p in value.split(os.pathsep) if p)
        elif key in PATH_ENV:
            value = absolute(value)
        elif key == "FARNODE_TORCH_INDEX" and value and "://" not in value:
            value = absolute(value)  # a local folder of wheels
        out[key] = value
    return out


def service_name(env: dict[str, str]) -> str:
    home = env.get("FARNODE_HOME")
    if not home:
        return "farnode-node"
    return "farnode-node-" + hashlib.sha1(str(Path(home).expanduser().resolve()).encode()).hexdigest()[:8]


def _carried(env: dict[str, str]) -> list[tuple[str, str]]:
    """The service's own variables, in :data:`CARRIED_ENV` order (``env`` as :func:`carried_env` made it)."""
    return [(k, env[k]) for k in CARRIED_ENV if env.get(k) or (k in EMPTY_MEANS and k in env)]


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
        *[f"Environment={_systemd_quote(f'{k}={v}')}" for k, v in _carried(env)],
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
    if _carried(env):  # a task has no environment of its own: the command sets it through cmd.exe
        sets = " && ".join(f'set "{k}={v}"' for k, v in _carried(env))
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
    envs = "".join(f"\n    <key>{k}</key><string>{escape(v)}</string>" for k, v in _carried(env))
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
    from farnode_desktop.core.host import current_platform
    from farnode_desktop.core.paths import AppPaths

    platform = platform or current_platform()
    env = carried_env(dict(os.environ))  # resolved now, in the installing shell's folder
    if os.environ.get("USER"):
        env["USER"] = os.environ["USER"]
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
