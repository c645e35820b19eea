"""The app side of the demo traffic's per-server token counts: each finished request goes into the served
ledger (read back from a real SQLite file), through the same event reader the client's pipe feeds."""

from __future__ import annotations

import io
import logging

from farnode_desktop.core.events import EventBus
from farnode_desktop.core.node.demo_swarm import TrafficGenerator
from farnode_desktop.core.node.engine_venv import EngineEnv
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.payout.served import ServedLedger
from farnode_desktop.engine import protocol as P


def _feed(traffic: TrafficGenerator, *events: P.Event) -> None:
    traffic._read(io.BytesIO(b"".join(P.encode(e) for e in events)))


def _traffic(tmp_path, ledger) -> TrafficGenerator:
    paths = AppPaths(tmp_path / "home", tmp_path / "home" / "data", tmp_path / "logs", tmp_path / "cache")
    return TrafficGenerator(EngineEnv(paths, "cpu"), EventBus(), tmp_path / "logs", served_ledger=ledger)


def test_each_finished_request_is_recorded_per_server(tmp_path, caplog):
    path = tmp_path / "served.sqlite3"
    traffic = _traffic(tmp_path, path)
    traffic._run_id = "run1"
    _feed(traffic,
          P.Request(n=1, kind="generate", ok=True, tokens_sent=34, served={"peerA": 17, "peerB": 17}),
          P.Request(n=2, kind="forward", ok=True, tokens_sent=6, served={"peerA": 6, "peerB": 6}),
          P.Request(n=3, kind="generate", ok=True, tokens_sent=17),  # an older client: no counts, no rows
          P.Request(n=4, kind="generate", ok=True, tokens_sent=5, served={"peerA": "x", "peerB": 5}))
    traffic._run_id = "run2"  # a new client numbers its requests from 1 again: not a replay
    with caplog.at_level(logging.WARNING):
        _feed(traffic, P.Request(n=1, kind="generate", ok=True, tokens_sent=3, served={"peerC": 3}))
    ledger = ServedLedger(path)
    try:
        assert ledger.totals() == {"peerA": 23, "peerB": 28, "peerC": 3}
        assert sorted({r.request_id for r in ledger.rows_after(0)}) == ["run1:1", "run1:2", "run1:4", "run2:1"]
    finally:
        ledger.close()
    assert traffic.stats.requests == 5 and traffic.stats.tokens_sent == 65
    assert any("malformed token counts" in r.getMessage() for r in caplog.records)


def test_without_a_ledger_path_nothing_is_written(tmp_path):
    traffic = _traffic(tmp_path, None)
    _feed(traffic, P.Request(n=1, kind="generate", ok=True, tokens_sent=4, served={"peerA": 4}))
    assert traffic.stats.requests == 1
    assert not list(tmp_path.rglob("*.sqlite3"))


def test_what_servers_announce_is_noted(tmp_path):
    path = tmp_path / "served.sqlite3"
    traffic = _traffic(tmp_path, path)
    _feed(traffic,
          P.ServerAnnounce(peer_id="peerA", public_name="0xAbc", statement="st", signature="0xsig"),
          P.ServerAnnounce(peer_id="peerB", public_name=""),  # no wallet: no binding
          P.ServerAnnounce(peer_id="peerA", public_name="0xAbc", statement="st2", signature="0xsig2"))
    ledger = ServedLedger(path)
    try:
        a, b = ledger.peer("peerA"), ledger.peer("peerB")
        assert (a.public_name, a.statement, a.signature) == ("0xAbc", "st2", "0xsig2")  # the latest
        assert (b.public_name, b.statement, b.signature) == ("", "", "")
        assert ledger.peer("peerC") is None
    finally:
        ledger.close()
