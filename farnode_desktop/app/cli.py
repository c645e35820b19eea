"""Command line: ``farnode-desktop [gui|node|engine|gpus|settings|launcher] ...``.

With no subcommand the app opens its window when a display is available and runs the headless node
otherwise. Imports are lazy so that each subcommand loads only what it needs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from farnode_desktop import APP_NAME, __version__


def _has_display() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="farnode-desktop", description=f"{APP_NAME} {__version__}")
    p.add_argument("--version", action="version", version=f"{APP_NAME} {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log more to the terminal")
    sub = p.add_subparsers(dest="command")

    g = sub.add_parser("gui", help="open the app window (the default on a desktop)")
    g.add_argument("--minimized", action="store_true", help="start in the tray")

    n = sub.add_parser("node", help="run the node headless with a live status line (the default without a display)")
    n.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: until Ctrl-C)")
    n.add_argument("--no-traffic", action="store_true", help="local swarm: do not run the demo client traffic")
    n.add_argument("--json", action="store_true", help="print events as JSON lines instead of a status line")

    e = sub.add_parser("engine", help="manage the engine's own Python environment")
    e.add_argument("action", choices=["setup", "status", "verify", "remove"])
    e.add_argument("--variant", choices=["auto", "cpu", "cuda"], default="auto")

    sub.add_parser("gpus", help="show NVIDIA GPUs, live telemetry and what each can serve")

    pl = sub.add_parser("plan", help="show what the node will run with the current settings (per server: GPU, "
                                     "blocks, quantization, dtype, addresses, model, why)")
    pl.add_argument("--json", action="store_true", help="print the plan as JSON")

    sw = sub.add_parser("swarm", help="show the network: models served, block coverage, servers (this node marked)")
    sw.add_argument("--json", action="store_true", help="print the network view as JSON")

    t = sub.add_parser("hf-token", help="keep a Hugging Face access token (for gated models) in the OS keyring")
    t.add_argument("action", choices=["set", "status", "remove"],
                   help="set: read the token from standard input (never give it on the command line)")

    s = sub.add_parser("settings", help="show the settings file and its values")
    s.add_argument("action", choices=["show", "path"], nargs="?", default="show")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    command = args.command or ("gui" if _has_display() else "node")
    from farnode_desktop.core.errors import FarNodeError

    try:
        if command == "node":
            from farnode_desktop.app.headless import run_headless

            return run_headless(duration=args.duration if args.command else 0,
                                traffic=not getattr(args, "no_traffic", False),
                                json_events=getattr(args, "json", False))
        if command == "engine":
            from farnode_desktop.core.node.engine_venv import cli_engine

            return cli_engine(args.action, args.variant)
        if command == "gpus":
            from farnode_desktop.app.gpu_cli import cli_gpus

            return cli_gpus()
        if command == "plan":
            from farnode_desktop.app.network_cli import cli_plan

            return cli_plan(as_json=args.json)
        if command == "swarm":
            from farnode_desktop.app.network_cli import cli_swarm

            return cli_swarm(as_json=args.json)
        if command == "hf-token":
            from farnode_desktop.app.network_cli import cli_hf_token

            return cli_hf_token(args.action)
        if command == "settings":
            return _cli_settings(args.action)
        if command == "gui":
            from farnode_desktop.gui.app import run_gui

            return run_gui(minimized=getattr(args, "minimized", False))
    except FarNodeError as exc:
        print(f"\n{exc.title}: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    return 0


def _cli_settings(action: str) -> int:
    import json

    from farnode_desktop.core.paths import AppPaths
    from farnode_desktop.core.settings import SettingsStore

    paths = AppPaths.default()
    if action == "path":
        print(paths.settings_file)
        return 0
    store = SettingsStore(paths.settings_file)
    settings = store.load()
    for w in store.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(json.dumps(settings.to_dict(), indent=2, sort_keys=True))
    return 0
