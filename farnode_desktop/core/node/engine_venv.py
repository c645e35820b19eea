"""The engine's own Python environment: created, repaired, verified and located by the app.

The engine (torch, transformers, hivemind, FarMesh) never shares an interpreter with the GUI: it lives in a
virtual environment under the user's data folder, one per lock variant, lock version and lock digest
(``engine/<variant>-v<version>-<digest>``): any change of the lock, with or without a version bump, is set up
in a new folder beside the environment in use. Installing goes package by package from a pinned lock with ``--no-deps`` so that

- progress is real (percent, current package) and reported as :class:`EngineProgress` events,
- it is resumable: what is already installed at the locked version is skipped,
- it is idempotent: a verified environment whose lock did not change is left alone.

The lock's last line is the engine itself, FarMesh, which is on no package index: its Git source at a fixed
commit (``name==version @ git+URL@commit``). It is installed with git where git exists, else from that
commit's source archive over HTTPS, or from a local archive or wheel named by the ``engine.source`` setting
or ``FARNODE_ENGINE_SOURCE`` (offline machines, the test suite). After installing, the environment is
verified by importing the engine and checking its version and source commit; the commit is recorded in the
environment's marker (an install from an archive does not carry it).

A new lock is set up beside the previous environment, which keeps working until the new one is verified and
is removed only then (:meth:`EngineEnv.remove_previous`); a node whose update could not finish (offline, disk
full) runs on the previous one meanwhile (:meth:`EngineEnv.fall_back_to_previous`).

One set-up at a time per engine root: set-up, repair and removal take ``<engine root>/engine.lock`` (an OS
file lock, dropped by the OS however its holder ends). A second set-up waits for the first, then finds the
environment ready; a removal is refused while a set-up runs, and while any process runs from the
environment (a node's server, a model generator).

Set-up runs pip and the engine probe through the native runtime (``command_spec``) as process trees
(:mod:`farnode_desktop.core.process_tree`): cancelling the set-up (Quit, Ctrl-C) kills them at once, and the
next set-up continues where it stopped (a package counts as installed only once pip wrote its RECORD, pip's last step). The node's
server processes are owned by :mod:`farnode_desktop.core.node.supervisor`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from farnode_desktop.core import process_tree
from farnode_desktop.core.atomic import atomic_write_json
from farnode_desktop.core.engine_lock import (
    LOCK_VERSION,
    PACKAGE_ROOT,
    SOURCE_ENV,
    Requirement,
    archive_commit,
    engine_problem,
    env_folder_name,
    lock_digest,
    lock_is_hashed,
    lock_path,
    norm_name,
    parse_probe_output,
    pip_install_options,
    read_lock,
)
from farnode_desktop.core.errors import DiskFullError, EngineBusy, EngineEnvError
from farnode_desktop.core.instance import AlreadyRunning, InstanceLock
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.snapshots import EngineProgress
from farnode_desktop.engine.protocol import ProbeResult, ProtocolError

log = logging.getLogger(__name__)
VARIANTS = ("cpu", "cuda")
# Disk needed to set up each variant (bytes), checked before anything is written.
NEEDED_BYTES = {"cpu": 2_500_000_000, "cuda": 8_000_000_000}
# Of which torch alone (with the CUDA variant's nvidia-* runtime wheels): what a set-up that has it already
# still needs is the rest.
TORCH_BYTES = {"cpu": 1_000_000_000, "cuda": 6_500_000_000}
ENGINE_LOCK = "engine.lock"  # <engine root>/engine.lock: one set-up or removal at a time
ProgressFn = Callable[[EngineProgress], None]
UV_ENV = "FARNODE_UV"  # the uv binary to install with (empty or missing file: pip, package by package)


def find_uv() -> str | None:
    """uv, the installer the set-up runs (a dependency of the app: its binary lies beside the app's
    interpreter, or where the ``uv`` package says); ``FARNODE_UV`` overrides. None: not available here."""
    override = os.environ.get(UV_ENV)
    if override is not None:
        return override if override and os.path.isfile(override) and os.access(override, os.X_OK) else None
    beside = Path(sys.executable).parent / ("uv.exe" if os.name == "nt" else "uv")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    try:
        import uv

        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        return None


def _uv_env() -> dict[str, str]:
    """The environment every uv run of the set-up gets: the app's, without uv settings of the user's (only its
    cache folder is kept) and without uv's configuration files: what the set-up asks is what uv does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_") or k == "UV_CACHE_DIR"}
    env["UV_NO_CONFIG"] = "1"
    return env


def pip_config_options(env: dict[str, str] | None = None) -> list[str]:
    """pip's configured indexes and find-links (``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``, ``PIP_FIND_LINKS``,
    ``PIP_NO_INDEX``, else pip.conf as ``pip config list`` of the base interpreter reads it) as uv options:
    uv reads no pip configuration, and offline machines point pip at a mirror or a wheel folder."""
    env = dict(os.environ if env is None else env)
    conf: dict[str, str] = {}
    try:
        done = process_tree.run([base_python(), "-m", "pip", "config", "list"], timeout=60, env=env)
        for line in done.output.decode(errors="replace").splitlines():
            key, eq, value = line.partition("=")
            if eq and "." in key:
                conf.setdefault(key.split(".", 1)[1].strip(), value.strip().strip("'\""))
    except (OSError, EngineEnvError):
        pass

    def setting(name: str) -> str:
        value = env.get("PIP_" + name.upper().replace("-", "_"))
        return conf.get(name, "") if value is None else value

    opts: list[str] = []
    if setting("no-index").lower() in ("1", "true", "yes", "on"):
        opts.append("--no-index")
    if setting("index-url"):
        opts += ["--index-url", setting("index-url")]
    for url in setting("extra-index-url").split():
        opts += ["--extra-index-url", url]
    if setting("no-cache-dir").lower() in ("1", "true", "yes", "on"):
        opts.append("--no-cache")
    for where in setting("find-links").split():
        opts += ["--find-links", where.removeprefix("file://") if where.startswith("file:///") else where]
    return opts


@dataclass(frozen=True)
class EngineStatus:
    """What is known of an engine environment without running it (its folder and its ready marker)."""

    variant: str
    path: str
    ready: bool
    missing: tuple[str, ...] | None  # locked packages not installed at their version; None: no environment
    probe: ProbeResult | None  # what its last verification found
    source_commit: str | None = None  # the engine's source commit, as checked at set-up
    source: str | None = None  # where the engine was installed from (its Git URL, archive URL or file)
    lock_version: int = LOCK_VERSION
    previous: bool = False  # an earlier lock's environment, run because the update to this one did not complete

    def to_dict(self) -> dict:
        """What ``farnode-desktop engine status`` prints: the engine, its source commit, torch and
        transformers first."""
        p = self.probe
        return {"variant": self.variant, "path": self.path, "ready": self.ready, "lock_version": self.lock_version,
                "previous": self.previous,
                "engine": p.engine if p else None, "engine_version": p.engine_version if p else None,
                "source_commit": self.source_commit, "source": self.source,
                "torch_version": p.torch_version if p else None,
                "transformers_version": p.transformers_version if p else None,
                "missing": list(self.missing) if self.missing is not None else None,
                "probe": p.to_dict() if p else None}


@dataclass(frozen=True)
class EngineSource:
    """Where the engine package is installed from: ``git`` (its Git source at the locked commit), ``archive``
    (that commit's source archive, downloaded over HTTPS) or ``local`` (an archive or wheel on this disk)."""

    kind: str
    where: str  # the URL or the file
    commit: str | None = None  # known before installing (a git archive's header); None: learnt after


def env_root(engine_root: Path, variant: str, lock_file: Path | None = None) -> Path:
    """Where a variant's environment for this lock lives under ``engine_root``. An environment an earlier
    release set up as ``<variant>-v<LOCK_VERSION>`` (no digest) is kept in its place when its ready marker
    names this very lock: nothing to set up again."""
    lock_file = lock_file or lock_path(variant)
    keyed = Path(engine_root) / env_folder_name(variant, lock_file)
    legacy = Path(engine_root) / f"{variant}-v{LOCK_VERSION}"
    if not keyed.exists() and legacy.is_dir():
        try:
            marker = json.loads((legacy / "ready.json").read_text())
        except (OSError, ValueError):
            marker = None
        if isinstance(marker, dict) and marker.get("lock") == lock_digest(lock_file):
            return legacy
    return keyed


_ENV_NAME = re.compile(r"(?P<variant>[a-z]+)-v(?P<version>\d+)(?:-(?P<digest>[0-9a-f]{12}))?")


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
    """One variant's environment under ``paths.engine_root``.

    ``source``: the ``engine.source`` setting (a local archive or wheel of the engine; empty: its Git source).
    ``FARNODE_ENGINE_SOURCE`` overrides it.
    """

    SOURCE_RECORD = "engine-source.json"  # how the engine package in this venv was installed, and its commit

    def __init__(self, paths: AppPaths, variant: str = "cpu", *, lock_file: Path | None = None, source: str = ""):
        if variant not in VARIANTS:
            raise EngineEnvError(f"Unknown engine variant {variant!r}; use one of {', '.join(VARIANTS)}.")
        self.paths = paths
        self.variant = variant
        self.lock_file = lock_file or lock_path(variant)
        self._use(env_root(paths.engine_root, variant, self.lock_file))
        self.source = source
        self.previous = False  # running an earlier lock's environment (an update that did not complete)
        self.previous_version = 0  # > 0: and that environment is of an earlier lock version (its engine)

    def _use(self, root: Path) -> None:
        self.root = root
        self.venv = root / "venv"
        self.marker = root / "ready.json"

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
            if not (d / "RECORD").is_file():  # pip writes RECORD last: an install cut short is not installed
                continue
            name, _, version = d.name[: -len(".dist-info")].partition("-")
            out[norm_name(name)] = version
        return out

    def missing(self) -> list[Requirement]:
        have = self.installed()
        out = []
        for r in read_lock(self.lock_file):
            v = have.get(norm_name(r.name))
            if v is None or (v != r.version and v.split("+")[0] != r.version):
                out.append(r)
            elif r.url and not self._source_satisfies(r):
                out.append(r)  # the right version, but from another commit or another local file
        return out

    def _source_satisfies(self, req: Requirement) -> bool:
        record = self._read_json(self.root / self.SOURCE_RECORD) or {}
        if record.get("commit") == req.commit:
            return True
        local = self.local_source()
        return record.get("commit") is None and local is not None and record.get("where") == str(local)

    def status(self) -> EngineStatus:
        marker = self._read_marker()
        if self.previous:  # its own lock went with the release that made it: its marker is the proof
            ready = bool(marker) and self.python.exists()
        else:
            ready = bool(marker) and marker.get("lock") == lock_digest(self.lock_file) and self.python.exists()
        source = (marker or {}).get("engine_source") or {}
        return EngineStatus(variant=self.variant, path=str(self.venv), ready=ready,
                            missing=(tuple(r.spec for r in self.missing()) if self.venv.exists()
                                     and not self.previous else None),
                            probe=self._marker_probe(marker), source_commit=source.get("commit"),
                            source=source.get("where"), lock_version=self.previous_version or LOCK_VERSION,
                            previous=self.previous)

    def is_ready(self) -> bool:
        return self.status().ready

    @staticmethod
    def _marker_probe(marker: dict | None) -> ProbeResult | None:
        try:
            return ProbeResult.from_dict(marker.get("probe")) if marker else None
        except ProtocolError:
            return None

    @staticmethod
    def _read_json(path: Path) -> dict | None:
        try:
            data = json.loads(path.read_text())
            return data if isinstance(data, dict) else None
        except (OSError, ValueError):
            return None

    def _read_marker(self) -> dict | None:
        return self._read_json(self.marker)

    # ------------------------------------------------------------------ the engine's source
    def local_source(self) -> Path | None:
        """The local archive or wheel to install the engine from (``FARNODE_ENGINE_SOURCE``, else the
        ``engine.source`` setting), or None for the engine's Git source."""
        value = os.environ.get(SOURCE_ENV) or self.source
        return Path(value).expanduser().resolve() if value else None

    def engine_source(self, req: Requirement) -> EngineSource:
        """Where to install the engine from, checked as far as it can be before installing."""
        local = self.local_source()
        if local is not None:
            origin = SOURCE_ENV if os.environ.get(SOURCE_ENV) else "the engine source setting"
            if not local.is_file():
                raise EngineEnvError(f"The engine archive {local} (from {origin}) does not exist. Point it at a "
                                     f"{req.name} source archive or wheel, or clear it to install "
                                     f"{req.name} from {req.repo_url}.", title="Engine source not found")
            commit = archive_commit(local)
            if commit is not None and commit != req.commit:
                raise EngineEnvError(f"{local} holds {req.name} commit {commit}, but this FarNode Desktop needs "
                                     f"commit {req.commit} ({req.repo_url}/tree/{req.commit}). Use an archive of "
                                     "that commit, or clear the engine source setting.",
                                     title="Wrong engine version")
            return EngineSource("local", str(local), commit)
        if shutil.which("git"):
            return EngineSource("git", req.url)
        return EngineSource("archive", req.archive_url)

    def _download_archive(self, req: Requirement, url: str) -> Path:
        """The pinned commit's source archive, downloaded once into the environment's folder."""
        target = self.root / "downloads" / f"{req.name}-{req.commit}.tar.gz"
        if target.is_file() and archive_commit(target) == req.commit:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_suffix(".part")
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(part, "wb") as out:
                shutil.copyfileobj(resp, out)
        except OSError as exc:
            part.unlink(missing_ok=True)  # a partial file is never left behind
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFullError(f"The engine ({req.name}) could not be downloaded into {target.parent}: disk "
                                    "full. Free some disk space and run the set-up again.") from exc
            raise EngineEnvError(f"Could not download the engine ({req.name}) from {url}: {exc}. Check your "
                                 "internet connection and run the set-up again, or set the engine source to a "
                                 "local archive of it.", title="Engine download failed") from exc
        os.replace(part, target)
        commit = archive_commit(target)
        if commit != req.commit:
            raise EngineEnvError(f"The archive downloaded from {url} is commit {commit or 'unknown'}, not "
                                 f"{req.commit}. Run the set-up again; if it repeats, report it.",
                                 title="Engine download failed")
        return target

    def _install_engine(self, req: Requirement, cancel=None) -> None:
        source = self.engine_source(req)
        where = source.where
        if source.kind == "archive":
            where = str(self._download_archive(req, where))
            source = EngineSource("archive", req.archive_url, req.commit)
        # --force-reinstall: the same version from another commit or file replaces what is there
        self._run_pip(req, ["--force-reinstall", "--no-deps", where if source.kind != "git" else req.pip_target],
                      cancel)
        commit = source.commit or self._installed_vcs_commit(req.name)
        if source.kind == "git" and commit != req.commit:
            raise EngineEnvError(f"pip installed {req.name} commit {commit or 'unknown'} instead of {req.commit}. "
                                 "Run the set-up again; if it repeats, report it.")
        atomic_write_json(self.root / self.SOURCE_RECORD, {"kind": source.kind, "where": source.where,
                                                           "commit": commit})

    def _installed_vcs_commit(self, name: str) -> str | None:
        """The commit pip recorded for a package installed from a VCS URL (PEP 610 ``direct_url.json``)."""
        site = self.site_packages()
        for d in site.glob("*.dist-info") if site else ():
            if norm_name(d.name.partition("-")[0]) == norm_name(name):
                info = self._read_json(d / "direct_url.json") or {}
                return (info.get("vcs_info") or {}).get("commit_id")
        return None

    # ------------------------------------------------------------------ setting up
    def ensure(self, progress: ProgressFn | None = None, *, cancel: Callable[[], bool] | None = None,
               verify: bool = True) -> ProbeResult | None:
        """Create/repair the environment, install what the lock lacks, verify it, then remove the earlier
        locks' environments. Returns what the verification found (None when ``verify`` is False). Waits for
        a set-up another process runs on the same engine root (then finds the environment ready)."""
        report = progress or (lambda p: None)
        if self.previous:  # try the update again
            self.previous, self.previous_version = False, 0
            self._use(env_root(self.paths.engine_root, self.variant, self.lock_file))
        with self.exclusive("engine-setup", wait=True, report=report, cancel=cancel):
            return self._ensure_locked(report, cancel, verify)

    def _ensure_locked(self, report: ProgressFn, cancel, verify: bool) -> ProbeResult | None:
        status = self.status()
        if status.ready and status.probe is not None and not status.missing:
            self.remove_previous()
            report(EngineProgress(100.0, "engine ready", done=True))
            return status.probe
        lock = read_lock(self.lock_file)
        for req in lock:
            if req.url:
                self.engine_source(req)  # a wrong local archive is refused before anything is written
        self._check_disk()
        report(EngineProgress(0.0, "creating the engine environment"))
        self._create_venv(cancel)
        todo = self.missing()
        weights = {r.name: (40.0 if r.name == "torch" else 1.0) for r in lock}
        total = sum(weights.values())
        done = total - sum(weights[r.name] for r in todo)
        uv = find_uv()
        if uv is None and todo:
            why = (f"{UV_ENV} names no usable uv binary" if os.environ.get(UV_ENV) is not None
                   else "uv was not found beside this app")
            report(EngineProgress(min(99.0, 95.0 * done / total),
                                  f"{why}: installing with pip, package by package (slower)"))
        if uv is not None:
            self._uv_install_all(uv, todo, lock, report, cancel, weights, done, total)
        else:
            for i, req in enumerate(todo, 1):
                _check_cancel(cancel)
                report(EngineProgress(min(99.0, 95.0 * done / total),
                                      f"installing {req.name} {req.version} ({i}/{len(todo)})"))
                if req.url:
                    self._install_engine(req, cancel)
                else:
                    self._pip_install(req, cancel, hashed=bool(req.hashes))
                done += weights[req.name]
        if not verify:
            report(EngineProgress(100.0, "packages installed", done=True))
            return None
        report(EngineProgress(96.0, "verifying the engine"))
        probe = self.verify(cancel)
        atomic_write_json(self.marker, {"lock": lock_digest(self.lock_file), "variant": self.variant,
                                        "lock_version": LOCK_VERSION, "verified_at": time.time(),
                                        "probe": probe.to_dict(),
                                        "engine_source": self._read_json(self.root / self.SOURCE_RECORD)})
        self.remove_previous()
        report(EngineProgress(100.0, "engine ready", done=True))
        return probe

    # ------------------------------------------------------------------ one set-up at a time
    @contextlib.contextmanager
    def exclusive(self, face: str, *, wait: bool, report: ProgressFn | None = None,
                  cancel: Callable[[], bool] | None = None):
        """Hold the engine root's lock (``face``: engine-setup or engine-remove) for the block. ``wait``:
        wait for another holder (reporting whom), else raise :class:`EngineBusy` at once. Re-entrant in the
        thread that holds it; another thread of this process waits as another process does."""
        if self._lock is not None and self._lock.held and self._lock_owner == threading.get_ident():
            yield  # re-entrant in the thread that holds it (another thread waits, as another process does)
            return
        self.paths.engine_root.mkdir(parents=True, exist_ok=True)
        lock = InstanceLock(self.paths.engine_root, name=ENGINE_LOCK)
        said = ""
        while True:
            try:
                lock.acquire(face)
                break
            except AlreadyRunning as exc:
                who = exc.holder.describe() if exc.holder else "another process"
                if not wait:
                    raise EngineBusy(f"The engine environment is busy: {who} is working on it in "
                                     f"{self.paths.engine_root}. Wait for it to finish and try again.") from None
                if who != said:
                    said = who
                    (report or (lambda p: None))(EngineProgress(0.0, f"waiting for {who} to finish"))
                _check_cancel(cancel)
                time.sleep(0.25)
        self._lock, self._lock_owner = lock, threading.get_ident()
        try:
            yield
        finally:
            self._lock, self._lock_owner = None, None
            lock.release()

    _lock: InstanceLock | None = None
    _lock_owner: int | None = None

    def users(self, root: Path | None = None) -> list[psutil.Process]:
        """Processes running from an environment (this one's by default): a node's servers, a probe, a model
        generator. Found by the interpreter they were started as (the venv's, which resolves elsewhere)."""
        root = Path(os.path.abspath(root or self.root))
        roots = {root, root.resolve()}  # as named, and through any symlink on the way (macOS's /var)
        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                argv0 = (proc.info["cmdline"] or [""])[0]
                if proc.pid != os.getpid() and os.path.isabs(argv0) and any(_inside(Path(argv0), r) for r in roots):
                    found.append(proc)
            except (psutil.Error, OSError, ValueError):
                continue
        return found

    # ------------------------------------------------------------------ earlier environments
    def fall_back_to_previous(self) -> bool:
        """After an update that did not complete: use the newest earlier environment that is still ready (its
        marker and interpreter are there), until the next set-up succeeds. False when there is none."""
        for old in self.previous_roots():
            marker = self._read_json(old / "ready.json")
            python = old / "venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
            if marker and self._marker_probe(marker) is not None and python.exists():
                version = int(_ENV_NAME.fullmatch(old.name).group("version"))
                self.previous = True
                self.previous_version = version if version < LOCK_VERSION else 0
                self._use(old)
                return True
        return False

    def previous_roots(self) -> list[Path]:
        """This variant's environments of other locks beside this one (earlier lock versions, or the same
        version with another lock), newest first: by lock version, then by when each was verified."""
        found = []
        current = env_root(self.paths.engine_root, self.variant, self.lock_file)
        for d in self.paths.engine_root.glob(f"{self.variant}-v*"):
            m = _ENV_NAME.fullmatch(d.name)
            if not m or m.group("variant") != self.variant or d == current or not d.is_dir():
                continue
            version = int(m.group("version"))
            if version > LOCK_VERSION:
                continue  # a newer release's: not ours to run or remove
            marker = self._read_json(d / "ready.json") or {}
            when = marker.get("verified_at")
            found.append((version, when if isinstance(when, (int, float)) else 0.0, d))
        return [d for _, _, d in sorted(found, reverse=True)]

    def remove_previous(self) -> list[Path]:
        """Remove earlier environments, once this one is verified. Not in an engine root shared through
        ``FARNODE_ENGINE_ROOT`` (developers, the test suite): other checkouts may still use them; never one
        a process still runs from. Each is renamed first, so a removal cut short never leaves something that
        looks like an engine."""
        if os.environ.get("FARNODE_ENGINE_ROOT") or self.previous or not self.is_ready():
            return []
        removed = []
        with self.exclusive("engine-setup", wait=True):
            for old in self.previous_roots():
                if self.users(old):
                    continue
                doomed = old.with_name(f".removing-{old.name}")
                try:
                    os.replace(old, doomed)
                except OSError:
                    continue
                shutil.rmtree(doomed, ignore_errors=True)
                removed.append(old)
            for leftover in self.paths.engine_root.glob(f".removing-{self.variant}-v*"):
                shutil.rmtree(leftover, ignore_errors=True)
        return removed

    def needed_bytes(self) -> int:
        """Disk the set-up still needs: the variant's whole size for a new environment, less torch (the
        bulk, with the CUDA variant's runtime wheels) when it is installed already."""
        need = NEEDED_BYTES[self.variant]
        if self.venv.exists():
            have = self.installed()
            torch = next((r for r in read_lock(self.lock_file) if r.name == "torch"), None)
            if torch is not None and have.get("torch", "").split("+")[0] == torch.version.split("+")[0]:
                need -= TORCH_BYTES[self.variant]
        return max(need, 200_000_000)

    def _check_disk(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.root).free
        need = self.needed_bytes()
        if free < need:
            raise DiskFullError(
                f"Setting up the {self.variant} engine needs about {need / 1e9:.1f} GB free in {self.root}, but "
                f"only {free / 1e9:.1f} GB are free. Free some disk space and try again."
            )

    def runtime(self):
        """The native runtime over this environment: how its interpreter's processes are started."""
        from farnode_desktop.core.node.runtimes.base import NativeRuntime

        return NativeRuntime(self.python, PACKAGE_ROOT.parent)

    def _run(self, module: str, args: list[str], *, timeout: float, cancel) -> process_tree.Finished:
        spec = self.runtime().command_spec(module, args)
        return _run_to_end(spec.argv, timeout=timeout, cancel=cancel, env=spec.env, cwd=spec.cwd)

    def _create_venv(self, cancel=None) -> None:
        if self.python.exists():
            if self._run("pip", ["--version"], timeout=60, cancel=cancel).returncode == 0:  # it runs, with pip
                return
            # broken (its base Python moved, or its creation was cut short): make it again
            shutil.rmtree(self.venv, ignore_errors=True)
        py = base_python()
        uv = find_uv()
        if uv is not None and self._create_venv_with_uv(uv, py, cancel):
            return
        try:
            done = process_tree.run([py, "-m", "venv", str(self.venv)], timeout=300, cancel=cancel)
        except OSError as exc:
            raise EngineEnvError(f"Could not run {py} to create the engine environment ({exc}).") from exc
        _check_cancel(lambda: done.cancelled)
        if done.returncode != 0:
            raise EngineEnvError(
                f"Could not create the engine environment with {py}: "
                f"{done.output.decode(errors='replace').strip()[-400:]}. "
                "Install the Python 'venv' module (on Debian/Ubuntu: apt install python3-venv) and retry.")

    def _create_venv_with_uv(self, uv: str, py: str, cancel=None) -> bool:
        """Make the venv with uv and put in it the pip (and, before Python 3.12, setuptools) that ``python -m
        venv`` would: ensurepip's own wheels, bundled with ``py``, installed offline. The same environment in
        ~0.3 s instead of ~2.7 s (ensurepip unpacking pip with pip). False, with nothing left behind, where
        any of it fails: ``python -m venv`` then makes it as before."""
        found = _run_to_end([py, "-c", "import ensurepip, os; print(os.path.dirname(ensurepip.__file__))"],
                            timeout=60, cancel=cancel)
        where = found.output.decode(errors="replace").strip()
        if found.returncode != 0 or not where:
            return False
        wheels = sorted(str(w) for w in (Path(where.splitlines()[-1]) / "_bundled").glob("*.whl"))
        if not any(Path(w).name.startswith("pip-") for w in wheels):
            return False
        env = _uv_env()
        steps = ([uv, "venv", "--quiet", "--no-project", "--python", py, str(self.venv)],
                 [uv, "pip", "install", "--quiet", "--python", str(self.python), "--no-deps", "--no-index", *wheels])
        for argv in steps:
            done = _run_to_end(argv, timeout=300, cancel=cancel, env=env)
            if done.returncode != 0:
                log.warning("uv could not make the engine's environment (%s); making it with python -m venv",
                            done.output.decode(errors="replace").strip()[-300:])
                shutil.rmtree(self.venv, ignore_errors=True)
                return False
        return True

    def _drop_unfinished(self, req: Requirement) -> None:
        """Remove the metadata of an install of ``req`` that was cut short (no RECORD): pip would take it as
        installed, and cannot uninstall it."""
        site = self.site_packages()
        for d in site.glob("*.dist-info") if site else ():
            if norm_name(d.name[: -len(".dist-info")].partition("-")[0]) == norm_name(req.name) and not (d / "RECORD").is_file():
                shutil.rmtree(d, ignore_errors=True)

    def _pip_install(self, req: Requirement, cancel=None, *, hashed: bool = False) -> None:
        if not hashed or "--no-deps" not in pip_install_options(req, self.variant):
            # pip checks hashes only of a whole set: the CUDA build of torch brings unlocked nvidia-* wheels
            self._run_pip(req, [*pip_install_options(req, self.variant), req.spec], cancel)
            return
        reqs = self.root / f"pip-{norm_name(req.name)}.txt"  # hashes can be given in a requirements file only
        reqs.write_text(req.hashed_spec + "\n")
        self._run_pip(req, [*pip_install_options(req, self.variant), "--require-hashes", "-r", str(reqs)], cancel)

    # ------------------------------------------------------------------ installing with uv
    def _uv_batches(self, todo: list[Requirement]) -> list[list[Requirement]]:
        """torch alone (it has its own index), the other index packages in one run, the engine last (a Git or
        archive source cannot carry hashes: it is checked by its commit)."""
        torch = [r for r in todo if r.name == "torch"]
        rest = [r for r in todo if r.name != "torch" and not r.url]
        return [b for b in (torch, rest) if b]

    def _uv_install_all(self, uv: str, todo: list[Requirement], lock: list[Requirement], report: ProgressFn,
                        cancel, weights: dict[str, float], done: float, total: float) -> None:
        config = pip_config_options()
        count = [0]
        n = len(todo)
        for batch in self._uv_batches(todo):
            _check_cancel(cancel)
            names = ", ".join(r.name for r in batch[:3]) + (f" and {len(batch) - 3} more" if len(batch) > 3 else "")
            report(EngineProgress(min(99.0, 95.0 * done / total),
                                  f"installing {batch[0].name} {batch[0].version} ({count[0] + 1}/{n})"
                                  if len(batch) == 1 else f"installing {len(batch)} packages with uv ({names})"))
            pending = {norm_name(r.name): r for r in batch}

            def watch(pending=pending) -> bool:
                """Called while uv runs: reports each package whose RECORD appeared (installed for good)."""
                nonlocal done
                have = self.installed()
                for key in [k for k in pending if k in have]:
                    req = pending.pop(key)
                    count[0] += 1
                    done += weights[req.name]
                    report(EngineProgress(min(99.0, 95.0 * done / total),
                                          f"installed {req.name} {req.version} ({count[0]}/{n})"))
                return bool(cancel and cancel())

            self._run_uv(uv, batch, lock_is_hashed(batch), config, watch)
            watch()
        for req in todo:
            if req.url:
                _check_cancel(cancel)
                report(EngineProgress(min(99.0, 95.0 * done / total),
                                      f"installing {req.name} {req.version} ({count[0] + 1}/{n})"))
                self._install_engine(req, cancel)
                count[0] += 1
                done += weights[req.name]

    def _run_uv(self, uv: str, batch: list[Requirement], hashed: bool, config: list[str], cancel) -> None:
        torch = next((r for r in batch if r.name == "torch"), None)
        torch_index = [o for o in pip_install_options(torch, self.variant) if o != "--no-deps"] if torch else []
        try:
            self._run_uv_once(uv, batch, hashed, [*config, *torch_index], cancel)
        except EngineEnvError as exc:
            # As pip does, an unreachable torch index is skipped when pip's own configuration names other
            # sources (a mirror, a local wheel folder): the lock's hashes still decide what is installed.
            if not (torch_index and config and "no connection" in exc.message):
                raise
            log.warning("the torch index %s is not reachable; trying the package sources pip is configured with",
                        torch_index[-1])
            self._run_uv_once(uv, batch, hashed, list(config), cancel)

    def _run_uv_once(self, uv: str, batch: list[Requirement], hashed: bool, opts: list[str], cancel) -> None:
        for req in batch:
            self._drop_unfinished(req)
        reqs = self.root / "uv-requirements.txt"
        reqs.write_text("".join((r.hashed_spec if hashed else r.spec) + "\n" for r in batch))
        torch = next((r for r in batch if r.name == "torch"), None)
        deps = [] if torch is not None and self.variant == "cuda" else ["--no-deps"]
        argv = [uv, "pip", "install", "--python", str(self.python), *deps, *opts,
                # without --require-hashes (the CUDA torch's run) uv still verifies the hashes given
                *(["--require-hashes"] if hashed and deps else []), "--index-strategy", "unsafe-best-match",
                "--no-progress", "-r", str(reqs)]
        done = _run_to_end(argv, timeout=3600, cancel=cancel, env=_uv_env())
        if done.returncode == 0:
            return
        self._install_failed(batch[0] if len(batch) == 1 else None, done.output.decode(errors="replace")[-3000:])

    def _run_pip(self, req: Requirement, args: list[str], cancel=None) -> None:
        self._drop_unfinished(req)
        done = self._run("pip", ["install", "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
                                 "-q", *args], timeout=3600, cancel=cancel)
        if done.returncode == 0:
            return
        self._install_failed(req, done.output.decode(errors="replace")[-2000:])

    def _install_failed(self, req: Requirement | None, out: str) -> None:
        low = out.lower()
        if "hash mismatch" in low or "hashes do not match" in low or "do not match the hashes" in low:
            raise EngineEnvError("A downloaded package does not match the hash the engine lock records for it, so "
                                 "nothing of it was installed. The package index or a local wheel folder holds a "
                                 "different (possibly tampered) file; check your package mirror and run the set-up "
                                 "again.", title="Engine package refused", detail=out)
        if req is None:  # a batch: name the package the installer names
            m = re.search(r"([A-Za-z0-9_.-]+)==([0-9][^\s`':,]*)", out)
            req = Requirement(m.group(1), m.group(2).rstrip(".")) if m else Requirement("a package", "of the lock")
        if "no space left" in low:
            raise DiskFullError(f"The disk filled up while installing {req.spec} for the engine. Free some disk "
                                "space and run the set-up again; it continues where it stopped.", detail=out)
        if any(s in low for s in ("connection", "network is unreachable", "temporary failure in name resolution",
                                  "read timed out", "max retries exceeded", "could not resolve host",
                                  "error sending request", "dns error",
                                  "unable to access")):
            where = f"its Git source ({req.repo_url})" if req.url else "the package index"
            raise EngineEnvError(f"Could not download {req.spec}: no connection to {where}. Check your "
                                 "internet connection and run the set-up again; it continues where it stopped."
                                 + (" Offline, set the engine source to a local archive of it." if req.url else ""),
                                 detail=out)
        if any(s in low for s in ("no matching distribution", "could not find a version", "was not found in the",
                                  "no solution found", "not found in the package registry")):
            raise EngineEnvError(f"{req.spec} is not available for this computer (Python "
                                 f"{sys.version_info.major}.{sys.version_info.minor}, {sys.platform}). "
                                 "Check your internet connection, or report this with the diagnostics.",
                                 detail=out)
        raise EngineEnvError(f"Installing {req.spec} into the engine environment failed: {out.strip()[-300:]}",
                             detail=out)

    def verify(self, cancel=None) -> ProbeResult:
        if not self.python.exists():
            raise EngineEnvError("The engine environment is missing. Set it up from the app (or run "
                                 "`farnode-desktop engine setup`).", title="Engine not installed")
        done = self._run("farnode_desktop.engine.probe", [], timeout=300, cancel=cancel)
        out = done.output.decode(errors="replace")
        if done.returncode != 0:
            why = "it did not finish in time" if done.timed_out else (
                out.strip().splitlines()[-1] if out.strip() else f"exit code {done.returncode}")
            raise EngineEnvError(f"The engine environment is broken: importing the engine failed ({why}). "
                                 "Repair it with `farnode-desktop engine setup`.",
                                 title="Engine environment broken", detail=out[-3000:])
        probe = parse_probe_output(out)
        if probe is not None:
            self._check_engine(probe)
            return probe
        raise EngineEnvError("The engine environment is broken: its check printed no result. Repair it with "
                             "`farnode-desktop engine setup`.", title="Engine environment broken",
                             detail=out[-3000:])
    def _check_engine(self, probe: ProbeResult) -> None:
        """The imported engine is the locked one: its name, version and source commit."""
        record = self._read_json(self.root / self.SOURCE_RECORD) or {}
        local = self.local_source()
        problem = engine_problem(probe, read_lock(self.lock_file), record.get("commit"),
                                 commit_may_be_unknown=local is not None and record.get("where") == str(local))
        if problem:
            raise EngineEnvError(f"The engine environment holds the wrong engine: {problem}. Repair it with "
                                 "`farnode-desktop engine setup`.", title="Engine environment broken")

    def remove(self) -> None:
        """Delete this environment. Refused (:class:`EngineBusy`) while a set-up holds the engine root or a
        process runs from the environment (a node's server): the environment stays whole."""
        with self.exclusive("engine-remove", wait=False):
            users = self.users()
            if users:
                pids = ", ".join(str(p.pid) for p in users[:5])
                raise EngineBusy(f"The engine environment {self.root} is in use by {len(users)} running "
                                 f"process(es) (pid {pids}): a node is serving from it. Stop the node (or quit "
                                 "FarNode), then remove the engine.")
            doomed = self.root.with_name(f".removing-{self.root.name}")
            shutil.rmtree(doomed, ignore_errors=True)  # what a removal cut short left
            if self.root.exists():
                os.replace(self.root, doomed)  # never a half-removed folder that looks like an engine
            shutil.rmtree(doomed, ignore_errors=True)


def _inside(path: Path, root: Path) -> bool:
    try:
        return Path(os.path.abspath(path)).is_relative_to(root)
    except ValueError:
        return False


def _run_to_end(argv: list[str], *, timeout: float, cancel, env: dict[str, str] | None = None,
                cwd: str | None = None) -> process_tree.Finished:
    """Run one command of the set-up to its end. A command that cannot be started at all reads as not found
    (127, with the reason as its output); a cancelled one raises the set-up's "cancelled" error."""
    try:
        done = process_tree.run(argv, timeout=timeout, cancel=cancel, env=env, cwd=cwd)
    except OSError as exc:
        return process_tree.Finished(127, str(exc).encode())
    _check_cancel(lambda: done.cancelled)
    return done


def _check_cancel(cancel: Callable[[], bool] | None) -> None:
    if cancel is not None and cancel():
        raise EngineEnvError("Engine set-up was cancelled. Run it again to continue where it stopped.",
                             title="Engine set-up cancelled")


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
    from farnode_desktop.core.settings import SettingsStore

    paths = AppPaths.default().ensure()
    settings = SettingsStore(paths.settings_file).load()
    env = EngineEnv(paths, choose_variant(paths, variant), source=settings.engine.source)
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

    t0 = time.monotonic()
    probe = env.ensure(show)
    print(f"Engine ready: {probe.summary}, source commit {env.status().source_commit or 'unknown'} "
          f"({env.variant}) in {env.venv} [{time.monotonic() - t0:.0f} s]")
    return 0
