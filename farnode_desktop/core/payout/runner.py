"""Keeps the earnings in sync in the background for whatever wallet and chain the settings name.

One thread syncs every ``interval_s`` (60 s) and at once when asked (:meth:`EarningsRunner.sync_now`, or a
change of wallet or chain settings). Each sync publishes an ``earnings.update`` snapshot (from
:class:`~farnode_desktop.core.payout.earnings.EarningsSync`); chain and configuration problems are reported in the
snapshot, never raised.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from farnode_desktop.core.events import EventBus
from farnode_desktop.core.settings import Settings

log = logging.getLogger(__name__)


class EarningsRunner:
    def __init__(self, data_dir: Path, bus: EventBus, settings: Callable[[], Settings],
                 tokens_served_between: Callable[[float, float], float], *, interval_s: float = 60.0) -> None:
        self.db_path = Path(data_dir) / "earnings.sqlite3"
        self.bus = bus
        self._settings = settings
        self._tokens = tokens_served_between
        self.interval_s = interval_s
        self._sync: Any = None  # EarningsSync, made on this runner's thread when the settings allow a sync
        self._key: tuple | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.latest: Any = None  # the last EarningsSnapshot

    def configured(self) -> bool:
        """Wallet and chain are set: there is something to sync (otherwise nothing is imported)."""
        s = self._settings()
        c = s.chain
        return bool(s.wallet.address and c.rpc_url and c.chain_id and c.token_address and c.payout_senders)

    def _current(self) -> Any:
        """The syncer for the current settings (rebuilt when the wallet or chain settings changed)."""
        from farnode_desktop.core.payout.earnings import EarningsSync

        s = self._settings()
        key = (s.wallet.address, dataclasses.astuple(s.chain))
        with self._lock:
            if self._sync is None or key != self._key:
                if self._sync is not None:
                    self._sync.close()
                self._sync = EarningsSync(dataclasses.replace(s.chain), s.wallet.address, self.db_path,
                                          bus=self.bus, tokens_served_between=lambda a, b: int(self._tokens(a, b)))
                self._key = key
            return self._sync

    def sync_once(self) -> Any:
        """Sync now on this thread (RPC calls: seconds). Publishes and returns the snapshot."""
        snap = self._current().sync_once()
        self.latest = snap
        return snap

    def snapshot(self) -> Any:
        """The stored state without RPC calls (milliseconds)."""
        return self._current().snapshot()

    def payouts(self) -> list:
        return self._current().payouts()

    def export_csv(self, path: Path) -> int:
        return self._current().export_csv(Path(path))

    # ------------------------------------------------------------------ thread
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="farnode-earnings", daemon=True)
        self._thread.start()

    def sync_now(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        with self._lock:
            if self._sync is not None:
                self._sync.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.configured():  # the Earnings page asks itself (and says what is missing) otherwise
                    self.sync_once()
            except Exception:  # a bug must not end earnings for the session; the next round retries
                log.exception("earnings sync failed")
            self._wake.wait(self.interval_s)
            self._wake.clear()
