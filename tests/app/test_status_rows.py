"""``farnode-desktop status`` in words: earnings as money with their unit, what is missing said plainly."""

from __future__ import annotations

from farnode_desktop.app.status_cli import status_rows


def _rows(**report) -> dict[str, str]:
    return dict(status_rows({"state": "online", "words": "Online", **report}))


def test_earnings_read_as_money_and_say_who_is_paid():
    rows = _rows(earnings={"configured": True, "paid_total": 0.885, "payout_count": 3, "pending_total": 0.0,
                           "estimated_unpaid": 0.1805, "symbol": "FMR"},
                 wallet_binding={"announced": True, "text": "the server announces its signed wallet binding"})
    assert rows["Earnings"] == "0.8850 FMR paid in 3 payouts, about 0.1805 earned since (estimate)"
    assert rows["Paid to"] == "the server announces its signed wallet binding"
    rows = _rows(earnings={"configured": True, "paid_total": 1.0, "payout_count": 1, "pending_total": 0.25,
                           "estimated_unpaid": None, "symbol": ""})
    assert rows["Earnings"] == "1.0000 reward tokens paid in 1 payouts, 0.2500 pending"


def test_without_a_wallet_the_status_says_to_create_one():
    rows = _rows(earnings={"configured": False, "text": "no payout wallet: create one to be paid (the Wallet page, "
                                                        "or farnode-desktop wallet create)"},
                 wallet_binding={"announced": False, "text": "no payout wallet: create a wallet to be paid"})
    assert rows["Earnings"].startswith("no payout wallet: create one to be paid") and "Paid to" not in rows


def test_the_apps_own_memory_is_a_row_when_the_app_tells_it():
    text = "resident 150.2 MB, anonymous 80.1 MB, heap in use 28.0 MB, held free 1.2 MB"
    assert _rows(app={"pid": 7, "face": "headless", "memory": {"text": text}})["App memory"] == text
    assert "App memory" not in _rows(app={"pid": 7, "face": "headless"})
