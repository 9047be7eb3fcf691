"""OpenAI SSE framing of a chunk stream, shared by chat and text completions.

Each chunk becomes a ``data:`` event and ``data: [DONE]`` ends the stream. A failure after
the first event becomes an error event in the OpenAI envelope, never a silent cut; a
``ModelgridError`` before it propagates, so ``SSEResponse`` answers it as a plain JSON error
with its own status (https://platform.openai.com/docs/api-reference/chat-streaming).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from modelgrid.core.errors import ModelgridError
from modelgrid.protocol.openai import sse
from modelgrid.protocol.openai.errors import error_body

log = logging.getLogger("modelgrid.api")


def error_event(exc: ModelgridError) -> bytes:
    """The error event that ends a stream after its first event (no ``[DONE]`` after it)."""
    return sse.event(error_body(exc.message, exc.type, exc.param, exc.code))


async def openai_events(chunks: AsyncGenerator[dict[str, Any], None]) -> AsyncIterator[bytes]:
    sent = False
    try:
        async for chunk in chunks:
            yield sse.event(chunk)
            sent = True
    except ModelgridError as exc:
        if not sent:
            raise
        yield error_event(exc)
        return
    except Exception:
        log.exception("generation failed while streaming")
        yield sse.event(
            error_body(
                "The server had an error while generating.", "server_error", None, "internal_error"
            )
        )
        return
    finally:
        await chunks.aclose()
    yield sse.DONE


__all__ = ["error_event", "openai_events"]
