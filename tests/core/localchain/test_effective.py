"""The existing earnings reader, given the local chain's effective settings, sees a real operator transfer."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from eth_account import Account

from farnode_desktop.core.events import EventBus
from farnode_desktop.core.localchain.effective import effective_settings
from farnode_desktop.core.localchain.node import OPERATOR_KEY, LocalChain
from farnode_desktop.core.payout.chain import ChainClient
from farnode_desktop.core.payout.runner import EarningsRunner
from farnode_desktop.core.settings import NetworkSettings, Settings
from tests.core.localchain.test_node import ARTIFACT, anvil_bin  # noqa: F401 - the fixture

_TRANSFER = "a9059cbb"  # transfer(address,uint256)


def test_earnings_runner_reads_the_local_chain(tmp_path, anvil_bin):  # noqa: F811
    chain = LocalChain(tmp_path / "chain", anvil_bin, ARTIFACT)
    info = chain.start()
    try:
        wallet = Account.create().address
        c = ChainClient(info.rpc_url, max_attempts=1)
        try:
            nonce = int(c.call("eth_getTransactionCount", [info.operator, "pending"]), 16)
            data = "0x" + _TRANSFER + bytes.fromhex(wallet[2:]).rjust(32, b"\0").hex() + (
                3 * 10**18).to_bytes(32, "big").hex()
            tx = {"to": info.token_address, "data": data, "nonce": nonce, "gas": 100000, "gasPrice": 2 * 10**9,
                  "chainId": info.chain_id, "value": 0}
            raw = Account.sign_transaction(tx, OPERATOR_KEY).raw_transaction
            c.call("eth_sendRawTransaction", ["0x" + raw.hex().removeprefix("0x")])
            # no block mined on top: on the local chain a payout counts as paid once mined
        finally:
            c.close()
        user = Settings()
        user = dataclasses.replace(user, wallet=dataclasses.replace(user.wallet, address=wallet))
        eff = effective_settings(user, info, 0.05)
        assert eff.chain.payout_senders == [info.operator] and user.chain.rpc_url == ""
        public = dataclasses.replace(user, network=dataclasses.replace(user.network, swarm="public"))
        assert effective_settings(public, info, 0.05) is public
        assert isinstance(user.network, NetworkSettings)
        runner = EarningsRunner(tmp_path / "data", EventBus(), lambda: eff, lambda a, b: 0.0)
        try:
            snap = runner.sync_once()
        finally:
            runner.stop()
        assert snap.balance == Decimal(3) and snap.paid_total == Decimal(3), snap
    finally:
        chain.stop()
