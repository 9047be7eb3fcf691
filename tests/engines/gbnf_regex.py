"""A GBNF grammar (or expression) without recursion as a Python regular expression, to test
which strings a rule matches without a model: rules are inlined, the syntax translated
(literals, classes, groups, alternation, ``? * + {m} {m,} {m,n}``)."""

from __future__ import annotations

import re

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "[": "[", "]": "]"}


def _char(text: str, i: int) -> tuple[str, int]:
    """One (possibly escaped) character of a GBNF literal or class at ``i``."""
    if text[i] != "\\":
        return text[i], i + 1
    kind = text[i + 1]
    width = {"x": 2, "u": 4, "U": 8}.get(kind)
    if width:
        return chr(int(text[i + 2 : i + 2 + width], 16)), i + 2 + width
    return _ESCAPES[kind], i + 2


def _class_char(c: str) -> str:
    return f"\\U{ord(c):08x}" if ord(c) > 0xFFFF else f"\\u{ord(c):04x}"


def parse_rules(grammar: str) -> dict[str, str]:
    return dict(line.split(" ::= ", 1) for line in grammar.splitlines() if line.strip())


def to_regex(expr: str, rules: dict[str, str] | None = None, _depth: int = 0) -> str:
    """``expr`` (GBNF) as a Python regex, rule references inlined from ``rules``."""
    if _depth > 50:
        raise RecursionError("recursive grammar")
    rules = rules or {}
    out: list[str] = []
    i = 0
    while i < len(expr):
        c = expr[i]
        if c.isspace():
            i += 1
        elif c == '"':
            i += 1
            lit = ""
            while expr[i] != '"':
                ch, i = _char(expr, i)
                lit += ch
            i += 1
            out.append(f"(?:{re.escape(lit)})")
        elif c == "[":
            i += 1
            body = "^" if expr[i] == "^" else ""
            i += len(body)
            while expr[i] != "]":
                if expr[i] == "-":
                    body += "-"
                    i += 1
                    continue
                ch, i = _char(expr, i)
                body += _class_char(ch)
            i += 1
            out.append(f"[{body}]")
        elif c in "()|":
            out.append("(?:" if c == "(" else c)
            i += 1
        elif c in "?*+":
            out.append(c)
            i += 1
        elif c == "{":
            end = expr.index("}", i)
            out.append(expr[i : end + 1])
            i = end + 1
        else:
            m = re.match(r"[a-zA-Z0-9-]+", expr[i:])
            assert m, expr[i:]
            name = m.group(0)
            out.append(f"(?:{to_regex(rules[name], rules, _depth + 1)})")
            i += len(name)
    return "".join(out)


def compile_rule(grammar: str, root: str = "root") -> re.Pattern[str]:
    rules = parse_rules(grammar)
    return re.compile(to_regex(rules[root], rules))


def compile_expr(expr: str) -> re.Pattern[str]:
    return re.compile(to_regex(expr))
