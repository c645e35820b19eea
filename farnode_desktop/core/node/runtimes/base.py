"""Where the engine runs: natively (Linux, macOS), inside WSL2 (Windows) or in a Docker image built from the engine lock.

An :class:`EngineRuntime` turns "run engine module M with arguments A" into a :class:`SpawnSpec` (the exact
``subprocess.Popen`` arguments), translates the host paths in a launcher configuration to paths the engine
sees, says how its processes are stopped (:class:`StopStrategy`) and how its engine environment is set up
and checked (:class:`SetupStep` lists whose outputs the runtime parses). Everything here is pure: command
construction and output parsing only, so it is tested on any OS; :func:`run_steps` is the one place that
runs set-up steps.

Which runtime: the ``runtime`` setting (``auto``, ``native``, ``wsl2``, ``docker``); ``auto`` is ``native``
except on Windows, where it is ``wsl2`` (FarMesh does not run natively on Windows).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.resources import engine_source_root
from farnode_desktop.core.snapshots import EngineProgress
from farnode_desktop.engine.protocol import STOP_LINE

RUNTIMES = ("auto", "native", "wsl2", "docker")
# Launcher configuration keys that hold host paths (see core/node/demo_swarm.py launcher_config).
PATH_KEYS = ("identity_path", "cache_dir", "model")
# What an engine process needs from the app's environment (the rest stays on the host side).
ENGINE_ENV_KEYS = ("PYTHONUNBUFFERED", "PYTHONWARNINGS", "HF_HUB_DISABLE_TELEMETRY", "HF_HUB_OFFLINE",
                   "HF_ENDPOINT", "CUDA_VISIBLE_DEVICES", "FARMESH_CACHE",
                   "PETALS_CACHE")  # the previous engine's name for it (lock v1, kept until the upgrade ends)


# Environment variable names that must never reach an engine process: wallet secrets by any usual name, and
# the Hugging Face token (the app hands it to the server through the control pipe only).
SECRET_ENV_RE = re.compile(r"PRIVATE_?KEY|MNEMONIC|SEED_?PHRASE|RECOVERY_?PHRASE|WALLET_?(KEY|SECRET)|SECRET"
                           r"|HF_TOKEN|HUGGING_?FACE_?HUB_?TOKEN|HF_API_TOKEN", re.I)


def without_secrets(env: dict[str, str] | None = None) -> dict[str, str]:
    """An environment (the app's, by default) for host programs that reach the engine's side (``wsl.exe``,
    ``docker``): less every secret-named variable, and less such names in ``WSLENV`` (WSL hands the variables
    it names to the Linux side)."""
    source = os.environ if env is None else env
    out = {k: v for k, v in source.items() if not SECRET_ENV_RE.search(k)}
    if "WSLENV" in out:
        out["WSLENV"] = ":".join(item for item in out["WSLENV"].split(":")
                                 if item and not SECRET_ENV_RE.search(item.partition("/")[0]))
    return out


def engine_subprocess_env(extra: dict[str, str] | None = None, *, source_root: str | Path | None = None
                          ) -> dict[str, str]:
    """Environment for engine processes: only what they need, never the app's secrets.

    Starts from the user's environment minus variables that would break or leak into the engine's
    interpreter (the GUI venv's PYTHONPATH/PYTHONHOME, Qt variables), and puts this package's folder on
    PYTHONPATH so ``python -m farnode_desktop.engine.*`` works in the engine venv.
    """
    drop_prefixes = ("PYTHON", "QT_", "VIRTUAL_ENV", "PYSIDE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes) and not SECRET_ENV_RE.search(k)}
    env["PYTHONPATH"] = str(source_root or engine_source_root())
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONWARNINGS"] = "ignore::FutureWarning,ignore::UserWarning"
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if extra:
        env.update(extra)
    return env



class EngineRuntimeError(FarNodeError):
    title = "Engine runtime problem"


@dataclass(frozen=True)
class SpawnSpec:
    """Arguments for ``subprocess.Popen`` (stdin, stdout and stderr are always pipes).

    ``events_on_stdout``: the launcher writes its JSON-line events on stdout and its log on stderr
    (``--event-fd 1``); otherwise events come on the pipe whose write end is ``pass_fds[0]`` and stdout
    carries the log."""

    argv: list[str]
    env: dict[str, str]
    pass_fds: tuple[int, ...]
    cwd: str | None
    events_on_stdout: bool
    name: str = ""  # container name (Docker), empty otherwise

    def popen_kwargs(self) -> dict:
        """Keyword arguments for ``subprocess.Popen(spec.argv, **kwargs)`` (or ``processes.spawn``): the
        process gets a group of its own (see :mod:`farnode_desktop.core.process_tree`)."""
        from farnode_desktop.core.process_tree import group_popen_kwargs

        kw: dict = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self.env, cwd=self.cwd,
                        stderr=subprocess.PIPE if self.events_on_stdout else subprocess.STDOUT)
        if self.pass_fds:
            kw["pass_fds"] = self.pass_fds  # an event pipe: native runtimes, which are POSIX only
        kw.update(group_popen_kwargs())
        return kw


@dataclass(frozen=True)
class StopStrategy:
    """How to stop an engine process cleanly, in order:

    1. write ``stdin_line`` on its stdin (the launcher's control pipe) when set;
    2. send ``signal`` to its host pid when set (native only: SIGINT is FarMesh's clean path). A runtime
       sets one of the two, never both: the launcher turns "stop" into a SIGINT to itself, and a second
       SIGINT aborts FarMesh's clean shutdown;
    3. wait up to ``grace_s`` seconds;
    4. run ``fallback`` commands (e.g. a SIGINT inside WSL, ``docker stop``), wait ``fallback_grace_s``;
    5. kill: the host process group (``kill_group``) or the host process, then ``kill_commands``.
    """

    stdin_line: bytes | None = STOP_LINE
    signal: int | None = None
    grace_s: float = 30.0
    fallback: tuple[tuple[str, ...], ...] = ()
    fallback_grace_s: float = 10.0
    kill_group: bool = True
    kill_commands: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class SetupStep:
    """One command of an engine set-up. ``weight`` is its share of the progress bar; ``check`` steps
    are read-only probes whose failure is not an error."""

    label: str
    argv: tuple[str, ...]
    weight: float = 1.0
    timeout_s: float = 600.0
    check: bool = False
    input: bytes | None = None  # written to its stdin
    # Checks a successful step's output; returns what is wrong ("" when nothing is): the step then fails.
    verify: Callable[[str], str] | None = field(default=None, compare=False)
    # Variables added to the command's environment (a ``WSLENV`` here is added to the app's own list).
    host_env: tuple[tuple[str, str], ...] = ()
    # Run when the step is cancelled or times out: ends what killing the command's host process tree does not
    # reach (a Linux process inside WSL outlives a killed wsl.exe).
    cleanup: tuple[str, ...] = ()


@dataclass(frozen=True)
class StepResult:
    step: SetupStep
    returncode: int
    output: str


class EngineRuntime(ABC):
    """The interface the supervisor, the traffic generator and the set-up use."""

    name: str = ""

    @abstractmethod
    def spawn_spec(self, module: str, args: Sequence[str], env_extra: dict[str, str] | None,
                   event_fd: int | None, *, ports: Sequence[int] = (), node_id: str = "main") -> SpawnSpec:
        """How to run ``python -m <module> <args>`` in the engine. ``event_fd``: the write end of the event
        pipe, or None for events on stdout (always the case for WSL2 and Docker, whatever is passed)."""

    @abstractmethod
    def command_spec(self, module: str, args: Sequence[str], env_extra: dict[str, str] | None = None) -> SpawnSpec:
        """How to run ``python -m <module> <args>`` in the engine to its end (pip, the engine probe, the
        demo-model generator): its output on stdout, no event channel."""

    def translate_path(self, path: str | Path) -> str:
        """A host path as the engine sees it."""
        return str(path)

    def translate_config(self, config: dict) -> dict:
        """The launcher configuration with its host paths (:data:`PATH_KEYS`) as the engine sees them."""
        out = dict(config)
        for key in PATH_KEYS:
            value = out.get(key)
            if isinstance(value, str) and value and (key != "model" or _looks_like_path(value)):
                out[key] = self.translate_path(value)
        return out

    def stop_strategy(self, engine_pid: int | None = None, node_id: str = "main") -> StopStrategy:
        """``engine_pid``: the launcher's own pid as it reported it (``hello`` event), which differs from
        the host pid under WSL2 and Docker."""
        return StopStrategy()

    def leftover_commands(self, engine_pid: int) -> tuple[tuple[str, ...], ...]:
        """Commands that end what an earlier, dead app left running of its server whose launcher reported
        ``engine_pid`` (run before the next start). Empty where ending the host process tree is enough."""
        return ()

    def setup_steps(self, variant: str) -> list[SetupStep]:
        """Commands that set up the engine environment (empty: the app's EngineEnv does it in-process)."""
        return []

    def status_steps(self) -> list[SetupStep]:
        return []

    def after_setup(self, results: Sequence[StepResult]) -> None:  # noqa: B027 - optional hook
        """Called with the results of :meth:`setup_steps` once they all succeeded."""


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", "\\", "~", ".")) or (len(value) > 2 and value[1] == ":")


def engine_env_subset(env: dict[str, str], extra: dict[str, str] | None = None) -> dict[str, str]:
    """The engine-relevant variables of an environment (for runtimes where the host env does not apply)."""
    out = {k: v for k, v in env.items() if k in ENGINE_ENV_KEYS}
    out.update(extra or {})
    return out


# ---------------------------------------------------------------------------------------------- native
class NativeRuntime(EngineRuntime):
    """The engine's venv on this machine (Linux, macOS): the supervisor's original behaviour."""

    name = "native"

    def __init__(self, python: str | Path, source_root: str | Path, env: dict[str, str] | None = None):
        self.python = str(python)
        self.source_root = str(source_root)
        self._env = env  # None: engine_subprocess_env() at spawn time

    def _env_for(self, env_extra: dict[str, str] | None) -> dict[str, str]:
        if self._env is None:
            return engine_subprocess_env(env_extra, source_root=self.source_root)
        return {**self._env, "PYTHONPATH": self.source_root, **(env_extra or {})}

    def spawn_spec(self, module, args, env_extra, event_fd, *, ports=(), node_id="main") -> SpawnSpec:
        fd_args = ["--event-fd", str(event_fd if event_fd is not None else 1)]
        return SpawnSpec(argv=[self.python, "-m", module, *args, *fd_args], env=self._env_for(env_extra),
                         pass_fds=(event_fd,) if event_fd is not None else (), cwd=self.source_root,
                         events_on_stdout=event_fd is None)

    def command_spec(self, module, args, env_extra=None) -> SpawnSpec:
        return SpawnSpec(argv=[self.python, "-m", module, *args], env=self._env_for(env_extra), pass_fds=(),
                         cwd=self.source_root, events_on_stdout=False)

    def stop_strategy(self, engine_pid=None, node_id="main") -> StopStrategy:
        # One SIGINT only: the launcher turns a stdin "stop" into a SIGINT to itself, and a second SIGINT
        # aborts FarMesh's clean shutdown.
        return StopStrategy(stdin_line=None, signal=int(signal.SIGINT), kill_group=True)


# ---------------------------------------------------------------------------------------------- set-up
def decode_output(raw: bytes) -> str:
    """Text of a command's output: UTF-16LE (what ``wsl.exe`` writes, with or without a BOM) or UTF-8."""
    if raw.startswith(b"\xff\xfe"):
        return raw[2:].decode("utf-16-le", "replace").replace("\r\n", "\n")
    if len(raw) >= 4 and raw[1:2] == b"\x00" and raw[3:4] == b"\x00" and raw[0:1] != b"\x00":
        return raw.decode("utf-16-le", "replace").replace("\r\n", "\n")
    return raw.decode("utf-8", "replace").replace("\r\n", "\n").replace("\x00", "")


Runner = Callable[..., StepResult]  # (step, cancel) -> result


def run_step(step: SetupStep, cancel: Callable[[], bool] | None = None) -> StepResult:
    """Run one step (stdout and stderr together, decoded), as a process tree that ``cancel()`` ends at
    once. A missing program or a timeout is rc 127/124."""
    from farnode_desktop.core.process_tree import run

    env = without_secrets()
    for key, value in step.host_env:
        env[key] = ":".join(filter(None, (env.get(key, ""), value))) if key == "WSLENV" else value
    done = run(step.argv, timeout=step.timeout_s, cancel=cancel, input=step.input, env=env)
    if (done.cancelled or done.timed_out) and step.cleanup:
        run(step.cleanup, timeout=60, env=without_secrets())
    output = decode_output(done.output)
    if done.timed_out:
        output += f"\ntimed out after {step.timeout_s:.0f} s"
    if done.cancelled:
        raise EngineRuntimeError("The engine set-up was cancelled. Run it again to continue.",
                                 title="Engine set-up cancelled")
    return StepResult(step, done.returncode, output)


def run_steps(steps: Sequence[SetupStep], *, progress: Callable[[EngineProgress], None] | None = None,
              runner: Runner = run_step, cancel: Callable[[], bool] | None = None) -> list[StepResult]:
    """Run set-up steps in order with progress (percent by weight). A failing non-check step raises a
    :class:`FarNodeError` naming the step, with the end of its output as detail."""
    report = progress or (lambda p: None)
    total = sum(s.weight for s in steps) or 1.0
    done = 0.0
    results = []
    for step in steps:
        if cancel and cancel():
            raise EngineRuntimeError("The engine set-up was cancelled. Run it again to continue.",
                                title="Engine set-up cancelled")
        report(EngineProgress(min(99.0, 100.0 * done / total), step.label))
        res = runner(step, cancel)
        results.append(res)
        if res.returncode != 0 and not step.check:
            tail = res.output.strip()[-300:]
            raise EngineRuntimeError(f"Engine set-up failed while {step.label} (exit code {res.returncode}): {tail}",
                                detail=res.output[-3000:])
        problem = step.verify(res.output) if step.verify is not None and res.returncode == 0 else ""
        if problem:
            raise EngineRuntimeError(f"Engine set-up failed while {step.label}: {problem}. Run the set-up again; "
                                     "if it repeats, report it.", detail=res.output[-3000:])
        done += step.weight
    report(EngineProgress(100.0, "engine ready", done=True))
    return results


def step_weights(requirements: Sequence, torch_weight: float = 40.0) -> list[float]:
    """Progress weights of lock requirements (torch dominates the download), as EngineEnv.ensure uses."""
    return [torch_weight if r.name == "torch" else 1.0 for r in requirements]


@dataclass
class RuntimeStatus:
    """What a runtime's status steps found."""

    available: bool  # the runtime itself (WSL, the Docker daemon) works
    engine_ready: bool = False
    message: str = ""  # what is missing and what to do, when not ready
    details: dict = field(default_factory=dict)
