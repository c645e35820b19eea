"""Print a bundle's size and its components, largest first.

    python packaging/size_report.py dist/farnode-desktop [--target-mb 200] [--top 25]

A component is one entry of the bundle's data folder (``_internal/``: a package folder or a library), with
``PySide6`` split into its Qt libraries, plugins and bindings. Sizes are in MB (10^6 bytes). Exit code 1
when the total exceeds the target.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def tree_size(path: Path) -> int:
    if path.is_symlink():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def components(bundle: Path) -> list[tuple[str, int]]:
    """(name relative to the bundle, bytes) of each component, largest first."""
    internal = bundle / "_internal"
    out: list[tuple[str, int]] = []
    for entry in bundle.iterdir():
        if entry != internal:
            out.append((entry.name, tree_size(entry)))
    if internal.is_dir():
        for entry in internal.iterdir():
            split = {"PySide6": ("Qt/lib", "Qt/plugins")}.get(entry.name)
            if split and entry.is_dir():
                rest = tree_size(entry)
                for sub in split:
                    size = tree_size(entry / sub)
                    out.append((f"_internal/{entry.name}/{sub}", size))
                    rest -= size
                out.append((f"_internal/{entry.name} (bindings, rest)", rest))
            else:
                out.append((f"_internal/{entry.name}", tree_size(entry)))
    return sorted(out, key=lambda x: (-x[1], x[0]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--target-mb", type=float, default=200.0)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    if not args.bundle.is_dir():
        print(f"{args.bundle} is not a bundle folder; build it first (packaging/build_linux.sh)", file=sys.stderr)
        return 2
    comps = components(args.bundle)
    total = sum(size for _, size in comps)
    print(f"Bundle {args.bundle}: {total / 1e6:.1f} MB in total (target < {args.target_mb:.0f} MB)")
    for name, size in comps[: args.top]:
        print(f"  {size / 1e6:8.2f} MB  {100 * size / total:5.1f}%  {name}")
    rest = comps[args.top:]
    if rest:
        print(f"  {sum(s for _, s in rest) / 1e6:8.2f} MB         {len(rest)} smaller components")
    if total > args.target_mb * 1e6:
        print(f"OVER TARGET by {(total - args.target_mb * 1e6) / 1e6:.1f} MB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
