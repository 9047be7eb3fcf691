"""Facts about the user extracted by the model from a user turn (framework-free): an app's
``memory_extraction: "model"`` (the default, ``"rules"``, is ``serving.memory.extract_facts``).

The app's model is asked, as a metered request of its own (``serving.model_text``, greedy,
``EXTRACT_MAX_TOKENS`` at most), for the facts the user states about themselves, in the
user's own words, as the JSON object ``{"facts": ["...", ...]}`` (structured output: the JSON
schema ``FACTS_SCHEMA`` constrains decoding on engines that support it). What comes back is
parsed strictly: anything but that object is no fact (logged). Each fact is then kept only if
it is **grounded** in the user's statements (the sentences of the turn that are not
questions): every word of three letters or more in it, other than the pronouns and linking
words of ``_FREE_WORDS``, begins with the same four letters (the whole word, if shorter) as a
word the user stated, and every word with a digit is one the user stated — so "I live in
Lyon" survives "I am in Lyon and I live here", but a fact the model invents ("I live in
Paris"), embellishes, or reads into a question ("I have to return the kettle in 30 days" from
"How many days do I have to return the kettle?") does not. At most
``MAX_FACTS_PER_TURN`` facts of ``MIN_FACT_CHARS`` to ``MAX_FACT_CHARS - 1`` characters are
kept, each starting with a capital and ending with a full stop, as the rules' facts do.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from modelgrid.core.types import (
    CallContext,
    ChatMessage,
    ResponseFormat,
    ResponseFormatKind,
)
from modelgrid.protocol.apps import MAX_FACT_CHARS
from modelgrid.serving.generation import GenerationService
from modelgrid.serving.model_text import ModelText, generate_text
from modelgrid.tenancy.service import Principal

log = logging.getLogger(__name__)

MAX_FACTS_PER_TURN = 5
MIN_FACT_CHARS = 6
EXTRACT_MAX_TOKENS = 160
MAX_INPUT_CHARS = 4000  # the user turn as the extraction prompt shows it (its start)
SYSTEM = (
    "You extract facts that the user states about themselves (their name, where they live, "
    "their job, family, preferences, plans) from the user's message. Write each fact in the "
    'first person, with the user\'s own words, such as "I live in Lyon". Never add a fact the '
    "user did not state; questions and requests are not facts. Reply with JSON only: "
    '{"facts": [...]}, an empty list when there is none.'
)
FACTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        # no maxLength / maxItems: llama.cpp refuses a grammar that repeats a rule 499 times;
        # ``keep_facts`` applies the bounds
        "facts": {"type": "array", "items": {"type": "string"}}
    },
    "required": ["facts"],
    "additionalProperties": False,
}
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")
_WORD = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")
_FREE_WORDS = frozenset({
    "the", "and", "but", "for", "with", "are", "was", "were", "has", "have", "had", "been",
    "being", "not", "who", "whom", "whose", "which", "that", "this", "these", "those", "there",
    "here", "from", "into", "about", "user", "user's", "users", "their", "they", "them",
    "themselves", "she", "her", "his", "him", "its", "i'm", "i’m", "i've", "i’ve", "i'd", "i’d",
    "i'll", "i’ll", "me", "mine", "myself", "our", "ours", "ourselves", "you", "your", "name",
    "named", "called",
})  # fmt: skip


def _stem(word: str) -> str:
    return word[:4]


def _statements(user_text: str) -> str:
    """The user's sentences that are not questions (a question states no fact)."""
    return " ".join(
        m.group(0) for m in _SENTENCE.finditer(user_text) if "?" not in m.group(0)
    ).lower()


def grounded(fact: str, user_text: str) -> bool:
    """Whether every content word of ``fact`` is a word of the statements of ``user_text``
    (by its first four letters; a word with a digit, whole; see the module docstring)."""
    said_words = _WORD.findall(_statements(user_text))
    said = {_stem(w) for w in said_words}
    numbers = {w for w in said_words if any(c.isdigit() for c in w)}
    words = _WORD.findall(fact.lower())
    if any(w not in numbers for w in words if any(c.isdigit() for c in w)):
        return False
    content = [
        w for w in words if (len(w) >= 3 and w not in _FREE_WORDS) or any(c.isdigit() for c in w)
    ]
    return bool(content) and all(_stem(w) in said for w in content)


def parse_facts(text: str) -> list[str] | None:
    """The strings of ``{"facts": [...]}`` in ``text``; ``None`` when it is not exactly
    that (not JSON, another shape, a non-string item)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or set(value) != {"facts"}:
        return None
    facts = value["facts"]
    if not isinstance(facts, list) or not all(isinstance(f, str) for f in facts):
        return None
    return facts


def keep_facts(candidates: list[str], user_text: str) -> list[str]:
    """The grounded candidates, cut and normalised (see the module docstring)."""
    out: list[str] = []
    for raw in candidates:
        fact = " ".join(raw.split()).rstrip(" .!")
        if not MIN_FACT_CHARS <= len(fact) <= MAX_FACT_CHARS - 1:
            continue
        if "?" in fact or not grounded(fact, user_text):
            continue
        fact = fact[0].upper() + fact[1:] + "."
        if fact not in out:
            out.append(fact)
        if len(out) == MAX_FACTS_PER_TURN:
            break
    return out


def extraction_messages(user_text: str) -> list[ChatMessage]:
    return [ChatMessage("system", SYSTEM), ChatMessage("user", user_text[:MAX_INPUT_CHARS])]


async def model_facts(
    service: GenerationService,
    principal: Principal,
    model: str,
    user_text: str,
    ctx: CallContext,
    *,
    endpoint: str,
) -> tuple[list[str], ModelText]:
    """The facts ``model`` extracts from ``user_text`` that are grounded in it, and the
    model call (metered under ``endpoint``).

    Raises:
        Every error of ``serving.model_text.generate_text``.
    """
    out = await generate_text(
        service,
        principal,
        model,
        extraction_messages(user_text),
        ctx,
        endpoint=endpoint,
        max_tokens=EXTRACT_MAX_TOKENS,
        response_format=ResponseFormat(ResponseFormatKind.JSON_SCHEMA, FACTS_SCHEMA, "facts"),
    )
    candidates = parse_facts(out.text)
    if candidates is None:
        log.warning(
            'memory extraction by %s: not a {"facts": [...]} object (finish %s, %d chars); '
            "no fact kept (request %s)",
            model,
            out.finish_reason,
            len(out.text),
            out.request_id,
        )
        return [], out
    facts = keep_facts(candidates, user_text)
    if len(facts) < len(candidates):
        log.info(
            "memory extraction by %s: %d of %d facts kept (the others not in the user's words "
            "or out of bounds; request %s)",
            model,
            len(facts),
            len(candidates),
            out.request_id,
        )
    return facts, out


__all__ = [
    "FACTS_SCHEMA",
    "MAX_FACTS_PER_TURN",
    "extraction_messages",
    "grounded",
    "keep_facts",
    "model_facts",
    "parse_facts",
]
