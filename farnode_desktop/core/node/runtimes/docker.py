"""The engine in a Docker image built here from the same lock and FarMesh commit as the native engine.

No published image is trusted to hold FarMesh's pinned commit, so the image is built on this machine, once:
:func:`write_build_context` writes a Dockerfile that installs the variant's lock line by line with the very
pip options the native environment uses (``--no-deps``, torch of the CPU variant from PyTorch's CPU index),
then FarMesh from its pinned commit (a local archive of it, checked, or that commit's source archive). The image
is tagged by the lock (``farnode-engine:<variant>-v<lock version>-<digest>``, the native folder's name) and
labelled with the lock digest and the engine's commit; set-up builds it with progress, runs the engine probe in
it and checks the engine's name, version and commit as the native set-up does, then records it as ready.
A changed lock is a new tag: the old image keeps serving until the new one is verified. The
``network.docker_image`` setting names an image built elsewhere from the same Dockerfile (a registry mirror):
it is pulled instead, and refused unless its labels name this lock and commit.

One container per node, named ``farnode-<node id>`` and labelled ``farnode.node=<node id>``. Mounts: the
engine-side source read-only at ``/opt/farnode/src`` (on ``PYTHONPATH``), the app's data folder at
``/farnode/data`` (identity keys, the demo model) and a named volume at ``/cache`` (blocks, throughput).
Events come on stdout (``--event-fd 1``), the log on stderr; ``-i`` keeps stdin open as the control pipe.
``--stop-signal SIGINT`` makes ``docker stop`` take FarMesh's clean path (SIGINT to its main process).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

from farnode_desktop.core.atomic import atomic_write_json
from farnode_desktop.core.engine_lock import (
    LOCK_VERSION,
    SOURCE_ENV,
    archive_commit,
    engine_problem,
    engine_requirement,
    env_folder_name,
    lock_digest,
    lock_path,
    parse_probe_output,
    pip_install_options,
    read_lock,
)
from farnode_desktop.core.errors import EngineEnvError
from farnode_desktop.core.node.runtimes.base import (
    STOP_LINE,
    EngineRuntime,
    EngineRuntimeError,
    RuntimeStatus,
    SetupStep,
    SpawnSpec,
    StepResult,
    StopStrategy,
    engine_env_subset,
)

IMAGE_REPO = "farnode-engine"  # the local image's name; its tag names the lock
BASE_IMAGE = "python:3.11-slim"  # the engine's Python; CUDA comes with torch's nvidia-* wheels, the driver from
# the host (NVIDIA Container Toolkit / Docker Desktop)
BUILD_ARGS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST")  # a package mirror, passed to the build
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


def engine_image(variant: str, lock_file: Path | None = None) -> str:
    """The local engine image of a variant's lock: ``farnode-engine:<variant>-v<lock version>-<digest>``."""
    return f"{IMAGE_REPO}:{env_folder_name(variant, lock_file)}"


@dataclass(frozen=True)
class BuildContext:
    """A written build context: its folder (Dockerfile, lock, engine archive), the image's tag and what its
    labels will say."""

    folder: Path
    tag: str
    lock_digest: str
    engine_commit: str
    build_args: dict[str, str]

    @property
    def dockerfile(self) -> Path:
        return self.folder / "Dockerfile"

    def build_argv(self, docker: str = "docker") -> list[str]:
        argv = [docker, "build", "--progress=plain", "-t", self.tag]
        for key, value in sorted(self.build_args.items()):
            argv += ["--build-arg", f"{key}={value}"]
        if any(re.search(r"//(127\.|localhost|\[::1\])", v) for v in self.build_args.values()):
            argv += ["--network", "host"]  # a package mirror on this machine
        return [*argv, str(self.folder)]


PIP_INSTALL = ("python", "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--progress-bar",
               "off", "-q")  # as the native set-up runs pip


def write_build_context(folder: Path, variant: str, *, local_source: Path | None = None,
                        host_env: dict[str, str] | None = None, lock_file: Path | None = None) -> BuildContext:
    """Write the engine image's build context into ``folder`` (replacing what is there) and return it.

    The Dockerfile installs the lock line by line (one layer each: a build cut short resumes from the last
    finished package) with :func:`pip_install_options`, as the native environment does; the engine from
    ``local_source`` (its header's commit checked here) or from its pinned commit's source archive."""
    env = dict(os.environ) if host_env is None else host_env
    lock_file = lock_file or lock_path(variant)
    lock = read_lock(lock_file)
    engine = engine_requirement(lock)
    digest = lock_digest(lock_file)
    if local_source is not None:
        if not local_source.is_file():
            raise EngineEnvError(f"The engine archive {local_source} does not exist. Point the engine source at "
                                 f"a {engine.name} archive of commit {engine.commit}, or clear it.",
                                 title="Engine source not found")
        found = archive_commit(local_source)
        if found is not None and found != engine.commit:
            raise EngineEnvError(f"{local_source} holds {engine.name} commit {found}, but this FarNode Desktop "
                                 f"needs commit {engine.commit}. Use an archive of that commit, or clear the "
                                 "engine source setting.", title="Wrong engine version")
    tmp = folder.with_name(folder.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(lock_file, tmp / "engine-lock.txt")
    source = {"kind": "archive", "where": engine.archive_url, "commit": engine.commit}
    q = shlex.quote
    lines = [
        f"# FarNode Desktop's engine image: the {variant} lock {digest} (lock version {LOCK_VERSION}) and",
        f"# {engine.name} {engine.version} at commit {engine.commit}, installed as the native engine is.",
        "# Written by FarNode Desktop (core/node/runtimes/docker.py); built with `docker build`.",
        f"FROM {BASE_IMAGE}",
        *[f"ARG {key}" for key in BUILD_ARGS],
        "ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1",
        "WORKDIR /opt/farnode/build",
        "COPY engine-lock.txt ./",
    ]
    for req in lock:
        if req.url and local_source is not None:
            name = local_source.name
            shutil.copyfile(local_source, tmp / name)
            source = {"kind": "local", "where": name, "commit": engine.commit}
            lines += [f"COPY {name} ./", "RUN " + " ".join(q(a) for a in (*PIP_INSTALL, "--no-deps", f"./{name}"))]
        elif req.url:
            lines.append("RUN " + " ".join(q(a) for a in (*PIP_INSTALL, "--no-deps", req.archive_url)))
        else:
            lines.append("RUN " + " ".join(q(a) for a in (*PIP_INSTALL, *pip_install_options(req, variant, env),
                                                          req.spec)))
    (tmp / "engine-source.json").write_text(json.dumps(source, sort_keys=True) + "\n")
    lines += [
        "COPY engine-source.json /opt/farnode/engine-source.json",
        f"LABEL farnode.lock={q(digest)} farnode.lock_version={LOCK_VERSION} farnode.variant={q(variant)} \\",
        f"      farnode.engine={q(engine.name)} farnode.engine.version={q(engine.version)} \\",
        f"      farnode.engine.commit={q(engine.commit)}",
        "WORKDIR /opt/farnode/src",
    ]
    (tmp / "Dockerfile").write_text("\n".join(lines) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    args = {k: env[k] for k in BUILD_ARGS if env.get(k)}
    return BuildContext(folder, engine_image(variant, lock_file), digest, engine.commit, args)


def image_labels_problem(output: str, variant: str, lock_file: Path | None = None) -> str:
    """What is wrong with an image, from ``docker image inspect --format "{{.Id}} {{json .Config.Labels}}"``
    ("" when its labels name this lock and the pinned engine commit)."""
    lock_file = lock_file or lock_path(variant)
    _, _, labels_json = output.strip().partition(" ")
    try:
        labels = json.loads(labels_json) or {}
    except ValueError:
        return "its labels cannot be read"
    if not isinstance(labels, dict):
        return "its labels cannot be read"
    engine = engine_requirement(read_lock(lock_file))
    if labels.get("farnode.lock") != lock_digest(lock_file):
        return (f"it was built from engine lock {labels.get('farnode.lock') or '(none)'}, not this FarNode's "
                f"{lock_digest(lock_file)}")
    if labels.get("farnode.engine.commit") != engine.commit:
        return f"it holds {engine.name} commit {labels.get('farnode.engine.commit') or '(unknown)'}, not {engine.commit}"
    return ""


def probe_problem(output: str, variant: str, lock_file: Path | None = None) -> str:
    """The engine probe's output in the image, checked as the native environment's is: the engine's name and
    version, and its commit when pip recorded one (an archive install records none: the image's labels, checked
    by the next set-up step, carry it)."""
    probe = parse_probe_output(output)
    if probe is None:
        return "the engine's check printed no result"
    lock = read_lock(lock_file or lock_path(variant))
    return engine_problem(probe, lock, engine_requirement(lock).commit)


class DockerRuntime(EngineRuntime):
    name = "docker"

    def __init__(self, source_root: str | Path, data_dir: str | Path, variant: str = "cuda", *,
                 image: str = "", cache_volume: str = CACHE_VOLUME, docker: str = "docker",
                 publish_host: str = "", host_env: dict[str, str] | None = None, engine_source: str = ""):
        self.source_root = str(source_root)
        self.data_dir = str(data_dir)
        self.variant = variant
        self.image_setting = image  # an image built elsewhere from the same Dockerfile: pulled, then checked
        self.image = image or engine_image(variant)
        # The build context and the ready record, beside the native environments' folders.
        self.build_dir = Path(data_dir) / "engine" / "docker" / env_folder_name(variant)
        self.marker = self.build_dir.with_name(self.build_dir.name + ".ready.json")
        self.engine_source = engine_source  # the engine.source setting (FARNODE_ENGINE_SOURCE overrides it)
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
            SetupStep("looking for the engine image", self._inspect_argv(), check=True, timeout_s=60),
        ]

    def _inspect_argv(self) -> tuple[str, ...]:
        return (self.docker, "image", "inspect", "--format", "{{.Id}} {{json .Config.Labels}}", self.image)

    def _read_marker(self) -> dict:
        try:
            data = json.loads(self.marker.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def parse_status(self, outputs: list[tuple[int, str]]) -> RuntimeStatus:
        daemon = parse_docker_version(outputs[0][1], outputs[0][0])
        if not daemon.reachable:
            return RuntimeStatus(False, message="Docker is not running (" + daemon.message[:200] + "). Start "
                                 "Docker Desktop (or the docker service) and try again.")
        runtimes = parse_runtimes(outputs[1][1]) if len(outputs) > 1 and outputs[1][0] == 0 else set()
        gpu = "nvidia" in runtimes or "docker desktop" in daemon.platform.lower()
        details = {"server_version": daemon.server_version, "platform": daemon.platform, "gpu": gpu,
                   "image": self.image}
        if self.variant == "cuda" and not gpu:
            return RuntimeStatus(True, details=details, message="Docker cannot give containers the GPU: install "
                                 "the NVIDIA Container Toolkit (or use Docker Desktop with WSL2), then restart Docker.")
        found = outputs[2] if len(outputs) > 2 else (1, "")
        image_id = found[1].strip().partition(" ")[0] if found[0] == 0 else ""
        if not image_id.startswith("sha256:"):
            return RuntimeStatus(True, details=details, message=f"The engine image {self.image} is not "
                                 + ("downloaded yet." if self.image_setting else "built yet (set-up builds it once)."))
        problem = image_labels_problem(found[1], self.variant)
        if problem:
            return RuntimeStatus(True, details=details, message=f"The engine image {self.image} cannot be used: "
                                 f"{problem}. " + ("Build it from FarNode's Dockerfile, or clear the Docker image "
                                                   "setting." if self.image_setting else "Set-up builds it again."))
        ready = self._read_marker().get("image_id") == image_id  # verified by this app's set-up
        return RuntimeStatus(True, engine_ready=ready, details=details,
                             message="" if ready else f"The engine image {self.image} is not verified yet.")

    def build_context(self) -> BuildContext:
        """Write the image's build context (see :func:`write_build_context`)."""
        value = (self.host_env or os.environ).get(SOURCE_ENV) or self.engine_source
        local = Path(value).expanduser().resolve() if value else None
        return write_build_context(self.build_dir, self.variant, local_source=local,
                                   host_env=self.host_env if self.host_env is not None else dict(os.environ))

    def setup_steps(self, variant: str | None = None) -> list[SetupStep]:
        """Build the image (once; Docker's layer cache resumes a build cut short) or pull the configured one,
        run the engine probe in it and check what it found, then check the image's labels."""
        variant = variant or self.variant
        steps = []
        if self.image_setting:
            steps.append(SetupStep(f"downloading the engine image {self.image}", (self.docker, "pull", self.image),
                                   weight=40, timeout_s=3600))
        else:
            ctx = self.build_context()
            steps.append(SetupStep(f"building the engine image {self.image} (about "
                                   f"{'8' if variant == 'cuda' else '2.5'} GB, once)",
                                   tuple(ctx.build_argv(self.docker)), weight=40, timeout_s=7200))
        probe = [*self.run_args("setup-probe", interactive=False), self.image, "python", "-m",
                 "farnode_desktop.engine.probe"]
        steps.append(SetupStep("verifying the engine", tuple(probe), weight=2, timeout_s=600,
                               verify=lambda out: probe_problem(out, variant)))
        steps.append(SetupStep("checking the engine image's labels", self._inspect_argv(), timeout_s=60,
                               verify=lambda out: image_labels_problem(out, variant)))
        return steps

    def after_setup(self, results: Sequence[StepResult]) -> None:
        """Record the verified image (its id, from the last step), so that status finds it ready."""
        image_id = results[-1].output.strip().partition(" ")[0] if results else ""
        if image_id.startswith("sha256:"):
            atomic_write_json(self.marker, {"image": self.image, "image_id": image_id, "verified_at": time.time()})
