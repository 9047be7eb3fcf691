"""JSON Schema ``pattern``: the regular-expression subset a grammar can enforce, parsed.

JSON Schema patterns are ECMA-262 regular expressions that match anywhere in the string
(https://json-schema.org/draft/2020-12/json-schema-core#section-6.4: no implicit anchors). A
grammar can generate exactly a *regular* language, so the constructs that are regular are
parsed into a small tree (``Chars``, ``Seq``, ``Alt``, ``Repeat``) that a grammar renderer
turns into rules; the others are refused with ``PatternError``:

- parsed: literals, ``.``, classes (``[a-z]``, ``[^"]``, with ``\\d \\w \\s`` and their
  negations inside or out), groups (``(…)``, ``(?:…)``, ``(?<name>…)``), alternation, the
  quantifiers ``* + ? {n} {n,} {n,m}`` (lazy forms too: a whole-string match does not depend
  on laziness), the escapes ``\\t \\n \\r \\f \\v \\0 \\xHH \\uHHHH`` and escaped punctuation;
  ``^`` at the start and ``$`` at the end of the pattern or of a top-level alternative.
- refused: lookarounds, backreferences, word boundaries (``\\b \\B``), anchors anywhere else,
  Unicode property escapes (``\\p{…}``), control escapes (``\\cX``), unknown letter escapes,
  and counts above ``MAX_REPEAT``.

An end without its anchor matches anything there: ``[0-9]{3}`` is ``.*[0-9]{3}.*`` with a
``.`` that takes any character. ``parse_pattern`` returns the tree for the whole string.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelgrid.core.errors import PatternError

MAX_CODE_POINT = 0x10FFFF
MAX_REPEAT = 1000  # the largest count in a quantifier: grammars expand counted repetition
MAX_EXPANSION = 20_000  # the largest a pattern may grow when its counts are unrolled

Ranges = tuple[tuple[int, int], ...]  # sorted, disjoint, inclusive code-point ranges


def _normalise(ranges: list[tuple[int, int]]) -> Ranges:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def complement(ranges: Ranges) -> Ranges:
    """The code points ``ranges`` leaves out."""
    out: list[tuple[int, int]] = []
    start = 0
    for lo, hi in ranges:
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= MAX_CODE_POINT:
        out.append((start, MAX_CODE_POINT))
    return tuple(out)


def intersect(a: Ranges, b: Ranges) -> Ranges:
    """The code points in both."""
    out: list[tuple[int, int]] = []
    for lo, hi in a:
        for lo2, hi2 in b:
            if max(lo, lo2) <= min(hi, hi2):
                out.append((max(lo, lo2), min(hi, hi2)))
    return _normalise(out)


@dataclass(frozen=True, slots=True)
class Chars:
    """One character from ``ranges``."""

    ranges: Ranges


@dataclass(frozen=True, slots=True)
class Seq:
    """Each item in turn (an empty ``Seq`` matches the empty string)."""

    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Alt:
    """One of the options."""

    options: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Repeat:
    """``node`` from ``min`` to ``max`` times (``None``: no upper bound)."""

    node: Node
    min: int
    max: int | None


Node = Chars | Seq | Alt | Repeat

_DIGIT: Ranges = ((0x30, 0x39),)
_WORD: Ranges = _normalise([(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)])
_SPACE: Ranges = _normalise(  # ECMA-262 WhiteSpace and LineTerminator
    [
        (0x09, 0x0D),
        (0x20, 0x20),
        (0xA0, 0xA0),
        (0x1680, 0x1680),
        (0x2000, 0x200A),
        (0x2028, 0x2029),
        (0x202F, 0x202F),
        (0x205F, 0x205F),
        (0x3000, 0x3000),
        (0xFEFF, 0xFEFF),
    ]
)
_CLASS_ESCAPES: dict[str, Ranges] = {
    "d": _DIGIT,
    "D": complement(_DIGIT),
    "w": _WORD,
    "W": complement(_WORD),
    "s": _SPACE,
    "S": complement(_SPACE),
}
_CHAR_ESCAPES = {"t": 0x09, "n": 0x0A, "r": 0x0D, "f": 0x0C, "v": 0x0B, "0": 0x00}
_LINE_TERMINATORS: Ranges = ((0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029))
ANY: Ranges = ((0, MAX_CODE_POINT),)
DOT: Ranges = complement(_LINE_TERMINATORS)


def _literal(c: str) -> Chars:
    return Chars(((ord(c), ord(c)),))


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0

    def fail(self, what: str) -> PatternError:
        return PatternError(f"{what} (at index {self.i} of /{self.p}/)")

    def peek(self) -> str | None:
        return self.p[self.i] if self.i < len(self.p) else None

    def take(self) -> str:
        if self.i >= len(self.p):
            raise self.fail("the pattern ends too early")
        c = self.p[self.i]
        self.i += 1
        return c

    # pattern := branch ("|" branch)*, each top-level branch with its own anchors
    def top(self) -> Node:
        branches = [self.branch(top=True)]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.branch(top=True))
        if self.i < len(self.p):
            raise self.fail("unbalanced ')'")
        return branches[0] if len(branches) == 1 else Alt(tuple(branches))

    def branch(self, top: bool) -> Node:
        anchored_start = False
        if top and self.peek() == "^":
            self.i += 1
            anchored_start = True
        items: list[Node] = []
        anchored_end = False
        while (c := self.peek()) is not None and c not in "|)":
            if c == "$" and top:
                self.i += 1
                if self.peek() not in (None, "|"):
                    raise self.fail("'$' is supported only at the end of the pattern")
                anchored_end = True
                break
            items.append(self.quantified())
        if top:
            if not anchored_start:
                items.insert(0, Repeat(Chars(ANY), 0, None))
            if not anchored_end:
                items.append(Repeat(Chars(ANY), 0, None))
        return items[0] if len(items) == 1 else Seq(tuple(items))

    def alternatives(self) -> Node:
        options = [self.branch(top=False)]
        while self.peek() == "|":
            self.i += 1
            options.append(self.branch(top=False))
        return options[0] if len(options) == 1 else Alt(tuple(options))

    def quantified(self) -> Node:
        atom = self.atom()
        c = self.peek()
        bounds: tuple[int, int | None] | None = None
        if c == "*":
            bounds = (0, None)
        elif c == "+":
            bounds = (1, None)
        elif c == "?":
            bounds = (0, 1)
        elif c == "{":
            bounds = self.counted()
            if bounds is None:
                return atom
        if bounds is None:
            return atom
        if c != "{":
            self.i += 1
        if self.peek() == "?":  # lazy: the same strings match the whole pattern
            self.i += 1
        if self.peek() in ("*", "+", "?") or (self.peek() == "{" and self.counted(peek=True)):
            raise self.fail("a quantifier cannot follow another")
        return Repeat(atom, bounds[0], bounds[1])

    def counted(self, peek: bool = False) -> tuple[int, int | None] | None:
        """``{n}``, ``{n,}`` or ``{n,m}`` at the cursor (consumed unless ``peek``); ``None``
        if the brace is not a quantifier (ECMA-262 then reads it as a literal ``{``)."""
        end = self.p.find("}", self.i)
        if end < 0:
            return None
        body = self.p[self.i + 1 : end]
        lo, comma, hi = body.partition(",")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            return None
        low = int(lo)
        high: int | None = int(hi) if hi else (None if comma else low)
        if not peek:
            if high is not None and high < low:
                raise self.fail(f"the quantifier {{{body}}} is out of order")
            if max(low, high or 0) > MAX_REPEAT:
                raise self.fail(f"the quantifier {{{body}}} counts above {MAX_REPEAT}")
            self.i = end + 1
        return low, high

    def atom(self) -> Node:
        c = self.take()
        if c == ".":
            return Chars(DOT)
        if c == "(":
            return self.group()
        if c == "[":
            return Chars(self.char_class())
        if c == "\\":
            return Chars(self.escape(in_class=False))
        if c in "*+?":
            raise self.fail(f"nothing to repeat before '{c}'")
        if c == "^":
            raise self.fail("'^' is supported only at the start of the pattern")
        if c == "$":
            raise self.fail("'$' is supported only at the end of the pattern")
        if c == "{" and self.counted(peek=True) is not None:
            raise self.fail("nothing to repeat before '{'")
        return _literal(c)

    def group(self) -> Node:
        if self.p.startswith("?:", self.i):
            self.i += 2
        elif self.p.startswith("?<", self.i) and not self.p.startswith(("?<=", "?<!"), self.i):
            close = self.p.find(">", self.i)
            if close < 0:
                raise self.fail("an unterminated group name")
            self.i = close + 1
        elif self.peek() == "?":
            raise self.fail("lookarounds and inline flags are not supported")
        inner = self.alternatives()
        if self.peek() != ")":
            raise self.fail("a group is not closed")
        self.i += 1
        return inner

    def escape(self, in_class: bool) -> Ranges:
        c = self.take()
        if c in _CLASS_ESCAPES:
            return _CLASS_ESCAPES[c]
        if c in _CHAR_ESCAPES:
            if c == "0" and (self.peek() or "").isdigit():
                raise self.fail("octal escapes are not supported")
            code = _CHAR_ESCAPES[c]
        elif c == "b" and in_class:
            code = 0x08
        elif c in ("x", "u"):
            width = 2 if c == "x" else 4
            digits = self.p[self.i : self.i + width]
            if len(digits) != width or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise self.fail(f"'\\{c}' needs {width} hexadecimal digits")
            self.i += width
            code = int(digits, 16)
        elif c.isdigit():
            raise self.fail("backreferences are not supported")
        elif c.isalnum():
            what = {"b": "word boundaries", "B": "word boundaries", "p": "property escapes"}
            raise self.fail(f"'\\{c}' ({what.get(c, 'this escape')}) is not supported")
        else:
            code = ord(c)
        return ((code, code),)

    def char_class(self) -> Ranges:
        negated = self.peek() == "^"
        if negated:
            self.i += 1
        ranges: list[tuple[int, int]] = []
        first = True
        while True:
            c = self.take()
            if c == "]" and not first:
                break
            if c == "]":  # ECMA-262: "[]" matches nothing, "[^]" anything
                self.i -= 1
                if negated:
                    self.i += 1
                    return ANY
                raise self.fail("an empty character class matches nothing")
            first = False
            low = self.class_atom(c)
            if self.peek() == "-" and self.p[self.i + 1 : self.i + 2] not in ("]", ""):
                self.i += 1
                high = self.class_atom(self.take())
                if len(low) != 1 or len(high) != 1 or low[0][0] != low[0][1]:
                    raise self.fail("a class range must run between two characters")
                if high[0][0] != high[0][1] or high[0][0] < low[0][0]:
                    raise self.fail("a class range is out of order")
                ranges.append((low[0][0], high[0][0]))
            else:
                ranges.extend(low)
        merged = _normalise(ranges)
        return complement(merged) if negated else merged

    def class_atom(self, c: str) -> Ranges:
        if c == "\\":
            return self.escape(in_class=True)
        return ((ord(c), ord(c)),)


def _size(node: Node) -> int:
    """Roughly how many elements ``node`` becomes once its counts are unrolled."""
    if isinstance(node, Chars):
        return 1
    if isinstance(node, Seq | Alt):
        parts = node.items if isinstance(node, Seq) else node.options
        return sum(_size(n) for n in parts) + 1
    return _size(node.node) * max(node.min, node.max or 1, 1)


def parse_pattern(pattern: str) -> Node:
    """The tree of strings matching ``pattern`` as JSON Schema applies it (anywhere in the
    string unless anchored).

    Raises:
        PatternError: a construct outside the enforceable subset, a malformed pattern, or
            one that unrolls to more than ``MAX_EXPANSION`` elements.
    """
    node = _Parser(pattern).top()
    if _size(node) > MAX_EXPANSION:
        raise PatternError(f"/{pattern}/ is too large to enforce (its counts unroll too far)")
    return node


def restrict(node: Node, allowed: Ranges) -> Node | None:
    """``node`` with every character class narrowed to ``allowed``; ``None`` when it can then
    match no string at all (an option or optional part that can match nothing is dropped)."""
    if isinstance(node, Chars):
        kept = intersect(node.ranges, allowed)
        return Chars(kept) if kept else None
    if isinstance(node, Seq):
        items = [restrict(n, allowed) for n in node.items]
        return None if any(i is None for i in items) else Seq(tuple(i for i in items if i))
    if isinstance(node, Alt):
        options = tuple(o for o in (restrict(n, allowed) for n in node.options) if o)
        return None if not options else options[0] if len(options) == 1 else Alt(options)
    inner = restrict(node.node, allowed)
    if inner is None:
        return Seq(()) if node.min == 0 else None
    return Repeat(inner, node.min, node.max)


__all__ = [
    "ANY",
    "DOT",
    "MAX_REPEAT",
    "Alt",
    "Chars",
    "Node",
    "PatternError",
    "Ranges",
    "Repeat",
    "Seq",
    "complement",
    "intersect",
    "parse_pattern",
    "restrict",
]
