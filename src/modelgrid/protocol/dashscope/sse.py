"""Server-sent events in DashScope's framing.

Each event is four lines and a blank line, with no space after the colons::

    id:1
    event:result
    :HTTP_STATUS/200
    data:{"output":{...},"usage":{...},"request_id":"..."}

``id`` counts from 1; a failure ends the stream with ``event:error``, the HTTP status in the
comment line and the error object as ``data``. There is no ``[DONE]`` sentinel: the stream
ends after the event whose ``finish_reason`` is not ``"null"``. Framing as in the API
reference's streaming examples (https://help.aliyun.com/zh/model-studio/qwen-api-reference).
JSON is compact and keeps non-ASCII characters as UTF-8.
"""

from __future__ import annotations

import json
from typing import Any


def encode_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON bytes."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


class EventWriter:
    """Frames the events of one stream, numbering them from 1."""

    __slots__ = ("_next_id",)

    def __init__(self) -> None:
        self._next_id = 1

    def _frame(self, event: str, status: int, data: Any) -> bytes:
        head = f"id:{self._next_id}\nevent:{event}\n:HTTP_STATUS/{status}\ndata:".encode()
        self._next_id += 1
        return head + encode_json(data) + b"\n\n"

    def result(self, data: Any) -> bytes:
        """A ``result`` event (HTTP status 200)."""
        return self._frame("result", 200, data)

    def error(self, status: int, data: Any) -> bytes:
        """An ``error`` event carrying ``status`` and the error object."""
        return self._frame("error", status, data)


__all__ = ["EventWriter", "encode_json"]
