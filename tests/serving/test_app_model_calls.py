"""The pure parts of the model's query rewriting and memory extraction: the rewriting prompt,
reading the model's query, parsing and grounding its facts."""

from __future__ import annotations

from modelgrid.core.types import ChatMessage
from modelgrid.serving.app_store import Turn
from modelgrid.serving.memory_extraction import grounded, keep_facts, parse_facts
from modelgrid.serving.query_rewrite import SYSTEM, clean_query, rewrite_messages


def test_rewrite_prompt_keeps_the_last_two_turns() -> None:
    history = [Turn("a", "A"), Turn("b", "B"), Turn("c", "C")]
    assert rewrite_messages(history, " and d? ") == [
        ChatMessage("system", SYSTEM),
        ChatMessage(
            "user",
            "Conversation:\nUser: b\nAssistant: B\nUser: c\nAssistant: C\n\n"
            "Last message: and d?\n\nSearch query:",
        ),
    ]
    assert rewrite_messages([], "refund days") == [
        ChatMessage("system", SYSTEM),
        ChatMessage("user", "Last message: refund days\n\nSearch query:"),
    ]
    long = rewrite_messages([Turn("x" * 1000, "")], "q")[1].content or ""
    assert long.startswith("Conversation:\nUser: " + "x" * 600 + "\n\nLast")


def test_clean_query() -> None:
    assert clean_query('Search query: "battery warranty length"\nBecause…') == (
        "battery warranty length"
    )
    assert clean_query("\n\n  refund days  \n") == "refund days"
    assert clean_query("Query: 'shipping time'") == "shipping time"
    assert clean_query("") is None
    assert clean_query('""') is None
    assert clean_query("w" * 300) == "w" * 300
    assert clean_query("w" * 301) is None


def test_parse_facts_is_strict() -> None:
    assert parse_facts('{"facts": ["I live in Lyon"]}') == ["I live in Lyon"]
    assert parse_facts('{"facts": []}') == []
    assert parse_facts('["I live in Lyon"]') is None
    assert parse_facts('{"facts": ["a"], "more": 1}') is None
    assert parse_facts('{"facts": [1]}') is None
    assert parse_facts('{"facts": "I live in Lyon"}') is None
    assert parse_facts('{"facts": ["I live') is None


def test_grounded_facts_only() -> None:
    said = "My name is Ana, I'm a nurse. I live in Lyon with two cats. When do you ship?"
    assert grounded("My name is Ana", said)
    assert grounded("I live in Lyon", said)
    assert grounded("The user lives in Lyon", said)  # "lives": the user's "live"
    assert not grounded("I live in Paris", said)
    assert not grounded("I love jazz", said)
    assert not grounded("I am", said)  # no word of its own
    # a question states nothing; a number must be one the user stated
    asked = "My name is Ana. How many days do I have to return the kettle?"
    assert not grounded("I have to return the kettle 30 days", asked)
    assert grounded("My name is Ana", asked)
    assert grounded("I am 31", "I'm 31.")
    assert not grounded("I am 30", "I'm 31.")
    assert not grounded("My name is Ana 2", "My name is Ana.")
    assert keep_facts(
        [
            "My name is Ana",
            "my name is   Ana.",  # the same, once
            "I live in Paris",
            "I have two cats",
            "When do you ship?",
            "Ana",  # too short
            "I am a nurse " * 50,  # too long
        ],
        said,
    ) == ["My name is Ana.", "I have two cats."]
    many = [f"I live in Lyon {n}" for n in range(8)]
    assert len(keep_facts(many, said + " 0 1 2 3 4 5 6 7")) == 5
