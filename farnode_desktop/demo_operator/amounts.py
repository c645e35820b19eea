"""How many smallest units of the reward token a server earns for its tokens, and the rounding rule.

The rule: a server's exact earnings for a batch are ``tokens * rate_per_1k_tokens / 1000`` reward-token units,
that is ``tokens * rate * 10**decimals / 1000`` smallest units, with the rate taken as the decimal number it is
written as (0.05 is exactly 5/100, not the nearest binary fraction). To that is added what the server earned
before and was not yet paid because it was below one smallest unit (its carry). The sum is paid rounded down to
a whole smallest unit and the rest, always less than one smallest unit, is the server's new carry. So after any
number of batches a server has been paid exactly its total earnings rounded down, never more, less than one
smallest unit short, whatever the batch sizes: no dust is lost and none is paid twice. (Tokens served while a
server had no valid wallet binding earn nothing and are not carried; its carry stays for its next paid batch.)
Amounts are exact rational numbers throughout (:class:`fractions.Fraction`): no float rounding.
"""

from __future__ import annotations

from fractions import Fraction
from math import floor


def units_per_token(rate_per_1k_tokens: float, decimals: int) -> Fraction:
    """Smallest token units earned per token served."""
    return Fraction(str(rate_per_1k_tokens)) * 10**decimals / 1000


def settle(tokens: int, carry: Fraction, per_token: Fraction) -> tuple[int, Fraction]:
    """(whole smallest units to pay now, the new carry) for ``tokens`` on top of ``carry``."""
    exact = carry + tokens * per_token
    paid = floor(exact)
    return paid, exact - paid


def to_text(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


def from_text(text: str) -> Fraction:
    return Fraction(text) if text else Fraction(0)


def whole_units(amount: int, decimals: int) -> str:
    """``amount`` smallest units as reward-token units, for the log (``1234567`` with 6 decimals: ``1.234567``)."""
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**decimals)
    return f"{sign}{whole}" + (f".{frac:0{decimals}d}".rstrip("0") if frac else "")
