"""Server-sent events framing for OpenAI streams.

Each event is ``data: <json>\\n\\n``; the stream ends with ``data: [DONE]\\n\\n``
(https://platform.openai.com/docs/api-reference/chat-streaming). JSON is compact and keeps
non-ASCII characters as UTF-8, as OpenAI's servers do.
"""

from __future__ import annotations

import json
from typing import Any

DONE = b"data: [DONE]\n\n"


def encode_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON bytes."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def event(obj: Any) -> bytes:
    """One SSE ``data:`` event carrying ``obj`` as JSON."""
    return b"data: " + encode_json(obj) + b"\n\n"


__all__ = ["DONE", "encode_json", "event"]
