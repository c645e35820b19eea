"""The rounding rule: each batch pays whole smallest units, the rest is carried, the total stays exact."""

from __future__ import annotations

import random
from fractions import Fraction
from math import floor

from farnode_desktop.demo_operator.amounts import from_text, settle, to_text, units_per_token, whole_units


def test_the_rate_is_read_as_the_decimal_it_is_written_as():
    assert units_per_token(0.05, 6) == 50  # 0.05 per 1000 tokens with 6 decimals: 50 units per token
    assert units_per_token(0.05, 18) == 5 * 10**13
    assert units_per_token(0.0333, 6) == Fraction(333, 10)
    assert units_per_token(1e-05, 6) == Fraction(1, 100)


def test_many_small_batches_pay_the_total_rounded_down_with_no_dust_lost():
    rng = random.Random(7)
    for rate, decimals in ((0.0333, 6), (0.05, 6), (1e-05, 6), (0.07, 18), (0.3, 0)):
        per_token = units_per_token(rate, decimals)
        carry, paid, total = Fraction(0), 0, 0
        for _ in range(2000):
            tokens = rng.randint(0, 40)
            units, carry = settle(tokens, carry, per_token)
            assert units >= 0 and 0 <= carry < 1
            carry = from_text(to_text(carry))  # as stored between batches
            paid += units
            total += tokens
        exact = total * Fraction(str(rate)) * 10**decimals / 1000
        assert paid == floor(exact)  # exact but for the last part of a unit: never more, never a unit short
        assert paid + carry == exact


def test_tiny_servers_are_paid_once_their_carry_reaches_a_unit():
    per_token = units_per_token(1e-05, 6)  # a hundredth of a unit per token
    carry, paid = Fraction(0), []
    for _ in range(250):
        units, carry = settle(1, carry, per_token)
        paid.append(units)
    assert sum(paid) == 2 and paid.index(1) == 99


def test_amounts_in_the_log_are_in_whole_token_units():
    assert whole_units(1_234_567, 6) == "1.234567"
    assert whole_units(50, 6) == "0.00005"
    assert whole_units(3 * 10**18, 18) == "3"
    assert whole_units(0, 6) == "0"
