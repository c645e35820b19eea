"""The embedded default's payouts: the local chain and the demo payout service, while the app serves the local swarm.

:class:`LocalPayouts` installs anvil when it is missing (its package checked, ``install.py``), starts the chain
(``node.py``: loopback only, state in the data folder, the token deployed once) and the payout service
(``operator.py``: a separate process, paid from the served ledger the demo traffic fills). The earnings reader
then reads this chain exactly as it reads a real one, through :func:`effective.effective_settings`.

Everything here blocks (a download, a process start): callers run it off the GUI thread. ``ensure`` is
idempotent and cheap when all is running; a payout service that exited is started again by the next call.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from farnode_desktop.core import process_tree
from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.localchain.install import install_anvil
from farnode_desktop.core.localchain.node import LOG_NAME as CHAIN_LOG_NAME
from farnode_desktop.core.localchain.node import ChainInfo, LocalChain
from farnode_desktop.core.localchain.operator import service_config, start_payout_service
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.payout.chain import ChainError
from farnode_desktop.core.resources import reward_token_artifact

log = logging.getLogger("farnode.localchain")

#: What the demo payout service pays per 1,000 tokens served, in the local token (its published rate).
DEMO_RATE_PER_1K_TOKENS = 0.5
DEMO_BATCH_INTERVAL_S = 180.0
#: A chain keeps every transaction for good (~4 kB of the local chain's state each): the first payments come every
#: 3 minutes, so that a new user sees the whole flow at once, then every hour (~24 a day, ~3 MB a month).
DEMO_QUICK_PAYMENTS = 20
DEMO_LATER_INTERVAL_S = 3600.0
SERVICE_STOP_S = 10.0
#: How often the chain's state file is brought up to date (written only when a block was mined since).
STATE_SAVE_S = 30.0


class LocalPayouts:
    def __init__(self, paths: AppPaths, *, rate_per_1k_tokens: float = DEMO_RATE_PER_1K_TOKENS,
                 batch_interval_s: float = DEMO_BATCH_INTERVAL_S, quick_payments: int = DEMO_QUICK_PAYMENTS,
                 later_interval_s: float | None = DEMO_LATER_INTERVAL_S, tools_root: Path | None = None) -> None:
        self.paths = paths
        self.rate_per_1k_tokens = rate_per_1k_tokens
        self.batch_interval_s = batch_interval_s
        self.quick_payments = quick_payments
        self.later_interval_s = later_interval_s
        # anvil is installed beside the engine environments (shared between data folders when they are)
        self.tools_root = Path(tools_root) if tools_root is not None else paths.engine_root
        self._lock = threading.Lock()
        self._chain: LocalChain | None = None
        self._service: subprocess.Popen | None = None
        self._service_tree: process_tree.ProcessTree | None = None
        self._info: ChainInfo | None = None
        self.problem = ""  # the last failure, in words (empty when all is well)
        self.state_save_s = STATE_SAVE_S
        self._keeper: threading.Thread | None = None
        self._keeper_stop = threading.Event()
        self._save_failed = False

    @property
    def info(self) -> ChainInfo | None:
        """The running local chain (None while it is not running)."""
        return self._info

    @property
    def service_log(self) -> Path:
        return self.paths.log_dir / "payout-service.log"

    @property
    def child_logs(self) -> list[Path]:
        """The logs this part's processes write straight into (the chain's and the payout service's)."""
        return [self.paths.chain_dir / CHAIN_LOG_NAME, self.service_log]

    def ensure(self, progress: Callable[[str], None] | None = None) -> ChainInfo:
        """Install what is missing and start what is not running; the chain's info. Raises a
        :class:`FarNodeError` with what to do (and keeps it in :attr:`problem`)."""
        with self._lock:
            try:
                info = self._ensure_chain(progress)
                self._ensure_service(info)
                self._ensure_keeper()
            except FarNodeError as exc:
                self.problem = exc.message
                raise
            self.problem = ""
            return info

    def _ensure_chain(self, progress: Callable[[str], None] | None) -> ChainInfo:
        chain = self._chain
        if chain is not None and chain.proc is not None and chain.proc.poll() is None and self._info is not None:
            return self._info
        if chain is not None:  # it exited: its state file has what it last wrote
            log.warning("the local chain exited (code %s); starting it again", chain.proc and chain.proc.returncode)
            chain.stop()
        if progress is not None:
            progress("Starting the local chain")
        anvil = install_anvil(self.tools_root).path
        self._chain = LocalChain(self.paths.chain_dir, anvil, reward_token_artifact())
        self._info = self._chain.start()
        if self._info.state_lost:
            log.warning("the local chain's state was lost: the reward token was deployed again at %s; payouts "
                        "made before are no longer on the chain", self._info.token_address)
        log.info("local chain at %s, reward token %s", self._info.rpc_url, self._info.token_address)
        return self._info

    def _ensure_service(self, info: ChainInfo) -> None:
        proc = self._service
        if proc is not None and proc.poll() is None:
            return
        if proc is not None:
            log.warning("the demo payout service exited (code %s); starting it again; see %s",
                        proc.returncode, self.service_log)
            self._close_service()
        config = service_config(info, self.paths.served_ledger, self.paths.chain_dir / "payouts",
                                self.rate_per_1k_tokens, batch_interval_s=self.batch_interval_s,
                                quick_payments=self.quick_payments, later_interval_s=self.later_interval_s)
        self._service, self._service_tree = start_payout_service(config, self.service_log)
        later = (f", every {self.later_interval_s:.0f} s after {self.quick_payments} payments"
                 if self.later_interval_s is not None else "")
        log.info("demo payout service started (pid %d), %.4g per 1,000 tokens every %.0f s%s", self._service.pid,
                 self.rate_per_1k_tokens, self.batch_interval_s, later)

    def _ensure_keeper(self) -> None:
        # A keeper told to stop may still be alive (waiting for the lock a stop held, or on a slow anvil): it ends
        # by itself, and this chain gets a keeper of its own.
        if self._keeper is not None and self._keeper.is_alive() and not self._keeper_stop.is_set():
            return
        self._keeper_stop = threading.Event()
        self._keeper = threading.Thread(target=self._keep_state, args=(self._keeper_stop,), daemon=True,
                                        name="farnode-chain-state")
        self._keeper.start()

    def _keep_state(self, stop: threading.Event) -> None:
        """Every :data:`STATE_SAVE_S`, the chain's state file is written if a block was mined since (a payout)."""
        while not stop.wait(self.state_save_s):
            with self._lock:
                chain = self._chain
            if stop.is_set() or chain is None:
                return
            try:  # outside the lock: a stop does not wait behind a slow anvil (the chain guards its own file)
                if chain.save_state():
                    log.debug("local chain state written")
                self._save_failed = False
            except (ChainError, OSError) as e:
                if stop.is_set():
                    return
                if not self._save_failed:  # said once, not every half minute
                    log.warning("the local chain's state could not be written (%s); this is tried again "
                                "every %.0f s and at the stop", e, self.state_save_s)
                self._save_failed = True

    def _close_service(self) -> None:
        proc, tree = self._service, self._service_tree
        self._service = self._service_tree = None
        if proc is None:
            return
        try:
            if proc.stdin is not None and not proc.stdin.closed:
                proc.stdin.close()  # its end of input: the service stops within seconds
        except OSError:
            pass
        try:
            proc.wait(SERVICE_STOP_S)
        except subprocess.TimeoutExpired:
            log.warning("the demo payout service did not stop within %.0f s; killed", SERVICE_STOP_S)
        if tree is not None and tree.alive():
            tree.kill()
        proc.wait(5)

    def stop(self) -> None:
        """Stop the payout service, then the chain (its state is written before anvil's SIGINT)."""
        self._keeper_stop.set()
        with self._lock:
            self._close_service()
            if self._chain is not None:
                self._chain.stop()
            self._chain = None
            self._info = None

    def pids(self) -> list[int]:
        out = []
        if self._service is not None and self._service.poll() is None:
            out.append(self._service.pid)
        chain = self._chain
        if chain is not None and chain.proc is not None and chain.proc.poll() is None:
            out.append(chain.proc.pid)
        return out

    def status(self) -> dict:
        """For ``status --json``: where the chain is and whether the payout service runs."""
        info = self._info
        service = self._service
        return {"running": info is not None, "rpc_url": info.rpc_url if info else None,
                "chain_id": info.chain_id if info else None, "token_address": info.token_address if info else None,
                "payout_sender": info.operator if info else None, "rate_per_1k_tokens": self.rate_per_1k_tokens,
                "batch_interval_s": self.batch_interval_s, "quick_payments": self.quick_payments,
                "later_interval_s": self.later_interval_s,
                "payout_service": ("running" if service is not None and service.poll() is None else
                                   f"exited ({service.returncode})" if service is not None else "not started"),
                "problem": self.problem or None}
