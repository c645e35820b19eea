"""Issue 19 end to end on the core the faces build: the embedded default (local swarm, demo model, demo
traffic) with a payout wallet in the real keyring, the local chain and the demo payout service started by the
app itself. The node's server announces its signed binding; the service pays it for the tokens the demo traffic
got from it, at the published rate; the earnings read that chain as they read a real one. After the traffic
stops and the last batch is paid: paid + pending equals the client's count for this node times the rate within
2%, and the estimate shown before that last payout was within 2% of it. Quit leaves no chain or service; the app
started again on the same folder reads the same history from the chain's kept state."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path

import pytest

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.app_core import AppCore
from farnode_desktop.core.payout.served import ServedLedger
from farnode_desktop.core.policies.runner import PolicyInputs
from tests.support.processes import pid_gone
from tests.support.wait import wait_until

pytestmark = [pytest.mark.engine, pytest.mark.keyring]

KEY = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
REPO = Path(__file__).resolve().parents[3]
TARBALL = REPO / "tools/foundry-rs-anvil-linux-amd64-1.7.1.tgz"


def test_the_embedded_default_pays_this_node_for_its_share(engine_paths, free_port, keystore, monkeypatch):
    src = os.environ.get("FARNODE_ANVIL_SOURCE") or str(TARBALL)
    if not Path(src).is_file():
        pytest.skip(f"the anvil tarball {src} is missing: run scripts/system-deps.sh")
    monkeypatch.setenv("FARNODE_ANVIL_SOURCE", src)
    engine_paths.settings_file.write_text(json.dumps({"network": {"port": free_port,
                                                                  "demo_traffic_per_minute": 120}}))
    core = AppCore(engine_paths, face="headless", policy_inputs=PolicyInputs(), keystore=keystore,
                   earnings_interval_s=2.0, payout_interval_s=20.0)
    service_pids: list[int] = []
    try:
        core.start()
        core.wallet.import_key(KEY)
        wallet = core.settings.wallet.address
        assert wallet
        assert core.start_node().state in C.RUNNING_STATES
        assert core.node.supervisor.wait_for(C.ONLINE, 180).state == C.ONLINE
        assert wait_until(lambda: core.status_report()["wallet_binding"]["announced"], 60), \
            core.status_report()["wallet_binding"]
        peer_id = core.node.supervisor.peer.peer_id
        chain = core.status_report()["local_chain"]
        assert chain["running"] and chain["payout_service"] == "running", chain
        service_pids = core.local_payouts.pids()

        def paid() -> Decimal:
            snap = core.earnings.latest
            return snap.paid_total if snap is not None else Decimal(0)

        assert wait_until(lambda: paid() > 0, 240), (core.earnings.latest,
                                                      core.local_payouts.service_log.read_text()[-3000:])
        snap = core.earnings.latest
        assert snap.symbol == "FMR" and snap.rate_per_1k_tokens == 0.5 and snap.setup_missing == ""
        report = core.status_report()
        assert report["earnings"]["configured"] and Decimal(str(report["earnings"]["paid_total"])) > 0
        memory = report["app"]["memory"]  # the app's own, as its allocator counts it (glibc here)
        assert memory["resident_mb"] > memory["heap_in_use_mb"] > 1 and memory["held_free_mb"] >= 0

        core.stop_node()  # the traffic ends; its last rows are in the ledger
        ledger = ServedLedger(engine_paths.served_ledger)
        try:
            rows = [r for r in ledger.rows_after(0) if r.peer_id == peer_id]
        finally:
            ledger.close()
        served = sum(r.tokens for r in rows)
        assert served > 0
        # what the window shows before the service's next batch: the estimate of what is not yet paid
        core.earnings.sync_now()
        assert wait_until(lambda: core.earnings.latest.time > snap.time, 10)
        shown = core.earnings.latest
        estimate, before = shown.estimated_unpaid, shown.paid_total + shown.pending_total
        rate = Decimal("0.5")
        want = Decimal(served) * rate / 1000

        def total() -> Decimal:
            return core.earnings.latest.paid_total + core.earnings.latest.pending_total

        assert wait_until(lambda: abs(total() - want) <= want * Decimal("0.02"), 90), (total(), want)
        assert wait_until(lambda: core.earnings.latest.pending_total == 0, 10)  # counted once mined
        last_batch = total() - before
        # The estimate counts this node's own tokens since the last payout's block time (whole seconds), spread
        # over the seconds between the server's counter reports; the service pays the client's rows after its
        # last batch's cut (each at its request's end). They may differ by the traffic of a few seconds (the
        # block time's rounding, the request in flight at the cut, a counter report's spread, more under
        # load). With the app's own 180 s batches that is within 2% (0.8% measured headless); these 20 s
        # batches allow five seconds of traffic on top of the 2%.
        per_s = Decimal(served) / Decimal(max(rows[-1].at - rows[0].at, 1.0))
        slack = 5 * per_s * rate / 1000
        print(f"served {served} tokens to the client; paid {total()} FMR for {want} expected; estimate before "
              f"the last payout {estimate} for {last_batch} (slack {slack:.4f})")
        assert estimate is not None and abs(estimate - last_batch) <= last_batch * Decimal("0.02") + slack, (
            estimate, last_batch, slack)
        paid_total_after, payouts_after = core.earnings.latest.paid_total, core.earnings.latest.payout_count
    finally:
        core.close()
    assert core.local_payouts.pids() == []
    assert all(pid_gone(p) for p in service_pids)
    # Every log a child wrote straight into is one the app keeps within its size (the app's own rotates).
    trimmed = {p.resolve() for p in core.log_trimmer._logs()}
    written = {p.resolve() for d in (engine_paths.log_dir, engine_paths.chain_dir) for p in d.glob("*.log")}
    assert written - {(engine_paths.log_dir / "node-main.log").resolve()} <= trimmed, written - trimmed
    assert len(written & trimmed) == 3, written

    # The app again on the same data folder: the chain starts with the app (it exists now) from its kept
    # state, and the earnings history reads the same: nothing lost, nothing counted twice.
    paid_before, count_before = paid_total_after, payouts_after
    again = AppCore(engine_paths, face="headless", policy_inputs=PolicyInputs(), keystore=keystore,
                    earnings_interval_s=2.0, payout_interval_s=20.0)
    try:
        again.start()
        assert wait_until(lambda: again.local_payouts.info is not None, 60), again.local_payouts.problem
        assert not again.local_payouts.info.state_lost
        again.earnings.sync_now()
        assert wait_until(lambda: again.earnings.latest is not None and again.earnings.latest.time > 0
                          and again.earnings.latest.payout_count == count_before, 30), again.earnings.latest
        assert again.earnings.latest.paid_total == paid_before and again.earnings.latest.pending_total == 0
        assert again.earnings.latest.balance == paid_before
    finally:
        again.close()
