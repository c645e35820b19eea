"""What the app tells about itself: the ``status`` report (the command, ``status --json`` and the control
socket), the log's tail, and the diagnostics bundle for a bug report, with secrets redacted.

Everything here reads; nothing here changes the node. :class:`~farnode_desktop.core.app_core.AppCore` hands
in the parts it owns.
"""

from __future__ import annotations

import collections
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

from farnode_desktop import APP_NAME, __version__
from farnode_desktop.core.snapshots import state_info
from farnode_desktop.core.status import (
    describe,
    plain,
    reachability_from_addresses,
    stats_fields,
    uptime_text,
)

_SECRET_KEYS = re.compile(r"(private[_ ]?key|secret|phrase|mnemonic|password|seed)", re.I)
_HEX_KEY = re.compile(r"\b(0x)?[0-9a-fA-F]{64}\b")


def redact(text: str) -> str:
    """Remove what looks like a private key (64 hex digits) from free text."""
    return _HEX_KEY.sub("<redacted>", text)


def redact_settings(d: Any) -> Any:
    """A copy of a settings dict with any secret-looking field blanked (settings should hold none)."""
    if isinstance(d, dict):
        return {k: ("<redacted>" if _SECRET_KEYS.search(str(k)) else redact_settings(v)) for k, v in d.items()}
    if isinstance(d, list):
        return [redact_settings(v) for v in d]
    if isinstance(d, str):
        return redact(d)
    return d


def status_report(*, face: str, data_dir: Path, node: Any, reachability: dict, decision: Any, earnings: Any,
                  local_chain: dict | None = None, memory: dict | None = None) -> dict:
    """How the node is doing, for ``farnode-desktop status [--json]``: state in words, blocks, tokens/s,
    requests, uptime, reachability, earnings, and which process runs it. ``node`` is the node controller,
    ``reachability`` what the network probe found per server, ``decision`` the policies' last one,
    ``earnings`` the earnings runner, ``local_chain`` the embedded default's chain and payout service, ``memory``
    the app process's own (:meth:`core.memory.HeapKeeper.report`)."""
    st, stats = node.state, node.stats()
    peer = node.supervisor.peer
    net = node.settings.network
    report: dict = {
        "time": time.time(),
        "app": {"pid": os.getpid(), "face": face, "version": __version__, "data_folder": str(data_dir),
                **({"memory": memory} if memory is not None else {})},
        "state": st.state, "words": describe(st, stats), "message": st.message,
        # the model served: the local swarm serves its demo model, whatever network.model holds for later
        "network": {"swarm": net.swarm, "port": net.port,
                    "model": "(the embedded demo model)" if node.is_local else
                    (node.plan.model if node.plan is not None else net.model)},
        "node": stats_fields(stats),
        "uptime": uptime_text(stats.uptime_s),
        # the phases of the last start (the seconds each took; "ahead": done by a standby before the order)
        "start_timeline": node.supervisor.timeline,
        "peer_id": peer.peer_id,
        "reachability": _reachability(node, reachability, list(peer.addrs), st.state),
        "policy": list(decision.reasons) if decision is not None else [],
    }
    if node.is_local:
        report["demo_traffic"] = plain(node.traffic.stats)
    if local_chain is not None:
        report["local_chain"] = local_chain
    report["wallet_binding"] = _binding(node, earnings)
    if not earnings.configured():
        if not node.settings.wallet.address:
            text = ("no payout wallet: create one to be paid (the Wallet page, or farnode-desktop wallet create)"
                    + (" - the local chain pays this node's demo traffic" if local_chain and local_chain.get("running")
                       else ""))
        elif node.is_local:
            text = ("the local chain starts with the node" if not (local_chain or {}).get("running")
                    else "the local chain is starting")
        else:
            text = "no payout chain set (load the network's file, or set chain.* in Settings)"
        report["earnings"] = {"configured": False, "text": text}
    else:
        # computed now from what the last sync stored (no RPC): the estimate counts the tokens served until now
        try:
            snap = earnings.snapshot() if earnings.latest is not None else None
        except Exception:  # noqa: BLE001 - the status must answer; the last sync's figures then
            snap = earnings.latest
        report["earnings"] = {"configured": True, **(plain(snap) if snap is not None else {"text": "not synced yet"})}
    return report


def _binding(node: Any, earnings: Any) -> dict:
    """Whether the server announces the signed binding that gets it paid, in words."""
    if not node.settings.wallet.address:
        return {"announced": False, "text": "no payout wallet: create a wallet to be paid"}
    b = node.supervisor.binding
    if b is None:
        active = state_info(node.state.state).active
        return {"announced": False, "text": "waiting for the server to announce it" if active else "not serving"}
    if b.stored:
        return {"announced": True, "text": "the server announces its signed wallet binding"}
    return {"announced": False, "text": f"not announced: {b.error or 'the network refused it'}"}


def _reachability(node: Any, found_by_node: dict, addrs: list[str], state: str) -> dict:
    """Who can reach the node: what the network probe found (off the local swarm, once it ran), else what the
    announced addresses say."""
    report = reachability_from_addresses(node.is_local, addrs, state)
    found = found_by_node.get(node.supervisor.node_id) if not node.is_local else None
    if found is not None and found.state != "unknown":
        report.update(probe=found.state, text=f"{found.words}: {found.detail}", fix=found.fix)
    return report


def log_tail(path: Path, max_lines: int = 2000) -> list[str]:
    """The last lines of a log file (blocking file read; [] when there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 400_000))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return data.splitlines()[-max_lines:]


def log_search(path: Path, text: str, max_lines: int = 1000) -> list[str]:
    """The last ``max_lines`` lines that contain ``text`` (case aside) in a log file and the files it rotated to
    (``.1`` older, ``.2`` older still...), oldest first. Blocking file reads, line by line (a 5 MB file is never
    held whole); the newest file first, an older one only while fewer were found. [] when there is no log."""
    needle = text.lower()
    found: list[str] = []
    for i in range(0, 100):
        p = path if i == 0 else path.with_name(f"{path.name}.{i}")
        hits: collections.deque[str] = collections.deque(maxlen=max_lines - len(found))
        try:
            with open(p, "rb") as f:
                for raw in f:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if needle in line.lower():
                        hits.append(line)
        except FileNotFoundError:
            if i == 0:
                continue  # rotated just now, or not written yet: the older files may still have lines
            break
        except OSError:
            break
        found[:0] = hits
        if len(found) >= max_lines:
            break
    return found


def diagnostics(*, state: Any, engine: dict, inventory: Any, settings: dict, lines: list[str]) -> str:
    """A text bundle for a bug report: versions, state, engine, GPUs, settings and the last log lines, secrets
    redacted. Never contains the wallet key or phrase (they live in the OS keyring and are not read here)."""
    info = {
        "app": f"{APP_NAME} {__version__}",
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "state": state.__dict__,
        "engine": {k: v for k, v in engine.items() if k != "missing"},
        "gpus": [g.name for g in inventory.gpus] or inventory.error,
        "driver": inventory.driver_version,
        "settings": redact_settings(settings),
    }
    body = json.dumps(info, indent=2, default=str)
    return redact(f"{body}\n\n--- last {len(lines)} log lines ---\n" + "\n".join(lines[-300:]))
