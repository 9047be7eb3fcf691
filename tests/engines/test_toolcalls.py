"""Qwen tool-call parsing: whole calls out, everything else back as unchanged text, however
the text is split into increments; and the per-choice delta assembly around it."""

from __future__ import annotations

import json
import random

import pytest

from modelgrid.core.types import (
    FinishReason,
    InferenceRequest,
    SamplingParams,
    TokenLogprob,
    Tool,
    ToolChoice,
    ToolChoiceMode,
)
from modelgrid.engines.output import ChoiceOutput, token_text
from modelgrid.engines.toolcalls import ParsedCall, Piece, ToolCallParser

NAMES = ("get_weather", "get_time")
PARIS = ParsedCall("get_weather", '{"city": "Paris"}')
TOKYO = ParsedCall("get_time", '{"city": "Tokyo"}')
TAGGED = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
TAGGED_2 = '<tool_call>\n{"name": "get_time", "arguments": {"city": "Tokyo"}}\n</tool_call>'
BARE = '{"name": "get_weather", "arguments": {"city": "Paris"}}'


def parse(text: str, step: int | None = None, seed: int = 0) -> list[Piece]:
    parser = ToolCallParser(NAMES)
    out: list[Piece] = []
    rng = random.Random(seed)
    i = 0
    while i < len(text):
        k = len(text) if step is None else (step or rng.randint(1, 6))
        out += parser.feed(text[i : i + k])
        i += k
    out += parser.finish()
    merged: list[Piece] = []
    for p in out:
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p
        else:
            merged.append(p)
    return merged


CASES = [
    ("Hello there", ["Hello there"]),
    (TAGGED, [PARIS]),
    (TAGGED + "\n" + TAGGED_2, [PARIS, TOKYO]),
    ("Let me check.\n" + TAGGED, ["Let me check.\n", PARIS]),
    (TAGGED + "\nDone.", [PARIS, "Done."]),
    (BARE, [PARIS]),
    ("  " + BARE, [PARIS]),
    ("```json\n" + BARE + "\n```", [PARIS]),
    (
        BARE + "\n" + BARE.replace("get_weather", "get_time").replace("Paris", "Tokyo"),
        [PARIS, TOKYO],
    ),
    ("[" + BARE + "]", [PARIS]),
    ('{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}', [PARIS]),
    ('<tool_call>{"name": "get_weather", "parameters": {"city": "Paris"}}</tool_call>', [PARIS]),
    ('<tool_call>{"name": "get_time"}</tool_call>', [ParsedCall("get_time", "{}")]),
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}', [PARIS]),  # no close
]
TEXT_ONLY = [
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par',  # truncated
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": }}\n</tool_call>',  # bad JSON
    '<tool_call>\n{"name": "rm_rf", "arguments": {}}\n</tool_call>',  # undeclared function
    '<tool_call>\n{"name": "get_weather", "arguments": [1]}\n</tool_call>',  # not an object
    '{"name": "Buddy", "age": 3}',
    '{"city": "Paris"}',
    "[1, 2, 3]",
    "```python\nprint(1)\n```",
    '```json\n{"a": 1}\n```',
    "a < b and <tool",
    "   ",
    "",
    ' {"name": "get_weather", "arguments": {"city": "Par',
]


@pytest.mark.parametrize(("text", "expected"), CASES)
@pytest.mark.parametrize("step", [None, 1, 0])
def test_calls_are_parsed_whatever_the_split(text: str, expected: list[Piece], step: int) -> None:
    for seed in range(3):
        assert parse(text, step, seed) == expected


@pytest.mark.parametrize("text", TEXT_ONLY)
@pytest.mark.parametrize("step", [None, 1, 0])
def test_what_is_not_a_call_comes_back_unchanged(text: str, step: int) -> None:
    for seed in range(3):
        out = parse(text, step, seed)
        assert all(isinstance(p, str) for p in out)
        assert "".join(out) == text  # type: ignore[arg-type]


def test_text_streams_without_waiting_for_the_end() -> None:
    parser = ToolCallParser(NAMES)
    assert parser.feed("The answer ") == ["The answer "]
    assert parser.feed("is <tool") == ["is "]  # a possible tag opening is held back
    assert parser.feed("kit>") == ["<toolkit>"]
    assert parser.feed(' {"name": "Bob"}') == [' {"name": "Bob"}']  # bare calls only at the start


def test_a_bare_call_is_emitted_once_its_json_closes() -> None:
    parser = ToolCallParser(NAMES)
    assert parser.feed('{"name": "get_weather", "arguments": {"city": "Par') == []
    assert parser.feed('is"}}') == [PARIS]
    assert parser.finish() == []


def _request(**kw: object) -> InferenceRequest:
    tools = (Tool("get_weather"), Tool("get_time"))
    return InferenceRequest("r", "m", messages=[], tools=tools, **kw)  # type: ignore[arg-type]


def _feed(out: ChoiceOutput, text: str, logprobs: bool = False) -> list:  # type: ignore[type-arg]
    deltas = []
    for i, word in enumerate(text.split(" ")):
        piece = (word if i == 0 else " " + word).encode()
        lp = TokenLogprob(piece.decode(), piece, -1.0) if logprobs else None
        deltas += out.token(piece, lp)
        if out.stopped:
            break
    return deltas


def test_choice_output_turns_calls_into_deltas_and_finishes_with_tool_calls() -> None:
    out = ChoiceOutput(0, _request())
    deltas = _feed(out, "Checking. " + TAGGED + "\n" + TAGGED_2, logprobs=True)
    deltas += out.finish(FinishReason.STOP)
    assert "".join(d.text for d in deltas) == "Checking. "
    calls = [c for d in deltas for c in d.tool_calls]
    assert [(c.index, c.name, json.loads(c.arguments)) for c in calls] == [
        (0, "get_weather", {"city": "Paris"}),
        (1, "get_time", {"city": "Tokyo"}),
    ]
    assert all(c.id and c.id.startswith("call_") and len(c.id) == 29 for c in calls)
    assert deltas[-1].finish_reason is FinishReason.TOOL_CALLS
    assert sum(len(d.logprobs) for d in deltas) == out.produced == deltas[-1].completion_tokens


def test_choice_output_length_stays_length_and_single_call_without_parallel() -> None:
    out = ChoiceOutput(0, _request(parallel_tool_calls=False))
    deltas = _feed(out, TAGGED + TAGGED_2) + out.finish(FinishReason.LENGTH)
    assert [c.name for d in deltas for c in d.tool_calls] == ["get_weather"]
    assert deltas[-1].finish_reason is FinishReason.LENGTH


def test_choice_output_without_tools_or_with_none_is_plain_text() -> None:
    for request in (
        InferenceRequest("r", "m", messages=[]),
        _request(tool_choice=ToolChoice(ToolChoiceMode.NONE)),
    ):
        out = ChoiceOutput(0, request)
        deltas = _feed(out, TAGGED) + out.finish(FinishReason.STOP)
        assert "".join(d.text for d in deltas) == TAGGED
        assert deltas[-1].finish_reason is FinishReason.STOP


def test_choice_output_stop_string_ends_before_a_call() -> None:
    out = ChoiceOutput(0, _request(sampling=SamplingParams(stop=("<tool_call>",))))
    deltas = _feed(out, "Hi " + TAGGED)
    assert out.stopped
    deltas += out.finish(FinishReason.STOP)
    assert "".join(d.text for d in deltas) == "Hi "
    assert not any(d.tool_calls for d in deltas)


def test_token_text_spells_partial_characters_as_bytes() -> None:
    assert token_text("日".encode()) == "日"
    assert token_text("日".encode()[:2]) == "bytes:\\xe6\\x97"
