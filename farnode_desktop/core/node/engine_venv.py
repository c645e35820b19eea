"""The engine's own Python environment: created, repaired, verified and located by the app.

The engine (torch, transformers, hivemind, petals) never shares an interpreter with the GUI: it lives in a
virtual environment under the user's data folder, one per lock variant (``engine/<variant>-v<lock>``).
Installing goes package by package from a pinned lock with ``--no-deps`` so that

- progress is real (percent, current package) and reported as :class:`EngineProgress` events,
- it is resumable: what is already installed at the locked version is skipped,
- it is idempotent: a verified environment whose lock did not change is left alone.

This module owns the subprocess calls to pip and to the engine's interpreter for set-up; the node's
server processes are owned by :mod:`farnode_desktop.core.node.supervisor`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from farnode_desktop.core.atomic import atomic_write_json
from farnode_desktop.core.errors import DiskFullError, EngineEnvError
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.resources import engine_package_root
from farnode_desktop.core.snapshots import EngineProgress
from farnode_desktop.engine.protocol import ProbeResult, ProtocolError

LOCK_VERSION = 1
VARIANTS = ("cpu", "cuda")
# Disk needed to set up each variant (bytes), checked before anything is written.
NEEDED_BYTES = {"cpu": 2_500_000_000, "cuda": 8_000_000_000}
PACKAGE_ROOT = engine_package_root()  # farnode_desktop/ as the engine sees it (bundled data when frozen)
LOCKS_DIR = PACKAGE_ROOT / "engine" / "locks"

ProgressFn = Callable[[EngineProgress], None]
# Environment variable names that must never reach an engine process (wallet secrets by any usual name).
SECRET_ENV_RE = re.compile(r"PRIVATE_?KEY|MNEMONIC|SEED_?PHRASE|RECOVERY_?PHRASE|WALLET_?(KEY|SECRET)|SECRET",
                           re.I)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class EngineStatus:
    """What is known of an engine environment without running it (its folder and its ready marker)."""

    variant: str
    path: str
    ready: bool
    missing: tuple[str, ...] | None  # locked packages not installed at their version; None: no environment
    probe: ProbeResult | None  # what its last verification found

    def to_dict(self) -> dict:
        return {"variant": self.variant, "path": self.path, "ready": self.ready,
                "missing": list(self.missing) if self.missing is not None else None,
                "probe": self.probe.to_dict() if self.probe else None}


@dataclass(frozen=True)
class Requirement:
    name: str
    version: str

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}"


def lock_path(variant: str) -> Path:
    """The shipped lock of a variant."""
    return LOCKS_DIR / f"{variant}.txt"


def read_lock(path: Path) -> list[Requirement]:
    reqs = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        reqs.append(Requirement(name.strip(), version.strip()))
    return reqs


def lock_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def base_python() -> str:
    """The interpreter that creates the engine's venv (not the GUI's venv, not a frozen app)."""
    override = os.environ.get("FARNODE_ENGINE_PYTHON")
    if override:
        return override
    if not getattr(sys, "frozen", False):
        return getattr(sys, "_base_executable", None) or sys.executable
    for name in ("python3.11", "python3.12", "python3.10", "python3"):
        found = shutil.which(name)
        if found:
            return found
    raise EngineEnvError("No Python 3.10-3.12 was found to set up the engine. Install Python 3.11 and retry.")


class EngineEnv:
    """One variant's environment under ``paths.engine_root``."""

    def __init__(self, paths: AppPaths, variant: str = "cpu", *, lock_file: Path | None = None):
        if variant not in VARIANTS:
            raise EngineEnvError(f"Unknown engine variant {variant!r}; use one of {', '.join(VARIANTS)}.")
        self.paths = paths
        self.variant = variant
        self.root = paths.engine_root / f"{variant}-v{LOCK_VERSION}"
        self.venv = self.root / "venv"
        self.marker = self.root / "ready.json"
        self.lock_file = lock_file or LOCKS_DIR / f"{variant}.txt"

    # ------------------------------------------------------------------ locating
    @property
    def python(self) -> Path:
        if os.name == "nt":
            return self.venv / "Scripts" / "python.exe"
        return self.venv / "bin" / "python"

    def site_packages(self) -> Path | None:
        libs = sorted(self.venv.glob("lib/python3.*/site-packages")) or sorted(self.venv.glob("Lib/site-packages"))
        return libs[0] if libs else None

    def installed(self) -> dict[str, str]:
        """Installed distributions (normalised name -> version), read from the dist-info folders."""
        site = self.site_packages()
        out: dict[str, str] = {}
        if site is None:
            return out
        for d in site.glob("*.dist-info"):
            name, _, version = d.name[: -len(".dist-info")].partition("-")
            out[_norm(name)] = version
        return out

    def missing(self) -> list[Requirement]:
        have = self.installed()
        out = []
        for r in read_lock(self.lock_file):
            v = have.get(_norm(r.name))
            if v is None or (v != r.version and v.split("+")[0] != r.version):
                out.append(r)
        return out

    def status(self) -> EngineStatus:
        marker = self._read_marker()
        ready = bool(marker) and marker.get("lock") == lock_digest(self.lock_file) and self.python.exists()
        return EngineStatus(variant=self.variant, path=str(self.venv), ready=ready,
                            missing=tuple(r.spec for r in self.missing()) if self.venv.exists() else None,
                            probe=self._marker_probe(marker))

    def is_ready(self) -> bool:
        return self.status().ready

    @staticmethod
    def _marker_probe(marker: dict | None) -> ProbeResult | None:
        try:
            return ProbeResult.from_dict(marker.get("probe")) if marker else None
        except ProtocolError:
            return None

    def _read_marker(self) -> dict | None:
        try:
            data = json.loads(self.marker.read_text())
            return data if isinstance(data, dict) else None
        except (OSError, ValueError):
            return None

    # ------------------------------------------------------------------ setting up
    def ensure(self, progress: ProgressFn | None = None, *, cancel: Callable[[], bool] | None = None,
               verify: bool = True) -> ProbeResult | None:
        """Create/repair the environment, install what the lock lacks, verify it. Returns what the
        verification found (None when ``verify`` is False)."""
        report = progress or (lambda p: None)
        status = self.status()
        if status.ready and status.probe is not None and not status.missing:
            report(EngineProgress(100.0, "engine ready", done=True))
            return status.probe
        self._check_disk()
        report(EngineProgress(0.0, "creating the engine environment"))
        self._create_venv()
        todo = self.missing()
        lock = read_lock(self.lock_file)
        weights = {r.name: (40.0 if r.name == "torch" else 1.0) for r in lock}
        total = sum(weights.values())
        done = total - sum(weights[r.name] for r in todo)
        for i, req in enumerate(todo, 1):
            if cancel and cancel():
                raise EngineEnvError("Engine set-up was cancelled. Run it again to continue where it stopped.",
                                     title="Engine set-up cancelled")
            report(EngineProgress(min(99.0, 95.0 * done / total),
                                  f"installing {req.name} {req.version} ({i}/{len(todo)})"))
            self._pip_install(req)
            done += weights[req.name]
        if not verify:
            report(EngineProgress(100.0, "packages installed", done=True))
            return None
        report(EngineProgress(96.0, "verifying the engine"))
        probe = self.verify()
        atomic_write_json(self.marker, {"lock": lock_digest(self.lock_file), "variant": self.variant,
                                        "verified_at": time.time(), "probe": probe.to_dict()})
        report(EngineProgress(100.0, "engine ready", done=True))
        return probe

    def _check_disk(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.root).free
        need = NEEDED_BYTES[self.variant] if not self.venv.exists() else NEEDED_BYTES[self.variant] // 4
        if free < need:
            raise DiskFullError(
                f"Setting up the engine needs about {need / 1e9:.1f} GB free in {self.root}, but only "
                f"{free / 1e9:.1f} GB are free. Free some disk space and try again."
            )

    def _create_venv(self) -> None:
        if self.python.exists():
            try:
                subprocess.run([str(self.python), "-c", "import sys"], check=True, capture_output=True, timeout=60)
                return
            except (OSError, subprocess.SubprocessError):
                pass  # broken (its base Python moved or was removed): make it again
            shutil.rmtree(self.venv, ignore_errors=True)
        py = base_python()
        try:
            subprocess.run([py, "-m", "venv", str(self.venv)], check=True, capture_output=True, text=True,
                           timeout=300)
        except subprocess.CalledProcessError as exc:
            raise EngineEnvError(
                f"Could not create the engine environment with {py}: {exc.stderr.strip()[-400:]}. "
                "Install the Python 'venv' module (on Debian/Ubuntu: apt install python3-venv) and retry.",
            ) from exc
        except OSError as exc:
            raise EngineEnvError(f"Could not run {py} to create the engine environment ({exc}).") from exc

    def _pip_install(self, req: Requirement) -> None:
        cmd = [str(self.python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
               "--progress-bar", "off", "-q"]
        if not (req.name == "torch" and self.variant == "cuda"):
            cmd.append("--no-deps")  # the lock is complete; the CUDA torch brings its nvidia-* wheels
        cmd.append(req.spec)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        if proc.returncode == 0:
            return
        out = (proc.stderr + proc.stdout)[-2000:]
        low = out.lower()
        if "no space left" in low:
            raise DiskFullError(f"The disk filled up while installing {req.spec} for the engine. Free some disk "
                                "space and run the set-up again; it continues where it stopped.", detail=out)
        if any(s in low for s in ("connection", "network is unreachable", "temporary failure in name resolution",
                                  "read timed out", "max retries exceeded")):
            raise EngineEnvError(f"Could not download {req.spec}: no connection to the package index. Check your "
                                 "internet connection and run the set-up again; it continues where it stopped.",
                                 detail=out)
        if "no matching distribution" in low or "could not find a version" in low:
            raise EngineEnvError(f"{req.spec} is not available for this computer (Python "
                                 f"{sys.version_info.major}.{sys.version_info.minor}, {sys.platform}). "
                                 "Check your internet connection, or report this with the diagnostics.",
                                 detail=out)
        raise EngineEnvError(f"Installing {req.spec} into the engine environment failed: {out.strip()[-300:]}",
                             detail=out)

    def verify(self) -> ProbeResult:
        if not self.python.exists():
            raise EngineEnvError("The engine environment is missing. Set it up from the app (or run "
                                 "`farnode-desktop engine setup`).", title="Engine not installed")
        env = engine_subprocess_env()
        try:
            proc = subprocess.run([str(self.python), "-m", "farnode_desktop.engine.probe"], capture_output=True,
                                  text=True, timeout=300, env=env, cwd=str(PACKAGE_ROOT.parent))
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EngineEnvError(f"The engine environment does not run ({exc}). Repair it with "
                                 "`farnode-desktop engine setup`.", title="Engine environment broken") from exc
        if proc.returncode != 0:
            raise EngineEnvError(
                "The engine environment is broken: importing the engine failed "
                f"({proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}). "
                "Repair it with `farnode-desktop engine setup`.",
                title="Engine environment broken", detail=proc.stderr[-3000:])
        try:
            return ProbeResult.from_dict(json.loads(proc.stdout.strip().splitlines()[-1]))
        except (ValueError, IndexError) as exc:  # ProtocolError is a ValueError
            raise EngineEnvError("The engine environment is broken: its check printed no result. Repair it with "
                                 "`farnode-desktop engine setup`.", title="Engine environment broken",
                                 detail=proc.stdout[-2000:] + proc.stderr[-2000:]) from exc

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def engine_subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for engine processes: only what they need, never the app's secrets.

    Starts from the user's environment minus variables that would break or leak into the engine's
    interpreter (the GUI venv's PYTHONPATH/PYTHONHOME, Qt variables), and puts this package's folder on
    PYTHONPATH so ``python -m farnode_desktop.engine.*`` works in the engine venv.
    """
    drop_prefixes = ("PYTHON", "QT_", "VIRTUAL_ENV", "PYSIDE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes) and not SECRET_ENV_RE.search(k)}
    env["PYTHONPATH"] = str(PACKAGE_ROOT.parent)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONWARNINGS"] = "ignore::FutureWarning,ignore::UserWarning"
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if extra:
        env.update(extra)
    return env


def choose_variant(paths: AppPaths, requested: str = "auto") -> str:
    """``cpu`` or ``cuda``: the requested one, else what the machine's NVIDIA driver supports."""
    if requested in VARIANTS:
        return requested
    from farnode_desktop.core.gpu.inventory import read_inventory
    from farnode_desktop.core.gpu.sizing import choose_variant as choose_for_inventory

    try:
        return choose_for_inventory(read_inventory(with_processes=False)).variant
    except Exception:  # no usable NVML: the CPU build always works
        return "cpu"


def cli_engine(action: str, variant: str) -> int:
    paths = AppPaths.default().ensure()
    env = EngineEnv(paths, choose_variant(paths, variant))
    if action == "status":
        print(json.dumps(env.status().to_dict(), indent=2))
        return 0
    if action == "remove":
        env.remove()
        print(f"Removed the engine environment at {env.root}")
        return 0
    if action == "verify":
        print(json.dumps(env.verify().to_dict(), indent=2))
        return 0
    last = [""]

    def show(p: EngineProgress) -> None:
        line = f"[{p.percent:5.1f}%] {p.step}"
        if sys.stdout.isatty():
            print("\r" + line.ljust(last[0] and len(last[0]) or 0), end="" if not p.done else "\n", flush=True)
        elif line != last[0]:
            print(line, flush=True)
        last[0] = line

    probe = env.ensure(show)
    print(f"Engine ready: {probe.summary} ({env.variant}) in {env.venv}")
    return 0
