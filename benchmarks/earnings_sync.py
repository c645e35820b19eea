"""Benchmark: sync 10,000 payouts spread over 200,000 blocks from a real anvil node.

Builds the chain (RewardToken deployed, payouts sent in ``batchTransfer`` transactions of --batch payments,
with transfers to other addresses and from a non-payout sender mixed in, and empty blocks skipped with
``anvil_mine``), then syncs it twice with fresh databases, both through :class:`EarningsSync`:

- adaptive: the default :class:`ChainClient` (log chunks start at 2,000 blocks and grow to 100,000);
- baseline: the same client with fixed 1,000-block chunks (a naive scan).

Prints wall time, RPC calls and payouts per second of each, and the ratios. Both results are checked
against what was sent (count and exact sum).

anvil (1.7.1) runs with ``--hardfork shanghai --prune-history`` (no number), which builds the 200,000-block
chain in 20-35 s on a 2-core machine; it is still an honest chain: every block is mined, eth_getLogs is
served from anvil's block and receipt store, and the sync scans all 200,000 blocks. Why these flags:

- With state history on (the default, or ``--prune-history N``), anvil clones its whole in-memory database
  before mining each block, to keep the parent state (``Backend::do_mine_block`` -> ``Db::current_state``).
  That database holds a hash map of every block hash mined so far (for the BLOCKHASH opcode), so each block
  costs O(height) and the chain O(height^2); the cost steps up ~5x when the map outgrows 57,344 entries and
  doubles to 131,072 buckets (8 MiB): 1 ms per block at 57k, 5 ms at 58k, 10 ms at 61k. ``--prune-history``
  without a number turns state history off, so no clone: 200,000 empty blocks mine in ~15 s at a flat rate.
  (This node then cannot answer calls at past blocks' state; the sync reads balanceOf at "latest" only.)
- From Prague on (anvil's default hardfork), each block first stores its parent's hash in the EIP-2935
  history contract (a ring buffer of 8,191 slots), and anvil recomputes the full state root, every storage
  trie included, after each block; so each empty block re-hashes up to 8,191 slots (measured without state
  history: 2,000 blocks took 9 s at height 0 and 35 s at 4,000). Shanghai (or Cancun) has no such contract
  and the sync needs no later feature.

    PYTHONPATH=. /work/main/.venv/bin/python benchmarks/earnings_sync.py [--payouts N] [--blocks N]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from eth_account import Account  # noqa: E402
from web3 import Web3  # noqa: E402

from farnode_desktop.core.payout.chain import ChainClient  # noqa: E402
from farnode_desktop.core.payout.earnings import EarningsSync  # noqa: E402
from farnode_desktop.core.settings import ChainSettings  # noqa: E402

ANVIL = REPO / "tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
ARTIFACT = REPO / "resources/contracts/RewardToken.json"
DECIMALS = 18
CONFIRMATIONS = 12


def rpc(url: str, method: str, params: list | None = None) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    with urllib.request.urlopen(urllib.request.Request(url, body, {"Content-Type": "application/json"}),
                                timeout=600) as r:
        out = json.loads(r.read())
    if "error" in out:
        raise RuntimeError(out["error"])
    return out["result"]


def start_anvil() -> tuple[subprocess.Popen, str]:
    if not ANVIL.exists():
        sys.exit(f"anvil is missing ({ANVIL}): run scripts/system-deps.sh")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # --prune-history with no number: no state snapshot per block (see the module docstring)
    proc = subprocess.Popen([str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--silent",
                             "--gas-limit", "300000000", "--hardfork", "shanghai", "--prune-history"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            rpc(url, "eth_blockNumber")
            return proc, url
        except Exception:
            time.sleep(0.05)
    proc.kill()
    sys.exit("anvil did not start")


def build_chain(url: str, payouts: int, blocks: int, batch: int) -> tuple[dict, list[int]]:
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 600}))
    owner, sender, other = w3.eth.accounts[:3]
    art = json.loads(ARTIFACT.read_text())
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    rcpt = w3.eth.wait_for_transaction_receipt(factory.constructor("FarMesh Reward", "FMR", DECIMALS)
                                               .transact({"from": owner}))
    token = w3.eth.contract(address=rcpt.contractAddress, abi=art["abi"])
    start_block = rcpt.blockNumber
    for acct in (sender, other):
        token.functions.mint(acct, 10**40).transact({"from": owner})
    wallet = Account.create().address
    strangers = [Account.create().address for _ in range(5)]
    n_batches = -(-payouts // batch)
    gap = max(1, blocks // n_batches)
    amounts: list[int] = []
    sent = 0
    t_build = time.perf_counter()
    for b in range(n_batches):
        k = min(batch, payouts - sent)
        pay = [10**15 * (1 + (sent + i) % 997) for i in range(k)]
        noise = [10**15] * len(strangers)
        token.functions.batchTransfer([wallet] * k + strangers, pay + noise).transact({"from": sender, "gas": 30_000_000})
        amounts += pay
        sent += k
        if b % 10 == 0:  # a transfer from someone who is not a payout sender: must not count
            token.functions.transfer(wallet, 10**18).transact({"from": other})
        used = 2 if b % 10 == 0 else 1
        if gap > used:
            rpc(url, "anvil_mine", [hex(gap - used)])
        if (b + 1) % max(1, n_batches // 10) == 0:
            print(f"  chain: {sent}/{payouts} payouts, block {w3.eth.block_number}, "
                  f"{time.perf_counter() - t_build:.1f} s", flush=True)
    rpc(url, "anvil_mine", [hex(CONFIRMATIONS)])
    conf = {"token": token.address, "sender": sender, "wallet": wallet, "start_block": start_block,
            "head": w3.eth.block_number}
    return conf, amounts


def run_sync(url: str, conf: dict, client: ChainClient, db: Path) -> tuple[float, object]:
    settings = ChainSettings(rpc_url=url, chain_id=31337, token_address=conf["token"],
                             payout_senders=[conf["sender"]], confirmations=CONFIRMATIONS,
                             start_block=conf["start_block"])
    sync = EarningsSync(settings, conf["wallet"], db, client=client)
    t0 = time.perf_counter()
    snap = sync.sync_once()
    return time.perf_counter() - t0, snap


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--payouts", type=int, default=10_000)
    ap.add_argument("--blocks", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=50, help="payouts per batchTransfer transaction")
    args = ap.parse_args()
    proc, url = start_anvil()
    try:
        t0 = time.perf_counter()
        conf, amounts = build_chain(url, args.payouts, args.blocks, args.batch)
        setup = time.perf_counter() - t0
        expected = sum(Decimal(a) for a in amounts) / Decimal(10**DECIMALS)
        span = conf["head"] - conf["start_block"] + 1
        print(f"chain built in {setup:.1f} s: {len(amounts)} payouts over {span} blocks (head {conf['head']})")
        results = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, client in (("adaptive", ChainClient(url)),
                                 ("baseline fixed 1,000-block chunks",
                                  ChainClient(url, log_chunk=1000, max_log_chunk=1000))):
                wall, snap = run_sync(url, conf, client, Path(tmp) / f"{name.split()[0]}.sqlite3")
                ok = snap.payout_count == len(amounts) and snap.paid_total == expected and not snap.error
                results[name] = (wall, client.calls)
                print(f"{name:36s} wall {wall:7.2f} s  RPC calls {client.calls:6d}  "
                      f"payouts/s {len(amounts) / wall:9.0f}  payouts {snap.payout_count}  "
                      f"sum exact: {ok}  final chunk {client.log_chunk}")
                if not ok:
                    sys.exit(f"WRONG RESULT: {snap}")
        (aw, ac), (bw, bc) = results.values()
        print(f"ratio baseline/adaptive: wall time x{bw / aw:.2f}, RPC calls x{bc / ac:.2f}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
