"""Qwen's (Hermes-style) function calls parsed out of generated text, incrementally.

Qwen2.5's chat template asks the model to write each call as::

    <tool_call>
    {"name": <function-name>, "arguments": <args-json-object>}
    </tool_call>

Small models often drop the tags and answer with the bare JSON object (or one in a
```` ```json ```` fence); when the output *starts* that way it is held back and parsed at the
end. ``ToolCallParser`` takes text as it is generated (whole characters, stop strings already
applied) and returns what may be emitted now: plain text, and complete calls once their JSON
is whole. Anything that does not parse as a call of a declared function is returned as text,
unchanged: malformed model output is never an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

OPEN = "<tool_call>"
CLOSE = "</tool_call>"

_FENCE_OPENING = re.compile(r"```(?:json)?\s*(?=[{\[])")
_FENCE_PREFIX = re.compile(r"`{1,3}|```(?:j|js|jso|json)?\s*")
_WS = " \t\r\n"
# How a bare call begins (whitespace removed); anything else is released as text at once.
_BARE_HEADS = ('{"name"', '{"arguments"', '[{"name"', '[{"arguments"')


@dataclass(frozen=True, slots=True)
class ParsedCall:
    """One call: ``arguments`` is the compact JSON text of the arguments object."""

    name: str
    arguments: str


Piece = str | ParsedCall


def _held_prefix(buf: str, token: str) -> int:
    """Length of the longest suffix of ``buf`` that is a proper prefix of ``token``."""
    for k in range(min(len(buf), len(token) - 1), 0, -1):
        if token.startswith(buf[-k:]):
            return k
    return 0


class ToolCallParser:
    """Splits generated text into plain text and calls of the functions in ``names``.

    Use ``feed(text)`` for each increment and ``finish()`` once at the end; both return the
    pieces to emit now, in order (adjacent text merged). Text is held back only while it may
    still become a call: a partial ``<tool_call>`` tag, a call whose JSON is not complete yet,
    or output that began like a bare call.
    """

    __slots__ = ("_buf", "_calls", "_fence_open", "_head", "_mode", "_names")

    def __init__(self, names: Collection[str]) -> None:
        self._names = frozenset(names)
        self._buf = ""
        self._mode = "start"  # start | text | call | bare
        self._head = ""  # what preceded a bare call's JSON (whitespace, ```json), held with it
        self._fence_open = False  # a fenced bare call was parsed; its closing ``` is not content
        self._calls = 0

    @property
    def calls(self) -> int:
        """Calls parsed so far."""
        return self._calls

    def feed(self, text: str) -> list[Piece]:
        self._buf += text
        return self._drain(final=False)

    def finish(self) -> list[Piece]:
        return self._drain(final=True)

    def _drain(self, *, final: bool) -> list[Piece]:
        out: list[Piece] = []
        step = {
            "start": self._step_start,
            "text": self._step_text,
            "call": self._step_call,
            "bare": self._step_bare,
        }
        while step[self._mode](out, final):
            pass
        merged: list[Piece] = []
        for piece in out:
            if isinstance(piece, str) and merged and isinstance(merged[-1], str):
                merged[-1] += piece
            elif piece != "":
                merged.append(piece)
        return merged

    # Each step consumes what it can and returns whether another step should run now.

    def _step_start(self, out: list[Piece], final: bool) -> bool:
        """At the start of the output or after a call: decide what comes next."""
        s = self._buf.lstrip(_WS)
        if self._calls:
            self._buf = s  # whitespace between or after calls is not content
        if self._fence_open and s.startswith("```"):
            self._buf, self._fence_open = s[3:], False
            return True
        partial = OPEN.startswith(s) or (self._fence_open and "```".startswith(s))
        if not s or (partial and not final):
            if final:
                out.append(self._buf)
                self._buf = ""
            return False
        if s.startswith(OPEN):
            self._mode = "text"
            return True
        fence = _FENCE_OPENING.match(s)
        if s[0] in "{[" or fence:
            cut = len(self._buf) - len(s) + (fence.end() if fence else 0)
            self._head, self._buf = self._buf[:cut], self._buf[cut:]
            self._mode = "bare"
            return True
        if not final and self._calls == 0 and _FENCE_PREFIX.fullmatch(s):
            return False  # "```json": is a call coming?
        self._release()
        return True

    def _step_text(self, out: list[Piece], final: bool) -> bool:
        i = self._buf.find(OPEN)
        if i >= 0:
            out.append(self._buf[:i])
            self._buf = self._buf[i:]
            self._mode = "call"
            return True
        hold = 0 if final else _held_prefix(self._buf, OPEN)
        out.append(self._buf[: len(self._buf) - hold])
        self._buf = self._buf[len(self._buf) - hold :]
        return False

    def _step_call(self, out: list[Piece], final: bool) -> bool:
        j = self._buf.find(CLOSE, len(OPEN))
        if j < 0 and not final:
            return False
        end = len(self._buf) if j < 0 else j + len(CLOSE)
        raw, body = self._buf[:end], self._buf[len(OPEN) : end if j < 0 else j]
        self._buf = self._buf[end:]
        call = self._parse_one(body)
        if call is None:
            out.append(raw)
            self._mode = "text"
        else:
            out.append(call)
            self._calls += 1
            self._mode = "start"
        return True

    def _step_bare(self, out: list[Piece], final: bool) -> bool:
        """The buffer starts with ``{`` or ``[``: a bare call, or text that looks like one."""
        head = re.sub(r"\s+", "", self._buf[:40])[:12]
        if not any(h.startswith(head) or head.startswith(h) for h in _BARE_HEADS):
            self._release()
            return True
        value: Any = None
        end = -1
        if final or self._buf.rstrip(_WS).endswith(("}", "]")):
            try:
                value, end = json.JSONDecoder().raw_decode(self._buf)
            except ValueError:
                end = -1
        if end < 0:
            if final:
                self._release()
                return True
            return False
        calls = [self._as_call(v) for v in (value if isinstance(value, list) else [value])]
        if not calls or None in calls:
            self._release()
            return True
        out.extend(c for c in calls if c is not None)
        self._calls += len(calls)
        self._fence_open = "```" in self._head
        self._buf, self._head = self._buf[end:], ""
        self._mode = "start"
        return True

    def _release(self) -> None:
        """What is held is plain text after all (a fence opening is given back)."""
        self._buf = self._head + self._buf
        self._head = ""
        self._mode = "text"

    # -- JSON --

    def _parse_one(self, body: str) -> ParsedCall | None:
        try:
            obj = json.loads(body.strip())
        except ValueError:
            return None
        return self._as_call(obj)

    def _as_call(self, obj: Any) -> ParsedCall | None:
        if not isinstance(obj, dict) or obj.get("name") not in self._names:
            return None
        args = obj.get("arguments", obj.get("parameters", {}))
        if isinstance(args, str):  # some models write the arguments as a JSON string
            try:
                args = json.loads(args)
            except ValueError:
                return None
        if args is None:
            args = {}
        if not isinstance(args, dict):
            return None
        return ParsedCall(obj["name"], json.dumps(args, ensure_ascii=False))


__all__ = ["CLOSE", "OPEN", "ParsedCall", "Piece", "ToolCallParser"]
