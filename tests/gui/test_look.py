"""Amounts read as money: never a bare 0.0000, always with their unit."""

from __future__ import annotations

from decimal import Decimal

import pytest

from farnode_desktop.gui.look import fmt_amount, fmt_money


@pytest.mark.parametrize(("value", "text"), [
    (0, "0"), (Decimal("0.0000"), "0"), (Decimal("12.5"), "12.5"), (Decimal("3.75"), "3.75"),
    (Decimal("1234.5678"), "1,234.57"), (Decimal("0.000125"), "0.000125"), (Decimal("0.1"), "0.1"),
    (Decimal("1E-12"), "< 0.00000001"), (2.0, "2"), (Decimal("10.00004"), "10"),
])
def test_fmt_amount(value, text):
    assert fmt_amount(value) == text


def test_fmt_money_always_has_its_unit():
    assert fmt_money(Decimal("0"), "FMR") == "0 FMR"
    assert fmt_money(Decimal("4.25"), "reward tokens") == "4.25 reward tokens"
