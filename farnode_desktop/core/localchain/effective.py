"""The chain settings the earnings reader uses on the embedded default: the local chain's, at run time.

They replace the user's ``chain`` section only in the settings handed to the earnings runner while the swarm is
the local one; nothing is written to the settings file, so the user's real-chain settings stay as they were.
"""

from __future__ import annotations

import dataclasses

from farnode_desktop.core.localchain.node import ChainInfo
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
