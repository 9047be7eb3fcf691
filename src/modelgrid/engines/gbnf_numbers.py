"""GBNF for numbers within bounds: integer ranges digit by digit, decimals by their digits.

A grammar constrains text, so ``minimum: 1, maximum: 9`` becomes the digits that spell 1..9,
and [-5, 120] becomes ``"-" [1-5] | [0-9] | [1-9] [0-9] | "1" ( [01] [0-9] | "20" )``: the
range is cut at each change of length, then each fixed-length range at the first digit where
its ends differ (all the digits in between free, each end recursing on its remaining digits).
Numbers are written canonically: no leading zeros, no ``+``, no ``-0``; bounded numbers have
no exponent and at most ``FRACTION_DIGITS`` decimals (more when a bound needs them), and a
fraction is compared digit by digit with the bound's (0.25 <= x: "0." then [3-9] and
anything, or "2" then [5-9]…). Where a side is unbounded, at most ``DEFAULT_DIGITS`` integer
digits are written (what llama.cpp's own converter allows for any integer).

Every function returns a GBNF expression (a sequence or a parenthesised alternation),
``None`` where no number fits.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

DEFAULT_DIGITS = 16
FRACTION_DIGITS = 15
CAP = 10**DEFAULT_DIGITS - 1
PLAIN_INTEGER = '"-"? ( "0" | [1-9] [0-9]{0,15} )'
PLAIN_NUMBER = PLAIN_INTEGER + ' ( "." [0-9]{1,15} )? ( [eE] [-+]? [0-9]{1,2} )?'


def _digits(n: int) -> str:
    return "" if n <= 0 else "[0-9]" if n == 1 else f"[0-9]{{{n}}}"


def _cls(lo: int, hi: int) -> str:
    return f'"{lo}"' if lo == hi else f"[{lo}-{hi}]"


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _alt(options: list[str]) -> str:
    return options[0] if len(options) == 1 else "( " + " | ".join(options) + " )"


def _between(x: str, y: str) -> list[str]:
    """Alternatives matching the digit strings of ``len(x)`` digits from ``x`` to ``y``
    (equal lengths, ``x <= y``; leading zeros allowed inside a number)."""
    if not x:
        return [""]
    if x == y:
        return [f'"{x}"']
    rest = len(x) - 1
    if x[0] == y[0]:
        return [_join(f'"{x[0]}"', _alt(_between(x[1:], y[1:])))]
    lo, hi = int(x[0]), int(y[0])
    out: list[str] = []
    if x[1:] != "0" * rest:
        out.append(_join(f'"{lo}"', _alt(_between(x[1:], "9" * rest))))
        lo += 1
    upper = None
    if y[1:] != "9" * rest:
        upper = _join(f'"{hi}"', _alt(_between("0" * rest, y[1:])))
        hi -= 1
    if lo <= hi:
        out.append(_join(_cls(lo, hi), _digits(rest)))
    if upper is not None:
        out.append(upper)
    return out


def _natural(a: int, b: int) -> list[str]:
    """Alternatives for the integers in [a, b], 0 <= a <= b, without leading zeros (lengths
    covered whole, 10..99 and 100..999, share one alternative)."""
    out: list[str] = []
    whole: list[int] = []  # lengths whose every number is in range (and longer than 1)
    for length in range(len(str(a)), len(str(b)) + 1):
        lo = max(a, 10 ** (length - 1) if length > 1 else 0)
        hi = min(b, 10**length - 1)
        if length > 1 and lo == 10 ** (length - 1) and hi == 10**length - 1:
            whole.append(length)
        elif lo <= hi:
            out.extend(_between(str(lo), str(hi)))
    if whole:
        low, high = whole[0] - 1, whole[-1] - 1
        count = f"{{{low}}}" if low == high else f"{{{low},{high}}}"
        out.insert(1 if out and len(str(a)) < whole[0] else 0, f"[1-9] [0-9]{count}")
    return out


def _ends(lo: int | None, hi: int | None) -> tuple[int, int]:
    """Finite ends for a range that may be open on a side: at most ``DEFAULT_DIGITS`` digits
    there (or as many as the other bound has, when it lies beyond)."""
    if lo is None:
        lo = -CAP if hi is None or hi >= -CAP else hi - CAP
    if hi is None:
        hi = CAP if lo <= CAP else lo + CAP
    return lo, hi


def integer_range(lo: int | None, hi: int | None) -> str | None:
    """The integers in [``lo``, ``hi``] (``None``: unbounded on that side)."""
    if lo is None and hi is None:
        return PLAIN_INTEGER
    lo, hi = _ends(lo, hi)
    if lo > hi:
        return None
    options: list[str] = []
    if lo < 0:
        options.extend(_join('"-"', o) for o in _natural(max(1, -hi), -lo))
    if hi >= 0:
        options.extend(_natural(max(0, lo), hi))
    return _alt(options)


# -- decimals --

_Lang = tuple[str | None, bool]  # (expression for non-empty digit strings, empty string in it)


def _any(k: int) -> _Lang:
    return (f"[0-9]{{1,{k}}}" if k > 1 else "[0-9]" if k == 1 else None), True


def _head(digit: int, tail: _Lang) -> str | None:
    """``digit`` followed by a string of ``tail`` (``None`` if that is empty)."""
    expr, empty = tail
    if expr is None:
        return f'"{digit}"' if empty else None
    return _join(f'"{digit}"', f"( {expr} )?" if empty else f"( {expr} )")


def _lang(options: list[str | None], empty: bool) -> _Lang:
    kept = [o for o in options if o]
    return (" | ".join(kept) if kept else None), empty


def _tail_any(k: int) -> str:
    return f"[0-9]{{0,{k - 1}}}" if k > 1 else ""


def _ge(d: str, k: int, strict: bool) -> _Lang:
    """Digit strings f (at most about ``k`` digits) with 0.f >= 0.d (> when ``strict``)."""
    if not d:
        if not strict:
            return _any(k)
        zeros = f'"0"{{0,{k - 1}}}' if k > 1 else ""
        return (_join(zeros, "[1-9]", _tail_any(k)) if k > 0 else None), False
    if k == 0:
        return None, False
    first = int(d[0])
    above = _join(_cls(first + 1, 9), _tail_any(k)) if first < 9 else None
    return _lang([above, _head(first, _ge(d[1:], k - 1, strict))], False)


def _le(d: str, k: int, strict: bool) -> _Lang:
    """Digit strings f with 0.f <= 0.d (< when ``strict``)."""
    if not d:
        if strict:
            return None, False
        return (f'"0"{{1,{k}}}' if k > 1 else '"0"' if k == 1 else None), True
    if k == 0:
        return None, True
    first = int(d[0])
    below = _join(_cls(0, first - 1), _tail_any(k)) if first > 0 else None
    return _lang([below, _head(first, _le(d[1:], k - 1, strict))], True)


def _in(a: str, a_open: bool, b: str, b_open: bool, k: int) -> _Lang:
    """Digit strings f with 0.a <= 0.f <= 0.b (each end open or closed), 0.a <= 0.b."""
    empty = not a and not a_open and not (not b and b_open)
    if k == 0:
        return None, empty
    a0, b0 = (int(a[0]) if a else 0), (int(b[0]) if b else 0)
    if a0 == b0:
        return _lang([_head(a0, _in(a[1:], a_open, b[1:], b_open, k - 1))], empty)
    options = [_head(a0, _ge(a[1:], k - 1, a_open))]
    if a0 + 1 <= b0 - 1:
        options.append(_join(_cls(a0 + 1, b0 - 1), _tail_any(k)))
    options.append(_head(b0, _le(b[1:], k - 1, b_open)))
    return _lang(options, empty)


def _fraction(lang: _Lang) -> str | None:
    """The fraction part (``"." digits``, optional when no fraction is allowed) for ``lang``;
    ``None`` if it holds no string."""
    expr, empty = lang
    if expr is None:
        return "" if empty else None
    return f'( "." ( {expr} ) )?' if empty else f'"." ( {expr} )'


def _split(x: Decimal) -> tuple[int, str]:
    """``x`` >= 0 as its integer part and its fraction's digits (no trailing zeros)."""
    whole = x.to_integral_value(rounding=ROUND_FLOOR)
    text = format(x - whole, "f")
    digits = text.partition(".")[2].rstrip("0")
    return int(whole), digits


def _nonneg(a: Decimal, a_open: bool, b: Decimal, b_open: bool) -> list[str]:
    """Alternatives for the numbers from ``a`` to ``b``, 0 <= a <= b."""
    ai, af = _split(a)
    bi, bf = _split(b)
    k = max(FRACTION_DIGITS, len(af) + 1, len(bf) + 1)
    out: list[str] = []

    def add(whole: str, frac: str | None) -> None:
        if frac is not None:
            out.append(_join(whole, frac))

    if ai == bi:
        add(f'"{ai}"', _fraction(_in(af, a_open, bf, b_open, k)))
        return out
    add(f'"{ai}"', _fraction(_ge(af, k, a_open)))
    if ai + 1 <= bi - 1:
        middle = _natural(ai + 1, bi - 1)
        add(_alt(middle), _fraction(_any(k)))
    add(f'"{bi}"', _fraction(_le(bf, k, b_open)))
    return out


def number_range(
    lo: Decimal | None, lo_open: bool, hi: Decimal | None, hi_open: bool
) -> str | None:
    """The numbers between ``lo`` and ``hi`` (``None``: unbounded; ``*_open``: that end
    excluded), written without exponent."""
    if lo is None and hi is None:
        return PLAIN_NUMBER
    cap = Decimal(CAP)
    if lo is None:
        lo, lo_open = (-cap if hi is None or hi >= -cap else hi - cap), False
    if hi is None:
        hi, hi_open = (cap if lo <= cap else lo + cap), False
    if lo > hi or (lo == hi and (lo_open or hi_open)):
        return None
    options: list[str] = []
    if lo < 0:  # x < 0 written as "-" y, y = -x > 0
        y_lo, y_lo_open = (-hi, hi_open) if hi < 0 else (Decimal(0), True)
        options.extend(_join('"-"', o) for o in _nonneg(y_lo, y_lo_open, -lo, lo_open))
    if hi > 0 or (hi == 0 and not hi_open):
        a, a_open = (lo, lo_open) if lo >= 0 else (Decimal(0), False)
        options.extend(_nonneg(a, a_open, hi, hi_open))
    return _alt(options) if options else None


__all__ = [
    "DEFAULT_DIGITS",
    "FRACTION_DIGITS",
    "PLAIN_INTEGER",
    "PLAIN_NUMBER",
    "integer_range",
    "number_range",
]
