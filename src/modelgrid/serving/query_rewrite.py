"""The search query of a question in its conversation (framework-free): by concatenation, or
written by the model.

``concat`` (an app's default): the last ``REWRITE_TURNS`` earlier user turns, then the new
one, one per line, cut to ``MAX_QUERY_CHARS`` from the front. No model call: follow-ups such
as "and the price?" keep the earlier turn's words, which is what BM25 and the embedding need.

``model`` (an app's ``retrieval.query_rewrite: "model"``, a vector store search's
``rewrite_query: true``): the model is asked for one standalone search query — the last
``REWRITE_TURNS`` turns and the new question in, a single line out (``REWRITE_MAX_TOKENS`` at
most, greedy) — as a metered request of its own (``serving.model_text``). Model Studio's RAG
apps call this "multi-turn query rewriting"; OpenAI's vector store search returns the
rewritten query as ``search_query``; there the deployment's default chat model writes it
(``default_chat_model``), metered to the caller under ``vector_stores.rewrite``. An answer that is empty, cut off by its token cap or
longer than ``MAX_MODEL_QUERY_CHARS`` is not a query: the concatenated query is used instead,
with a warning in the log. A failed call (no replica, a limit, an upstream error) is the
request's error, never swallowed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from modelgrid.core.errors import ServiceUnavailableError
from modelgrid.core.types import CallContext, ChatMessage, TokenUsage
from modelgrid.serving.app_store import Turn
from modelgrid.serving.generation import GenerationService
from modelgrid.serving.model_text import generate_text
from modelgrid.serving.models import ModelRegistry
from modelgrid.tenancy.service import Principal

log = logging.getLogger(__name__)

REWRITE_TURNS = 2  # earlier turns the query is made from
MAX_QUERY_CHARS = 2000
REWRITE_MAX_TOKENS = 48
MAX_MODEL_QUERY_CHARS = 300
MAX_TURN_CHARS = 600  # each earlier turn as the rewriting prompt shows it (its end)
SYSTEM = (
    "You turn the user's last message into one standalone search query for a document "
    "search. Use the conversation only to resolve what the message refers to. Reply with the "
    "search query alone, on one line, without quotes or explanation."
)
_PREFIXES = ("search query:", "query:", "standalone query:")


def concat_query(earlier_user_turns: Sequence[str], prompt: str) -> str:
    """The ``concat`` query of ``prompt`` (see the module docstring)."""
    parts = [t.strip() for t in earlier_user_turns if t.strip()][-REWRITE_TURNS:]
    query = "\n".join([*parts, prompt.strip()])
    return query[-MAX_QUERY_CHARS:]


def default_chat_model(models: ModelRegistry, configured: Sequence[str]) -> str:
    """The deployment's default chat model, which rewrites vector store searches' queries:
    the first of ``configured`` (``engine.models``, the packaged models) that is served,
    else the first served model that chats.

    Raises:
        ServiceUnavailableError: no chat model is served (503).
    """
    chat = [c.model_id for c in models.cards() if "chat" in c.capabilities]
    for model in [*configured, *chat]:
        if model in chat:
            return model
    raise ServiceUnavailableError("No chat model is served to rewrite the query.")


def rewrite_messages(history: Sequence[Turn], prompt: str) -> list[ChatMessage]:
    """The rewriting prompt: the instruction, then the last ``REWRITE_TURNS`` turns (each cut
    to its last ``MAX_TURN_CHARS``) and the new message."""
    lines = []
    for turn in history[-REWRITE_TURNS:]:
        if turn.user.strip():
            lines.append(f"User: {turn.user.strip()[-MAX_TURN_CHARS:]}")
        if turn.assistant.strip():
            lines.append(f"Assistant: {turn.assistant.strip()[-MAX_TURN_CHARS:]}")
    conversation = "Conversation:\n" + "\n".join(lines) + "\n\n" if lines else ""
    text = f"{conversation}Last message: {prompt.strip()[-MAX_QUERY_CHARS:]}\n\nSearch query:"
    return [ChatMessage("system", SYSTEM), ChatMessage("user", text)]


def clean_query(text: str) -> str | None:
    """The query in the model's answer: its first non-empty line without a leading
    "Search query:" and without surrounding quotes; ``None`` when that is empty or longer
    than ``MAX_MODEL_QUERY_CHARS``."""
    line = next((x.strip() for x in text.splitlines() if x.strip()), "")
    for prefix in _PREFIXES:
        if line.lower().startswith(prefix):
            line = line[len(prefix) :].strip()
    line = line.strip("\"'`“”‘’ ").strip()
    if not line or len(line) > MAX_MODEL_QUERY_CHARS:
        return None
    return line


@dataclass(frozen=True, slots=True)
class Rewritten:
    """A search query and how it was made: ``by`` ``model``, or ``concat`` (asked for,
    or the model's answer was unusable); the model call's ``request_id`` and ``usage`` when
    one ran."""

    query: str
    by: str
    request_id: str | None = None
    usage: TokenUsage | None = None
    elapsed_ms: float = 0.0


async def model_query(
    service: GenerationService,
    principal: Principal,
    model: str,
    history: Sequence[Turn],
    prompt: str,
    ctx: CallContext,
    *,
    endpoint: str,
) -> Rewritten:
    """The search query ``model`` writes for ``prompt`` after ``history`` (see the module
    docstring), metered under ``endpoint``; the ``concat`` query when its answer is unusable.

    Raises:
        Every error of ``serving.model_text.generate_text``.
    """
    out = await generate_text(
        service,
        principal,
        model,
        rewrite_messages(history, prompt),
        ctx,
        endpoint=endpoint,
        max_tokens=REWRITE_MAX_TOKENS,
    )
    query = clean_query(out.text) if out.finish_reason == "stop" else None
    if query is None:
        log.warning(
            "query rewrite by %s unusable (finish %s, %d chars): searching with %s instead "
            "(request %s)",
            model,
            out.finish_reason,
            len(out.text),
            "the conversation's turns" if history else "the query as asked",
            out.request_id,
        )
        fallback = concat_query([t.user for t in history], prompt)
        return Rewritten(fallback, "concat", out.request_id, out.usage, out.elapsed_ms)
    return Rewritten(query, "model", out.request_id, out.usage, out.elapsed_ms)


__all__ = [
    "MAX_MODEL_QUERY_CHARS",
    "REWRITE_MAX_TOKENS",
    "REWRITE_TURNS",
    "Rewritten",
    "clean_query",
    "concat_query",
    "default_chat_model",
    "model_query",
    "rewrite_messages",
]
