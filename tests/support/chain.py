"""A real anvil node on loopback with the RewardToken deployed, and a real HTTP proxy in front of it.

The session fixture starts tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil (installed by
scripts/system-deps.sh) on a free loopback port; tests skip, saying so, when the binary is missing.
A plugin (tests/conftest.py registers it): the fixtures ``anvil``, ``chain`` and ``proxy_factory``.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from eth_account import Account
from web3 import Web3

from tests.support import REPO
from tests.support.ports import free_port
from tests.support.processes import stop_process

ANVIL = REPO / "tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
ARTIFACT = REPO / "resources/contracts/RewardToken.json"
DECIMALS = 6


def rpc(url: str, method: str, params: list | None = None, timeout: float = 120) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        out = json.loads(r.read())
    if "error" in out:
        raise RuntimeError(out["error"])
    return out["result"]


@dataclass
class Anvil:
    proc: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc.stderr.close()


def token_balance(url: str, token: str, who: str) -> int:
    """``who``'s balance of the ERC-20 ``token`` in its smallest units (balanceOf, through the app's own JSON-RPC
    client: it closes the connection itself, so the node's port is not left in TIME_WAIT for its next start)."""
    from farnode_desktop.core.payout.chain import ChainClient

    c = ChainClient(url, max_attempts=1)
    try:
        data = "0x70a08231" + bytes.fromhex(who[2:]).rjust(32, b"\0").hex()
        return int(c.call("eth_call", [{"to": token, "data": data}, "latest"]), 16)
    finally:
        c.close()


def start_anvil(*args: str, port: int | None = None) -> Anvil:
    if not ANVIL.exists():
        pytest.skip(f"anvil is not installed at {ANVIL.relative_to(REPO)}: run scripts/system-deps.sh "
                    "(npm package @foundry-rs/anvil-linux-amd64)")
    port = port or free_port()
    proc = subprocess.Popen([str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--silent", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    node = Anvil(proc, port)
    deadline = time.monotonic() + 30
    while True:
        try:
            rpc(node.url, "eth_blockNumber", timeout=1)
            return node
        except Exception:
            if proc.poll() is not None:
                raise RuntimeError("anvil exited: " + proc.stderr.read().decode(errors="replace")) from None
            if time.monotonic() > deadline:
                node.stop()
                raise RuntimeError("anvil did not answer within 30 s") from None
            time.sleep(0.05)


@dataclass
class Chain:
    """The deployed token and anvil's unlocked dev accounts: owner (deployer), sender (payouts), other."""

    w3: Web3
    token: object
    owner: str
    sender: str
    other: str
    url: str

    def new_wallet(self) -> str:
        return Account.create().address

    # Each waits for its receipt: anvil answers eth_sendTransaction before its automined block is the head
    # (under load a sync right after a pay still saw the block before; test_earnings failed once so).
    def pay(self, to: str, amount: int, sender: str | None = None) -> str:
        tx = self.token.functions.transfer(to, amount).transact({"from": sender or self.sender})
        self.w3.eth.wait_for_transaction_receipt(tx, timeout=60)
        return tx.hex()

    def pay_many(self, to: str, amounts: list[int], sender: str | None = None) -> None:
        tx = self.token.functions.batchTransfer([to] * len(amounts), amounts).transact(
            {"from": sender or self.sender})
        self.w3.eth.wait_for_transaction_receipt(tx, timeout=60)

    def mine(self, n: int = 1) -> None:
        rpc(self.url, "anvil_mine", [hex(n)])

    def head(self) -> int:
        return self.w3.eth.block_number

    def snapshot(self) -> str:
        return rpc(self.url, "evm_snapshot")

    def revert(self, snap: str) -> None:
        assert rpc(self.url, "evm_revert", [snap]) is True

    def units(self, whole: int | float) -> int:
        return int(round(whole * 10**DECIMALS))


def deploy(url: str) -> Chain:
    w3 = Web3(Web3.HTTPProvider(url))
    owner, sender, other = w3.eth.accounts[:3]
    art = json.loads(ARTIFACT.read_text())
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    receipt = w3.eth.wait_for_transaction_receipt(
        factory.constructor("FarMesh Reward", "FMR", DECIMALS).transact({"from": owner}))
    token = w3.eth.contract(address=receipt.contractAddress, abi=art["abi"])
    for acct in (sender, other):
        token.functions.mint(acct, 10**30).transact({"from": owner})
    return Chain(w3, token, owner, sender, other, url)


@pytest.fixture(scope="session")
def anvil():
    node = start_anvil()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def chain(anvil) -> Chain:
    return deploy(anvil.url)


@dataclass
class RpcProxy:
    """A real loopback HTTP JSON-RPC proxy in front of ``upstream`` that can act like a hosted provider:
    refuse eth_getLogs ranges wider than ``max_range`` blocks or with more than ``max_results`` logs (with
    the providers' wording), answer HTTP 429 to the next ``throttle`` requests, or go away (``stop()``) and
    come back on the same port (``start()``)."""

    upstream: str
    max_range: int | None = None
    range_message: str = "query exceeds max block range {limit}"
    max_results: int | None = None
    throttle: int = 0
    port: int = field(default_factory=free_port)
    methods: dict = field(default_factory=dict)
    refused: int = 0
    spans: list = field(default_factory=list)  # block spans of the eth_getLogs requests answered
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RpcProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _send(self, code: int, body: bytes, headers: dict | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                req = json.loads(body)
                proxy.methods[req["method"]] = proxy.methods.get(req["method"], 0) + 1
                if proxy.throttle > 0:
                    proxy.throttle -= 1
                    return self._send(429, b'{"error":"Too Many Requests"}', {"Retry-After": "0"})
                span = 0
                if req["method"] == "eth_getLogs":
                    f = req["params"][0]
                    span = int(f["toBlock"], 16) - int(f["fromBlock"], 16) + 1
                    if proxy.max_range is not None and span > proxy.max_range:
                        proxy.refused += 1
                        msg = proxy.range_message.format(limit=proxy.max_range)
                        return self._send(200, json.dumps({"jsonrpc": "2.0", "id": req["id"], "error": {
                            "code": -32005, "message": msg}}).encode())
                up = urllib.request.Request(proxy.upstream, body, {"Content-Type": "application/json"})
                with urllib.request.urlopen(up, timeout=30) as r:
                    answer = r.read()
                if req["method"] == "eth_getLogs":
                    if proxy.max_results is not None and len(json.loads(answer).get("result") or []) > proxy.max_results:
                        proxy.refused += 1
                        msg = f"query returned more than {proxy.max_results} results"
                        answer = json.dumps({"jsonrpc": "2.0", "id": req["id"],
                                             "error": {"code": -32005, "message": msg}}).encode()
                    else:
                        proxy.spans.append(span)
                self._send(200, answer)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def proxy_factory(chain):
    proxies: list[RpcProxy] = []

    def make(**kw) -> RpcProxy:
        p = RpcProxy(chain.url, **kw).start()
        proxies.append(p)
        return p

    yield make
    for p in proxies:
        p.stop()


class ServedTokens:
    """A real, simple served-tokens source: (time, tokens) samples summed over [t0, t1)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []

    def add(self, t: float, tokens: int) -> None:
        self.samples.append((t, tokens))

    def __call__(self, t0: float, t1: float) -> int:
        return sum(n for t, n in self.samples if t0 <= t < t1)
