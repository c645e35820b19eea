"""The demo payout service under test: a real process (``python -m farnode_desktop.demo_operator``) paying on
a real anvil chain from a real served ledger, with bindings signed by real eth-account keys."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from eth_account import Account

from farnode_desktop.core.payout.keys import KeysInProcess
from farnode_desktop.core.payout.served import ServedLedger
from farnode_desktop.core.payout.wallet import binding_statement
from tests.support import REPO
from tests.support.chain import Chain
from tests.support.ports import free_port
from tests.support.processes import stop_process
from tests.support.wait import wait_until

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
KEYS = KeysInProcess()


def new_peer_id(rng: random.Random = random.SystemRandom()) -> str:
    return "12D3KooW" + "".join(rng.choice(_B58) for _ in range(44))


@dataclass
class Server:
    """A server of the demo swarm: its peer id and the wallet (real key) it may bind to."""

    peer_id: str
    address: str
    key: str

    @classmethod
    def new(cls) -> Server:
        pair = KEYS.create(12)
        return cls(new_peer_id(), pair.address, pair.key)

    def binding(self, chain_id: int, *, peer_id: str | None = None, signer_key: str | None = None,
                address: str | None = None) -> tuple[str, str]:
        """(statement, signature) binding ``peer_id`` (default: its own) to ``address`` (default: its wallet),
        signed by ``signer_key`` (default: its own key)."""
        statement = binding_statement(peer_id or self.peer_id, address or self.address, chain_id, int(time.time()))
        return statement, KEYS.sign(signer_key or self.key, statement)

    def announce(self, ledger: ServedLedger, chain_id: int, *, public_name: str | None = None, **kw) -> None:
        statement, signature = self.binding(chain_id, **kw)
        ledger.note_peer(self.peer_id, self.address if public_name is None else public_name, statement,
                         signature, time.time())


def serve(ledger: ServedLedger, served: dict[str, int]) -> None:
    """One request of the demo traffic: tokens per server (peer id)."""
    ledger.record(f"req-{random.getrandbits(64):016x}", time.time(), served)


@dataclass
class Operator:
    address: str
    key: str


def new_operator(chain: Chain, tokens: int) -> Operator:
    """A fresh operator account with 1 ETH for gas and ``tokens`` smallest units of the reward token."""
    acct = Account.create()
    chain.w3.eth.wait_for_transaction_receipt(chain.w3.eth.send_transaction(
        {"from": chain.owner, "to": acct.address, "value": 10**18}))
    if tokens:
        chain.w3.eth.wait_for_transaction_receipt(
            chain.token.functions.mint(acct.address, tokens).transact({"from": chain.owner}))
    return Operator(acct.address, "0x" + bytes(acct.key).hex())


def transfers_from(chain: Chain, sender: str) -> list[tuple[str, int, str]]:
    """Every Transfer of the token from ``sender``: (to, value, tx hash)."""
    logs = chain.w3.eth.get_logs({"address": chain.token.address, "fromBlock": 0, "toBlock": "latest",
                                  "topics": [TRANSFER_TOPIC, "0x" + "0" * 24 + sender[2:].lower()]})
    return [(chain.w3.to_checksum_address("0x" + log["topics"][2].hex()[-40:]), int(log["data"].hex(), 16),
             "0x" + log["transactionHash"].hex()) for log in logs]


def paid_to(chain: Chain, sender: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for to, value, _ in transfers_from(chain, sender):
        out[to] = out.get(to, 0) + value
    return out


@dataclass
class Service:
    """One run of the payout service process."""

    proc: subprocess.Popen
    log_path: Path
    state_dir: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 60, count: int = 1) -> str:
        wait_until(lambda: self.log().count(text) >= count or self.proc.poll() is not None, timeout)
        out = self.log()
        assert out.count(text) >= count, f"{text!r} not logged {count}x within {timeout} s:\n{out}"
        return out

    def status(self, timeout: float = 30) -> dict:
        """operator.json; waits for its first writing (the service logs its start line just before it)."""
        path = self.state_dir / "operator.json"
        if not path.exists():
            wait_until(lambda: path.exists() or self.proc.poll() is not None, timeout)
            assert path.exists(), f"operator.json not written within {timeout} s:\n{self.log()}"
        return json.loads(path.read_text())

    def wait_batches(self, n: int, timeout: float = 60) -> dict:
        def done():
            try:
                return self.status()["batches"] >= n
            except (FileNotFoundError, json.JSONDecodeError):
                return False

        wait_until(lambda: done() or self.proc.poll() is not None, timeout)
        assert done(), f"{n} batch(es) not done within {timeout} s:\n{self.log()}"
        return self.status()

    def close_stdin(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()

    def stop(self, timeout: float = 10) -> int:
        self.close_stdin()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)
            raise AssertionError(f"the service did not stop within {timeout} s of stdin's end:\n{self.log()}") from None


@dataclass
class Harness:
    chain: Chain
    tmp: Path
    rate: float = 0.05
    interval: float = 1.0
    confirmations: int = 1
    services: list[Service] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ledger_path = self.tmp / "served.sqlite3"
        self.state_dir = self.tmp / "operator-state"
        self.ledger = ServedLedger(self.ledger_path)
        self.chain_id = self.chain.w3.eth.chain_id

    def config(self, rpc_url: str | None = None, **over) -> dict:
        cfg = {"rpc_url": rpc_url or self.chain.url, "chain_id": self.chain_id,
               "token_address": self.chain.token.address, "ledger_path": str(self.ledger_path),
               "state_dir": str(self.state_dir), "rate_per_1k_tokens": self.rate,
               "batch_interval_s": self.interval, "confirmations": self.confirmations}
        cfg.update(over)
        return cfg

    def start(self, operator: Operator | None, rpc_url: str | None = None, *, stdin_text: str | None = None,
              **over) -> Service:
        log_path = self.tmp / f"service-{len(self.services)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "farnode_desktop.demo_operator"], cwd=REPO,
                                    stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        text = stdin_text if stdin_text is not None else (
            json.dumps(self.config(rpc_url, **over)) + "\n" + operator.key + "\n")
        proc.stdin.write(text.encode())
        proc.stdin.flush()
        service = Service(proc, log_path, self.state_dir)
        self.services.append(service)
        return service

    def close(self) -> None:
        for s in self.services:
            s.close_stdin()
            stop_process(s.proc)
        self.ledger.close()


class HoldingProxy:
    """A loopback JSON-RPC proxy in front of ``upstream`` that can hold the next ``eth_sendRawTransaction``:
    ``hold="after"`` hands it to the node and keeps the answer back, ``hold="before"`` keeps the request back
    (and drops it when released): a client killed meanwhile has sent a payment and not heard back, or has not
    reached the node at all."""

    def __init__(self, upstream: str, hold: str | None = None) -> None:
        self.upstream = upstream
        self.hold = hold
        self.port = free_port()
        self.held = threading.Event()
        self.release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                method = json.loads(body).get("method")
                holding = method == "eth_sendRawTransaction" and proxy.hold and not proxy.held.is_set()
                if holding and proxy.hold == "before":
                    proxy.held.set()
                    proxy.release.wait(60)
                    return  # dropped: the node never saw it
                up = urllib.request.Request(proxy.upstream, body, {"Content-Type": "application/json"})
                with urllib.request.urlopen(up, timeout=30) as r:
                    answer = r.read()
                if holding:
                    proxy.held.set()
                    proxy.release.wait(60)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the client is gone

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
