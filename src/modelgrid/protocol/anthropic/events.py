"""A generated message as Anthropic's content blocks and streaming events.

``MessageWriter`` folds the core ``Delta``s of one choice into content blocks, in order: text
becomes a ``text`` block (a new one after a tool call), each function call a ``tool_use``
block (``id`` ``toolu_…``, ``input`` parsed from the arguments' JSON). Streaming
(https://docs.anthropic.com/en/docs/build-with-claude/streaming), it returns the events as
(name, data) pairs: ``message_start`` (the message without content, its usage as known then)
and a ``ping``; per block ``content_block_start``, ``content_block_delta`` (``text_delta``,
or ``input_json_delta`` with pieces of the arguments as ``partial_json``) and
``content_block_stop``; then ``message_delta`` (``stop_reason``, ``stop_sequence`` and the
final ``usage``: the output count and the input counts, exact by then) and ``message_stop``.
``sse_event`` frames one: ``event: <name>`` and ``data: <json>``.
"""

from __future__ import annotations

import json
from typing import Any

from modelgrid.core.types import Delta, FinishReason, TokenUsage
from modelgrid.protocol.anthropic.convert import (
    message_dict,
    new_id,
    stop_reason,
    tool_input,
    usage_dict,
)
from modelgrid.protocol.openai.tools import argument_fragments

Event = tuple[str, dict[str, Any]]


def sse_event(name: str, data: dict[str, Any]) -> bytes:
    """One SSE event: ``event: name``, then ``data:`` with compact UTF-8 JSON."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {name}\ndata: {payload}\n\n".encode()


class MessageWriter:
    """The blocks and events of one message (see the module doc).

    Args:
        model: The model id the message names.
        message_id: Its id (default: a new ``msg_…``).
    """

    __slots__ = (
        "_args",
        "_calls",
        "_open",
        "blocks",
        "finish",
        "matched_stop",
        "message_id",
        "model",
    )

    def __init__(self, model: str, message_id: str | None = None) -> None:
        self.message_id = message_id or new_id("msg")
        self.model = model
        self.blocks: list[dict[str, Any]] = []
        self._args: dict[int, list[str]] = {}  # block index -> arguments' JSON pieces
        self._calls: dict[int, int] = {}  # the core call index -> its block index
        self._open: int | None = None  # the block being streamed
        self.finish: FinishReason | None = None
        self.matched_stop: str | None = None

    def start(self, usage: TokenUsage) -> list[Event]:
        """``message_start`` (with ``usage`` as known now) and a ``ping``."""
        message = self._message(None, usage)
        return [("message_start", {"type": "message_start", "message": message}), _PING]

    def delta(self, delta: Delta) -> list[Event]:
        """Fold one delta in; the events it makes."""
        out: list[Event] = []
        if delta.text:
            if self._open is None or self.blocks[self._open]["type"] != "text":
                out += self._begin({"type": "text", "text": ""})
            assert self._open is not None
            self.blocks[self._open]["text"] += delta.text
            out.append(_delta(self._open, {"type": "text_delta", "text": delta.text}))
        for part in delta.tool_calls:
            index = self._calls.get(part.index)
            if index is None:
                block = {"type": "tool_use", "id": new_id("toolu"), "name": part.name or ""}
                out += self._begin({**block, "input": {}})
                assert self._open is not None
                index = self._calls[part.index] = self._open
                self._args[index] = []
            self._args[index].append(part.arguments)
            for piece in argument_fragments(part.arguments):
                out.append(_delta(index, {"type": "input_json_delta", "partial_json": piece}))
        if delta.finish_reason is not None:
            self.finish = delta.finish_reason
            self.matched_stop = delta.matched_stop
        return out

    def end(self, usage: TokenUsage) -> list[Event]:
        """Close the open block; ``message_delta`` with the final usage, ``message_stop``."""
        out = self._close()
        message = self.message(usage)
        changes = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
        out.append(
            (
                "message_delta",
                {"type": "message_delta", "delta": changes, "usage": usage_dict(usage)},
            )
        )
        out.append(("message_stop", {"type": "message_stop"}))
        return out

    def message(self, usage: TokenUsage) -> dict[str, Any]:
        """The whole ``message`` object (the non-streamed answer)."""
        return self._message(stop_reason(self.finish, self.matched_stop), usage)

    def _message(self, reason: str | None, usage: TokenUsage) -> dict[str, Any]:
        content = [] if reason is None else [self._final(i, b) for i, b in enumerate(self.blocks)]
        return message_dict(
            message_id=self.message_id,
            model=self.model,
            content=content,
            stop_reason=reason,
            stop_sequence=self.matched_stop if reason == "stop_sequence" else None,
            usage=usage,
        )

    def _final(self, index: int, block: dict[str, Any]) -> dict[str, Any]:
        if block["type"] != "tool_use":
            return block
        return {**block, "input": tool_input("".join(self._args[index]))}

    def _begin(self, block: dict[str, Any]) -> list[Event]:
        out = self._close()
        self._open = len(self.blocks)
        self.blocks.append(dict(block))
        start = {"type": "content_block_start", "index": self._open, "content_block": block}
        return [*out, ("content_block_start", start)]

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]


_PING: Event = ("ping", {"type": "ping"})


def _delta(index: int, delta: dict[str, Any]) -> Event:
    return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def error_event(body: dict[str, Any]) -> bytes:
    """An ``event: error`` with an error body (``protocol.anthropic.errors.error_body``)."""
    return sse_event("error", body)


__all__ = ["Event", "MessageWriter", "error_event", "sse_event"]
