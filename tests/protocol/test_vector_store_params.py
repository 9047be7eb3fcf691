"""Vector stores' request rules: attribute filters, chunking bounds, attributes, the
``file_search`` tool (pure functions, exact values)."""

from __future__ import annotations

from typing import Any

import pytest

from modelgrid.core.errors import InvalidRequestError
from modelgrid.protocol.openai.attribute_filters import check_attributes, matches, parse_filter
from modelgrid.protocol.openai.file_search_tool import echoed_tool, file_search_tool, split_choice
from modelgrid.protocol.openai.vector_stores import chunking_bounds

ATTRS = {"region": "eu", "year": 2024, "public": True, "score": 4.5}


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"type": "eq", "key": "region", "value": "eu"}, True),
        ({"type": "eq", "key": "region", "value": "us"}, False),
        ({"type": "ne", "key": "region", "value": "us"}, True),
        ({"type": "ne", "key": "missing", "value": "x"}, True),
        ({"type": "eq", "key": "missing", "value": "x"}, False),
        ({"type": "gt", "key": "year", "value": 2023}, True),
        ({"type": "gt", "key": "year", "value": 2024}, False),
        ({"type": "gte", "key": "year", "value": 2024}, True),
        ({"type": "lt", "key": "score", "value": 5}, True),
        ({"type": "lte", "key": "score", "value": 4.4}, False),
        ({"type": "gt", "key": "region", "value": 3}, False),  # a string is not a number
        ({"type": "eq", "key": "public", "value": True}, True),
        ({"type": "eq", "key": "public", "value": 1}, False),  # a boolean is not a number
        ({"type": "in", "key": "region", "value": ["us", "eu"]}, True),
        ({"type": "nin", "key": "region", "value": ["us", "eu"]}, False),
        ({"type": "nin", "key": "missing", "value": ["x"]}, True),
        (
            {
                "type": "and",
                "filters": [
                    {"type": "eq", "key": "region", "value": "eu"},
                    {"type": "gte", "key": "year", "value": 2025},
                ],
            },
            False,
        ),
        (
            {
                "type": "or",
                "filters": [
                    {"type": "eq", "key": "region", "value": "us"},
                    {
                        "type": "and",
                        "filters": [
                            {"type": "eq", "key": "public", "value": True},
                            {"type": "lt", "key": "year", "value": 2030},
                        ],
                    },
                ],
            },
            True,
        ),
    ],
)
def test_filters_match(flt: dict[str, Any], expected: bool) -> None:
    assert matches(parse_filter(flt), ATTRS) is expected


@pytest.mark.parametrize(
    ("flt", "param"),
    [
        ([], "filters"),
        ({"type": "like", "key": "a", "value": 1}, "filters.type"),
        ({"type": "eq", "value": 1}, "filters.key"),
        ({"type": "eq", "key": "a", "value": None}, "filters.value"),
        ({"type": "in", "key": "a", "value": "x"}, "filters.value"),
        ({"type": "gt", "key": "a", "value": True}, "filters.value"),
        ({"type": "and", "filters": []}, "filters.filters"),
        (
            {"type": "or", "filters": [{"type": "eq", "key": "a", "value": 1}, {"type": "x"}]},
            "filters.filters[1].type",
        ),
    ],
)
def test_bad_filters_name_the_part(flt: Any, param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_filter(flt)
    assert caught.value.param == param


def test_chunking_bounds_are_openais() -> None:
    assert chunking_bounds(None) == (800, 400)
    assert chunking_bounds({"type": "auto"}) == (800, 400)
    static = {
        "type": "static",
        "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 50},
    }
    assert chunking_bounds(static) == (100, 50)
    top = {"type": "static", "static": {"max_chunk_size_tokens": 4096, "chunk_overlap_tokens": 0}}
    assert chunking_bounds(top) == (4096, 0)
    cases = [
        ({"type": "static", "static": {"max_chunk_size_tokens": 99, "chunk_overlap_tokens": 0}},
         "chunking_strategy.static.max_chunk_size_tokens"),
        ({"type": "static", "static": {"max_chunk_size_tokens": 4097, "chunk_overlap_tokens": 0}},
         "chunking_strategy.static.max_chunk_size_tokens"),
        ({"type": "static", "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 101}},
         "chunking_strategy.static.chunk_overlap_tokens"),
        ({"type": "static", "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": -1}},
         "chunking_strategy.static.chunk_overlap_tokens"),
        ({"type": "static"}, "chunking_strategy.static"),
        ({"type": "semantic"}, "chunking_strategy.type"),
    ]  # fmt: skip
    for raw, param in cases:
        with pytest.raises(InvalidRequestError) as caught:
            chunking_bounds(raw)
        assert caught.value.param == param, raw


def test_attributes_are_checked() -> None:
    assert check_attributes({"a": "x", "b": 1, "c": False}) == {"a": "x", "b": 1, "c": False}
    assert check_attributes(None) is None
    for raw, param in [
        ({str(i): i for i in range(17)}, "attributes"),
        ({"a": "x" * 513}, "attributes.a"),
        ({"a": [1]}, "attributes.a"),
        ({"k" * 65: 1}, "attributes"),
    ]:
        with pytest.raises(InvalidRequestError) as caught:
            check_attributes(raw)
        assert caught.value.param == param


def test_file_search_tool_is_checked() -> None:
    assert file_search_tool([{"type": "function", "name": "f"}]) is None
    tool = file_search_tool(
        [
            {"type": "function", "name": "f"},
            {
                "type": "file_search",
                "vector_store_ids": ["vs_1"],
                "max_num_results": 3,
                "ranking_options": {"score_threshold": 0.25},
            },
        ]
    )
    assert tool is not None
    assert (tool.vector_store_ids, tool.max_num_results, tool.score_threshold, tool.param) == (
        ("vs_1",),
        3,
        0.25,
        "tools[1]",
    )
    weighted = file_search_tool([{
        "type": "file_search", "vector_store_ids": ["a"],
        "ranking_options": {"hybrid_search": {"embedding_weight": 3, "text_weight": 0.5}},
    }])  # fmt: skip
    assert weighted is not None and weighted.weights == (3.0, 0.5)
    assert (tool.weights, tool.ranker) == (None, None)  # the defaults: no re-ranking
    ranked = file_search_tool([{
        "type": "file_search", "vector_store_ids": ["a"], "ranking_options": {"ranker": "auto"},
    }])  # fmt: skip
    assert ranked is not None and ranked.ranker == "auto"
    assert echoed_tool(ranked.raw)["ranking_options"]["ranker"] == "auto"
    assert echoed_tool(tool.raw)["ranking_options"] == {"score_threshold": 0.25}
    for tools, param in [
        ([{"type": "file_search"}], "tools[0].vector_store_ids"),
        (
            [
                {
                    "type": "file_search",
                    "vector_store_ids": ["a"],
                    "ranking_options": {"hybrid_search": {"embedding_weight": 0, "text_weight": 0}},
                }
            ],
            "tools[0].ranking_options.hybrid_search",
        ),
        (
            [
                {
                    "type": "file_search",
                    "vector_store_ids": ["a"],
                    "ranking_options": {
                        "hybrid_search": {"embedding_weight": -1, "text_weight": 1}
                    },
                }
            ],
            "tools[0].ranking_options.hybrid_search.embedding_weight",
        ),
        ([{"type": "file_search", "vector_store_ids": []}], "tools[0].vector_store_ids"),
        (
            [{"type": "file_search", "vector_store_ids": ["a"], "max_num_results": 51}],
            "tools[0].max_num_results",
        ),
        (
            [{"type": "file_search", "vector_store_ids": ["a"], "filters": {"type": "x"}}],
            "tools[0].filters.type",
        ),
        (
            [
                {
                    "type": "file_search",
                    "vector_store_ids": ["a"],
                    "ranking_options": {"score_threshold": 2},
                }
            ],
            "tools[0].ranking_options.score_threshold",
        ),
        (
            [
                {"type": "file_search", "vector_store_ids": ["a"]},
                {"type": "file_search", "vector_store_ids": ["b"]},
            ],
            "tools[1]",
        ),
    ]:
        with pytest.raises(InvalidRequestError) as caught:
            file_search_tool(tools)
        assert caught.value.param == param, tools


def test_tool_choice_with_file_search() -> None:
    tool = file_search_tool([{"type": "file_search", "vector_store_ids": ["vs_1"]}])
    assert split_choice("auto", tool, 0) == (None, tool)
    assert split_choice("required", tool, 0) == (None, tool)
    assert split_choice({"type": "file_search"}, tool, 1) == (None, tool)
    assert split_choice("none", tool, 0) == ("none", None)  # no tool runs: no search
    assert split_choice("required", tool, 1) == ("required", tool)  # a function must be called
    fn = {"type": "function", "name": "f"}
    assert split_choice(fn, tool, 1) == (fn, tool)
    assert split_choice("auto", None, 0) == ("auto", None)
