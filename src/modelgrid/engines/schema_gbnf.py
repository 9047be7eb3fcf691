"""An enforceable JSON Schema (``protocol.schema_nodes.Schema``) as GBNF rules for llama.cpp.

GBNF: https://github.com/ggml-org/llama.cpp/blob/master/grammars/README.md. The rules write
compact JSON with at most one space after a token (``space``), strings without raw control
characters, and each schema node as ``protocol.json_schema`` describes it: numbers within
their bounds (``gbnf_numbers``), strings by length (one character or short escape each, so
the count is of characters), by ``pattern`` (its characters written as JSON needs: ``"``
and ``\\`` escaped, control characters never) or by ``format``, objects with their declared
properties in order (optional ones may be skipped), arrays within their counts, enums as
their literal JSON texts, references as rules of their own (recursion is allowed).

Pure Python: building the text needs no llama.cpp; the engine hands it to llama.cpp's parser.
"""

from __future__ import annotations

import json

from modelgrid.engines.gbnf_numbers import (
    PLAIN_INTEGER,
    PLAIN_NUMBER,
    integer_range,
    number_range,
)
from modelgrid.protocol import schema_nodes as js
from modelgrid.protocol import schema_pattern as sp
from modelgrid.protocol.json_schema import PRODUCIBLE

CHAR = '[^"\\\\\\x7F\\x00-\\x1F] | "\\\\" (["\\\\/bfnrt] | "u" [0-9a-fA-F]{4})'
# one character per repetition, so that a count of repetitions is a count of characters
LENGTH_CHAR = '[^"\\\\\\x7F\\x00-\\x1F] | "\\\\" ["\\\\/bfnrt]'
PRIMITIVES: dict[str, str] = {
    "space": '" "?',
    "char": CHAR,
    "string": '"\\"" char* "\\"" space',
    "number": f"( {PLAIN_NUMBER} ) space",
    "integer": f"( {PLAIN_INTEGER} ) space",
    "boolean": '( "true" | "false" ) space',
    "null": '"null" space',
    "value": "object | array | string | number | boolean | null",
    "object": '"{" space ( string ":" space value ( "," space string ":" space value )* )? '
    '"}" space',
    "array": '"[" space ( value ( "," space value )* )? "]" space',
    "length-char": LENGTH_CHAR,
}
_DEPENDS = {
    "string": ("char", "space"),
    "number": ("space",),
    "integer": ("space",),
    "boolean": ("space",),
    "null": ("space",),
    "value": ("object", "array", "string", "number", "boolean", "null"),
    "object": ("string", "value", "space"),
    "array": ("value", "space"),
}
_DAY = '( "0" [1-9] | [12] [0-9] | "3" [01] )'
_DAY30 = '( "0" [1-9] | [12] [0-9] | "30" )'
_FEB = '( "0" [1-9] | "1" [0-9] | "2" [0-8] )'
_DATE = (
    '[1-9] [0-9]{3} "-" ( ( "0" [13578] | "1" [02] ) "-" '
    + _DAY
    + ' | ( "0" [469] | "11" ) "-" '
    + _DAY30
    + ' | "02-" '
    + _FEB
    + " )"
)
_HOUR = '( [01] [0-9] | "2" [0-3] )'
_TIME = (
    _HOUR
    + ' ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,6} )? ( "Z" | [+-] '
    + _HOUR
    + ' ":" [0-5] [0-9] )'
)
FORMAT_RULES = {
    "date": _DATE,
    "time": _TIME,
    "date-time": _DATE + ' "T" ' + _TIME,
    "uuid": ' "-" '.join(f"[0-9a-fA-F]{{{n}}}" for n in (8, 4, 4, 4, 12)),
}
SEPARATOR = '"," space '
# characters written raw inside a JSON string; '"' and '\' are written escaped
_RAW = sp.intersect(PRODUCIBLE, sp.complement(((0x22, 0x22), (0x5C, 0x5C))))


def literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _class_char(code: int) -> str:
    if chr(code).isascii() and chr(code).isalnum():
        return chr(code)
    if code <= 0xFF:
        return f"\\x{code:02X}"
    return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


def char_class(ranges: sp.Ranges) -> str:
    """A GBNF class for the code points in ``ranges`` (non-empty)."""
    parts = [
        _class_char(lo) if lo == hi else f"{_class_char(lo)}-{_class_char(hi)}" for lo, hi in ranges
    ]
    return "[" + "".join(parts) + "]"


def _repeat(expr: str, lo: int, hi: int | None) -> str:
    if hi is not None and hi == 0:
        return ""
    if (lo, hi) == (0, None):
        return f"( {expr} )*"
    if (lo, hi) == (1, None):
        return f"( {expr} )+"
    if (lo, hi) == (0, 1):
        return f"( {expr} )?"
    if lo == hi:
        return f"( {expr} ){{{lo}}}"
    return f"( {expr} ){{{lo},{'' if hi is None else hi}}}"


class Rules:
    """GBNF rules under unique names, shared by the schemas of one grammar."""

    def __init__(self) -> None:
        self.rules: dict[str, str] = {}
        self._n = 0

    def primitive(self, name: str) -> str:
        if name not in self.rules:
            self.rules[name] = PRIMITIVES[name]
            for dep in _DEPENDS.get(name, ()):
                self.primitive(dep)
        return name

    def add(self, name: str, body: str) -> str:
        """Define ``name`` (or a fresh variant of it) as ``body``; returns the name used."""
        key = name
        while key in self.rules and self.rules[key] != body:
            self._n += 1
            key = f"{name}-{self._n}"
        self.rules[key] = body
        return key

    def text(self) -> str:
        """The grammar: every rule reachable from ``root`` (all of them if there is none)."""
        keep = set(self.rules)
        if "root" in self.rules:
            keep, todo = {"root"}, ["root"]
            while todo:
                for ref in _references(self.rules[todo.pop()]):
                    if ref in self.rules and ref not in keep:
                        keep.add(ref)
                        todo.append(ref)
        return "\n".join(f"{k} ::= {v}" for k, v in sorted(self.rules.items()) if k in keep)


def _references(body: str) -> set[str]:
    """The rule names ``body`` mentions (outside its literals and classes)."""
    names: set[str] = set()
    i = 0
    while i < len(body):
        c = body[i]
        if c in '"[':
            close = '"' if c == '"' else "]"
            i += 1
            while body[i] != close:
                i += 2 if body[i] == "\\" else 1
            i += 1
        elif c.isalnum():
            j = i
            while j < len(body) and (body[j].isalnum() or body[j] == "-"):
                j += 1
            names.add(body[i:j])
            i = j
        elif c == "{":
            i = body.index("}", i) + 1
        else:
            i += 1
    return names


class _Renderer:
    def __init__(self, rules: Rules, schema: js.Schema, prefix: str) -> None:
        self.r = rules
        self.schema = schema
        self.prefix = prefix
        self.defs: dict[str, str] = {}

    def name(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}"

    def ref(self, name: str) -> str:
        if name not in self.defs:
            rule = self.name(name)
            self.defs[name] = rule
            self.r.rules[rule] = ""  # reserved: the definition may refer to itself
            self.r.rules[rule] = self.expr(self.schema.defs[name], name)
        return self.defs[name]

    def expr(self, node: js.Node, hint: str) -> str:
        """A GBNF expression for ``node`` (a rule name or a parenthesised body)."""
        r = self.r
        if isinstance(node, js.AnyValue):
            return r.primitive("value")
        if isinstance(node, js.Null):
            return r.primitive("null")
        if isinstance(node, js.Boolean):
            return r.primitive("boolean")
        if isinstance(node, js.Ref):
            return self.ref(node.name)
        if isinstance(node, js.Literals):
            r.primitive("space")
            return "( " + " | ".join(literal(t) for t in node.texts) + " ) space"
        if isinstance(node, js.Integer):
            r.primitive("space")
            if node.lo is None and node.hi is None:
                return r.primitive("integer")
            return f"( {integer_range(node.lo, node.hi)} ) space"
        if isinstance(node, js.Number):
            r.primitive("space")
            if node.lo is None and node.hi is None:
                return r.primitive("number")
            return f"( {number_range(node.lo, node.lo_open, node.hi, node.hi_open)} ) space"
        if isinstance(node, js.String):
            return self.string(node)
        if isinstance(node, js.Union):
            options = [self.expr(o, f"{hint}-{i}") for i, o in enumerate(node.options)]
            return self.r.add(self.name(f"{hint}-any"), " | ".join(options))
        if isinstance(node, js.Array | js.Tuple):
            return self.array(node, hint)
        return self.object(node, hint)

    def string(self, node: js.String) -> str:
        r = self.r
        r.primitive("space")
        if node.format is not None:
            body = FORMAT_RULES[node.format]
        elif node.pattern is not None:
            body = self.pattern(node.pattern)
        elif node.min_length == 0 and node.max_length is None:
            return r.primitive("string")
        else:
            body = _repeat(r.primitive("length-char"), node.min_length, node.max_length)
        return f'( "\\"" {body} "\\"" space )'

    def pattern(self, node: sp.Node) -> str:
        if isinstance(node, sp.Chars):
            options = []
            raw = sp.intersect(node.ranges, _RAW)
            if raw:
                single = len(raw) == 1 and raw[0][0] == raw[0][1]
                options.append(literal(chr(raw[0][0])) if single else char_class(raw))
            for code in (0x22, 0x5C):
                if sp.intersect(node.ranges, ((code, code),)):
                    options.append(literal("\\" + chr(code)))
            return options[0] if len(options) == 1 else "( " + " | ".join(options) + " )"
        if isinstance(node, sp.Seq):
            return " ".join(p for p in (self.pattern(n) for n in node.items) if p) or '""'
        if isinstance(node, sp.Alt):
            return "( " + " | ".join(self.pattern(n) for n in node.options) + " )"
        return _repeat(self.pattern(node.node), node.min, node.max) or '""'

    def array(self, node: js.Array | js.Tuple, hint: str) -> str:
        r = self.r
        r.primitive("space")
        if isinstance(node, js.Tuple):
            items = [self.expr(n, f"{hint}-{i}") for i, n in enumerate(node.items)]
            body = ' "," space '.join(items)
            return r.add(
                self.name(f"{hint}-tuple"), f'"[" space {body} "]" space'.replace("  ", " ")
            )
        item = self.expr(node.items, f"{hint}-item")
        lo, hi = node.min_items, node.max_items
        more = None if hi is None else hi - 1
        if hi == 0:
            body = ""
        elif lo == 0:
            body = f"( {item} {_repeat(SEPARATOR + item, 0, more)} )?"
        else:
            body = f"{item} {_repeat(SEPARATOR + item, lo - 1, more)}"
        return r.add(self.name(f"{hint}-array"), f'"[" space {body} "]" space')

    def object(self, node: js.Object, hint: str) -> str:
        r = self.r
        r.primitive("space")
        if not node.properties:
            if node.additional is None:
                return r.add(self.name(f"{hint}-empty"), '"{" space "}" space')
            value = self.expr(node.additional, f"{hint}-value")
            kv = f'{r.primitive("string")} ":" space {value}'
            body = f'"{{" space ( {kv} ( "," space {kv} )* )? "}}" space'
            return r.add(self.name(f"{hint}-map"), body)
        kvs = [
            f'{literal(json.dumps(p.name, ensure_ascii=False))} space ":" space '
            + self.expr(p.schema, f"{hint}-{i}")
            for i, p in enumerate(node.properties)
        ]
        first, more = "", ""  # what may follow: nothing written yet / something written
        for i in range(len(node.properties) - 1, -1, -1):
            kv, required = kvs[i], node.properties[i].required
            if required:
                first_body, more_body = f"{kv} {more}", f'"," space {kv} {more}'
            else:
                first_body = f"{kv} {more} | {first}" if first else f"( {kv} {more} )?"
                more_body = f'"," space {kv} {more} | {more}' if more else f'( "," space {kv} )?'
            first = r.add(self.name(f"{hint}-first-{i}"), first_body.strip())
            more = r.add(self.name(f"{hint}-more-{i}"), more_body.strip())
        return r.add(self.name(f"{hint}-object"), f'"{{" space {first} "}}" space')


def render(rules: Rules, schema: js.Schema, name: str) -> str:
    """Add the rules of ``schema`` to ``rules``, its root under ``name`` (``root`` for a
    whole grammar); returns the root's rule name. Rules of its own are named ``name-…``."""
    renderer = _Renderer(rules, schema, name if name != "root" else "s")
    return rules.add(name, renderer.expr(schema.root, "v"))


__all__ = ["FORMAT_RULES", "PRIMITIVES", "Rules", "char_class", "literal", "render"]
