"""Where the app keeps its files.

``FARNODE_HOME`` puts everything under one folder (tests, portable installs); otherwise the platform's
standard per-user folders are used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from farnode_desktop import APP_ID


@dataclass(frozen=True)
class AppPaths:
    config_dir: Path
    data_dir: Path
    log_dir: Path
    cache_dir: Path

    @classmethod
    def default(cls) -> AppPaths:
        home = os.environ.get("FARNODE_HOME")
        if home:
            root = Path(home).expanduser().resolve()
            return cls(root / "config", root / "data", root / "logs", root / "cache")
        import platformdirs

        return cls(
            Path(platformdirs.user_config_dir(APP_ID, appauthor=False)),
            Path(platformdirs.user_data_dir(APP_ID, appauthor=False)),
            Path(platformdirs.user_log_dir(APP_ID, appauthor=False)),
            Path(platformdirs.user_cache_dir(APP_ID, appauthor=False)),
        )

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "settings.json"

    @property
    def engine_root(self) -> Path:
        """Engine environments. ``FARNODE_ENGINE_ROOT`` shares one between data folders (the test suite)."""
        shared = os.environ.get("FARNODE_ENGINE_ROOT")
        return Path(shared).expanduser().resolve() if shared else self.data_dir / "engine"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def run_dir(self) -> Path:
        """Pid files and identities of running nodes."""
        return self.data_dir / "run"

    @property
    def metrics_db(self) -> Path:
        return self.data_dir / "metrics.sqlite3"

    @property
    def served_ledger(self) -> Path:
        """What the demo traffic got from each server (core.payout.served), read by the demo payout service."""
        return self.data_dir / "served.sqlite3"

    @property
    def chain_dir(self) -> Path:
        """The local demo chain: its node's state, the deployed token's address, the payout service's progress."""
        return self.data_dir / "chain"

    @property
    def engine_cache_dir(self) -> Path:
        """Cache of the engine (downloaded blocks, throughput measurements)."""
        return self.cache_dir / "farmesh"

    def ensure(self) -> AppPaths:
        for p in (self.config_dir, self.data_dir, self.log_dir, self.cache_dir):
            p.mkdir(parents=True, exist_ok=True)
        return self
