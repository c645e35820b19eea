"""Start the demo payout service (``python -m farnode_desktop.demo_operator``) for the local chain.

Its config goes on the first stdin line as JSON, the operator's private key on the second (never argv or the
environment); stdin stays open, and closing it (or SIGINT) tells the service to stop.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from farnode_desktop.core import process_tree
from farnode_desktop.core.localchain.node import OPERATOR_KEY, ChainInfo, LocalChainError

MODULE = "farnode_desktop.demo_operator"


def service_config(info: ChainInfo, ledger_path: Path, state_dir: Path, rate_per_1k_tokens: float,
                   batch_interval_s: float = 180.0, confirmations: int = 1, quick_payments: int = 0,
                   later_interval_s: float | None = None) -> dict:
    return {"rpc_url": info.rpc_url, "chain_id": info.chain_id, "token_address": info.token_address,
            "ledger_path": str(ledger_path), "state_dir": str(state_dir),
            "rate_per_1k_tokens": rate_per_1k_tokens, "batch_interval_s": batch_interval_s,
            "confirmations": confirmations, "quick_payments": quick_payments, "later_interval_s": later_interval_s}


def start_payout_service(config: dict, log_path: Path, *, module: str = MODULE
                         ) -> tuple[subprocess.Popen, process_tree.ProcessTree]:
    """Start the service (``module``) with ``config`` and the operator key on stdin; a module this installation
    lacks (the bundle leaves it out) is a clear error."""
    if importlib.util.find_spec(module) is None:
        raise LocalChainError(f"The demo payout service ({module}) is not part of this installation, so nobody "
                              "pays on the local chain. Run FarNode Desktop from its Python package (pip or the "
                              "README's first command) to be paid on the embedded default.")
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc, tree = process_tree.spawn([sys.executable, "-m", module], stdin=subprocess.PIPE, stdout=log,
                                        stderr=subprocess.STDOUT)
    assert proc.stdin is not None
    proc.stdin.write((json.dumps(config) + "\n" + OPERATOR_KEY + "\n").encode())
    proc.stdin.flush()
    return proc, tree
