"""Chunking: units that give back the text, windows within the budget, the overlap."""

from __future__ import annotations

import pytest

from modelgrid.knowledge.chunking import ChunkPlan, halve, pack_units, split_units


def test_units_join_back_to_the_text() -> None:
    text = "First sentence. Second one!\n\nA new paragraph; with a clause: and more\n- item"
    units = split_units(text)
    assert "".join(units) == text
    assert units == [
        "First sentence. ",
        "Second one!\n\n",
        "A new paragraph; ",
        "with a clause: ",
        "and more\n",
        "- item",
    ]


def test_a_long_sentence_is_cut_into_runs_of_40_words() -> None:
    text = " ".join(f"w{i}" for i in range(100))
    units = split_units(text)
    assert "".join(units) == text
    assert [len(u.split()) for u in units] == [40, 40, 20]


def test_windows_respect_the_budget_and_overlap() -> None:
    units = [f"s{i}. " for i in range(10)]
    counts = [3] * 10
    chunks = pack_units(units, counts, budget=9, overlap=3, heading="H")
    assert [c.text for c in chunks] == [
        "s0. s1. s2.",
        "s2. s3. s4.",
        "s4. s5. s6.",
        "s6. s7. s8.",
        "s8. s9.",
    ]
    assert [c.tokens for c in chunks] == [9, 9, 9, 9, 6]
    assert {c.heading for c in chunks} == {"H"}


def test_no_overlap_and_every_window_moves_on() -> None:
    chunks = pack_units(["a ", "b ", "c "], [5, 5, 5], budget=5, overlap=100)
    assert [c.text for c in chunks] == ["a", "b", "c"]


def test_a_unit_over_the_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="over the budget"):
        pack_units(["big"], [11], budget=10, overlap=0)


def test_halve_cuts_at_a_space() -> None:
    assert halve("alpha beta gamma delta") == ["alpha beta", " gamma delta"]
    assert halve("abcdef") == ["abc", "def"]


def test_plan_fitted_to_the_model() -> None:
    assert ChunkPlan().fitted(256) == ChunkPlan(256, 128)
    assert ChunkPlan(200, 50).fitted(256) == ChunkPlan(200, 50)
