"""The operator's side of the chain: read the reward token, sign and send ERC-20 transfers, read receipts.

The only module of the app that imports web3 (tests/test_layers.py). The operator's key stays inside the
eth-account object web3 makes of it; no message built here contains it. Every failure to reach the node is a
:class:`ChainUnavailable`, a node that refuses is a :class:`ChainRefused`, and a lack of tokens or gas is an
:class:`OutOfFunds`, each with a message that says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests
from web3 import HTTPProvider, Web3
from web3.exceptions import (
    ContractLogicError,
    ProviderConnectionError,
    TimeExhausted,
    TransactionNotFound,
    Web3Exception,
)

from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.demo_operator.progress import Signed

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"  # Transfer(address,address,uint256)
_ERC20_ABI = [
    {"type": "function", "name": "decimals", "stateMutability": "view", "inputs": [],
     "outputs": [{"name": "", "type": "uint8"}]},
    {"type": "function", "name": "balanceOf", "stateMutability": "view",
     "inputs": [{"name": "account", "type": "address"}], "outputs": [{"name": "", "type": "uint256"}]},
    {"type": "function", "name": "transfer", "stateMutability": "nonpayable",
     "inputs": [{"name": "to", "type": "address"}, {"name": "amount", "type": "uint256"}],
     "outputs": [{"name": "", "type": "bool"}]},
]
_TIMEOUT_S = 10


class ChainUnavailable(FarNodeError):
    title = "Chain unreachable"


class ChainRefused(FarNodeError):
    title = "Chain refused"


class OutOfFunds(FarNodeError):
    title = "Operator out of funds"


@dataclass(frozen=True)
class Receipt:
    tx_hash: str
    block: int
    ok: bool  # executed without revert
    transfers: tuple[tuple[str, str, int], ...]  # (from, to, value) of the token's Transfer events


def _topic(address: str) -> str:
    return "0x" + "0" * 24 + address[2:].lower()


def _hex(value) -> str:
    return Web3.to_hex(value)


class OperatorChain:
    def __init__(self, rpc_url: str, chain_id: int, token_address: str, key: str) -> None:
        self.rpc_url = rpc_url
        self.chain_id = chain_id
        self.w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": _TIMEOUT_S},
                                    exception_retry_configuration=None))
        self._account = self.w3.eth.account.from_key(key)
        self.address: str = self._account.address
        self.token_address: str = Web3.to_checksum_address(token_address)
        self.token = self.w3.eth.contract(address=self.token_address, abi=_ERC20_ABI)

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (requests.RequestException, ProviderConnectionError, TimeExhausted, OSError) as e:
            raise ChainUnavailable(f"Cannot reach the chain at {self.rpc_url} ({what}: {type(e).__name__}). "
                                   "Is the local chain running?") from None

    # -- reading
    def check(self) -> None:
        """The node answers, is the configured chain, and holds a contract at the token address."""
        chain_id = self._call("chain id", lambda: self.w3.eth.chain_id)
        if chain_id != self.chain_id:
            raise ChainRefused(f"The node at {self.rpc_url} is chain {chain_id}, not the configured chain "
                               f"{self.chain_id}: nothing is paid until they agree.")
        code = self._call("token code", self.w3.eth.get_code, self.token_address)
        if not code:
            raise ChainRefused(f"There is no contract at the token address {self.token_address} on chain "
                               f"{self.chain_id} (was the chain reset?): nothing is paid until the token is there.")

    def decimals(self) -> int:
        return int(self._call("token decimals", self.token.functions.decimals().call))

    def token_balance(self) -> int:
        return int(self._call("token balance", self.token.functions.balanceOf(self.address).call))

    def gas_balance(self) -> int:
        return int(self._call("gas balance", self.w3.eth.get_balance, self.address))

    def nonce(self, block: str = "latest") -> int:
        """Transactions of the operator mined (``latest``) or also waiting (``pending``)."""
        return int(self._call("account nonce", self.w3.eth.get_transaction_count, self.address, block))

    def head(self) -> int:
        return int(self._call("block number", lambda: self.w3.eth.block_number))

    def receipt(self, tx_hash: str) -> Receipt | None:
        try:
            r = self._call("receipt", self.w3.eth.get_transaction_receipt, tx_hash)
        except TransactionNotFound:
            return None
        transfers = []
        for log in r["logs"]:
            topics = [_hex(t) for t in log["topics"]]
            if (log["address"] == self.token_address and len(topics) == 3 and topics[0] == TRANSFER_TOPIC):
                transfers.append((Web3.to_checksum_address("0x" + topics[1][-40:]),
                                  Web3.to_checksum_address("0x" + topics[2][-40:]), int(_hex(log["data"]), 16)))
        return Receipt(_hex(r["transactionHash"]), int(r["blockNumber"]), r["status"] == 1, tuple(transfers))

    def pays(self, receipt: Receipt, wallet: str, amount: int) -> bool:
        """Whether ``receipt`` holds the operator's transfer of ``amount`` to ``wallet`` in the token."""
        return receipt.ok and (self.address, wallet, amount) in receipt.transfers

    def find_transfer(self, wallet: str, amount: int, from_block: int, exclude: set[str]) -> tuple[str, int] | None:
        """A transfer of ``amount`` from the operator to ``wallet`` since ``from_block`` that is not one of
        ``exclude`` (transactions already accounted for): (tx hash, block)."""
        logs = self._call("Transfer logs", self.w3.eth.get_logs, {
            "address": self.token_address, "fromBlock": from_block, "toBlock": "latest",
            "topics": [TRANSFER_TOPIC, _topic(self.address), _topic(wallet)]})
        for log in logs:
            tx_hash = _hex(log["transactionHash"])
            if int(_hex(log["data"]), 16) == amount and tx_hash not in exclude:
                return tx_hash, int(log["blockNumber"])
        return None

    # -- paying
    def sign_transfer(self, wallet: str, amount: int, nonce: int) -> Signed:
        call = self.token.functions.transfer(wallet, amount)
        try:
            gas = self._call("gas estimate", call.estimate_gas, {"from": self.address})
        except ContractLogicError as e:
            raise OutOfFunds(f"The token refuses the operator's transfer of {amount} to {wallet} ({e}); "
                             f"fund the operator {self.address}") from None
        latest = self._call("latest block", self.w3.eth.get_block, "latest")
        fields = {"from": self.address, "nonce": nonce, "gas": gas * 6 // 5 + 10_000, "chainId": self.chain_id}
        base = latest.get("baseFeePerGas")
        if base is None:
            fields["gasPrice"] = self._call("gas price", lambda: self.w3.eth.gas_price)
        else:
            tip = self._call("priority fee", lambda: self.w3.eth.max_priority_fee)
            fields.update(maxFeePerGas=2 * int(base) + tip, maxPriorityFeePerGas=tip)
        tx = self._call("transaction", call.build_transaction, fields)
        signed = self._account.sign_transaction(tx)
        return Signed(nonce, _hex(signed.hash), _hex(signed.raw_transaction))

    def send(self, raw_tx: str) -> str:
        """Hand a signed transaction to the node: "sent", "known" (the node has it already) or "nonce used"
        (a transaction with its nonce is mined: this one, or another that took its place)."""
        try:
            self._call("send", self.w3.eth.send_raw_transaction, raw_tx)
            return "sent"
        except (ValueError, Web3Exception) as e:
            text = str(e).lower()
            if "already known" in text or "known transaction" in text or "already imported" in text:
                return "known"
            if "nonce too low" in text or "nonce has already been used" in text or "nonce is too low" in text:
                return "nonce used"
            if "insufficient funds" in text or "lack of funds" in text:
                raise OutOfFunds(f"The operator {self.address} has not enough ETH to pay the gas of its "
                                 "transfers; send it some") from None
            raise ChainRefused(f"The node refused a payment transaction: {e}") from None
