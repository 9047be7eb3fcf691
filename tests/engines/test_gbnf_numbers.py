"""Integer and decimal ranges as GBNF: every number inside matches, none outside (the rules
turned into Python regexes by ``gbnf_regex``; llama.cpp's own parser reads them in
``test_grammar``)."""

from __future__ import annotations

import re
from decimal import Decimal

from hypothesis import example, given, settings
from hypothesis import strategies as st

from modelgrid.engines.gbnf_numbers import CAP, integer_range, number_range
from tests.engines.gbnf_regex import compile_expr

bounds = st.integers(-(10**20), 10**20) | st.integers(-300, 300)


def _matcher(expr: str | None) -> re.Pattern[str]:
    assert expr is not None
    return compile_expr(expr)


@settings(max_examples=150, deadline=None)
@given(lo=bounds, hi=bounds, probes=st.lists(bounds, max_size=40))
@example(lo=1, hi=9, probes=[0, 1, 9, 10, 1000000000000000])  # the reported bug
@example(lo=-5, hi=120, probes=[-6, -5, -1, 0, 99, 100, 119, 120, 121])
def test_integer_range_matches_exactly_its_integers(lo: int, hi: int, probes: list[int]) -> None:
    lo, hi = min(lo, hi), max(lo, hi)
    rule = _matcher(integer_range(lo, hi))
    near = [lo - 1, lo, lo + 1, hi - 1, hi, hi + 1, (lo + hi) // 2, 0, -1, 1]
    for x in near + probes:
        assert bool(rule.fullmatch(str(x))) == (lo <= x <= hi), (lo, hi, x)
    for text in ("-0", f"0{abs(lo)}", "+1", "1.0", ""):
        assert not rule.fullmatch(text)  # canonical integers only


@settings(max_examples=60, deadline=None)
@given(lo=st.integers(-(10**15), 10**15), probes=st.lists(bounds, max_size=30))
def test_one_sided_integer_ranges_hold_their_bound(lo: int, probes: list[int]) -> None:
    above, below = _matcher(integer_range(lo, None)), _matcher(integer_range(None, lo))
    for x in [lo - 1, lo, lo + 1, CAP, -CAP, *probes]:
        if abs(x) <= CAP:
            assert bool(above.fullmatch(str(x))) == (x >= lo), (lo, x)
            assert bool(below.fullmatch(str(x))) == (x <= lo), (lo, x)


decimals = st.decimals(
    min_value=-1000, max_value=1000, places=3, allow_nan=False, allow_infinity=False
)


def _text(x: Decimal) -> str:
    """``x`` as JSON writes a number without exponent (no trailing zeros, no ``-0``)."""
    if x == 0:
        return "0"
    text = format(x.normalize(), "f")
    return text


def _inside(x: Decimal, lo: Decimal, lo_open: bool, hi: Decimal, hi_open: bool) -> bool:
    return (x > lo if lo_open else x >= lo) and (x < hi if hi_open else x <= hi)


@settings(max_examples=150, deadline=None)
@given(
    lo=decimals,
    hi=decimals,
    lo_open=st.booleans(),
    hi_open=st.booleans(),
    probes=st.lists(decimals, max_size=30),
)
@example(lo=Decimal("0.25"), hi=Decimal("0.75"), lo_open=False, hi_open=True, probes=[])
@example(lo=Decimal(0), hi=Decimal(1), lo_open=True, hi_open=False, probes=[Decimal("1E-15")])
def test_number_range_matches_exactly_its_numbers(
    lo: Decimal, hi: Decimal, lo_open: bool, hi_open: bool, probes: list[Decimal]
) -> None:
    lo, hi = min(lo, hi), max(lo, hi)
    expr = number_range(lo, lo_open, hi, hi_open)
    if lo == hi and (lo_open or hi_open):
        assert expr is None
        return
    rule = _matcher(expr)
    step = Decimal("0.001")
    near = [lo - step, lo, lo + step, hi - step, hi, hi + step, Decimal(0), (lo + hi) / 2]
    for x in near + probes:
        x = x.quantize(Decimal("0.0000001"))
        assert bool(rule.fullmatch(_text(x))) == _inside(x, lo, lo_open, hi, hi_open), (
            lo,
            lo_open,
            hi,
            hi_open,
            _text(x),
        )
    if not lo_open and lo == lo.to_integral_value() and lo != 0:
        assert rule.fullmatch(f"{int(lo)}.000")  # trailing zeros spell the same number


def test_unbounded_numbers_keep_the_plain_rule() -> None:
    plain = _matcher(number_range(None, False, None, False))
    for text in ("0", "-12.5", "3e10", "1.25E-2"):
        assert plain.fullmatch(text)
    above = _matcher(number_range(Decimal("0.5"), True, None, False))
    assert above.fullmatch("0.51") and above.fullmatch("7") and not above.fullmatch("0.5")
