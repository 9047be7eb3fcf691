"""End users' long-term memory (DashScope's ``memory_id``): facts taken from what the user
says, stored per workspace and ``memory_id`` (``storage.memory_rows``), recalled into the
prompts of later calls that name the same ``memory_id`` — in any session, of any app of the
workspace.

Extraction is, by default (an app's ``memory_extraction: "rules"``), deterministic: each
sentence of a completed user turn that states something about the user (it begins with "I",
"I'm", "my", "we", "our", "call me", or "remember that …") and is not a question becomes a
fact, at most ``MAX_FACTS_PER_TURN`` of them — a rule says exactly what is kept. With
``"model"``, the app's model extracts them (``serving.memory_extraction``: structured output,
kept only when grounded in the user's words), a second metered generation per turn, run after
the answer's last event. Either way the end user can list and delete every fact
(``/v1/memories``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from modelgrid.core.errors import InvalidRequestError
from modelgrid.protocol.apps import MAX_FACT_CHARS, MEMORY_ID_PATTERN
from modelgrid.storage import memory_rows
from modelgrid.tenancy.lookup import Sessions

MAX_FACTS_PER_TURN = 5
RECALLED = 20  # the newest facts recalled into a prompt
MIN_FACT_CHARS = 6
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")
_ABOUT_THE_USER = re.compile(
    r"^(?:please\s+)?(?:remember(?:\s+that)?[,:]?\s+)?"
    r"(?P<fact>(?:i|i'm|i’m|i've|i’ve|i'd|i’d|my|we|we're|we’re|our|call me)\b.+)$",
    re.IGNORECASE,
)
_MEMORY_ID = re.compile(MEMORY_ID_PATTERN)


def check_memory_id(memory_id: str, param: str = "input.memory_id") -> str:
    """Raises: InvalidRequestError: not 1..64 of letters, digits, ``_ . : -``."""
    if not _MEMORY_ID.match(memory_id):
        raise InvalidRequestError(
            "A memory id is 1 to 64 letters, digits, '_', '.', ':' or '-'.", param=param
        )
    return memory_id


def extract_facts(user_text: str) -> list[str]:
    """The facts a user turn states about the user (see the module docstring), in order."""
    out: list[str] = []
    for match in _SENTENCE.finditer(user_text):
        sentence = match.group(0).strip()
        if not sentence or "?" in sentence:
            continue
        about = _ABOUT_THE_USER.match(sentence)
        if about is None:
            continue
        fact = about.group("fact").rstrip(" .!")
        if not MIN_FACT_CHARS <= len(fact) <= MAX_FACT_CHARS - 1:
            continue
        fact = fact[0].upper() + fact[1:] + "."
        if fact not in out:
            out.append(fact)
        if len(out) == MAX_FACTS_PER_TURN:
            break
    return out


def recall_text(facts: list[str]) -> str:
    """The system prompt's paragraph of recalled facts ("" for none)."""
    if not facts:
        return ""
    lines = "\n".join(f"- {f}" for f in facts)
    return f"What the user told you in earlier conversations:\n{lines}"


class Memories:
    """Reading and writing memories for app calls.

    Args:
        sessions: The database.
    """

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def recall(self, workspace_id: str, memory_id: str) -> list[str]:
        """The memory's newest ``RECALLED`` facts, oldest first."""
        async with self._sessions() as session:
            rows = await memory_rows.facts(session, workspace_id, memory_id, RECALLED)
        return [r.fact for r in rows]

    async def remember(
        self, workspace_id: str, memory_id: str, user_text: str, request_id: str
    ) -> int:
        """Store the facts of a completed user turn (by the rules); how many were new."""
        return await self.remember_facts(
            workspace_id, memory_id, extract_facts(user_text), request_id
        )

    async def remember_facts(
        self, workspace_id: str, memory_id: str, found: list[str], request_id: str
    ) -> int:
        """Store ``found`` (one the memory holds already is not added twice); how many were
        new."""
        if not found:
            return 0
        async with self._sessions() as session, session.begin():
            added = await memory_rows.add_facts(
                session,
                workspace_id,
                memory_id,
                found,
                request_id=request_id,
                now=datetime.now(UTC),
            )
        return len(added)


__all__ = ["Memories", "check_memory_id", "extract_facts", "recall_text"]
