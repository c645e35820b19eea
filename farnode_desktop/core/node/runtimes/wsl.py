"""The engine inside WSL2 on Windows: ``wsl.exe`` command lines and the parsing of what it prints.

Layout inside the distribution (all owned by root, the engine runs as root in its own distribution):
``/opt/farnode/src/farnode_desktop/`` (the engine-side source, copied from the app's bundle),
``/opt/farnode/engine/<variant>-v<lock>/venv`` (the engine's venv, from the app's lock, the CUDA torch
build for ``cuda``), ``/opt/farnode/engine/<variant>-v<lock>-<digest>/ready.json`` (lock digest once verified) and
``/opt/farnode/cache`` (blocks and throughput cache: on the Linux file system, much faster than /mnt/c).

The GUI, NVML and the keyring stay on Windows. ``wsl.exe`` prints UTF-16LE (with or without a BOM) unless
``WSL_UTF8=1``; :func:`farnode_desktop.core.node.runtimes.decode_output` reads both.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import uuid
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath, PureWindowsPath

from farnode_desktop.core.engine_lock import (
    engine_requirement,
    env_folder_name,
    lock_digest,
    lock_path,
    pip_install_options,
    read_lock,
)
from farnode_desktop.core.node.runtimes.base import (
    STOP_LINE,
    EngineRuntime,
    EngineRuntimeError,
    RuntimeStatus,
    SetupStep,
    SpawnSpec,
    StopStrategy,
    engine_env_subset,
    step_weights,
    without_secrets,
)

WSL = "wsl.exe"
WSL_EXE_ENV = "FARNODE_WSL_EXE"  # another wsl.exe: the tests' stand-in (tests/support/wsl_standin)
# Folders that stand for Windows drives when the app runs the Windows path on another OS (the tests, with
# the stand-in wsl.exe): ``c=/folder;d=/folder``. Unset on Windows, where host paths are Windows paths.
DRIVES_ENV = "FARNODE_WINDOWS_DRIVES"
DEFAULT_DISTRO = "Ubuntu"  # what `wsl --install -d Ubuntu` registers; an existing one is reused
WSL_ROOT = PurePosixPath("/opt/farnode")
WSL_SRC = WSL_ROOT / "src"
WSL_CACHE = WSL_ROOT / "cache"
STEP_TAG = "FARNODE_SETUP_STEP"  # carried into WSL by WSLENV: marks the processes of one set-up step


@dataclass(frozen=True)
class WslDistro:
    name: str
    state: str  # Running, Stopped, Installing, Converting, Uninstalling
    version: int  # 1 or 2
    default: bool


@dataclass(frozen=True)
class WslStatus:
    installed: bool  # the WSL feature works (wsl.exe --status succeeded)
    default_distro: str = ""
    default_version: int = 0
    message: str = ""  # what wsl.exe said when it is not usable


_NOT_INSTALLED = ("is not installed", "not enabled", "wsl.exe --install", "wslregisterdistribution failed",
                  "optional component", "virtual machine platform")


def parse_wsl_status(output: str, returncode: int) -> WslStatus:
    """``wsl.exe --status`` (decoded). Exit code 0 with ``Default Version: 2`` lines when WSL works."""
    text = output.replace("\x00", "")
    low = text.lower()
    default = re.search(r"^\s*default distribution\s*:\s*(.+?)\s*$", text, re.I | re.M)
    version = re.search(r"^\s*default version\s*:\s*(\d)", text, re.I | re.M)
    if returncode != 0 or (any(s in low for s in _NOT_INSTALLED) and not version):
        return WslStatus(False, message=text.strip())
    return WslStatus(True, default.group(1) if default else "", int(version.group(1)) if version else 2)


def parse_wsl_list(output: str) -> list[WslDistro]:
    """``wsl.exe -l -v`` (decoded): a header (``NAME STATE VERSION``, localised) and one line per
    distribution, the default one marked ``*``. Distribution names have no spaces; a localised state may
    (``Wird ausgeführt``). No distributions: a sentence instead of the table (empty list)."""
    out = []
    for ln in output.replace("\x00", "").splitlines():
        m = re.match(r"^\s*(\*?)\s*(\S+)\s+(.+?)\s+([12])\s*$", ln)
        if m:
            out.append(WslDistro(m.group(2), m.group(3), int(m.group(4)), m.group(1) == "*"))
    return out


def choose_distro(distros: list[WslDistro], wanted: str = "") -> WslDistro | None:
    """The distribution to use: ``wanted`` if it exists, else a WSL2 Ubuntu (the default one first), else
    None (one has to be installed)."""
    if wanted:
        return next((d for d in distros if d.name.lower() == wanted.lower()), None)
    ubuntus = [d for d in distros if d.name.lower().startswith("ubuntu") and d.state.lower() != "uninstalling"]
    ubuntus.sort(key=lambda d: (d.version != 2, not d.default, d.name))
    return ubuntus[0] if ubuntus else None


def wsl_exe() -> str:
    """The ``wsl.exe`` to run (``FARNODE_WSL_EXE`` names another: the tests' stand-in)."""
    return os.environ.get(WSL_EXE_ENV) or WSL


def host_to_windows_path(path: str | Path, drives: str | None = None) -> str:
    """A host path as Windows names it: itself on Windows; under ``FARNODE_WINDOWS_DRIVES`` (``c=/folder;...``,
    the tests' stand-in machine) a path inside one of those folders becomes ``C:\\...``."""
    s = str(path)
    spec = os.environ.get(DRIVES_ENV, "") if drives is None else drives
    if not spec or not s.startswith("/"):
        return s
    target = PurePosixPath(s)
    for item in filter(None, spec.split(";")):
        letter, _, folder = item.partition("=")
        try:
            rest = target.relative_to(PurePosixPath(folder))
        except ValueError:
            continue
        return str(PureWindowsPath(f"{letter.upper()}:\\", *rest.parts))
    return s


def windows_to_wsl_path(path: str | Path, distro: str = "") -> str:
    """``C:\\Users\\me\\x`` -> ``/mnt/c/Users/me/x``; ``\\\\wsl$\\<distro>\\opt\\x`` (or ``\\\\wsl.localhost``)
    -> ``/opt/x``. POSIX paths are returned as they are. Other network paths are refused."""
    s = str(path)
    if s.startswith("/"):
        return s
    p = PureWindowsPath(s)
    if p.drive.startswith("\\\\"):
        parts = p.drive.strip("\\").split("\\")
        host = parts[0].lower()
        if host in ("wsl$", "wsl.localhost") and len(parts) > 1:
            if distro and parts[1].lower() != distro.lower():
                raise EngineRuntimeError(f"{s} is inside the WSL distribution {parts[1]!r}, not in {distro!r} "
                                         "where the engine runs. Use a folder on a Windows drive.")
            return "/" + "/".join(p.parts[1:]) if len(p.parts) > 1 else "/"
        raise EngineRuntimeError(f"The engine in WSL2 cannot use the network path {s}. Use a folder on a local "
                                 "drive (such as C:) in Settings.")
    if len(p.drive) == 2 and p.drive[1] == ":" and p.root:
        rest = "/".join(p.parts[1:])
        return f"/mnt/{p.drive[0].lower()}" + (f"/{rest}" if rest else "")
    raise EngineRuntimeError(f"{s} is not an absolute Windows path; the engine in WSL2 needs one.")


class Wsl2Runtime(EngineRuntime):
    """Runs the engine in a WSL2 distribution through ``wsl.exe`` (events on stdout, log on stderr)."""

    name = "wsl2"
    status_timeout_s = 60.0  # what `wsl --status` and `wsl -l -v` get (the first call after boot takes seconds)

    def __init__(self, source_root: str | Path, variant: str = "cuda", distro: str = DEFAULT_DISTRO,
                 host_env: dict[str, str] | None = None, wsl: str = WSL):
        if variant not in ("cpu", "cuda"):
            raise EngineRuntimeError(f"Unknown engine variant {variant!r}")
        self.source_root = str(source_root)
        self.variant = variant
        self.distro = distro
        self.wsl = wsl
        self.host_env = host_env
        self.drives = (host_env if host_env is not None else os.environ).get(DRIVES_ENV, "")
        self.engine_dir = WSL_ROOT / "engine" / env_folder_name(variant)  # a changed lock: a new folder
        self.venv = self.engine_dir / "venv"
        self.python = str(self.venv / "bin" / "python")

    # ------------------------------------------------------------------ commands
    def wsl_cmd(self, *argv: str, cwd: str | None = None) -> tuple[str, ...]:
        """``wsl.exe -d <distro> -u root [--cd DIR] --exec argv...``: ``--exec`` runs the program without the
        distribution's shell, so arguments arrive as they are (``--`` would join them for bash to re-split)."""
        head = [self.wsl, "-d", self.distro, "-u", "root"]
        if cwd:
            head += ["--cd", cwd]
        return (*head, "--exec", *argv)

    def sh(self, script: str) -> tuple[str, ...]:
        return self.wsl_cmd("sh", "-c", script)

    def _engine_env(self, extra: dict[str, str] | None) -> dict[str, str]:
        env = engine_env_subset(self.host_env if self.host_env is not None else dict(os.environ), extra)
        env.update(PYTHONPATH=str(WSL_SRC), PYTHONUNBUFFERED="1", HF_HUB_DISABLE_TELEMETRY="1",
                   PYTHONWARNINGS="ignore::FutureWarning,ignore::UserWarning")
        env.update(extra or {})
        return env

    def spawn_spec(self, module, args, env_extra, event_fd, *, ports=(), node_id="main") -> SpawnSpec:
        env = self._engine_env(env_extra)
        assignments = [f"{k}={v}" for k, v in sorted(env.items())]
        # setsid -w: the launcher leads its own process group inside WSL (its kill-group at exit and our
        # fallback `kill -- -PID` reach the DHT, handlers and p2pd) while wsl.exe still waits for it.
        argv = list(self.wsl_cmd("env", *assignments, "setsid", "-w", self.python, "-m", module, *args,
                                 "--event-fd", "1", cwd=str(WSL_SRC)))
        return SpawnSpec(argv=argv, env=self._host_env(), pass_fds=(), cwd=None, events_on_stdout=True)

    def command_spec(self, module, args, env_extra=None) -> SpawnSpec:
        assignments = [f"{k}={v}" for k, v in sorted(self._engine_env(env_extra).items())]
        argv = list(self.wsl_cmd("env", *assignments, self.python, "-m", module, *args, cwd=str(WSL_SRC)))
        return SpawnSpec(argv=argv, env=self._host_env(), pass_fds=(), cwd=None, events_on_stdout=False)

    def _host_env(self) -> dict[str, str]:
        """wsl.exe's environment: the app's, less its secrets (a wallet key, the Hugging Face token: WSL hands
        whatever WSLENV names to the Linux side) and the GUI's Python variables. What the engine needs
        crosses on its command line (``env K=V``, :meth:`_engine_env`), never through WSLENV."""
        host = self.host_env if self.host_env is not None else dict(os.environ)
        host_env = {k: v for k, v in without_secrets(host).items() if not k.startswith(("FARNODE_SECRET", "PYTHON"))}
        host_env["WSL_UTF8"] = "1"  # wsl.exe's own messages in UTF-8
        return host_env

    def translate_path(self, path) -> str:
        return windows_to_wsl_path(host_to_windows_path(path, self.drives), self.distro)

    def translate_config(self, config: dict) -> dict:
        out = super().translate_config(config)
        if "cache_dir" in out:
            out["cache_dir"] = str(WSL_CACHE)
        if out.get("host") == "127.0.0.1" and not out.get("local_network"):
            out["host"] = "0.0.0.0"  # reachable through WSL's port forwarding
        return out

    def stop_strategy(self, engine_pid=None, node_id="main") -> StopStrategy:
        fallback, kill = (), ()
        if engine_pid:
            fallback = (self.wsl_cmd("kill", "-INT", str(int(engine_pid))),)
            kill = (self.wsl_cmd("kill", "-KILL", "--", f"-{int(engine_pid)}"),)
        return StopStrategy(stdin_line=STOP_LINE, signal=None, grace_s=30.0, fallback=fallback,
                            fallback_grace_s=15.0, kill_group=False, kill_commands=kill)

    def leftover_commands(self, engine_pid: int) -> tuple[tuple[str, ...], ...]:
        """The launcher's process group inside the distribution (it leads it: ``setsid -w``), killed only while
        a member of that group is still one of the engine's (the pid may have been reused since)."""
        script = ('pgrep -g "$1" -f "farnode_desktop[.]engine|p2pd" >/dev/null 2>&1 || exit 0; '
                  'kill -9 -"$1" 2>/dev/null; exit 0')
        return (self.wsl_cmd("sh", "-c", script, "farnode-leftovers", str(int(engine_pid))),)

    # ------------------------------------------------------------------ status
    def status_steps(self) -> list[SetupStep]:
        return [
            SetupStep("checking WSL", (self.wsl, "--status"), check=True, timeout_s=self.status_timeout_s),
            SetupStep("listing WSL distributions", (self.wsl, "-l", "-v"), check=True,
                      timeout_s=self.status_timeout_s),
            SetupStep("reading the engine's state", self.wsl_cmd("cat", str(self.engine_dir / "ready.json")),
                      check=True, timeout_s=120),
        ]

    def parse_status(self, outputs: list[tuple[int, str]]) -> RuntimeStatus:
        """``outputs``: (exit code, decoded output) of :meth:`status_steps`, in order; fewer is fine."""
        rc, text = outputs[0]
        if rc == 124 and text.rstrip().endswith("timed out after " f"{self.status_timeout_s:.0f} s"):
            return RuntimeStatus(False, message=f"WSL did not answer within {self.status_timeout_s:.0f} s (the first "
                                 "call after Windows starts can be slow). Wait a minute and start again; if it "
                                 "repeats, run `wsl --shutdown` in PowerShell, then start again.",
                                 details={"wsl": text[-300:]})
        st = parse_wsl_status(text, rc)
        if not st.installed:
            return RuntimeStatus(False, message="WSL2 is not installed. Open PowerShell as administrator, run "
                                 "`wsl --install --no-distribution`, restart Windows, then open FarNode again.",
                                 details={"wsl": st.message})
        distros = parse_wsl_list(outputs[1][1]) if len(outputs) > 1 else []
        chosen = choose_distro(distros, self.distro if self.distro != DEFAULT_DISTRO else "")
        details = {"distros": [d.name for d in distros], "distro": chosen.name if chosen else ""}
        if chosen is None:
            return RuntimeStatus(True, message="No Ubuntu distribution is installed in WSL yet: the engine set-up "
                                 "installs one.", details=details)
        if chosen.version != 2:
            return RuntimeStatus(True, message=f"{chosen.name} runs under WSL 1: the set-up converts it to WSL 2.",
                                 details=details)
        ready = False
        if len(outputs) > 2 and outputs[2][0] == 0:
            try:
                ready = json.loads(outputs[2][1].strip().splitlines()[-1]).get("lock") == lock_digest(lock_path(self.variant))
            except (ValueError, IndexError, AttributeError):
                ready = False
        return RuntimeStatus(True, engine_ready=ready, details=details,
                             message="" if ready else "The engine is not set up in WSL yet.")

    # ------------------------------------------------------------------ set-up
    def setup_steps(self, variant: str | None = None, *, distros: list[WslDistro] | None = None) -> list[SetupStep]:
        """The whole set-up, given the distributions found (``parse_wsl_list``); resumable: pip skips what
        is installed at the locked version, the venv and the distribution are reused."""
        variant = variant or self.variant
        steps: list[SetupStep] = []
        found = choose_distro(distros or [], self.distro if self.distro != DEFAULT_DISTRO else "")
        if found is None:
            steps.append(SetupStep(f"installing {self.distro} in WSL",
                                   (self.wsl, "--install", "-d", self.distro, "--no-launch"), weight=20,
                                   timeout_s=1800))
            steps.append(SetupStep(f"starting {self.distro}", self.wsl_cmd("true"), timeout_s=300))
        else:
            self.distro = found.name
            if found.version != 2:
                steps.append(SetupStep(f"converting {found.name} to WSL 2",
                                       (self.wsl, "--set-version", found.name, "2"), weight=10, timeout_s=3600))
        q = shlex.quote
        steps.append(SetupStep("installing Python in WSL", self.sh(
            "command -v python3 >/dev/null && python3 -m venv --help >/dev/null 2>&1 && "
            "python3 -m ensurepip --version >/dev/null 2>&1 || "
            "(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv "
            "python3-pip)"), weight=5, timeout_s=1800))
        src = self.translate_path(self.source_root)
        new = f"{WSL_SRC}.new"
        steps.append(SetupStep("copying the engine files into WSL", self.sh(
            f"rm -rf {q(new)} && mkdir -p {q(new)} {q(str(WSL_CACHE))} && cp -r {q(src + '/farnode_desktop')} "
            f"{q(new)}/ && rm -rf {q(str(WSL_SRC))} && mv {q(new)} {q(str(WSL_SRC))}"), timeout_s=300))
        steps.append(SetupStep("creating the engine environment in WSL", self.sh(
            f"{q(self.python)} -c 'import sys' 2>/dev/null || (rm -rf {q(str(self.venv))} && "
            f"python3 -m venv {q(str(self.venv))})"), timeout_s=600))
        lock = read_lock(lock_path(variant))
        for req, weight in zip(lock, step_weights(lock), strict=True):
            cmd = [self.python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                   "--progress-bar", "off", "-q"]
            cmd += pip_install_options(req, variant, self.host_env)  # as EngineEnv
            # The engine (on no package index): its pinned commit's source archive over HTTPS (a fresh
            # distribution may have no git); the URL names the full commit id.
            target = req.archive_url if req.url else req.spec
            steps.append(SetupStep(f"installing {req.name} {req.version}", self.wsl_cmd(*cmd, target),
                                   weight=weight, timeout_s=3600))
        probe_env = [f"{k}={v}" for k, v in sorted(self._engine_env(None).items())]
        steps.append(SetupStep("verifying the engine", self.wsl_cmd(
            "env", *probe_env, self.python, "-m", "farnode_desktop.engine.probe", cwd=str(WSL_SRC)), weight=2,
            timeout_s=600))
        engine = engine_requirement(lock)
        marker = json.dumps({"lock": lock_digest(lock_path(variant)), "variant": variant,
                             "engine_source": {"kind": "archive", "where": engine.archive_url,
                                               "commit": engine.commit}}).encode()
        steps.append(SetupStep("marking the engine ready", self.sh(
            f"cat > {q(str(self.engine_dir / 'ready.json'))}"), input=marker, timeout_s=60))
        return [self.tagged_step(s) for s in steps]

    def tagged_step(self, step: SetupStep) -> SetupStep:
        """A step that runs inside the distribution, tagged (a variable WSLENV carries in, which every process
        it starts inherits) so that a cancel or a timeout, which kills wsl.exe only, also ends its processes
        there (pip keeps downloading otherwise)."""
        if step.argv[:2] != (self.wsl, "-d"):
            return step
        tag = uuid.uuid4().hex[:16]
        script = (f'for p in /proc/[0-9]*; do grep -qxz "{STEP_TAG}=$1" "$p/environ" 2>/dev/null && '
                  'kill -9 "${p#/proc/}" 2>/dev/null; done; exit 0')
        return replace(step, host_env=((STEP_TAG, tag), ("WSLENV", STEP_TAG)),
                       cleanup=self.wsl_cmd("sh", "-c", script, "farnode-cancel", tag))
