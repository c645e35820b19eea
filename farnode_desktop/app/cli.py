"""Command line: ``farnode-desktop [gui|node|status|settings|wallet|service|engine|gpus|plan|hf-token] ...``.

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


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line that says what is wrong and where the help is, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="farnode-desktop", description=f"{APP_NAME} {__version__}")
    p.add_argument("--version", action="version", version=f"{APP_NAME} {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log more to the terminal")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

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

    nw = sub.add_parser("network", help="join a network from its network file, or show the joined network")
    nw.add_argument("action", choices=["join", "show"])
    nw.add_argument("source", nargs="?", default="", help="join: the network file (JSON), or its http(s):// link")
    nw.add_argument("--json", action="store_true", help="show: print as JSON")

    t = sub.add_parser("hf-token", help="keep a Hugging Face access token (for gated models) in the OS keyring")
    t.add_argument("action", choices=["set", "status", "remove"],
                   help="set: read the token from standard input (never give it on the command line)")

    st = sub.add_parser("status", help="how the node of this data folder is doing (run by the window or headless)")
    st.add_argument("--json", action="store_true", help="print the status as JSON")

    pa = sub.add_parser("pause", help="pause the running node of this data folder (until resumed, or for a while)")
    pa.add_argument("--minutes", type=float, default=None, help="resume by itself after this many minutes")
    sub.add_parser("resume", help="end a pause of the running node of this data folder")

    s = sub.add_parser("settings", help="get, set, unset or edit settings (typed and checked; see `settings get`)",
                       description="settings get [SECTION | SECTION.KEY] | set KEY VALUE... | unset KEY | edit | "
                                   "show | path. Lists take several values (or one JSON list).")
    s.add_argument("action", choices=["get", "set", "unset", "edit", "show", "path"], nargs="?", default="show")
    s.add_argument("--json", action="store_true", help="get: print JSON")
    s.add_argument("args", nargs=argparse.REMAINDER, help="KEY and VALUE(s)")

    w = sub.add_parser("wallet", help="the payout wallet: create, import, address, export, remove, verify-binding "
                                      "(the key stays in the OS keyring)")
    w.add_argument("action", choices=["create", "import", "address", "export", "remove", "verify-binding"])
    w.add_argument("--phrase", action="store_true", help="import: a recovery phrase instead of a private key "
                                                         "(read without echo, or from stdin; never an argument)")
    w.add_argument("--words", type=int, default=12, choices=[12, 15, 18, 21, 24], help="create: phrase length")
    w.add_argument("--yes", action="store_true", help="remove: do not ask for confirmation")
    w.add_argument("--peer-id", default="", help="verify-binding: the node's peer id (default: the running node's)")
    w.add_argument("--chain-id", type=int, default=0, help="verify-binding: the chain (default: chain.chain_id)")
    w.add_argument("--json", action="store_true", help="address, verify-binding: print JSON")

    sv = sub.add_parser("service", help="run the headless node at boot/login: a systemd user unit on Linux, "
                                        "Task Scheduler on Windows, a LaunchAgent on macOS")
    sv.add_argument("action", choices=["install", "remove", "status"])
    sv.add_argument("--no-start", action="store_true", help="install: enable it, but do not start it now")
    return p


def _refuse_damaged_settings() -> None:
    """Raise DamagedSettings (which file, where, how to fix) when the settings file cannot be used."""
    from farnode_desktop.core.paths import AppPaths
    from farnode_desktop.core.settings import SettingsStore

    SettingsStore(AppPaths.default().settings_file).load()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    command = args.command or ("gui" if _has_display() else "node")
    from farnode_desktop.core.errors import FarNodeError

    try:
        if command not in ("gui", "status") and not (command == "settings" and args.action in ("path", "edit")):
            _refuse_damaged_settings()  # every command says so, and none runs on defaults in its place
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
        if command == "network":
            from farnode_desktop.app.network_cli import cli_network

            return cli_network(args.action, args.source, as_json=args.json)
        if command == "hf-token":
            from farnode_desktop.app.network_cli import cli_hf_token

            return cli_hf_token(args.action)
        if command == "settings":
            from farnode_desktop.app.settings_cli import cli_settings

            rest = [a for a in args.args if a != "--json"] if args.action == "get" else args.args
            return cli_settings(args.action, rest, as_json=args.json or rest != args.args)
        if command == "status":
            from farnode_desktop.app.status_cli import cli_status

            return cli_status(as_json=args.json)
        if command in ("pause", "resume"):
            from farnode_desktop.app.status_cli import cli_pause_resume

            return cli_pause_resume(command, minutes=getattr(args, "minutes", None))
        if command == "wallet":
            from farnode_desktop.app.wallet_cli import cli_wallet

            return cli_wallet(args.action, phrase=args.phrase, words=args.words, yes=args.yes,
                              peer_id=args.peer_id, chain_id=args.chain_id, as_json=args.json)
        if command == "service":
            from farnode_desktop.app.service import cli_service

            return cli_service(args.action, start=not args.no_start)
        if command == "gui":
            from farnode_desktop.gui.app import run_gui

            return run_gui(minimized=getattr(args, "minimized", False))
    except FarNodeError as exc:  # one line: what happened and what to do
        print(f"{exc.title}: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    return 0

