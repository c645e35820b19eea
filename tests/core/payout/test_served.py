"""The served ledger: a replayed request is not counted twice, totals per server, a second reader sees the
writer's rows, a damaged or newer file is reported and left as it is."""

from __future__ import annotations

import sqlite3

import pytest

from farnode_desktop.core.payout.served import LedgerError, ServedLedger


def test_rows_totals_and_replays(tmp_path):
    path = tmp_path / "served.sqlite3"
    led = ServedLedger(path)
    assert led.record("r1", 10.0, {"PeerA": 12, "PeerB": 12}) == 2
    assert led.record("r1", 11.0, {"PeerA": 12}) == 0  # the same request again: ignored
    assert led.record("r2", 12.0, {"PeerA": 5, "PeerB": 0}) == 1  # nothing served: no row
    reader = ServedLedger(path)  # the payout service's own connection
    rows = reader.rows_after(0)
    assert [(r.request_id, r.peer_id, r.tokens) for r in rows] == [("r1", "PeerA", 12), ("r1", "PeerB", 12),
                                                                   ("r2", "PeerA", 5)]
    assert reader.totals() == {"PeerA": 17, "PeerB": 12}
    assert reader.totals(after_id=rows[1].id) == {"PeerA": 5}
    assert reader.totals(upto_id=rows[0].id) == {"PeerA": 12}
    assert reader.last_id() == rows[-1].id
    led.note_peer("PeerA", "0xabc", "stmt", "0xsig", 13.0)
    led.note_peer("PeerA", "0xdef", "stmt2", "0xsig2", 14.0)
    p = reader.peer("PeerA")
    assert (p.public_name, p.statement, p.signature, p.seen_at) == ("0xdef", "stmt2", "0xsig2", 14.0)
    assert reader.peer("PeerC") is None
    led.close()
    reader.close()


def test_damaged_file_is_reported_and_kept(tmp_path):
    path = tmp_path / "served.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    before = path.read_bytes()
    with pytest.raises(LedgerError, match="cannot be read.*left as it is"):
        ServedLedger(path)
    assert path.read_bytes() == before


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "served.sqlite3"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=9")
    db.close()
    with pytest.raises(LedgerError, match="newer FarNode Desktop"):
        ServedLedger(path)


def test_settled_old_rows_are_deleted_and_ids_never_come_back(tmp_path):
    led = ServedLedger(tmp_path / "served.sqlite3")
    led.record("old1", 100.0, {"PeerA": 3})
    led.record("old2", 200.0, {"PeerA": 4})
    led.record("new1", 5000.0, {"PeerA": 5})
    led.record("unsettled-old", 300.0, {"PeerB": 6})  # row 4: not settled by any batch yet
    assert led.prune(settled_upto_id=3, before=1000.0) == 2  # old and settled only
    assert [r.request_id for r in led.rows_after(0)] == ["new1", "unsettled-old"]
    assert led.prune(settled_upto_id=3, before=10_000.0) == 1
    assert led.last_id() == 4
    assert led.prune(settled_upto_id=4, before=10_000.0) == 1
    assert led.rows_after(0) == [] and led.last_id() == 4  # all deleted: the last id is still the last id
    led.record("next", 6000.0, {"PeerA": 1})
    assert led.rows_after(0)[0].id == 5 and led.last_id() == 5
    led.close()
