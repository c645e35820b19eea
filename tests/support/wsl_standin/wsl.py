"""A stand-in for Windows' ``wsl.exe`` (tests only, never shipped), faithful to what FarNode relies on.

Run as ``python wsl.py --home HOME ARGS...`` through the ``wsl.exe`` wrapper script that
:class:`tests.support.wsl_standin.WslStandin` writes. HOME holds:

- ``config.json``: ``drives`` (letter -> folder standing for that Windows drive), ``installed`` (the WSL
  feature works), ``vm_running`` and ``cold_start_s`` (the first call after "boot" waits that long),
  ``install_s`` (how long ``--install`` takes), ``default_version``;
- ``distros/NAME/state.json`` (``name``, ``version`` 1/2, ``state`` Running/Stopped, ``default``) and
  ``distros/NAME/rootfs/opt`` (what the distribution's ``/opt`` holds: the rest of its file system is
  this machine's, read through, /root included: this machine's Python lives there);
- ``log.jsonl``: one line per call: its arguments, the environment it got from the app, and the
  environment its Linux command got.

What it does as WSL does:
- ``--status`` and ``--list --verbose`` print UTF-16LE with CRLF line ends (UTF-8 when ``WSL_UTF8=1``);
- ``-d NAME [-u USER] [--cd DIR] --exec CMD...`` runs CMD as it is, ``-- CMD...`` joins CMD for the
  distribution's shell to split again; CMD runs in a session of its own (``setsid``) in a mount namespace
  where ``/mnt/<letter>`` are the drive folders and ``/opt`` the distribution's; its environment is a
  Linux login's plus only the variables WSLENV names (``/p`` ones translated to Linux paths);
- standard input, output and error are relayed through pipes: when this process dies (taskkill, a crash
  of the app), the Linux process keeps running, its standard input closed and its output going nowhere
  (microsoft/WSL#2496);
- ``--terminate NAME`` and ``--shutdown`` kill every process inside; a stopped distribution starts on the
  next command, after ``cold_start_s`` when the VM is not running;
- ``--install -d NAME``, ``--set-version NAME 2``.

Linux only, and it needs ``unshare --mount`` to work (root, as the test machines run; elsewhere a user
namespace would be needed): where it cannot, the inside command fails with unshare's own message.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path, PureWindowsPath

MARK = "FARNODE_WSL_STANDIN_DISTRO"  # in every inside process's environment: the distribution's folder
LINUX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NO_DISTRO = "There is no distribution with the supplied name.\nError code: Wsl/Service/WSL_E_DISTRO_NOT_FOUND\n"
NOT_INSTALLED = ("The Windows Subsystem for Linux is not installed. You can install by running "
                 "'wsl.exe --install'.\nFor more information please visit https://aka.ms/wslinstall\n")


class Home:
    def __init__(self, root: Path):
        self.root = root
        self.config = json.loads((root / "config.json").read_text())

    def save_config(self) -> None:
        _write_json(self.root / "config.json", self.config)

    @contextmanager
    def locked(self):
        with open(self.root / "lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                self.config = json.loads((self.root / "config.json").read_text())
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def distros(self) -> list[dict]:
        folder = self.root / "distros"
        out = []
        for d in sorted(folder.iterdir()) if folder.is_dir() else []:
            try:
                out.append(json.loads((d / "state.json").read_text()))
            except (OSError, ValueError):
                continue
        return out

    def distro_dir(self, name: str) -> Path | None:
        for d in self.distros():
            if d["name"].lower() == name.lower():
                return self.root / "distros" / d["name"]
        return None

    def set_state(self, name: str, **changes) -> None:
        path = self.root / "distros" / name / "state.json"
        state = json.loads(path.read_text())
        state.update(changes)
        _write_json(path, state)

    def boot(self) -> None:
        """The first call after Windows started: the WSL service and its VM start (seconds)."""
        with self.locked():
            if not self.config.get("vm_running", True):
                time.sleep(float(self.config.get("cold_start_s", 0)))
                self.config["vm_running"] = True
                self.save_config()


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False))
    os.replace(tmp, path)


def out(text: str, *, err: bool = False) -> None:
    """What wsl.exe itself prints: UTF-16LE with CRLF, unless WSL_UTF8=1."""
    text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    data = text.encode("utf-8") if os.environ.get("WSL_UTF8") == "1" else text.encode("utf-16-le")
    stream = sys.stderr if err else sys.stdout
    stream.buffer.write(data)
    stream.buffer.flush()


def inside_pids(distro_dir: Path | None = None) -> list[int]:
    """Processes inside a distribution (any, when None): those whose environment carries its mark."""
    want = f"{MARK}={distro_dir}".encode() if distro_dir else f"{MARK}=".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(v == want if distro_dir else v.startswith(want) for v in env):
            pids.append(int(entry))
    return pids


def kill_inside(distro_dir: Path, rounds: int = 20) -> None:
    """SIGKILL every process inside the distribution, again until none is left (at most ``rounds`` times)."""
    for _ in range(rounds):
        pids = inside_pids(distro_dir)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def to_linux(path: str, drives: dict[str, str]) -> str:
    """What WSL does with a Windows path in ``--cd`` or a ``/p`` WSLENV variable."""
    if path.startswith("/") or path.startswith("~"):
        return path
    p = PureWindowsPath(path)
    rest = "/".join(p.parts[1:])
    return f"/mnt/{p.drive[0].lower()}" + (f"/{rest}" if rest else "")


def inner_env(home: Home, distro_dir: Path, name: str, user: str) -> dict[str, str]:
    """A Linux login's environment plus the variables WSLENV names (and nothing else from Windows)."""
    env = {"PATH": LINUX_PATH, "HOME": "/root" if user == "root" else f"/home/{user}", "USER": user,
           "LOGNAME": user, "SHELL": "/bin/bash", "LANG": "C.UTF-8", "WSL_DISTRO_NAME": name,
           "NAME": "GAMING-PC", "HOSTTYPE": "x86_64", MARK: str(distro_dir)}
    wslenv = os.environ.get("WSLENV", "")
    if wslenv:
        env["WSLENV"] = wslenv
    for item in filter(None, wslenv.split(":")):
        var, _, flags = item.partition("/")
        if var in os.environ:
            value = os.environ[var]
            env[var] = to_linux(value, home.config["drives"]) if "p" in flags else value
    return env


def log_call(home: Home, argv: list[str], inner: dict | None) -> None:
    line = json.dumps({"t": time.time(), "argv": argv, "env": dict(os.environ), "inner_env": inner},
                      ensure_ascii=False) + "\n"
    with open(home.root / "log.jsonl", "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(line)


def relay(src, dst, close_dst: bool) -> None:
    """Copy a pipe to another until its end; a write that fails stops the copy (and closes ``src``)."""
    try:
        while True:
            data = os.read(src.fileno(), 65536)
            if not data:
                break
            try:
                dst.write(data)
                dst.flush()
            except (OSError, ValueError):
                break
    except OSError:
        pass
    finally:
        if close_dst:
            try:
                dst.close()
            except OSError:
                pass
        try:
            src.close()
        except OSError:
            pass


def run_inside(home: Home, name: str, user: str, cd: str | None, cmd: list[str], argv: list[str]) -> int:
    distro_dir = home.distro_dir(name) if name else None
    if name == "":
        default = next((d for d in home.distros() if d.get("default")), None)
        distro_dir = home.root / "distros" / default["name"] if default else None
    if distro_dir is None:
        log_call(home, argv, None)
        out(NO_DISTRO, err=True)
        return 0xFFFFFFFF & 255
    state = json.loads((distro_dir / "state.json").read_text())
    with home.locked():
        state = json.loads((distro_dir / "state.json").read_text())
        if state["state"] != "Running":
            time.sleep(float(home.config.get("distro_start_s", 0)))
            home.set_state(state["name"], state="Running")
    env = inner_env(home, distro_dir, state["name"], user)
    log_call(home, argv, env)
    cwd = to_linux(cd, home.config["drives"]) if cd else env["HOME"]
    if cwd.startswith("~"):
        cwd = env["HOME"] + cwd[1:]
    rootfs = distro_dir / "rootfs"
    (rootfs / "opt").mkdir(parents=True, exist_ok=True)
    q = shlex.quote
    mounts = ["mount -t tmpfs wsl-mnt /mnt"]
    for letter, folder in sorted(home.config["drives"].items()):
        mounts.append(f"mkdir -p /mnt/{letter.lower()} && mount --bind {q(folder)} /mnt/{letter.lower()}")
    mounts.append(f"mount --bind {q(str(rootfs / 'opt'))} /opt")
    script = " && ".join(mounts) + f' && {{ cd {q(cwd)} 2>/dev/null || {{ echo "chdir({cwd}) failed 2" >&2; exit 1; }}; }} && exec "$@"'
    # A session of its own, as a Linux process started by WSL's init: killing this wsl.exe does not reach it.
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script,
                             "wsl-init", *cmd], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, bufsize=0)
    threads = [threading.Thread(target=relay, args=(sys.stdin.buffer, proc.stdin, True), daemon=True),
               threading.Thread(target=relay, args=(proc.stdout, sys.stdout.buffer, False)),
               threading.Thread(target=relay, args=(proc.stderr, sys.stderr.buffer, False))]
    for t in threads:
        t.start()
    # Ctrl-C or a console close reaching wsl.exe: WSL forwards SIGINT to the Linux process.
    signal.signal(signal.SIGINT, lambda *_: os.kill(proc.pid, signal.SIGINT))
    code = proc.wait()
    for t in threads[1:]:
        t.join()
    return code if code >= 0 else 128 - code


def parse_run_args(args: list[str]) -> tuple[str, str, str | None, list[str]] | None:
    name, user, cd = "", "root", None
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-d", "--distribution"):
            name, i = args[i + 1], i + 2
        elif a in ("-u", "--user"):
            user, i = args[i + 1], i + 2
        elif a == "--cd":
            cd, i = args[i + 1], i + 2
        elif a in ("-e", "--exec"):
            return name, user, cd, args[i + 1:]
        elif a == "--":
            # the command line is joined and handed to the distribution's shell, which splits it again
            return name, user, cd, ["/bin/sh", "-c", " ".join(args[i + 1:])]
        else:
            return None
    return name, user, cd, ["/bin/sh"]


def list_verbose(home: Home) -> int:
    distros = home.distros()
    if not distros:
        out("Windows Subsystem for Linux has no installed distributions.\nYou can resolve this by installing a "
            "distribution with the instructions below:\n\nUse 'wsl.exe --list --online' to list available "
            "distributions\nand 'wsl.exe --install <Distro>' to install.\n")
        return 255
    rows = [("", "NAME", "STATE", "VERSION")]
    rows += [("*" if d.get("default") else "", d["name"], d["state"], str(d["version"])) for d in distros]
    w1 = max(len(r[1]) for r in rows) + 4
    w2 = max(len(r[2]) for r in rows) + 4
    out("".join(f"{(r[0] or ' '):<2}{r[1]:<{w1}}{r[2]:<{w2}}{r[3]}\n" for r in rows))
    return 0


def status(home: Home) -> int:
    if not home.config.get("installed", True):
        out(NOT_INSTALLED)
        return 1
    default = next((d["name"] for d in home.distros() if d.get("default")), "")
    text = (f"Default Distribution: {default}\n" if default else "") + \
        f"Default Version: {home.config.get('default_version', 2)}\n"
    out(text)
    return 0


def install(home: Home, name: str) -> int:
    out(f"Installing: {name}\n")
    time.sleep(float(home.config.get("install_s", 0)))
    folder = home.root / "distros" / name
    (folder / "rootfs" / "opt").mkdir(parents=True, exist_ok=True)
    with home.locked():
        first = not home.distros()
        _write_json(folder / "state.json", {"name": name, "version": int(home.config.get("default_version", 2)),
                                            "state": "Stopped", "default": first})
    out(f"{name} has been installed.\n")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "--home":
        print("usage: wsl.py --home HOME ARGS...", file=sys.stderr)
        return 2
    home = Home(Path(argv[1]))
    args = argv[2:]
    if not home.config.get("installed", True):
        log_call(home, args, None)
        out(NOT_INSTALLED)
        return 1
    home.boot()
    if args[:1] in (["-l"], ["--list"]):
        log_call(home, args, None)
        return list_verbose(home)
    if args[:1] == ["--status"]:
        log_call(home, args, None)
        return status(home)
    if args[:1] == ["--install"]:
        log_call(home, args, None)
        name = args[args.index("-d") + 1] if "-d" in args else "Ubuntu"
        return install(home, name)
    if args[:1] == ["--set-version"]:
        log_call(home, args, None)
        folder = home.distro_dir(args[1])
        if folder is None:
            out(NO_DISTRO, err=True)
            return 255
        out("Conversion in progress, this may take a few minutes.\n")
        home.set_state(folder.name, version=int(args[2]))
        out("The operation completed successfully.\n")
        return 0
    if args[:1] in (["--terminate"], ["-t"]):
        log_call(home, args, None)
        folder = home.distro_dir(args[1])
        if folder is None:
            out(NO_DISTRO, err=True)
            return 255
        kill_inside(folder)
        home.set_state(folder.name, state="Stopped")
        out("The operation completed successfully.\n")
        return 0
    if args[:1] == ["--shutdown"]:
        log_call(home, args, None)
        for d in home.distros():
            kill_inside(home.root / "distros" / d["name"])
            home.set_state(d["name"], state="Stopped")
        with home.locked():
            home.config["vm_running"] = False
            home.save_config()
        return 0
    parsed = parse_run_args(args)
    if parsed is None:
        log_call(home, args, None)
        out(f"Invalid command line argument: {args[0]}\nPlease use 'wsl.exe --help' to get a list of supported "
            "arguments.\n", err=True)
        return 255
    name, user, cd, cmd = parsed
    return run_inside(home, name, user, cd, cmd, args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
