"""One anvil node per data folder: loopback only, state kept in chain_dir, the reward token deployed once.

The app alone writes the chain's state file: anvil loads it at start (``--load-state FILE``) and
:meth:`LocalChain.save_state` writes it (``anvil_dumpState``: the same JSON, gzipped, written atomically) when a
block was mined since its last writing: every 30 s while the chain runs (:mod:`.payouts`) and at the stop, before
anvil's SIGINT. anvil's own ``--state FILE`` writes the file at its exit, but not reliably: after an
``anvil_dumpState`` call its exit writing left out the last block in 2 of 6 stops here (anvil 1.7.1), and the
app's writing and anvil's raced for the same file. Its ``--state-interval`` rewrote the whole file every interval
whether anything changed or not (the state holds every block ever mined: megabytes after a month of payouts).
A SIGKILLed app loses what was mined since the last writing (at most 30 s; the payout service reopens payments
the chain no longer has). The stop is SIGINT, then a kill of the whole process tree after a timeout.

Accounts: this chain is local-only (loopback, a throwaway demo chain), so the operator is one of anvil's dev
accounts from its fixed, public test mnemonic; its key protects nothing of value, and no secret needs the OS
keyring. The deployer (token owner) is dev account 0 (unlocked by anvil), the operator (payout sender) dev
account 1.
"""

from __future__ import annotations

import gzip
import json
import logging
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from farnode_desktop.core import process_tree
from farnode_desktop.core.atomic import atomic_write_bytes, atomic_write_json
from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.eth_address import checksum
from farnode_desktop.core.payout.chain import ChainClient, ChainError
from farnode_desktop.core.ports import free_loopback_port, loopback_port_free

log = logging.getLogger(__name__)

CHAIN_ID = 31337
DECIMALS = 18
# anvil's well-known dev accounts (mnemonic "test test ... junk"): public, for a local-only chain.
DEPLOYER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
OPERATOR = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # noqa: S105 - not a secret: see the module docstring
OPERATOR_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # noqa: S105
_MINT = "40c10f19"  # mint(address,uint256)


LOG_NAME = "anvil.log"
STATE_NAME = "state.json"


class LocalChainError(FarNodeError):
    title = "Local chain problem"


@dataclass(frozen=True)
class ChainInfo:
    rpc_url: str
    chain_id: int
    token_address: str
    operator: str
    state_lost: bool  # the remembered token was gone: the chain's state was lost and the token redeployed


def _abi_string(s: str) -> bytes:
    raw = s.encode()
    return len(raw).to_bytes(32, "big") + raw + b"\0" * (-len(raw) % 32)


def _constructor_args(name: str, symbol: str, decimals: int) -> bytes:
    a, b = _abi_string(name), _abi_string(symbol)
    return (96).to_bytes(32, "big") + (96 + len(a)).to_bytes(32, "big") + decimals.to_bytes(32, "big") + a + b


class LocalChain:
    def __init__(self, chain_dir: Path, anvil: Path, artifact: Path):
        self.dir = Path(chain_dir)
        self.anvil = Path(anvil)
        self.artifact = Path(artifact)
        self.proc: subprocess.Popen | None = None
        self.tree: process_tree.ProcessTree | None = None
        self.info: ChainInfo | None = None
        self._saved_block: int | None = None  # the newest block in the state file this run wrote
        # save_state() runs on the payouts' keeper thread and in stop(): a state read earlier must never be written
        # over a newer one, so the file is written under this lock, and only with a newer block than it has.
        self._write_lock = threading.Lock()
        self._stopping = False

    @property
    def state_path(self) -> Path:
        return self.dir / STATE_NAME

    @property
    def _meta(self) -> Path:
        return self.dir / "chain.json"

    @property
    def log_path(self) -> Path:
        """What anvil writes (a line per JSON-RPC call): the app's log trimmer keeps it within its size."""
        return self.dir / LOG_NAME

    def _read_meta(self) -> dict:
        try:
            return json.loads(self._meta.read_text())
        except (OSError, ValueError):
            return {}

    def start(self, timeout: float = 30.0) -> ChainInfo:
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self._read_meta()
        self._end_leftover(meta)
        port = meta.get("port")
        if not isinstance(port, int) or not loopback_port_free(port):
            port = free_loopback_port()  # the remembered port is taken (or none yet): a free one
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        load = ["--load-state", str(self.state_path)] if self.state_path.is_file() else []
        try:
            self.proc, self.tree = process_tree.spawn(
                [str(self.anvil), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(CHAIN_ID), *load],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        except OSError as e:
            raise LocalChainError(f"anvil could not be started: {e.strerror}.") from e
        finally:
            log.close()
        url = f"http://127.0.0.1:{port}"
        client = ChainClient(url, timeout_s=2.0, max_attempts=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise LocalChainError(f"anvil exited at start (code {self.proc.returncode}); see "
                                          f"{self.dir / 'anvil.log'}.")
                try:
                    if client.chain_id() == CHAIN_ID:
                        break
                except ChainError:
                    pass
                if time.monotonic() > deadline:
                    raise LocalChainError(f"anvil did not answer within {timeout:.0f} s.")
                time.sleep(0.2)
            token, lost = self._token(client, meta.get("token_address"))
        except BaseException:
            client.close()
            self.stop()
            raise
        client.close()
        atomic_write_json(self._meta, {"port": port, "token_address": token, "operator": OPERATOR,
                                       "pid": self.proc.pid, "started": process_tree.created_at(self.proc.pid),
                                       "mark": process_tree.start_mark(self.proc.pid)})
        self.info = ChainInfo(url, CHAIN_ID, token, OPERATOR, lost)
        self._saved_block = None
        self._stopping = False
        self.save_state()  # the token's deployment is kept even if the app is killed next
        return self.info

    def save_state(self) -> bool:
        """Write the state file if a block was mined since this run last wrote it; True when written. Raises
        ChainError (anvil did not answer) or OSError (the disk): the file is then as it was. Safe to call from
        another thread than stop()'s: an older state never replaces a newer one, and nothing is written once the
        chain has stopped."""
        if self._stopping or self.info is None or self.proc is None or self.proc.poll() is not None:
            return False
        head, data = _read_state(self.info.rpc_url, self._saved_block)
        if data is None:
            return False
        with self._write_lock:
            if self._stopping or (self._saved_block is not None and head <= self._saved_block):
                return False
            atomic_write_bytes(self.state_path, data, mode=0o644)
            self._saved_block = head
        return True

    def _end_leftover(self, meta: dict) -> None:
        """An anvil of this folder that outlived its app (killed: anvil has no pipe to the app that would tell
        it) still holds the port and has what was mined since the app last wrote the state file: its state is
        written from it, then it gets SIGINT, then is killed. Only that very process: its pid, start time and
        program must match (the start by its mark; by the wall clock in the file of an older version)."""
        pid, started, port, mark = meta.get("pid"), meta.get("started"), meta.get("port"), meta.get("mark")
        if not isinstance(pid, int) or not isinstance(started, (int, float)):
            return
        try:
            proc = psutil.Process(pid)
            cmd = proc.cmdline()
            if isinstance(mark, str):
                same = process_tree.started_as(pid, mark)
            else:
                same = abs(proc.create_time() - started) <= 1.0
            if not same or not cmd or cmd[0] != str(self.anvil):
                return
            if isinstance(port, int):
                try:
                    _head, data = _read_state(f"http://127.0.0.1:{port}", None)
                    if data is not None:
                        atomic_write_bytes(self.state_path, data, mode=0o644)
                except (ChainError, OSError) as e:
                    log.warning("the state of the local chain left running could not be read (%s); the state "
                                "file has what was written before", e)
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except psutil.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        except psutil.Error:
            return

    def _token(self, client: ChainClient, remembered: str | None) -> tuple[str, bool]:
        if remembered and client.call("eth_getCode", [remembered, "latest"]) not in ("0x", "0x0", None):
            return remembered, False
        art = json.loads(self.artifact.read_text())
        data = art["bytecode"] + _constructor_args("FarMesh Reward", "FMR", DECIMALS).hex()
        receipt = self._send(client, {"from": DEPLOYER, "data": data})
        token = checksum(receipt["contractAddress"])
        mint = "0x" + _MINT + bytes.fromhex(OPERATOR[2:].lower()).rjust(32, b"\0").hex() + (
            10**30).to_bytes(32, "big").hex()
        self._send(client, {"from": DEPLOYER, "to": token, "data": mint})
        return token, bool(remembered)

    @staticmethod
    def _send(client: ChainClient, tx: dict) -> dict:
        h = client.call("eth_sendTransaction", [tx])
        for _ in range(100):
            receipt = client.call("eth_getTransactionReceipt", [h])
            if receipt:
                if receipt.get("status") != "0x1":
                    raise LocalChainError("Deploying the reward token on the local chain failed.")
                return receipt
            time.sleep(0.1)
        raise LocalChainError("The local chain did not mine the reward token's deployment.")

    def stop(self, timeout: float = 10.0) -> None:
        """The state written (if a block was mined since its last writing), then SIGINT, then a kill of the tree
        if it has not exited."""
        if self.proc is None:
            self._stopping = True
            return
        try:
            self.save_state()
        except (ChainError, OSError) as e:
            log.warning("the local chain's state could not be written at its stop (%s); the file has what was "
                        "written before", e)
        with self._write_lock:  # no writing from another thread after this point
            self._stopping = True
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGINT)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if self.tree is not None and self.tree.alive():
            self.tree.kill()
        self.proc.wait(5)
        self.proc = None


def _read_state(rpc_url: str, known_block: int | None) -> tuple[int, bytes | None]:
    """(newest block, the state as anvil loads it), or (block, None) when no block was mined since
    ``known_block``. Raises ChainError when anvil does not answer or its state is not whole JSON."""
    client = ChainClient(rpc_url, timeout_s=30.0, max_attempts=1)
    try:
        head = client.block_number()
        if head == known_block:
            return head, None
        raw = client.call("anvil_dumpState", [])
    finally:
        client.close()
    try:
        data = gzip.decompress(bytes.fromhex(str(raw).removeprefix("0x")))
        json.loads(data)  # what anvil loads at its next start: only a whole, valid state replaces the file
    except (ValueError, OSError, EOFError) as e:
        raise ChainError(f"anvil_dumpState returned no usable state ({e})") from None
    return head, data
