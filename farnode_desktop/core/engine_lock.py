"""The engine lock: the exact packages every runtime installs for the engine, and how to read and check them.

The same description for the native environment (core.node.engine_venv), WSL2 and the Docker image
(core.node.runtimes): the shipped lock files (one per variant, the last line the engine itself, FarMesh, at
a pinned Git commit), the folder name an environment for a lock gets, pip's options per line, the commit a
source archive carries, and the check of what the engine probe found against the lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from farnode_desktop.core.errors import EngineEnvError
from farnode_desktop.core.resources import engine_package_root
from farnode_desktop.engine.protocol import ProbeResult

LOCK_VERSION = 2  # 1: petals 2.2.0.post1 from the package index; 2: FarMesh from its Git source
ENGINE_PACKAGE = "farmesh"

SOURCE_ENV = "FARNODE_ENGINE_SOURCE"  # a local archive or wheel of the engine (overrides the setting)

PACKAGE_ROOT = engine_package_root()  # farnode_desktop/ as the engine sees it (bundled data when frozen)
LOCKS_DIR = PACKAGE_ROOT / "engine" / "locks"
# A folder of locks (cpu.txt, cuda.txt) used instead of the shipped ones: a site's own vetted lock, or a test's
# lock of stand-in packages (their hashes are not the real files').
LOCKS_ENV = "FARNODE_ENGINE_LOCKS"

# Where pip finds the CPU build of torch (``torch==X+cpu``): PyTorch's own index. PyPI's torch of the same
# version is the CUDA build, which needs nvidia-* wheels (several GB) and fails to import without them.
# ``FARNODE_TORCH_INDEX`` replaces it (a mirror; empty: pip's own configuration only, e.g. a local wheel folder).
TORCH_INDEX_ENV = "FARNODE_TORCH_INDEX"
TORCH_INDEXES = {"cpu": "https://download.pytorch.org/whl/cpu"}


def norm_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Requirement:
    name: str
    version: str
    url: str = ""  # the engine: its Git source, ``git+https://host/owner/repo.git@<full commit id>``
    hashes: tuple[str, ...] = ()  # ``sha256:<hex>`` of every file this line may install (all platforms)

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}"

    @property
    def hashed_spec(self) -> str:
        """The line in pip's hash-checking format: ``name==version --hash=sha256:... --hash=...``."""
        return " ".join([self.spec, *(f"--hash={h}" for h in self.hashes)])

    @property
    def commit(self) -> str:
        return self.url.rpartition("@")[2] if self.url else ""

    @property
    def repo_url(self) -> str:
        """``https://host/owner/repo`` of a Git requirement."""
        repo = self.url.removeprefix("git+").rpartition("@")[0]
        return repo.removesuffix(".git")

    @property
    def archive_url(self) -> str:
        """The source archive of the pinned commit (GitHub's layout), for machines without git."""
        return f"{self.repo_url}/archive/{self.commit}.tar.gz"

    @property
    def pip_target(self) -> str:
        """What pip installs for this line: ``name==version``, or the Git URL at its commit."""
        return self.url or self.spec


def archive_commit(path: Path) -> str | None:
    """The commit id that ``git archive`` (and GitHub's source archives) write into a tar or zip archive's
    header; None when the file carries none (a wheel, an sdist)."""
    name = path.name.lower()
    try:
        if name.endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")):
            with tarfile.open(path) as tar:
                commit = tar.pax_headers.get("comment", "")
        elif name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                commit = zf.comment.decode("ascii", "replace")
        else:
            return None
    except (OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
        raise EngineEnvError(f"The engine archive {path} cannot be read ({exc}). Download it again.") from exc
    commit = commit.strip()
    return commit if re.fullmatch(r"[0-9a-f]{40}", commit) else None


def lock_path(variant: str) -> Path:
    """The lock of a variant: the shipped one, or ``FARNODE_ENGINE_LOCKS``'s."""
    return Path(os.environ.get(LOCKS_ENV) or LOCKS_DIR) / f"{variant}.txt"


def read_lock(path: Path) -> list[Requirement]:
    """The lock's lines: ``name==version`` with pip's ``--hash=sha256:<hex>`` options (one or more, a line
    may continue with a backslash), or ``name==version @ git+URL@commit`` for the engine."""
    reqs = []
    text = re.sub(r"\\[ \t]*\n", " ", path.read_text())
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        hashes = tuple(w.removeprefix("--hash=") for w in words if w.startswith("--hash="))
        line = " ".join(w for w in words if not w.startswith("--hash="))
        spec, _, url = line.partition(" @ ")
        name, _, version = spec.partition("==")
        reqs.append(Requirement(name.strip(), version.strip(), url.strip(), hashes))
    return reqs


def lock_is_hashed(reqs: list[Requirement]) -> bool:
    """Every index line carries hashes (the engine's Git line cannot): install with ``--require-hashes``."""
    index_lines = [r for r in reqs if not r.url]
    return bool(index_lines) and all(r.hashes for r in index_lines)


def pip_install_options(req: Requirement, variant: str, env: dict[str, str] | None = None) -> list[str]:
    """The ``pip install`` options for one line of a lock (before its target), the same natively and in WSL.

    ``--no-deps``: the lock is complete; only the CUDA build of torch is installed with its dependencies (its
    nvidia-* runtime wheels). torch of the CPU variant comes from PyTorch's CPU index (see TORCH_INDEXES)."""
    opts = [] if req.name == "torch" and variant == "cuda" else ["--no-deps"]
    if req.name == "torch" and variant in TORCH_INDEXES:
        env = os.environ if env is None else env
        index = env.get(TORCH_INDEX_ENV, TORCH_INDEXES[variant])
        if index:
            opts += ["--extra-index-url", index]
    return opts


def engine_requirement(reqs: list[Requirement]) -> Requirement:
    """The lock's line for the engine itself."""
    for r in reqs:
        if norm_name(r.name) == ENGINE_PACKAGE:
            return r
    raise EngineEnvError(f"The engine lock names no {ENGINE_PACKAGE}: reinstall FarNode Desktop.")


def lock_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def env_folder_name(variant: str, lock_file: Path | None = None) -> str:
    """The folder of a variant's environment for a lock: ``<variant>-v<LOCK_VERSION>-<first 12 of its digest>``
    (the same under WSL2 and in the Docker image's tag)."""
    return f"{variant}-v{LOCK_VERSION}-{lock_digest(lock_file or lock_path(variant))[:12]}"


def parse_probe_output(output: str) -> ProbeResult | None:
    """The engine probe's result: its last JSON line (logs may follow it)."""
    for line in reversed(output.strip().splitlines()):
        try:
            return ProbeResult.from_dict(json.loads(line))
        except ValueError:  # json's errors and ProtocolError
            continue
    return None


def engine_problem(probe: ProbeResult, lock: list[Requirement], recorded_commit: str | None, *,
                   commit_may_be_unknown: bool = False) -> str:
    """What is wrong with the engine a probe found, against the lock ("" when it is the locked one): its
    name, its version and its source commit (the probe's, else the one recorded when it was installed).
    The same check for the native environment, WSL2 and the Docker image."""
    req = engine_requirement(lock)
    if probe.engine != req.name:
        return f"it imports {probe.engine!r} instead of {req.name}"
    if probe.engine_version != req.version:
        return f"{req.name} is version {probe.engine_version}, not {req.version}"
    commit = probe.engine_commit or recorded_commit
    if commit is None and not commit_may_be_unknown:
        return f"the source commit of {req.name} is unknown"
    if commit is not None and commit != req.commit:
        return f"{req.name} is commit {commit}, not {req.commit}"
    return ""
