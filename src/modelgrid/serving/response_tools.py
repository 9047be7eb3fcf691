"""The Responses API's server-side ``file_search`` tool: the gateway runs the search itself.

Before the generation opens (so an unknown store is a plain 404 before the first byte), the
text of the conversation's last user message is searched in the tool's vector stores
(``serving.file_search``: hybrid retrieval, the query's embedding one metered call billed to
the caller, recorded as an ``embeddings`` usage event). The hits go into that user turn, before
its question (a small model follows context next to the question better than in the system
prompt, as in ``serving.apps``), each headed by its file's name. The output gets a
``file_search_call`` item (``queries``: the one query; ``results`` with ``include:
["file_search_call.results"]``), and the answer's text a ``file_citation`` annotation for
each file whose chunks were given to the model, best first, at the end of the text (the
model is not asked to place markers: a 0.5B model does not place them reliably).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from modelgrid.core.errors import InvalidRequestError
from modelgrid.core.ids import new_request_id
from modelgrid.core.types import CallContext, ChatMessage
from modelgrid.protocol.openai.file_search_tool import (
    FileSearchTool,
    file_search_call_item,
    result_dict,
)
from modelgrid.protocol.openai.responses import item_id
from modelgrid.serving.file_search import FileHit, FileSearch
from modelgrid.serving.knowledge import MAX_QUERY_CHARS
from modelgrid.tenancy.service import Principal


@dataclass(frozen=True, slots=True)
class FoundFiles:
    """What the search added: the messages with the passages, the output item, and the
    files to cite ``(file id, filename)``."""

    messages: list[ChatMessage]
    item: dict[str, Any]
    citations: list[tuple[str, str]]
    hits: list[FileHit]


def _with_passages(message: ChatMessage, hits: list[FileHit]) -> ChatMessage:
    question = message.content or ""
    if not hits:
        return replace(message, content=f"(The files have nothing on this.)\n\n{question}")
    passages = "\n\n".join(f"[{h.filename}]\n{h.text}" for h in hits)
    return replace(
        message,
        content=f"Use these excerpts of the files:\n\n{passages}\n\nQuestion: {question}",
    )


async def search_files(
    search: FileSearch,
    principal: Principal,
    tool: FileSearchTool,
    messages: list[ChatMessage],
    ctx: CallContext,
    with_results: bool,
) -> FoundFiles:
    """Search for the last user message (see the module docstring).

    Raises:
        InvalidRequestError: no user message with text (``param: "input"``).
        And the errors of ``FileSearch.search``.
    """
    last = next(
        (
            i
            for i in range(len(messages) - 1, -1, -1)
            if messages[i].role == "user" and (messages[i].content or "").strip()
        ),
        None,
    )
    if last is None:
        raise InvalidRequestError(
            "The file_search tool searches for the last user message, and there is none.",
            param="input",
        )
    # the message's end, cut to what a search takes: a long message is no 400 (its end is
    # what the embedding reads anyway)
    query = (messages[last].content or "")[-MAX_QUERY_CHARS:]
    hits = await search.search(
        principal,
        tool.vector_store_ids,
        [query],
        max_num_results=tool.max_num_results,
        filters=tool.filters,
        score_threshold=tool.score_threshold,
        # its own request id: the ledger keeps one record per id, and the generation's
        # record follows under the response's
        ctx=replace(ctx, request_id=new_request_id()),
        param=f"{tool.param}.vector_store_ids",
        weights=tool.weights,
        ranker=tool.ranker,
        ranker_param=f"{tool.param}.ranking_options.ranker",
    )
    out = list(messages)
    out[last] = _with_passages(messages[last], hits)
    citations: list[tuple[str, str]] = []
    for h in hits:
        if (h.file_id, h.filename) not in citations:
            citations.append((h.file_id, h.filename))
    results = (
        [result_dict(h.file_id, h.filename, h.score, h.text, h.attributes) for h in hits]
        if with_results
        else None
    )
    item = file_search_call_item(item_id("fs"), [query], "completed", results)
    return FoundFiles(out, item, citations, hits)


__all__ = ["FoundFiles", "search_files"]
