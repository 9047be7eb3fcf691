"""Documents' metadata and tags, and DashScope's ``metadata_filter`` / ``tags`` over them."""

from __future__ import annotations

from typing import Any

import pytest

from modelgrid.core.errors import InvalidRequestError
from modelgrid.protocol.document_labels import check_metadata, check_tags, passes

META = {"team": "billing", "year": 2026, "ratio": 0.5, "draft": False}


def test_check_metadata_and_tags() -> None:
    assert check_metadata(META) == META
    assert check_metadata(None) is None and check_metadata({}) is None
    assert check_tags(["faq", "en", "faq", "é" * 64]) == ["faq", "en", "é" * 64]
    assert check_tags(None) is None and check_tags([]) is None
    # repeats are dropped before the tags are counted
    assert check_tags(["faq"] * 21) == ["faq"]
    assert check_tags([str(i % 20) for i in range(45)]) == [str(i) for i in range(20)]


@pytest.mark.parametrize(
    ("raw", "param", "message"),
    [
        ("x", "tags", "'tags' must be an array of strings."),
        ({"a": 1}, "tags", "'tags' must be an array of strings."),
        ([str(i) for i in range(21)], "tags", "'tags' has 21 different tags; at most 20."),
        ([*map(str, range(20)), "0", "21"], "tags", "'tags' has 21 different tags; at most 20."),
        (["ok", None], "tags", "'tags[1]' must be a string of 1..64 characters."),
        ([""], "tags", "'tags[0]' must be a string of 1..64 characters."),
        (["x" * 65], "tags", "'tags[0]' must be a string of 1..64 characters."),
        (
            ["a\tb"],
            "tags",
            "'tags[0]' must not contain control characters (U+0009 at character 2).",
        ),
    ],
)
def test_bad_tags(raw: Any, param: str, message: str) -> None:
    with pytest.raises(InvalidRequestError) as e:
        check_tags(raw)
    assert (e.value.param, str(e.value)) == (param, message)


def test_bad_metadata_names_the_key() -> None:
    with pytest.raises(InvalidRequestError) as e:
        check_metadata({"team": {"a": 1}}, "parameters.rag_options.metadata_filter")
    assert e.value.param == "parameters.rag_options.metadata_filter.team"
    with pytest.raises(InvalidRequestError) as e:
        check_metadata({"team": "a\u009bb"}, "parameters.rag_options.metadata_filter")
    assert (e.value.param, str(e.value)) == (
        "parameters.rag_options.metadata_filter.team",
        "'parameters.rag_options.metadata_filter.team' must not contain control characters "
        "(U+009B at character 2).",
    )
    assert check_metadata({"note": "a\tb\r\n"}) == {"note": "a\tb\r\n"}  # prose
    with pytest.raises(InvalidRequestError) as e:
        check_metadata([("team", "a")])
    assert (e.value.param, str(e.value)) == ("metadata", "'metadata' must be an object.")


@pytest.mark.parametrize(
    ("metadata_filter", "tags", "expected"),
    [
        (None, None, True),
        ({"team": "billing"}, None, True),
        ({"team": "billing", "year": 2026}, None, True),
        ({"year": 2026.0}, None, True),  # numbers compare as numbers
        ({"team": "Billing"}, None, False),  # strings exactly
        ({"team": "billing", "year": 2025}, None, False),  # every key
        ({"draft": 0}, None, False),  # a boolean equals only a boolean
        ({"draft": False}, None, True),
        ({"missing": "x"}, None, False),
        (None, ["faq"], True),
        (None, ["faq", "en"], True),
        (None, ["faq", "de"], False),  # every tag
        ({"team": "billing"}, ["de"], False),  # both filters
    ],
)
def test_passes(metadata_filter: Any, tags: Any, expected: bool) -> None:
    assert passes(metadata_filter, tags, META, ["faq", "en"]) is expected


def test_a_document_without_metadata_or_tags_passes_no_filter() -> None:
    assert passes(None, None, None, None) is True
    assert passes({"team": "billing"}, None, None, None) is False
    assert passes(None, ["faq"], None, None) is False
