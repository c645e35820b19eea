"""Write the sha256 of every file the engine lock may install into the lock, in pip's hash format.

    python scripts/lock_hashes.py [--keep-unreachable] [--torch-index URL] [farnode_desktop/engine/locks/cpu.txt ...]
    (default: both shipped locks; --torch-index: a mirror of PyTorch's CPU index; --keep-unreachable: a line
    whose index cannot be read stays without hashes, with a comment, instead of failing)

For each ``name==version`` line: every file of that release that installs on a supported Python (3.10, 3.11,
3.12) and platform (Linux x86_64 and aarch64: the engine runs on Linux natively and inside WSL2), read from
PyPI's JSON API; for torch ``+cpu`` from PyTorch's CPU index page (its ``#sha256=`` links). A release with no
wheel for some combination keeps its sdist's hash too. The line becomes ``name==version \\`` followed by one
``--hash=sha256:...`` per file (all on that requirement). The engine's Git line is left as it is: a VCS
requirement cannot carry hashes; its commit is checked instead. Comments are kept.
"""

from __future__ import annotations

import html.parser
import json
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from farnode_desktop.core.engine_lock import LOCKS_DIR, TORCH_INDEXES, read_lock  # noqa: E402

PYTHONS = [(3, 10), (3, 11), (3, 12)]
ARCHES = ["x86_64", "aarch64"]


def platform_tags(arch: str) -> list[str]:
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(40, 16, -1)]
    return tags + [f"manylinux2014_{arch}", f"linux_{arch}"]


TARGETS: dict[tuple, set[Tag]] = {
    (py, arch): set(cpython_tags(py, platforms=platform_tags(arch)))
    | set(compatible_tags(py, platforms=platform_tags(arch)))
    for py in PYTHONS for arch in ARCHES
}


def fetch(url: str) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "farnode-lock-hashes"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.read()


def pypi_files(name: str, version: str) -> list[tuple[str, str]]:
    """A release's files from the project's JSON (the per-version endpoint answers 404 for some releases)."""
    data = json.loads(fetch(f"https://pypi.org/pypi/{name}/json"))
    files = data["releases"].get(version)
    if not files:
        raise SystemExit(f"PyPI has no files for {name}=={version}")
    return [(f["filename"], f["digests"]["sha256"]) for f in files if not f.get("yanked")]


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links += [v for k, v in attrs if k == "href" and v]


def simple_index_files(index: str, name: str) -> list[tuple[str, str]]:
    parser = _Links()
    parser.feed(fetch(f"{index.rstrip('/')}/{name}/").decode())
    out = []
    for href in parser.links:
        path, _, frag = href.partition("#")
        if frag.startswith("sha256="):
            out.append((urllib.parse.unquote(path.rsplit("/", 1)[-1]), frag.removeprefix("sha256=")))
    return out


def pick(files: list[tuple[str, str]], version: str) -> list[str]:
    """The hashes of the files that install somewhere we support (and the sdist where a wheel is missing)."""
    chosen, covered = [], set()
    sdists = []
    for filename, sha in files:
        if filename.endswith(".whl"):
            _, ver, _, tags = parse_wheel_filename(filename)
            if str(ver) != version:
                continue
            hits = {target for target, supported in TARGETS.items() if tags & supported}
            if hits:
                chosen.append(sha)
                covered |= hits
        elif filename.endswith((".tar.gz", ".zip")):
            sdists.append(sha)
    if len(covered) < len(TARGETS):
        chosen += sdists
    if not chosen:
        raise SystemExit(f"no installable file found for version {version}")
    return sorted(set(chosen))


def hash_lock(path: Path, torch_index: str, keep_unreachable: bool = False) -> None:
    reqs = {r.spec: r for r in read_lock(path)}
    lines_out = []
    text = path.read_text().replace("\\\n", " ")
    for raw in text.splitlines():
        body = raw.split("#", 1)[0].strip()
        if not body or " @ " in body:
            lines_out.append(raw)
            continue
        spec = body.split()[0]
        req = reqs[spec]
        local = "+" in req.version
        if local and req.name == "torch":
            try:
                files = simple_index_files(torch_index, "torch")
            except OSError as exc:
                if not keep_unreachable:
                    raise SystemExit(f"{path}: cannot read {torch_index}/torch/ for the hashes of {spec} ({exc});"
                                     " nothing written. Run this where PyTorch's index is reachable, pass "
                                     "--torch-index with a mirror of it, or --keep-unreachable to leave that "
                                     "line without hashes (the set-up then checks the others only).") from exc
                print(f"{spec}: NO HASHES ({torch_index} unreachable: {exc})", file=sys.stderr)
                lines_out.append(f"{spec}  # no hashes yet: run scripts/lock_hashes.py where {torch_index} is "
                                 "reachable")
                continue
        else:
            files = pypi_files(req.name, req.version)
        hashes = pick(files, req.version)
        print(f"{spec}: {len(hashes)} file(s)", file=sys.stderr)
        lines_out.append(f"{spec} \\")
        lines_out += [f"    --hash=sha256:{h}" + (" \\" if i < len(hashes) - 1 else "") for i, h in enumerate(hashes)]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines_out) + "\n")
    tmp.replace(path)


def main(argv: list[str]) -> int:
    torch_index = TORCH_INDEXES["cpu"]
    keep = "--keep-unreachable" in argv
    argv = [a for a in argv if a != "--keep-unreachable"]
    if argv[:1] == ["--torch-index"]:
        torch_index, argv = argv[1], argv[2:]
    for p in [Path(a) for a in argv] or sorted(LOCKS_DIR.glob("*.txt")):
        hash_lock(p, torch_index, keep)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
