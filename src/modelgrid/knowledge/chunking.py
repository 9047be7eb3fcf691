"""Chunking (pure): a section's text into overlapping windows of at most N tokens.

A section is cut into *units* — sentences, and runs of at most ``UNIT_WORDS`` words inside a
longer one — that keep their own whitespace, so joining units gives back the text. The
caller counts each unit's tokens with the embedding model's own tokenizer (the routed
``count_tokens`` of the knowledge base's model: exact word pieces, not an estimate) and
``pack_units`` packs them greedily into windows of at most ``budget`` tokens; each next window
starts early enough to repeat about ``overlap`` tokens of the previous one (whole units; never
the previous window's first unit, so every window moves on). A unit that alone exceeds the
budget is split again by the caller (``halve``) and re-counted.

Chunks never cross a section, so a heading (Markdown, HTML) or a page (PDF) starts a chunk.
Token counts of joined units are the sum of the units' counts; with word-piece tokenizers
that is exact at whitespace boundaries, and the windows leave room for the model's special
tokens (``overhead``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from modelgrid.core.errors import DocumentError

UNIT_WORDS = 40
MIN_BUDGET = 8
Counter = Callable[[list[str]], Awaitable[list[int]]]
DEFAULT_CHUNK_TOKENS = 800
DEFAULT_CHUNK_OVERLAP = 400
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n\s*\n|\n(?=\s*[-*•]\s)")
_WORD_RUN = re.compile(r"\S+\s*")


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """Window size and overlap in tokens (overlap < size)."""

    size: int = DEFAULT_CHUNK_TOKENS
    overlap: int = DEFAULT_CHUNK_OVERLAP

    def fitted(self, max_input_tokens: int) -> ChunkPlan:
        """This plan within a model that reads at most ``max_input_tokens``: the size cut to
        it and the overlap scaled by the same factor (800/400 becomes 256/128 for a model
        that reads 256)."""
        if self.size <= max_input_tokens:
            return self
        return ChunkPlan(max_input_tokens, self.overlap * max_input_tokens // self.size)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One window of a section: its heading, text and token count (of the text alone)."""

    heading: str
    text: str
    tokens: int


def split_units(text: str) -> list[str]:
    """``text`` cut into sentences and word runs whose concatenation is ``text``."""
    units: list[str] = []
    pos = 0
    for m in _SENTENCE_END.finditer(text):
        units.extend(_words(text[pos : m.end()]))
        pos = m.end()
    units.extend(_words(text[pos:]))
    return [u for u in units if u]


def _words(piece: str) -> list[str]:
    words = _WORD_RUN.findall(piece)
    lead = piece[: len(piece) - len(piece.lstrip())]
    if len(words) <= UNIT_WORDS:
        return [piece] if piece else []
    runs = ["".join(words[i : i + UNIT_WORDS]) for i in range(0, len(words), UNIT_WORDS)]
    runs[0] = lead + runs[0]
    return runs


def halve(unit: str) -> list[str]:
    """A unit too long for one window, in two (at the middle space, else the middle)."""
    mid = len(unit) // 2
    cut = unit.rfind(" ", 0, mid)
    if cut <= 0:
        cut = unit.find(" ", mid)
    if cut <= 0 or cut >= len(unit) - 1:
        cut = mid
    return [unit[:cut], unit[cut:]]


def pack_units(
    units: Sequence[str], counts: Sequence[int], budget: int, overlap: int, heading: str = ""
) -> list[Chunk]:
    """Windows of whole units, each at most ``budget`` tokens, overlapping by up to
    ``overlap`` tokens (see the module docstring).

    Raises:
        ValueError: a unit alone is over ``budget`` (split it first), or ``budget`` < 1.
    """
    if budget < 1:
        raise ValueError("the window budget must be at least one token")
    if len(units) != len(counts):
        raise ValueError("one count per unit")
    for unit, n in zip(units, counts, strict=True):
        if n > budget:
            raise ValueError(f"a unit of {n} tokens is over the budget of {budget}: {unit[:40]!r}")
    chunks: list[Chunk] = []
    start = 0
    while start < len(units):
        end, total = start, 0
        while end < len(units) and total + counts[end] <= budget:
            total += counts[end]
            end += 1
        text = "".join(units[start:end]).strip()
        if text:
            chunks.append(Chunk(heading, text, total))
        if end >= len(units):
            break
        nxt, back = end, 0
        while nxt - 1 > start and back + counts[nxt - 1] <= overlap:
            nxt -= 1
            back += counts[nxt]
        start = nxt
    return chunks


async def chunk_sections(
    sections: Iterable[tuple[str, str]], count: Counter, plan: ChunkPlan, overhead: int = 0
) -> list[Chunk]:
    """Every section's chunks, in order: units counted by ``count`` (the model's tokens of
    each text, without its special tokens), units over the budget halved and counted again,
    then packed. A heading longer than a quarter of the window is left out of the window
    (kept for display, not embedded).

    Args:
        sections: ``(heading, text)`` pairs.
        count: Token counts of texts (one call per batch of units).
        plan: The window and overlap, already fitted to the model.
        overhead: The model's special tokens around every input.

    Raises:
        DocumentError: the window leaves no room for text, or a piece cannot be cut small
            enough.
    """
    out: list[Chunk] = []
    for heading, text in sections:
        head = (await count([heading + "\n"]))[0] if heading else 0
        if heading and head > plan.size // 4:
            heading, head = "", 0
        budget = plan.size - overhead - head
        if budget < MIN_BUDGET:
            raise DocumentError("The chunk size leaves no room for text.")
        units = split_units(text)
        counts = await count(units) if units else []
        while any(n > budget for n in counts):
            cut: list[str] = []
            for unit, n in zip(units, counts, strict=True):
                cut.extend(halve(unit) if n > budget and len(unit) > 1 else [unit])
            if len(cut) == len(units):
                raise DocumentError("A piece of the document cannot be cut small enough.")
            units = cut
            counts = await count(units)
        out.extend(pack_units(units, counts, budget, plan.overlap, heading))
    return out


__all__ = [
    "DEFAULT_CHUNK_OVERLAP",
    "DEFAULT_CHUNK_TOKENS",
    "Chunk",
    "ChunkPlan",
    "Counter",
    "chunk_sections",
    "halve",
    "pack_units",
    "split_units",
]
