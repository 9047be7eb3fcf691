"""Long-term memory's deterministic fact extraction and the retrieval query rewrite."""

from __future__ import annotations

from modelgrid.serving.memory import extract_facts, recall_text
from modelgrid.serving.query_rewrite import concat_query as rewrite_query


def test_extract_facts() -> None:
    text = (
        "Hi! My name is Ana. I live in Lyon, near the river. What is the refund window? "
        "Remember that I prefer email.\nthe kettle is broken. Is my order late? I am."
    )
    assert extract_facts(text) == [
        "My name is Ana.",
        "I live in Lyon, near the river.",
        "I prefer email.",
    ]
    assert extract_facts("What is my order number?") == []


def test_recall_text() -> None:
    assert recall_text([]) == ""
    assert recall_text(["I live in Lyon."]) == (
        "What the user told you in earlier conversations:\n- I live in Lyon."
    )


def test_rewrite_query_keeps_the_last_two_user_turns() -> None:
    assert rewrite_query(["a", "b", " ", "c"], " d ") == "b\nc\nd"
    assert rewrite_query([], "q") == "q"
    assert len(rewrite_query(["x" * 3000], "why?")) == 2000
    assert rewrite_query(["x" * 3000], "why?").endswith("\nwhy?")
