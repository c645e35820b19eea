"""Where the engine runs: this machine's engine venv (native), WSL2 (Windows) or Docker.

:mod:`.base` holds the seam every engine process goes through (:class:`~.base.EngineRuntime`: how to spawn,
stop and set up); :mod:`.wsl` and :mod:`.docker` the two non-native runtimes; this module picks one.
"""

from __future__ import annotations

from farnode_desktop.core.host import current_platform
from farnode_desktop.core.node.runtimes.base import RUNTIMES, EngineRuntime, EngineRuntimeError, NativeRuntime


def resolve_runtime_name(setting: str, platform: str | None = None) -> str:
    """``native``, ``wsl2`` or ``docker`` for a ``runtime`` setting on a platform (:func:`current_platform`)."""
    platform = platform or current_platform()
    if setting not in RUNTIMES:
        raise EngineRuntimeError(f"Unknown engine runtime {setting!r}: use one of {', '.join(RUNTIMES)} in "
                            "Settings > Network.")
    if setting == "auto":
        return "wsl2" if platform == "win32" else "native"
    if setting == "native" and platform == "win32":
        raise EngineRuntimeError("The engine cannot run natively on Windows. Choose WSL2 or Docker as the engine "
                            "runtime in Settings > Network.")
    if setting == "wsl2" and platform != "win32":
        raise EngineRuntimeError("WSL2 exists on Windows only. Choose auto, native or Docker as the engine runtime "
                            "in Settings > Network.")
    return setting


def make_runtime(setting: str, *, engine=None, paths=None, variant: str = "cpu",
                 platform: str | None = None, docker_image: str = "", engine_source: str = "") -> EngineRuntime:
    """The runtime for a setting. ``engine`` (an EngineEnv) is needed for ``native``; ``paths`` (AppPaths)
    for ``docker`` (its data folder is mounted into the container)."""
    from farnode_desktop.core.resources import engine_source_root

    name = resolve_runtime_name(setting, platform)
    if name == "native":
        if engine is None:
            raise ValueError("the native runtime needs the EngineEnv")
        return NativeRuntime(engine.python, engine_source_root())
    if name == "wsl2":
        from farnode_desktop.core.node.runtimes.wsl import Wsl2Runtime, wsl_exe

        return Wsl2Runtime(source_root=engine_source_root(), variant=variant, wsl=wsl_exe())
    from farnode_desktop.core.node.runtimes.docker import DockerRuntime

    if paths is None:
        raise ValueError("the Docker runtime needs the app's paths")
    return DockerRuntime(source_root=engine_source_root(), data_dir=paths.data_dir, variant=variant,
                         image=docker_image, engine_source=engine_source)
