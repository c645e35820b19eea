"""The frozen (PyInstaller) app's entry point and its build-time self-checks.

``farnode-desktop launcher ...`` / ``traffic ...`` run the engine side in the engine's own interpreter
(see :func:`frozen_main`); ``bundle-check`` imports every module of the bundle and exercises Qt, the
keyring and an earnings sync so that a part left out by the spec shows up at build time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from farnode_desktop.core.resources import bundle_dir, engine_source_root

DIGEST_FILE = "source-digest.txt"  # in the bundle's top folder, written by the spec


def source_digest(repo: Path) -> str:
    """SHA-256 over what a bundle is built from (the package, its resources, the spec, the entry point), to tell
    whether a bundle in dist/ is current. The spec computes it before the analysis, so an edit during a build
    makes the bundle stale."""
    import hashlib

    from farnode_desktop.core.resources import packaged_resources, resources_dir

    h = hashlib.sha256()
    files = [p for p in (repo / "farnode_desktop").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    files += [resources_dir(repo) / rel for rel in packaged_resources(repo)]
    files += [repo / "packaging" / "farnode.spec", repo / "packaging" / "farnode_entry.py"]
    files += [p for p in [repo / "packaging" / "shrink.py"] if p.is_file()]  # the spec's post-build step
    for p in sorted(files):
        h.update(p.relative_to(repo).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _pick_engine():
    from farnode_desktop.core.errors import EngineEnvError
    from farnode_desktop.core.node.engine_venv import VARIANTS, EngineEnv
    from farnode_desktop.core.paths import AppPaths

    paths = AppPaths.default()
    wanted = os.environ.get("FARNODE_ENGINE_VARIANT", "")
    order = [wanted] if wanted else list(reversed(VARIANTS))  # cuda first when both are ready
    for variant in order:
        env = EngineEnv(paths, variant)
        if env.python.exists():
            return env
    raise EngineEnvError("The engine environment is not set up. Run `farnode-desktop engine setup` first.",
                         title="Engine not installed")


def launcher_command(module: str, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run ``python -m <module> <args>`` in the engine's interpreter."""
    from farnode_desktop.core.node.runtimes.base import engine_subprocess_env

    if not module.startswith("farnode_desktop.engine."):
        raise ValueError(f"not an engine module: {module!r}")
    engine = _pick_engine()
    return [str(engine.python), "-m", module, *args], engine_subprocess_env()


def frozen_main(argv: list[str] | None = None) -> int:
    """Entry point of the frozen executable: the app's CLI, plus ``launcher`` / ``traffic`` which re-exec
    the engine's interpreter on the bundled engine source (stdin, stdout, stderr and open descriptors
    such as ``--event-fd N`` are inherited)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bundle-check"]:
        return bundle_check(argv[1:])
    if argv[:1] == ["wallet-keys"]:  # the wallet's helper process (core/payout/keys.py)
        from farnode_desktop.core.payout.keys import serve

        return serve()
    if argv and argv[0] in ("launcher", "traffic"):
        from farnode_desktop.core.errors import FarNodeError

        try:
            cmd, env = launcher_command(f"farnode_desktop.engine.{argv[0]}", argv[1:])
        except FarNodeError as exc:
            print(f"{exc.title}: {exc.message}", file=sys.stderr)
            return 2
        if os.name == "nt":  # no exec on Windows: run it and pass its exit code on
            return subprocess.call(cmd, env=env, cwd=str(engine_source_root()))
        os.chdir(engine_source_root())
        # Descriptors passed to us (``--event-fd N``: pass_fds made them inheritable) stay open across exec.
        os.execve(cmd[0], cmd, env)
    from farnode_desktop.app.cli import main

    return main(argv)


def bundle_check(argv: list[str] | None = None) -> int:
    """``farnode-desktop bundle-check [--gui] [--wallet] [--rpc URL --token A --address A --chain-id N --sender A]``:
    import every app module of the bundle, draw a chart offscreen and use Qt's ICU services, so a Qt module,
    library or data file left out by the spec's exclusions shows up at build time, not at a user's.
    ``--gui``: also open the main window with the tray icon, show every page and quit, then list the
    libraries loaded from outside the bundle. ``--wallet``: create, use and remove a wallet in the keyring.
    ``--rpc ...``: one earnings sync against that JSON-RPC URL (app/bundle_selfcheck.py).
    Prints ``bundle-check ok: ...`` and returns 0, or names what failed and returns 1."""
    import argparse
    import importlib
    import pkgutil
    import traceback

    import farnode_desktop

    ap = argparse.ArgumentParser(prog="farnode-desktop bundle-check")
    ap.add_argument("--gui", action="store_true")
    ap.add_argument("--wallet", action="store_true")
    ap.add_argument("--rpc", default="")
    ap.add_argument("--token", default="")
    ap.add_argument("--address", default="")
    ap.add_argument("--chain-id", type=int, default=0)
    ap.add_argument("--sender", action="append", default=[])
    args = ap.parse_args(argv or [])

    def last_line(limit: int = 3) -> str:
        return traceback.format_exc(limit=limit).strip().splitlines()[-1]

    failed, count = [], 0
    for info in pkgutil.walk_packages(farnode_desktop.__path__, "farnode_desktop."):
        if info.name.startswith("farnode_desktop.engine") or info.name.endswith("__main__"):
            continue  # the engine side runs in the engine's interpreter; __main__ would run the CLI
        try:
            importlib.import_module(info.name)
            count += 1
        except Exception:
            failed.append(f"{info.name}: {last_line(2)}")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    gui = None
    try:
        gui = importlib.import_module("farnode_desktop.gui.bundle_check")
        gui.draw_chart()
    except Exception:
        failed.append("Qt/pyqtgraph chart: " + last_line())
    if gui is not None:
        try:
            failed.extend(f"Qt text services (ICU): {p}" for p in gui.check_text_services())
        except Exception:
            failed.append("Qt text services (ICU): " + last_line())
    if args.gui and gui is not None:
        try:
            print("pages shown: " + ", ".join(gui.show_every_page(use_tray=True)), flush=True)
            base = str(bundle_dir() or "")
            outside = [Path(p).name for p in gui.loaded_libraries() if not base or not p.startswith(base)]
            print("libraries loaded from outside the bundle: " + " ".join(outside), flush=True)
        except Exception:
            failed.append("GUI pages: " + last_line(6))
    from farnode_desktop.app import bundle_selfcheck

    if args.wallet:
        try:
            print(bundle_selfcheck.check_wallet(), flush=True)
        except Exception:
            failed.append("wallet/keyring: " + last_line(6))
    if args.rpc:
        try:
            result = bundle_selfcheck.check_earnings(args.rpc, args.token, args.address, args.chain_id,
                                                      args.sender)
            print("earnings sync: " + bundle_selfcheck.dumps(result), flush=True)
            if result["error"]:
                failed.append(f"earnings sync: {result['error']}")
        except Exception:
            failed.append("earnings sync: " + last_line(6))
    for line in failed:
        print(f"bundle-check FAILED {line}", file=sys.stderr)
    if not failed:
        print(f"bundle-check ok: {count} modules, chart drawn, Qt text services work")
    return 1 if failed else 0
