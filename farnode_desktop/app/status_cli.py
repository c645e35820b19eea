"""``farnode-desktop status [--json]``: the node of this data folder, from any shell, whichever face runs it
(the window or ``farnode-desktop node``). It asks the running app core over its control socket."""

from __future__ import annotations

import json
import sys
from typing import IO

from farnode_desktop.core.control import NotRunning, request
from farnode_desktop.core.instance import FACES, InstanceLock
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.status import start_timeline_text


def cli_status(as_json: bool = False, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    paths = AppPaths.default()
    try:
        report = request(paths.run_dir, "status")
    except NotRunning as exc:
        holder = InstanceLock(paths.run_dir).holder()
        if holder is None:
            from farnode_desktop.core.settings import SettingsStore

            SettingsStore(paths.settings_file).load()  # damaged: why no node can run here says more
            raise
        # it holds the folder but does not answer (starting, or an older version)
        raise NotRunning(f"{FACES.get(holder.face, holder.face).capitalize()} (process {holder.pid}) runs on "
                         "this data folder but did not answer; it may be starting or stopping. Try again.") from exc
    if "error" in report:  # the app answered, but could not tell
        raise NotRunning(f"The app of this data folder could not report its status: {report['error']}",
                         title="Status not available")
    from farnode_desktop.core.errors import SettingsError
    from farnode_desktop.core.settings import SettingsStore

    try:  # the running node took its settings before; a file damaged since then is said all the same
        SettingsStore(paths.settings_file).load()
    except SettingsError as exc:
        print(f"warning: {exc.message}", file=sys.stderr)
    if as_json:
        print(json.dumps(report, indent=2, sort_keys=True), file=out)
        return 0
    for label, value in status_rows(report):
        print(f"{label:<14}{value}", file=out)
    return 0


def status_rows(r: dict) -> list[tuple[str, str]]:
    node, app = r.get("node", {}), r.get("app", {})
    rows = [("Node", r.get("words", r.get("state", "?"))),
            ("Run by", f"{FACES.get(app.get('face'), app.get('face'))}, process {app.get('pid')}")]
    if r.get("message") and r.get("state") not in ("online", "paused"):
        rows.append(("Detail", r["message"]))
    net = r.get("network", {})
    swarm = {"local": "the local demo swarm (this computer)", "public": "the public FarMesh network",
             "custom": "a custom FarMesh network"}.get(net.get("swarm"), net.get("swarm", "?"))
    rows += [("Network", f"{swarm}, port {net.get('port')}"), ("Model", str(net.get("model", "")))]
    if node.get("blocks"):
        b = node["blocks"]
        rows.append(("Blocks", f"{b[0]}-{b[-1]} of {node.get('total_blocks')}" if len(b) > 1 else f"{b[0]}"))
    rows += [
        ("Speed", f"{node.get('tokens_per_s', 0):.1f} tokens/s"),
        ("Served", f"{node.get('tokens_served', 0):,} tokens, {node.get('requests', 0):,} requests"),
        ("Uptime", r.get("uptime", "0:00:00")),
        ("Reachable", r.get("reachability", {}).get("text", "?")),
    ]
    last_start = start_timeline_text(r.get("start_timeline") or [])
    if last_start:
        rows.append(("Last start", last_start))
    if r.get("peer_id"):
        rows.append(("Peer id", r["peer_id"]))
    traffic = r.get("demo_traffic")
    if traffic and traffic.get("requests"):
        rows.append(("Demo traffic", f"{traffic['ok']} of {traffic['requests']} answers checked correct"))
    earnings = r.get("earnings", {})
    if not earnings.get("configured"):
        rows.append(("Earnings", earnings.get("text", "not set up")))
    elif "paid_total" in earnings:
        unit = earnings.get("symbol") or "reward tokens"
        text = f"{earnings['paid_total']:,.4f} {unit} paid in {earnings.get('payout_count', 0)} payouts"
        if earnings.get("pending_total"):
            text += f", {earnings['pending_total']:,.4f} pending"
        if earnings.get("estimated_unpaid") is not None:
            text += f", about {earnings['estimated_unpaid']:,.4f} earned since (estimate)"
        if earnings.get("error"):
            text += f" (not up to date: {earnings['error']})"
        rows.append(("Earnings", text))
    else:
        rows.append(("Earnings", earnings.get("text", "")))
    binding = r.get("wallet_binding")
    if binding and earnings.get("configured"):
        rows.append(("Paid to", binding.get("text", "")))
    if r.get("policy") and r.get("state") == "paused":
        rows.append(("Paused for", "; ".join(r["policy"])))
    memory = app.get("memory")
    if memory and memory.get("text"):
        rows.append(("App memory", memory["text"]))
    return rows


def cli_pause_resume(command: str, minutes: float | None = None, out: IO[str] | None = None) -> int:
    """``farnode-desktop pause [--minutes N]`` / ``resume``: the running node of this data folder, whichever
    face runs it, pauses (blocks announced offline, the GPU's memory given back) or resumes."""
    out = out or sys.stdout
    if minutes is not None and not (minutes > 0 and minutes == minutes and minutes != float("inf")):
        from farnode_desktop.core.errors import SettingsError

        raise SettingsError(f"--minutes must be a positive number of minutes, not {minutes}")
    paths = AppPaths.default()
    args = {"seconds": minutes * 60.0} if (command == "pause" and minutes is not None) else {}
    answer = request(paths.run_dir, command, **args)
    if "error" in answer:
        raise NotRunning(f"The app of this data folder could not {command}: {answer['error']}",
                         title=f"Could not {command}")
    if command == "pause":
        print("Paused" + (f" for {minutes:g} min." if minutes is not None else " until `farnode-desktop resume`."),
              file=out)
    else:
        print("Resumed.", file=out)
    return 0
