"""The chain settings the earnings reader uses on the embedded default: the local chain's, at run time.

They replace the user's ``chain`` section only in the settings handed to the earnings runner while the swarm is
the local one; nothing is written to the settings file, so the user's real-chain settings stay as they were.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from farnode_desktop.core.localchain.node import CHAIN_ID, ChainInfo
from farnode_desktop.core.settings import LOCAL_SWARM, ChainSettings, Settings

LOCAL_CONFIRMATIONS = 0  # one local node, no reorgs: a payout counts as paid once mined


def effective_settings(settings: Settings, info: ChainInfo | None, rate_per_1k_tokens: float) -> Settings:
    """``settings`` with the local chain's section when the swarm is local and the chain runs, else as is."""
    if settings.network.swarm != LOCAL_SWARM or info is None:
        return settings
    chain = ChainSettings(rpc_url=info.rpc_url, chain_id=info.chain_id, token_address=info.token_address,
                          payout_senders=[info.operator], confirmations=LOCAL_CONFIRMATIONS,
                          reward_per_1k_tokens=rate_per_1k_tokens)
    return dataclasses.replace(settings, chain=chain)


def builtin_network(chain_dir: Path, rate_per_1k_tokens: float) -> dict[str, Any]:
    """The embedded default as a network descriptor shows it (``network show``): a private swarm on this
    computer, its demo model, and the local chain's payouts as far as they are known (the chain is made at the
    node's first start; its port and token are remembered in ``chain_dir``)."""
    try:
        meta = json.loads((Path(chain_dir) / "chain.json").read_text())
    except (OSError, ValueError):
        meta = {}
    meta = meta if isinstance(meta, dict) else {}
    port, token, operator = meta.get("port"), meta.get("token_address"), meta.get("operator")
    known = isinstance(port, int) and isinstance(token, str)
    chain = {"rpc_url": f"http://127.0.0.1:{port}" if known else "", "chain_id": CHAIN_ID,
             "token_address": token if known else "", "payout_senders": [operator] if known and operator else [],
             "confirmations": LOCAL_CONFIRMATIONS, "reward_per_1k_tokens": rate_per_1k_tokens}
    return {"name": "Embedded default (a private swarm on this computer)", "source": "built in",
            "initial_peers": [], "dht_prefix": "", "model": "(the embedded demo model)", "chain": chain,
            "chain_note": "" if known else "the local chain is made when the node first starts"}
