"""The Responses API's ``file_search`` tool: the request's tool and the output it adds.

References: https://platform.openai.com/docs/guides/tools-file-search and the ``openai``
SDK's ``types/responses/file_search_tool.py``, ``response_file_search_tool_call.py``,
``response_output_text.py`` (``AnnotationFileCitation``) and the
``response.file_search_call.*`` events. The tool is ``{"type": "file_search",
"vector_store_ids": [...], "max_num_results"?: 1..50, "filters"?, "ranking_options"?:
{"ranker"?, "score_threshold"?: 0..1, "hybrid_search"?}}``; one per request. ``ranker``
``auto`` / ``default-2024-11-15`` re-ranks (``serving.file_search``), absent or ``none`` does
not; the echoed tool names the ranker only when one was asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelgrid.core.errors import InvalidRequestError
from modelgrid.protocol.openai.attribute_filters import Filter, parse_filter
from modelgrid.protocol.openai.vector_stores import DEFAULT_NUM_RESULTS, MAX_NUM_RESULTS

RANKERS = ("none", "auto", "default-2024-11-15")
STORES_MAX = 10  # modelgrid's bound (each store is one more retrieval)


@dataclass(frozen=True, slots=True)
class FileSearchTool:
    """A checked ``file_search`` tool; ``param`` is its path in the request (``tools[i]``)."""

    vector_store_ids: tuple[str, ...]
    max_num_results: int
    filters: Filter | None
    score_threshold: float
    param: str
    raw: dict[str, Any]
    weights: tuple[float, float] | None = None  # (embedding, text): ``hybrid_search``
    ranker: str | None = None  # ``ranking_options.ranker`` (``None``: absent)


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


def file_search_tool(tools: list[dict[str, Any]] | None) -> FileSearchTool | None:
    """The request's ``file_search`` tool, checked (``None``: it has none).

    Raises:
        InvalidRequestError: two of them; no or bad ``vector_store_ids``; ``max_num_results``
            out of 1..50; a malformed filter or ranking option (``param`` names it).
    """
    found = [(i, t) for i, t in enumerate(tools or ()) if t.get("type") == "file_search"]
    if not found:
        return None
    if len(found) > 1:
        raise _bad("Only one 'file_search' tool is allowed.", f"tools[{found[1][0]}]")
    i, tool = found[0]
    where = f"tools[{i}]"
    ids = tool.get("vector_store_ids")
    if (
        not isinstance(ids, list)
        or not ids
        or not all(isinstance(v, str) and v for v in ids)
        or len(ids) > STORES_MAX
    ):
        raise _bad(
            f"'{where}.vector_store_ids' must list 1 to {STORES_MAX} vector store ids.",
            f"{where}.vector_store_ids",
        )
    n = tool.get("max_num_results", DEFAULT_NUM_RESULTS)
    if n is None:
        n = DEFAULT_NUM_RESULTS
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_NUM_RESULTS:
        raise _bad(
            f"'{where}.max_num_results' must be an integer in 1..{MAX_NUM_RESULTS}.",
            f"{where}.max_num_results",
        )
    raw_filters = tool.get("filters")
    filters = parse_filter(raw_filters, f"{where}.filters") if raw_filters is not None else None
    ranking = tool.get("ranking_options") or {}
    if not isinstance(ranking, dict):
        raise _bad(f"'{where}.ranking_options' must be an object.", f"{where}.ranking_options")
    ranker = ranking.get("ranker")
    if ranker is not None and ranker not in RANKERS:
        raise _bad(
            f"'{where}.ranking_options.ranker' must be one of {', '.join(RANKERS)}.",
            f"{where}.ranking_options.ranker",
        )
    threshold = ranking.get("score_threshold", 0.0)
    if threshold is None:
        threshold = 0.0
    if (
        not isinstance(threshold, int | float)
        or isinstance(threshold, bool)
        or not 0 <= threshold <= 1
    ):
        raise _bad(
            f"'{where}.ranking_options.score_threshold' must be a number in 0..1.",
            f"{where}.ranking_options.score_threshold",
        )
    weights = _weights(ranking.get("hybrid_search"), f"{where}.ranking_options.hybrid_search")
    return FileSearchTool(tuple(ids), n, filters, float(threshold), where, tool, weights, ranker)


def _weights(raw: Any, param: str) -> tuple[float, float] | None:
    """``hybrid_search``'s ``(embedding_weight, text_weight)``: numbers >= 0, not both 0
    (``None``: absent)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _bad(f"'{param}' must be an object.", param)
    out = []
    for name in ("embedding_weight", "text_weight"):
        w = raw.get(name)
        if not isinstance(w, int | float) or isinstance(w, bool) or w < 0:
            raise _bad(f"'{param}.{name}' must be a number >= 0.", f"{param}.{name}")
        out.append(float(w))
    if out[0] + out[1] <= 0:
        raise _bad(f"'{param}' weights must not both be 0.", param)
    return out[0], out[1]


def split_choice(
    tool_choice: str | dict[str, Any] | None, search: FileSearchTool | None, functions: int
) -> tuple[str | dict[str, Any] | None, FileSearchTool | None]:
    """``tool_choice`` with a ``file_search`` tool: what is left for the function tools, and
    whether the search runs. ``{"type": "file_search"}`` runs it (the functions left to the
    model); ``none`` runs no tool, so no search; ``auto`` and ``required`` with no function
    tool are the search alone (it always runs: the gateway, not the model, calls it)."""
    if search is None:
        return tool_choice, None
    if tool_choice == "none":
        return tool_choice, None
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "file_search":
        return None, search
    if not functions and tool_choice in ("auto", "required"):
        return None, search
    return tool_choice, search


def echoed_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """The tool as the response object repeats it."""
    ranking = tool.get("ranking_options") or {}
    return {
        "type": "file_search",
        "vector_store_ids": list(tool.get("vector_store_ids") or ()),
        "filters": tool.get("filters"),
        "max_num_results": tool.get("max_num_results") or DEFAULT_NUM_RESULTS,
        "ranking_options": {
            # what ran: no re-ranking unless asked for (OpenAI's default is "auto"), so no
            # ranker is named then (the SDK's type has no "none" for the tool)
            **({"ranker": ranking["ranker"]} if ranking.get("ranker") else {}),
            "score_threshold": ranking.get("score_threshold") or 0.0,
            **(
                {"hybrid_search": ranking["hybrid_search"]}
                if ranking.get("hybrid_search") is not None
                else {}
            ),
        },
    }


def file_search_call_item(
    item_id: str, queries: list[str], status: str, results: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """A ``file_search_call`` output item (``results``: ``None`` unless the request's
    ``include`` names ``file_search_call.results``)."""
    return {
        "id": item_id,
        "type": "file_search_call",
        "status": status,
        "queries": queries,
        "results": results,
    }


def result_dict(
    file_id: str, filename: str, score: float, text: str, attributes: dict[str, Any]
) -> dict[str, Any]:
    """One entry of a ``file_search_call``'s ``results``."""
    return {
        "file_id": file_id,
        "filename": filename,
        "score": round(score, 6),
        "text": text,
        "attributes": attributes,
    }


def file_citation(file_id: str, filename: str, index: int) -> dict[str, Any]:
    """An ``output_text`` annotation naming a file the answer drew on (``index``: the
    character offset in the text it follows)."""
    return {"type": "file_citation", "file_id": file_id, "filename": filename, "index": index}


__all__ = [
    "FileSearchTool",
    "echoed_tool",
    "file_citation",
    "file_search_call_item",
    "file_search_tool",
    "result_dict",
    "split_choice",
]
