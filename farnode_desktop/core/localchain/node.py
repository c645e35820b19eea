"""One anvil node per data folder: loopback only, state kept in chain_dir, the reward token deployed once.

anvil keeps its state with ``--state FILE``: it loads the file at start and, verified with anvil 1.7.1, writes it
at SIGINT and SIGTERM before exit. While it runs, :meth:`LocalChain.save_state` writes the file when a block was
mined since its last writing (``anvil_dumpState``: the same JSON, gzipped); a SIGKILL loses what was mined since.
anvil's own ``--state-interval`` rewrites the whole file every interval whether anything changed or not: the
state holds every block and transaction ever mined, so after a month of payouts that was megabytes written every
few seconds. The stop here is SIGINT, then a kill of the whole process tree after a timeout.

Accounts: this chain is local-only (loopback, a throwaway demo chain), so the operator is one of anvil's dev
accounts from its fixed, public test mnemonic; its key protects nothing of value, and no secret needs the OS
keyring. The deployer (token owner) is dev account 0 (unlocked by anvil), the operator (payout sender) dev
account 1.
"""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
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
        try:
            self.proc, self.tree = process_tree.spawn(
                [str(self.anvil), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(CHAIN_ID),
                 "--state", str(self.state_path)],
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
                                       "pid": self.proc.pid, "started": _create_time(self.proc.pid)})
        self.info = ChainInfo(url, CHAIN_ID, token, OPERATOR, lost)
        self._saved_block = None
        self.save_state()  # the token's deployment is kept even if the app is killed next
        return self.info

    def save_state(self) -> bool:
        """Write the state file if a block was mined since this run last wrote it; True when written. Raises
        ChainError (anvil did not answer) or OSError (the disk): the file is then as it was."""
        if self.info is None or self.proc is None or self.proc.poll() is not None:
            return False
        client = ChainClient(self.info.rpc_url, timeout_s=30.0, max_attempts=1)
        try:
            head = client.block_number()
            if head == self._saved_block:
                return False
            raw = client.call("anvil_dumpState", [])
        finally:
            client.close()
        try:
            data = gzip.decompress(bytes.fromhex(str(raw).removeprefix("0x")))
            json.loads(data)  # what anvil loads at its next start: only a whole, valid state replaces the file
        except (ValueError, OSError, EOFError) as e:
            raise ChainError(f"anvil_dumpState returned no usable state ({e})") from None
        atomic_write_bytes(self.state_path, data, mode=0o644)
        self._saved_block = head
        return True

    def _end_leftover(self, meta: dict) -> None:
        """An anvil of this folder that outlived its app (killed: anvil has no pipe to the app that would tell
        it) still holds the port and writes the same state file: it gets SIGINT (it saves its state), then is
        killed. Only that very process: its pid, start time and state file must match."""
        pid, started = meta.get("pid"), meta.get("started")
        if not isinstance(pid, int) or not isinstance(started, (int, float)):
            return
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - started) > 1.0 or str(self.state_path) not in proc.cmdline():
                return
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
        """SIGINT (anvil writes its state), then kill the tree if it has not exited."""
        if self.proc is None:
            return
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


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None
