"""One choice's generated tokens turned into ``Delta``s, the same way for every local engine.

A token's bytes go through ``TextAssembler`` (whole UTF-8 characters, stop strings cut), then,
when the request lets the model call functions, through ``ToolCallParser`` (text and calls);
each token's log probability, when asked for, rides on the next delta that is emitted, so a
choice's deltas carry exactly one entry per completion token.
"""

from __future__ import annotations

import dataclasses
import secrets

from modelgrid.core.types import (
    Delta,
    FinishReason,
    InferenceRequest,
    TokenLogprob,
    ToolCallDelta,
    ToolChoiceMode,
)
from modelgrid.engines.stops import TextAssembler
from modelgrid.engines.toolcalls import ParsedCall, Piece, ToolCallParser


def tool_call_id() -> str:
    """An OpenAI-style call id: ``call_`` and 24 random hex characters."""
    return f"call_{secrets.token_hex(12)}"


def token_text(data: bytes) -> str:
    """A token's text for logprobs: its characters, or ``bytes:\\xe4\\xbd`` when its bytes are
    part of a character (OpenAI's spelling)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in data)


class ChoiceOutput:
    """Builds the deltas of choice ``index`` of ``request``.

    Call ``token(data, logprob)`` per generated token (not for end-of-generation tokens); once
    ``stopped`` is true (a stop string was hit) generation must end. Then ``finish(reason)``
    returns the closing deltas, the last one carrying the finish reason: ``tool_calls`` when
    the model called a function and ended on its own; ``stop`` with the stop string in
    ``matched_stop`` when one was hit.
    """

    __slots__ = (
        "_calls",
        "_index",
        "_logprobs",
        "_parallel",
        "_text",
        "_tools",
        "produced",
        "stopped",
    )

    def __init__(self, index: int, request: InferenceRequest) -> None:
        self._index = index
        self._text = TextAssembler(request.sampling.stop)
        tools_on = request.tool_mode is not ToolChoiceMode.NONE
        self._tools = ToolCallParser([t.name for t in request.tools]) if tools_on else None
        self._parallel = request.parallel_tool_calls
        self._logprobs: list[TokenLogprob] = []
        self._calls = 0
        self.produced = 0
        self.stopped = False

    def token(self, data: bytes, logprob: TokenLogprob | None = None) -> list[Delta]:
        self.produced += 1
        if logprob is not None:
            self._logprobs.append(logprob)
        text, self.stopped = self._text.feed(data)
        pieces: list[str | ParsedCall] = self._tools.feed(text) if self._tools else [text]
        return self._deltas(pieces)

    def finish(self, reason: FinishReason) -> list[Delta]:
        tail = "" if self.stopped else self._text.flush()
        pieces: list[str | ParsedCall] = (
            self._tools.feed(tail) + self._tools.finish() if self._tools else [tail]
        )
        out = self._deltas(pieces)
        if self._calls and reason is FinishReason.STOP:
            reason = FinishReason.TOOL_CALLS
        matched = self._text.matched if reason is FinishReason.STOP else None
        last = Delta(self._index, "", self.produced, reason, logprobs=self._take_logprobs())
        out.append(dataclasses.replace(last, matched_stop=matched) if matched else last)
        return out

    def _deltas(self, pieces: list[Piece]) -> list[Delta]:
        out: list[Delta] = []
        for piece in pieces:
            if isinstance(piece, ParsedCall):
                if self._calls and not self._parallel:
                    continue  # parallel_tool_calls=false: the first call only
                call = ToolCallDelta(self._calls, tool_call_id(), piece.name, piece.arguments)
                self._calls += 1
                out.append(
                    Delta(
                        self._index,
                        "",
                        self.produced,
                        tool_calls=(call,),
                        logprobs=self._take_logprobs(),
                    )
                )
            elif piece:
                out.append(Delta(self._index, piece, self.produced, logprobs=self._take_logprobs()))
        return out

    def _take_logprobs(self) -> tuple[TokenLogprob, ...]:
        taken = tuple(self._logprobs)
        self._logprobs.clear()
        return taken


__all__ = ["ChoiceOutput", "token_text", "tool_call_id"]
