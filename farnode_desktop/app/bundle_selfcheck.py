"""The optional stages of ``farnode-desktop bundle-check`` that need outside services (see app/frozen.py).

They run the app's own code paths inside the frozen app, so a library, data file or entry point that the
PyInstaller spec leaves out fails at build time:

- :func:`check_wallet`: the payout wallet through the OS keyring found by keyring's normal backend
  discovery (entry points read from the bundled metadata; Secret Service via secretstorage, jeepney and
  cryptography's DH session): create a wallet, sign and verify a node binding, render its QR code, remove
  it. Needs a running Secret Service (or another keyring). Prints only the public address.
- :func:`check_earnings`: one earnings sync (the app's JSON-RPC client over http.client: eth_chainId, eth_blockNumber,
  eth_getLogs, eth_call, blocks) against an Ethereum JSON-RPC URL, e.g. a local anvil.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

TEST_PEER_ID = "12D3KooWBundeCheckPeer123456789abcdefghijkmn"  # base58btc, never a real node


def check_wallet() -> str:
    """Create, use and remove a throwaway payout wallet in the keyring. Returns a one-line summary; raises
    on any failure. The settings go to the app's settings file (run it with a private ``FARNODE_HOME``)."""
    from farnode_desktop.core.keystore import Keystore
    from farnode_desktop.core.paths import AppPaths
    from farnode_desktop.core.payout.wallet import WalletManager, address_qr, verify_node_binding
    from farnode_desktop.core.settings import SettingsStore

    paths = AppPaths.default().ensure()
    keystore = Keystore(service="farnode-desktop-bundle-check")
    wallet = WalletManager(SettingsStore(paths.settings_file), keystore)
    new = wallet.create(words=12)
    try:
        if len(new.phrase.split()) != 12 or not wallet.has_key():
            raise RuntimeError("the new wallet's key is not in the keyring")
        binding = wallet.sign_node_binding(TEST_PEER_ID, chain_id=8453)
        bound = verify_node_binding(binding.statement, binding.signature, expected_peer_id=TEST_PEER_ID,
                                    expected_chain_id=8453)
        if bound != new.address:
            raise RuntimeError(f"the binding verifies to {bound}, not {new.address}")
        if not address_qr(new.address).startswith(b"\x89PNG"):
            raise RuntimeError("the address QR code is not a PNG")
    finally:
        wallet.remove(confirm=True)
    if keystore.get_secret(new.address) is not None:
        raise RuntimeError("the removed wallet's key is still in the keyring")
    return f"wallet ok: {new.address} created, bound, removed ({keystore.describe()})"


def check_earnings(rpc_url: str, token: str, wallet_address: str, chain_id: int, senders: list[str]) -> dict:
    """One earnings sync of ``wallet_address``'s ``token`` payouts sent by ``senders``, from block 0 with no
    confirmations wait.
    Returns ``{"payouts", "paid_total", "balance", "error", "head"}`` (amounts as strings)."""
    from farnode_desktop.core.payout.earnings import EarningsSync
    from farnode_desktop.core.settings import ChainSettings

    chain = ChainSettings(rpc_url=rpc_url, chain_id=chain_id, token_address=token, confirmations=0,
                          payout_senders=list(senders))
    with tempfile.TemporaryDirectory() as tmp:
        sync = EarningsSync(chain, wallet_address, Path(tmp) / "earnings.sqlite3")
        snap = sync.sync_once()
        return {"payouts": len(sync.payouts()), "paid_total": str(snap.paid_total),
                "balance": None if snap.balance is None else str(snap.balance), "error": snap.error,
                "head": snap.last_synced_block}


def dumps(result: dict) -> str:
    return json.dumps(result, sort_keys=True)
