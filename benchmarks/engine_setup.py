"""How long the engine set-up takes to install its lock: the old method (pip, package by package) against the
new one (uv: torch in one run, the other packages in one resolver-free run), in one run of this script.

Each measurement installs the shipped lock's packages (all but the engine itself, FarMesh, which both methods
install the same way) into a fresh environment, through the app's own set-up (``EngineEnv.ensure``; the pip
method is its fallback, forced with ``FARNODE_UV=`` as where uv is missing). Cold: an empty download cache
(a fresh ``UV_CACHE_DIR`` / ``PIP_CACHE_DIR`` in a temporary folder); warm: the same again with that cache.
Packages come from wherever pip is configured to take them (its indexes, find-links, ``FARNODE_TORCH_INDEX``).

Usage: python benchmarks/engine_setup.py [--variant cpu] [--repeat 1] [--only uv|pip]
Prints each time, then per method the median (and spread when repeated) and the ratio pip/uv.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from farnode_desktop.core.engine_lock import lock_path  # noqa: E402
from farnode_desktop.core.node.engine_venv import UV_ENV, EngineEnv, find_uv  # noqa: E402
from farnode_desktop.core.paths import AppPaths  # noqa: E402


def install_once(work: Path, lock: Path, variant: str, method: str, cache: Path, uv: str) -> float:
    """Seconds to install ``lock`` into a fresh environment with ``method`` (uv or pip) and ``cache``."""
    home = work / f"home-{method}-{time.monotonic_ns()}"
    saved = {k: os.environ.get(k) for k in ("FARNODE_HOME", "FARNODE_ENGINE_ROOT", UV_ENV, "UV_CACHE_DIR",
                                              "PIP_CACHE_DIR", "PIP_NO_CACHE_DIR")}
    os.environ.update({"FARNODE_HOME": str(home), "FARNODE_ENGINE_ROOT": str(home / "engine"),
                       UV_ENV: uv if method == "uv" else "", "UV_CACHE_DIR": str(cache / "uv"),
                       "PIP_CACHE_DIR": str(cache / "pip")})
    os.environ.pop("PIP_NO_CACHE_DIR", None)
    try:
        env = EngineEnv(AppPaths.default().ensure(), variant, lock_file=lock)
        steps = []
        t0 = time.monotonic()
        env.ensure(lambda p: steps.append(p.step), verify=False)
        took = time.monotonic() - t0
        assert env.missing() == [], env.missing()
        said_pip = any("installing with pip" in s for s in steps)
        assert said_pip == (method == "pip"), steps[:3]
        return took
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--only", choices=["uv", "pip"])
    args = ap.parse_args()
    uv = find_uv()
    if uv is None and args.only != "pip":
        print("uv is not installed (pip install -e . installs it, or set FARNODE_UV): nothing to compare.")
        return 2
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="engine-setup-bench-") as tmp:
        work = Path(tmp)
        lock = work / f"{args.variant}-packages.txt"  # the shipped lock without the engine's own line
        lock.write_text("".join(line + "\n" for line in lock_path(args.variant).read_text().replace(
            "\\\n", " ").splitlines() if " @ " not in line))
        for rnd in range(args.repeat):
            for method in ("uv", "pip"):
                if args.only and method != args.only:
                    continue
                cache = work / f"cache-{method}-{rnd}"
                for temp in ("cold", "warm"):
                    took = install_once(work, lock, args.variant, method, cache, uv or "")
                    results.setdefault(f"{method} {temp}", []).append(took)
                    print(f"round {rnd + 1}: {method:3} {temp}: {took:7.1f} s", flush=True)
                shutil.rmtree(cache, ignore_errors=True)
    print()
    for key, xs in results.items():
        spread = f" (min {min(xs):.1f}, max {max(xs):.1f}, n={len(xs)})" if len(xs) > 1 else ""
        print(f"{key:9}: median {statistics.median(xs):7.1f} s{spread}")
    for temp in ("cold", "warm"):
        p, u = results.get(f"pip {temp}"), results.get(f"uv {temp}")
        if p and u:
            ratios = [a / b for a, b in zip(p, u, strict=True)]
            spread = f" (min {min(ratios):.1f}x, max {max(ratios):.1f}x)" if len(ratios) > 1 else ""
            print(f"pip/uv {temp}: {statistics.median(ratios):.1f}x{spread}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
