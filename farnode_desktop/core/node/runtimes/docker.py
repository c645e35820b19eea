"""The engine in Petals' Docker image (``learningathome/petals:main``, or a configured image).

One container per node, named ``farnode-<node id>`` and labelled ``farnode.node=<node id>``. Mounts: the
engine-side source read-only at ``/opt/farnode/src`` (on ``PYTHONPATH``), the app's data folder at
``/farnode/data`` (identity keys, the demo model) and a named volume at ``/cache`` (blocks, throughput).
Events come on stdout (``--event-fd 1``), the log on stderr; ``-i`` keeps stdin open as the control pipe.
``--stop-signal SIGINT`` makes ``docker stop`` take Petals' clean path.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

from farnode_desktop.core.node.runtimes.base import (
    STOP_LINE,
    EngineRuntime,
    EngineRuntimeError,
    RuntimeStatus,
    SetupStep,
    SpawnSpec,
    StopStrategy,
    engine_env_subset,
)

DEFAULT_IMAGE = "learningathome/petals:main"
CACHE_VOLUME = "farnode-cache"
C_SRC = PurePosixPath("/opt/farnode/src")
C_DATA = PurePosixPath("/farnode/data")
C_CACHE = PurePosixPath("/cache")
LABEL = "farnode.node"
_NAME_OK = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


def container_name(node_id: str) -> str:
    name = f"farnode-{node_id}"
    if not _NAME_OK.match(name):
        raise EngineRuntimeError(f"The node id {node_id!r} cannot name a Docker container (letters, digits, "
                                 "'_', '.' and '-' only).")
    return name


@dataclass(frozen=True)
class DockerDaemon:
    reachable: bool
    server_version: str = ""
    platform: str = ""  # e.g. "Docker Desktop 4.37.1 (178610)" or "Docker Engine - Community"
    message: str = ""


def parse_docker_version(output: str, returncode: int) -> DockerDaemon:
    """``docker version --format "{{json .}}"``. Without a daemon the Server part is null and the command
    fails with "Cannot connect to the Docker daemon ..." after the JSON."""
    data = None
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                data = None
            break
    server = (data or {}).get("Server") if isinstance(data, dict) else None
    if returncode != 0 or not isinstance(server, dict):
        msg = next((ln.strip() for ln in output.splitlines() if ln.strip() and not ln.strip().startswith("{")), "")
        return DockerDaemon(False, message=msg or "the Docker daemon did not answer")
    platform = (server.get("Platform") or {}).get("Name", "") if isinstance(server.get("Platform"), dict) else ""
    return DockerDaemon(True, str(server.get("Version", "")), platform)


def parse_runtimes(output: str) -> set[str]:
    """``docker info --format "{{json .Runtimes}}"`` -> runtime names (``nvidia`` when the NVIDIA container
    toolkit registered itself)."""
    try:
        data = json.loads(output.strip().splitlines()[-1]) if output.strip() else {}
    except ValueError:
        return set()
    return set(data) if isinstance(data, dict) else set()


class DockerRuntime(EngineRuntime):
    name = "docker"

    def __init__(self, source_root: str | Path, data_dir: str | Path, variant: str = "cuda", *,
                 image: str = DEFAULT_IMAGE, cache_volume: str = CACHE_VOLUME, docker: str = "docker",
                 publish_host: str = "", host_env: dict[str, str] | None = None):
        self.source_root = str(source_root)
        self.data_dir = str(data_dir)
        self.variant = variant
        self.image = image or DEFAULT_IMAGE
        self.cache_volume = cache_volume
        self.docker = docker
        self.publish_host = publish_host  # "" all interfaces, "127.0.0.1" this machine only
        self.host_env = host_env

    def _engine_env(self, extra: dict[str, str] | None) -> dict[str, str]:
        import os

        env = engine_env_subset(self.host_env if self.host_env is not None else dict(os.environ), extra)
        env.update(PYTHONPATH=str(C_SRC), PYTHONUNBUFFERED="1", HF_HUB_DISABLE_TELEMETRY="1",
                   PYTHONWARNINGS="ignore::FutureWarning,ignore::UserWarning", FARMESH_CACHE=str(C_CACHE))
        env.update(extra or {})
        return env

    def run_args(self, node_id: str, ports=(), env_extra: dict[str, str] | None = None,
                 interactive: bool = True) -> list[str]:
        """``docker run`` up to the image name."""
        args = [self.docker, "run", "--rm"]
        if interactive:
            args.append("-i")
        args += ["--name", container_name(node_id), "--label", f"{LABEL}={node_id}", "--ipc", "host",
                 "--stop-signal", "SIGINT", "--stop-timeout", "30"]
        if self.variant == "cuda":
            args += ["--gpus", "all"]
        for port in ports:
            port = int(port)
            if not (1 <= port <= 65535):
                raise EngineRuntimeError(f"Port {port} cannot be published; choose one between 1 and 65535.")
            args += ["-p", f"{self.publish_host}:{port}:{port}" if self.publish_host else f"{port}:{port}"]
        args += ["-v", f"{self.cache_volume}:{C_CACHE}", "-v", f"{self.source_root}:{C_SRC}:ro",
                 "-v", f"{self.data_dir}:{C_DATA}", "-w", str(C_SRC)]
        for k, v in sorted(self._engine_env(env_extra).items()):
            args += ["-e", f"{k}={v}"]
        return args

    def spawn_spec(self, module, args, env_extra, event_fd, *, ports=(), node_id="main") -> SpawnSpec:
        argv = [*self.run_args(node_id, ports, env_extra), self.image, "python", "-m", module, *args,
                "--event-fd", "1"]
        return SpawnSpec(argv=argv, env=self._host_env(), pass_fds=(), cwd=None, events_on_stdout=True,
                         name=container_name(node_id))

    def command_spec(self, module, args, env_extra=None) -> SpawnSpec:
        name = "cmd-" + module.rsplit(".", 1)[-1]
        argv = [*self.run_args(name, (), env_extra, interactive=False), self.image, "python", "-m", module, *args]
        return SpawnSpec(argv=argv, env=self._host_env(), pass_fds=(), cwd=None, events_on_stdout=False,
                         name=container_name(name))

    def _host_env(self) -> dict[str, str]:
        import os

        host = self.host_env if self.host_env is not None else dict(os.environ)
        return {k: v for k, v in host.items() if not k.startswith(("FARNODE_SECRET", "PYTHON"))}

    def translate_path(self, path) -> str:
        s = str(path)
        host = PureWindowsPath(s) if (len(s) > 1 and s[1] == ":") or s.startswith("\\\\") else PurePosixPath(s)
        for base, target in ((self.data_dir, C_DATA), (self.source_root, C_SRC)):
            b: PurePath = PureWindowsPath(base) if type(host) is PureWindowsPath else PurePosixPath(base)
            try:
                rel = host.relative_to(b)
            except ValueError:
                continue
            return str(target.joinpath(*rel.parts))
        raise EngineRuntimeError(f"{s} is outside the folders shared with the engine's container ({self.data_dir}). "
                                 "Put models and keys inside the app's data folder.")

    def translate_config(self, config: dict) -> dict:
        out = super().translate_config({k: v for k, v in config.items() if k != "cache_dir"})
        if "cache_dir" in config:
            out["cache_dir"] = str(C_CACHE)  # the named volume
        if out.get("host") in ("127.0.0.1", "localhost"):
            out["host"] = "0.0.0.0"  # inside the container; published on the host by -p
        return out

    def stop_strategy(self, engine_pid=None, node_id="main") -> StopStrategy:
        name = container_name(node_id)
        return StopStrategy(stdin_line=STOP_LINE, signal=None, grace_s=30.0,
                            fallback=((self.docker, "stop", "-t", "20", name),), fallback_grace_s=25.0,
                            kill_group=True, kill_commands=((self.docker, "rm", "-f", name),))

    # ------------------------------------------------------------------ status and set-up
    def status_steps(self) -> list[SetupStep]:
        return [
            SetupStep("checking Docker", (self.docker, "version", "--format", "{{json .}}"), check=True,
                      timeout_s=60),
            SetupStep("checking Docker's GPU support", (self.docker, "info", "--format", "{{json .Runtimes}}"),
                      check=True, timeout_s=60),
            SetupStep("looking for the engine image", (self.docker, "image", "inspect", "--format", "{{.Id}}",
                                                       self.image), check=True, timeout_s=60),
        ]

    def parse_status(self, outputs: list[tuple[int, str]]) -> RuntimeStatus:
        daemon = parse_docker_version(outputs[0][1], outputs[0][0])
        if not daemon.reachable:
            return RuntimeStatus(False, message="Docker is not running (" + daemon.message[:200] + "). Start "
                                 "Docker Desktop (or the docker service) and try again.")
        runtimes = parse_runtimes(outputs[1][1]) if len(outputs) > 1 and outputs[1][0] == 0 else set()
        gpu = "nvidia" in runtimes or "docker desktop" in daemon.platform.lower()
        details = {"server_version": daemon.server_version, "platform": daemon.platform, "gpu": gpu}
        if self.variant == "cuda" and not gpu:
            return RuntimeStatus(True, details=details, message="Docker cannot give containers the GPU: install "
                                 "the NVIDIA Container Toolkit (or use Docker Desktop with WSL2), then restart Docker.")
        have_image = len(outputs) > 2 and outputs[2][0] == 0 and outputs[2][1].strip().startswith("sha256:")
        return RuntimeStatus(True, engine_ready=have_image, details=details,
                             message="" if have_image else f"The engine image {self.image} is not downloaded yet.")

    def setup_steps(self, variant: str | None = None) -> list[SetupStep]:
        probe = [*self.run_args("setup-probe", interactive=False), self.image, "python", "-m",
                 "farnode_desktop.engine.probe"]
        return [
            SetupStep(f"downloading the engine image {self.image}", (self.docker, "pull", self.image), weight=40,
                      timeout_s=3600),
            SetupStep("verifying the engine", tuple(probe), weight=2, timeout_s=600),
        ]
