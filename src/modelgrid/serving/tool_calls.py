"""Folding a choice's streamed tool-call parts (``ToolCallDelta``) into whole calls.

A call arrives in parts keyed by its ``index``: the first carries its ``id`` and ``name``,
later ones pieces of its JSON ``arguments`` (``engines.output``). Chat, DashScope generation
and an app's tool rounds each need the whole calls, in call order.
"""

from __future__ import annotations

from modelgrid.core.types import ToolCall, ToolCallDelta


class ToolCallFold:
    """The whole calls of one choice, from its parts."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, tuple[str, str, list[str]]] = {}  # index -> (id, name, pieces)

    def add(self, part: ToolCallDelta) -> None:
        call_id, name, pieces = self._calls.setdefault(part.index, ("", "", []))
        self._calls[part.index] = (part.id or call_id, part.name or name, pieces)
        pieces.append(part.arguments)

    def __bool__(self) -> bool:
        return bool(self._calls)

    def indexed(self) -> list[tuple[int, ToolCall]]:
        """``(index, call)`` of the calls so far, in call (index) order."""
        return [(k, ToolCall(i, n, "".join(a))) for k, (i, n, a) in sorted(self._calls.items())]

    def calls(self) -> list[ToolCall]:
        """The calls so far, in call (index) order."""
        return [call for _, call in self.indexed()]


__all__ = ["ToolCallFold"]
