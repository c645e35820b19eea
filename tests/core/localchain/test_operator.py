"""The payout service's start: its config matches the interface; a missing module is a clear error."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from farnode_desktop.core.localchain.node import ChainInfo, LocalChainError
from farnode_desktop.core.localchain.operator import MODULE, service_config, start_payout_service

INFO = ChainInfo("http://127.0.0.1:1", 31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3",
                 "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", False)


def test_config_has_the_interface_keys(tmp_path):
    cfg = service_config(INFO, tmp_path / "served.sqlite3", tmp_path / "op", 0.05)
    assert set(cfg) == {"rpc_url", "chain_id", "token_address", "ledger_path", "state_dir",
                        "rate_per_1k_tokens", "batch_interval_s", "confirmations", "quick_payments",
                        "later_interval_s"}


def test_missing_service_is_a_clear_error(tmp_path):
    """As in the bundle, which leaves the service (and web3) out."""
    assert importlib.util.find_spec(MODULE) is not None  # this installation has it
    with pytest.raises(LocalChainError, match="demo payout service"):
        start_payout_service(service_config(INFO, tmp_path / "l", tmp_path / "s", 0.05), tmp_path / "op.log",
                             module="farnode_desktop.no_such_service")
    assert not Path(tmp_path / "op.log").exists()
